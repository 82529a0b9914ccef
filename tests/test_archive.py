"""Archive and verify: a clean archive verifies; tampering is named file by file."""

import io
import json
import tarfile

import pandas as pd
import pytest

from inferbench import cli
from inferbench.records import archive
from synthetic import synthetic_summary, write_summary


@pytest.fixture()
def results(tmp_path):
    d = tmp_path / "results"
    (d / "shards").mkdir(parents=True)
    (d / "figures").mkdir()
    df = synthetic_summary(batch_sizes=(1,), resolutions=(224,))
    write_summary(df, d / "summary.parquet")
    for _, row in df.iloc[:5].iterrows():  # shards where the workflow writes them, one per cell
        shard = d / "shards" / _stem(row.model, row.backend, row.device, row.precision, row.resolution,
                                     row.batch_size)
        shard.parent.mkdir(parents=True, exist_ok=True)
        write_summary(df.iloc[[_]], shard.with_suffix(".parquet"))
    (d / "figures" / "224.png").write_bytes(b"\x89PNG fake")
    (d / "report.md").write_text("# report\n")
    (d / "config.resolved.yaml").write_text("seed: 0\n")
    return d


def _stem(model, backend, device, precision, resolution, batch) -> str:
    return f"{model}/{backend}/{device}/{precision}/r{resolution}_b{batch}"


def _rewrite(src, dst, change):
    """Copies an archive member by member, letting `change(name, data)` edit, drop (None) or keep."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w:gz") as tout:
        for info in tin.getmembers():
            data = change(info.name, tin.extractfile(info).read())
            if data is not None:
                info.size = len(data)
                tout.addfile(info, io.BytesIO(data))
        extra = change("__extra__", b"")
        if extra is not None:
            info = tarfile.TarInfo(info.name.split("/")[0] + "/extra.txt")
            info.size = len(extra)
            tout.addfile(info, io.BytesIO(extra))


def test_archive_contents_and_default_name(results, capsys):
    assert cli.main(["archive", "--results", str(results), "--out", str(results / "archive") + "/"]) == 0
    path = results / "archive" / "inferbench-run-a.tar.gz"
    members = archive.read_members(path)
    first = _stem("resnet50", "pytorch", "cuda", "fp32", 224, 1)
    assert {"MANIFEST.json", "environment.json", "summary.parquet", f"shards/{first}.parquet", "figures/224.png",
            "report.md", "config.resolved.yaml"} <= set(members)
    env = json.loads(members["environment.json"])
    assert env["common"]["torch_version"] == "2.11.0+cu130"
    assert "gpu_name" not in env["common"]  # cpu cells record none, so it varies per cell
    assert len(env["cells"]) == 30 and env["cells"][0]["torch_version"] == "2.11.0+cu130"
    assert cli.main(["verify", str(path)]) == 0


def test_archive_is_deterministic(results, tmp_path):
    a, _ = archive.write_archive(results, tmp_path / "a.tar.gz")
    b, _ = archive.write_archive(results, tmp_path / "b.tar.gz")
    assert a.read_bytes() == b.read_bytes()


def test_several_run_ids_get_a_hash(results, tmp_path):
    df = synthetic_summary(batch_sizes=(1,), resolutions=(224,))
    df.loc[df.index[:3], "run_id"] = "run-b"
    assert archive.run_id_of(df).startswith("multi-")


def test_verify_names_changed_missing_and_extra_files(results, tmp_path, capsys):
    good, _ = archive.write_archive(results, tmp_path / "good.tar.gz", run_id="r1")
    bad = tmp_path / "bad.tar.gz"

    def tamper(name, data):
        if name.endswith("report.md"):
            return data + b"edited\n"
        if name.endswith("figures/224.png"):
            return None
        if name == "__extra__":
            return b"smuggled"
        return data

    _rewrite(good, bad, tamper)
    capsys.readouterr()
    assert cli.main(["verify", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "changed: report.md" in out
    assert "missing: figures/224.png" in out
    assert "extra: extra.txt" in out
    assert "summary.parquet" not in out


def test_verify_rejects_non_archive(tmp_path, capsys):
    (tmp_path / "x.tar.gz").write_bytes(b"not a tar")
    assert cli.main(["verify", str(tmp_path / "x.tar.gz")]) == 2
    assert "not a readable" in capsys.readouterr().err


def test_an_archive_holds_its_own_run_only(results, tmp_path, capsys):
    """Two configurations in one results folder: the second run's files (shards, cell and export
    logs, tables and figures of its resolution) stay out of the first one's archive, and the
    archive's output names the other shards."""
    summary = pd.read_parquet(results / "summary.parquet")
    other = summary.iloc[:2].assign(model="resnet18", resolution=96)
    other_files = []
    for _, row in other.iterrows():
        stem = _stem(row.model, row.backend, row.device, row.precision, row.resolution, row.batch_size)
        other_files += [f"shards/{stem}.parquet", f"logs/cells/{stem}.log"]
    other_files += ["logs/export/resnet18/onnxruntime/precision-fp32.log", "tables/96.md", "figures/latency_96.png"]
    for rel in other_files:
        (results / rel).parent.mkdir(parents=True, exist_ok=True)
        (results / rel).write_bytes(b"another configuration's")
    own_log = results / "logs" / "cells" / (_stem("resnet50", "pytorch", "cuda", "fp32", 224, 1) + ".log")
    own_log.parent.mkdir(parents=True, exist_ok=True)
    own_log.write_text("measured\n")
    capsys.readouterr()
    assert cli.main(["archive", "--results", str(results), "--out", str(tmp_path / "a.tar.gz")]) == 0
    members = set(archive.read_members(tmp_path / "a.tar.gz"))
    assert not members & set(other_files), sorted(members & set(other_files))
    own_shards = {f"shards/{s}.parquet" for s in archive.cell_stems(summary) if (results / f"shards/{s}.parquet").exists()}
    assert len(own_shards) == 5 and {m for m in members if m.startswith("shards/")} == own_shards
    assert own_log.relative_to(results).as_posix() in members
    err = capsys.readouterr().err
    assert "warning" in err and "2 shard(s)" in err
    assert all(rel in err for rel in other_files if rel.startswith("shards/"))
