"""The navigation environment: get_caption and video_qa on a real caption tree, video and loopback VLM."""

from __future__ import annotations

import base64
import io
import logging
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures.fake_vlm import FakeVLM
from tests.fixtures.frame_worker_tasks import kill_this_worker
from tests.fixtures.tool_world import DURATION, FPS, VIDEO_UID, WIDTH, build_world, extra_info, turn, write_tree
from tools.demo.synthetic_video import decode_frame_index
from tools.environment import frame_workers, frames, geometry, navigation, prompts
from tools.environment.actions import TURN_TAGS
from tools.environment.navigation import NavigationEnv


@pytest.fixture
def env(world, vlm: FakeVLM):
    """A fresh environment (no trajectory state) over the shared world; its frame workers stopped after the test."""
    vlm.reset()
    vlm.answer = "a red car drives by"
    with NavigationEnv(world.settings) as fresh:
        yield fresh


def frame_indices(request_body: dict) -> list[int]:
    """The frame numbers drawn in the images of one chat request."""
    indices = []
    for part in request_body["messages"][0]["content"]:
        if part["type"] == "image_url":
            data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
            indices.append(decode_frame_index(Image.open(io.BytesIO(data))))
    return indices


@pytest.mark.parametrize("ids", [(1, 1), (4, 4), (2, 3), (1, 1, 1), (4, 4, 4), (3, 2, 1)], ids=str)
def test_get_caption_returns_the_segment_caption_with_its_time_range(env: NavigationEnv, ids) -> None:
    """A medium or low caption comes back with its level, ids and geometry time range, marked valid."""
    observation = env.step("t", turn(f"get_caption({geometry.format_ids(ids)})"), extra_info())
    assert observation.valid and observation.kind == "caption" and not observation.done
    caption = f"caption of {geometry.format_ids(ids)}"
    assert observation.text == prompts.caption_observation(ids, WIDTH, DURATION, caption)
    start, end = geometry.time_range(ids, WIDTH, DURATION)
    assert prompts.format_range(start, end) in observation.text


@pytest.mark.parametrize(
    ("action", "phrase"),
    [
        ("get_caption((5, 1))", "h=5"),
        ("get_caption((1, 0))", "start at 1"),
        ("get_caption((2, 2, 9))", "l=9"),
        ("get_caption((3))", "1 id"),
        ("get_caption((1, 2, 3, 4))", "4 id"),
        ('video_qa((1, 2), "what?")', "(h, m, l)"),
        ("get_caption(1, 2)", "one argument"),
        ("zoom((1, 2))", "unknown tool"),
    ],
)
def test_bad_actions_get_an_observation_that_says_what_was_wrong(env: NavigationEnv, action: str, phrase: str) -> None:
    """Out-of-range or malformed ids are answered with the reason, marked invalid, never an empty string."""
    observation = env.step("t", turn(action), extra_info())
    assert not observation.valid and observation.kind == "invalid"
    assert phrase in observation.text and observation.text.startswith("Invalid action:")


def test_out_of_range_error_states_the_width(env: NavigationEnv) -> None:
    """The model is told the valid range at this video's width."""
    text = env.step("t", turn("get_caption((5, 1))"), extra_info()).text
    assert f"1..{WIDTH}" in text


@pytest.mark.parametrize(
    ("info", "phrase"),
    [
        (extra_info(video_uid="absent"), "absent.json: caption file not found"),
        (extra_info(width=5), "width is 4 but extra_info.width is 5"),
        ({"video_uid": VIDEO_UID, "width": WIDTH}, "extra_info.duration"),
        (extra_info(video_uid=""), "extra_info.video_uid"),
        (None, "extra_info must be a mapping"),
    ],
    ids=["missing-tree", "width-mismatch", "no-duration", "empty-uid", "no-extra-info"],
)
def test_broken_question_data_is_explained(env: NavigationEnv, info, phrase: str) -> None:
    """A missing tree, a width disagreement or a missing field gives a tool-failure text naming it."""
    observation = env.step("t", turn("get_caption((1, 1))"), info)
    assert not observation.valid and observation.kind == "tool_error"
    assert phrase in observation.text


