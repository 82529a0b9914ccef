"""The fork server's client: find the server for this code and these libraries (or start it), send
it one `inferbench ARGV` to run, stream the child's output, and return how it ended (a
ChildResult, inferbench.process.result). The server is inferbench.process.forkserver.

Used for GPU cells and exports. CPU cells always start a fresh process: a forked child ran ONNX
Runtime on the CPU ~18% slower than a fresh one (measured on a 2-core VM), while GPU cells forked
from the server measured within ~1% of fresh-process cross-checks on the H200.
Set INFERBENCH_FORKSERVER=0 to run every cell in a plain subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from inferbench.process.result import ChildResult, OutputTail

SERVER_MODULE = "inferbench.process.forkserver"
# Installed versions of what the server imports: a changed install (onnxruntime-gpu in place of
# onnxruntime, say) must get a fresh server, not one holding the old library.
_PRELOADED_DISTS = ("numpy", "torch", "torchvision", "onnxruntime", "onnxruntime-gpu", "onnx", "pyarrow", "triton")
_PKG = Path(__file__).resolve().parents[1]  # the whole inferbench package: any edit gets a fresh server


def enabled() -> bool:
    return os.environ.get("INFERBENCH_FORKSERVER", "1") != "0"


def socket_path(lock_dir: str | Path) -> Path:
    """The server's socket: its name carries a hash of the Python executable, sys.path, the
    inferbench sources and the installed libraries, so that a change gets a fresh server."""
    h = hashlib.sha256()
    h.update(socket.gethostname().encode())  # Unix sockets are per host; results may be shared
    h.update(sys.executable.encode())
    h.update("\0".join(sys.path).encode())
    # inside a container: a rebuilt image at the same path must not reuse an old image's server
    for var in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"):
        image = os.environ.get(var)
        if image:
            h.update(image.encode())
            if os.path.exists(image):
                h.update(str(os.stat(image).st_mtime_ns).encode())
    for f in sorted(_PKG.rglob("*.py")):
        h.update(f"{f.relative_to(_PKG)}:{f.stat().st_mtime_ns}".encode())
    h.update(json.dumps(_installed_versions()).encode())
    # Unix socket paths are limited to ~100 bytes: keep them short and under /tmp if needed.
    base = Path(lock_dir)
    path = base / f"fs-{h.hexdigest()[:16]}.sock"
    if len(str(path.resolve())) > 100:
        path = Path("/tmp") / f"inferbench-fs-{os.getuid()}-{h.hexdigest()[:16]}.sock"
    return path


def _installed_versions() -> dict:
    from importlib import metadata

    versions = {}
    for dist in _PRELOADED_DISTS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def _connect(path: Path) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return s
    except OSError:
        s.close()
        return None


def _start_server(path: Path, lock_dir: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(str(path) + ".log", "ab")
    subprocess.Popen([sys.executable, "-m", SERVER_MODULE, "--socket", str(path), "--watch", str(lock_dir)],
                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True)


def connect_or_start(lock_dir: str | Path, wait_s: float = 120.0) -> socket.socket:
    path = socket_path(lock_dir)
    s = _connect(path)
    if s:
        return s
    # Jobs that start together (exports run several at once) start one server, not one each: the
    # first to hold this lock starts it and waits for it; the others then find it running.
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".start", "w") as starting:
        fcntl.flock(starting, fcntl.LOCK_EX)
        s = _connect(path)
        if s:
            return s
        _start_server(path, Path(lock_dir).resolve())
        return _wait_for_server(path, wait_s)


def _wait_for_server(path: Path, wait_s: float) -> socket.socket:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(0.2)
        s = _connect(path)
        if s:
            return s
    raise RuntimeError(f"the fork server did not start within {wait_s:.0f} s (see {path}.log)")


def _read_message(f) -> dict | None:
    line = f.readline()
    return json.loads(line) if line else None


def run(argv: list[str], env: dict, lock_dir: str | Path, timeout_s: float, output: OutputTail,
        warm_key: str | None = None, on_start=None) -> ChildResult:
    """Run `inferbench <argv>` in a child forked by the server; its output lines go to `output`.
    warm_key: run it in the server's warm worker for that key instead of a fresh child.
    on_start(pid): called with the child's pid once it runs. A child still running at timeout_s
    is killed. Raises RuntimeError when the server cannot take the request or goes away."""
    sock = connect_or_start(lock_dir)
    read_fd, write_fd = os.pipe()
    try:
        request = json.dumps({"argv": argv, "env": env, "cwd": os.getcwd(), "warm_key": warm_key}).encode() + b"\n"
        socket.send_fds(sock, [request], [write_fd])
    finally:
        os.close(write_fd)

    def pump():
        with os.fdopen(read_fd, "r", errors="replace") as r:
            for line in r:
                output(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    replies = sock.makefile("r")
    first = _read_message(replies)
    if not first or "pid" not in first:
        raise RuntimeError(f"the fork server refused the request: {first}")
    pid = first["pid"]
    if on_start:
        on_start(pid)
    sock.settimeout(timeout_s)
    try:
        done = _read_message(replies)
    except (socket.timeout, TimeoutError):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        reader.join(timeout=5)
        return ChildResult.timeout(timeout_s, output.lines())
    reader.join(timeout=10)
    sock.close()
    if not done:
        raise RuntimeError("the fork server went away while the cell ran")
    return ChildResult.from_wire(done, output.lines())
