"""Hydra composition of configs/ and recipes/, the SFT schema checks, and sweep expansion."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from launch.compose import CONFIG_DIR, RECIPE_DIR, ConfigError, compose_config, expand_sweep, recipe_names, to_container
from launch.stages.datasets import demo_sft_file
from launch.stages.sft_config import FORBIDDEN_EXTRA_ARGS, SFTConfigError, check_sft_config

SFT_DEFAULTS = yaml.safe_load((CONFIG_DIR / "sft" / "default.yaml").read_text())


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point `paths.cache` at a tmp dir so no test reads or names ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LONGVIDEO_R1_CACHE", str(cache))
    return cache


@cache
def compose_sft(*overrides: str):
    """The composed `sft` config for these overrides (cached: a Hydra compose costs a quarter second)."""
    return compose_config("sft", list(overrides))


def with_override(config: DictConfig, override: str) -> DictConfig:
    """A copy of `config` with one override applied, its value typed by Hydra's own override parser."""
    parsed = OverridesParser.create().parse_override(override)
    changed = copy.deepcopy(config)
    with open_dict(changed):
        OmegaConf.update(changed, parsed.key_or_group, parsed.value(), merge=True)
    return changed


def test_recipe_names_lists_every_recipe_file() -> None:
    """recipe_names() is the sorted stems of recipes/*.yaml and holds the shipped recipes."""
    names = recipe_names()
    assert names == sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
    assert {"tiny", "qwen3_8b", "qwen3_4b", "qwen2_5_7b"} <= set(names)


@pytest.mark.parametrize("recipe", recipe_names())
def test_every_recipe_composes_and_passes_the_sft_schema(recipe: str) -> None:
    """Each recipe composes for stage sft, drops the hydra node, and passes check_sft_config."""
    composed = compose_sft(f"recipe={recipe}")
    assert composed.recipe == recipe
    assert composed.config.stage == "sft"
    assert "hydra" not in composed.config
    sft, model, chat = check_sft_config(composed.config)
    assert model.path and chat.template and sft.cutoff_len > 0


@pytest.mark.parametrize(
    ("recipe", "key", "expected"),
    [
        ("tiny", "sft.cutoff_len", 2048),
        ("tiny", "sft.learning_rate", 1e-3),
        ("tiny", "sft.precision", "fp32"),
        ("tiny", "sft.max_steps", 10),
        ("tiny", "sft.report_to", "none"),
        ("tiny", "sft.lora.rank", 8),
        ("qwen2_5_7b", "sft.finetuning_type", "lora"),
        ("qwen2_5_7b", "sft.learning_rate", 1e-4),
        ("qwen2_5_7b", "chat.template", "qwen"),
        ("qwen2_5_7b", "launcher.gpus_per_node", 4),
        ("qwen3_8b", "sft.deepspeed", "z3"),
        ("qwen3_8b", "launcher.gpus_per_node", 8),
    ],
)
def test_recipe_sections_override_the_stage_defaults(recipe: str, key: str, expected: object) -> None:
    """A value a recipe sets wins over configs/sft/default.yaml and configs/launcher/local.yaml."""
    assert OmegaConf.select(compose_sft(f"recipe={recipe}").config, key) == expected


@pytest.mark.parametrize("key", ["packing", "save_total_limit", "extra_args", "logging_steps"])
def test_keys_a_recipe_leaves_out_keep_their_default(key: str) -> None:
    """A key qwen3_8b does not set comes from configs/sft/default.yaml."""
    config = to_container(compose_sft("recipe=qwen3_8b").config)
    assert config["sft"][key] == SFT_DEFAULTS[key]


def test_tiny_cutoff_len_really_differs_from_the_default() -> None:
    """The default cutoff_len is not tiny's, so the override test above is meaningful."""
    assert SFT_DEFAULTS["cutoff_len"] != 2048
    assert yaml.safe_load((RECIPE_DIR / "tiny.yaml").read_text())["sft"]["cutoff_len"] == 2048


def test_command_line_overrides_win_over_the_recipe() -> None:
    """An override on the command line beats the recipe's value."""
    config = compose_sft("recipe=tiny", "sft.cutoff_len=4096", "launcher.gpus_per_node=2").config
    assert (config.sft.cutoff_len, config.launcher.gpus_per_node) == (4096, 2)


def test_cache_interpolation_follows_the_environment(private_cache: Path) -> None:
    """tiny's model and demo dataset paths resolve under $LONGVIDEO_R1_CACHE (its dataset key is the hand-off's)."""
    composed = compose_sft("recipe=tiny").config
    config = to_container(composed)
    assert config["model"]["path"] == f"{private_cache}/models/tiny-qwen3"
    assert config["sft"]["dataset"]["path"] is None
    assert demo_sft_file(composed) == f"{private_cache}/demo/sft-user-t15/sft.json"


