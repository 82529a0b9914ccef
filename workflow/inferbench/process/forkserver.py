"""A fork server: a long-lived process that has imported torch, torchvision and onnxruntime once,
and forks a fresh child for each cell.

Why: importing those libraries costs 4 to 8 s per process on the GPU machines we measured, which is
most of a GPU cell's wall time, and a sweep has hundreds of cells. Each cell still runs in its own
process (a crash, a hang or an out-of-memory kill stays that cell's failure), with CUDA initialised
in the child only, so nothing GPU-side is shared between cells: the server never touches CUDA, and
NVML's per-process memory is the child's own.

Protocol (one Unix socket connection per cell): the client sends a JSON request (argv, env, cwd)
with the write end of a pipe as a passed file descriptor; the server forks, the child makes that
pipe its stdout and stderr and runs `inferbench.cli.main(argv)`; the server answers
{"pid": N} at once and {"returncode": R} when the child ends (negative R: killed by signal -R).

The server exits after `idle_s` without work. Its socket name carries a hash of the Python
executable, sys.path and the inferbench sources, so code changes get a fresh server.
Used for GPU cells and exports. CPU cells always start a fresh process: a forked child ran ONNX
Runtime on the CPU ~18% slower than a fresh one (measured on a 2-core VM), while GPU cells forked
from the server measured within ~1% of fresh-process cross-checks on the H200.
Set INFERBENCH_FORKSERVER=0 to run every cell in a plain subprocess.

Warm workers (`gpu_worker: warm` in the config): a request that names a `warm_key` (the GPU
it claimed, the backend and the precision) is served by a long-lived child kept for that key,
which runs its cells one after another in one process and one CUDA context. That saves each GPU
cell the CUDA context, the compiler imports and the per-process library set-up (seconds per
cell), at the price of isolation: see `inferbench.process.warm` for what is reset between cells and what
is recorded. A crash or kill of that child is still only that cell's failure: the next request
starts a new child. Protocol to the child: one SEQPACKET message per request (JSON, with the
output pipe passed along) and one per reply ({"returncode": R}).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from inferbench.process.inprocess import call_cli

PRELOAD = ("numpy", "torch", "torchvision", "onnxruntime", "onnx", "pyarrow", "pyarrow.parquet")
# Installed versions of what the server imports: a changed install (onnxruntime-gpu in place of
# onnxruntime, say) must get a fresh server, not one holding the old library.
_PRELOADED_DISTS = ("numpy", "torch", "torchvision", "onnxruntime", "onnxruntime-gpu", "onnx", "pyarrow", "triton")
_PKG = Path(__file__).resolve().parents[1]  # the whole inferbench package: any edit gets a fresh server


def enabled() -> bool:
    return os.environ.get("INFERBENCH_FORKSERVER", "1") != "0"


def socket_path(lock_dir: str | Path) -> Path:
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


# ---------------------------------------------------------------- client


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
    subprocess.Popen([sys.executable, "-m", "inferbench.process.forkserver", "--socket", str(path),
                      "--watch", str(lock_dir)],
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


def run(argv: list[str], env: dict, lock_dir: str | Path, timeout_s: float, on_output,
        warm_key: str | None = None, on_start=None) -> int | None:
    """Run `inferbench <argv>` in a child forked by the server. Output lines go to on_output.
    warm_key: run it in the server's warm worker for that key instead of a fresh child.
    on_start(pid): called with the child's pid once it runs.
    Returns the exit code (negative: killed by that signal), or None on timeout (child killed)."""
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
                on_output(line)

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
        return None
    reader.join(timeout=10)
    sock.close()
    if not done:
        raise RuntimeError("the fork server went away while the cell ran")
    return done["returncode"]


# ---------------------------------------------------------------- server


def freeze_before_fork() -> None:
    """Python's documented pattern for a forking server (gc.freeze): what the server holds (the
    imported libraries) moves to the permanent generation, which the child's garbage collector
    never scans. A full collection in a warm worker then took 0.3 ms instead of 0.28 s (torch,
    torchvision and onnxruntime imported, 2-core VM), and it runs after every cell. The collect
    first, so that the server's own garbage is not frozen with it; after the first freeze it
    only scans what came since."""
    gc.collect()
    gc.freeze()


def _child(request: dict, out_fd: int) -> None:
    """In the forked child: become the requested `inferbench` invocation."""
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(out_fd)
    os.setsid()  # own process group: the server's signals are not ours
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    code = 1
    try:
        code = call_cli(request["argv"])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class Server:
    def __init__(self, path: Path, idle_s: float, watch: Path | None = None):
        self.path = path
        self.watch = watch  # the results' lock folder: gone means the results are gone
        self.idle_s = idle_s
        self.active = 0
        self.last_activity = time.monotonic()
        self.lock = threading.Lock()
        self.warm: dict[str, WarmWorker] = {}  # warm key (GPU:backend:precision) -> its worker

    def serve(self) -> None:
        for name in PRELOAD:
            try:
                __import__(name)
            except Exception as exc:  # a missing optional library is the child's problem to report
                print(f"preload {name}: {exc}", flush=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(tmp))
        listener.listen(16)
        os.replace(tmp, self.path)  # appear atomically, ready to accept
        inode = self.path.stat().st_ino
        listener.settimeout(1.0)
        print(f"fork server {os.getpid()} listening on {self.path}", flush=True)
        try:
            while True:
                try:
                    conn, _ = listener.accept()
                except socket.timeout:
                    with self.lock:
                        idle = self.active == 0 and time.monotonic() - self.last_activity > self.idle_s
                    if idle or not self.path.exists() or (self.watch and not self.watch.exists()):
                        break
                    continue
                self._handle(conn, listener)
        finally:
            listener.close()
            for worker in list(self.warm.values()):
                worker.stop()
            try:
                if self.path.stat().st_ino == inode:  # not a newer server's socket
                    self.path.unlink()
            except OSError:
                pass

    def _handle(self, conn: socket.socket, listener: socket.socket) -> None:
        msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 1)
        request = json.loads(msg.decode())
        if request.get("warm_key"):
            self._handle_warm(conn, listener, request, fds[0])
            return
        freeze_before_fork()
        pid = os.fork()
        if pid == 0:
            listener.close()
            conn.close()
            self._close_warm_controls()
            _child(request, fds[0])
        os.close(fds[0])
        with self.lock:
            self.active += 1
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        threading.Thread(target=self._reap, args=(conn, pid), daemon=True).start()

    def _reap(self, conn: socket.socket, pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        try:
            conn.sendall(json.dumps({"returncode": code}).encode() + b"\n")
        except OSError:
            pass
        conn.close()
        with self.lock:
            self.active -= 1
            self.last_activity = time.monotonic()

    def _close_warm_controls(self) -> None:
        """In a fresh child: drop the copies of the warm workers' control sockets."""
        for worker in self.warm.values():
            worker.ctrl.close()

    def _handle_warm(self, conn: socket.socket, listener: socket.socket, request: dict, out_fd: int) -> None:
        from inferbench.process.warm import env_signature

        key = request["warm_key"]
        signature = env_signature(request["env"])
        with self.lock:
            worker = self.warm.get(key)
            if worker is not None and worker.busy:
                # Only possible if a job's GPU claim was bypassed: never run two cells at once.
                os.close(out_fd)
                conn.sendall(json.dumps({"error": f"the warm worker for {key} is busy"}).encode() + b"\n")
                conn.close()
                return
            if worker is not None and (not worker.alive() or worker.signature != signature):
                worker.stop()
                worker = None
            if worker is None:
                others = [w.ctrl for w in self.warm.values()]
                worker = WarmWorker.start(key, signature, close_in_child=[listener, conn, out_fd, *others])
                self.warm[key] = worker
            worker.busy = True
            self.active += 1
        try:
            worker.send(request, out_fd)
            ok = True
        except OSError:
            ok = False  # it died since: the reply below reports how
        finally:
            os.close(out_fd)
        conn.sendall(json.dumps({"pid": worker.pid}).encode() + b"\n")
        threading.Thread(target=self._relay_warm, args=(conn, worker, ok), daemon=True).start()

    def _relay_warm(self, conn: socket.socket, worker: "WarmWorker", sent: bool) -> None:
        code = worker.wait_reply() if sent else worker.exit_code()
        try:
            conn.sendall(json.dumps({"returncode": code}).encode() + b"\n")
        except OSError:
            pass
        conn.close()
        with self.lock:
            worker.busy = False
            if worker.dead and self.warm.get(worker.key) is worker:
                del self.warm[worker.key]
            self.active -= 1
            self.last_activity = time.monotonic()


