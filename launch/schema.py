"""Typed config sections: one schema (a dataclass) per section, checked before anything is rendered or started.

Every stage reads its section through `typed_section`, so a wrong type or an unknown key is reported
the same way everywhere, naming the section and the key; `check_choice` and `check_positive` are the
value checks a type cannot express.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

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


def typed_section(schema: type, node: DictConfig, section: str, error: type[Exception] = ConfigError) -> Any:
    """A config section as an instance of the dataclass `schema`; unknown keys and wrong types name the key."""
    try:
        # Interpolations (e.g. ${paths.cache}) resolve against the whole config first.
        values = OmegaConf.to_container(node, resolve=True)
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as failure:
        raise error(f"invalid `{section}` config: {failure}") from None
