"""Every config mistake on the command line: one or two lines naming the full key and the nearest valid key or choice.

Each row runs `python -m launch STAGE ... --dry-run` in this process, checks the exact message, that it exits 2,
that none of Hydra's or OmegaConf's internals show, and, where the message gives a fix, that the fix runs.
"""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import pytest

from launch.cli import main
from launch.compose import group_options, recipe_names
from launch.config_errors import did_you_mean, unknown_choice, unknown_key

# What a message must never show: Hydra's search path and advice, OmegaConf's key dumps, our schema classes.
INTERNALS = ("Config search path", "full_key", "object_type", "SFTConfig", "DictConfig", "ListConfig", "To append",
             "Valid keys under", "hydra.cc", "Traceback")


def run(tmp_path: Path, *argv: str) -> tuple[int, str]:
    """`python -m launch ARGV --dry-run` in this process: its exit code and the error part of its stderr."""
    err = io.StringIO()
    env = {"WANDB_API_KEY": "", "LONGVIDEO_R1_CACHE": str(tmp_path / "cache")}
    with mock.patch.dict(os.environ, env), redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main([*argv, f"run_root={tmp_path / 'runs'}", "--dry-run"])
    text = err.getvalue()
    # A stage may warn before the error (e.g. that no SFT run exists yet); the error starts at `error: `.
    return code, text[text.find("error: "):] if "error: " in text else ""


# (argv, the exact message after `error: `, argv with the message's fix applied, or None when it names none).
MISTAKES = [
    pytest.param(["sft", "recipe=qwen3-8b"],
                 f"recipe='qwen3-8b' is not one of: {', '.join(recipe_names())}; did you mean qwen3_8b or qwen3_4b?",
                 ["sft", "recipe=qwen3_8b"], id="recipe"),
    pytest.param(["sft", "recipe=tiny", "sft.learning_rat=1e-5"],
                 "sft.learning_rat: no such key; did you mean sft.learning_rate?",
                 ["sft", "recipe=tiny", "sft.learning_rate=1e-5"], id="key"),
    pytest.param(["sft", "recipe=tiny", "+sft.learning_rat=1e-5"],
                 "sft.learning_rat: no such key; did you mean sft.learning_rate?",
                 ["sft", "recipe=tiny", "sft.learning_rate=1e-5"], id="added-key"),
    pytest.param(["sft", "recipe=tiny", "sft.lora.rnak=4"],
                 "sft.lora.rnak: no such key; did you mean sft.lora.rank?",
                 ["sft", "recipe=tiny", "sft.lora.rank=4"], id="nested-key"),
    pytest.param(["sft", "recipe=tiny", "sft.lora={rnak:4}"],
                 "sft.lora.rnak: no such key; did you mean sft.lora.rank?",
                 ["sft", "recipe=tiny", "sft.lora={rank:4}"], id="key-in-a-mapping"),
    pytest.param(["sft", "recipe=tiny", "sft.lerning_rat=1e-5"],
                 "sft.lerning_rat: no such key; did you mean sft.learning_rate?", None, id="key-two-typos"),
    pytest.param(["sft", "recipe=tiny", "wandb.projet=x"],
                 "wandb.projet: no such key; did you mean wandb.project?",
                 ["sft", "recipe=tiny", "wandb.project=x"], id="untyped-section-key"),
    pytest.param(["sft", "recipe=tiny", "launcher.gpus_per_nod=2"],
                 "launcher.gpus_per_nod: no such key; did you mean launcher.gpus_per_node?",
                 ["sft", "recipe=tiny", "launcher.gpus_per_node=2"], id="launcher-key"),
    pytest.param(["sft", "recipe=tiny", "~sft.lora.rnak"],
                 "sft.lora.rnak: no such key; did you mean sft.lora.rank?", None, id="deleted-key"),
    pytest.param(["sft", "recipe=tiny", "+sft.learning_rate=1e-5"],
                 "+sft.learning_rate=1e-5: sft.learning_rate exists already; set it without '+': "
                 "sft.learning_rate=1e-5",
                 ["sft", "recipe=tiny", "sft.learning_rate=1e-5"], id="added-existing-key"),
    pytest.param(["sft", "recipe=tiny", "sft.num_train_epochs=abc"],
                 "sft.num_train_epochs='abc': expected a number", None, id="number"),
    pytest.param(["sft", "recipe=tiny", "sft.cutoff_len=abc"],
                 "sft.cutoff_len='abc': expected an integer", None, id="integer"),
    pytest.param(["sft", "recipe=tiny", "sft.packing=maybe"],
                 "sft.packing='maybe': expected true or false", None, id="bool"),
    pytest.param(["sft", "recipe=tiny", "sft.learning_rate={a:1}"],
                 "sft.learning_rate={'a': 1}: expected a number, not a mapping; write sft.learning_rate=<a number>",
                 None, id="mapping-for-a-scalar"),
    pytest.param(["sft", "recipe=tiny", "sft.lora=4"],
                 "sft.lora=4: expected a mapping of rank, alpha, dropout, target; set its keys one by one, e.g. "
                 "sft.lora.rank=...", None, id="scalar-for-a-section"),
    pytest.param(["sft", "recipe=tiny", "sft.extra_args=4"],
                 "sft.extra_args=4: expected a mapping; add its entries one by one, e.g. +sft.extra_args.NAME=VALUE",
                 None, id="scalar-for-a-mapping"),
    pytest.param(["sft", "recipe=tiny", "sft.finetuning_type=lroa"],
                 "sft.finetuning_type='lroa' is not one of: full, lora; did you mean lora?",
                 ["sft", "recipe=tiny", "sft.finetuning_type=lora"], id="value-choice"),
    pytest.param(["sft", "recipe=tiny", "reward=defalt"],
                 f"reward='defalt' is not one of: {', '.join(group_options('reward'))}; did you mean default?",
                 ["sft", "recipe=tiny", "reward=default"], id="reward"),
    pytest.param(["sft", "recipe=tiny", "launcher=slrum"],
                 "launcher='slrum' is not one of: local, slurm; did you mean slurm?", None, id="launcher"),
    pytest.param(["eval", "recipe=tiny", "benchmark=demoo"],
                 f"benchmark='demoo' is not one of: {', '.join(group_options('benchmark'))}; did you mean demo?",
                 ["eval", "recipe=tiny", "benchmark=demo"], id="benchmark"),
    pytest.param(["eval", "recipe=tiny", "benchmark=demo", "eval.extra_body={a:1}"],
                 "eval.extra_body.a: eval.extra_body has no entry 'a'; add it with ++eval.extra_body={a:1}",
                 ["eval", "recipe=tiny", "benchmark=demo", "++eval.extra_body={a:1}"], id="entries-set-whole"),
    pytest.param(["eval", "recipe=tiny", "benchmark=demo", "eval.extra_body.seed=1"],
                 "eval.extra_body.seed: eval.extra_body has no entry 'seed'; add it with +eval.extra_body.seed=1",
                 ["eval", "recipe=tiny", "benchmark=demo", "+eval.extra_body.seed=1"], id="entry"),
    pytest.param(["sft", "recipe=tiny", "sft.lora.rank=[4"],
                 "sft.lora.rank=[4: does not parse as KEY=VALUE (no viable alternative at input '[4'); quote a value "
                 "that holds spaces, brackets or braces, e.g. key='a b'", None, id="grammar"),
    pytest.param(["sft", "recipe=tiny", "name=${nope}"],
                 "name: Interpolation key 'nope' not found", None, id="interpolation"),
]


