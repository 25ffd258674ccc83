"""The two rules every registry of the project follows: a taken name is refused, an unknown name lists the known ones.

Reward components, annotation formats and chat templates each keep a dict of name -> entry and add to
and read from it only through these functions, so each says the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TypeVar

Entry = TypeVar("Entry")


def add_entry(entries: MutableMapping[str, Entry], kind: str, name: str, entry: Entry,
              describe: Callable[[Entry], str] = repr) -> None:
    """Put `entry` in `entries` as `name`; ValueError naming the entry that holds it when the name is taken."""
    if name in entries:
        raise ValueError(f"{kind} {name!r} is already registered (by {describe(entries[name])})")
    entries[name] = entry


def find_entry(entries: Mapping[str, Entry], kind: str, name: Any, error: type[Exception] = KeyError) -> Entry:
    """The entry registered as `name`; `error` listing the registered names when there is none."""
    if name not in entries:
        raise error(f"unknown {kind} {name!r}; registered: {', '.join(sorted(entries))}")
    return entries[name]
