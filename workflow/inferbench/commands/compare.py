"""`inferbench compare`: two runs, cell by cell, with a noise-aware verdict per cell."""

from __future__ import annotations

HELP = "compare two runs (archives, results folders or summary.parquet files) cell by cell, noise-aware"


def add_arguments(parser) -> None:
    parser.add_argument("old", help="baseline run: archive .tar.gz, results folder or summary.parquet")
    parser.add_argument("new", help="run to judge, same forms as OLD")
    parser.add_argument("--threshold-pct", type=float, default=5.0,
                        help="smallest change in %% ever called a change, however steady the cells (default 5)")
    parser.add_argument("--noise-k", type=float, default=2.0,
                        help="a change must exceed k times the combined 95%% CI of the two medians (default 2)")
    parser.add_argument("--fail-on-regression", action="store_true",
                        help="exit 1 if any cell is slower beyond noise, broke "
                             "(ok -> inaccurate/skipped/oom/error) or is missing from NEW")
    parser.add_argument("--no-confirm", action="store_true",
                        help="judge from the runs' rows alone: do not measure a cell called slower again (by "
                             "default, where OLD and NEW are results folders of the same code on this machine, "
                             "each such cell of both runs is measured again in alternation before it counts)")
    parser.add_argument("--csv", help="also write the per-cell comparison here")


def run(args) -> int:
    from inferbench.errors import UserError
    from inferbench.reporting import compare

    if args.threshold_pct < 0 or args.noise_k < 0:
        raise UserError("--threshold-pct and --noise-k must be >= 0")
    old, new = compare.load_summary(args.old), compare.load_summary(args.new)
    table, counts = compare.compare(old, new, k=args.noise_k, floor_pct=args.threshold_pct)
    confirmed = []
    if not args.no_confirm and len(table) and (table["verdict"] == "slower").any():
        confirmed = compare.confirm_slower(table, old, new, args.old, args.new,
                                           progress=lambda msg: print(msg, flush=True))
    print(compare.format_report(table, counts))
    for line in confirmed:
        print(line)
    if args.csv:
        table.to_csv(args.csv, index=False)
    if args.fail_on_regression and compare.has_regression(table, counts):
        print("regression: at least one cell is slower beyond its noise, broke, or is missing from NEW")
        return 1
    return 0
