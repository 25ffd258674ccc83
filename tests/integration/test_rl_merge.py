"""An RL run's FSDP checkpoint merges into a Hugging Face model with verl's own merger via `python -m launch merge`.

The checkpoint is genuine: two gloo processes shard the tiny Qwen3 model with FSDP2's `fully_shard`
and save it with verl's own `FSDPCheckpointManager` (tests/fixtures/fsdp_checkpoint.py), after adding a known
delta to every weight, so the merged model must equal the perturbed weights and not the tiny model's.
The refusals run in-process on a hand-made layout without weights: they stop before the merger starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from launch import rl_merge
from tests.conftest import PROJECT_ROOT, launch
from tests.fixtures.fsdp_checkpoint import perturb

# Steps the fixture saves; the last is the one verl records as the latest.
STEPS = (1, 3)
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
SAMPLE = "<|im_start|>user\nWhere does the red car turn?<|im_end|>\n<think>\n</think>\n<tool_call>"


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_cache: Path) -> Path:
    """The tiny Qwen3 model the checkpoint starts from."""
    return tiny_cache / "models" / "tiny-qwen3"


@pytest.fixture(scope="module")
def rl_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RL run folder whose `checkpoints/` verl's FSDPCheckpointManager wrote from 2 FSDP2 ranks (steps 1, 3)."""
    run = tmp_path_factory.mktemp("rl") / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "tests.fixtures.fsdp_checkpoint", "--model", str(tiny_model_dir),
               "--checkpoints", str(run / rl_merge.CHECKPOINT_DIR), "--steps", *map(str, STEPS)]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **OFFLINE, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return run


@pytest.fixture(scope="module")
def weights(tiny_model_dir: Path):
    """step -> the float32 state dict the checkpoint of that step holds (step 0: the tiny model itself)."""
    from transformers import AutoModelForCausalLM

    def state(step: int) -> dict:
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype="float32")
        return dict(perturb(model, step).state_dict())

    return {step: state(step) for step in (0, *STEPS)}


