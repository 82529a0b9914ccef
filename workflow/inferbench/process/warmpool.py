"""The fork server's warm workers (`gpu_worker: warm`): one per warm key (the GPU a job claimed,
its backend and precision), started on a key's first request and replaced when it died or the
request's environment differs from the one it started with. What runs inside a worker is
inferbench.process.warm; this is the server's side of it.

Protocol to a worker: one SEQPACKET message per request (JSON, with the output pipe passed along)
and one per reply (how the cell ended, inferbench.process.result.ChildResult.wire()).
"""

from __future__ import annotations

import json
import os
import socket

from inferbench.process.child import freeze_before_fork
from inferbench.process.result import ChildResult


class WarmWorker:
    """The server's handle on one warm worker (inferbench.process.warm.serve_cells runs in the child)."""

    def __init__(self, key: str, signature: str, pid: int, ctrl: socket.socket):
        self.key, self.signature, self.pid, self.ctrl = key, signature, pid, ctrl
        self.busy = False
        self.dead = False
        self._ended: ChildResult | None = None

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

    def wait_reply(self) -> ChildResult:
        """How the cell ended; if the worker died instead (crash, kill), how it died."""
        try:
            msg = self.ctrl.recv(1 << 16)
        except OSError:
            msg = b""
        if msg:
            return ChildResult.from_wire(json.loads(msg.decode()))
        return self.ended()

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
        self._ended = ChildResult.from_returncode(os.waitstatus_to_exitcode(status))
        self.dead = True
        self.ctrl.close()
        return True

    def ended(self) -> ChildResult:
        """How the worker process ended, waiting for it."""
        self._reap(block=True)
        return self._ended

    def alive(self) -> bool:
        return not self._reap(block=False)

    def stop(self) -> None:
        """End an idle worker (its shards are written; nothing is lost)."""
        if self.alive():
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
            self.ended()


class WarmPool:
    """The server's warm workers by key. The server's lock guards it, with its count of requests."""

    def __init__(self):
        self.workers: dict[str, WarmWorker] = {}

    def control_sockets(self) -> list[socket.socket]:
        return [w.ctrl for w in self.workers.values()]

    def take(self, key: str, env: dict, close_in_child: list) -> WarmWorker | None:
        """The key's worker, started if need be and marked busy; None if it is busy already.
        Call with the lock held."""
        from inferbench.process.warm import env_signature

        signature = env_signature(env)
        worker = self.workers.get(key)
        if worker is not None and worker.busy:
            return None
        if worker is not None and (not worker.alive() or worker.signature != signature):
            worker.stop()
            worker = None
        if worker is None:
            worker = WarmWorker.start(key, signature, close_in_child=[*close_in_child, *self.control_sockets()])
            self.workers[key] = worker
        worker.busy = True
        return worker

    def give_back(self, worker: WarmWorker) -> None:
        """After its request: free again, or forgotten if it died. Call with the lock held."""
        worker.busy = False
        if worker.dead and self.workers.get(worker.key) is worker:
            del self.workers[worker.key]

    def stop_all(self) -> None:
        for worker in list(self.workers.values()):
            worker.stop()
