"""The demo set: a small synthetic world that `recipe=tiny` trains on and the tests use.

A few videos, each with a caption tree (`captions/<uid>.json`) and a tiny real MP4
(`videos/<uid>.mp4`); CG-Bench-style questions with clue intervals (`annotations.json`); and one
scripted, correct trajectory per question (`trajectories.jsonl`, the schema of `tools.environment.trajectory`),
played turn by turn through the real navigation environment: captions come from the tree,
video_qa samples the MP4's frames. The vision model is the world's own script (it knows what each
leaf shows); nothing else is imitated. Deterministic for a seed, about 0.3 MB.

    python -m tools.demo.world --output demo [--sft-output demo/sft --observation-role user --max-turns 15]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tools.builders.builder_io import publish
from tools.builders.rl_data import RLDataSettings
from tools.builders.sft_checks import Checks
from tools.builders.sft_data import SFTDataSettings
from tools.demo.synthetic_video import encode_test_video
from tools.environment import geometry, prompts
from tools.environment.actions import GetCaption, VideoQA
from tools.environment.caption_tree import tree_data
from tools.environment.navigation import NavigationEnv
from tools.environment.tool_settings import ToolSettings, settings_from_dict
from tools.environment.trajectory import Trajectory, TrajectoryTurn, write_trajectories

DATA_SOURCE = "demo"
DURATIONS = (1024.0, 1536.0, 2048.0, 1280.0)
PLACES = ["a kitchen", "a park", "a stage", "a beach", "an office", "a garage", "a library", "a market"]
ACTIVITIES = ["cooking", "painting a wall", "reading aloud", "fixing a bike", "dancing", "washing dishes",
              "playing chess", "sweeping the floor"]
MOMENTS = ["at the very start", "early on", "midway", "later", "at the very end", "after a pause",
           "just before leaving", "once more"]
OBJECTS = ["a red car", "a dog", "a violin", "a kite", "a lamp", "a blue door", "a teapot", "a camera",
           "a football", "an umbrella"]
VIDEO_SIZE = (64, 48)
COMPLETE = "COMPLETE"


class ScriptedVLM:
    """The demo world's vision model: it answers each leaf's question from the world's script."""

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def ask(self, question: str, image_urls: Sequence[str]) -> str:
        """The scripted answer to `question`; the frames must have been sampled."""
        if not image_urls:
            raise ValueError("video_qa sent no frames")
        return self.answers[question]


def _video(rng: random.Random, index: int) -> dict:
    """One video's script: duration, width, and the place, activity, moment and object of every segment."""
    duration = DURATIONS[index % len(DURATIONS)]
    width = geometry.width_for_duration(duration)
    places = rng.sample(PLACES, width)
    activities = {h: rng.sample(ACTIVITIES, width) for h in range(1, width + 1)}
    objects = {(h, m, low): rng.choice(OBJECTS) for h in range(1, width + 1) for m in range(1, width + 1)
               for low in range(1, width + 1)}
    return {"uid": f"demo_video_{index}", "duration": duration, "width": width, "places": places,
            "activities": activities, "objects": objects}


def _caption(video: dict, ids: tuple[int, ...]) -> str:
    """The caption of segment `ids`: the place, then the activity, then the moment something is picked up."""
    place = video["places"][ids[0] - 1]
    level = geometry.level_of(ids)
    if level == 1:
        return f"Scenes at {place}."
    activity = video["activities"][ids[0]][ids[1] - 1]
    if level == 2:
        return f"At {place}, someone is {activity}."
    return f"At {place}, while {activity}, someone picks something up {MOMENTS[ids[2] - 1]}."


def _question(rng: random.Random, video: dict, leaf: tuple[int, int, int]) -> dict:
    """A CG-Bench-style question about `leaf`: what is picked up there, with the leaf as its clue interval."""
    target = video["objects"][leaf]
    choices = rng.sample([o for o in OBJECTS if o != target], 3) + [target]
    rng.shuffle(choices)
    place, activity = video["places"][leaf[0] - 1], video["activities"][leaf[0]][leaf[1] - 1]
    start, end = geometry.time_range(leaf, video["width"], video["duration"])
    return {"qid": f"{video['uid']}-{'-'.join(map(str, leaf))}", "video_uid": video["uid"],
            "question": f"At {place}, while someone is {activity}, what do they pick up {MOMENTS[leaf[2] - 1]}?",
            "choices": choices, "right_answer": prompts.LETTERS[choices.index(target)],
            "clue_intervals": [[round(start, 3), round(end, 3)]], "duration": video["duration"], "fps": 1.0}


def _script(rng: random.Random, video: dict, leaf: tuple[int, int, int], question: dict) -> list[tuple[str, str]]:
    """The teacher's turns as (thought, action text): sometimes a wrong medium first, then down to the leaf."""
    h, m, low = leaf
    place, width = video["places"][h - 1], video["width"]
    steps = []
    if rng.random() < 0.5:
        wrong = rng.choice([other for other in range(1, width + 1) if other != m])
        steps.append((f"{place.capitalize()} is high segment {h}. I try its medium segment {wrong}.",
                      GetCaption((h, wrong)).render()))
    steps.append((f"The activity should be in high segment {h}; I read medium segment {m}.",
                  GetCaption((h, m)).render()))
    steps.append((f"Medium segment {m} matches; low segment {low} is the right moment.",
                  GetCaption(leaf).render()))
    steps.append(("The caption does not say what is picked up; I ask about the frames.",
                  VideoQA(leaf, "What does the person pick up?").render()))
    letter = question["right_answer"]
    steps.append((f"The frames show {video['objects'][leaf]}, which is option {letter}.", f"<answer>{letter}</answer>"))
    return steps


