"""The agent loop: a model plays one question through the navigation environment, turn by turn, as RL rolls out.

The model sees the system prompt and the first user turn of the RL row, then after each action the
tool's observation as a new user turn, exactly as verl-tool's multi-turn rollout builds the sequence:
generation stops at `</tool>` or `</answer>` (kept in the text), a turn that stops on one of them
goes to the tool (an answer ends the episode, anything unreadable gets the tool's explanation), a
turn that ends without one ends the episode, and after `agent.max_turns` tool calls the model has
one more turn, which no tool serves. Teacher trajectories and evaluation both play through here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tools.environment import geometry
from tools.environment.actions import (
    ACTION_STOPS,
    ANSWER_CLOSE,
    ANSWER_OPEN,
    THINK_CLOSE,
    TOOL_CLOSE,
    TOOL_OPEN,
    parse_turn,
)
from tools.environment.answers import answer_option
from tools.environment.intervals import overlaps
from tools.environment.navigation import NavigationEnv
from tools.environment.trajectory import Trajectory, TrajectoryTurn
from tools.environment.vlm_client import Completion, VLMError

# Timing keys of a trajectory: seconds waiting for the model, for each tool, and for the whole question.
TIMING_KEYS = ("model_s", "get_caption_s", "video_qa_s", "total_s")


class QuestionFailed(Exception):
    """A question that could not be played to its end; `kind` says why (VLMError kinds, or `deadline`)."""

    def __init__(self, kind: str, message: str, turns: int) -> None:
        super().__init__(message)
        self.kind, self.turns = kind, turns


@dataclass(frozen=True)
class PromptRow:
    """One question as the RL parquet holds it: its prompt messages, ground truth and `extra_info`."""

    id: str
    data_source: str
    # The system prompt and the first user turn.
    messages: tuple[dict, dict]
    ground_truth: str
    extra_info: dict
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    """How the model is asked for one turn: sampling, and how the endpoint handles stop strings."""

    # Every value comes from the stage's config (configs/eval, configs/trajectories); none is defaulted here.
    max_turns: int
    top_p: float
    # Send `stop` (OpenAI's reasoning models refuse it; the reply is then cut at the first action close tag).
    send_stop: bool
    # vLLM's `include_stop_str_in_output`, so the reply ends on the stop string as in the RL rollout.
    vllm_stop: bool
    # Wall-clock seconds one question may take, every turn included.
    question_timeout_s: float
    # Extra request fields for every call, e.g. {"reasoning_effort": "high"}.
    extra_body: dict = field(default_factory=dict)

    def request(self) -> dict[str, Any]:
        """The request fields of every generation call."""
        extra = dict(self.extra_body)
        params: dict[str, Any] = {"top_p": self.top_p}
        if self.send_stop:
            params["stop"] = list(ACTION_STOPS)
        if self.vllm_stop:
            extra["include_stop_str_in_output"] = True
        if extra:
            params["extra_body"] = extra
        return params


def action_text(reply: Completion, restore: bool = True) -> tuple[str, bool]:
    """The model turn as the rollout keeps it, and whether it ended on an action stop string.

    The text is cut after the first `</tool>` or `</answer>`. An endpoint that drops the stop string
    it stopped at leaves an open `<tool>` or `<answer>` block at the end: with `restore`, its close
    tag is put back. Without it (vLLM keeps the stop string), an open block means the model ended
    there, and the turn is not an action, as in the RL rollout.
    """
    text = reply.text
    ends = [(text.find(stop), stop) for stop in ACTION_STOPS if stop in text]
    if ends:
        position, stop = min(ends)
        return text[:position + len(stop)], True
    if reply.finish_reason != "stop" or not restore:
        return text, False
    region = text[max(text.find(THINK_CLOSE), 0):]
    opened = max((region.rfind(TOOL_OPEN), TOOL_CLOSE), (region.rfind(ANSWER_OPEN), ANSWER_CLOSE))
    if opened[0] >= 0:
        return text + opened[1], True
    return text, False


def clue_segments(extra_info: dict) -> list[tuple[int, ...]]:
    """The low segments that overlap the question's clue intervals (what a hint points the teacher to)."""
    width, duration = int(extra_info["width"]), float(extra_info["duration"])
    clues = [tuple(interval) for interval in extra_info.get("clue_intervals") or []]
    return [segment.ids for segment in geometry.segments(width, duration, levels=(3,))
            if overlaps(segment.start, segment.end, clues)]


def hint_text(extra_info: dict) -> str:
    """The hint a teacher may be given: where the clues are, never the answer."""
    segments = ", ".join(geometry.format_ids(ids) for ids in clue_segments(extra_info))
    return f"\nHint: the evidence is in the low segments {segments}." if segments else ""


