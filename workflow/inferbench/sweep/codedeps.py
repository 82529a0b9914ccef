"""Which source files a job runs, read from the imports in the sources.

Snakemake's `code` rerun trigger sees a rule's own command, not the Python modules that command
runs, so each rule lists those files as inputs: editing one reruns the jobs that run it. They are
found here rather than listed by hand, so that a new import cannot be forgotten: the inferbench
modules that the rule's command module imports, directly or indirectly, read with `ast` (imports
inside functions too; nothing is executed), and the modules a job starts by name (`python -m
inferbench.selfcheck.bareloop`: a string that names a module of the package in full).

A backend is loaded by its name in the config (inferbench.backends.load_backend, through
importlib), which this reading does not follow, on purpose: the export and cell rules add their
own backend's module and what it imports, so that editing one backend reruns only its jobs.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = "inferbench"
ROOT = Path(__file__).resolve().parents[1]  # the package's folder

# What `python -m inferbench COMMAND` runs before the command's own module.
ENTRY = ("inferbench.__main__",)
# The backend registry maps each backend's name to its module. Adding a backend edits it, which
# must not rerun every other backend's jobs; what a job takes from it is its own backend's module,
# which is an input already.
REGISTRY = "inferbench.backends"
# The command line's dispatcher parses the arguments and hands them to the command's module, which
# is an input itself; it measures and writes nothing, so editing its table of commands or its
# messages must rerun no job.
DISPATCHER = "inferbench.cli"


@functools.cache
def module_files() -> dict[str, Path]:
    """Every module of the package: dotted name -> source file."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _parents(name: str) -> set[str]:
    """Importing a.b.c runs a and a.b first."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def imports_of(name: str) -> set[str]:
    """The package's modules that module `name` imports or runs by name, anywhere in its source."""
    known = module_files()
    path = known[name]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package, one level up per extra dot
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            # `from inferbench.reporting import tables` imports the module inferbench.reporting.tables
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(f"{PACKAGE}."):
            targets = [node.value]  # a module run by name (bare "inferbench" is the program's name)
        else:
            continue
        for target in targets:
            if target in known:
                found |= {target} | _parents(target)
    found.discard(name)
    return found


@functools.cache
def graph() -> dict[str, frozenset[str]]:
    """Module -> the package's modules it imports: the whole package's import graph."""
    return {name: frozenset(imports_of(name)) for name in module_files()}


def closure(roots) -> set[str]:
    """The roots and every package module they import, directly or indirectly."""
    edges = graph()
    unknown = [r for r in roots if r not in edges]
    if unknown:
        raise ValueError(f"no module {', '.join(unknown)} in {ROOT}")
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges[name])
    return seen


def backend_module(backend: str) -> str:
    from inferbench.backends import KNOWN_BACKENDS

    if backend not in KNOWN_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(KNOWN_BACKENDS)}")
    return f"{PACKAGE}.backends.{KNOWN_BACKENDS[backend]}"


@functools.cache
def _job_code(command: str, backend: str | None) -> tuple[str, ...]:
    command_module = f"{PACKAGE}.commands.{command}"
    if command_module not in module_files():
        commands = sorted(n.rpartition(".")[2] for n in module_files() if n.startswith(f"{PACKAGE}.commands."))
        raise ValueError(f"no command module {command_module}; commands: {', '.join(commands)}")
    roots = [*ENTRY, command_module] + ([backend_module(backend)] if backend else [])
    files = module_files()
    return tuple(sorted(str(files[name]) for name in closure(roots) - {REGISTRY, DISPATCHER}))


def job_code(command: str, backend: str | None = None) -> list[str]:
    """The source files (absolute paths) that `inferbench COMMAND` runs, with `backend`'s module
    and what it imports for a job of one backend."""
    return list(_job_code(command, backend))
