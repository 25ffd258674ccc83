"""The serve rule: which tool calls the navigation tool serves, refuses or fails to serve, written once.

`NavigationEnv.step` applies it to every call, carrying the call out for real; the reward replays it on
a decoded rollout (`rewards.rollout.judge_rollout`), reading each call's outcome from the observation
that follows it. Both pass their own `perform`; the rule around it is this one function, so a rollout
is scored on exactly the calls, and hence the time ranges (`geometry.time_range`), the tool served.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from tools.environment import geometry
from tools.environment.actions import GetCaption, VideoQA

# The three outcomes of a call (an answer is not a call).
SERVED, REFUSED, FAILED = "served", "refused", "failed"


class ToolFailure(Exception):
    """A call the rule lets through that the tool could not carry out; the message says why."""


# Not frozen: a frozen dataclass's __init__ costs a microsecond per field, and the reward builds one per call.
@dataclass(slots=True)
class CallOutcome:
    """What became of one call: its outcome, why when not served, and what serving it returned and unlocked."""

    outcome: str
    # Why the call was refused or failed; None when served.
    reason: str | None = None
    # What `perform` returned (the environment's observation text); None unless served.
    reply: str | None = None
    # The leaf a served low caption unlocks for video_qa; None otherwise.
    unlocks: tuple[int, ...] | None = None

    @property
    def served(self) -> bool:
        """Whether the tool served the call (its time range counts as visited)."""
        return self.outcome == SERVED


def refusal(action: GetCaption | VideoQA, width: int, read_leaves: Collection[tuple[int, ...]]) -> str | None:
    """Why the tool refuses `action` at `width` given the low captions read so far, or None if it may serve it."""
    try:
        geometry.check_ids(action.ids, width)
    except geometry.GeometryError as error:
        return f"{action.render()}: {error}"
    if isinstance(action, VideoQA) and action.ids not in read_leaves:
        ids = geometry.format_ids(action.ids)
        return f"video_qa on {ids} is only allowed after reading its caption: call get_caption({ids}) first"
    return None


def serve_call(action: GetCaption | VideoQA, width: int, read_leaves: Collection[tuple[int, ...]],
               perform: Callable[[], str]) -> CallOutcome:
    """The outcome of one call: refused by the rule, else `perform()` serves it or raises ToolFailure.

    A call is refused (the model's mistake) when its ids are out of range at `width` or it is a
    video_qa on a leaf whose caption was not read earlier in the same trajectory; the tool then does
    nothing. A call the rule lets through whose tool fails (the VLM errs, times out or is unreachable,
    the frames or the video cannot be read, the caption tree is missing) has FAILED: it is not served,
    so its segment is not visited, a video_qa costs no video_qa penalty and asking again is no repeat,
    but it is no mistake of the model either, so it is not an invalid turn; it still took a turn, so it
    counts as a tool call, and a low caption read before stays read, so the model may ask again.
    The environment answers it with the tool-failure notice (kind `tool_error`, valid False: nothing
    was served), and the reward, reading that notice, judges the turn valid but failed.
    Only a served low caption unlocks its leaf for video_qa; the caller remembers `unlocks`.
    """
    reason = refusal(action, width, read_leaves)
    if reason is not None:
        return CallOutcome(REFUSED, reason)
    try:
        reply = perform()
    except ToolFailure as failure:
        return CallOutcome(FAILED, str(failure))
    low_caption = isinstance(action, GetCaption) and geometry.level_of(action.ids) == geometry.LEAF_LEVEL
    return CallOutcome(SERVED, reply=reply, unlocks=action.ids if low_caption else None)
