"""`inferbench figures`: PNG figures from the summary."""

from __future__ import annotations

HELP = "draw result figures (PNG) from results/summary.parquet"

KIND_NAMES = ("throughput", "latency", "gpu_memory", "speedup_heatmap", "throughput_vs_memory", "scaling",
              "achieved_tflops")


def add_arguments(parser) -> None:
    parser.add_argument("--summary", required=True, help="summary Parquet file (from `inferbench aggregate`)")
    parser.add_argument("--outdir", required=True, help="folder for the PNG files")
    parser.add_argument("--resolution", type=int, action="append",
                        help="draw only this resolution's throughput figure, OUTDIR/{R}.png (repeatable); "
                             "add --kind for its other per-resolution figures")
    parser.add_argument("--kind", action="append", choices=KIND_NAMES,
                        help="figure kinds to draw (repeatable; default: all, or throughput with --resolution)")


def run(args) -> int:
    from inferbench.errors import UserError
    from inferbench.reporting import figures
    from inferbench.reporting.summary import read_summary

    summary = read_summary(args.summary)
    kinds = args.kind or (["throughput"] if args.resolution else list(figures.KINDS))
    if args.resolution:
        have = set(int(r) for r in summary["resolution"].dropna().unique())
        unknown = sorted(set(args.resolution) - have)
        if unknown:
            raise UserError(f"no cells at resolution {unknown}; the summary has {sorted(have)}")
    for path in figures.write_figures(summary, args.outdir, resolutions=args.resolution, kinds=kinds):
        print(path)
    return 0
