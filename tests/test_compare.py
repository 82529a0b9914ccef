"""Compare: a jittered rerun is within noise; a 20% slower run is flagged and fails the gate."""

import pytest

from inferbench import cli
from inferbench.records import archive
from inferbench.reporting import compare
from synthetic import slowed, synthetic_summary, write_summary


@pytest.fixture(scope="module")
def old():
    return synthetic_summary(seed=0, run_id="run-a", batch_sizes=(1, 8))


def test_jittered_rerun_is_within_noise(old):
    rerun = synthetic_summary(seed=7, run_id="run-b", batch_sizes=(1, 8), jitter_rel=0.01)
    table, counts = compare.compare(old, rerun)
    assert len(table) == (old["status"] == "ok").sum()
    assert set(table["verdict"]) == {"within noise"}
    assert not compare.has_regression(table, counts)


def test_twenty_percent_slower_cells_are_flagged(old):
    mask = (old["backend"] == "onnxruntime") & (old["device"] == "cuda")
    new = slowed(old, 1.2, mask)
    table, counts = compare.compare(old, new)
    slower = table[table["verdict"] == "slower"]
    # host-bound cells (GPU busy 62% at batch 1, 224 px) are gated only beyond HOST_MARGIN
    busy = old["gpu_busy_pct"].fillna(100) >= 90
    assert len(slower) == (mask & (old["status"] == "ok") & busy).sum() > 0
    assert slower["cell"].str.contains("onnxruntime").all()
    assert slower["latency_change_pct"].round(1).eq(20.0).all()
    assert compare.has_regression(table, counts)


def test_faster_is_not_a_regression(old):
    table, counts = compare.compare(old, slowed(old, 1 / 1.25))
    assert set(table[~table["host_bound"]]["verdict"]) == {"faster"}
    assert not compare.has_regression(table, counts)


def test_noisy_cell_needs_a_bigger_change():
    noisy = [10.0, 13.0, 8.0, 11.0, 9.5, 12.0, 7.5, 10.5, 9.0, 11.5] * 3
    steady = [10.0, 10.1, 9.9, 10.05, 9.95] * 6
    assert compare.median_ci_rel_halfwidth_from_samples(noisy) > 5 * compare.median_ci_rel_halfwidth_from_samples(steady)
    assert compare.verdict(1.08, compare.DEFAULT_FLOOR_PCT / 100) == "slower"
    assert compare.verdict(1.08, 0.15) == "within noise"


def test_ok_to_error_counts_as_regression(old):
    new = old.copy()
    i = new.index[(new["status"] == "ok")][0]
    new.loc[i, "status"], new.loc[i, "reason"] = "error", "boom"
    table, counts = compare.compare(old, new)
    assert counts["broke"] == 1 and compare.has_regression(table, counts)


def test_cli_accepts_archive_folder_and_parquet(tmp_path, old, capsys):
    results = tmp_path / "results"
    results.mkdir()
    write_summary(old, results / "summary.parquet")
    arch, _ = archive.write_archive(results, tmp_path / "old.tar.gz")
    write_summary(slowed(old, 1.2), tmp_path / "slow.parquet")
    assert cli.main(["compare", str(arch), str(results), "--fail-on-regression"]) == 0
    assert "0 slower" in capsys.readouterr().out
    assert cli.main(["compare", str(arch), str(tmp_path / "slow.parquet"), "--fail-on-regression"]) == 1
    assert "regression" in capsys.readouterr().out
    assert cli.main(["compare", str(arch), str(tmp_path / "nothing")]) == 2


def test_host_bound_cells_are_gated_only_beyond_the_host_margin(old):
    # the synthetic sweep's cuda cells at batch 1, 224 px leave the GPU idle (gpu_busy_pct 62)
    table, counts = compare.compare(old, slowed(old, 1.2))
    host_bound = table[table["host_bound"]]
    assert len(host_bound) and host_bound["cell"].str.contains("cuda").all()
    assert host_bound["cell"].str.contains("224px bs1").all()
    assert set(host_bound["verdict"]) == {"within noise"}  # 20% is what the host moves between runs
    assert set(table[~table["host_bound"]]["verdict"]) == {"slower"}
    text = compare.format_report(table, counts)
    assert f"{len(host_bound)} host-bound" in text and f"above {1 + compare.HOST_MARGIN:g}" in text
    # a 2x slowdown is beyond what the host moves: still called, marked
    table, counts = compare.compare(old, slowed(old, 2.0))
    assert set(table[table["host_bound"]]["verdict"]) == {"slower"}
    assert f"slower {compare.HOST_BOUND_MARK}" in compare.format_report(table, counts)
    assert compare.has_regression(table, counts)


def test_the_per_call_flag_decides_over_the_busy_share(old):
    new = slowed(old, 1.2)
    busy_cells = old["gpu_busy_pct"].fillna(0) >= 90
    old, new = old.assign(host_bound=busy_cells & (old["device"] == "cuda")), new.copy()
    new["host_bound"] = old["host_bound"]
    table, _ = compare.compare(old, new)
    # the flag says the busy cells are host-bound, and the idle ones (busy 62%) are not
    assert set(table[table["host_bound"]]["verdict"]) == {"within noise"}
    idle = table[table["cell"].str.contains("cuda.*224px bs1") & ~table["cell"].str.contains("torchscript·fp32")]
    assert len(idle) and idle["verdict"].eq("slower").all()  # (torchscript fp32 bs1 is the noisy cell)


def test_a_contended_cell_is_gated_only_beyond_the_host_margin(old):
    cpu = old["device"] == "cpu"
    loaded = old.assign(host_other_cpu_pct=cpu.map({True: 45.0, False: 0.0}))
    table, _ = compare.compare(old.assign(host_other_cpu_pct=0.0), slowed(loaded, 1.4, cpu))
    cells = table[table["cell"].str.contains("·cpu·")]
    assert len(cells) and cells["contended"].all() and set(cells["verdict"]) == {"within noise"}
    table, counts = compare.compare(old.assign(host_other_cpu_pct=0.0), slowed(loaded, 2.0, cpu))
    assert set(table[table["cell"].str.contains("·cpu·")]["verdict"]) == {"slower"}
    assert compare.has_regression(table, counts)


def test_a_ten_percent_slowdown_of_a_busy_cell_with_one_percent_noise_is_caught():
    old = synthetic_summary(seed=0, run_id="run-a", batch_sizes=(64,), resolutions=(384,), jitter_rel=0.01)
    mask = (old["device"] == "cuda") & (old["status"] == "ok")
    assert (old.loc[mask, "gpu_busy_pct"] >= 90).all()
    new = slowed(synthetic_summary(seed=3, run_id="run-b", batch_sizes=(64,), resolutions=(384,), jitter_rel=0.01),
                 1.1, mask)
    table, counts = compare.compare(old, new)
    cuda = table[table["cell"].str.contains("·cuda·")]
    assert len(cuda) and set(cuda["verdict"]) == {"slower"}
    assert set(table[~table["cell"].str.contains("·cuda·")]["verdict"]) == {"within noise"}
    assert compare.has_regression(table, counts)