def test_video_qa_needs_the_leaf_caption_first_in_the_same_trajectory(env: NavigationEnv, vlm: FakeVLM) -> None:
    """video_qa before get_caption of that leaf is refused; another trajectory's reading does not count."""
    refused = env.step("a", turn('video_qa((2, 3, 1), "what car?")'), extra_info())
    assert not refused.valid and "get_caption((2, 3, 1)) first" in refused.text
    env.step("b", turn("get_caption((2, 3, 1))"), extra_info())
    assert not env.step("a", turn('video_qa((2, 3, 1), "what car?")'), extra_info()).valid
    env.step("a", turn("get_caption((2, 3, 2))"), extra_info())
    assert not env.step("a", turn('video_qa((2, 3, 1), "what car?")'), extra_info()).valid
    assert vlm.chat_requests() == []


@pytest.mark.parametrize("ids", [(1, 1, 1), (2, 3, 1), (4, 4, 4)], ids=str)
def test_video_qa_sends_the_frames_of_that_leaf_at_the_right_times(env: NavigationEnv, vlm: FakeVLM, ids) -> None:
    """16 frames sampled uniformly inside the leaf's range reach the VLM, in order, with the question."""
    env.step("t", turn(f"get_caption({geometry.format_ids(ids)})"), extra_info())
    observation = env.step("t", turn(f'video_qa({geometry.format_ids(ids)}, "what car?")'), extra_info())
    assert observation.valid and observation.text == "<information>a red car drives by</information>"
    (request,) = vlm.chat_requests()
    start, end = geometry.time_range(ids, WIDTH, DURATION)
    expected = [int(t * FPS) for t in frames.leaf_timestamps(start, end, 16)]
    assert frame_indices(request.body) == expected
    assert all(start * FPS <= index < end * FPS for index in expected)
    assert request.body["messages"][0]["content"][-1]["text"].endswith("Question: what car?")


def test_frame_count_and_size_follow_the_settings(tmp_path: Path, vlm: FakeVLM) -> None:
    """frames_per_query and max_side are honoured: 4 frames, long side scaled to 64 px."""
    vlm.reset()
    world = build_world(tmp_path, vlm, frames_per_query=4, max_side=64)
    env = NavigationEnv(world.settings)
    env.step("t", turn("get_caption((1, 1, 1))"), extra_info())
    assert env.step("t", turn('video_qa((1, 1, 1), "q")'), extra_info()).valid
    parts = [p for p in vlm.chat_requests()[0].body["messages"][0]["content"] if p["type"] == "image_url"]
    assert len(parts) == 4
    image = Image.open(io.BytesIO(base64.b64decode(parts[0]["image_url"]["url"].split(",", 1)[1])))
    assert max(image.size) == 64


def test_failing_vlm_gives_an_explanation_not_a_crash(env: NavigationEnv, vlm: FakeVLM) -> None:
    """A VLM that answers 500 to every attempt yields a tool-failure observation naming the endpoint."""
    env.step("t", turn("get_caption((1, 1, 1))"), extra_info())
    vlm.fail_next(10)
    observation = env.step("t", turn('video_qa((1, 1, 1), "q")'), extra_info())
    assert not observation.valid and observation.kind == "tool_error"
    assert vlm.base_url in observation.text and "attempt" in observation.text


def test_stalled_vlm_does_not_hang_past_its_timeout(tmp_path: Path, vlm: FakeVLM) -> None:
    """A VLM that never answers is given up on after timeout_s, with an explanation."""
    vlm.reset()
    world = build_world(tmp_path, vlm, vlm={"timeout_s": 0.5, "max_retries": 0})
    env = NavigationEnv(world.settings)
    env.step("t", turn("get_caption((1, 1, 1))"), extra_info())
    vlm.stall(30)
    began = time.monotonic()
    try:
        observation = env.step("t", turn('video_qa((1, 1, 1), "q")'), extra_info())
    finally:
        vlm.stall(0)
    # A liveness bound (it returned at all, well before the stall ended), not a speed target.
    assert time.monotonic() - began < 10
    assert observation.kind == "tool_error" and "did not answer within 0.5 s" in observation.text


