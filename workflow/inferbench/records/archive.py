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

import errno
import gzip
import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass, field
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

CHUNK_BYTES = 1 << 20  # members are hashed in chunks of this size: memory stays bounded, whatever they hold
MANIFEST_MAX_BYTES = 64 << 20
SKIP_MAX_BYTES = 64 << 20  # a member this much larger than its manifest entry ends the pass  # the manifest is read whole; one larger than this was not written by us
# Errors of the machine, not of the archive: no memory to read it with, or a failing disk.
RESOURCE_ERRNOS = {errno.ENOMEM, errno.ENOSPC, errno.EIO, errno.EDQUOT}


class ResourceError(Exception):
    """Reading the archive ran out of a resource (memory, disk): nothing is known about its content."""


@dataclass
class Scan:
    """What one pass over an archive found: each file's sha256 and size (None: not read, because
    its header already disagreed with the manifest or it is not in it), the manifest, and the bytes
    of the members asked for."""
    digests: dict = field(default_factory=dict)  # name below the top folder -> (sha256 | None, bytes)
    kept: dict = field(default_factory=dict)  # name -> bytes, for the members asked for
    tops: set = field(default_factory=set)
    stopped_at: str | None = None  # the member larger than its manifest entry, where reading stopped

    @property
    def listed(self) -> dict | None:
        """The manifest's files, when the manifest has been read and is valid."""
        try:
            return json.loads(self.kept[MANIFEST])["files"]
        except (KeyError, ValueError, TypeError):
            return None


def _member_name(archive_path: Path, info: tarfile.TarInfo) -> str | None:
    """The member's path, without the `./` that plain tar writes; None for a folder entry (plain
    tar writes those too). Anything unsafe is refused."""
    parts = [p for p in Path(info.name).parts if p != "."]
    if info.name.startswith("/") or ".." in parts:
        raise UserError(f"{archive_path}: unsafe or unexpected member path {info.name!r}")
    if info.isdir():
        return None
    if not info.isfile():
        raise UserError(f"{archive_path}: member {info.name!r} is {_kind(info)}, not a regular file; "
                        "an inferbench archive holds regular files only")
    if len(parts) < 2:
        raise UserError(f"{archive_path}: unsafe or unexpected member path {info.name!r}")
    return "/".join(parts)


def _stream(archive_path: Path) -> tarfile.TarFile:
    """The archive as a tar stream, read once from the start. gzip's own reader for .gz: unlike
    tarfile's stream mode it reads a file of several gzip members (as `cat a.gz b.gz` makes) whole."""
    with open(archive_path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    if gzipped:
        return tarfile.open(fileobj=gzip.open(archive_path, "rb"), mode="r|")
    return tarfile.open(archive_path, "r|*")


def _hash(stream, keep: bool) -> tuple[str, int, bytes | None]:
    digest, size, chunks = hashlib.sha256(), 0, []
    while chunk := stream.read(CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
        if keep:
            chunks.append(chunk)
    return digest.hexdigest(), size, (b"".join(chunks) if keep else None)


def scan(archive_path, keep=frozenset()) -> Scan:
    """One streaming pass over the archive: every regular file's sha256, in chunks. The manifest
    (written first) is read whole, and so are the members named in `keep` (all, when keep is None);
    a member larger than its manifest entry, or not in the manifest, is never read. An archive
    written by `inferbench archive` holds regular files only, all under one top folder
    `inferbench-<run_id>` (the run id of its manifest); folder entries and a leading `./` (a
    repack with plain tar) are accepted; anything else (a link, a device, a member outside the top
    folder or under another) is refused before any content is trusted."""
    archive_path = Path(archive_path)
    if not archive_path.is_file():
        raise UserError(f"archive not found: {archive_path}")
    found = Scan()
    try:
        with _stream(archive_path) as tar:
            for info in tar:
                path = _member_name(archive_path, info)
                if path is None:
                    continue
                top, name = path.split("/", 1)
                found.tops.add(top)
                if len(found.tops) > 1:
                    raise UserError(f"{archive_path}: members under more than one top folder "
                                    f"({', '.join(sorted(found.tops))}); an inferbench archive has one")
                listed = found.listed
                if name == MANIFEST and info.size > MANIFEST_MAX_BYTES:
                    raise UserError(f"{archive_path}: {MANIFEST} claims {info.size} bytes; an inferbench manifest "
                                    f"is far smaller (at most {MANIFEST_MAX_BYTES})")
                if listed is not None and name not in listed:
                    found.digests[name] = (None, info.size)  # extra: named, never read
                    continue
                if listed is not None and info.size > listed[name].get("bytes", 0):
                    # changed, and refused unread; passing over it still decompresses it, so one
                    # far larger (a gzip bomb) ends the pass here rather than after gigabytes
                    found.digests[name] = (None, info.size)
                    if info.size - listed[name].get("bytes", 0) > SKIP_MAX_BYTES:
                        found.stopped_at = name
                        break
                    continue
                wanted = name == MANIFEST or keep is None or name in keep
                sha, size, data = _hash(tar.extractfile(info), wanted)
                found.digests[name] = (sha, size)
                if wanted:
                    found.kept[name] = data
    except MemoryError as exc:
        raise ResourceError(f"out of memory while reading {archive_path}") from exc
    except OSError as exc:
        if exc.errno in RESOURCE_ERRNOS:
            raise ResourceError(f"{archive_path}: {exc.strerror} while reading it") from exc
        raise UserError(f"{archive_path} is not a readable .tar.gz: {exc}") from exc
    except (tarfile.TarError, EOFError) as exc:
        raise UserError(f"{archive_path} is not a readable .tar.gz: {exc}") from exc
    _check_top_folder(archive_path, found.tops, found.kept)
    return found


def read_members(archive_path) -> dict[str, bytes]:
    """Every file in the archive, keyed by its path below the top folder, in memory: for small
    archives and tests; `verify` uses scan()."""
    return scan(archive_path, keep=None).kept


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
        return  # an empty archive or one without a manifest: verify_scan says so
    try:
        run_id = json.loads(members[MANIFEST])["run_id"]
    except (ValueError, KeyError, TypeError):
        return  # verify_scan names the broken manifest
    (top,) = tops
    if top != f"inferbench-{run_id}":
        raise UserError(f"{archive_path}: the members are under {top}/, but the manifest's run id "
                        f"{run_id!r} puts them under inferbench-{run_id}/")


def verify_scan(found: Scan) -> dict[str, list[str]]:
    """{"changed": [...], "missing": [...], "extra": [...]} against the archive's own manifest."""
    if MANIFEST not in found.kept:
        raise UserError(f"no {MANIFEST} in the archive: it was not written by `inferbench archive`")
    try:
        listed = json.loads(found.kept[MANIFEST])["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{MANIFEST} is not valid: {exc}") from exc
    present = {name for name in found.digests if name != MANIFEST}
    return {
        "changed": sorted(n for n in present & set(listed) if found.digests[n][0] != listed[n]["sha256"]
                          or found.digests[n][1] != listed[n].get("bytes", found.digests[n][1])),
        # after a refused member nothing was read: what is not seen is unknown, not missing
        "missing": [] if found.stopped_at else sorted(set(listed) - present),
        "extra": sorted(present - set(listed)),
    }


def read_summary_from_archive(archive_path) -> pd.DataFrame:
    found = scan(archive_path, keep={SUMMARY})
    if SUMMARY not in found.kept:
        raise UserError(f"{archive_path} holds no {SUMMARY}")
    return pd.read_parquet(io.BytesIO(found.kept[SUMMARY]))
