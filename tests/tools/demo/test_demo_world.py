"""The demo world: deterministic, small, and its trajectories are what the real tools serve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.builders.sft_checks import Checks, check_trajectory
from tools.demo import world as demo_world
from tools.environment import geometry, prompts
from tools.environment.caption_tree import load_caption_tree
from tools.environment.frames import probe_duration
from tools.environment.navigation import NavigationEnv
from tools.environment.trajectory import read_trajectories

MAX_TURNS = 15


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo world, generated once for the module."""
    return demo_world.ensure(tmp_path_factory.mktemp("demo") / "world")


def files(root: Path) -> dict[str, bytes]:
    """Every file under `root` by its relative path."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_generation_is_deterministic(world: Path, tmp_path: Path) -> None:
    """A second generation with the same seed is byte-identical; another seed gives other questions."""
    assert files(demo_world.generate(tmp_path / "again")) == {k: v for k, v in files(world).items() if k != "COMPLETE"}
    other = demo_world.generate(tmp_path / "other", seed=1)
    assert (other / "annotations.json").read_bytes() != (world / "annotations.json").read_bytes()


def test_world_is_small_and_complete(world: Path) -> None:
    """Four videos with caption trees and MP4s, 32 questions and trajectories, well under 1 MB in all."""
    contents = files(world)
    assert sum(len(data) for data in contents.values()) < 500_000
    assert sorted(path for path in contents if path.startswith("videos/")) == \
        [f"videos/demo_video_{i}.mp4" for i in range(4)]
    questions = json.loads(contents["annotations.json"])
    assert len(questions) == 32 == len(contents["trajectories.jsonl"].splitlines())
    assert len({q["qid"] for q in questions}) == 32


def test_trees_and_videos_agree(world: Path) -> None:
    """Each caption tree's width follows the duration rule, and its MP4 lasts the tree's duration."""
    for index, duration in enumerate(demo_world.DURATIONS):
        tree = load_caption_tree(world / "captions" / f"demo_video_{index}.json")
        assert tree.duration == duration
        assert tree.width == geometry.width_for_duration(duration)
        assert probe_duration(world / "videos" / f"demo_video_{index}.mp4") == pytest.approx(duration, abs=1.0)


def test_trajectories_are_correct_and_pass_the_sft_checks(world: Path) -> None:
    """Every trajectory parses, is right, fits the turn budget, reads its clue leaf and asks video_qa about it."""
    questions = {q["qid"]: q for q in json.loads((world / "annotations.json").read_text())}
    for line, trajectory in read_trajectories(world / "trajectories.jsonl"):
        assert not isinstance(trajectory, Exception), trajectory
        assert check_trajectory(trajectory, Checks(MAX_TURNS)) is None, line
        question = questions[trajectory.id]
        assert trajectory.answer == trajectory.ground_truth == question["right_answer"]
        leaf = tuple(trajectory.turns[-2].action["ids"])
        assert trajectory.turns[-2].action["name"] == "video_qa"
        start, end = geometry.time_range(leaf, trajectory.width, trajectory.duration)
        assert question["clue_intervals"] == [[round(start, 3), round(end, 3)]]
        target = question["choices"][prompts.LETTERS.index(trajectory.answer)]
        assert trajectory.turns[-2].observation == f"<information>They pick up {target}.</information>"


def test_replaying_a_trajectory_gives_its_observations(world: Path) -> None:
    """The stored observations are exactly what the navigation environment serves for the same turns."""
    _, trajectory = next(read_trajectories(world / "trajectories.jsonl"))
    video_qa = trajectory.turns[-2]
    start, end = geometry.time_range(tuple(video_qa.action["ids"]), trajectory.width, trajectory.duration)
    reply = video_qa.observation.removeprefix("<information>").removesuffix("</information>")
    frames_sent = []

    class Recording(demo_world.ScriptedVLM):
        """The scripted VLM, recording how many frames each question came with."""

        def ask(self, question: str, image_urls) -> str:
            frames_sent.append(len(image_urls))
            return super().ask(question, image_urls)

    vlm = Recording({prompts.vlm_question(video_qa.action["query"], start, end): reply})
    env = NavigationEnv(demo_world.demo_tool_settings(world), client_factory=lambda endpoint: vlm)
    extra_info = {"video_uid": trajectory.video_uid, "duration": trajectory.duration, "width": trajectory.width}
    for turn in trajectory.turns:
        served = env.step("replay", turn.model, extra_info, demo_world.DATA_SOURCE)
        assert (served.text, served.valid, served.action) == (turn.observation, turn.valid, turn.action)
    # The frames were really sampled from the MP4: the paper's 16 per question.
    assert frames_sent == [16]


def test_an_incomplete_world_is_replaced(tmp_path: Path) -> None:
    """ensure() keeps a complete world as is and rebuilds a folder that lacks the COMPLETE marker."""
    root = demo_world.ensure(tmp_path / "world")
    marker = root / "COMPLETE"
    (root / "stray.txt").write_text("left by an interrupted run")
    assert demo_world.ensure(root) == root and (root / "stray.txt").exists()
    marker.unlink()
    demo_world.ensure(root)
    assert marker.is_file() and not (root / "stray.txt").exists()
