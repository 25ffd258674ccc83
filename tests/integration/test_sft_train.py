"""The real `llamafactory-cli` trains the tiny recipe on CPU, through `python -m launch sft`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, launch
from tools.builders.chat_template import jinja_template

pytestmark = pytest.mark.slow


def load_and_generate(model_dir: Path) -> str:
    """Load a checkpoint with transformers and generate a few tokens from a chat prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Which segment?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert output.shape[1] > prompt["input_ids"].shape[1]
    return tokenizer.decode(output[0])


def processes_in(run_dir: Path) -> list[int]:
    """Pids of live processes whose working directory is `run_dir` (what the executor started)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")) == run_dir:
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_tiny_full_sft_to_a_checkpoint(tiny_cache: Path, run_root: Path) -> None:
    """A full fine-tune runs to a checkpoint that transformers loads and generates from."""
    done = launch("sft", "recipe=tiny", f"run_root={run_root}", "name=full", "sft.max_steps=4", "sft.save_steps=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = run_root / "sft" / "tiny" / "full"
    marker = yaml.safe_load((run_dir / "DONE").read_text())
    model_dir = Path(marker["outputs"]["model"])
    assert model_dir == run_dir / "checkpoints" and (model_dir / "checkpoint-4").is_dir()
    assert (model_dir / "chat_template.jinja").read_text() == jinja_template("qwen3_nothink")
    assert "assistant" in load_and_generate(model_dir)
    for path in ("config.yaml", "llamafactory/train.yaml", "llamafactory/dataset_info.json", "logs/train.0.log",
                 "attempts/0/plan.yaml", "attempts/0/provenance/pip_freeze.txt", "attempts/0/provenance/seed.txt"):
        assert (run_dir / path).is_file(), path
    # The console guides: the steps, the bar with the loss, under 60 lines; LLaMA-Factory's INFO stays in the log,
    # and the run ends naming its checkpoint and the next command.
    console = (done.stdout + done.stderr).splitlines()
    assert len(console) < 60, "\n".join(console)
    assert not any(line.startswith("[INFO|") for line in console)
    assert "[INFO|" in (run_dir / "logs" / "train.0.log").read_text()
    assert any("100%|" in line and "loss " in line for line in console)
    assert f"[launch] model: {model_dir} (a model," in done.stdout
    assert "[launch] next: python -m launch rollouts recipe=tiny" in done.stdout

    # The same name again is refused, and the finished run is left as it was.
    before = (run_dir / "DONE").stat().st_mtime_ns
    again = launch("sft", "recipe=tiny", f"run_root={run_root}", "name=full")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert (run_dir / "DONE").stat().st_mtime_ns == before


def test_tiny_lora_sft_merges_to_plain_weights(tiny_cache: Path, run_root: Path) -> None:
    """A LoRA run ends with LLaMA-Factory's export: a merged model without adapter files."""
    done = launch("sft", "recipe=tiny", f"run_root={run_root}", "name=lora", "sft.finetuning_type=lora",
                  "sft.max_steps=2", "sft.save_steps=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = run_root / "sft" / "tiny" / "lora"
    assert (run_dir / "checkpoints" / "adapter_config.json").is_file()
    merged = Path(yaml.safe_load((run_dir / "DONE").read_text())["outputs"]["model"])
    assert merged == run_dir / "model"
    assert not (merged / "adapter_config.json").exists() and (merged / "config.json").is_file()
    assert (merged / "chat_template.jinja").read_text() == jinja_template("qwen3_nothink")
    load_and_generate(merged)


def test_sigterm_then_resume_from_last_checkpoint(tiny_cache: Path, run_root: Path) -> None:
    """SIGTERM stops the run and all it started; resume=true continues from its last checkpoint."""
    run_dir = run_root / "sft" / "tiny" / "resumed"
    args = ["sft", "recipe=tiny", f"run_root={run_root}", "name=resumed", "sft.save_steps=2"]
    first = subprocess.Popen([sys.executable, "-m", "launch", *args, "sft.max_steps=200"], cwd=PROJECT_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = run_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    deadline = time.monotonic() + 600
    while not checkpoint.is_file():
        assert first.poll() is None and time.monotonic() < deadline, "the first attempt never saved checkpoint-2"
        time.sleep(0.5)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 128 + signal.SIGTERM
    assert not (run_dir / "DONE").exists()
    assert processes_in(run_dir) == []

    resumed = launch(*args, "resume=true", "sft.max_steps=4")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    log = (run_dir / "logs" / "train.1.log").read_text()
    assert "Resuming training from" in log and "checkpoint-" in log
    state = yaml.safe_load((run_dir / "checkpoints" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert "sft.max_steps: 200 -> 4" in resumed.stdout
    assert (run_dir / "attempts" / "1" / "config.yaml").is_file()