def assert_merged(model_dir: Path, expected: dict, others: list[dict]) -> None:
    """The model at `model_dir` loads, in verl's bfloat16, equal to `expected` and different from each of `others`."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    merged = model.state_dict()
    assert merged.keys() == expected.keys()
    for key, tensor in merged.items():
        # verl's merger casts every shard to bfloat16 before it concatenates and saves them.
        assert tensor.dtype == torch.bfloat16, key
        same = torch.equal(tensor, expected[key].to(torch.bfloat16))
        assert same, f"{key} is not the saved weight"
        for other in others:
            same = torch.equal(tensor, other[key].to(torch.bfloat16))
            assert not same, f"{key} equals another model's"


def assert_tokenizer(model_dir: Path, tiny_model_dir: Path) -> None:
    """The merged model's tokenizer is the run's: same ids, special tokens and chat template."""
    from transformers import AutoTokenizer

    merged, original = AutoTokenizer.from_pretrained(model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    assert merged(SAMPLE)["input_ids"] == original(SAMPLE)["input_ids"]
    assert (merged.eos_token, merged.pad_token) == (original.eos_token, original.pad_token) == ("<|im_end|>",
                                                                                                "<|endoftext|>")
    assert merged.chat_template and merged.chat_template == original.chat_template


@pytest.mark.slow
def test_checkpoint_is_verl_fsdp_layout(rl_run: Path):
    """The fixture's checkpoint has the layout verl's trainer and FSDPCheckpointManager write."""
    import json

    checkpoints = rl_run / rl_merge.CHECKPOINT_DIR
    assert (checkpoints / rl_merge.LATEST_FILE).read_text() == str(STEPS[-1])
    assert rl_merge.checkpoint_steps(checkpoints) == list(STEPS)
    for step in STEPS:
        actor = checkpoints / f"global_step_{step}" / "actor"
        assert json.loads((actor / "fsdp_config.json").read_text()) == {"FSDP_version": 2, "world_size": 2}
        for rank in range(2):
            for kind in ("model", "optim", "extra_state"):
                assert (actor / f"{kind}_world_size_2_rank_{rank}.pt").is_file()
        assert (actor / "huggingface" / "config.json").is_file()
        assert (actor / "huggingface" / "tokenizer.json").is_file()


@pytest.mark.slow
def test_merge_latest_step(rl_run: Path, weights: dict, tiny_model_dir: Path):
    """`python -m launch merge RUN` merges the recorded latest step into RUN/model; a second merge is refused."""
    done = launch("merge", str(rl_run), env=OFFLINE, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    target = rl_run / rl_merge.MERGED_DIR
    assert f"[merge] step {STEPS[-1]}:" in done.stdout and f"Hugging Face model at {target}" in done.stdout
    assert_merged(target, weights[STEPS[-1]], [weights[0], weights[STEPS[0]]])
    assert_tokenizer(target, tiny_model_dir)

    saved = (target / "model.safetensors").stat().st_mtime_ns
    again = launch("merge", str(rl_run), env=OFFLINE, timeout=120)
    assert again.returncode == 2
    assert f"error: {target} exists; a merge never overwrites a model" in again.stderr
    assert (target / "model.safetensors").stat().st_mtime_ns == saved


@pytest.mark.slow
def test_merge_chosen_step(rl_run: Path, weights: dict, tiny_model_dir: Path, capsys: pytest.CaptureFixture,
                           monkeypatch: pytest.MonkeyPatch):
    """`--step 1` merges that step, not the latest, into RUN/model-step1."""
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    assert rl_merge.main([str(rl_run), "--step", str(STEPS[0])]) == 0
    target = rl_run / f"{rl_merge.MERGED_DIR}-step{STEPS[0]}"
    assert f"[merge] step {STEPS[0]}:" in capsys.readouterr().out
    assert_merged(target, weights[STEPS[0]], [weights[0], weights[STEPS[-1]]])
    assert_tokenizer(target, tiny_model_dir)


# --- Which step and target a merge picks, and what it refuses, on a layout without weights ---------------------------


def fake_run(root: Path, steps: tuple[int, ...] = STEPS, latest: str | None = None, without: str | None = None,
             existing: tuple[str, ...] = (), checkpoints: bool = True, strays: tuple[str, ...] = ()) -> Path:
    """A run folder with verl's checkpoint layout minus the weights; `without` is left out of the last step.

    `existing` are folders made in the run, `strays` entries under checkpoints/ that are no step (NAME/: a folder).
    """
    run = root / "run"
    run.mkdir()
    folder = run / rl_merge.CHECKPOINT_DIR
    if checkpoints:
        folder.mkdir()
    for step in steps:
        actor = folder / f"global_step_{step}" / "actor"
        (actor / "huggingface").mkdir(parents=True)
        (actor / "fsdp_config.json").write_text('{"FSDP_version": 2, "world_size": 2}')
    if without:
        path = folder / f"global_step_{steps[-1]}" / "actor" / without
        path.rmdir() if path.is_dir() else path.unlink()
    if latest is not None:
        (folder / rl_merge.LATEST_FILE).write_text(latest)
    for name in strays:
        (folder / name).mkdir() if name.endswith("/") else (folder / name).write_text("")
    for name in existing:
        (run / name).mkdir()
    return run


def no_merger(*args, **kwargs):
    """Stands in for subprocess.run where a refusal must come before verl's merger starts."""
    pytest.fail(f"verl's merger started: {args}")


