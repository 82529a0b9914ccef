"""Gather the sweep's export manifests into one record, written once every export is done: the
report reads each export's start and wall time from it for the sweep's clock."""

from __future__ import annotations

import json
import os
from pathlib import Path

HELP = "record the sweep's exports (status, start, wall time) in one JSON file, once all are done"

FIELDS = ("backend", "key", "status", "reason", "started_utc", "job_wall_s", "export_s")


def add_arguments(p):
    p.add_argument("--manifests", nargs="*", default=[], help="the export manifests (.json) the cells load")
    p.add_argument("--out", required=True, help="the record to write (.json)")


def run(args) -> int:
    exports = []
    for path in sorted(args.manifests):
        manifest = json.loads(Path(path).read_text())
        exports.append(dict({k: manifest.get(k) for k in FIELDS}, manifest=os.path.basename(path)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{args.out}.tmp"
    Path(tmp).write_text(json.dumps({"exports": exports}, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, args.out)
    return 0
