"""An artifact is trusted by its content: the real Snakemake on a one-cell ONNX Runtime sweep
(CPU). A truncated ONNX file, or a foreign but valid one, is exported again by the next plain run
(never "nothing to do"); a file changed in place with its size and modification time kept, which
the workflow's quick check cannot see, stops the cell with a message naming the file and what to
delete, and doing that is enough. A foreign model whose manifest was rewritten to match it (as a
wrong re-export would leave it) passes those checks, and its outputs give it away: the cell is
`inaccurate`, never starred or named in a finding."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from inferbench import cli
from inferbench.records.artifactcheck import content_fields, sha256_file
from sweep import REPO, job_blocks, snakemake

CONFIG = {"model": "resnet18", "weights": None, "seed": 0, "resolutions": [32], "batch_sizes": [2],
          "precisions": ["fp32"], "devices": ["cpu"], "backends": {"onnxruntime": {}, "pytorch": {}},
          "measurement": {"warmup_iters": 1, "warmup_min_s": 0.0, "min_iters": 3, "min_time_s": 0.05,
                          "max_time_s": 1, "num_buffers": 1, "cpu_threads": 1},
          "results_dir": "results"}
SHARD = "results/shards/resnet18/onnxruntime/cpu/fp32/r32_b2.parquet"
BASELINE_SHARD = "results/shards/resnet18/pytorch/cpu/fp32/r32_b2.parquet"  # run by the last test only


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


def foreign_classifier_onnx(path: Path) -> None:
    """A valid ONNX classifier of another network, with the export's input and output names and
    shapes: global average pooling and one random linear layer to 1000 classes."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])
    weights = [numpy_helper.from_array(rng.normal(size=(3, 1000)).astype(np.float32), "w"),
               numpy_helper.from_array(np.zeros(1000, np.float32), "b")]
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "w", "b"], ["logits"])]
    model = helper.make_model(helper.make_graph(nodes, "foreign", [x], [y], weights),
                              opset_imports=[helper.make_opsetid("", 17)])
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


def test_a_foreign_model_with_a_matching_manifest_is_inaccurate_never_ranked(sweep, tmp_path, capsys):
    """Replace the ONNX file by another classifier and write its sha256, size and time into the
    manifest: the artifact checks pass, the cell runs, and its outputs are not the model's."""
    work, manifest = sweep
    m = json.loads(manifest.read_text())
    artifact = manifest.parent / m["artifact_path"]
    foreign_classifier_onnx(artifact)
    manifest.write_text(json.dumps(dict(m, **content_fields(artifact))))
    (work / SHARD).unlink()
    log = snakemake(REPO, work, work / "c.yaml", SHARD, BASELINE_SHARD).stdout
    assert "export_artifact" not in job_blocks(log), log[-3000:]  # the checks took the file as exported
    row = pq.read_table(work / SHARD).to_pylist()[0]
    assert row["status"] == "inaccurate", (row["status"], row["reason"])
    assert row["reason"].startswith("outputs disagree with the fp32 reference: top-1 agreement "), row["reason"]
    assert "tolerance" in row["reason"] and row["max_abs_err"] > 0.1
    assert row["throughput_ips"] > 0 and row["latency_ms_median"] > 0  # its figures are kept
    # the product's own aggregation, tables and report
    out = tmp_path / "out"
    out.mkdir()
    shards = [str(work / SHARD), str(work / BASELINE_SHARD)]
    assert cli.main(["aggregate", "--shards", *shards, "--out", str(out / "summary.parquet")]) == 0
    assert cli.main(["tables", "--summary", str(out / "summary.parquet"), "--resolution", "32",
                     "--md", str(out / "32.md")]) == 0
    assert cli.main(["report", "--summary", str(out / "summary.parquet"), "--figures-dir", str(out / "figures"),
                     "--md", str(out / "report.md")]) == 0
    capsys.readouterr()
    md = (out / "32.md").read_text()
    foreign = next(line for line in md.splitlines() if line.startswith("| onnxruntime·fp32·cpu |"))
    assert "✗" in foreign and "★" not in foreign, foreign
    assert "★" in next(line for line in md.splitlines() if line.startswith("| pytorch·fp32·cpu |"))
    assert "inaccurate: outputs disagree with the fp32 reference" in md
    report = (out / "report.md").read_text()
    read_first = report.split("## Read first", 1)[1].split("## Environment", 1)[0]
    assert "onnxruntime·fp32·cpu at 32 px, batch 2: outputs disagree" in read_first, read_first
    found = report.split("## Findings", 1)[1].split("## Figures", 1)[0]
    assert "onnxruntime·fp32" not in found, found  # (where the time went may name the backend: it ran)
    assert "pytorch·fp32 is fastest" in found, found
