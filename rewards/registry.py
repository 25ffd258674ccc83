"""The registry of reward components: each a plain function, its options (read from its signature) and its range.

A component is `function(rollout, question, **options) -> float | None`; None means "does not apply
to this question" (location without clue intervals), which keeps it out of the weighted sum instead
of adding a zero. Registering a second component under a name that is taken is an error.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rewards.question import AnswerKey
from rewards.rollout import COUNT_KEYS, Rollout
from tools.environment.registry import add_entry, find_entry

ComponentFunction = Callable[..., "float | None"]
# bounds(options) -> (lowest, highest) value the component can take with those options.
BoundsFunction = Callable[[Mapping[str, Any]], tuple[float, float]]


@dataclass(frozen=True)
class Component:
    """A registered reward component: its name, function, default options, range and allowed choices."""

    name: str
    function: ComponentFunction
    defaults: Mapping[str, Any]
    bounds: BoundsFunction
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __call__(self, rollout: Rollout, question: AnswerKey, options: Mapping[str, Any]) -> float | None:
        """The component's value for one rollout."""
        return self.function(rollout, question, **options)


COMPONENTS: dict[str, Component] = {}
# Keys of the score dict that are not components.
RESERVED_NAMES = frozenset({"score", "has_clues", *COUNT_KEYS})


def _keyword_defaults(function: ComponentFunction) -> dict[str, Any]:
    """The options of a component: its keyword-only parameters and their defaults."""
    parameters = inspect.signature(function).parameters.values()
    missing = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if missing:
        raise TypeError(f"{function.__name__}: every option needs a default, these have none: {missing}")
    return {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY}


def register(name: str, bounds: BoundsFunction,
             choices: Mapping[str, tuple[str, ...]] | None = None) -> Callable[[ComponentFunction], ComponentFunction]:
    """Decorator: register `function` as the component `name`; a name that is taken is refused."""

    def decorator(function: ComponentFunction) -> ComponentFunction:
        if name in RESERVED_NAMES:
            raise ValueError(f"{name!r} cannot name a reward component: the score reports it already")
        add_entry(COMPONENTS, "reward component", name,
                  Component(name, function, _keyword_defaults(function), bounds, dict(choices or {})),
                  lambda taken: f"{taken.function.__module__}.{taken.function.__name__}")
        return function

    return decorator


def get_component(name: str) -> Component:
    """The component registered as `name`; KeyError listing the registered names otherwise."""
    return find_entry(COMPONENTS, "reward component", name)
