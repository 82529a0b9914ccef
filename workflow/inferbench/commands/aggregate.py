"""Check every cell's shard (inferbench.records.shardcheck) and concatenate them into one summary Parquet file,
with the model's work and the GPUs' ceilings joined in (inferbench.records.efficiency)."""

from __future__ import annotations

HELP = "gather shards into summary.parquet"


def add_arguments(p):
    p.add_argument("--shards", nargs="+", required=True, help="shard files (.parquet)")
    p.add_argument("--out", required=True, help="summary file to write (.parquet)")
    p.add_argument("--model-work", default="", help="the model's work per image (.json, from `inferbench model-work`)")
    p.add_argument("--gpu-peak", default="", help="the GPUs' measured ceilings (.json, from `inferbench gpu-peak`)")


def run(args) -> int:
    import pyarrow.parquet as pq

    from inferbench.records.efficiency import add_columns, read_record
    from inferbench.records.shardcheck import read_checked

    table = add_columns(read_checked(args.shards), read_record(args.model_work), read_record(args.gpu_peak))
    pq.write_table(table, args.out)
    counts = {}
    for s in table.column("status").to_pylist():
        counts[s] = counts.get(s, 0) + 1
    print(f"[inferbench aggregate] {table.num_rows} rows from {len(args.shards)} shards: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0
