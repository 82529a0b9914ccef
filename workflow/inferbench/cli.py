"""The `inferbench` command line: a thin dispatcher over `inferbench.commands.*`."""

from __future__ import annotations

import argparse
import importlib
import sys

from inferbench import __version__
from inferbench.errors import NO_SPACE_EXIT, UserError, is_no_space
from inferbench.process import console, lifeline

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
    console.adopt()
    args = build_parser().parse_args(argv)
    try:
        # a job whose Snakemake has died stops (inferbench.process.lifeline)
        with lifeline.watching():
            return int(args._run(args) or 0)
    except UserError as exc:
        # Errors for people: one message, no traceback, non-zero exit.
        print(f"inferbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if not is_no_space(exc):
            raise
        # said on the console too: the job's log is most likely on the full disk
        console.say(f"inferbench {args.command}: error: {console.no_space_message(exc.filename or output_of(args))}")
        return NO_SPACE_EXIT


def output_of(args) -> str | None:
    """What the command was writing, for a disk-full error that names no file (pyarrow's)."""
    for name in ("out", "outdir", "html", "md", "csv"):
        if getattr(args, name, None):
            return getattr(args, name)
    return None


if __name__ == "__main__":
    sys.exit(main())