def _play(env: NavigationEnv, trajectory_id: str, question: dict, video: dict,
          steps: list[tuple[str, str]]) -> Trajectory:
    """Play the scripted turns through the navigation environment and record what it served."""
    extra_info = {"video_uid": video["uid"], "duration": video["duration"], "width": video["width"]}
    turns = []
    for thought, action in steps:
        model = f"<think>{thought}</think>" + (action if action.startswith("<answer>") else f"<tool>{action}</tool>")
        observation = env.step(trajectory_id, model, extra_info, DATA_SOURCE)
        if not observation.valid:
            raise RuntimeError(f"{trajectory_id}: the scripted turn {model!r} was refused: {observation.text}")
        turns.append(TrajectoryTurn(model, observation.action, observation.text, True))
    env.end(trajectory_id)
    letter = question["right_answer"]
    return Trajectory(id=trajectory_id, data_source=DATA_SOURCE, video_uid=video["uid"], question=question["question"],
                      options=tuple(question["choices"]), ground_truth=letter, width=video["width"],
                      duration=video["duration"], clue_intervals=tuple(tuple(c) for c in question["clue_intervals"]),
                      turns=tuple(turns), answer=letter, correct=True)


def demo_tool_settings(root: Path) -> ToolSettings:
    """Tool settings that serve the demo world under `root` (its VLM is scripted, never contacted)."""
    return settings_from_dict({"default": {
        "caption_dir": str(root / "captions"), "video_dir": str(root / "videos"),
        "vlm": {"base_url": "http://127.0.0.1:9/v1", "model": "demo-scripted-vlm"}}})


def generate(root: Path, videos: int = 4, questions_per_video: int = 8, seed: int = 0) -> Path:
    """Write the demo world into the new folder `root`: captions, videos, annotations.json, trajectories.jsonl."""
    rng = random.Random(seed)
    script = [_video(rng, index) for index in range(videos)]
    answers, questions, plans = {}, [], []
    for video in script:
        width, duration = video["width"], video["duration"]
        tree = tree_data(width, duration, lambda segment, video=video: _caption(video, segment.ids))
        (root / "captions").mkdir(parents=True, exist_ok=True)
        (root / "captions" / f"{video['uid']}.json").write_text(json.dumps({"duration": duration, **tree}))
        leaf_length = duration / width ** 3
        # Two frames per leaf, and one at the very end, so every leaf time lies inside the stream.
        times = [i * leaf_length / 2 for i in range(2 * width ** 3 + 1)]
        encode_test_video(root / "videos" / f"{video['uid']}.mp4", duration, fps=1, size=VIDEO_SIZE, frame_times=times)
        leaves = rng.sample(sorted(video["objects"]), questions_per_video)
        for leaf in leaves:
            start, end = geometry.time_range(leaf, width, duration)
            query = prompts.vlm_question("What does the person pick up?", start, end)
            answers[query] = f"They pick up {video['objects'][leaf]}."
            question = _question(rng, video, leaf)
            questions.append(question)
            plans.append((video, question, _script(rng, video, leaf, question)))
    with NavigationEnv(demo_tool_settings(root), client_factory=lambda endpoint: ScriptedVLM(answers)) as env:
        trajectories = [_play(env, question["qid"], question, video, steps) for video, question, steps in plans]
    (root / "annotations.json").write_text(json.dumps(questions, indent=1) + "\n")
    write_trajectories(root / "trajectories.jsonl", trajectories)
    return root


def ensure(root: Path, seed: int = 0) -> Path:
    """The demo world at `root`, generated into a temporary folder and moved there unless it is complete."""
    root = root.expanduser().absolute()
    if (root / COMPLETE).is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        generate(staging, seed=seed)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (staging / COMPLETE).write_text("")
    if root.exists():
        # An incomplete world from an interrupted run: replaced, never mixed with the new one.
        shutil.rmtree(root)
    publish(staging, root)
    return root


def sft_settings(root: Path, observation_role: str, max_turns: int) -> SFTDataSettings:
    """Settings that build the SFT file from the demo world at `root`."""
    return SFTDataSettings("trajectories", str(root / "trajectories.jsonl"), observation_role, Checks(max_turns),
                           {"default": str(root / "captions")})


def rl_settings(root: Path, max_turns: int) -> RLDataSettings:
    """Settings that build the RL parquet from the demo world at `root`: a quarter held out."""
    return RLDataSettings(annotations=str(root / "annotations.json"), format="cgbench", data_source=DATA_SOURCE,
                          caption_dir=str(root / "captions"), video_dir=str(root / "videos"), max_turns=max_turns,
                          val_fraction=0.25, seed=0)


def main() -> None:
    """CLI: write the demo world, and the SFT file (`--sft-output`) or RL parquet (`--rl-output`) built from it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sft-output", type=Path, help="build sft.json and dataset_info.json into this folder")
    parser.add_argument("--observation-role", choices=["user", "tool"], default="user")
    parser.add_argument("--rl-output", type=Path, help="build train.parquet and val.parquet into this folder")
    parser.add_argument("--max-turns", type=int, default=15, help="the tool-call budget the system prompt states")
    args = parser.parse_args()
    root = ensure(args.output, args.seed)
    print(f"demo world at {root}")
    if args.sft_output:
        from tools.builders.sft_data import build

        report = build(sft_settings(root, args.observation_role, args.max_turns), args.sft_output)
        print("\n".join(report.lines()))
    if args.rl_output:
        from tools.builders import rl_data

        summary = rl_data.build(rl_settings(root, args.max_turns), args.rl_output)
        print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