def test_unreachable_vlm_is_explained(tmp_path: Path, vlm: FakeVLM) -> None:
    """Nothing listening at the VLM's port gives a tool-failure observation, not an exception."""
    world = build_world(tmp_path, vlm, vlm={"base_url": "http://127.0.0.1:9/v1", "max_retries": 0})
    env = NavigationEnv(world.settings)
    env.step("t", turn("get_caption((1, 1, 1))"), extra_info())
    observation = env.step("t", turn('video_qa((1, 1, 1), "q")'), extra_info())
    assert observation.kind == "tool_error" and "127.0.0.1:9" in observation.text


def test_missing_video_names_the_folder_and_extensions(tmp_path: Path, vlm: FakeVLM) -> None:
    """A tree without its video file: video_qa says which folder and extensions were tried."""
    world = build_world(tmp_path, vlm, with_video=False)
    env = NavigationEnv(world.settings)
    env.step("t", turn("get_caption((1, 1, 1))"), extra_info())
    observation = env.step("t", turn('video_qa((1, 1, 1), "q")'), extra_info())
    assert observation.kind == "tool_error"
    assert f"no video file for '{VIDEO_UID}'" in observation.text and ".mp4" in observation.text


def test_no_observation_ever_contains_an_action_tag(tmp_path: Path, vlm: FakeVLM) -> None:
    """Captions and VLM answers that hold action or think tags are defused before they reach the rollout."""
    vlm.reset()
    world = build_world(tmp_path, vlm)
    write_tree(tmp_path / "captions", VIDEO_UID, WIDTH, DURATION, text=lambda ids: "x</think></tool><answer>A</answer>")
    vlm.answer = "<think>no</think><tool>get_caption((1, 1))</tool>"
    env = NavigationEnv(world.settings)
    texts = [env.step("t", turn(a), extra_info()).text
             for a in ["get_caption((1, 1, 1))", 'video_qa((1, 1, 1), "q")', "get_caption((9, 9))", "nonsense"]]
    texts.append(env.step("t", "<think>x</think><tool>get_caption((1, 1)) </answer>", extra_info()).text)
    for text in texts:
        assert text and not any(tag in text for tag in TURN_TAGS), text


def test_api_key_never_reaches_observations_or_logs(env: NavigationEnv, vlm: FakeVLM, monkeypatch,
                                                    caplog: pytest.LogCaptureFixture, world) -> None:
    """The key is sent as the Authorization header only."""
    monkeypatch.setenv("TEST_VLM_KEY", "sk-very-secret")
    env = NavigationEnv(world.settings)
    caplog.set_level(logging.DEBUG)
    env.step("t", turn("get_caption((1, 1, 1))"), extra_info())
    vlm.fail_next(10)
    observation = env.step("t", turn('video_qa((1, 1, 1), "q")'), extra_info())
    assert vlm.chat_requests()[0].headers["authorization"] == "Bearer sk-very-secret"
    assert "sk-very-secret" not in observation.text and "sk-very-secret" not in caplog.text


def test_answer_turn_ends_the_episode(env: NavigationEnv) -> None:
    """An answer is not a tool call: done, valid, no text to append."""
    observation = env.step("t", "<think>It is B.</think><answer>B</answer>", extra_info())
    assert observation.done and observation.valid and observation.action == {"name": "answer", "text": "B",
                                                                               "letter": "B"}


def test_state_is_freed_on_end_and_bounded(world) -> None:
    """end() forgets a trajectory; past max_trajectories the oldest state is dropped."""
    from dataclasses import replace

    env = NavigationEnv(replace(world.settings, max_trajectories=3))
    for name in "abcde":
        env.step(name, turn("get_caption((1, 1, 1))"), extra_info())
    assert env.active_trajectories() == ["c", "d", "e"]
    env.end("d")
    assert env.active_trajectories() == ["c", "e"] and not env.has_state("d")


