"""The package's layout and imports, and the source files each rule lists as inputs (what makes
Snakemake rerun a job after a code edit): every module a job runs, and no other backend's."""

from __future__ import annotations

import modulefinder
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inferbench.backends import KNOWN_BACKENDS
from inferbench.sweep import codedeps
from inferbench.sweep.config import backend_of
from sweep import REPO, snakemake

PKG = REPO / "workflow" / "inferbench"
SUBPACKAGES = [p.parent.relative_to(PKG.parent).as_posix().replace("/", ".")
               for p in sorted(PKG.glob("*/**/__init__.py"))]
BACKEND_FILES = {name: PKG / "backends" / f"{module}.py" for name, module in KNOWN_BACKENDS.items()}
# The backend registry names every backend's module. A job takes from it only its own backend's
# module, which is an input already; listing the registry would rerun every job when a backend is
# added (inferbench.sweep.codedeps.REGISTRY).
REGISTRY = PKG / "backends" / "__init__.py"
# The dispatcher hands the arguments to the command's module and measures nothing: editing its
# table or messages reruns no job (inferbench.sweep.codedeps.DISPATCHER).
DISPATCHER = PKG / "cli.py"


# ------------------------------------------------------------------ layout and import cycles


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_each_folder_imports_on_its_own_and_says_what_lives_there(name):
    proc = subprocess.run([sys.executable, "-c", f"import {name} as m; print(bool((m.__doc__ or '').strip()))"],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(PKG.parent)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True", f"{name}/__init__.py has no docstring"


def test_the_command_table_names_each_command_module_once_and_no_other():
    from inferbench import cli

    modules = sorted(p.stem for p in (PKG / "commands").glob("*.py") if p.stem != "__init__")
    assert sorted(cli.COMMANDS.values()) == modules
    parser = cli.build_parser()  # imports every command module: a broken one is an error here
    assert parser.parse_args(["validate", "x.yaml"]).command == "validate"


def test_no_two_modules_import_each_other():
    graph = codedeps.graph()
    assert "inferbench.process.warm" in graph["inferbench.process.warmpool"]  # a function-level import is seen
    pairs = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets if a in graph[b]})
    assert not pairs, f"modules that import each other: {pairs}"


def test_no_import_cycles():
    graph = codedeps.graph()
    state, cycles = {}, []

    def visit(name, path):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_bare_loop_imports_nothing_from_the_harness_it_checks():
    assert codedeps.graph()["inferbench.selfcheck.bareloop"] == frozenset()


# A layer, and what it must not import, directly or through any module it imports. The grid and
# the errors sit at the bottom (everything imports them); what runs processes and writes records
# knows no backend, sweep or measurement; the backends know the grid but not how a config is
# validated or a job described. An upward import puts the upper module into the lower one's
# jobs' code inputs: editing it would rerun them.
ABOVE_PROCESS = ("backends", "sweep", "measure", "commands", "reporting", "selfcheck")
LAYERS = {
    "errors": ("*",),
    "sweep.grid": ("*",),
    "process": ABOVE_PROCESS,
    "records": ABOVE_PROCESS,
    "backends": ("sweep.config", "sweep.spec", "models", "measure", "commands", "reporting", "selfcheck"),
}


