"""One episode as the viewer shows it: each model turn judged by the reward's own rules, and the segments it visited.

Every source (an eval's or teacher's trajectories, the preflight's records, the RL trainer's dumps)
comes down to the decoded rollout text the reward scores, and `rewards.rollout.judge_rollout` reads
it: the same parser and serve rule as the tool and the reward, never a second one. A visit is a
call the tool served, numbered in order, with its level (medium or low caption) or video_qa and
its time range (`geometry.time_range`); location F1 is the reward's location component.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from rewards.components import answer_reward, location_reward
from rewards.question import AnswerKey
from rewards.rollout import COUNT_KEYS, JudgedTurn, judge_rollout, observation_of, split_steps
from tools.environment import geometry
from tools.environment.actions import Answer, VideoQA

# A visit's kind: a medium caption, a low caption, or a video_qa question (the location reward's visit kinds).
VISIT_KINDS = ("medium", "low", "video_qa")
# Score-dict fields that are not reward components: the counts the score reports beside them.
NOT_COMPONENTS = ("has_clues", *COUNT_KEYS)
# A turn's status in the viewer: the serve rule's outcome, an answer, or a turn the tool refused.
STATUSES = ("served", "failed", "refused", "answer")


@dataclass
class Visit:
    """A call the tool served: its number in visit order, kind, ids and time range in seconds."""

    n: int
    kind: str
    ids: list[int]
    start: float
    end: float


@dataclass
class Step:
    """One model turn as shown: thought, action, observation, and what the serve rule made of it."""

    think: str | None
    action: str
    observation: str
    status: str
    reason: str | None = None
    problems: list[str] = field(default_factory=list)
    # The visit this turn made, when the tool served it.
    visit: int | None = None


@dataclass
class Episode:
    """One rollout of one question: its turns, visits, clue intervals, outcome and, where scored, reward."""

    label: str
    width: int
    duration: float
    clues: list[list[float]]
    steps: list[Step]
    visits: list[Visit]
    answer: str | None
    correct: bool
    location_f1: float | None
    invalid_turns: int
    tool_calls: int
    reward: dict[str, float] = field(default_factory=dict)
    advantage: float | None = None
    stop_reason: str | None = None

    def to_dict(self) -> dict:
        """The JSON object the page's script reads (no NaN: a component that does not apply is null)."""
        return {"label": self.label, "width": self.width, "duration": self.duration, "clues": self.clues,
                "steps": [vars(step) for step in self.steps], "visits": [vars(visit) for visit in self.visits],
                "answer": self.answer, "correct": self.correct, "location_f1": self.location_f1,
                "invalid_turns": self.invalid_turns, "tool_calls": self.tool_calls,
                "reward": {key: finite_or_none(value) for key, value in self.reward.items()
                           if key not in NOT_COMPONENTS},
                "advantage": finite_or_none(self.advantage), "stop_reason": self.stop_reason}


def finite_or_none(value: object) -> float | None:
    """A finite number as a float; None for NaN, infinities and anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _action_text(turn: JudgedTurn) -> str:
    """The action as the model wrote it, or why it could not be read."""
    action = turn.parsed.action
    if action is not None:
        return action.render()
    return f"(unreadable: {turn.parsed.error.reason})" if turn.parsed.error else "(no action)"


def _status(turn: JudgedTurn) -> str:
    """served, failed, refused or answer: the serve rule's outcome of the turn."""
    if isinstance(turn.parsed.action, Answer) and turn.valid:
        return "answer"
    if not turn.valid:
        return "refused"
    return "failed" if turn.failed else "served"


def _visit(n: int, turn: JudgedTurn, question: AnswerKey) -> Visit:
    """The visit a served call made."""
    action = turn.parsed.action
    kind = "video_qa" if isinstance(action, VideoQA) else geometry.level_name(action.ids)
    start, end = geometry.time_range(action.ids, question.width, question.duration)
    return Visit(n, kind, list(action.ids), round(start, 3), round(end, 3))


def episode_of_text(label: str, text: str, question: AnswerKey, correct: bool | None = None,
                    reward: Mapping[str, object] | None = None, advantage: float | None = None,
                    stop_reason: str | None = None) -> Episode:
    """The episode of one decoded rollout (as the reward reads it) over `question`.

    `correct` defaults to the reward's answer component; `reward` is the score dict the run recorded.
    """
    rollout = judge_rollout(text, question.width)
    steps, visits = [], []
    for turn, (_, between) in zip(rollout.turns, split_steps(text), strict=True):
        status = _status(turn)
        visit = None
        if status == "served":
            visit = _visit(len(visits) + 1, turn, question)
            visits.append(visit)
        steps.append(Step(think=turn.parsed.think, action=_action_text(turn), observation=observation_of(between),
                          status=status, reason=turn.reason, problems=list(turn.parsed.problems),
                          visit=None if visit is None else visit.n))
    letters = [answer.letter for answer in rollout.answers]
    clues = [[round(start, 3), round(end, 3)] for start, end in question.clues or ()]
    return Episode(label=label, width=question.width, duration=question.duration, clues=clues, steps=steps,
                   visits=visits, answer=letters[-1] if letters else None,
                   correct=bool(answer_reward(rollout, question)) if correct is None else correct,
                   location_f1=finite_or_none(location_reward(rollout, question)),
                   invalid_turns=rollout.invalid_turns, tool_calls=rollout.tool_calls,
                   reward={key: value for key, value in (reward or {}).items()
                           if isinstance(value, (int, float)) and not isinstance(value, bool)},
                   advantage=advantage, stop_reason=stop_reason)