class AgentLoop:
    """Plays questions with one model client over one navigation environment; safe to share between threads."""

    def __init__(self, env: NavigationEnv, client, generation: Generation,
                 system_prompt: Callable[[dict], str] | None = None) -> None:
        self.env, self.client, self.generation = env, client, generation
        # A user-given system prompt (the released checkpoint's), else the question's own.
        self.system_prompt = system_prompt

    def opening(self, question: PromptRow, hinted: bool = False) -> list[dict]:
        """The first two messages the model reads."""
        system, user = (dict(message) for message in question.messages)
        if self.system_prompt is not None:
            system["content"] = self.system_prompt(question.extra_info)
        if hinted:
            user["content"] += hint_text(question.extra_info)
        return [system, user]

    def play(self, question: PromptRow, hinted: bool = False) -> Trajectory:
        """The trajectory of one episode; QuestionFailed when the model endpoint fails or time runs out."""
        trajectory_id = f"{question.id}#{uuid.uuid4().hex[:8]}"
        try:
            return self._play(question, trajectory_id, hinted)
        finally:
            self.env.end(trajectory_id)

    def _play(self, question: PromptRow, trajectory_id: str, hinted: bool) -> Trajectory:
        """The episode's turns, as `play` describes them."""
        started = time.monotonic()
        deadline = started + self.generation.question_timeout_s
        messages = self.opening(question, hinted)
        timings = dict.fromkeys(TIMING_KEYS, 0.0)
        tokens = {"prompt": 0, "completion": 0}
        turns: list[TrajectoryTurn] = []
        request = self.generation.request()
        for step in range(self.generation.max_turns + 1):
            if time.monotonic() > deadline:
                limit = self.generation.question_timeout_s
                raise QuestionFailed("deadline", f"question {question.id} took over {limit:g} s "
                                     f"({len(turns)} turns played)", len(turns))
            asked = time.monotonic()
            try:
                reply = self.client.complete(messages, allow_empty=True, **request)
            except VLMError as error:
                raise QuestionFailed(error.kind, str(error), len(turns)) from None
            finally:
                timings["model_s"] += time.monotonic() - asked
            tokens["prompt"] += reply.prompt_tokens
            tokens["completion"] += reply.completion_tokens
            text, stopped = action_text(reply, restore=not self.generation.vllm_stop)
            if not stopped or step == self.generation.max_turns:
                # No tool sees this turn: it ended without an action, or the tool budget is spent.
                turns.append(self._unserved(text))
                break
            served = time.monotonic()
            observation = self.env.step(trajectory_id, text, question.extra_info, question.data_source)
            if observation.kind in ("caption", "video_qa"):
                timings[f"{'get_caption' if observation.kind == 'caption' else 'video_qa'}_s"] += \
                    time.monotonic() - served
            turns.append(TrajectoryTurn(text, observation.action, observation.text, observation.valid))
            if observation.done:
                break
            messages += [{"role": "assistant", "content": text}, {"role": "user", "content": observation.text}]
        timings["total_s"] = time.monotonic() - started
        return self._trajectory(question, turns, hinted, timings, tokens)

    @staticmethod
    def _unserved(text: str) -> TrajectoryTurn:
        """A turn no tool served: an answer stays valid, anything else is recorded with its parse."""
        parsed = parse_turn(text)
        if parsed.action is not None:
            action = parsed.action.to_dict()
        else:
            action = parsed.error.to_dict()
        return TrajectoryTurn(text, action, "", action["name"] == "answer")

    @staticmethod
    def _trajectory(question: PromptRow, turns: list[TrajectoryTurn], hinted: bool,
                    timings: dict[str, float], tokens: dict[str, int]) -> Trajectory:
        """The Trajectory record: the answer is the last turn's, read as the reward reads it; none is wrong."""
        info = question.extra_info
        options = tuple(info["options"])
        last = turns[-1].action if turns else {}
        answer = answer_option(last["text"], options) if last.get("name") == "answer" else None
        return Trajectory(
            id=question.id, data_source=question.data_source, video_uid=info["video_uid"],
            question=info["question"], options=options, ground_truth=question.ground_truth,
            width=int(info["width"]), duration=float(info["duration"]),
            clue_intervals=tuple(tuple(interval) for interval in info.get("clue_intervals") or ()),
            turns=tuple(turns), answer=answer, correct=answer == question.ground_truth, hinted=hinted,
            timings={key: round(value, 4) for key, value in timings.items()}, tokens=tokens)