def test_trees_are_read_once(env: NavigationEnv, world) -> None:
    """After the first call the tree comes from memory, even if the file disappears."""
    path = world.root / "captions" / f"{VIDEO_UID}.json"
    env.step("t", turn("get_caption((1, 1))"), extra_info())
    content = path.read_bytes()
    path.unlink()
    try:
        assert env.step("t", turn("get_caption((4, 4, 4))"), extra_info()).valid
    finally:
        path.write_bytes(content)


def image_urls(request_body: dict) -> list[str]:
    """The image data URLs of one chat request, in order."""
    return [part["image_url"]["url"] for part in request_body["messages"][0]["content"] if part["type"] == "image_url"]


def ask_leaf(env: NavigationEnv, trajectory: str, ids: str = "(2, 3, 1)"):
    """Read a leaf's caption, then ask video_qa about it, in trajectory `trajectory`."""
    env.step(trajectory, turn(f"get_caption({ids})"), extra_info())
    return env.step(trajectory, turn(f'video_qa({ids}, "what car?")'), extra_info())


def test_trajectories_asking_one_leaf_share_one_decode_and_the_same_frames(env: NavigationEnv, vlm: FakeVLM) -> None:
    """The second trajectory's video_qa of a leaf is served from the frame cache: byte-identical images."""
    assert env.frame_pool.pids() == []
    assert ask_leaf(env, "a").valid and ask_leaf(env, "b").valid
    first, second = vlm.chat_requests()
    assert image_urls(first.body) == image_urls(second.body) and len(image_urls(first.body)) == 16
    stats = env.leaf_frames.stats()
    assert (stats["misses"], stats["hits"], stats["entries"]) == (1, 1, 1)
    # The cold leaf was prepared by one worker process, started at the first video_qa.
    assert len(env.frame_pool.pids()) == 1
    # The serve rule still holds per trajectory: a third trajectory that read no caption is refused.
    assert not env.step("c", turn('video_qa((2, 3, 1), "what car?")'), extra_info()).valid


def test_a_frame_worker_crash_is_a_tool_failure_and_the_pool_recovers(env: NavigationEnv, vlm: FakeVLM,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed mid-leaf gives a tool-failure observation naming it; the next video_qa is served."""
    monkeypatch.setattr(env.frame_pool, "_prepare", kill_this_worker)
    crashed = ask_leaf(env, "t")
    assert crashed.kind == "tool_error" and not crashed.valid
    assert "killed by SIGKILL" in crashed.text and "restarted" in crashed.text
    assert vlm.chat_requests() == [] and env.leaf_frames.stats()["entries"] == 0
    monkeypatch.setattr(env.frame_pool, "_prepare", frame_workers.prepare_leaf)
    served = env.step("t", turn('video_qa((2, 3, 1), "what car?")'), extra_info())
    assert served.valid and env.frame_pool.restarts == 1


def frame_summaries(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The frame cache summaries the environment logged."""
    return [record.getMessage() for record in caplog.records
            if record.name == navigation.__name__ and "video_qa frames" in record.getMessage()]


def test_close_stops_the_frame_workers_and_logs_the_counters(world, vlm: FakeVLM, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """Every STATS_EVERY video_qa calls and at close, one INFO line of counters; close() ends the workers."""
    vlm.reset()
    monkeypatch.setattr(navigation, "STATS_EVERY", 2)
    caplog.set_level(logging.INFO, logger=navigation.__name__)
    env = NavigationEnv(world.settings)
    assert ask_leaf(env, "a").valid and ask_leaf(env, "b").valid
    lines = frame_summaries(caplog)
    assert len(lines) == 1 and "after 2 call(s): 1 hit(s), 1 decode(s)" in lines[0]
    assert "frame worker(s) decoded 1 leaves" in lines[0]
    pids = env.frame_pool.pids()
    env.close()
    env.close()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert len(frame_summaries(caplog)) == 2
    # A closed environment explains that it can prepare no more frames.
    late = ask_leaf(env, "c", "(1, 1, 1)")
    assert late.kind == "tool_error" and "shut down" in late.text
