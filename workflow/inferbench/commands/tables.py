"""`inferbench tables`: the result tables of one resolution (or all) as CSV, Markdown and HTML."""

from __future__ import annotations

HELP = "write result tables (tidy CSV, Markdown, HTML) from results/summary.parquet"


def add_arguments(parser) -> None:
    parser.add_argument("--summary", required=True, help="summary Parquet file (from `inferbench aggregate`)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="only cells at this input resolution in px (default: every resolution)")
    parser.add_argument("--csv", help="tidy CSV output, one row per cell")
    parser.add_argument("--md", help="Markdown output: throughput overview, then details")
    parser.add_argument("--html", help="standalone HTML output")


def run(args) -> int:
    from inferbench.errors import UserError
    from inferbench.reporting import tables

    if not (args.csv or args.md or args.html):
        raise UserError("nothing to write: give at least one of --csv, --md, --html")
    summary = tables.read_summary(args.summary)
    tidy = tables.write_tables(summary, args.resolution, args.csv, args.md, args.html)
    print(f"tables: {len(tidy)} cells ({(tidy['status'] == 'ok').sum()} ok)")
    return 0
