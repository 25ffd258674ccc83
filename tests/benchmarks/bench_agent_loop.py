"""Benchmark: questions per second of an evaluation with several questions in flight, against one at a time.

The paper's evaluation plays one question after another (about 3 minutes each on LVBench: every turn
waits for the model and often for the VLM). Ours keeps `eval.concurrency` questions in flight. Here
the demo world's 32 questions are played through the real agent run (`tools.agent.run.run`: questions
from annotations, the navigation tool, resumable JSONL, the report) against a loopback scripted policy
whose every reply takes `--latency` seconds, as a served model's turns do; video_qa goes to a loopback
VLM with the same latency. Measured in the same run: wall time with concurrency 1 and with
`--concurrency`, and the ratio. No timed assertions; the numbers are printed.

    python -m tests.benchmarks.bench_agent_loop [--latency 0.1] [--concurrency 8] [--questions 16]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tests.fixtures.fake_vlm import FakeVLM
from tests.fixtures.scripted_policy import ScriptedPolicy
from tools.agent import run as agent_run
from tools.agent.loop import Generation
from tools.demo import world as demo_world
from tools.environment.vlm_endpoint import VLMEndpoint


def settings(world: Path, policy_url: str, vlm_url: str, concurrency: int, questions: int) -> agent_run.RunSettings:
    """A run over the demo world's first `questions` questions with `concurrency` in flight."""
    spec = {"annotations": str(world / "annotations.json"), "format": "cgbench", "data_source": "demo",
            "caption_dir": str(world / "captions"), "video_dir": str(world / "videos"), "limit": questions}
    tool = demo_world.demo_tool_settings(world).to_dict()
    tool["default"]["vlm"].update(base_url=vlm_url, max_concurrency=64)
    return agent_run.RunSettings(
        mode="eval", benchmark="demo", questions=spec,
        generation=Generation(max_turns=15, top_p=1.0, send_stop=True, vllm_stop=True, question_timeout_s=600.0),
        model=VLMEndpoint(base_url=policy_url, model="policy", max_concurrency=concurrency), tool=tool,
        concurrency=concurrency)


def timed_run(run_settings: agent_run.RunSettings, output: Path) -> tuple[float, dict]:
    """Seconds for one whole run into `output`, and its report."""
    start = time.perf_counter()
    code = agent_run.run(run_settings, output)
    elapsed = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"the run into {output} failed with exit code {code}")
    return elapsed, json.loads((output / "results.json").read_text())


def main() -> None:
    """Play the same questions with one and with several in flight; print times and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per model and VLM reply")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--questions", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        world = demo_world.ensure(Path(scratch) / "world")
        policy = ScriptedPolicy.from_trajectories(world / "trajectories.jsonl")
        with FakeVLM(answer=policy, model="policy") as model, FakeVLM(answer="they pick up a kite") as vlm:
            model.stall(args.latency)
            vlm.stall(args.latency)
            serial, serial_report = timed_run(
                settings(world, model.base_url, vlm.base_url, 1, args.questions), Path(scratch) / "serial")
            parallel, parallel_report = timed_run(
                settings(world, model.base_url, vlm.base_url, args.concurrency, args.questions),
                Path(scratch) / "parallel")
            in_flight = model.max_in_flight
    turns = serial_report["turns"]["mean"]
    print(f"{args.questions} demo questions, {turns:.2f} turns each, {args.latency:g} s per model or VLM reply")
    print(f"one at a time:        {serial:7.2f} s  ({args.questions / serial:.2f} questions/s)")
    print(f"{args.concurrency} in flight:          {parallel:7.2f} s  ({args.questions / parallel:.2f} questions/s, "
          f"at most {in_flight} model requests at once)")
    print(f"ratio (one at a time / in flight): {serial / parallel:.1f}x")
    same = (serial_report["correct"], serial_report["turns"]) == (parallel_report["correct"], parallel_report["turns"])
    print(f"same results either way: {same} (accuracy {serial_report['accuracy']:.3f})")


if __name__ == "__main__":
    main()
