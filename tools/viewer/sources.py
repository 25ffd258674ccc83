"""What `python -m launch view` reads: an agent run's trajectories, the preflight's records, the RL trainer's dumps.

Each source becomes a list of `Item`s, one per question (eval, trajectories) or per GRPO group (the
preflight, RL), holding the question and its episodes (`tools.viewer.episodes`). A file that is not
what its place says raises ViewError naming the file, the line and what was expected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rewards.question import RewardInputError, answer_key, read_question
from rewards.rollout import decoded_rollout
from rewards.score import score_rollout
from rewards.spec import RewardSpec, spec_for_kwargs
from tools.agent.eval_report import QUESTIONS
from tools.environment.trajectory import Trajectory, TrajectoryError, read_trajectories
from tools.viewer.episodes import Episode, episode_of_text

# A chat template's special tokens, which verl's dumps keep in the text (decoded with them).
_SPECIAL_TOKEN = re.compile(r"<\|[A-Za-z0-9_]{1,40}\|>")
# Where a Qwen chat prompt's user turn starts and ends, in a dump's decoded input.
_USER_TURN = re.compile(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", re.DOTALL)


class ViewError(ValueError):
    """A source the viewer cannot read; the message names the file (and line) and what was expected."""


@dataclass
class Item:
    """One row of the index: a question with its episodes (one, or a GRPO group's n)."""

    id: str
    data_source: str
    question: str
    options: list[str]
    ground_truth: str
    episodes: list[Episode]
    categories: list[str] = field(default_factory=list)
    seconds: float | None = None
    # For an RL dump: the trainer step and the dump file's name.
    step: int | None = None


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; ViewError naming the line that is not a JSON object."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ViewError(f"{path}: cannot read it ({error}); expected UTF-8 JSON lines") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise ViewError(f"{path}:{number}: not JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(data, dict):
            raise ViewError(f"{path}:{number}: expected a JSON object, got {type(data).__name__}")
        yield number, data


def trajectory_items(path: Path) -> list[Item]:
    """The questions of a trajectories.jsonl (eval or teacher), scored by the default reward preset for the index."""
    categories = {}
    questions = path.parent / QUESTIONS
    if questions.is_file():
        categories = {row.get("id"): list(row.get("categories") or []) for _, row in _jsonl(questions)}
    spec = spec_for_kwargs({})
    items = []
    for _, trajectory in read_trajectories(path):
        if isinstance(trajectory, TrajectoryError):
            raise ViewError(str(trajectory))
        items.append(_trajectory_item(trajectory, spec, categories.get(trajectory.id, [])))
    return items


def _trajectory_item(trajectory: Trajectory, spec: RewardSpec, categories: list[str]) -> Item:
    """One trajectory as an index row with its one episode."""
    question = answer_key(trajectory.ground_truth, trajectory.options, trajectory.width, trajectory.duration,
                          trajectory.clue_intervals)
    text = decoded_rollout([(turn.model, turn.observation) for turn in trajectory.turns])
    episode = episode_of_text(trajectory.id, text, question, correct=trajectory.correct,
                              reward=score_rollout(spec, text, question))
    return Item(id=trajectory.id, data_source=trajectory.data_source, question=trajectory.question,
                options=list(trajectory.options), ground_truth=trajectory.ground_truth, episodes=[episode],
                categories=categories, seconds=trajectory.timings.get("total_s"))


def _question(path: Path, line: int, ground_truth: object, extra_info: object):
    """The reward's AnswerKey of one rollout; ViewError naming the file and line when its fields are wrong."""
    try:
        return read_question(ground_truth, extra_info)
    except RewardInputError as error:
        raise ViewError(f"{path}:{line}: {error}") from None


def _item(key: str, data_source: str, extra_info: dict, ground_truth: str, episodes: list[Episode],
          step: int | None = None) -> Item:
    """An index row of a group of rollouts of one question."""
    return Item(id=str(extra_info.get("question_id") or key), data_source=data_source,
                question=str(extra_info.get("question", "")), options=[str(o) for o in extra_info.get("options", [])],
                ground_truth=str(ground_truth), episodes=episodes, step=step)


def record_items(path: Path) -> list[Item]:
    """The GRPO groups of the preflight's rollouts.jsonl (`tools.rollouts.records`), in group order."""
    groups: dict[int, list[tuple[int, dict]]] = {}
    for line, record in _jsonl(path):
        if "extra_info" not in record or "text" not in record:
            raise ViewError(f"{path}:{line}: a preflight record without its question (extra_info) or text; "
                            "this file was written by an older preflight: run the rollouts stage again")
        groups.setdefault(int(record.get("group", 0)), []).append((line, record))
    items = []
    for group, members in sorted(groups.items()):
        first = members[0][1]
        episodes = []
        for position, (line, record) in enumerate(members):
            question = _question(path, line, record.get("ground_truth"), record["extra_info"])
            episodes.append(episode_of_text(f"rollout {position + 1}", record["text"], question,
                                            reward={"score": record.get("score"), **record.get("reward", {})},
                                            advantage=record.get("advantage"), stop_reason=record.get("stop_reason")))
        items.append(_item(f"group {group}", str(first.get("data_source") or first["extra_info"].get("data_source")),
                           first["extra_info"], first.get("ground_truth", ""), episodes))
    return items


def plain_text(decoded: str) -> str:
    """A dump's text (decoded with the chat template's special tokens) as the reward reads it (decoded without)."""
    return _SPECIAL_TOKEN.sub("", decoded)


def user_turn(prompt: str) -> str | None:
    """The first user turn's content in a dump's decoded prompt (Qwen chat markers), or None without one."""
    match = _USER_TURN.search(prompt)
    return match.group(1) if match else None


def dump_items(path: Path, questions: dict[str, dict], algorithm: str | None = "grpo") -> list[Item]:
    """The GRPO groups of one RL dump (`<step>.jsonl`, verl's `_dump_generations`): consecutive lines of one prompt.

    `questions` maps a first user turn to its RL row's `extra_info` (`rl_questions`); advantages are
    recomputed from the group's scores by verl's own GRPO function when `algorithm` is grpo.
    """
    groups: list[list[tuple[int, dict]]] = []
    for line, row in _jsonl(path):
        missing = [key for key in ("input", "output", "score") if key not in row]
        if missing:
            raise ViewError(f"{path}:{line}: missing {', '.join(missing)}; expected a line of verl's rollout dump "
                            "(input, output, gts, score, step and the reward's fields)")
        if groups and groups[-1][0][1]["input"] == row["input"]:
            groups[-1].append((line, row))
        else:
            groups.append([(line, row)])
    advantages = _grpo_advantages([[row["score"] for _, row in group] for group in groups]) \
        if algorithm == "grpo" else None
    items = []
    for index, group in enumerate(groups):
        line, first = group[0]
        turn = user_turn(first["input"])
        extra_info = questions.get(turn) if turn is not None else None
        if extra_info is None:
            raise ViewError(f"{path}:{line}: its prompt's user turn is in none of the RL data's {len(questions)} "
                            "rows; pass the parquet files this run trained on (--data)")
        episodes = []
        for position, (number, row) in enumerate(group):
            question = _question(path, number, row.get("gts"), extra_info)
            reward = {key: value for key, value in row.items() if key not in ("input", "output", "gts", "step")}
            episodes.append(episode_of_text(
                f"rollout {position + 1}", plain_text(row["output"]), question, reward=reward,
                advantage=advantages[index][position] if advantages else None,
                stop_reason=row.get("traj_stop_reason") if isinstance(row.get("traj_stop_reason"), str) else None))
        step = first.get("step")
        items.append(_item(f"line {line}", str(extra_info.get("data_source", "")), extra_info, first.get("gts", ""),
                           episodes, step if isinstance(step, int) else None))
    return items


def _grpo_advantages(scores: list[list[float]]) -> list[list[float]]:
    """Each rollout's advantage by verl's `compute_grpo_outcome_advantage`, one outcome score per rollout."""
    import numpy as np
    import torch
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    flat = [float(score) for group in scores for score in group]
    index = np.array([group for group, members in enumerate(scores) for _ in members], dtype=object)
    rewards = torch.tensor(flat, dtype=torch.float32).unsqueeze(-1)
    advantages, _ = compute_grpo_outcome_advantage(rewards, torch.ones_like(rewards), index)
    values = advantages.squeeze(-1).tolist()
    out, start = [], 0
    for group in scores:
        out.append([round(value, 6) for value in values[start:start + len(group)]])
        start += len(group)
    return out


def rl_questions(files: list[Path]) -> dict[str, dict]:
    """Each RL parquet row's `extra_info` and data source, keyed by its first user turn (what a dump's prompt holds)."""
    import pyarrow.parquet as pq

    questions = {}
    for path in files:
        try:
            rows = pq.read_table(path, columns=["prompt", "extra_info", "data_source"]).to_pylist()
        except (OSError, ValueError, KeyError) as error:
            raise ViewError(f"{path}: cannot read it as the RL data ({error}); expected the parquet rl_data "
                            "writes (prompt, extra_info, data_source)") from None
        for row in rows:
            user = next((m["content"] for m in row["prompt"] or [] if m.get("role") == "user"), None)
            if user is not None:
                questions[user] = {**(row["extra_info"] or {}), "data_source": row["data_source"]}
    return questions
