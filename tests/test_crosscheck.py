"""The cross-check's command-line handling (its timing needs CUDA and runs on the GPU machine)."""

import pytest

from inferbench.commands.crosscheck import backend_options
from inferbench.errors import UserError
from inferbench.sweep.config import load_config


def test_set_overrides_one_option_and_keeps_the_rest():
    config = load_config("config.yaml")
    options = backend_options(config, "torch_compile", ["dynamic=false", "mode=max-autotune"])
    assert options["dynamic"] is False and options["mode"] == "max-autotune"
    assert {k: v for k, v in options.items() if k not in ("dynamic", "mode")} == \
        {k: v for k, v in config["backends"]["torch_compile"].items() if k not in ("dynamic", "mode")}


def test_set_without_a_value_says_how_to_write_it():
    with pytest.raises(UserError, match="OPTION=VALUE"):
        backend_options(load_config("config.yaml"), "torch_compile", ["dynamic"])
