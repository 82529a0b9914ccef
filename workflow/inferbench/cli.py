"""The `inferbench` command line: a thin dispatcher over `inferbench.commands.*`."""

from __future__ import annotations

import argparse
import importlib
import sys

from inferbench import __version__
from inferbench.errors import UserError

# subcommand name -> module under inferbench.commands
COMMANDS = {
    "validate": "validate",
    "export": "export",
    "exports": "exports",
    "cell": "cell",
    "aggregate": "aggregate",
    "tables": "tables",
    "figures": "figures",
    "report": "report",
    "archive": "archive",
    "verify": "verify",
    "compare": "compare",
    "crosscheck": "crosscheck",
    "harness-check": "harness_check",
    "host-cpus": "host_cpus",
    "model-work": "model_work",
    "gpu-peak": "gpu_peak",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inferbench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"inferbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"inferbench.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        # Errors for people: one message, no traceback, non-zero exit.
        print(f"inferbench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
