"""Count the model's work per image (FLOPs, at each of the sweep's resolutions) and its parameters,
once per sweep (inferbench.models.work), into a JSON record that the aggregation reads."""

from __future__ import annotations

import json
import sys

HELP = "count the model's FLOPs per image at each resolution, and its parameters"


def add_arguments(p):
    p.add_argument("--spec", required=True, help='JSON: {"model", "weights", "seed", "resolutions"}')
    p.add_argument("--lock-dir", default="results/.locks", help="where the exports' lock lives")
    p.add_argument("--out", required=True, help="the record to write (.json)")


def run(args) -> int:
    from inferbench.commands.gpu_peak import write_json
    from inferbench.models.work import model_work
    from inferbench.process.devices import ExportsRunning

    spec = json.loads(args.spec)
    # it runs with the exports, before the cells: a cell waits for it as for an export
    with ExportsRunning(args.lock_dir):
        record = model_work(spec["model"], spec.get("weights"), spec.get("seed", 0), spec["resolutions"])
    write_json(args.out, record)
    print(f"[inferbench model-work] {json.dumps(record)}", file=sys.stderr)
    return 0
