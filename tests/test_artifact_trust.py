"""An artifact is trusted by its content: the real Snakemake on a one-cell ONNX Runtime sweep
(CPU). A truncated ONNX file, or a foreign but valid one, is exported again by the next plain run
(never "nothing to do"); a file changed in place with its size and modification time kept, which
the workflow's quick check cannot see, stops the cell with a message naming the file and what to
delete, and doing that is enough."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from inferbench.records.artifactcheck import sha256_file
from sweep import REPO, job_blocks, snakemake

CONFIG = {"model": "resnet18", "weights": None, "seed": 0, "resolutions": [32], "batch_sizes": [2],
          "precisions": ["fp32"], "devices": ["cpu"], "backends": {"onnxruntime": {}},
          "measurement": {"warmup_iters": 1, "warmup_min_s": 0.0, "min_iters": 3, "min_time_s": 0.05,
                          "max_time_s": 1, "num_buffers": 1, "cpu_threads": 1},
          "results_dir": "results"}
SHARD = "results/shards/resnet18/onnxruntime/cpu/fp32/r32_b2.parquet"


def foreign_onnx(path: Path) -> None:
    """A valid ONNX model of another network (one Identity) under the export's input name."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "foreign", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)


def status_of(work: Path) -> tuple[str, str]:
    t = pq.read_table(work / SHARD, columns=["status", "reason"]).to_pylist()[0]
    return t["status"], t["reason"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    work = tmp_path_factory.mktemp("artifact-trust")
    (work / "c.yaml").write_text(yaml.safe_dump(CONFIG))
    snakemake(REPO, work, work / "c.yaml", SHARD)
    (manifest,) = (work / "results" / "artifacts").rglob("*.json")
    return work, manifest


def run_again(work: Path) -> str:
    proc = snakemake(REPO, work, work / "c.yaml", SHARD)
    return proc.stdout + proc.stderr


def test_the_manifest_records_the_artifacts_sha256(sweep):
    work, manifest = sweep
    m = json.loads(manifest.read_text())
    artifact = manifest.parent / m["artifact_path"]
    assert m["artifact_sha256"] == sha256_file(artifact) and m["artifact_bytes"] == artifact.stat().st_size
    assert status_of(work)[0] == "ok"


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_damaged_or_foreign_artifact_is_exported_again(sweep, damage):
    work, manifest = sweep
    m = json.loads(manifest.read_text())
    artifact = manifest.parent / m["artifact_path"]
    if damage == "truncated":
        os.truncate(artifact, 1000)
    else:
        foreign_onnx(artifact)
    log = run_again(work)
    assert f"the artifact {artifact.relative_to(work)}" in log and "exporting it again" in log, log[-3000:]
    blocks = job_blocks(log)
    assert "export_artifact" in blocks and "benchmark_cell" in blocks, log[-3000:]
    again = json.loads(manifest.read_text())
    assert sha256_file(artifact) == again["artifact_sha256"] and again["artifact_bytes"] > 100_000
    assert status_of(work)[0] == "ok"
    # and the run after that has nothing to do
    assert "export_artifact" not in job_blocks(run_again(work))


def test_a_cell_refuses_an_artifact_changed_in_place(sweep):
    """Same size and modification time, other bytes: the workflow's stat check lets it through, the
    cell's hash does not."""
    work, manifest = sweep
    m = json.loads(manifest.read_text())
    artifact = manifest.parent / m["artifact_path"]
    st = artifact.stat()
    with open(artifact, "r+b") as f:
        f.seek(st.st_size // 2)
        f.write(b"\0" * 64)
    os.utime(artifact, ns=(st.st_atime_ns, st.st_mtime_ns))
    (work / SHARD).unlink()
    run_again(work)
    status, reason = status_of(work)
    name = artifact.relative_to(work)
    assert status == "error" and f"the artifact {name} has sha256" in reason, reason
    # what the message says to do is enough
    assert f"delete {name} and run snakemake again" in reason, reason
    artifact.unlink()
    log = run_again(work)
    assert "export_artifact" in job_blocks(log) and status_of(work)[0] == "ok", log[-3000:]
