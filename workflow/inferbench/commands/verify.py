"""`inferbench verify`: check an archive's files against its MANIFEST.json."""

from __future__ import annotations

HELP = "check every file of an inferbench archive against its manifest; non-zero exit on any difference"


def add_arguments(parser) -> None:
    parser.add_argument("archive", help="an archive written by `inferbench archive`")


def run(args) -> int:
    from inferbench.records import archive

    members = archive.read_members(args.archive)
    problems = archive.verify_members(members)
    for kind, names in problems.items():
        for name in names:
            print(f"{kind}: {name}")
    n_bad = sum(len(v) for v in problems.values())
    if n_bad:
        print(f"{args.archive}: FAILED, {n_bad} file(s) differ from {archive.MANIFEST}")
        return 1
    print(f"{args.archive}: ok, {len(members) - 1} files match {archive.MANIFEST}")
    return 0
