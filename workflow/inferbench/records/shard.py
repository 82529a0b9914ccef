"""Writing and reading shards: one Parquet file per cell, one row per io mode, SHARD_SCHEMA always."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from inferbench.records.schema import COLUMN_NAMES, SHARD_SCHEMA, empty_row, with_backend_impl


def normalize(row: dict) -> dict:
    full = empty_row()
    unknown = set(row) - set(COLUMN_NAMES)
    if unknown:
        raise KeyError(f"not shard columns: {sorted(unknown)}")
    full.update(row)
    return full


def write_shard(rows: list[dict], path: str | Path) -> None:
    """Atomic: a crash mid-write never leaves a half shard that looks finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([normalize(r) for r in rows], schema=SHARD_SCHEMA)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    # A shard holds a row or two: column statistics, the stored Arrow schema and per-column
    # dictionary pages would make up more than half of each file. SHARD_SCHEMA's types round-trip
    # through Parquet's own schema (the shard checks and tests compare the read schema with it).
    try:
        pq.write_table(table, tmp, write_statistics=False, store_schema=False, use_dictionary=False)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk's half-written file would hold the space it lacks
        raise
    os.replace(tmp, path)


def read_shards(paths) -> pa.Table:
    """Concatenate shards; shards written by an older version lacking new columns get nulls."""
    tables = []
    for p in paths:
        t = pq.read_table(p)
        for field in SHARD_SCHEMA:
            if field.name not in t.column_names:
                t = t.append_column(field, pa.nulls(len(t), field.type))
        tables.append(with_backend_impl(t.select(SHARD_SCHEMA.names).cast(SHARD_SCHEMA)))
    if not tables:
        return SHARD_SCHEMA.empty_table()
    return pa.concat_tables(tables)
