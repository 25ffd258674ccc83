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
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, InterpolationResolutionError

from launch.config_errors import unknown_choice, unknown_key
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


def _try_compose(overrides: list[str]) -> DictConfig | None:
    """The composed config, or None when `overrides` do not compose either."""
    try:
        return _compose(overrides)
    except HydraException:
        return None


def _override_key(override: str) -> str:
    """The dotted key an override sets, without its `+`, `++` or `~`."""
    return override.split("=", 1)[0].lstrip("+~")


def _keys(config: DictConfig | None, parent: str) -> list[str]:
    """The keys of the mapping at `parent` (the root when empty), Hydra's own section left out."""
    node = OmegaConf.select(config, parent) if config is not None and parent else config
    return [str(key) for key in node.keys() if key != "hydra"] if isinstance(node, DictConfig) else []


def _missing_key(error: BaseException) -> str | None:
    """The full dotted key OmegaConf's struct mode refused somewhere in the causes of `error`, if any."""
    cause = error.__cause__ or error.__context__
    while cause is not None:
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and getattr(cause, "full_key", None):
            return str(cause.full_key)
        cause = cause.__cause__ or cause.__context__
    return None


def _unknown_key(key: str, full: list[str]) -> str:
    """A key absent from the config: how to add it to a mapping of free entries, else the nearest key."""
    # No `+` is advised for a typed section: its schema would refuse the added key in turn.
    parent, _, name = key.rpartition(".")
    # The override that set the key, or the mapping around it (`eval.extra_body={a:1}`).
    setting = max((o for o in full if key == _override_key(o) or key.startswith(f"{_override_key(o)}.")),
                  key=lambda o: len(_override_key(o)), default=None)
    # configs/ alone (full[0] is `stage=`) lists every key of a typed section, so an empty mapping there holds
    # free entries (extra_args, extra_body).
    defaults = _try_compose(full[:1])
    is_open = isinstance(OmegaConf.select(defaults, parent), DictConfig) and not _keys(defaults, parent)
    if setting is not None and is_open:
        plain = setting.lstrip("+")
        fix = f"+{plain}" if _override_key(setting) == key else f"++{plain}"
        return f"{key}: {parent} has no entry {name!r}; add it with {fix}"
    return unknown_key(key, _keys(_try_compose([o for o in full if o is not setting]), parent))


def _wrong_prefix(full: list[str]) -> str | None:
    """The first `+` of a key that exists, or `~` of a key that does not, with its fix; None if there is none."""
    absent = object()
    for override in full:
        if override.startswith("++") or not override.startswith(("+", "~")):
            continue
        key = _override_key(override)
        base = _try_compose([o for o in full if o is not override])
        if base is None:
            continue
        exists = OmegaConf.select(base, key, default=absent) is not absent
        if override.startswith("+") and exists:
            return f"{override}: {key} exists already; set it without '+': {override[1:]}"
        if override.startswith("~") and not exists:
            return unknown_key(key, _keys(base, key.rpartition(".")[0]))
    return None


def _without_internals(error: HydraException) -> str:
    """Hydra's message less its config search path and links, on one line."""
    lines = []
    for line in str(error).splitlines():
        if line.startswith("Config search path"):
            break
        if line.strip() and not line.startswith("See https://"):
            lines.append(line.strip())
    return " ".join(lines)


def _unparsable(error: OverrideParseException) -> str:
    """An override Hydra's grammar refuses, and how to quote it."""
    reason = str(error).splitlines()[0]
    return (f"{error.override}: does not parse as KEY=VALUE ({reason}); quote a value that holds spaces, "
            "brackets or braces, e.g. key='a b'")


def explain(error: HydraException, full: list[str]) -> str:
    """One or two lines for a failed composition: the override, what is wrong, the nearest valid key or choice."""
    if isinstance(error, OverrideParseException):
        return _unparsable(error)
    if isinstance(error, MissingConfigException) and "/" in (error.missing_cfg_file or ""):
        group, _, choice = error.missing_cfg_file.rpartition("/")
        return unknown_choice(group, choice, error.options or group_options(group))
    missing = _missing_key(error)
    if missing is not None:
        return _unknown_key(missing, full)
    return _wrong_prefix(full) or _without_internals(error)


def compose_config(stage: str, overrides: list[str], needs_recipe: bool = True) -> Composed:
    """Compose the config of `stage` with `overrides`; errors name what is wrong and the choices."""
    full = [f"stage={stage}", *overrides]
    try:
        config = _compose(full)
    except HydraException as error:
        raise ConfigError(explain(error, full)) from None
    recipe = config.hydra.runtime.choices.get("recipe")
    if recipe is None and needs_recipe:
        raise ConfigError(f"stage {stage!r} needs recipe=NAME; available recipes: {', '.join(recipe_names())}")
    with open_dict(config):
        del config["hydra"]
    try:
        secrets = pull_secrets(config)
    except InterpolationResolutionError as error:
        # The first resolution of the whole config: an interpolation (${...}) that names no key, or fails.
        raise ConfigError(f"{error.full_key}: {str(error).splitlines()[0]}") from None
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
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as error:
        raise ConfigError(_unparsable(error)) from None
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