@pytest.mark.parametrize(("argv", "message", "fixed"), MISTAKES)
def test_a_mistake_is_named_in_one_or_two_lines_and_its_fix_runs(argv: list[str], message: str,
                                                                  fixed: list[str] | None, tmp_path: Path) -> None:
    """Exit 2, `error: ` and the exact message, no internals; following the message's advice gives no error."""
    code, error = run(tmp_path, *argv)
    assert code == 2, error
    assert error.rstrip("\n") == f"error: {message}"
    assert error.count("\n") <= 2
    assert not [internal for internal in INTERNALS if internal in error]
    if fixed is not None:
        code, error = run(tmp_path, *fixed)
        assert (code, error) == (0, ""), error


def test_a_trainer_key_is_suggested_by_the_same_helper(tmp_path: Path) -> None:
    """The RL trainer's own keys (launch/trainer_keys.py) are suggested through `did_you_mean` too."""
    code, error = run(tmp_path, "rl", "recipe=tiny", "+rl.trainer_overrides.trainer.log_val_generatons=3")
    assert code == 2
    assert error.rstrip("\n").endswith("; did you mean trainer.log_val_generations?")


@pytest.mark.parametrize(("key", "keys", "message"), [
    ("sft.learning_rat", ["learning_rate", "lora"], "sft.learning_rat: no such key; did you mean sft.learning_rate?"),
    ("sft.zzz", ["lora", "cutoff_len"], "sft.zzz: no such key; keys of sft: cutoff_len, lora"),
    ("zzz", ["sft", "rl"], "zzz: no such key; top-level keys: rl, sft"),
    ("sft.zzz", [], "sft.zzz: no such key"),
])
def test_unknown_key_names_the_nearest_key_or_all_of_them(key: str, keys: list[str], message: str) -> None:
    """The nearest key of the section when one is near; otherwise every key there."""
    assert unknown_key(key, keys) == message


def test_unknown_choice_and_did_you_mean() -> None:
    """A choice is shown as the config holds it, with the nearest choices, nearest first; none when none is near."""
    assert unknown_choice("sft.precision", "bf61", ["bf16", "fp16"]) == (
        "sft.precision='bf61' is not one of: bf16, fp16; did you mean bf16?")
    assert unknown_choice("x", None, [1, 2]) == "x=null is not one of: 1, 2"
    assert did_you_mean("defalt", ["default", "paper"]) == "; did you mean default?"
    assert did_you_mean("zzz", ["default", "paper"]) == ""