class WarmWorker:
    """The server's handle on one warm worker (inferbench.process.warm.serve_cells runs in the child)."""

    def __init__(self, key: str, signature: str, pid: int, ctrl: socket.socket):
        self.key, self.signature, self.pid, self.ctrl = key, signature, pid, ctrl
        self.busy = False
        self.dead = False
        self._code: int | None = None

    @classmethod
    def start(cls, key: str, signature: str, close_in_child: list) -> "WarmWorker":
        # SEQPACKET: each request and each reply is one message, whatever its size.
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        freeze_before_fork()
        pid = os.fork()
        if pid == 0:
            # what belongs to the server, not the worker: the listener, other connections, and
            # this request's output pipe (held open here, its reader would never see the end)
            for s in close_in_child:
                os.close(s) if isinstance(s, int) else s.close()
            parent_end.close()
            try:
                from inferbench.process.warm import serve_cells

                serve_cells(child_end)
            finally:
                os._exit(1)
        child_end.close()
        return cls(key, signature, pid, parent_end)

    def send(self, request: dict, out_fd: int) -> None:
        socket.send_fds(self.ctrl, [json.dumps(request).encode()], [out_fd])

    def wait_reply(self) -> int:
        """The cell's exit code; if the worker died instead (crash, kill), how it died."""
        try:
            msg = self.ctrl.recv(1 << 16)
        except OSError:
            msg = b""
        if msg:
            return int(json.loads(msg.decode())["returncode"])
        return self.exit_code()

    def _reap(self, block: bool) -> bool:
        """Collect the worker's exit status if it has ended (waiting for it if block); True if so."""
        if self.dead:
            return True
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:  # reaped by another thread meanwhile
            pid, status = self.pid, 9
        if pid == 0:
            return False
        self._code = os.waitstatus_to_exitcode(status)
        self.dead = True
        self.ctrl.close()
        return True

    def exit_code(self) -> int:
        self._reap(block=True)
        return self._code

    def alive(self) -> bool:
        return not self._reap(block=False)

    def stop(self) -> None:
        """End an idle worker (its shards are written; nothing is lost)."""
        if self.alive():
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
            self.exit_code()


def main() -> int:
    p = argparse.ArgumentParser(description="inferbench fork server (started on demand by `inferbench cell`)")
    p.add_argument("--socket", required=True)
    p.add_argument("--idle-s", type=float, default=600.0)
    p.add_argument("--watch", help="exit when this folder disappears")
    args = p.parse_args()
    Server(Path(args.socket), args.idle_s, Path(args.watch) if args.watch else None).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
