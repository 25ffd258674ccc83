"""Every text the agent reads: the system prompt, the first user turn and each tool's observation.

Built only here, so that SFT data, RL parquet and evaluation are byte-identical for the same
question. Observations never contain a literal `<tool>`, `</tool>`, `<answer>` or `</answer>`: the
reward reads rollouts with observations inline and splits turns on those tags (tools/environment/README.md). Nor do
they contain `<think>` or `</think>`, so a model turn starts at the first `<think>` after an
observation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tools.environment import geometry
from tools.environment.actions import TURN_TAGS, VALID_FORMS
from tools.environment.answers import LETTERS
from tools.environment.caption_tree import CaptionTree

# How a turn tag is spelled when it turns up inside observation text (a caption, a VLM answer).
_DEFUSED = {tag: tag.replace("<", "[").replace(">", "]") for tag in TURN_TAGS}
# How a tool-failure observation starts and how its reason ends.
_FAILED, _FAILURE_END = "The tool failed: ", ". Try another action or answer."
_INVALID, _INFORMATION = "Invalid action: ", "<information>"
# How each kind of observation starts: a failure, a VLM answer, a caption of each level, a refusal.
_OPENINGS = re.compile("|".join(re.escape(opening) for opening in (
    _FAILED, _INFORMATION, *(f"{name.capitalize()} caption (" for name in geometry.LEVEL_NAMES), _INVALID)))


def system_prompt(max_turns: int) -> str:
    """The system prompt: the caption tree, the two tools, the answer format and the tool-call budget."""
    return (
        "You answer a multiple-choice question about a long video without watching it. The video is "
        "summarised by a caption tree: it is split into w high-level segments, each high segment into w "
        "medium segments and each medium segment into w low segments, where the width w is given with "
        "the question. Segments are named by 1-based ids: (h,) high, (h, m) medium, (h, m, l) low. You "
        "are given every high-level caption; read finer ones only where the answer is likely to be.\n"
        "In every turn, first think inside <think>...</think>, then take exactly one action:\n"
        "- <tool>get_caption((h, m))</tool> returns the caption of medium segment (h, m);\n"
        "- <tool>get_caption((h, m, l))</tool> returns the caption of low segment (h, m, l);\n"
        '- <tool>video_qa((h, m, l), "question")</tool> asks a vision model the question about the '
        "frames of low segment (h, m, l), whose caption you must have read first; its reply comes "
        "inside <information>...</information>;\n"
        "- <answer>X</answer> ends the episode with the letter X of the option you choose.\n"
        f"You may use at most {max_turns} tool calls. Each tool call costs time, so stop and answer as "
        "soon as you know enough."
    )


def format_seconds(seconds: float) -> str:
    """A time as the prompts write it: seconds with one decimal, e.g. `843.8s`."""
    return f"{seconds:.1f}s"


def format_range(start: float, end: float) -> str:
    """A time range as the prompts write it: `[843.8s-1687.5s]`."""
    return f"[{format_seconds(start)}-{format_seconds(end)}]"


def defuse_action_tags(text: str) -> str:
    """`text` with any action or think tag respelled in brackets, so it cannot end or fake a turn."""
    for tag, spelled in _DEFUSED.items():
        text = text.replace(tag, spelled)
    return text


def options_block(options: Sequence[str]) -> str:
    """The lettered options, one per line: `A. text`."""
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"a question needs 2 to {len(LETTERS)} options, got {len(options)}")
    return "\n".join(f"{LETTERS[i]}. {defuse_action_tags(option)}" for i, option in enumerate(options))


def first_user_turn(question: str, options: Sequence[str], duration: float, tree: CaptionTree) -> str:
    """The first user turn: question, lettered options, duration, width and every high-level caption."""
    width = tree.width
    highs = "\n".join(
        f"({h},) {format_range(*geometry.time_range((h,), width, duration))}: {defuse_action_tags(caption)}"
        for h, caption in enumerate(tree.high_captions(), start=1)
    )
    return (
        f"Question: {defuse_action_tags(question)}\n"
        f"Options:\n{options_block(options)}\n"
        f"The video lasts {format_seconds(duration)}. Its caption tree has width {width}: "
        f"{width} high, {width ** 2} medium and {width ** 3} low segments.\n"
        f"High-level captions:\n{highs}"
    )


def caption_observation(ids: tuple[int, ...], width: int, duration: float, caption: str) -> str:
    """What get_caption returns: the level, the ids, the time range and the caption."""
    start, end = geometry.time_range(ids, width, duration)
    title = geometry.level_name(ids).capitalize()
    return f"{title} caption {geometry.format_ids(ids)} {format_range(start, end)}: {defuse_action_tags(caption)}"


def video_qa_observation(answer: str) -> str:
    """What video_qa returns: the vision model's answer inside <information>...</information>."""
    # The answer cannot close its own block early either.
    answer = answer.strip().replace("<information>", "[information]").replace("</information>", "[/information]")
    return f"{_INFORMATION}{defuse_action_tags(answer)}</information>"


def error_observation(reason: str, show_forms: bool = True) -> str:
    """An invalid action's observation: what was wrong and, by default, the valid actions."""
    text = f"{_INVALID}{reason}."
    if show_forms:
        text += f" {VALID_FORMS}"
    return defuse_action_tags(text)


def tool_failure_observation(reason: str) -> str:
    """A valid action the tool could not serve (a missing video, an unreachable vision model)."""
    return defuse_action_tags(f"{_FAILED}{reason}. Try another action or answer.")


def tool_failure_reason(text: str) -> str | None:
    """The reason of the tool-failure observation in `text` (maybe inside chat role text), else None.

    Every observation starts with its kind's opening words, and a caption or a VLM answer comes
    after them, so the first opening found in `text` is the observation's own start.
    """
    # Most observations hold no failure notice at all, and `in` tells so fastest.
    match = _OPENINGS.search(text) if _FAILED in text else None
    if match is None or match.group() != _FAILED:
        return None
    end = text.find(_FAILURE_END, match.end())
    return text[match.end():end if end >= 0 else len(text)]


def vlm_question(query: str, start: float, end: float) -> str:
    """The text sent to the VLM with a leaf's frames: where the frames come from, then the agent's question."""
    return (f"These frames are sampled uniformly from the video between {format_seconds(start)} and "
            f"{format_seconds(end)}, in order. Answer the question about them concisely and factually.\n"
            f"Question: {query}")
