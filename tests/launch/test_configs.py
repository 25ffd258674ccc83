"""Every YAML file in recipes/ and configs/, found by globbing, composes and passes its stage's typed schemas.

Each recipe is dry-run through every registered stage, and each option of every config group through
the stage that reads it: an unknown key, a wrong type or a missing value in any file fails here,
naming the file's stage and the key. Nothing is trained or served: `--dry-run` only builds the Plan.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from launch.compose import CONFIG_DIR, RECIPE_DIR, compose_config, group_options, recipe_names
from launch.stages import STAGES
from tests.launch.test_cli import run_main

# The stage that reads a config group which is not itself a stage's section.
GROUP_READERS = {"benchmark": "eval", "launcher": "sft", "reward": "rl", "tool": "eval"}
# What a stage needs on the command line before it can build a Plan (inputs that are the user's own).
NEEDS = {
    "eval": ["benchmark=demo"],
    "trajectories": ["benchmark=demo"],
    "captions": ["captions.video_dir={videos}", "captions.output_dir={out}"],
    "sft_data": ["sft_data.input={trajectories}"],
    "rl_data": ["rl_data.annotations={annotations}", "rl_data.caption_dir={captions}"],
}


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, str]:
    """Empty stand-ins for the user's inputs, and a private run root."""
    for folder in ("videos", "out", "captions"):
        (tmp_path / folder).mkdir()
    for name in ("trajectories.jsonl", "annotations.json"):
        (tmp_path / name).write_text("")
    return {"videos": str(tmp_path / "videos"), "out": str(tmp_path / "out"), "captions": str(tmp_path / "captions"),
            "trajectories": str(tmp_path / "trajectories.jsonl"), "annotations": str(tmp_path / "annotations.json"),
            "run_root": str(tmp_path / "runs")}


def dry_run(stage: str, overrides: list[str], inputs: dict[str, str]):
    """`python -m launch STAGE OVERRIDES --dry-run`, in process, with the stage's own inputs filled in."""
    needs = [item.format(**inputs) for item in NEEDS.get(stage, [])]
    return run_main(stage, *overrides, *needs, f"run_root={inputs['run_root']}", "--dry-run")


def config_groups() -> list[str]:
    """Every folder of configs/ that holds YAML options."""
    return sorted(path.name for path in CONFIG_DIR.iterdir() if path.is_dir() and any(path.glob("*.yaml")))


def group_reader(group: str) -> str:
    """The stage whose dry run validates the options of `group`."""
    stage = group if group in STAGES else GROUP_READERS.get(group)
    if stage is None:
        raise AssertionError(f"configs/{group}/ is read by no stage this test knows: add it to GROUP_READERS")
    return stage


@pytest.mark.parametrize("stage", sorted(STAGES))
@pytest.mark.parametrize("recipe", recipe_names())
def test_every_recipe_builds_every_stage(recipe: str, stage: str, inputs: dict[str, str]) -> None:
    """recipes/<recipe>.yaml composes with every stage and passes the stage's schemas."""
    result = dry_run(stage, [f"recipe={recipe}"], inputs)
    assert result.code == 0, f"recipes/{recipe}.yaml, stage {stage}:\n{result.err}"


@pytest.mark.parametrize(("group", "option"), [(group, option) for group in config_groups()
                                               for option in group_options(group)])
def test_every_group_option_passes_its_stage(group: str, option: str, inputs: dict[str, str]) -> None:
    """configs/<group>/<option>.yaml composes on the tiny recipe and passes the reading stage's schemas."""
    stage = group_reader(group)
    overrides = ["recipe=tiny", f"{group}={option}"]
    if stage in ("eval", "trajectories") and group != "benchmark":
        overrides.append("benchmark=demo")
    result = dry_run(stage, overrides, inputs)
    assert result.code == 0, f"configs/{group}/{option}.yaml, stage {stage}:\n{result.err}"


@pytest.mark.parametrize(("stage", "override", "named"), [
    ("sft", "+sft.bogus=1", "sft.bogus"),
    ("sft", "sft.cutoff_len=abc", "sft.cutoff_len"),
    ("rl", "+rl.bogus=1", "rl.bogus"),
    ("rl", "rl.train_batch_size=many", "rl.train_batch_size"),
    ("eval", "+eval.bogus=1", "eval.bogus"),
    ("captions", "captions.workers=two", "captions.workers"),
    ("audit", "+audit.bogus=1", "audit.bogus"),
    ("rollouts", "+rollouts.bogus=1", "rollouts.bogus"),
    ("eval", "+tool.default.vlm.bogus=1", "tool.default.vlm.bogus: unknown key"),
    ("eval", "+tool.default.vlm.api_key=sk-1", "tool.default.vlm.api_key: the key must not be in a config"),
    ("rl", "+rl.trainer_overrides.trainer.hub_token=t", "rl.trainer_overrides.trainer.hub_token looks like a secret"),
])
def test_a_bad_key_fails_naming_it(stage: str, override: str, named: str, inputs: dict[str, str]) -> None:
    """An unknown key or a wrong type in a section is refused by the schema, naming the key."""
    result = dry_run(stage, ["recipe=tiny", override] + (["benchmark=demo"] if stage == "eval" else []), inputs)
    assert result.code != 0
    assert named in result.err, result.err


def test_every_group_has_a_reader() -> None:
    """Each config group is validated by some stage, so no folder of configs/ escapes the schemas."""
    assert {group: group_reader(group) for group in config_groups()}


def recipe_leaves(node: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Every (dotted key, raw value) a recipe file sets, interpolations left as written."""
    found = []
    for key, value in node.items():
        if isinstance(value, dict) and value:
            found += recipe_leaves(value, f"{prefix}{key}.")
        else:
            found.append((f"{prefix}{key}", value))
    return found


def restated_defaults(recipe_file: Path) -> list[str]:
    """The keys `recipe_file` sets to exactly the value configs/ already gives them."""
    base = compose_config("sft", [], needs_recipe=False).config
    raw = OmegaConf.to_container(OmegaConf.load(recipe_file), resolve=False)
    restated = []
    for key, value in recipe_leaves(raw):
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(base, parent) if parent else base
        if isinstance(node, DictConfig) and leaf in node:
            if OmegaConf.to_container(node, resolve=False)[leaf] == value:
                restated.append(key)
    return restated


@pytest.mark.parametrize("recipe", recipe_names())
def test_a_recipe_states_only_what_differs(recipe: str) -> None:
    """No recipe repeats a default of configs/: a recipe reads as its difference from the defaults."""
    assert restated_defaults(RECIPE_DIR / f"{recipe}.yaml") == []


def test_a_restated_default_is_found(tmp_path: Path) -> None:
    """A recipe that sets a key to its default, literally or as the same interpolation, is caught."""
    recipe = tmp_path / "restating.yaml"
    recipe.write_text("sft:\n  finetuning_type: full\n  cutoff_len: 7\nchat:\n  template: qwen\n")
    base_template = compose_config("sft", [], needs_recipe=False).config.chat.template
    expected = ["sft.finetuning_type"] + (["chat.template"] if base_template == "qwen" else [])
    assert restated_defaults(recipe) == expected
