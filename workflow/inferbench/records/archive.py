"""Pack a finished run into one verifiable .tar.gz, and check such an archive later.

Layout inside the archive (all under one top folder `inferbench-<run_id>/`):
    MANIFEST.json        format, run id, and sha256 + size of every other file
    environment.json     the environment columns of every cell (and those all cells share)
    summary.parquet, shards/..., tables/..., figures/..., logs/..., report.html, report.md,
    config.resolved.yaml (when the run left one)

The archive is deterministic: same files in, same bytes out (sorted members, zeroed
times and owners), so two archives of one run compare equal by checksum.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import pandas as pd

from inferbench.errors import UserError
from inferbench.records import schema

FORMAT = "inferbench-archive/1"
MANIFEST = "MANIFEST.json"
ENVIRONMENT = "environment.json"
SUMMARY = "summary.parquet"

# What a run's results folder contributes besides its cells' shards and logs; paths relative to
# it. Model artifacts (exports, engines) are left out on purpose: large, and rebuilt from the config.
INCLUDED_PATTERNS = [
    SUMMARY, "tables/**/*", "figures/**/*", "logs/**/*", "report.html", "report.md",
    "config.resolved.yaml", "harness_check.csv",
]
EXCLUDED_DIRS = {"archive"}
# A results folder may hold another configuration's files (one results_dir, two configs): what
# names a cell, a model or a resolution belongs to this run only when its summary has it.
CELL_FILES = {"shards": ".parquet", "logs/cells": ".log"}
MODEL_FOLDERS = ("logs/export",)
PER_RESOLUTION = re.compile(r"(?:tables|figures|logs/tables|logs/figures)/(?:[a-z_]*?)(\d+)(?:\.[a-z]+)+")

ENVIRONMENT_COLUMNS = [name for name, _ in schema.ENVIRONMENT]


# ---------------------------------------------------------------- naming


def run_id_of(summary: pd.DataFrame) -> str:
    """The summary's run id; several runs aggregated together get a stable hash of their ids."""
    ids = sorted(str(x) for x in summary["run_id"].dropna().unique() if str(x))
    if not ids:
        raise UserError("the summary has no run_id; pass --run-id")
    if len(ids) == 1:
        return safe_name(ids[0])
    return "multi-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


# ---------------------------------------------------------------- collecting


def cell_stems(summary: pd.DataFrame) -> set[str]:
    """Each cell of the summary as its files name it: model/backend/device/precision/r<px>_b<batch>."""
    keys = summary[["model", "backend", "device", "precision", "resolution", "batch_size"]].drop_duplicates()
    return {f"{m}/{b}/{d}/{p}/r{int(r)}_b{int(n)}" for m, b, d, p, r, n in keys.itertuples(index=False)}


def _belongs(rel: str, stems: set[str], models: set[str], resolutions: set[str]) -> bool:
    for folder, suffix in CELL_FILES.items():
        if rel.startswith(folder + "/"):
            return rel.endswith(suffix) and rel[len(folder) + 1:-len(suffix)] in stems
    for folder in MODEL_FOLDERS:
        if rel.startswith(folder + "/"):
            return rel[len(folder) + 1:].split("/", 1)[0] in models
    per_resolution = PER_RESOLUTION.fullmatch(rel)
    return per_resolution is None or per_resolution.group(1) in resolutions


def collect_files(results_dir: Path, summary: pd.DataFrame) -> list[Path]:
    """The result files of the summary's run, relative to results_dir, sorted: its cells' shards
    and logs, its models' export logs, its resolutions' tables and figures, and the run-wide files."""
    stems = cell_stems(summary)
    models = {str(m) for m in summary["model"].unique()}
    resolutions = {str(int(r)) for r in summary["resolution"].unique()}
    found = {Path("shards", stem + ".parquet") for stem in stems if (results_dir / "shards" / f"{stem}.parquet").is_file()}
    for pattern in INCLUDED_PATTERNS:
        for path in results_dir.glob(pattern):
            rel = path.relative_to(results_dir)
            if path.is_file() and rel.parts[0] not in EXCLUDED_DIRS and _belongs(rel.as_posix(), stems, models, resolutions):
                found.add(rel)
    return sorted(found, key=lambda p: p.as_posix())


def foreign_shards(results_dir, summary: pd.DataFrame) -> list[str]:
    """Shards in results_dir of cells that the summary does not hold: another configuration's."""
    shards = Path(results_dir) / "shards"
    stems = cell_stems(summary)
    return sorted(p.relative_to(results_dir).as_posix() for p in shards.rglob("*.parquet")
                  if p.relative_to(shards).as_posix()[:-len(".parquet")] not in stems)


def environment_document(summary: pd.DataFrame) -> dict:
    """Every cell's environment; values every cell shares are also lifted into `common`."""
    cols = [c for c in schema.CELL_KEY + ENVIRONMENT_COLUMNS if c in summary.columns]
    cells = json.loads(summary[cols].to_json(orient="records"))
    common = {c: cells[0][c] for c in ENVIRONMENT_COLUMNS if c in summary.columns and cells
              and all(cell[c] == cells[0][c] for cell in cells)}
    return {"common": common, "cells": cells}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_document(run_id: str, contents: dict[str, bytes]) -> dict:
    return {
        "format": FORMAT,
        "run_id": run_id,
        "files": {name: {"sha256": sha256_bytes(data), "bytes": len(data)} for name, data in sorted(contents.items())},
    }


