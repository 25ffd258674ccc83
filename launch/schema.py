"""Typed config sections: one schema (a dataclass) per section, checked before anything is rendered or started.

Every stage reads its section through `typed_section`, so a wrong type, an unknown key or a key the
YAML leaves out is reported the same way everywhere, in one line naming `section.key`. The schema
holds only the types; the values (defaults included) are in configs/. `check_choice`,
`check_positive` and `check_range` are the value checks a type cannot express.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

from launch.compose import ConfigError


def check_choice(section: str, key: str, value: Any, allowed: tuple, error: type[Exception] = ConfigError) -> None:
    """`section.key` must be one of `allowed`."""
    if value not in allowed:
        raise error(f"{section}.{key}={value!r} is not one of: {', '.join(map(str, allowed))}")


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


def _failure(section: str, failure: OmegaConfBaseException) -> str:
    """One line naming `section.key` and what is wrong with it."""
    key = getattr(failure, "full_key", None)
    where = f"{section}.{key}" if key else section
    if isinstance(failure, MissingMandatoryValue):
        return f"{where}: missing; set {where}=..."
    schema = getattr(failure, "object_type", None)
    if isinstance(failure, ConfigKeyError) and dataclasses.is_dataclass(schema):
        return f"{where}: unknown key; valid keys: {', '.join(field.name for field in dataclasses.fields(schema))}"
    reason = (getattr(failure, "msg", None) or str(failure)).splitlines()[0]
    if isinstance(failure, ValidationError):
        return f"{where}={failure.value!r}: {reason}"
    return f"{where}: {reason}"


def typed_section(schema: type, node: DictConfig, section: str, error: type[Exception] = ConfigError) -> Any:
    """A config section as an instance of the dataclass `schema`; unknown, missing and mistyped keys are named."""
    try:
        # Interpolations (e.g. ${paths.cache}) resolve against the whole config first.
        values = OmegaConf.to_container(node, resolve=True)
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as failure:
        raise error(_failure(section, failure)) from None
