"""What a process forked from the fork server does to become a request's `inferbench ARGV`: the one
set-up shared by a child forked per cell (inferbench.process.forkserver) and a warm worker, which
takes one request after another (inferbench.process.warm), so that both run a cell in the same
surroundings. Also the garbage collector's part, which the server plays before it forks."""

from __future__ import annotations

import gc
import os
import sys


def freeze_before_fork() -> None:
    """Python's documented pattern for a forking server (gc.freeze): what the server holds (the
    imported libraries) moves to the permanent generation, which the child's garbage collector
    never scans. A full collection in a warm worker then took 0.3 ms instead of 0.28 s (torch,
    torchvision and onnxruntime imported, 2-core VM), and it runs after every cell. The collect
    first, so that the server's own garbage is not frozen with it; after the first freeze it
    only scans what came since."""
    gc.collect()
    gc.freeze()


def detach(out_fd: int) -> None:
    """Once, as the forked process begins: its own session, so that the server's signals (a ^C
    in the terminal that started it) are not the cell's; `out_fd` as its stdout and stderr."""
    os.setsid()
    send_output_to(out_fd)
    # line-buffered, on the descriptors themselves: a later send_output_to redirects them too
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)


def send_output_to(fd: int) -> None:
    """Make `fd` this process's stdout and stderr (and no longer hold it under its own number).
    Flush what was written before, if it was meant for the old place."""
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if fd > 2:
        os.close(fd)


def take_request(request: dict, extra_env: dict | None = None) -> None:
    """The request's working folder and environment, exactly: nothing of the server's own."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.update(extra_env or {})


def call_cli(argv: list[str]) -> int:
    """`inferbench ARGV` in this process, its exit code as a new interpreter would give it."""
    try:
        from inferbench.cli import main

        sys.argv = ["inferbench", *argv]
        code = main(argv)
        return code if isinstance(code, int) else 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
