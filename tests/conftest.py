"""Shared fixtures: a private cache with the tiny model and demo data, built once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def launch(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `python -m launch ARGS` from the project root and capture its output."""
    return subprocess.run([sys.executable, "-m", "launch", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache dir holding the tiny model and the demo trajectories; LONGVIDEO_R1_CACHE points at it."""
    from tools import demo_trajectories, tiny_model

    cache = tmp_path_factory.mktemp("cache")
    tiny_model.build(cache / "models" / "tiny-qwen3")
    demo_trajectories.write(cache / "demo" / "sft_demo.json", demo_trajectories.generate())
    os.environ["LONGVIDEO_R1_CACHE"] = str(cache)
    # LLaMA-Factory's tokenized-dataset cache goes here too, never into the user's ~/.cache.
    os.environ["HF_DATASETS_CACHE"] = str(cache / "hf_datasets")
    return cache


@pytest.fixture
def run_root(tmp_path: Path) -> Path:
    """A fresh `run_root` for runs made by one test."""
    return tmp_path / "runs"


@pytest.fixture(scope="module")
def vlm():
    """A loopback OpenAI-protocol VLM (tests/fake_vlm.py), shared by a module's tests."""
    from tests.fake_vlm import FakeVLM

    with FakeVLM(answer="a red car drives by") as server:
        yield server


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, vlm):
    """The navigation tool's world (tests/tool_world.py): a caption tree and a real 64 s video."""
    from tests.tool_world import build_world

    return build_world(tmp_path_factory.mktemp("world"), vlm)
