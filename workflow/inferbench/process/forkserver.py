"""The fork server: a long-lived process that has imported torch, torchvision and onnxruntime once,
and forks a fresh child for each cell. Its client, which starts it on demand, is
inferbench.process.forkclient.

Why: importing those libraries cost 4 to 8 s per process on the GPU machines measured on 2026-11-28, which is
most of a GPU cell's wall time, and a sweep has hundreds of cells. Each cell still runs in its own
process (a crash, a hang or an out-of-memory kill stays that cell's failure), with CUDA initialised
in the child only, so nothing GPU-side is shared between cells: the server never touches CUDA, and
NVML's per-process memory is the child's own.

Protocol (one Unix socket connection per cell): the client sends a JSON request (argv, env, cwd,
warm_key) with the write end of a pipe as a passed file descriptor; the server forks, the child
makes that pipe its stdout and stderr and runs `inferbench.cli.main(argv)` (set up as in
inferbench.process.child); the server answers {"pid": N} at once and, when the child ends, how it
ended: {"exit_code": N} or {"signal": N} (inferbench.process.result.ChildResult.wire()).

A request that names a `warm_key` (the GPU it claimed, the backend and the precision) is served by
the warm worker kept for that key instead (inferbench.process.warmpool, inferbench.process.warm),
which runs its cells one after another in one process and one CUDA context. A crash or kill of
that worker is still only that cell's failure: the next request starts a new one.

The server exits after `idle_s` without work, or when its socket file or the results' lock folder
is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from inferbench.process.child import call_cli, detach, freeze_before_fork, take_request
from inferbench.process.result import ChildResult
from inferbench.process.warmpool import WarmPool, WarmWorker

PRELOAD = ("numpy", "torch", "torchvision", "onnxruntime", "onnx", "pyarrow", "pyarrow.parquet")


def _send(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


class Server:
    def __init__(self, path: Path, idle_s: float, watch: Path | None = None):
        self.path = path
        self.watch = watch  # the results' lock folder: gone means the results are gone
        self.idle_s = idle_s
        self.active = 0
        self.last_activity = time.monotonic()
        self.lock = threading.Lock()  # guards active, last_activity and the warm pool
        self.warm = WarmPool()

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
            self.warm.stop_all()
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
            # what belongs to the server, not this cell: the listener, the connection, and the
            # warm workers' control sockets
            listener.close()
            conn.close()
            for ctrl in self.warm.control_sockets():
                ctrl.close()
            self._become_child(request, fds[0])
        os.close(fds[0])
        self._started()
        _send(conn, {"pid": pid})
        threading.Thread(target=self._reap, args=(conn, pid), daemon=True).start()

    @staticmethod
    def _become_child(request: dict, out_fd: int) -> None:
        """In the forked child: become the requested `inferbench` invocation, and end with it."""
        code = 1
        try:
            detach(out_fd)
            take_request(request)
            code = call_cli(request["argv"])
        finally:
            os._exit(code)

    def _reap(self, conn: socket.socket, pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        self._reply(conn, ChildResult.from_returncode(os.waitstatus_to_exitcode(status)))
        self._finished()

    def _handle_warm(self, conn: socket.socket, listener: socket.socket, request: dict, out_fd: int) -> None:
        key = request["warm_key"]
        with self.lock:
            worker = self.warm.take(key, request["env"], close_in_child=[listener, conn, out_fd])
            if worker is not None:
                self.active += 1
        if worker is None:
            # Only possible if a job's GPU claim was bypassed: never run two cells at once.
            os.close(out_fd)
            _send(conn, {"error": f"the warm worker for {key} is busy"})
            conn.close()
            return
        try:
            worker.send(request, out_fd)
            sent = True
        except OSError:
            sent = False  # it died since: the reply reports how
        finally:
            os.close(out_fd)
        _send(conn, {"pid": worker.pid})
        threading.Thread(target=self._relay_warm, args=(conn, worker, sent), daemon=True).start()

    def _relay_warm(self, conn: socket.socket, worker: WarmWorker, sent: bool) -> None:
        self._reply(conn, worker.wait_reply() if sent else worker.ended())
        with self.lock:
            self.warm.give_back(worker)
        self._finished()

    @staticmethod
    def _reply(conn: socket.socket, result: ChildResult) -> None:
        try:
            _send(conn, result.wire())
        except OSError:
            pass  # the client gave up (its timeout) and killed the child itself
        conn.close()

    def _started(self) -> None:
        with self.lock:
            self.active += 1

    def _finished(self) -> None:
        with self.lock:
            self.active -= 1
            self.last_activity = time.monotonic()


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
