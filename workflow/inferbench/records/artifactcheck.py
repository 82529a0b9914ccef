"""An exported artifact is trusted by its content: its manifest records the file's sha256 (and its
size and modification time), and the file is checked against that before a cell loads it.

Two checks. `problem(manifest)` hashes the file: a cell runs it before loading, since a cell must
never measure a file other than the one exported (a foreign model measures fast and wrong).
`stale_manifests(...)` runs when the workflow is read: a file whose size or modification time
differs from its manifest's is hashed, and where the hash differs too its manifest is removed, so
that Snakemake exports the artifact again and reruns the cells that load it (their shards are then
older than the new manifest). A file whose stat matches is not hashed there: it costs nothing for a
sweep of large engines, and the cell's own check still sees what the stat cannot.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CHUNK_BYTES = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def content_fields(artifact: str | Path) -> dict:
    """What a manifest records of its artifact's content."""
    st = os.stat(artifact)
    return {"artifact_bytes": st.st_size, "artifact_mtime_ns": st.st_mtime_ns, "artifact_sha256": sha256_file(artifact)}


def _artifact_of(manifest_path: Path, manifest: dict) -> Path:
    # relative to the manifest: results folders can move (archives, other mounts)
    return manifest_path.parent / Path(manifest["artifact_path"]).name


def problem(manifest_path: str | Path, manifest: dict, quick: bool = False) -> str | None:
    """Why the artifact of an `ok` manifest is not the one exported, or None. quick: a file whose
    size and modification time are the manifest's is taken as it is, without hashing."""
    if manifest.get("status") != "ok" or not manifest.get("artifact_path"):
        return None
    manifest_path = Path(manifest_path)
    artifact = _artifact_of(manifest_path, manifest)
    try:
        st = artifact.stat()
    except OSError as exc:
        return f"the artifact {artifact} cannot be read ({exc.strerror})"
    expected = manifest.get("artifact_sha256")
    if expected is None:
        return (f"the manifest {manifest_path} records no sha256 of its artifact {artifact} "
                "(written by an older version)")
    if quick and st.st_size == manifest.get("artifact_bytes") and st.st_mtime_ns == manifest.get("artifact_mtime_ns"):
        return None
    if st.st_size != manifest.get("artifact_bytes"):
        return (f"the artifact {artifact} is {st.st_size:,} bytes, its manifest {manifest_path} says "
                f"{manifest.get('artifact_bytes'):,}: it is damaged or was replaced")
    actual = sha256_file(artifact)
    if actual != expected:
        return (f"the artifact {artifact} has sha256 {actual[:16]}..., its manifest {manifest_path} says "
                f"{expected[:16]}...: it was changed or replaced")
    return None


def remedy(manifest_path: str | Path, manifest: dict) -> str:
    # a missing artifact is what the workflow's own check (stale_manifests) always sees
    artifact = _artifact_of(Path(manifest_path), manifest)
    return f"delete {artifact} and run snakemake again: it exports it again and measures again the cells that load it"


def stale_manifests(manifest_paths) -> list[tuple[str, str]]:
    """(manifest, why) for each `ok` manifest whose artifact is not the exported one. Unreadable
    manifests are left to the cell and the export rule, which report them."""
    out = []
    for path in manifest_paths:
        try:
            manifest = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        why = problem(path, manifest, quick=True)
        if why:
            out.append((str(path), why))
    return out
