"""The checks a trajectory passes before it becomes an SFT sample, and the reasons it is dropped.

Model turns are read with the navigation environment's parser (`tools.environment.actions`), answers with the
reward's answer reader, and turns are counted as `agent.max_turns` counts them (tool calls only).
Each check returns a `Drop` that says why, so the report can count trajectories by reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tools.environment.actions import ACTION_TAGS, THINK_CLOSE, THINK_OPEN, Action, Answer, parse_turn
from tools.environment.answers import answer_option
from tools.environment.trajectory import Trajectory

# Every reason a trajectory or record is dropped, in the order the report lists them.
REASONS = {
    "schema": "a field is missing or has the wrong type",
    "duplicate_id": "an earlier line has the same id",
    "unparseable_action": "a model turn is not <think>...</think> then one valid action",
    "action_mismatch": "a turn's stored action is not what its text parses to",
    "no_answer": "the last turn is not an answer, or an answer comes before the last turn",
    "too_many_turns": "more tool calls than agent.max_turns",
    "invalid_turn": "the tool refused a turn (valid: false)",
    "bad_observation": "an observation holds an action or think tag, which would split the rollout wrongly",
    "answer_mismatch": "the stored answer or correct flag disagrees with the answer turn",
    "wrong_answer": "the final answer is not the ground truth",
    "hinted": "the teacher was given hints",
    "caption_tree": "the caption tree for the first user turn is missing or malformed",
    "duration_mismatch": "the trajectory's duration is not the one its caption file records",
    "reward_input": "the reward would refuse the question's fields (e.g. clue intervals outside the video)",
}
_OBSERVATION_TAGS = (*ACTION_TAGS, THINK_OPEN, THINK_CLOSE)
# LLaMA-Factory's tags of a sharegpt dataset where dataset_info.json sets none (llamafactory/data/parser.py).
SHAREGPT_DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                         "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}


@dataclass(frozen=True)
class Drop:
    """Why one input line was not kept."""

    line: int
    id: str | None
    reason: str
    detail: str

    def to_dict(self) -> dict:
        """The JSON object written to dropped.jsonl."""
        return {"line": self.line, "id": self.id, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class Checks:
    """Which trajectories to keep: the turn limit and the optional filters."""

    max_turns: int
    keep_wrong: bool = False
    keep_hinted: bool = False
    keep_invalid_turns: bool = False


def check_model_turns(models: Sequence[str], max_turns: int) -> tuple[str, str] | tuple[None, list[Action]]:
    """(reason, detail) for the first problem in a trajectory's model turns, else (None, each turn's action)."""
    actions = []
    for position, text in enumerate(models):
        parsed = parse_turn(text)
        if parsed.error is not None:
            return "unparseable_action", f"turns[{position}]: {parsed.error.reason}: {text[-120:]!r}"
        if parsed.problems:
            return "unparseable_action", f"turns[{position}]: {'; '.join(parsed.problems)}"
        if isinstance(parsed.action, Answer) != (position == len(models) - 1):
            where = "the last turn is a tool call" if position == len(models) - 1 else f"turns[{position}] answers"
            return "no_answer", f"{where}: only the last turn answers"
        actions.append(parsed.action)
    if len(models) - 1 > max_turns:
        return "too_many_turns", f"{len(models) - 1} tool calls, over agent.max_turns={max_turns}"
    return None, actions


def check_observations(observations: Sequence[str]) -> tuple[str, str] | None:
    """(reason, detail) if an observation holds a tag that would end or fake a model turn."""
    for position, text in enumerate(observations):
        found = [tag for tag in _OBSERVATION_TAGS if tag in text]
        if found:
            return "bad_observation", f"observation {position + 1} holds {', '.join(found)}"
    return None


def check_trajectory(trajectory: Trajectory, checks: Checks) -> tuple[str, str] | None:
    """(reason, detail) for the first reason to drop `trajectory`, or None to keep it."""
    reason, found = check_model_turns([turn.model for turn in trajectory.turns], checks.max_turns)
    if reason is not None:
        return reason, found
    for position, (turn, action) in enumerate(zip(trajectory.turns, found, strict=True)):
        parsed = action.to_dict()
        if parsed != turn.action:
            return "action_mismatch", (f"turns[{position}].action={turn.action!r:.100} but the text parses to "
                                       f"{parsed!r:.100}")
        if not turn.valid and not checks.keep_invalid_turns:
            return "invalid_turn", f"turns[{position}] was refused: {turn.observation[:120]!r}"
    problem = check_observations([turn.observation for turn in trajectory.turns[:-1]])
    if problem is not None:
        return problem
    answer = found[-1]
    letter = answer_option(answer.text, trajectory.options)
    if letter != trajectory.answer or trajectory.correct != (letter == trajectory.ground_truth):
        return "answer_mismatch", (f"the answer turn {answer.text!r:.60} reads as {letter!r}, but answer="
                                   f"{trajectory.answer!r} and correct={trajectory.correct}")
    if letter != trajectory.ground_truth and not checks.keep_wrong:
        return "wrong_answer", f"answered {letter!r}, the ground truth is {trajectory.ground_truth!r}"
    if trajectory.hinted and not checks.keep_hinted:
        return "hinted", "hinted: true"
    return None


def check_role_order(messages: object, tags: Mapping[str, str] | None = None) -> str | None:
    """Why LLaMA-Factory would skip this sharegpt sample ("Skipping this abnormal example"), or None to train it."""
    tags = {**SHAREGPT_DEFAULT_TAGS, **(tags or {})}
    role, content = tags["role_tag"], tags["content_tag"]
    if not isinstance(messages, list):
        return f"expected a list of messages, got {type(messages).__name__}"
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get(role), str) \
                or not isinstance(message.get(content), str):
            return f"message {position}: expected an object with string {role!r} and {content!r}"
    # LLaMA-Factory's SharegptDatasetConverter: an optional system message first, then messages alternate
    # between (user, observation) and (assistant, function_call), ending with the latter.
    start = 1 if messages and messages[0][role] == tags["system_tag"] else 0
    turns = (tags["user_tag"], tags["observation_tag"]), (tags["assistant_tag"], tags["function_tag"])
    for position, message in enumerate(messages[start:], start=start):
        allowed = turns[(position - start) % 2]
        if message[role] not in allowed:
            return f"message {position} is {message[role]!r} where LLaMA-Factory expects one of {list(allowed)}"
    # Its supervised processor then drops a sample without a prompt and a response.
    if len(messages) - start == 0 or (len(messages) - start) % 2:
        return (f"{len(messages) - start} messages after the system prompt; LLaMA-Factory expects an even number "
                "greater than 0, ending with the model's turn")
    return None
