"""`inferbench archive`: pack a finished run into one .tar.gz with a sha256 manifest."""

from __future__ import annotations

HELP = "pack shards, summary, tables, figures, reports, config and per-cell environment into a verifiable .tar.gz"


def add_arguments(parser) -> None:
    parser.add_argument("--results", required=True, help="the run's results folder (holds summary.parquet)")
    parser.add_argument("--out", required=True,
                        help="archive path; may contain {run_id}; a folder gets inferbench-<run_id>.tar.gz")
    parser.add_argument("--run-id", help="name the archive by this id (default: the summary's run_id, "
                                         "or a hash of them when the summary holds several runs)")


def run(args) -> int:
    import sys

    from inferbench.records import archive

    path, manifest = archive.write_archive(args.results, args.out, args.run_id)
    foreign = archive.foreign_shards(args.results, archive.read_summary(args.results))
    if foreign:
        # left out of the archive; said aloud, since a shared results folder is easy to miss
        print(f"warning: {args.results} also holds {len(foreign)} shard(s) of cells that are not in this run's "
              f"summary (another configuration's?); they are not archived: {', '.join(foreign)}", file=sys.stderr)
    print(f"{path}: {len(manifest['files'])} files + {archive.MANIFEST}, run {manifest['run_id']}")
    return 0
