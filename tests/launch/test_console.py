"""What a step shows on the console (launch/console.py) and the lines a finished run ends with (launch/summary.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from launch.console import StepConsole, log_tail
from launch.stages import STAGES
from launch.summary import closing_lines, describe

LLAMA_FACTORY = [
    "[INFO|tokenization_utils_base.py:2109] 2026-12-03 12:51:04,858 >> loading file vocab.json",
    '[INFO|configuration_utils.py:839] 2026-12-03 12:51:05,684 >> Model config Qwen3Config {',
    '  "hidden_size": 64,',
    "}",
    "[WARNING|2026-12-03 12:50:50] llamafactory.hparams.parser:149 >> We recommend enable mixed precision training.",
    "[WARNING|2026-12-03 12:51:04] llamafactory.hparams.parser:149 >> We recommend enable mixed precision training.",
    "  0%|          | 0/10 [00:00<?, ?it/s]",
    "{'loss': 11.92, 'grad_norm': 3.1, 'learning_rate': 0.001, 'epoch': 0.06}",
    " 10%|█         | 1/10 [00:02<00:20,  2.2s/it]",
    " 30%|███       | 3/10 [00:06<00:15,  2.2s/it]",
    "{'loss': 11.5, 'grad_norm': 3.0, 'learning_rate': 0.0009, 'epoch': 0.2}",
    " 60%|██████    | 6/10 [00:12<00:08,  2.2s/it]",
    "100%|██████████| 10/10 [00:22<00:00,  2.2s/it]",
    "Training completed. Do not forget to share your model on huggingface.co/models =)",
    "[launch] something of ours",
    "error: the file is missing",
]


def shown(mode: str, lines: list[str], tty: bool = False) -> str:
    """What the console shows of `lines` in `mode`."""
    stream = io.StringIO()
    stream.isatty = lambda: tty
    console = StepConsole(mode, stream)
    for line in lines:
        console.write(line)
    console.close()
    return stream.getvalue()


def test_all_shows_every_line() -> None:
    """A step of the project's own shows everything it prints."""
    assert shown("all", LLAMA_FACTORY).splitlines() == LLAMA_FACTORY


def test_progress_shows_bars_with_the_loss_warnings_once_and_our_lines() -> None:
    """Library INFO, config dumps and chatter stay in the log; bars at each quarter carry the loss."""
    out = shown("progress", LLAMA_FACTORY).splitlines()
    assert out == [
        LLAMA_FACTORY[4],
        "0%|          | 0/10 [00:00<?, ?it/s]",
        "30%|███       | 3/10 [00:06<00:15,  2.2s/it]  loss 11.92",
        "60%|██████    | 6/10 [00:12<00:08,  2.2s/it]  loss 11.5",
        "100%|██████████| 10/10 [00:22<00:00,  2.2s/it]  loss 11.5",
        "[launch] something of ours", "error: the file is missing"]


def test_progress_redraws_one_bar_on_a_terminal() -> None:
    """On a terminal every bar update redraws the line in place, and the bar is ended before the next line."""
    out = shown("progress", LLAMA_FACTORY[6:10] + ["[launch] done"], tty=True)
    assert out.count("\r") == 3 and out.endswith("2.2s/it]  loss 11.92\n[launch] done\n")


def test_an_unknown_mode_is_refused() -> None:
    """Only the modes the Plan may name."""
    with pytest.raises(ValueError, match="expected one of all, progress"):
        StepConsole("quiet", io.StringIO())


def test_log_tail_keeps_the_last_lines() -> None:
    """A failed step's console shows its log's last non-blank lines."""
    assert log_tail("a\n\nb\nc\n", 2) == ["b", "c"]


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("results.json", json.dumps({"accuracy": 0.5, "questions": 32}), "accuracy 50.00% of 32 questions"),
    ("sft.json", json.dumps([{}, {}, {}]), "3 samples"),
    ("trajectories.jsonl", "{}\n{}\n\n", "2 lines"),
    ("view.html", "x" * 2048, "2.0 KB"),
])
def test_describe_counts_what_an_output_holds(name: str, content: str, expected: str, tmp_path: Path) -> None:
    """Each kind of output is described by its count."""
    (tmp_path / name).write_text(content)
    assert describe(tmp_path / name) == expected


def test_describe_a_model_folder_and_a_missing_output(tmp_path: Path) -> None:
    """A folder with weights is a model; a missing output says so."""
    (tmp_path / "model.safetensors").write_bytes(b"0" * 2_000_000)
    assert describe(tmp_path) == "a model, 1 weight file(s), 2.0 MB"
    assert describe(tmp_path / "nope") == "missing"


# What a dry-run Plan of each stage needs beyond recipe=tiny (the inputs a real run would read).
DRY_RUN = {"captions": ["captions.video_dir=videos", "captions.output_dir=captions"],
           "sft_data": ["sft_data.input=t.jsonl"], "rl_data": ["rl_data.annotations=a.json", "rl_data.caption_dir=c"],
           "eval": ["benchmark=demo"], "trajectories": ["benchmark=demo"]}
# The files and folders those name, made empty.
DRY_RUN_INPUTS = ("videos/", "captions/", "c/", "t.jsonl", "a.json")


def dry_plan(stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The dry-run Plan of `stage` for recipe=tiny (with the stage's required inputs), built in this process."""
    import sys

    from launch.compose import compose_config

    monkeypatch.chdir(tmp_path)
    for name in DRY_RUN_INPUTS:
        (tmp_path / name).mkdir() if name.endswith("/") else (tmp_path / name).write_text("[]")
    needs_recipe = STAGES[stage].needs_recipe or stage in ("sft_data", "rl_data")
    overrides = [*(["recipe=tiny"] if needs_recipe else []), "dry_run=true", f"run_root={tmp_path}",
                 *DRY_RUN.get(stage, [])]
    config = compose_config(stage, overrides, STAGES[stage].needs_recipe).config
    return STAGES[stage].build_plan(config, tmp_path / "run", "tiny/run", sys.executable)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_next_step_fills_in(stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each stage's next commands name only the recipe, the run directory and its own Plan's outputs."""
    import string

    plan = dry_plan(stage, tmp_path, monkeypatch)
    fields = {name for step in STAGES[stage].next_steps for _, name, _, _ in string.Formatter().parse(step) if name}
    allowed = {"recipe", "run_dir"} | {f"output_{key}" for key in plan.outputs}
    assert fields <= allowed, fields - allowed
    lines = closing_lines(plan.outputs, STAGES[stage].next_steps, "tiny", tmp_path / "run")
    assert len(lines) == len(plan.outputs) + len(STAGES[stage].next_steps)
    assert all("{" not in line for line in lines)
