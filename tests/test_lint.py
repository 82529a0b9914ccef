"""`snakemake --lint` on the workflow: no lints."""

from __future__ import annotations

import os
import re
import subprocess

from sweep import BIN, REPO, TINY


def test_snakemake_lint_is_clean(tmp_path):
    cmd = [str(BIN / "snakemake"), "--lint", "--snakefile", str(REPO / "Snakefile"), "--configfile",
           str(TINY)]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    out = proc.stdout + proc.stderr
    # one line per lint: "Lints for rule X (...)" followed by "    * <what>:"
    lints = [line.strip() for line in out.splitlines() if re.match(r"^(Lints for |    \* )", line)]
    assert proc.returncode == 0, "snakemake --lint found:\n" + "\n".join(lints) + f"\n\n--- full output ---\n{out[-6000:]}"
    assert "Traceback" not in out
    assert not list(tmp_path.glob("results*")), "linting ran jobs"


def test_the_readme_stays_short_enough_to_read():
    # the front page: what it is, two commands, what you get, how to run and rerun; the rest is in docs/
    length = len((REPO / "README.md").read_bytes())
    assert length <= 12_000, f"README.md is {length:,} bytes; move detail to docs/ to bring it to 12,000 or fewer"
