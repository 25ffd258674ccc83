"""Shared fixtures: a private cache with the tiny model and demo data, built once per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# The local Slurm cluster fixture, for every test that submits real jobs.
from tests.fixtures.slurm_cluster import slurm  # noqa: F401

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def launch(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `python -m launch ARGS` from the project root and capture its output."""
    return subprocess.run([sys.executable, "-m", "launch", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)


# What `python -m launch ... --dry-run` must never import: the training stack and the tools' heavy parts.
HEAVY_MODULES = ("torch", "transformers", "llamafactory", "verl", "verl_tool", "vllm", "ray", "deepspeed", "av",
                 "openai")
# The chat template every recipe uses unless it says otherwise (configs/config.yaml), which the tiny model ships.
CHAT_TEMPLATE = yaml.safe_load((PROJECT_ROOT / "configs" / "config.yaml").read_text())["chat"]["template"]
# The turn budget of recipe=tiny, stated in the demo SFT file's system prompt.
DEMO_MAX_TURNS = 15


def dry_run_in_fresh_interpreter(argv: list[str], env: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """Run `launch.cli.main(argv)` in a new interpreter: its stdout and the HEAVY_MODULES it imported."""
    code = (
        "import json, sys\n"
        "from launch.cli import main\n"
        f"code = main({argv!r})\n"
        "print('exit', code)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY_MODULES)!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=120)
    assert result.returncode == 0 and "exit 0" in result.stdout, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    return result.stdout, json.loads(lines[-1])


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache dir holding the tiny model, the demo world and its SFT file; LONGVIDEO_R1_CACHE points at it."""
    from tools.builders.sft_data import build
    from tools.demo import tiny_model
    from tools.demo import world as demo_world
    from tools.demo.world import sft_settings

    cache = tmp_path_factory.mktemp("cache")
    tiny_model.build(cache / "models" / "tiny-qwen3", CHAT_TEMPLATE)
    world = demo_world.ensure(cache / "demo" / "world")
    # The file recipe=tiny trains on (its default role and turn budget), so its build step is skipped.
    build(sft_settings(world, "user", DEMO_MAX_TURNS), cache / "demo" / f"sft-user-t{DEMO_MAX_TURNS}")
    os.environ["LONGVIDEO_R1_CACHE"] = str(cache)
    # LLaMA-Factory's tokenized-dataset cache goes here too, never into the user's ~/.cache.
    os.environ["HF_DATASETS_CACHE"] = str(cache / "hf_datasets")
    return cache


def demo_samples(cache: Path, observation_role: str, count: int | None = None) -> list[dict]:
    """The first `count` sharegpt samples of the cached demo world, with observations in `observation_role`."""
    from tools.builders.sft_data import our_samples
    from tools.demo.world import sft_settings

    settings = sft_settings(cache / "demo" / "world", observation_role, DEMO_MAX_TURNS)
    return [item[0] for item in our_samples(settings)][:count]


@pytest.fixture
def run_root(tmp_path: Path) -> Path:
    """A fresh `run_root` for runs made by one test."""
    return tmp_path / "runs"


@pytest.fixture(scope="module")
def vlm():
    """A loopback OpenAI-protocol VLM (tests/fixtures/fake_vlm.py), shared by a module's tests."""
    from tests.fixtures.fake_vlm import FakeVLM

    with FakeVLM(answer="a red car drives by") as server:
        yield server


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, vlm):
    """The navigation tool's world (tests/fixtures/tool_world.py): a caption tree and a real 64 s video."""
    from tests.fixtures.tool_world import build_world

    return build_world(tmp_path_factory.mktemp("world"), vlm)


@pytest.fixture(scope="session")
def tiny_sft_run(tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run root holding one finished `sft recipe=tiny` run (2 steps), which eval and rollouts hand off from."""
    run_root = tmp_path_factory.mktemp("served") / "runs"
    done = launch("sft", "recipe=tiny", f"run_root={run_root}", "name=base", "sft.max_steps=2", "sft.save_steps=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run_root
