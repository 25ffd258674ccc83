"""Our tool driven exactly as verl-tool's server drives it, with its /get_observation shapes.

These tests make, in-process, the calls verl-tool's server makes
(`cls(num_workers=N)`, `parse_action`, `get_observations`, and the finish tool's `has_env` and
`delete_env`) with the request bodies its agent loop sends, and check the response it would return.
tests/integration/test_verl_tool_server.py runs the real server over HTTP.

Request shapes (verl-tool's agent loop): one action per request,
`{"trajectory_ids": [uuid], "actions": [turn text ending in its stop token], "finish": [false],
"is_last_step": [false], "extra_fields": [the parquet row's extra_info, flattened]}`; after every
trajectory `{"trajectory_ids": [uuid], "actions": [""], "finish": [true], "is_last_step": [true]}`,
which the server routes to its `finish` tool. The server copies `finish` and `is_last_step` into
each extra field that lacks them.
"""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fixtures.fake_vlm import FakeVLM
from tests.fixtures.tool_world import extra_info, turn
from tools.environment.tool_settings import ENV_VAR, ToolSettingsError, write_settings
from tools.environment.verl_tool_glue import TOOL_TYPE, LongVideoNavTool


def action_request(trajectory_id: str, action: str, info: dict, last: bool = False) -> dict:
    """The JSON body verl-tool's agent loop posts to /get_observation for one turn."""
    return {"trajectory_ids": [trajectory_id], "actions": [action], "finish": [last], "is_last_step": [last],
            "extra_fields": [dict(info)]}


def serve(tool: LongVideoNavTool, body: dict) -> dict:
    """What verl-tool's server does with a body for a non-finish action: merge flags, call, shape the reply."""
    body = json.loads(json.dumps(body))
    extra_fields = body.get("extra_fields") or [{} for _ in body["trajectory_ids"]]
    for key in ("finish", "is_last_step"):
        for field, value in zip(extra_fields, body.get(key) or [], strict=False):
            field.setdefault(key, value)
    _, claimed = tool.parse_action(body["actions"][0])
    assert claimed, "verl-tool would answer an unclaimed action with an empty observation"
    observations, dones, valids = tool.get_observations(body["trajectory_ids"], body["actions"], extra_fields)
    reply = {"observations": observations, "dones": dones, "valids": valids}
    # The reply must survive verl-tool's JSON response model.
    return json.loads(json.dumps(reply))


def finish(tool: LongVideoNavTool, trajectory_id: str) -> None:
    """What verl-tool's finish tool does with the end-of-trajectory request."""
    if tool.has_env(trajectory_id):
        tool.delete_env(trajectory_id)


@pytest.fixture
def tool(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LongVideoNavTool:
    """The tool built as verl-tool builds it: num_workers only, settings through the environment."""
    monkeypatch.setenv(ENV_VAR, str(write_settings(world.settings, tmp_path / "tool.json")))
    return LongVideoNavTool(num_workers=4)


def test_tool_type_and_constructor_match_verl_tool() -> None:
    """verl-tool looks tools up by `tool_type` and builds them with `num_workers` alone."""
    assert LongVideoNavTool.tool_type == TOOL_TYPE == "longvideo_nav"


def test_constructor_without_settings_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """No settings file: the error names $LONGVIDEO_R1_TOOL_CONFIG (verl-tool would log it and not serve)."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(ToolSettingsError, match=ENV_VAR):
        LongVideoNavTool(num_workers=1)


@pytest.mark.parametrize("action", ["<think>x</think><tool>get_caption((1, 1))</tool>", "<answer>B</answer>",
                                    "garbage </tool>", ""])
def test_every_action_is_claimed(tool: LongVideoNavTool, action: str) -> None:
    """Claiming every turn means no turn gets verl-tool's empty 'no valid tool' observation."""
    assert tool.parse_action(action) == (action, True)


def test_a_trajectory_through_the_request_shapes(tool: LongVideoNavTool, vlm: FakeVLM) -> None:
    """Caption, leaf caption, video_qa and answer, each as its own request; then the finish request."""
    vlm.answer = "two people talk"
    trajectory = uuid.uuid4().hex
    info = extra_info(data_source="lvbench", question="q", options=["a", "b"], split="test", index=0)
    replies = [serve(tool, action_request(trajectory, turn(action), info)) for action in
               ["get_caption((2, 1))", "get_caption((2, 1, 3))", 'video_qa((2, 1, 3), "who talks?")']]
    assert [r["valids"] for r in replies] == [[True], [True], [True]]
    assert [r["dones"] for r in replies] == [[False], [False], [False]]
    assert replies[0]["observations"][0].startswith("Medium caption (2, 1) [")
    assert replies[2]["observations"] == ["<information>two people talk</information>"]
    answer = serve(tool, action_request(trajectory, "<think>done</think><answer>A</answer>", info))
    assert answer == {"observations": [""], "dones": [True], "valids": [True]}
    assert tool.has_env(trajectory)
    finish(tool, trajectory)
    assert not tool.has_env(trajectory) and tool.get_env_cache_keys() == []


def test_is_last_step_in_a_tool_request_frees_state(tool: LongVideoNavTool) -> None:
    """A request flagged is_last_step still gets its observation, and the state is released."""
    trajectory = uuid.uuid4().hex
    reply = serve(tool, action_request(trajectory, turn("get_caption((1, 1, 1))"), extra_info(), last=True))
    assert reply["valids"] == [True] and not tool.has_env(trajectory)


def test_broken_extra_fields_are_explained_in_the_observation(tool: LongVideoNavTool) -> None:
    """A row without duration: the observation names the field; the server does not fail the request."""
    info = extra_info()
    del info["duration"]
    reply = serve(tool, action_request("t", turn("get_caption((1, 1))"), info))
    assert reply["valids"] == [False] and "extra_info.duration" in reply["observations"][0]


def test_a_batch_keeps_request_order(tool: LongVideoNavTool) -> None:
    """Several trajectories in one request come back in order (the pool maps in order)."""
    ids = [f"t{i}" for i in range(12)]
    actions = [turn(f"get_caption(({i % 4 + 1}, {i // 4 + 1}))") for i in range(12)]
    observations, dones, valids = tool.get_observations(ids, actions, [extra_info() for _ in ids])
    assert all(valids) and not any(dones)
    for i, text in enumerate(observations):
        assert text.startswith(f"Medium caption ({i % 4 + 1}, {i // 4 + 1}) ")


def test_concurrent_requests_of_many_trajectories(tool: LongVideoNavTool) -> None:
    """64 trajectories, their turns interleaved from 16 threads as the server's pool runs them."""
    failures, lock = [], threading.Lock()

    def one(index: int) -> None:
        """Run trajectory `index` through two get_caption turns and finish it, recording any invalid reply."""
        trajectory = f"traj-{index}"
        leaf = (index % 4 + 1, 2, 3)
        for action in [f"get_caption({leaf[:2]})", f"get_caption({leaf})"]:
            reply = serve(tool, action_request(trajectory, turn(action.replace(" ", "")), extra_info()))
            if reply["valids"] != [True]:
                with lock:
                    failures.append((trajectory, reply))
        finish(tool, trajectory)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(64)))
    assert failures == [] and tool.get_env_cache_keys() == []


