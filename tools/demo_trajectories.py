"""Generate the small demo set of tool-calling trajectories that `recipe=tiny` trains on.

Each trajectory walks a synthetic caption tree coarse to fine in the method's text actions
(`<think>...</think><tool>get_caption((h, m))</tool>`, `video_qa((h, m, l), "...")`, then
`<answer>X</answer>`), with every observation as its own user turn, written in LLaMA-Factory's
sharegpt format. Prompts and observations come from `tools.prompts`, the same builder RL and
evaluation use. It is deterministic for a seed and well under 1 MB.

    python -m tools.demo_trajectories --output ~/.cache/longvideo-r1/demo/sft_demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path

from tools import geometry, prompts
from tools.actions import GetCaption, VideoQA
from tools.caption_tree import parse_caption_tree, tree_data

WIDTH = 4
OBJECTS = ["a red car", "a dog", "a chef", "a bicycle", "a blue door", "a violin", "a kite", "a lamp"]
PLACES = ["a street", "a kitchen", "a park", "a stage", "a beach", "an office"]


def _tree(rng: random.Random, duration: float, target_ids: tuple[int, int, int], place: str) -> dict:
    """A synthetic caption file in which only the target branch mentions `place`."""

    def caption_for(segment: geometry.Segment) -> str:
        on_path = segment.ids == target_ids[:segment.level]
        return f"someone arrives at {place}." if on_path else f"people walk through {rng.choice(PLACES)}."

    return tree_data(WIDTH, duration, caption_for)


def trajectory(rng: random.Random, index: int, max_turns: int = 15) -> dict:
    """One synthetic question and its coarse-to-fine trajectory, as sharegpt messages."""
    duration = float(rng.choice([1024, 2048, 3600]))
    leaf = tuple(rng.randint(1, WIDTH) for _ in range(3))
    target, place = rng.choice(OBJECTS), rng.choice(PLACES)
    options = rng.sample([o for o in OBJECTS if o != target], 3) + [target]
    rng.shuffle(options)
    answer = prompts.LETTERS[options.index(target)]
    tree = parse_caption_tree(_tree(rng, duration, leaf, place), f"demo video {index}")
    question = f"Video {index}: what appears in {place}?"
    medium, query = leaf[:2], f"What object is in {place}?"
    steps = [
        (f"The arrival at {place} is in segment {leaf[0]}; I read its medium segment {leaf[1]}.",
         GetCaption(medium), prompts.caption_observation(medium, WIDTH, duration, tree.caption(medium))),
        (f"Low segment {leaf[2]} should show what is in {place}.",
         GetCaption(leaf), prompts.caption_observation(leaf, WIDTH, duration, tree.caption(leaf))),
        ("The caption is vague; I ask the video directly.",
         VideoQA(leaf, query), prompts.video_qa_observation(f"The frames show {target} in {place}.")),
    ]
    messages = [{"from": "system", "value": prompts.system_prompt(max_turns)},
                {"from": "human", "value": prompts.first_user_turn(question, options, duration, tree)}]
    return {"messages": messages, "_steps": steps, "_answer": answer, "_target": target}


def render(record: dict, observation_role: str) -> dict:
    """Finish a trajectory's messages with each observation in `observation_role` (user or tool)."""
    observation_tag = {"user": "human", "tool": "observation"}[observation_role]
    messages = list(record["messages"])
    for thought, action, observation in record["_steps"]:
        messages.append({"from": "gpt", "value": f"<think>{thought}</think><tool>{action.render()}</tool>"})
        messages.append({"from": observation_tag, "value": observation})
    messages.append({"from": "gpt", "value": f"<think>It is {record['_target']}.</think>"
                                             f"<answer>{record['_answer']}</answer>"})
    return {"messages": messages}


def generate(count: int = 64, seed: int = 0, observation_role: str = "user", max_turns: int = 15) -> list[dict]:
    """`count` demo trajectories, deterministic for `seed`."""
    rng = random.Random(seed)
    return [render(trajectory(rng, i, max_turns), observation_role) for i in range(count)]


def write(output: Path, records: list[dict]) -> Path:
    """Write records as JSON atomically (a half-written file never appears at `output`)."""
    output = output.expanduser().absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(records, handle, ensure_ascii=False, indent=1)
    os.replace(tmp, output)
    return output


def main() -> None:
    """CLI: write the demo trajectories to `--output`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--observation-role", choices=["user", "tool"], default="user")
    parser.add_argument("--max-turns", type=int, default=15, help="the tool-call budget the system prompt states")
    args = parser.parse_args()
    path = write(args.output, generate(args.count, args.seed, args.observation_role, args.max_turns))
    print(f"wrote {args.count} demo trajectories to {path}")


if __name__ == "__main__":
    main()
