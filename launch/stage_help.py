"""`python -m launch STAGE --help`: every key of the sections a stage reads, from their schemas.

Each key is shown with its type (the schema's annotation), its default (the composed config of the recipe
on the command line, recipe=tiny without one, and any other override given), its choices where a list or a
registry defines them (the field's `choices` metadata; a section a config group picks lists that group's
options) and its one-line meaning (the field's `help` metadata, see `launch.schema.described`).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from launch.compose import compose_config, recipe_names
from launch.schema import CHOICES, HELP
from launch.stages import SECTIONS, STAGES, Stage

# The recipe whose composed config gives the defaults when the command line names none.
DEFAULT_RECIPE = "tiny"
# Longer defaults (a mapping of endpoints, a list of flags) are cut to this many characters.
DEFAULT_WIDTH = 60
INDENT = "  "


@dataclasses.dataclass
class KeyHelp:
    """One key as the help shows it."""

    key: str
    type: str
    default: str
    meaning: str
    choices: list[str] | None


def type_name(hint: Any) -> str:
    """A schema annotation as written in Python: `str | None`, `list[int]`, `dict[str, Any]`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(arg) for arg in args)}]"
    if hint is type(None):
        return "None"
    return "Any" if hint is Any else hint.__name__


def choice_list(choices: Any) -> list[str] | None:
    """The choices a field's metadata names (a collection, or a function returning one), as strings."""
    if choices is None:
        return None
    return [str(choice) for choice in (choices() if callable(choices) else choices)]


def shown(value: Any) -> str:
    """A default as one would type it after `KEY=`: YAML's null, true and false; mappings and lists as JSON."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= DEFAULT_WIDTH else text[: DEFAULT_WIDTH - 3] + "..."


def section_values(config: DictConfig, name: str) -> dict | None:
    """The composed section as plain data, interpolations resolved where they resolve; None when it is unset."""
    node = OmegaConf.select(config, name)
    if not isinstance(node, DictConfig):
        return None
    try:
        return OmegaConf.to_container(node, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException:
        return OmegaConf.to_container(node, resolve=False)


def schema_keys(schema: type, values: dict | None, prefix: str, unset: str) -> Iterator[KeyHelp]:
    """Every key of `schema` (nested schemas walked down) with its composed value from `values`."""
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        hint, key = hints[field.name], f"{prefix}.{field.name}"
        value = (values or {}).get(field.name)
        if dataclasses.is_dataclass(hint):
            yield from schema_keys(hint, value if isinstance(value, dict) else None, key, unset)
            continue
        default = unset if values is None else shown(value)
        yield KeyHelp(key, type_name(hint), default, field.metadata.get(HELP, ""),
                      choice_list(field.metadata.get(CHOICES)))


def section_keys(config: DictConfig, name: str) -> tuple[list[KeyHelp], str]:
    """The keys of section `name` as the composed config picks it, and the section's heading."""
    section = SECTIONS[name]
    values = section_values(config, name)
    unset = f"(set by {name}=NAME)"
    keys = list(schema_keys(section.schema, values, name, unset))
    # Where the keys are defined, as a file a reader can open.
    heading = f"{name} (defined in {section.schema.__module__.replace('.', '/')}.py)"
    if section.options is not None:
        heading += f"; {name}=NAME picks it: {', '.join(section.options())}"
        if values is not None:
            # A picked option may hold fewer keys than the schema (launcher=local holds three of Slurm's).
            keys = [key for key in keys if _holds(values, key.key.split(".")[1:])]
    return keys, heading


def _holds(values: dict, path: list[str]) -> bool:
    """Whether the nested mapping `values` has the key at `path`."""
    for part in path:
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True


def render_key(key: KeyHelp) -> list[str]:
    """Two lines: `KEY: TYPE = DEFAULT` and the choices, then the meaning."""
    choices = f"  (choices: {', '.join(key.choices)})" if key.choices else ""
    return [f"{INDENT}{key.key}: {key.type} = {key.default}{choices}", f"{INDENT * 3}{key.meaning}"]


def stage_help(stage_name: str, overrides: list[str]) -> str:
    """The help of one stage: its usage, then every key of each section it reads, with the overrides' defaults."""
    stage: Stage = STAGES[stage_name]
    if not any(override.startswith("recipe=") for override in overrides):
        overrides = [f"recipe={DEFAULT_RECIPE}", *overrides]
    composed = compose_config(stage_name, overrides, stage.needs_recipe)
    lines = [f"usage: python -m launch {stage_name} [recipe=NAME] [KEY=VALUE ...] [--dry-run] [-m|--multirun]", "",
             f"{stage.summary}.", "",
             f"Recipes (recipe=NAME): {', '.join(recipe_names())}",
             f"Defaults below: the composed config of {' '.join(overrides)}.",
             f"Set a key with KEY=VALUE, e.g. {first_key(stage)}=...",
             "python -m launch --help: the options, the common keys and the other stages."]
    for name in stage.sections:
        keys, heading = section_keys(composed.config, name)
        lines += ["", f"{heading}:"]
        for key in keys:
            lines += render_key(key)
    return "\n".join(lines)


def first_key(stage: Stage) -> str:
    """The first key of the stage's own section, for the example line."""
    return next(schema_keys(SECTIONS[stage.sections[0]].schema, None, stage.sections[0], "")).key

