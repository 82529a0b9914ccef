"""No config value reaches a shell unquoted: every placeholder of the rules' shell commands is
quoted, and a results_dir that is not a plain path is refused before any job runs."""

from __future__ import annotations

import ast
import os
import re
import string
import subprocess
from pathlib import Path

import pytest
import yaml

from inferbench.errors import UserError
from inferbench.sweep import config as cfgmod
from sweep import BIN, REPO

RULES = sorted((REPO / "workflow" / "rules").glob("*.smk"))


def shell_commands(path: Path) -> list[tuple[int, str]]:
    """(line, command text) of every `shell:` block: its string literals, joined as Python would."""
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.strip() != "shell:":
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        for following in lines[i + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        out.append((i + 1, ast.literal_eval("(" + "\n".join(body) + ")")))
    return out


def test_the_scan_finds_every_shell_command():
    found = {path.stem: len(shell_commands(path)) for path in RULES}
    assert found == {"aggregate": 4, "benchmark": 1, "common": 0, "export": 2, "harness_check": 1, "report": 3,
                     "work": 2}, found


@pytest.mark.parametrize("path", RULES, ids=lambda p: p.name)
def test_every_placeholder_in_a_shell_command_is_quoted(path):
    unquoted = []
    for line, command in shell_commands(path):
        for _, field, spec, _ in string.Formatter().parse(command):
            if field is not None and spec != "q":
                unquoted.append(f"line {line}: {{{field}{':' + spec if spec else ''}}}")
    assert not unquoted, f"{path.name}: placeholders without :q: {unquoted}"


BAD_RESULTS_DIRS = ["/tmp/bad/res x;touch /tmp/bad/PWNED;", "res$(id)", "res`id`", "a\nb", "res|x", "res&",
                    "res>x", "it's", 'say"', "res{x}", "res*", "", "  ", "-rf", "~/results", "tab\there"]


@pytest.mark.parametrize("value", BAD_RESULTS_DIRS, ids=repr)
def test_a_results_dir_that_is_not_a_plain_path_is_a_config_error(value):
    with pytest.raises(UserError, match=r"^results_dir: "):
        cfgmod.check_results_dir(value)


@pytest.mark.parametrize("value", ["results", "/scratch/me/run 1/results", "../out_2.0", "res-x+y,z=1@%:"])
def test_plain_paths_are_accepted(value):
    cfgmod.check_results_dir(value)


def test_the_injection_through_results_dir_runs_nothing(tmp_path):
    """The sweep a user would start with such a results_dir: refused at the config, nothing run."""
    pwned = tmp_path / "PWNED"
    config = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
    config.update(model="mobilenet_v3_small", resolutions=[32], batch_sizes=[1], devices=["cpu"],
                  backends={"pytorch": {}}, per_device={},
                  results_dir=f"{tmp_path}/res x;touch {pwned};")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run([str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                           "--configfile", str(tmp_path / "c.yaml"), "--cores", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert not pwned.exists(), "a config value ran as a shell command"
    assert re.search(r"results_dir: .* is not a plain path: it contains ';'", out), out[-3000:]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("res")], list(tmp_path.iterdir())
