"""A reward spec: which components, with which weights and options, and what applies without clue intervals.

The `reward` config group (configs/reward/PRESET.yaml) composes into the spec; the RL stage passes it
resolved as verl's `reward_kwargs`, so a sweep over one weight reaches the reward. Without kwargs the
`default` preset applies. Every key is checked: an unknown component, option or a value of the wrong
type is an error that names it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from rewards import components  # noqa: F401 (registers the components)
from rewards.registry import COMPONENTS, Component
from tools.environment.plain_data import plain_data

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "reward"
SPEC_KEYS = ("preset", "components", "no_clue_components")


class RewardSpecError(ValueError):
    """A reward spec names an unknown component or option, or holds a value of the wrong type."""


@dataclass(frozen=True)
class Term:
    """One weighted component of a spec, with its options resolved (defaults filled in)."""

    component: Component
    weight: float
    options: Mapping[str, Any]

    @property
    def name(self) -> str:
        """The component's registered name."""
        return self.component.name

    def bounds(self) -> tuple[float, float]:
        """The lowest and highest weighted value of this term."""
        low, high = self.component.bounds(self.options)
        return (self.weight * low, self.weight * high) if self.weight >= 0 else (self.weight * high, self.weight * low)


@dataclass(frozen=True)
class RewardSpec:
    """A composite reward: weighted terms, and the components kept on data without clue intervals (None: all)."""

    preset: str
    terms: tuple[Term, ...]
    no_clue_components: tuple[str, ...] | None = None

    def bounds(self) -> tuple[float, float]:
        """The range of the composite score: every component's range includes 0, so dropping a term stays inside."""
        bounds = [term.bounds() for term in self.terms]
        return min(0.0, sum(low for low, _ in bounds)), max(0.0, sum(high for _, high in bounds))

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved spec, as `reward_kwargs` carries it."""
        return {"preset": self.preset,
                "components": {t.name: {"weight": t.weight, **plain_data(t.options)} for t in self.terms},
                "no_clue_components": None if self.no_clue_components is None else list(self.no_clue_components)}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_option(component: Component, key: str, value: Any, where: str) -> Any:
    """`value` checked against the type of the option's default; the value to use."""
    default = component.defaults[key]
    if isinstance(default, (int, float)):
        if not _is_number(value) or value < 0:
            raise RewardSpecError(f"{where}.{key}={value!r}: expected a number >= 0")
        if isinstance(default, int) and not float(value).is_integer():
            raise RewardSpecError(f"{where}.{key}={value!r}: expected a whole number")
        return int(value) if isinstance(default, int) else float(value)
    allowed = component.choices.get(key, ())
    if not isinstance(value, (list, tuple)) or not all(item in allowed for item in value):
        raise RewardSpecError(f"{where}.{key}={value!r}: expected a list drawn from {list(allowed)}")
    return tuple(value)


def _term(name: str, settings: Any, where: str) -> Term:
    """One component's settings, checked, as a Term."""
    if name not in COMPONENTS:
        raise RewardSpecError(f"{where}: unknown reward component {name!r}; "
                              f"registered: {', '.join(sorted(COMPONENTS))}")
    component = COMPONENTS[name]
    where = f"{where}.{name}"
    if not isinstance(settings, dict) or "weight" not in settings:
        raise RewardSpecError(f"{where}: expected a mapping with a weight, got {settings!r}")
    weight = settings["weight"]
    if not _is_number(weight):
        raise RewardSpecError(f"{where}.weight={weight!r}: expected a finite number")
    unknown = sorted(set(settings) - {"weight"} - set(component.defaults))
    if unknown:
        raise RewardSpecError(f"{where}: unknown options {unknown}; {name} takes weight"
                              + "".join(f", {key}" for key in component.defaults))
    options = {key: _check_option(component, key, settings.get(key, default), where)
               for key, default in component.defaults.items()}
    return Term(component, float(weight), options)


def spec_from_dict(data: Any, where: str = "reward") -> RewardSpec:
    """A checked RewardSpec from a mapping such as the composed `reward` config or verl's `reward_kwargs`."""
    data = plain_data(data)
    if not isinstance(data, dict):
        raise RewardSpecError(f"{where}: expected a mapping with {', '.join(SPEC_KEYS)}, got {type(data).__name__}")
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise RewardSpecError(f"{where}: unknown keys {unknown}; a reward spec has {', '.join(SPEC_KEYS)}")
    preset, settings = data.get("preset", "custom"), data.get("components")
    if not isinstance(preset, str) or not preset:
        raise RewardSpecError(f"{where}.preset={preset!r}: expected a name")
    if not isinstance(settings, dict) or not settings:
        raise RewardSpecError(f"{where}.components={settings!r}: expected a mapping of component names to settings")
    terms = tuple(_term(name, value, f"{where}.components") for name, value in settings.items())
    kept = data.get("no_clue_components")
    if kept is not None:
        if not isinstance(kept, list) or not all(isinstance(name, str) and name in settings for name in kept):
            raise RewardSpecError(f"{where}.no_clue_components={kept!r}: expected null or a list of the spec's "
                                  f"components ({', '.join(settings)})")
        kept = tuple(kept)
    return RewardSpec(preset, terms, kept)


@lru_cache(maxsize=64)
def _cached_spec(key: str) -> RewardSpec:
    return spec_from_dict(json.loads(key), "reward_kwargs")


# The last kwargs seen and their spec: verl passes the same kwargs for every rollout of a run.
_last: tuple[Any, RewardSpec | None] = (None, None)


def spec_for_kwargs(reward_kwargs: Mapping[str, Any]) -> RewardSpec:
    """The spec verl's `reward_kwargs` carry (parsed once per distinct spec); the default preset when empty."""
    global _last
    if not reward_kwargs:
        return default_spec()
    last_kwargs, last_spec = _last
    if last_spec is not None and last_kwargs == reward_kwargs:
        return last_spec
    plain = plain_data(reward_kwargs)
    spec = _cached_spec(json.dumps(plain))
    _last = (plain, spec)
    return spec


@lru_cache(maxsize=1)
def default_spec() -> RewardSpec:
    """The `default` preset, read from configs/reward/default.yaml."""
    path = PRESET_DIR / "default.yaml"
    data = yaml.safe_load(path.read_text())
    return spec_from_dict(data, str(path))


def preset_names() -> list[str]:
    """The presets in configs/reward/."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))
