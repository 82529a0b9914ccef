"""Check a config file and print the resolved sweep (every default filled in)."""

from __future__ import annotations

HELP = "validate a config file; print the resolved config and the number of cells"


def add_arguments(p):
    p.add_argument("config", help="path to config.yaml")
    p.add_argument("--write-resolved", metavar="PATH", help="also write the resolved config (YAML) here")


def run(args) -> int:
    import yaml

    from inferbench.sweep.config import cells, load_config

    config = load_config(args.config)
    text = yaml.safe_dump(config, sort_keys=False)
    if args.write_resolved:
        with open(args.write_resolved, "w") as f:
            f.write(text)
    print(text)
    print(f"# {len(cells(config))} cells")
    return 0
