"""Hydra composition: `configs/` plus `recipes/` (registered as the group `recipe`), and sweeps."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from tools.environment.secrets import marker, split_secrets

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "configs"
RECIPE_DIR = PROJECT_ROOT / "recipes"


class ConfigError(ValueError):
    """The command line does not compose into a valid config."""


@dataclass
class Composed:
    """A composed config and the group choices that produced it."""

    config: DictConfig
    recipe: str | None
    overrides: list[str]
    # The secrets pulled out of `config` (which holds their markers), by dotted key: see tools/environment/secrets.py.
    secrets: dict[str, Any] = field(default_factory=dict)


def recipe_names() -> list[str]:
    """Names of every recipe in `recipes/`."""
    return sorted(path.stem for path in RECIPE_DIR.glob("*.yaml"))


def group_options(group: str) -> list[str]:
    """The options of the config group `group`: the names of `configs/<group>/*.yaml`."""
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


@lru_cache(maxsize=1)
def register_recipes() -> None:
    """Store every `recipes/*.yaml` in Hydra's ConfigStore as an option of the group `recipe`."""
    store = ConfigStore.instance()
    for name in recipe_names():
        node = OmegaConf.load(RECIPE_DIR / f"{name}.yaml")
        # Recipes set top-level sections (model, chat, agent, sft, rl), so they merge at the root.
        store.store(group="recipe", name=name, node=node, package="_global_")


def _compose(overrides: list[str]) -> DictConfig:
    register_recipes()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def _valid_keys_hint(overrides: list[str], bad: str) -> str:
    """Name the keys that exist where an unknown override key was given."""
    key = bad.split("=", 1)[0].lstrip("+~")
    parent, _, _ = key.rpartition(".")
    try:
        base = _compose([o for o in overrides if o != bad])
    except HydraException:
        return ""
    node = OmegaConf.select(base, parent) if parent else base
    if not isinstance(node, DictConfig):
        return ""
    keys = ", ".join(sorted(str(k) for k in node.keys() if k != "hydra"))
    return f"\nValid keys under '{parent or '<root>'}': {keys}"


def compose_config(stage: str, overrides: list[str], needs_recipe: bool = True) -> Composed:
    """Compose the config of `stage` with `overrides`; errors name what is wrong and the choices."""
    full = [f"stage={stage}", *overrides]
    try:
        config = _compose(full)
    except HydraException as error:
        message = str(error)
        if isinstance(error, ConfigCompositionException):
            for override in overrides:
                if f"'{override.split('=', 1)[0]}'" in message:
                    message += _valid_keys_hint(full, override)
                    break
        if "recipe" in message and "Available options" not in message:
            message += f"\nAvailable recipes: {', '.join(recipe_names())}"
        raise ConfigError(message) from None
    recipe = config.hydra.runtime.choices.get("recipe")
    if recipe is None and needs_recipe:
        raise ConfigError(f"stage {stage!r} needs recipe=NAME; available recipes: {', '.join(recipe_names())}")
    with open_dict(config):
        del config["hydra"]
    secrets = pull_secrets(config)
    return Composed(config=config, recipe=recipe, overrides=list(overrides), secrets=secrets)


def pull_secrets(config: DictConfig) -> dict[str, Any]:
    """Replace every secret of `config` with its marker, in place; returns the secrets by dotted key."""
    _, secrets = split_secrets(to_container(config))
    for dotted in secrets:
        if any(not part for part in dotted.split(".")):
            raise ConfigError(f"{dotted}: a secret's key must be a plain dotted key")
        OmegaConf.update(config, dotted, marker(dotted), merge=False)
    return secrets


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """The points of a Hydra multirun: the cartesian product of every sweep override."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    axes = []
    for override in parsed:
        key = override.get_key_element()
        if override.is_sweep_override():
            axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            axes.append([f"{key}={override.get_value_element_as_str()}"])
    return [list(point) for point in itertools.product(*axes)]


def to_container(config: DictConfig) -> dict:
    """The composed config as plain, resolved Python data."""
    return OmegaConf.to_container(config, resolve=True)
