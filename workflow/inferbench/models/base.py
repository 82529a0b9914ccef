"""What every model source shares: what a model takes (ModelInput), and the words of an unknown
name's message. Apart from the registry (inferbench.models.registry), so that the sources import it
without importing the registry that imports them."""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInput:
    """What a model takes: the input's channels, and what its source says of its input (the
    resolution it was made for, the normalisation its inputs had), recorded for the report.
    Inputs are drawn from a standard normal, i.e. as they are after that normalisation."""

    in_chans: int = 3
    resolution: int | None = None  # the sweep's resolutions when the config gives none
    mean: tuple | None = None
    std: tuple | None = None


def closest(name: str, known, n: int = 5) -> list[str]:
    """The known names nearest to `name`, for an error message."""
    known = list(known)
    found = difflib.get_close_matches(name, known, n=n, cutoff=0.6)
    if len(found) < n:  # a prefix of the family (`resnet` for resnet18) scores low with difflib
        stem = name.lower().rstrip("0123456789_")
        found += [k for k in known if stem and k.startswith(stem) and k not in found][: n - len(found)]
    return found


def unknown_name_message(kind: str, name: str, known, how_to_list: str) -> str:
    close = closest(name, known)
    hint = f" Closest: {', '.join(close)}." if close else ""
    return f"model: {name!r} is not a {kind} model.{hint} {how_to_list}"
