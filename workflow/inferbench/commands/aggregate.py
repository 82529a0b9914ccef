"""Check every cell's shard (inferbench.records.shardcheck) and concatenate them into one summary Parquet file."""

from __future__ import annotations

HELP = "gather shards into summary.parquet"


def add_arguments(p):
    p.add_argument("--shards", nargs="+", required=True, help="shard files (.parquet)")
    p.add_argument("--out", required=True, help="summary file to write (.parquet)")


def run(args) -> int:
    import pyarrow.parquet as pq

    from inferbench.records.shardcheck import read_checked

    table = read_checked(args.shards)
    pq.write_table(table, args.out)
    counts = {}
    for s in table.column("status").to_pylist():
        counts[s] = counts.get(s, 0) + 1
    print(f"[inferbench aggregate] {table.num_rows} rows from {len(args.shards)} shards: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0