@pytest.mark.parametrize(("layout", "argv", "messages"), [
    pytest.param(dict(latest="3", existing=("model",)), [], ["run/model exists; a merge never overwrites a model"],
                 id="target-exists"),
    pytest.param(dict(existing=("model-step1",)), ["--step", "1"], ["run/model-step1 exists"], id="step-target-exists"),
    pytest.param(dict(existing=("mine",)), ["--output", "{run}/mine"], ["run/mine exists"], id="output-exists"),
    pytest.param(dict(latest="3"), ["--step", "2"], ["no checkpoint of step 2", "(saved steps: 1, 3)"],
                 id="missing-step"),
    pytest.param(dict(latest="5"), [], ["no checkpoint of step 5", "(saved steps: 1, 3)"],
                 id="recorded-step-deleted"),
    pytest.param(dict(latest="step3"), [], ["expected a step number, found 'step3'"], id="bad-latest-record"),
    pytest.param(dict(steps=(), checkpoints=False), [], ["no checkpoint under", "rl.save_freq"],
                 id="no-checkpoints-folder"),
    pytest.param(dict(steps=(), strays=("global_step_final/", "global_step_4")), [],
                 ["no checkpoint under", "no global_step_N folders"], id="no-step-folders"),
    pytest.param(dict(latest="3", without="fsdp_config.json"), [],
                 ["global_step_3/actor has no fsdp_config.json", "not a complete verl FSDP checkpoint"],
                 id="no-fsdp-config"),
    pytest.param(dict(without="huggingface"), ["--step", "3"], ["global_step_3/actor has no huggingface"],
                 id="no-huggingface"),
])
def test_merge_refuses(layout: dict, argv: list[str], messages: list[str], tmp_path: Path,
                       capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """A merge that cannot or must not run exits 2 with a message, before the merger starts and creating nothing."""
    monkeypatch.setattr(rl_merge.subprocess, "run", no_merger)
    run = fake_run(tmp_path, **layout)
    before = sorted(run.iterdir())
    assert rl_merge.main([str(run), *(arg.format(run=run) for arg in argv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    for message in messages:
        assert message in err
    assert sorted(run.iterdir()) == before


@pytest.mark.parametrize(("layout", "argv", "step", "target"), [
    pytest.param(dict(latest="3"), [], 3, "model", id="recorded-latest"),
    pytest.param(dict(latest="1"), [], 1, "model", id="record-over-highest"),
    pytest.param(dict(), [], 3, "model", id="no-record-highest"),
    pytest.param(dict(latest="3"), ["--step", "1"], 1, "model-step1", id="step"),
    pytest.param(dict(latest="3"), ["--step", "3", "--output", "{run}/out"], 3, "out", id="output"),
])
def test_merge_picks(layout: dict, argv: list[str], step: int, target: str, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch):
    """verl's FSDP merger runs on the chosen step's actor folder into a staging folder renamed to the target."""
    calls = []
    monkeypatch.setattr(rl_merge.subprocess, "run", lambda command: calls.append(command) or merger_writes(command, 0))
    run = fake_run(tmp_path, **layout)
    assert rl_merge.main([str(run), *(arg.format(run=run) for arg in argv)]) == 0
    actor = run / rl_merge.CHECKPOINT_DIR / f"global_step_{step}" / "actor"
    assert calls == [[sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp",
                      "--local_dir", str(actor), "--target_dir", str(run / f".{target}.partial")]]
    assert (run / target / "config.json").is_file() and not (run / f".{target}.partial").exists()


def merger_writes(command: list[str], code: int) -> subprocess.CompletedProcess:
    """Stands in for verl's merger: creates its target first (as verl does), writes a config, exits with `code`."""
    target = Path(command[command.index("--target_dir") + 1])
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    return subprocess.CompletedProcess(command, code)


def test_merger_failure(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """A failing merger is an error naming its exit code; it leaves no folder behind, so a retry merges."""
    monkeypatch.setattr(rl_merge.subprocess, "run", lambda command: merger_writes(command, 1))
    run = fake_run(tmp_path, latest="3")
    before = sorted(run.iterdir())
    assert rl_merge.main([str(run)]) == 2
    assert "verl's model merger failed with exit code 1 on" in capsys.readouterr().err
    assert sorted(run.iterdir()) == before
    monkeypatch.setattr(rl_merge.subprocess, "run", lambda command: merger_writes(command, 0))
    assert rl_merge.main([str(run)]) == 0
    assert (run / "model" / "config.json").is_file()