# ---------------------------------------------------------------- writing


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # deterministic archives: times live in the data, not the tar headers
    tar.addfile(info, io.BytesIO(data))


def read_summary(results_dir) -> pd.DataFrame:
    summary_path = Path(results_dir) / SUMMARY
    if not summary_path.is_file():
        raise UserError(f"{summary_path} not found: archive needs a results folder with {SUMMARY}")
    return pd.read_parquet(summary_path)


def write_archive(results_dir, out_path, run_id: str | None = None) -> tuple[Path, dict]:
    """Packs results_dir into out_path; returns the path and the manifest."""
    results_dir = Path(results_dir)
    summary = read_summary(results_dir)
    run_id = safe_name(run_id) if run_id else run_id_of(summary)
    out_text = str(out_path).replace("{run_id}", run_id)
    out_path = Path(out_text)
    if out_path.is_dir() or out_text.endswith(("/", "\\")):
        out_path = out_path / f"inferbench-{run_id}.tar.gz"
    contents = {p.as_posix(): (results_dir / p).read_bytes() for p in collect_files(results_dir, summary)}
    contents[ENVIRONMENT] = json.dumps(environment_document(summary), indent=1, sort_keys=True).encode()
    manifest = manifest_document(run_id, contents)
    top = f"inferbench-{run_id}"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".partial")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, f"{top}/{MANIFEST}", json.dumps(manifest, indent=1, sort_keys=True).encode())
        for name in sorted(contents):
            _add(tar, f"{top}/{name}", contents[name])
    tmp.replace(out_path)  # a half-written archive never carries the final name
    return out_path, manifest


# ---------------------------------------------------------------- reading and verifying


def read_members(archive_path) -> dict[str, bytes]:
    """Every file in the archive, keyed by its path below the top folder. An archive written by
    `inferbench archive` holds regular files only, all under one top folder `inferbench-<run_id>`
    (the run id of its manifest): anything else (a link, a device, a folder entry, a member under
    another top folder or outside it) is refused before any content is trusted."""
    archive_path = Path(archive_path)
    if not archive_path.is_file():
        raise UserError(f"archive not found: {archive_path}")
    members, tops = {}, set()
    try:
        with tarfile.open(archive_path, "r:*") as tar:
            for info in tar.getmembers():
                parts = Path(info.name).parts
                if info.name.startswith("/") or ".." in parts or len(parts) < 2:
                    raise UserError(f"{archive_path}: unsafe or unexpected member path {info.name!r}")
                if not info.isfile():
                    raise UserError(f"{archive_path}: member {info.name!r} is {_kind(info)}, not a regular file; "
                                    "an inferbench archive holds regular files only")
                tops.add(parts[0])
                if len(tops) > 1:
                    raise UserError(f"{archive_path}: members under more than one top folder "
                                    f"({', '.join(sorted(tops))}); an inferbench archive has one")
                members[Path(*parts[1:]).as_posix()] = tar.extractfile(info).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"{archive_path} is not a readable .tar.gz: {exc}") from exc
    _check_top_folder(archive_path, tops, members)
    return members


def _kind(info: tarfile.TarInfo) -> str:
    if info.issym():
        return f"a symbolic link to {info.linkname!r}"
    if info.islnk():
        return f"a hard link to {info.linkname!r}"
    if info.isdir():
        return "a folder entry"
    return "a device, FIFO or other special file"


def _check_top_folder(archive_path: Path, tops: set, members: dict[str, bytes]) -> None:
    """The top folder is the one the manifest's run id names."""
    if not tops or MANIFEST not in members:
        return  # an empty archive or one without a manifest: verify_members says so
    try:
        run_id = json.loads(members[MANIFEST])["run_id"]
    except (ValueError, KeyError, TypeError):
        return  # verify_members names the broken manifest
    (top,) = tops
    if top != f"inferbench-{run_id}":
        raise UserError(f"{archive_path}: the members are under {top}/, but the manifest's run id "
                        f"{run_id!r} puts them under inferbench-{run_id}/")


def verify_members(members: dict[str, bytes]) -> dict[str, list[str]]:
    """{"changed": [...], "missing": [...], "extra": [...]} against the archive's own manifest."""
    if MANIFEST not in members:
        raise UserError(f"no {MANIFEST} in the archive: it was not written by `inferbench archive`")
    try:
        listed = json.loads(members[MANIFEST])["files"]
    except (ValueError, KeyError) as exc:
        raise UserError(f"{MANIFEST} is not valid: {exc}") from exc
    present = {name for name in members if name != MANIFEST}
    return {
        "changed": sorted(n for n in present & set(listed) if sha256_bytes(members[n]) != listed[n]["sha256"]),
        "missing": sorted(set(listed) - present),
        "extra": sorted(present - set(listed)),
    }


def read_summary_from_archive(archive_path) -> pd.DataFrame:
    members = read_members(archive_path)
    if SUMMARY not in members:
        raise UserError(f"{archive_path} holds no {SUMMARY}")
    return pd.read_parquet(io.BytesIO(members[SUMMARY]))