def test_an_internal_error_is_logged_and_explained(tool: LongVideoNavTool, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A bug inside the tool does not reach verl-tool (which would end the trajectory silently)."""
    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(tool.env, "step", broken)
    reply = serve(tool, action_request("t", turn("get_caption((1, 1))"), extra_info()))
    assert reply == {"observations": ["The tool failed: internal error in the navigation tool (KeyError). "
                                      "Try another action or answer."], "dones": [False], "valids": [False]}
    assert "KeyError: 'boom'" in caplog.text


@pytest.mark.parametrize("action", [None, 7, 2.5, b"<answer>B</answer>", ["get_caption((1, 1))"], {"a": 1}],
                         ids=["none", "int", "float", "bytes", "list", "dict"])
def test_an_action_that_is_not_text_is_explained(tool: LongVideoNavTool, action: object) -> None:
    """A non-str action (the old handler sliced it and raised) gets an invalid-turn observation saying what was
    expected, through conduct_action and through the batch call alike."""
    text, done, valid = tool.conduct_action("t", action, extra_info())
    assert (done, valid) == (False, False)
    assert text.startswith("Invalid action: ") and type(action).__name__ in text
    assert "expected the model's turn" in text and "get_caption((h, m))" in text
    assert tool.get_observations(["t"], [action], [extra_info()]) == ([text], [False], [False])


@pytest.mark.parametrize(("extra_field", "phrase"), [
    (None, "extra_info.video_uid"), ([], "extra_info must be a mapping"), ("clip", "extra_info must be a mapping"),
    (3, "extra_info must be a mapping"), ({"extra_info": 5}, "extra_info must be a mapping"),
], ids=["none-as-empty", "list", "string", "int", "nested-int"])
def test_an_extra_field_that_is_not_a_mapping_is_explained(tool: LongVideoNavTool, extra_field: object,
                                                           phrase: str) -> None:
    """A call whose extra field is not a question's mapping is answered with the field check's reason, not an error
    (None reads as verl-tool's empty default)."""
    observations, dones, valids = tool.get_observations(["t"], [turn("get_caption((1, 1))")], [extra_field])
    assert (dones, valids) == ([False], [False])
    assert phrase in observations[0]


@pytest.mark.parametrize(("ids", "actions", "fields", "counts"), [
    (["a", "b"], ["x"], [{}, {}], "2 trajectory ids, 1 actions and 2 extra fields"),
    (["a"], ["x", "y"], [{}], "1 trajectory ids, 2 actions and 1 extra fields"),
    (["a", "b"], ["x", "y"], [{}], "2 trajectory ids, 2 actions and 1 extra fields"),
    (["a"], ["x"], [{}, {}, {}], "1 trajectory ids, 1 actions and 3 extra fields"),
    ([], ["x"], [], "0 trajectory ids, 1 actions and 0 extra fields"),
], ids=["fewer-actions", "more-actions", "fewer-fields", "more-fields", "no-ids"])
def test_a_batch_of_mismatched_lengths_is_refused(tool: LongVideoNavTool, ids: list, actions: list, fields: list,
                                                  counts: str) -> None:
    """Lists of different lengths (verl-tool's request model refuses them) raise, naming every length."""
    with pytest.raises(ValueError, match=counts):
        tool.get_observations(ids, actions, fields)


def test_a_batch_that_is_not_lists_is_refused(tool: LongVideoNavTool) -> None:
    """A batch argument that is not a list raises TypeError naming it."""
    with pytest.raises(TypeError, match="takes actions as a list, got NoneType"):
        tool.get_observations(["a"], None, [{}])


def test_an_empty_batch_gives_empty_lists(tool: LongVideoNavTool) -> None:
    """No trajectory ids, no results (not an unpacking error)."""
    assert tool.get_observations([], [], []) == ([], [], [])
