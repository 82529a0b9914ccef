"""The grid of a sweep: a `Cell`, and the functions that expand a validated config into cells and
each cell's slice of the config.

This module imports nothing, on purpose: every job's code inputs include it (inferbench.sweep.codedeps),
so validation, its messages and the command line live elsewhere (inferbench.sweep.config), and
editing them reruns no cell.
"""

from __future__ import annotations

from dataclasses import dataclass

AXES = ("backends", "precisions", "resolutions", "batch_sizes", "io_modes")


@dataclass(frozen=True, order=True)
class Cell:
    """One benchmark job: everything that identifies what is measured, except the io mode
    (a cell measures each configured io mode and writes one row per mode)."""

    model: str
    backend: str
    device: str
    precision: str
    resolution: int
    batch_size: int


def backend_of(config: dict, name: str) -> str:
    """The backend that the `backends:` entry `name` runs: its `backend:` key, else its own name.
    The name (a variant's) is what shard paths, rows and reports show; the backend is the code."""
    return (config["backends"].get(name) or {}).get("backend", name)


def options_of(config: dict, name: str) -> dict:
    """The options of the `backends:` entry `name`, without its `backend:` key."""
    return {k: v for k, v in (config["backends"].get(name) or {}).items() if k != "backend"}


def axis_for(config: dict, device: str, axis: str) -> list:
    """The values of one grid axis for one device, after its per_device restriction."""
    restriction = config.get("per_device", {}).get(device, {})
    values = list(config["backends"]) if axis == "backends" else list(config[axis])
    if axis in restriction:
        values = [v for v in values if v in restriction[axis]]
    return values


def measurement_for(config: dict, device: str) -> dict:
    settings = dict(config["measurement"])
    settings.update(config.get("per_device", {}).get(device, {}).get("measurement", {}))
    return settings


def io_modes_for(config: dict, device: str) -> list[str]:
    # On the CPU the input already lives where the model runs: one mode.
    return axis_for(config, device, "io_modes") if device == "cuda" else ["device"]


def cells(config: dict) -> list[Cell]:
    out = []
    for device in config["devices"]:
        for backend in axis_for(config, device, "backends"):
            for precision in axis_for(config, device, "precisions"):
                for resolution in axis_for(config, device, "resolutions"):
                    for batch in axis_for(config, device, "batch_sizes"):
                        out.append(Cell(config["model"], backend, device, precision, resolution, batch))
    return out
