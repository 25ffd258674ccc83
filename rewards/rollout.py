"""A decoded rollout split into model turns and judged by the navigation environment's own rules.

verl decodes a rollout without special tokens, with every observation inline. Observations never
hold a turn tag (`tools.environment.prompts` respells them), and generation stops at the first `</tool>` or
`</answer>` (the action stop tokens), so a model turn starts at the first turn tag after the last
one ended (the first turn starts at the top) and ends at the first action close tag after that.
Each turn is read by `tools.environment.actions.parse_turn`, and each call is replayed through the
environment's own serve rule (`tools.environment.serve_rule.serve_call`): refused when its ids do not
exist at the question's width or video_qa asks about a leaf whose caption was not read earlier in the
same rollout, failed when the observation that follows it is the tool's failure notice, else served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tools.environment.actions import ACTION_STOPS, TURN_TAGS, Answer, GetCaption, Turn, VideoQA, parse_turn
from tools.environment.prompts import tool_failure_reason
from tools.environment.serve_rule import FAILED, ToolFailure, serve_call

_ANY_TAG = re.compile("|".join(re.escape(tag) for tag in TURN_TAGS))
_TURN_END = re.compile("|".join(re.escape(stop) for stop in ACTION_STOPS))
_SPACES = re.compile(r"\s+")


@dataclass(slots=True)
class JudgedTurn:
    """One model turn: its parse, whether the tool would take its action (`valid`), and why not.

    A call the tool took but failed to carry out is valid (not the model's mistake) and `failed`, so not served.
    """

    text: str
    parsed: Turn
    valid: bool
    reason: str | None = None
    failed: bool = False

    @property
    def well_formed(self) -> bool:
        """Valid, with a thought before the action and nothing left over."""
        return self.valid and not self.parsed.problems

    @property
    def is_call(self) -> bool:
        """Whether the turn tried a tool call (anything that is not a readable answer)."""
        return not isinstance(self.parsed.action, Answer)


@dataclass(slots=True)
class Rollout:
    """Every model turn of a rollout, judged in order, and what they add up to (counted once, in `judge_rollout`)."""

    turns: tuple[JudgedTurn, ...]
    # The actions of the calls the tool served (valid, not failed), in order.
    served_calls: tuple[GetCaption | VideoQA, ...]
    # How many different calls the tool served (see `call_key`).
    unique_calls: int
    # Turns that tried a tool call, valid or not (the answer turn is not a call).
    tool_calls: int
    # Turns the tool would refuse: unreadable, out of range, video_qa too early, or after the answer (not a
    # call the tool failed to carry out, which is neither served nor invalid).
    invalid_turns: int
    # Turns that are invalid or break the format (no thought first, text left over).
    ill_formed_turns: int
    # Every answer the rollout gave, in order (normally one, in the last turn).
    answers: tuple[Answer, ...]


def call_key(action: GetCaption | VideoQA) -> tuple:
    """What makes two calls the same: the tool, the ids, and for video_qa the question up to case and spacing."""
    if isinstance(action, VideoQA):
        return ("video_qa", action.ids, _SPACES.sub(" ", action.query).strip().casefold())
    return ("get_caption", action.ids)


def split_steps(text: str) -> list[tuple[str, str]]:
    """The model turns of a decoded rollout, each with the text up to the next turn (its observation, role text and
    all); the last turn may be unterminated."""
    steps: list[tuple[str, str]] = []
    start = len(text) - len(text.lstrip())
    while start < len(text):
        end = _TURN_END.search(text, start)
        if end is None:
            steps.append((text[start:], ""))
            break
        # The observation that follows holds no turn tag, so the next turn starts at the next tag.
        next_tag = _ANY_TAG.search(text, end.end())
        steps.append((text[start:end.end()], text[end.end():len(text) if next_tag is None else next_tag.start()]))
        if next_tag is None:
            break
        start = next_tag.start()
    return steps


def split_turns(text: str) -> list[str]:
    """The model turns of a decoded rollout, observations dropped; the last may be unterminated."""
    return [turn for turn, _ in split_steps(text)]


def judge_rollout(text: str, width: int) -> Rollout:
    """Split `text` into turns and judge each as the navigation environment would serve it."""
    judged: list[JudgedTurn] = []
    read_leaves: set[tuple[int, ...]] = set()
    answered = False
    for turn_text, observation in split_steps(text):
        parsed = parse_turn(turn_text)
        action = parsed.action
        if answered:
            judged.append(JudgedTurn(turn_text, parsed, False, "a turn after the answer"))
        elif action is None:
            judged.append(JudgedTurn(turn_text, parsed, False, parsed.error.reason))
        elif isinstance(action, Answer):
            answered = True
            judged.append(JudgedTurn(turn_text, parsed, True))
        else:
            judged.append(_judge_call(turn_text, parsed, action, width, read_leaves, observation))
    served, answers, tool_calls, invalid, ill_formed = [], [], 0, 0, 0
    # One pass adds the turns up, so no component counts them again.
    for turn in judged:
        action = turn.parsed.action
        if isinstance(action, Answer):
            answers.append(action)
        else:
            tool_calls += 1
            if turn.valid and not turn.failed:
                served.append(action)
        invalid += not turn.valid
        ill_formed += not turn.valid or bool(turn.parsed.problems)
    return Rollout(turns=tuple(judged), served_calls=tuple(served),
                   unique_calls=len({call_key(action) for action in served}), tool_calls=tool_calls,
                   invalid_turns=invalid, ill_formed_turns=ill_formed, answers=tuple(answers))


def _replay(observation: str) -> str:
    """The tool's reply to a call as the rollout shows it; ToolFailure when it is the tool's failure notice."""
    reason = tool_failure_reason(observation)
    if reason is not None:
        raise ToolFailure(reason)
    return observation


def _judge_call(text: str, parsed: Turn, action: GetCaption | VideoQA, width: int,
                read_leaves: set[tuple[int, ...]], observation: str) -> JudgedTurn:
    """A tool call replayed through the environment's serve rule; a low caption served is remembered for video_qa."""
    outcome = serve_call(action, width, read_leaves, lambda: _replay(observation))
    if outcome.unlocks is not None:
        read_leaves.add(outcome.unlocks)
    if outcome.served:
        return JudgedTurn(text, parsed, True)
    failed = outcome.outcome == FAILED
    return JudgedTurn(text, parsed, failed, outcome.reason, failed)


# The counts every score reports next to its components, so verl logs each one.
COUNT_KEYS = ("turns", "tool_calls", "served_calls", "unique_calls", "repeats", "invalid_turns", "ill_formed_turns",
              "get_caption_calls", "video_qa_calls", "answered")


def rollout_counts(rollout: Rollout) -> dict[str, int]:
    """How many turns, calls, repeats and invalid or ill-formed turns a rollout has, and whether it answered."""
    served, unique = rollout.served_calls, rollout.unique_calls
    video_qa = sum(isinstance(action, VideoQA) for action in served)
    return {"turns": len(rollout.turns), "tool_calls": rollout.tool_calls, "served_calls": len(served),
            "unique_calls": unique, "repeats": len(served) - unique, "invalid_turns": rollout.invalid_turns,
            "ill_formed_turns": rollout.ill_formed_turns, "get_caption_calls": len(served) - video_qa,
            "video_qa_calls": video_qa, "answered": int(bool(rollout.answers))}


# What wraps an observation between two model turns once verl decodes without special tokens (Qwen chat).
OBSERVATION_OPEN, OBSERVATION_CLOSE = "\nuser\n", "\nassistant\n"


def decoded_rollout(steps: list[tuple[str, str]]) -> str:
    """The text verl hands the reward for model turns and their observations (verl-tool multi-turn, Qwen chat).

    Between turns verl-tool inserts `<|im_end|>\\n<|im_start|>user\\n{observation}<|im_end|>\\n`
    `<|im_start|>assistant\\n`; decoding without special tokens leaves `\\nuser\\n{observation}\\nassistant\\n`.
    """
    return "".join(turn + (f"{OBSERVATION_OPEN}{observation}{OBSERVATION_CLOSE}" if observation else "")
                   for turn, observation in steps)


def observation_of(between: str) -> str:
    """The observation in the text between two model turns (`split_steps`), its chat role text removed."""
    return between.removeprefix(OBSERVATION_OPEN).removesuffix(OBSERVATION_CLOSE)
