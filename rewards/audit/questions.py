"""Questions for the reward audit: synthetic caption trees with clue intervals, or rows of a real RL parquet.

Synthetic questions get a caption file each (written with `tools.environment.caption_tree.tree_data`) whose
segments over the clue mention it, so the tool serves real observations. A parquet (the paper's
released RL file or ours) is read with its `extra_info` and `reward_model.ground_truth`; rows without
clue intervals are skipped, because the audit's policies walk to the clue.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from rewards.policies import AuditCase
from rewards.question import RewardInputError, read_question
from tools.environment import geometry
from tools.environment.caption_tree import caption_path, tree_data
from tools.environment.intervals import overlaps
from tools.environment.plain_data import plain_data
from tools.environment.prompts import LETTERS

DURATIONS = (600.0, 1200.0, 1800.0, 2700.0, 3600.0)
OBJECTS = ("a red car", "a dog", "a chef", "a bicycle", "a blue door", "a violin", "a kite", "a lamp")


def _clues(rng: random.Random, duration: float) -> tuple[tuple[float, float], ...]:
    """One or two clue intervals of 4 to 40 s; a second one sometimes starts within 5 s of the first (merged)."""
    start = rng.uniform(0.0, duration - 100.0)
    first = (round(start, 1), round(start + rng.uniform(4.0, 40.0), 1))
    if rng.random() < 0.5:
        return (first,)
    gap = rng.choice((rng.uniform(0.5, 4.5), rng.uniform(20.0, 50.0)))
    second_start = first[1] + gap
    return first, (round(second_start, 1), round(min(duration, second_start + rng.uniform(4.0, 20.0)), 1))


def synthetic_questions(count: int, seed: int, caption_dir: Path) -> list[AuditCase]:
    """`count` synthetic questions with clue intervals, their caption files written into `caption_dir`."""
    rng = random.Random(seed)
    caption_dir.mkdir(parents=True, exist_ok=True)
    questions = []
    for index in range(count):
        duration = rng.choice(DURATIONS)
        width = geometry.width_for_duration(duration)
        clues = _clues(rng, duration)
        target = rng.choice(OBJECTS)
        options = rng.sample([o for o in OBJECTS if o != target], 3) + [target]
        rng.shuffle(options)

        def caption_for(segment: geometry.Segment, clues=clues, target=target) -> str:
            near = overlaps(segment.start, segment.end, clues)
            return f"{target} appears on screen." if near else "people walk through a street."

        uid = f"audit_{seed}_{index:04d}"
        caption_path(caption_dir, uid).write_text(json.dumps(tree_data(width, duration, caption_for)))
        questions.append(AuditCase(uid, duration, width, clues, tuple(options), LETTERS[options.index(target)]))
    return questions


def parquet_questions(path: Path, limit: int) -> tuple[list[AuditCase], int]:
    """Up to `limit` questions with clue intervals from an RL parquet, and how many rows had none."""
    import pandas

    try:
        frame = pandas.read_parquet(path)
    except (OSError, ValueError) as error:
        raise RewardInputError(f"{path}: cannot read it as a parquet table ({error}); expected an RL parquet "
                               "with data_source, prompt, reward_model and extra_info") from None
    for column in ("data_source", "reward_model", "extra_info"):
        if column not in frame.columns:
            raise RewardInputError(f"{path}: no column {column!r}; an RL parquet has data_source, prompt, "
                                   "reward_model and extra_info")
    questions, without_clues = [], 0
    for row_number, row in enumerate(frame.itertuples(index=False)):
        if len(questions) >= limit:
            break
        extra, reward_model = plain_data(row.extra_info), plain_data(row.reward_model)
        where = f"{path} row {row_number}"
        if not isinstance(reward_model, dict) or "ground_truth" not in reward_model:
            raise RewardInputError(f"{where}: reward_model must hold ground_truth, got {reward_model!r}")
        try:
            question = read_question(reward_model["ground_truth"], extra)
        except RewardInputError as error:
            raise RewardInputError(f"{where}: {error}") from None
        if question.clues is None:
            without_clues += 1
            continue
        questions.append(AuditCase(str(extra["video_uid"]), question.duration, question.width, question.clues,
                                       question.options, question.letter, str(row.data_source)))
    return questions, without_clues
