"""Generate the small demo set of tool-calling trajectories that `recipe=tiny` trains on.

Each trajectory walks a synthetic caption tree coarse to fine in the method's text actions
(`<think>...</think><tool>get_caption((h, m))</tool>`, `video_qa((h, m, l), "...")`, then
`<answer>X</answer>`), with every observation as its own user turn, written in LLaMA-Factory's
sharegpt format. It is deterministic for a seed and well under 1 MB.

    python -m tools.demo_trajectories --output ~/.cache/longvideo-r1/demo/sft_demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path

WIDTH = 4
LETTERS = "ABCD"
OBJECTS = ["a red car", "a dog", "a chef", "a bicycle", "a blue door", "a violin", "a kite", "a lamp"]
PLACES = ["a street", "a kitchen", "a park", "a stage", "a beach", "an office"]
SYSTEM_PROMPT = (
    "You answer a question about a long video by navigating its caption tree. The video is split "
    f"into {WIDTH} high-level segments, each into {WIDTH} medium segments, each into {WIDTH} low "
    "segments. Think inside <think>...</think>, then give exactly one action: "
    "<tool>get_caption((h, m))</tool> or <tool>get_caption((h, m, l))</tool> to read a caption, "
    '<tool>video_qa((h, m, l), "question")</tool> to ask about a low segment whose caption you have '
    "read, or <answer>X</answer> with the option letter."
)


def _span(duration: float, index: int, count: int) -> str:
    start, end = duration * index / count, duration * (index + 1) / count
    return f"{start:.1f}s-{end:.1f}s"


def trajectory(rng: random.Random, index: int) -> dict:
    """One synthetic question and its coarse-to-fine trajectory, as sharegpt messages."""
    duration = float(rng.choice([1024, 2048, 3600]))
    h, m, low = (rng.randint(1, WIDTH) for _ in range(3))
    target, place = rng.choice(OBJECTS), rng.choice(PLACES)
    options = rng.sample([o for o in OBJECTS if o != target], 3) + [target]
    rng.shuffle(options)
    answer = LETTERS[options.index(target)]
    highs = [f"Segment {i + 1} ({_span(duration, i, WIDTH)}): people walk through {rng.choice(PLACES)}."
             for i in range(WIDTH)]
    highs[h - 1] = f"Segment {h} ({_span(duration, h - 1, WIDTH)}): someone arrives at {place}."
    question = f"Video {index}: what appears in {place}?"
    first_user = (
        f"Question: {question}\nOptions:\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
        + f"\nThe video lasts {duration:.0f}s. High-level captions:\n" + "\n".join(highs)
    )
    medium_index = (h - 1) * WIDTH + (m - 1)
    low_index = medium_index * WIDTH + (low - 1)
    steps = [
        (f"<think>The arrival at {place} is in segment {h}; I read its medium segment {m}.</think>"
         f"<tool>get_caption(({h}, {m}))</tool>",
         f"Medium caption ({h}, {m}) [{_span(duration, medium_index, WIDTH ** 2)}]: the camera follows "
         f"someone into {place}."),
        (f"<think>Low segment {low} should show what is in {place}.</think>"
         f"<tool>get_caption(({h}, {m}, {low}))</tool>",
         f"Low caption ({h}, {m}, {low}) [{_span(duration, low_index, WIDTH ** 3)}]: something stands in {place}."),
        (f"<think>The caption is vague; I ask the video directly.</think>"
         f'<tool>video_qa(({h}, {m}, {low}), "What object is in {place}?")</tool>',
         f"<information>The frames show {target} in {place}.</information>"),
    ]
    messages = [{"from": "system", "value": SYSTEM_PROMPT}, {"from": "human", "value": first_user}]
    return {"messages": messages, "_steps": steps, "_answer": answer, "_target": target}


def render(record: dict, observation_role: str) -> dict:
    """Finish a trajectory's messages with each observation in `observation_role` (user or tool)."""
    observation_tag = {"user": "human", "tool": "observation"}[observation_role]
    messages = list(record["messages"])
    for action, observation in record["_steps"]:
        messages.append({"from": "gpt", "value": action})
        messages.append({"from": observation_tag, "value": observation})
    messages.append({"from": "gpt", "value": f"<think>It is {record['_target']}.</think>"
                                             f"<answer>{record['_answer']}</answer>"})
    return {"messages": messages}


def generate(count: int = 64, seed: int = 0, observation_role: str = "user") -> list[dict]:
    """`count` demo trajectories, deterministic for `seed`."""
    rng = random.Random(seed)
    return [render(trajectory(rng, i), observation_role) for i in range(count)]


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
    args = parser.parse_args()
    path = write(args.output, generate(args.count, args.seed, args.observation_role))
    print(f"wrote {args.count} demo trajectories to {path}")


if __name__ == "__main__":
    main()
