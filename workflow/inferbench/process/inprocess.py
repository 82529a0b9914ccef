"""`inferbench ARGV` run inside the current process, as a forked child of the fork server and a
warm worker both do. Its own module so that the fork server and the warm workers share it without
importing each other."""

from __future__ import annotations

import sys


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
