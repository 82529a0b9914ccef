"""Backend registry. A backend is one module in this package that meets the backend contract
(inferbench.backends.contract); adding one means adding its module, its name here and a block
under `backends:` in the config.

Importing this package is cheap: backend modules import torch and friends lazily.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from pathlib import Path

from inferbench.backends.contract import Backend, check

# name in the config -> module in this package
KNOWN_BACKENDS = {
    "pytorch": "pytorch_eager",
    "torchscript": "torchscript",
    "onnxruntime": "onnxruntime_backend",
    "torch_tensorrt": "torch_tensorrt_backend",
    "torch_compile": "torch_compile",
}


@functools.cache
def load_backend(name: str) -> Backend:
    """The backend `name`, held to the contract (a ContractError, which names every problem, if
    its module falls short)."""
    return check(name, importlib.import_module(f"inferbench.backends.{KNOWN_BACKENDS[name]}"))


def source_file(name: str) -> Path:
    """The backend's source, listed as a rule input so that editing it reruns its jobs."""
    return Path(__file__).resolve().parent / f"{KNOWN_BACKENDS[name]}.py"


def missing_library(name: str) -> str | None:
    """Why backend `name` cannot run in this Python environment, or None. Looked up without
    importing anything (importing torch_tensorrt takes seconds): a module it REQUIRES is absent."""
    backend = load_backend(name)
    missing = [m for m in backend.REQUIRES if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    hint = backend.REQUIRES_HINT
    return f"{' and '.join(missing)} not installed here" + (f"; {hint}" if hint else "")
