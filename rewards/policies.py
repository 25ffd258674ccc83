"""Scripted policies for the reward audit: what a reward pays for each way of walking the caption tree.

Each policy maps an audit question to the model turns it plays: tool calls, then (usually) an
answer. The audit plays them through the navigation environment, so every observation is the one
the tool really serves. Policies are open-loop and deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from tools.environment import geometry
from tools.environment.actions import GetCaption
from tools.environment.intervals import Interval, merge, overlaps
from tools.environment.prompts import LETTERS


@dataclass(frozen=True)
class AuditCase:
    """One question of the audit: its video, geometry, clue intervals, options and the right letter."""

    video_uid: str
    duration: float
    width: int
    clues: tuple[Interval, ...]
    options: tuple[str, ...]
    letter: str
    data_source: str = "audit"

    @property
    def option_count(self) -> int:
        """How many options the question has (4 when the data does not list them)."""
        return len(self.options) or 4

    @property
    def wrong_letter(self) -> str:
        """An option letter that is not the right one."""
        return next(letter for letter in LETTERS[:self.option_count] if letter != self.letter)

    def extra_info(self, index: int) -> dict:
        """The question's `extra_info` (field names of rewards/README.md)."""
        extra = {"video_uid": self.video_uid, "duration": self.duration, "width": self.width,
                 "clue_intervals": [list(clue) for clue in self.clues], "index": index}
        if self.options:
            extra["options"] = list(self.options)
        return extra


Policy = Callable[[AuditCase, random.Random, int], list[str]]
POLICIES: dict[str, Policy] = {}


def policy(name: str) -> Callable[[Policy], Policy]:
    """Decorator: register a scripted policy under `name` (a name that is taken is refused)."""

    def decorator(function: Policy) -> Policy:
        if name in POLICIES:
            raise ValueError(f"audit policy {name!r} is already registered")
        POLICIES[name] = function
        return function

    return decorator


def call(action: GetCaption, thought: str) -> str:
    """A well-formed tool-call turn."""
    return f"<think>{thought}</think><tool>{action.render()}</tool>"


def answer(letter: str, thought: str = "I have seen enough to answer.") -> str:
    """A well-formed answer turn."""
    return f"<think>{thought}</think><answer>{letter}</answer>"


def clue_leaves(question: AuditCase) -> list[tuple[int, ...]]:
    """The low segments that overlap the question's clue intervals, in time order."""
    clues = merge(question.clues)
    leaves = []
    for segment in geometry.segments(question.width, question.duration, levels=(3,)):
        if overlaps(segment.start, segment.end, clues):
            leaves.append(segment.ids)
    return leaves


def _reads(ids_list: list[tuple[int, ...]], thought: str) -> list[str]:
    """One get_caption turn per ids."""
    return [call(GetCaption(ids), thought) for ids in ids_list]


@policy("oracle")
def oracle(question: AuditCase, rng: random.Random, max_turns: int) -> list[str]:
    """Straight to the clue leaves, then the right answer."""
    return _reads(clue_leaves(question)[:max_turns], "The clue is here.") + [answer(question.letter)]


@policy("coarse_to_fine")
def coarse_to_fine(question: AuditCase, rng: random.Random, max_turns: int) -> list[str]:
    """The clue's medium segments, then their clue leaves, then the right answer."""
    path: list[tuple[int, ...]] = []
    for leaf in clue_leaves(question):
        if leaf[:2] not in path:
            path.append(leaf[:2])
        path.append(leaf)
    return _reads(path[:max_turns], "I descend towards the clue.") + [answer(question.letter)]


@policy("exhaustive")
def exhaustive(question: AuditCase, rng: random.Random, max_turns: int) -> list[str]:
    """Every medium segment in order until the turn limit, then the right answer."""
    mediums = [segment.ids for segment in geometry.segments(question.width, question.duration, levels=(2,))]
    return _reads(mediums[:max_turns], "I scan the whole video.") + [answer(question.letter)]


@policy("repeat_spammer")
def repeat_spammer(question: AuditCase, rng: random.Random, max_turns: int) -> list[str]:
    """The first clue leaf read again and again up to the turn limit, then the right answer."""
    return _reads(clue_leaves(question)[:1] * max_turns, "Reading it again.") + [answer(question.letter)]


@policy("guess_right")
def guess_right(question: AuditCase, rng: random.Random, max_turns: int) -> list[str]:
    """No tool at all; the right answer."""
    return [answer(question.letter, "I guess.")]


@policy("guess_wrong")
def guess_wrong(question: AuditCase, rng: random.Random, max_turns: int) -> list[str]:
    """No tool at all; a wrong answer."""
    return [answer(question.wrong_letter, "I guess.")]


@policy("perfect_nav_wrong")
def perfect_nav_wrong(question: AuditCase, rng: random.Random, max_turns: int) -> list[str]:
    """The oracle's navigation, then a wrong answer."""
    return oracle(question, rng, max_turns)[:-1] + [answer(question.wrong_letter)]


@policy("random_walker")
def random_walker(question: AuditCase, rng: random.Random, max_turns: int) -> list[str]:
    """Random medium and low captions for a random number of turns, then a random option."""
    turns = []
    for _ in range(rng.randint(1, max_turns)):
        ids = tuple(rng.randint(1, question.width) for _ in range(rng.choice((2, 3))))
        turns.append(call(GetCaption(ids), "Let me look somewhere."))
    return turns + [answer(rng.choice(LETTERS[:question.option_count]))]
