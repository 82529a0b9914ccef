"""Where torch.compile keeps what it compiled: a folder of the results, shared by the jobs.

Set in the environment of the processes that compile (cell workers, harness-check bare loops),
before torch's compiler reads it; nothing here imports torch.
"""

from __future__ import annotations


def cache_env(base_dir) -> dict:
    """Environment for Inductor's on-disk caches under base_dir (results/.cache/torchinductor): the
    FX graph cache and AOTAutograd cache (compiled graphs), Triton's kernels (under the same
    folder), and autotuning results, shared by every cell, worker and harness check of the
    results folder and kept for its reruns, instead of the system's temporary folder.

    Never stale: Inductor keys each entry by the graph, its inputs' shapes and layouts, its own
    configuration, the torch and Triton versions and the GPU. The folder is keyed too (torch and
    Triton versions, the container image), so that entries of another install never sit beside
    these. Only what is compiled comes from the cache, never a figure: compile_s says whether a
    cell compiled or hit the cache (fx_graph_cache_hits and _misses in its backend options).
    Variables already set in the environment are left as they are."""
    import hashlib
    import os
    from importlib import metadata
    from pathlib import Path

    facts = []
    for dist in ("torch", "triton", "pytorch-triton"):
        try:
            facts.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    facts.append(f"image={os.environ.get('INFERBENCH_CONTAINER_IMAGE', '')}")
    key = hashlib.sha256("\n".join(facts).encode()).hexdigest()[:16]
    env = {"TORCHINDUCTOR_CACHE_DIR": str(Path(base_dir).resolve() / key),
           "TORCHINDUCTOR_FX_GRAPH_CACHE": "1", "TORCHINDUCTOR_AUTOGRAD_CACHE": "1"}
    return {k: v for k, v in env.items() if k not in os.environ}
