"""A shard is not trusted by its file name: before aggregation, each one must be readable Parquet
of the shard schema (`inferbench.records.schema`) whose rows are the cell its path names.

A shard copied over another, a file from another tool, a half-written or foreign Parquet file
would otherwise end up in the summary as the cell its name claims (one cell twice, another
missing, and a report that says every cell ran). Every problem found is reported at once, each
naming its file, with what to do: delete the file and run again, which measures that cell anew.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from inferbench.errors import UserError
from inferbench.records.schema import SHARD_SCHEMA, STATUSES

# shards/{model}/{backend}/{device}/{precision}/r{resolution}_b{batch}.parquet
SHARD_NAME = re.compile(r"r(\d+)_b(\d+)\.parquet")
PATH_KEYS = ("model", "backend", "device", "precision", "resolution", "batch_size")
REQUIRED = PATH_KEYS + ("io", "status")


class ShardProblem(Exception):
    """What is wrong with one shard file."""


def cell_named_by(path: Path) -> dict:
    """The cell a shard's path names: {model, backend, device, precision, resolution, batch_size}."""
    match = SHARD_NAME.fullmatch(path.name)
    if not match or len(path.parts) < 6 or path.parts[-6] != "shards":
        raise ShardProblem("its path is not shards/MODEL/BACKEND/DEVICE/PRECISION/rRES_bBATCH.parquet, "
                           "so it names no cell")
    model, backend, device, precision = path.parts[-5:-1]
    return {"model": model, "backend": backend, "device": device, "precision": precision,
            "resolution": int(match.group(1)), "batch_size": int(match.group(2))}


def read_conforming(path: Path) -> pa.Table:
    """The file as a table of the shard schema. Columns a shard of an older version lacks come
    back as nulls; a column the schema does not know, or of a type that does not convert, is
    another tool's file."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ShardProblem(f"it is not a readable Parquet file ({exc})") from None
    unknown = [c for c in table.column_names if c not in SHARD_SCHEMA.names]
    if unknown:
        raise ShardProblem(f"it has columns the shard schema does not know ({', '.join(unknown[:5])}"
                           f"{', ...' if len(unknown) > 5 else ''}): it was not written by inferbench")
    for field in SHARD_SCHEMA:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(len(table), field.type))
    try:
        return table.select(SHARD_SCHEMA.names).cast(SHARD_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise ShardProblem(f"its columns do not have the shard schema's types ({exc})") from None


def check_rows(table: pa.Table, cell: dict) -> None:
    """Every row is the cell the path names, one row per io mode, with a known status."""
    if table.num_rows == 0:
        raise ShardProblem("it has no rows")
    missing = [c for c in REQUIRED if table.column(c).null_count == table.num_rows]
    if missing:
        raise ShardProblem(f"it has no values for {', '.join(missing)}")
    for key in PATH_KEYS:
        found = set(table.column(key).to_pylist())
        if found != {cell[key]}:
            shown = ", ".join(sorted(map(repr, found), key=str))
            raise ShardProblem(f"its rows are {key} {shown}, but its path names {key} {cell[key]!r}: "
                               "it holds another cell's results (copied or moved)")
    ios = table.column("io").to_pylist()
    if len(set(ios)) != len(ios):
        raise ShardProblem(f"it has more than one row for one io mode ({', '.join(map(str, ios))})")
    bad = sorted({s for s in table.column("status").to_pylist() if s not in STATUSES}, key=str)
    if bad:
        raise ShardProblem(f"status {', '.join(map(repr, bad))} is not one of {', '.join(STATUSES)}")


def read_checked(paths) -> pa.Table:
    """Every shard, checked, concatenated; a UserError naming every bad file if any is bad."""
    tables, problems = [], []
    for p in map(Path, paths):
        try:
            table = read_conforming(p)
            check_rows(table, cell_named_by(p))
            tables.append(table)
        except ShardProblem as exc:
            problems.append(f"{p}: {exc}")
    if problems:
        raise UserError(
            f"{len(problems)} shard file(s) cannot be trusted:\n  - " + "\n  - ".join(problems)
            + "\nDelete each file named above and run snakemake again: it measures those cells again."
        )
    return pa.concat_tables(tables) if tables else SHARD_SCHEMA.empty_table()
