"""The wording of config errors, shared by every check: a key or choice that does not exist, and the nearest one.

Hydra's composition (launch/compose.py), the typed sections (launch/schema.py) and the trainer's key list
(launch/trainer_keys.py) all name a wrong key or choice through these functions, so every such error reads
the same: the full dotted key, what is wrong, and the nearest valid key or choice.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

# difflib's similarity ratio a candidate needs to be suggested.
CUTOFF = 0.6


def nearest(name: str, candidates: Iterable[str], cutoff: float = CUTOFF) -> list[str]:
    """Up to three of `candidates` nearest to `name` by difflib, nearest first."""
    return difflib.get_close_matches(name, list(candidates), n=3, cutoff=cutoff)


def did_you_mean(name: str, candidates: Iterable[str], cutoff: float = CUTOFF, prefix: str = "") -> str:
    """`; did you mean A or B?` naming the nearest candidates (each after `prefix`), or '' when none is near."""
    close = nearest(name, candidates, cutoff)
    return f"; did you mean {' or '.join(prefix + match for match in close)}?" if close else ""


def shown(value: Any) -> str:
    """A value as an error message shows it: Python's repr, but null for None."""
    return "null" if value is None else repr(value)


def unknown_key(key: str, keys: Iterable[str]) -> str:
    """`key: no such key`, with the nearest key of its section, or all of them when none is near."""
    parent, _, name = key.rpartition(".")
    keys = sorted(keys)
    hint = did_you_mean(name, keys, prefix=f"{parent}." if parent else "")
    if not hint and keys:
        hint = f"; {f'keys of {parent}' if parent else 'top-level keys'}: {', '.join(keys)}"
    return f"{key}: no such key{hint}"


def unknown_choice(key: str, value: Any, choices: Iterable[Any]) -> str:
    """`key=value is not one of: ...`, with the nearest choice."""
    names = [str(choice) for choice in choices]
    return f"{key}={shown(value)} is not one of: {', '.join(names)}{did_you_mean(str(value), names)}"
