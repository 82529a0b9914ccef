"""`inferbench report`: one HTML (self-contained) and one Markdown report of a run."""

from __future__ import annotations

HELP = "write the run report (self-contained HTML and/or Markdown): environment, method, tables, figures, findings"


def add_arguments(parser) -> None:
    parser.add_argument("--summary", required=True, help="summary Parquet file (from `inferbench aggregate`)")
    parser.add_argument("--figures-dir", required=True, help="folder written by `inferbench figures`")
    parser.add_argument("--tables-dir", help="folder written by `inferbench tables` (linked from the Markdown)")
    parser.add_argument("--html", help="HTML output; figures are embedded, so the file stands alone")
    parser.add_argument("--md", help="Markdown output; figures are referenced by relative path")
    parser.add_argument("--config", help="resolved configuration YAML to include verbatim")
    parser.add_argument("--harness-check", help="harness_check.csv of the run (inferbench harness-check)")
    parser.add_argument("--exports", help="exports.json of the run (inferbench exports): the sweep's clock")
    parser.add_argument("--cv-threshold", type=float, default=0.05,
                        help="latency cv (std/mean) above which a cell is called noisy (default 0.05)")


def run(args) -> int:
    from inferbench.errors import UserError
    from inferbench.reporting import report
    from inferbench.reporting.summary import read_summary

    if not (args.html or args.md):
        raise UserError("nothing to write: give --html and/or --md")
    summary = read_summary(args.summary)
    report.write_report(summary, args.figures_dir, args.tables_dir, args.html, args.md, args.config,
                        cv_threshold=args.cv_threshold, harness_check_path=args.harness_check,
                        exports_path=args.exports)
    for path in (args.html, args.md):
        if path:
            print(path)
    return 0