def upward_imports(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    """Each import edge, reached from `layer`'s modules, that lands in a forbidden package."""
    graph = codedeps.graph()

    def inside(name: str, package: str) -> bool:
        full = f"inferbench.{package}"
        return name == full or name.startswith(full + ".")

    def bad(name: str) -> bool:
        if "*" in forbidden:  # nothing of the package but the top-level package itself
            return name != "inferbench"
        return any(inside(name, f) for f in forbidden)

    reached = codedeps.closure([m for m in graph if inside(m, layer)])
    return sorted(f"{a} -> {b}" for a in reached for b in graph[a] if bad(b) and not inside(b, layer))


@pytest.mark.parametrize("layer", list(LAYERS))
def test_no_layer_imports_a_layer_above_it(layer):
    assert not upward_imports(layer, LAYERS[layer]), f"{layer} imports upwards: {upward_imports(layer, LAYERS[layer])}"


def test_a_cell_job_runs_neither_validation_nor_the_command_line():
    """Rewording a validation message, or editing the command table, reruns no cell or export."""
    for backend in KNOWN_BACKENDS:
        for command in ("cell", "export"):
            files = {Path(f) for f in codedeps.job_code(command, backend)}
            assert PKG / "sweep" / "grid.py" in files  # the grid it does run
            assert not files & {PKG / "sweep" / "config.py", PKG / "cli.py"}, (command, backend)


# ------------------------------------------------------------------ code inputs, computed here


def imported_files(*scripts: Path) -> set[Path]:
    """The package's source files that `scripts` import, directly or indirectly, found by the
    standard library's modulefinder (its own reading of the bytecode, not codedeps'). Only the
    package is on its path: other libraries are noted as missing, not read."""
    finder = modulefinder.ModuleFinder(path=[str(PKG.parent)])
    for script in scripts:
        finder.run_script(str(script))
    return {Path(m.__file__).resolve() for name, m in finder.modules.items()
            if name.split(".")[0] == "inferbench" and m.__file__}


def expected_code(command: str, backend: str | None = None) -> set[Path]:
    scripts = [PKG / "__main__.py", PKG / "commands" / f"{command}.py"] + ([BACKEND_FILES[backend]] if backend else [])
    return imported_files(*scripts) - {REGISTRY, DISPATCHER}


@pytest.mark.parametrize("backend", list(KNOWN_BACKENDS))
def test_a_cell_and_an_export_list_their_own_backend_and_no_other(backend):
    for command in ("cell", "export"):
        files = {Path(f) for f in codedeps.job_code(command, backend)}
        assert expected_code(command, backend) <= files
        assert BACKEND_FILES[backend] in files
        assert not files & {f for name, f in BACKEND_FILES.items() if name != backend}, (command, backend)


def test_the_harness_check_lists_the_bare_loop_it_starts_by_name():
    # `python -m inferbench.selfcheck.bareloop` in a subprocess: no import leads there
    assert PKG / "selfcheck" / "bareloop.py" in {Path(f) for f in codedeps.job_code("harness_check")}


def test_an_unknown_command_or_backend_is_named():
    with pytest.raises(ValueError, match="no command module inferbench.commands.nosuch; commands: .*cell"):
        codedeps.job_code("nosuch")
    with pytest.raises(ValueError, match="unknown backend 'nosuch'; known: pytorch"):
        codedeps.job_code("cell", "nosuch")


# ------------------------------------------------------------------ in the real sweep


def recorded_jobs(work: Path, checkout: Path) -> list[dict]:
    """Every job of the finished sweep as Snakemake recorded it (`--detailed-summary`): its rule,
    output, shell command and inputs."""
    proc = snakemake(checkout, work, work / "tiny.yaml", "--detailed-summary")
    lines = proc.stdout.splitlines()
    header = lines[0].split("\t")
    assert header[:5] == ["output_file", "date", "rule", "log-file(s)", "input-file(s)"], lines[:2]
    jobs = []
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t")))
        if row.get("rule") and row.get("shellcmd"):
            jobs.append(row)
    return jobs


@pytest.mark.slow
def test_every_rule_lists_every_module_its_command_imports(tiny_sweep):
    checkout = tiny_sweep["checkout"]
    jobs = recorded_jobs(tiny_sweep["work"], checkout)
    assert {j["rule"] for j in jobs} >= {"export_artifact", "benchmark_cell", "aggregate", "tables",
                                        "figures_per_resolution", "figures_overall", "harness_check", "report",
                                        "archive"}
    here = checkout / "workflow" / "inferbench"
    checked = set()
    for job in jobs:
        words = job["shellcmd"].split()
        if "inferbench" not in words:
            continue  # printf (resolved_config)
        command = words[words.index("inferbench") + 1].replace("-", "_")
        backend = Path(job["output_file"]).parts[3] if job["rule"] in ("export_artifact", "benchmark_cell") else None
        if backend is not None:  # a shard's path names a variant; its cells run the variant's backend
            backend = backend_of(tiny_sweep["config"], backend)
        inputs = {Path(p).resolve() for p in job["input-file(s)"].split(",") if p.endswith(".py")}
        # the same files, in the sweep's checkout
        expected = {here / f.relative_to(PKG) for f in expected_code(command, backend)}
        missing = sorted(str(f.relative_to(here)) for f in expected - inputs)
        assert not missing, f"{job['rule']} ({job['output_file']}) does not list {missing}"
        others = {here / f.relative_to(PKG) for name, f in BACKEND_FILES.items() if name != backend}
        assert not inputs & others, f"{job['rule']} ({job['output_file']}) lists another backend"
        checked.add(job["rule"])
    assert "benchmark_cell" in checked and "report" in checked


@pytest.mark.slow
def test_editing_a_reporting_module_plans_the_report_again(tiny_sweep, tmp_path):
    """In a copy of the finished sweep: edit reporting/timebudget.py, and the report (and the
    archive made from it) is planned again, nothing else."""
    checkout = shutil.copytree(tiny_sweep["checkout"], tmp_path / "checkout", symlinks=True)
    work = shutil.copytree(tiny_sweep["work"], tmp_path / "work", symlinks=True,
                           ignore=shutil.ignore_patterns(".locks", "*.sock"))
    source = checkout / "workflow" / "inferbench" / "reporting" / "timebudget.py"
    source.write_text(source.read_text() + "\n# an edit\n")
    # The copy's code lives at another path than the one recorded, which the `input` trigger alone
    # would call a change for every job; the edit is judged by modification time, as it is where
    # the files stay put.
    proc = snakemake(checkout, work, work / "tiny.yaml", "--summary", "--rerun-triggers", "mtime")
    pending = {line.split("\t")[2] for line in proc.stdout.splitlines()[1:]
               if line.split("\t")[-1:] == ["update pending"]}
    assert pending == {"report", "archive"}, proc.stdout[-3000:]


@pytest.mark.slow
def test_editing_validation_the_command_line_or_the_report_plans_no_cell(tiny_sweep, tmp_path):
    """In a copy of the finished sweep: reword a message of the config's validation, edit the
    command line's dispatcher and the report's code, and no export or cell is planned again."""
    checkout = shutil.copytree(tiny_sweep["checkout"], tmp_path / "checkout", symlinks=True)
    work = shutil.copytree(tiny_sweep["work"], tmp_path / "work", symlinks=True,
                           ignore=shutil.ignore_patterns(".locks", "*.sock"))
    here = checkout / "workflow" / "inferbench"
    config = here / "sweep" / "config.py"
    assert "does not exist" in config.read_text()
    config.write_text(config.read_text().replace("does not exist", "is not there"))
    for edited in (here / "cli.py", here / "reporting" / "report.py"):
        edited.write_text(edited.read_text() + "\n# an edit\n")
    proc = snakemake(checkout, work, work / "tiny.yaml", "--summary", "--rerun-triggers", "mtime")
    pending = {line.split("\t")[2] for line in proc.stdout.splitlines()[1:]
               if line.split("\t")[-1:] == ["update pending"]}
    assert "report" in pending, proc.stdout[-3000:]  # the edits were seen
    assert not pending & {"benchmark_cell", "export_artifact"}, proc.stdout[-3000:]