@pytest.mark.parametrize("overrides", [["recipe=nope"], []], ids=["unknown", "missing"])
def test_unknown_or_missing_recipe_lists_the_recipes(overrides: list[str]) -> None:
    """A recipe that does not exist (or none at all) raises ConfigError naming every recipe."""
    with pytest.raises(ConfigError) as error:
        compose_sft(*overrides)
    message = str(error.value)
    for name in recipe_names():
        assert name in message
    if overrides:
        assert "nope" in message


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("sft.lerning_rate=1", "sft.lerning_rate: no such key; did you mean sft.learning_rate?"),
        ("sft.lora.rnk=1", "sft.lora.rnk: no such key; did you mean sft.lora.rank?"),
        ("sft.zzz=1", f"sft.zzz: no such key; keys of sft: {', '.join(sorted(SFT_DEFAULTS))}"),
        ("lerning_rate=1", "lerning_rate: no such key; top-level keys: "),
    ],
)
def test_unknown_key_names_it_and_the_nearest_key(override: str, named: str) -> None:
    """A misspelt key raises ConfigError naming the key and the nearest key there, or all of them when none is near."""
    with pytest.raises(ConfigError) as error:
        compose_sft("recipe=tiny", override)
    assert str(error.value).startswith(named)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        # Type errors come from OmegaConf: the message names the whole key (launch/schema.py).
        ("sft.cutoff_len=abc", ["sft.cutoff_len='abc'"]),
        ("sft.learning_rate=fast", ["sft.learning_rate='fast'"]),
        ("sft.lora.rank=big", ["sft.lora.rank='big'"]),
        ("sft.precision=fp8", ["sft.precision", "fp8", "bf16"]),
        ("sft.deepspeed=z9", ["sft.deepspeed", "z9", "z3_offload"]),
        ("sft.finetuning_type=qlora", ["sft.finetuning_type", "lora"]),
        ("sft.report_to=tensorboard", ["sft.report_to", "offline"]),
        ("chat.observation_role=bot", ["chat.observation_role", "bot", "tool"]),
        ("model.build=huge", ["model.build", "tiny_qwen3"]),
        ("sft.dataset.build=real", ["sft.dataset.build", "demo"]),
        ("sft.warmup_ratio=1.0", ["sft.warmup_ratio", "[0, 1)"]),
        ("sft.learning_rate=0", ["sft.learning_rate", "> 0"]),
        ("sft.max_steps=0", ["sft.max_steps", "> 0"]),
        ("sft.per_device_train_batch_size=-2", ["sft.per_device_train_batch_size"]),
    ],
)
def test_invalid_sft_value_raises_naming_the_key(override: str, named: list[str]) -> None:
    """A wrong type, a bad choice or an out-of-range value raises SFTConfigError naming the key."""
    config = with_override(compose_sft("recipe=tiny").config, override)
    with pytest.raises(SFTConfigError) as error:
        check_sft_config(config)
    for text in named:
        assert text in str(error.value)


@pytest.mark.parametrize(("key", "value"), [(key, "x") for key in FORBIDDEN_EXTRA_ARGS] + [("mask_history", "true")])
def test_forbidden_extra_args_are_refused(key: str, value: str) -> None:
    """Every LLaMA-Factory argument the stage owns is refused when given through extra_args."""
    config = with_override(compose_sft("recipe=tiny").config, f"+sft.extra_args.{key}={value}")
    with pytest.raises(SFTConfigError, match=rf"sft\.extra_args\.{key} is not allowed"):
        check_sft_config(config)


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ("sft.cutoff_len=abc", "cutoff_len"),
        ("sft.precision=fp8", "sft.precision"),
        ("+sft.extra_args.mask_history=true", "sft.extra_args.mask_history is not allowed"),
    ],
)
def test_bad_values_from_a_real_composition_are_refused(override: str, error: str) -> None:
    """Through a real Hydra composition (no shortcut), bad values still raise SFTConfigError."""
    config = compose_config("sft", ["recipe=tiny", override]).config
    with pytest.raises(SFTConfigError, match=error.replace(".", r"\.")):
        check_sft_config(config)


def test_allowed_extra_args_pass_through() -> None:
    """An extra argument the stage does not own passes the check unchanged."""
    sft, _, _ = check_sft_config(compose_sft("recipe=tiny", "+sft.extra_args.neftune_noise_alpha=5").config)
    assert sft.extra_args == {"neftune_noise_alpha": 5}


@pytest.mark.parametrize(
    ("overrides", "points"),
    [
        (
            ["a=1,2", "b=x,y", "c=3"],
            [["a=1", "b=x", "c=3"], ["a=1", "b=y", "c=3"], ["a=2", "b=x", "c=3"], ["a=2", "b=y", "c=3"]],
        ),
        (["a=1", "b=x"], [["a=1", "b=x"]]),
        (["recipe=tiny", "+sft.extra_args.k=1,2"], [["recipe=tiny", "+sft.extra_args.k=1"],
                                                    ["recipe=tiny", "+sft.extra_args.k=2"]]),
        # A quoted comma is a value, not a sweep.
        (["name='a,b'"], [["name='a,b'"]]),
        ([], [[]]),
    ],
)
def test_expand_sweep_is_the_cartesian_product(overrides: list[str], points: list[list[str]]) -> None:
    """Sweep overrides multiply into points; plain overrides appear unchanged in every point."""
    assert expand_sweep(overrides) == points


def test_sweep_points_compose_to_their_values() -> None:
    """Each point of a learning-rate sweep composes to its own learning rate, the rest shared."""
    points = expand_sweep(["recipe=tiny", "sft.learning_rate=1e-4,2e-4", "sft.cutoff_len=1024"])
    configs = [compose_sft(*point).config for point in points]
    assert [c.sft.learning_rate for c in configs] == [1e-4, 2e-4]
    assert {c.sft.cutoff_len for c in configs} == {1024}
