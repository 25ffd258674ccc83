"""`python -m tools.environment.serve_tool`: verl-tool's real server serving our tool over HTTP on loopback.

verl-tool is in every environment of the project (launch/install.sh installs it from the pinned
commit), so these tests always run; tests/tools/environment/test_verl_tool_glue.py makes the same calls in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from launch.local import free_port
from tests.conftest import PROJECT_ROOT
from tests.fixtures.fake_vlm import FakeVLM
from tests.fixtures.http_json import post
from tests.fixtures.tool_world import build_world, extra_info, turn
from tools.environment.tool_settings import ENV_VAR, write_settings


def serve_tool(*args: str, env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """Start `python -m tools.environment.serve_tool ARGS` from the project root."""
    out = open(log, "w") if log else subprocess.PIPE  # noqa: SIM115 (closed with the process)
    return subprocess.Popen([sys.executable, "-m", "tools.environment.serve_tool", *args], cwd=PROJECT_ROOT, stdout=out,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})


def test_missing_settings_stop_the_server_before_it_serves() -> None:
    """Without $LONGVIDEO_R1_TOOL_CONFIG the entry exits 2 naming it (verl-tool would serve on without the tool)."""
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    result = subprocess.run([sys.executable, "-m", "tools.environment.serve_tool", "--port", "1"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and ENV_VAR in result.stderr


def test_settings_file_that_does_not_exist_is_named(tmp_path: Path) -> None:
    """--settings pointing nowhere: exit 2 with the path."""
    missing = tmp_path / "nope.json"
    result = subprocess.run([sys.executable, "-m", "tools.environment.serve_tool", "--settings", str(missing)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and str(missing) in result.stderr


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> dict:
    """Poll /health until it answers; fail with the server's log if it dies or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"tool server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                return json.loads(reply.read())
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"tool server did not answer /health within {timeout} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """Our entry serving the tool on a free port; yields (base URL, /health reply, FakeVLM)."""
    root = tmp_path_factory.mktemp("served")
    with FakeVLM(answer="a dog barks") as vlm:
        world = build_world(root, vlm)
        settings = write_settings(world.settings, root / "tool.json")
        port, log = free_port(), root / "server.log"
        process = serve_tool("--port", str(port), "--settings", str(settings), log=log)
        url = f"http://127.0.0.1:{port}"
        try:
            yield url, wait_healthy(url, process, log), vlm
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.mark.slow
def test_served_tool_answers_real_requests(server) -> None:
    """/health lists our tool, and a trajectory's requests get our observations, valid, in order."""
    url, health, _ = server
    assert "longvideo_nav" in health["tools"]
    requests = [turn("get_caption((1, 2))"), turn("get_caption((1, 2, 3))"), turn('video_qa((1, 2, 3), "who?")')]
    replies = [post(f"{url}/get_observation", {"trajectory_ids": ["traj-1"], "actions": [a], "finish": [False],
                                               "is_last_step": [False], "extra_fields": [extra_info()]})
               for a in requests]
    assert [r["valids"] for r in replies] == [[True], [True], [True]]
    assert replies[0]["observations"][0].startswith("Medium caption (1, 2) [")
    assert replies[2]["observations"] == ["<information>a dog barks</information>"]


@pytest.mark.slow
def test_served_tool_explains_bad_actions_and_frees_state(server) -> None:
    """A malformed call gets our explanation (not verl-tool's empty 'no valid tool'); finish ends the episode."""
    url, _, _ = server
    bad = post(f"{url}/get_observation", {"trajectory_ids": ["traj-2"], "actions": [turn("get_caption((3))")],
                                          "extra_fields": [extra_info()]})
    assert bad["valids"] == [False] and "1 id" in bad["observations"][0]
    done = post(f"{url}/get_observation", {"trajectory_ids": ["traj-2"], "actions": [""], "finish": [True],
                                           "is_last_step": [True]})
    assert done["dones"] == [True]
