"""Typed config sections: one schema (a dataclass) per section, checked before anything is rendered or started.

Every stage reads its section through `typed_section`, so a wrong type, an unknown key or a key the
YAML leaves out is reported the same way everywhere, in one line naming `section.key`. The schema
holds only the types and, per field, its one-line meaning (`described`: what `python -m launch STAGE --help`
shows); the values (defaults included) are in configs/. `check_choice`, `check_positive` and `check_range`
are the value checks a type cannot express.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Collection
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from launch.compose import ConfigError
from launch.config_errors import shown, unknown_choice, unknown_key

# The field metadata keys `described` writes and `launch/stage_help.py` reads (tools' schemas write them as is).
HELP = "help"
CHOICES = "choices"


def described(meaning: str, choices: Collection | Callable[[], Collection] | None = None) -> Any:
    """A required schema field with its one-line meaning and, where a list or registry defines them, its choices."""
    return dataclasses.field(metadata={HELP: meaning, CHOICES: choices})


def check_choice(section: str, key: str, value: Any, allowed: tuple, error: type[Exception] = ConfigError) -> None:
    """`section.key` must be one of `allowed`."""
    if value not in allowed:
        raise error(unknown_choice(f"{section}.{key}", value, allowed))


def check_positive(section: str, key: str, value: float, allow_minus_one: bool = False,
                   error: type[Exception] = ConfigError) -> None:
    """`section.key` must be > 0 (or exactly -1 where that means "no limit")."""
    if value <= 0 and not (allow_minus_one and value == -1):
        raise error(f"{section}.{key}={value!r} must be > 0")


def check_range(section: str, key: str, value: float, low: float, high: float | None = None,
                low_open: bool = False, error: type[Exception] = ConfigError) -> None:
    """`section.key` must be in [low, high] (`low_open`: in (low, high]); no upper bound when `high` is None."""
    # Written as "inside" so that NaN, which compares false with everything, is refused.
    inside = (low < value if low_open else low <= value) and (high is None or value <= high)
    if not inside:
        bounds = f"{'(' if low_open else '['}{low}, {'inf)' if high is None else f'{high}]'}"
        raise error(f"{section}.{key}={value!r} must be in {bounds}")


def _field_type(schema: type, path: str) -> Any:
    """The declared type of the dotted `path` (list items as `[i]`) inside the dataclass `schema`, or None."""
    kind: Any = schema
    for part in path.replace("[", ".[").split("."):
        kind = _strip_optional(kind)
        if part.startswith("["):
            args = typing.get_args(kind)
            kind = args[0] if args else None
        elif dataclasses.is_dataclass(kind):
            kind = typing.get_type_hints(kind).get(part)
        else:
            return None
    return kind


def _strip_optional(kind: Any) -> Any:
    """`X` for `Optional[X]`; any other type as it is."""
    args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    return args[0] if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1 else kind


def _in_words(kind: Any) -> str | None:
    """A type in words, e.g. `an integer`; None when it has no plain name."""
    optional = _strip_optional(kind) is not kind
    kind = _strip_optional(kind)
    origin = typing.get_origin(kind) or kind
    if dataclasses.is_dataclass(kind):
        words = f"a mapping of {', '.join(field.name for field in dataclasses.fields(kind))}"
    elif isinstance(origin, type):
        words = next((text for base, text in _WORDS if issubclass(origin, base)), None)
    else:
        words = None
    return f"{words} or null" if words and optional else words


# Checked in order, since a bool is also an int.
_WORDS = ((bool, "true or false"), (int, "an integer"), (float, "a number"), (str, "a string"),
          (dict, "a mapping"), (list, "a list"), (tuple, "a list"))


def _wrong_value(where: str, value: Any, kind: Any, reason: str) -> str:
    """`where=value: expected ...`, and how to write it when a mapping or list stands where a single value goes."""
    expected = _in_words(kind)
    if expected is None:
        return f"{where}={shown(value)}: {reason}"
    if isinstance(value, (dict, list)) and not expected.startswith(("a mapping", "a list")):
        got = "a mapping" if isinstance(value, dict) else "a list"
        return f"{where}={shown(value)}: expected {expected}, not {got}; write {where}=<{expected}>"
    if dataclasses.is_dataclass(_strip_optional(kind)) and not isinstance(value, dict):
        first = dataclasses.fields(_strip_optional(kind))[0].name
        return f"{where}={shown(value)}: expected {expected}; set its keys one by one, e.g. {where}.{first}=..."
    if expected == "a mapping" and not isinstance(value, dict):
        return f"{where}={shown(value)}: expected a mapping; add its entries one by one, e.g. +{where}.NAME=VALUE"
    return f"{where}={shown(value)}: expected {expected}"


def _failure(schema: type, section: str, failure: OmegaConfBaseException) -> str:
    """One line naming `section.key` and what is wrong with it."""
    key = getattr(failure, "full_key", None)
    where = f"{section}.{key}" if key else section
    if isinstance(failure, MissingMandatoryValue):
        return f"{where}: missing; set {where}=..."
    if isinstance(failure, (ConfigKeyError, ConfigAttributeError)) and key:
        above = str(key).rpartition(".")[0]
        parent = _strip_optional(_field_type(schema, above) if above else schema)
        fields = [field.name for field in dataclasses.fields(parent)] if dataclasses.is_dataclass(parent) else []
        return unknown_key(where, fields)
    reason = (getattr(failure, "msg", None) or str(failure)).splitlines()[0]
    if isinstance(failure, ValidationError):
        value = failure.value
        plain = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        return _wrong_value(where, plain, _field_type(schema, str(key)) if key else None, reason)
    return f"{where}: {reason}"


def typed_section(schema: type, node: DictConfig, section: str, error: type[Exception] = ConfigError) -> Any:
    """A config section as an instance of the dataclass `schema`; unknown, missing and mistyped keys are named."""
    try:
        # Interpolations (e.g. ${paths.cache}) resolve against the whole config first.
        values = OmegaConf.to_container(node, resolve=True)
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as failure:
        raise error(_failure(schema, section, failure)) from None
