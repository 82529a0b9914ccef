"""Archive and verify: a clean archive verifies; tampering is named file by file."""

import io
import json
import tarfile

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
    write_summary(df.iloc[:5], d / "shards" / "part-0.parquet")
    (d / "figures" / "224.png").write_bytes(b"\x89PNG fake")
    (d / "report.md").write_text("# report\n")
    (d / "config.resolved.yaml").write_text("seed: 0\n")
    return d


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
    assert {"MANIFEST.json", "environment.json", "summary.parquet", "shards/part-0.parquet", "figures/224.png",
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
