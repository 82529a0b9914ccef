"""`inferbench verify`: check an archive's files against its MANIFEST.json."""

from __future__ import annotations

import sys

HELP = "check every file of an inferbench archive against its manifest; non-zero exit on any difference"

# Exit codes: a script tells a bad archive from a machine that could not read it.
OK, FAILED, UNREADABLE, NO_RESOURCES = 0, 1, 2, 3
EPILOG = (f"exit codes: {OK} every file matches the manifest; {FAILED} verification failed (a file changed, "
          f"missing or extra, each named); {UNREADABLE} not an inferbench archive, unreadable or unsafe (a link, "
          f"../ or an absolute path); {NO_RESOURCES} the machine ran out of memory or disk while reading it "
          "(nothing is known about the archive: free some and run again)")


def add_arguments(parser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("archive", help="an archive written by `inferbench archive` (or repacked with plain tar)")


def run(args) -> int:
    from inferbench.records import archive

    try:
        found = archive.scan(args.archive)
    except archive.ResourceError as exc:
        print(f"inferbench verify: cannot verify: {exc}", file=sys.stderr)
        return NO_RESOURCES
    problems = archive.verify_scan(found)
    for kind, names in problems.items():
        for name in names:
            print(f"{kind}: {name}")
    if found.stopped_at:
        size = found.digests[found.stopped_at][1]
        print(f"{found.stopped_at}: its header claims {size} bytes, more than its manifest entry; refused "
              "unread, and verification stopped there")
    n_bad = sum(len(v) for v in problems.values())
    if n_bad:
        print(f"{args.archive}: FAILED, {n_bad} file(s) differ from {archive.MANIFEST}")
        return FAILED
    print(f"{args.archive}: ok, {len(found.digests) - 1} files match {archive.MANIFEST}")
    return OK
