"""One module per `inferbench` subcommand.

Each module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
Heavy imports (torch, onnxruntime, pandas, matplotlib) happen inside `run`, so that
`inferbench --help` and skipped cells start fast.
"""
