"""A shard is not trusted by its file name: before aggregation, each one must be readable Parquet
of the shard schema (`inferbench.records.schema`) whose rows are the cell its path names.

A shard copied over another, a file from another tool, a half-written or foreign Parquet file
would otherwise end up in the summary as the cell its name claims (one cell twice, another
missing, and a report that says every cell ran). A measured row's values must be possible, too
(`value_problems`): a negative throughput or a NaN latency would be ranked like any other. Every problem found is reported at once, each
naming its file, with what to do: delete the file and run again, which measures that cell anew.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from inferbench.errors import UserError
from inferbench.records.schema import SHARD_SCHEMA, STATUSES, with_backend_impl

# shards/{model}/{backend}/{device}/{precision}/r{resolution}_b{batch}.parquet
SHARD_NAME = re.compile(r"r(\d+)_b(\d+)\.parquet")
PATH_KEYS = ("model", "backend", "device", "precision", "resolution", "batch_size")
REQUIRED = PATH_KEYS + ("io", "status")
MEASURED = ("ok", "inaccurate")  # the statuses of a row with figures
LATENCIES = ("latency_ms_median", "latency_ms_p99", "latency_ms_mean", "latency_ms_min", "latency_ms_max")
# throughput_ips is the median of the rounds' throughputs, each batch / that round's median
# latency (inferbench.measure.stats); latency_ms_median is the median over every round's
# iterations, which lies between the rounds' medians. So batch / latency_ms_median lies within the
# rounds' range, as throughput_ips does, and the two differ by at most the rounds' spread
# (ips_spread_pct); the slack covers rounding and the mean of the two middle values.
CONSISTENCY_SLACK = 0.01


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
        return with_backend_impl(table.select(SHARD_SCHEMA.names).cast(SHARD_SCHEMA))
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


def _number(value) -> float | None:
    return None if value is None else float(value)


def value_problems(row: dict) -> list[str]:
    """What is impossible about one measured row's values (empty when nothing is)."""
    out = []
    ips = _number(row.get("throughput_ips"))
    if ips is None or not math.isfinite(ips) or ips <= 0:
        out.append(f"throughput_ips is {ips}, not a finite number above zero")
    bad_latencies = [f"{name} {_number(row.get(name))}" for name in LATENCIES
                     if row.get(name) is None or not math.isfinite(row[name]) or row[name] <= 0]
    if bad_latencies:
        out.append(f"latencies not finite and above zero: {', '.join(bad_latencies)}")
    top1 = _number(row.get("top1_agreement"))
    if top1 is not None and not 0.0 <= top1 <= 1.0:  # NaN fails both comparisons, as it should
        out.append(f"top1_agreement is {top1}, outside [0, 1]")
    err = _number(row.get("max_abs_err"))
    if err is not None and err < 0:  # NaN (no accuracy measured) is allowed
        out.append(f"max_abs_err is {err}, below zero")
    median = _number(row.get("latency_ms_median"))
    batch = row.get("batch_size")
    if not out and median and batch:
        implied = batch * 1000.0 / median
        spread = _number(row.get("ips_spread_pct"))
        spread = spread if spread is not None and math.isfinite(spread) and spread >= 0 else 0.0
        limit = math.log1p(spread / 100.0) + math.log1p(CONSISTENCY_SLACK)
        if abs(math.log(ips / implied)) > limit:
            out.append(f"throughput_ips {ips:.6g} does not match batch_size / latency_ms_median = {implied:.6g} "
                       f"images/s (allowed: the rounds' spread {spread:.3g}% plus {100 * CONSISTENCY_SLACK:g}%)")
    return out


def check_values(table: pa.Table) -> None:
    """Every measured row's figures are possible: one message for all that are not."""
    problems = []
    columns = ["status", "io", "batch_size", "throughput_ips", "ips_spread_pct", "top1_agreement", "max_abs_err",
               *LATENCIES]
    for row in table.select(columns).to_pylist():
        if row["status"] in MEASURED:
            problems += [f"{row['io']} row: {p}" for p in value_problems(row)]
    if problems:
        raise ShardProblem("its values are impossible (" + "; ".join(problems) + ")")


def read_checked(paths) -> pa.Table:
    """Every shard, checked, concatenated; a UserError naming every bad file if any is bad."""
    tables, problems = [], []
    for p in map(Path, paths):
        try:
            table = read_conforming(p)
            check_rows(table, cell_named_by(p))
            check_values(table)
            tables.append(table)
        except ShardProblem as exc:
            problems.append(f"{p}: {exc}")
    if problems:
        raise UserError(
            f"{len(problems)} shard file(s) cannot be trusted:\n  - " + "\n  - ".join(problems)
            + "\nDelete each file named above and run snakemake again: it measures those cells again."
        )
    return pa.concat_tables(tables) if tables else SHARD_SCHEMA.empty_table()
