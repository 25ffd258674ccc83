"""Overrides of verl-tool's trainer, rendered in Hydra's syntax and checked against its key set.

`launch/verl_tool_trainer_keys.json` holds every key of verl-tool's composed trainer config at the
pinned commit with its type and default (regenerate it with `python -m launch.gen_trainer_keys`).
Each override is rendered here, parsed back with Hydra's own override parser (the parser the
trainer's `@hydra.main` uses), and checked: the key exists, the value has the key's type, and a
`+` addition goes only where the trainer reads what is added. Errors name the key.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from hydra.errors import HydraException

from launch.compose import ConfigError
from launch.config_errors import did_you_mean

KEYS_FILE = Path(__file__).with_name("verl_tool_trainer_keys.json")
TRAINER_CONFIG_DIR = "verl_tool/trainer/config"
TRAINER_CONFIG_NAME = "ppo_trainer"
# Keys absent from the trainer config that `+key=...` may add, because the trainer reads them:
# verl-tool's reward loader passes `custom_reward_function.reward_kwargs` to the reward function.
ADDABLE = ("custom_reward_function.reward_kwargs",)
_DICT_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names Hydra reads back as values, not strings, when they are written bare as mapping keys.
_KEYWORDS = ("null", "true", "false", "inf", "nan")


class TrainerConfigError(ConfigError):
    """An override of verl-tool's trainer names no key, has the wrong type, or breaks a cross-field rule."""


def type_name(value: Any) -> str:
    """The key-file type of a default value; `any` for null (its type is not known)."""
    if value is None:
        return "any"
    for name, kind in (("bool", bool), ("int", int), ("float", float), ("str", str), ("list", list), ("dict", dict)):
        if isinstance(value, kind):
            return name
    raise TypeError(f"unexpected config value {value!r} of type {type(value).__name__}")


@lru_cache(maxsize=1)
def trainer_keys() -> dict[str, dict]:
    """The key file's `keys`: dotted key -> {type, default}."""
    return json.loads(KEYS_FILE.read_text())["keys"]


@lru_cache(maxsize=1)
def pinned_commit() -> str:
    """The verl-tool commit the key file was generated from."""
    return json.loads(KEYS_FILE.read_text())["commit"]


@lru_cache(maxsize=1)
def _sections() -> frozenset[str]:
    return frozenset(key.rsplit(".", i)[0] for key in trainer_keys() for i in range(1, key.count(".") + 1))


def render_value(value: Any, key: str) -> str:
    """`value` in Hydra's override grammar (strings always quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if "'" in value or "\\" in value or "${" in value:
            raise TrainerConfigError(f"{key}={value!r}: quotes, backslashes and '${{' cannot be passed to the trainer")
        return f"'{value}'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(render_value(item, key) for item in value) + "]"
    if isinstance(value, dict):
        for name in value:
            if not isinstance(name, str) or not _DICT_KEY.match(name) or name.lower() in _KEYWORDS:
                raise TrainerConfigError(f"{key}: mapping key {name!r} is not a plain identifier")
        return "{" + ",".join(f"{name}:{render_value(item, key)}" for name, item in value.items()) + "}"
    raise TrainerConfigError(f"{key}={value!r}: a {type(value).__name__} cannot be passed to the trainer")


def render_override(key: str, value: Any) -> str:
    """One trainer argument, `key=value`, or `+key=value` for an addable key absent from the config."""
    # Any other absent key is rendered plainly, so checking it reports the unknown key and its nearest match.
    prefix = "+" if key not in trainer_keys() and _addable(key) else ""
    return f"{prefix}{key}={render_value(value, key)}"


def _plain(value: Any) -> Any:
    """Hydra's parsed value as plain data (its quoted strings and containers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _type_error(key: str, expected: str, value: Any) -> TrainerConfigError | None:
    if expected == "any":
        return None
    checks = {
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "list": lambda v: isinstance(v, list),
        "dict": lambda v: isinstance(v, dict),
    }
    if checks[expected](value):
        return None
    hint = " (quote it to pass a string)" if expected == "str" and value is not None else ""
    return TrainerConfigError(f"{key}={value!r}: verl-tool's trainer expects {expected}, got "
                              f"{'null' if value is None else type(value).__name__}{hint}")


def _unknown(key: str) -> TrainerConfigError:
    # Whole dotted keys share long prefixes, so a suggestion must be nearer than for a section's own keys.
    hint = did_you_mean(key, trainer_keys(), cutoff=0.75)
    if key in _sections():
        return TrainerConfigError(f"{key} is a section of verl-tool's trainer config; set its keys one by one")
    return TrainerConfigError(f"{key} is not a key of verl-tool's trainer config (commit {pinned_commit()[:12]})"
                              f"{hint}")


def _addable(key: str) -> bool:
    """Whether `+key` adds something the trainer reads: a listed key, or a key inside a mapping-typed key."""
    if key in ADDABLE or any(key.startswith(f"{name}.") for name in ADDABLE):
        return True
    parent = key
    while "." in parent:
        parent = parent.rsplit(".", 1)[0]
        if trainer_keys().get(parent, {}).get("type") == "dict":
            return True
    return False


def check_override(text: str) -> tuple[str, Any]:
    """Parse one override with Hydra's parser and check it against the key set; returns (key, value)."""
    try:
        override = OverridesParser.create().parse_override(text)
    except HydraException as error:
        raise TrainerConfigError(f"trainer override {text!r} does not parse: {error}") from None
    key = override.key_or_group
    if override.is_sweep_override():
        raise TrainerConfigError(f"{key}: a sweep cannot be passed to the trainer; sweep with `-m` on our keys")
    if override.type == OverrideType.DEL:
        raise TrainerConfigError(f"{key}: deleting trainer keys (~) is not supported")
    value = _plain(override.value())
    keys = trainer_keys()
    if override.type == OverrideType.ADD:
        if key in keys and keys[key]["default"] is not None:
            raise TrainerConfigError(f"+{key}: the key exists in verl-tool's trainer config; set it without '+'")
        if key not in keys and not _addable(key):
            raise TrainerConfigError(f"+{key}: not in verl-tool's trainer config, and nothing in the trainer would "
                                     "read it; '+' adds only inside a mapping the trainer passes on (e.g. "
                                     "actor_rollout_ref.model.override_config) or to " + ", ".join(ADDABLE))
    elif key not in keys:
        raise _unknown(key)
    elif keys[key]["type"] == "dict" and isinstance(value, dict) and set(value) - set(keys[key]["default"] or {}):
        # Hydra's struct config refuses new names in a mapping set whole; each must be added with '+'.
        new = sorted(set(value) - set(keys[key]["default"] or {}))
        raise TrainerConfigError(f"{key}={{...}}: {', '.join(new)} not in its default mapping; add each entry with "
                                 f"+{key}.NAME=VALUE")
    if key in keys:
        error = _type_error(key, keys[key]["type"], value)
        if error is not None and not (value is None and keys[key]["default"] is None):
            raise error
    return key, value


def check_overrides(overrides: list[str]) -> dict[str, Any]:
    """Check every override; returns the values they set by key. A key set twice is an error."""
    values: dict[str, Any] = {}
    for text in overrides:
        key, value = check_override(text)
        if key in values:
            raise TrainerConfigError(f"{key} is set twice in the trainer's overrides")
        values[key] = value
    return values


def effective(values: dict[str, Any], key: str) -> Any:
    """The value the trainer will see for `key`: the override's, else the config's default."""
    if key in values:
        return values[key]
    if key not in trainer_keys():
        raise _unknown(key)
    return trainer_keys()[key]["default"]
