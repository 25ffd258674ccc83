"""Every recipe's rendered SFT arguments pass LLaMA-Factory's own parser (torchtune's habit)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launch.compose import compose_config, recipe_names
from launch.stages import sft
from launch.validate_sft import TrainArgsError, check_train_args
from tests.conftest import DEMO_MAX_TURNS


def render(recipe: str, tmp_path: Path, dataset: Path, *overrides: str) -> dict:
    """The recipe's LLaMA-Factory arguments, with its dataset registered in a tmp run dir."""
    config = compose_config("sft", [f"recipe={recipe}", f"sft.dataset.path={dataset}", *overrides]).config
    run_dir = tmp_path / "run"
    (run_dir / sft.LF_DIR).mkdir(parents=True)
    (run_dir / sft.LF_DIR / "dataset_info.json").write_text(json.dumps(sft.dataset_info(str(dataset))))
    return sft.train_args(config, run_dir, f"{recipe}/test")


@pytest.mark.parametrize("recipe", recipe_names())
def test_recipe_passes_llamafactory_parser(recipe: str, tiny_cache: Path, tmp_path: Path) -> None:
    """The recipe renders arguments that LLaMA-Factory's get_train_args accepts."""
    args = render(recipe, tmp_path, tiny_cache / "demo" / f"sft-user-t{DEMO_MAX_TURNS}" / "sft.json")
    check_train_args(args, recipe)
    assert args["stage"] == "sft" and "mask_history" not in args


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lerning_rate": 1e-5}, "lerning_rate"),
        ({"stage": "pt"}, "stage must be 'sft'"),
        ({"mask_history": True}, "mask_history"),
        ({"template": "no_such_template"}, "no_such_template"),
        ({"bf16": "yes"}, "bf16 must be bool"),
        ({"dataset": "unregistered"}, "not registered"),
        ({"deepspeed": "/nonexistent/ds.json"}, "deepspeed config not found"),
    ],
)
def test_invalid_arguments_are_named(change: dict, message: str, tiny_cache: Path, tmp_path: Path) -> None:
    """An invalid argument fails validation with a message that names it."""
    args = {**render("tiny", tmp_path, tiny_cache / "demo" / f"sft-user-t{DEMO_MAX_TURNS}" / "sft.json"), **change}
    with pytest.raises(TrainArgsError, match=message):
        check_train_args(args, "case")


def test_missing_dataset_file_is_named(tiny_cache: Path, tmp_path: Path) -> None:
    """A dataset path that does not exist is reported with the path and how to build it."""
    missing = tmp_path / "nowhere.json"
    with pytest.raises(TrainArgsError, match="nowhere.json"):
        check_train_args(render("tiny", tmp_path, missing, "sft.dataset.build=null"), "case")


def test_malformed_dataset_names_the_record(tiny_cache: Path, tmp_path: Path) -> None:
    """A dataset record without a messages list is reported with its index."""
    bad = tmp_path / "bad.json"
    good = {"messages": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    bad.write_text(json.dumps([good, {"conversations": []}]))
    with pytest.raises(TrainArgsError, match="record 1"):
        check_train_args(render("tiny", tmp_path, bad, "sft.dataset.build=null"), "case")


def test_demo_build_needs_the_builders_file_name(tmp_path: Path) -> None:
    """With sft.dataset.build=demo the path must end in sft.json, the file the demo builder writes."""
    from launch.stages.sft_config import SFTConfigError, check_sft_config

    config = compose_config("sft", ["recipe=tiny", f"sft.dataset.path={tmp_path / 'other.json'}"]).config
    with pytest.raises(SFTConfigError, match="other.json: the demo builder writes sft.json"):
        check_sft_config(config)
    check_sft_config(compose_config("sft", ["recipe=tiny", f"sft.dataset.path={tmp_path / 'sft.json'}"]).config)
