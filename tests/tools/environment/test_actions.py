"""The action parser: valid and invalid turns, answer letters, render round trips and robustness."""

from __future__ import annotations

import builtins
import os
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tools.environment import actions
from tools.environment.actions import (
    ACTION_TAGS,
    CALL_CACHE_BYTES,
    MAX_CALL_CHARS,
    VALID_FORMS,
    Answer,
    GetCaption,
    ParseError,
    Turn,
    VideoQA,
    parse_call,
    parse_turn,
)
from tools.environment.answers import answer_option, letter_form

FAST = settings(deadline=None, max_examples=200)


def tool_turn(call: str, think: str = "t") -> str:
    """A well-formed model turn whose action is the tool call `call`."""
    return f"<think>{think}</think><tool>{call}</tool>"


VALID_TURNS = [
    ("medium", tool_turn("get_caption((2, 3))"), GetCaption((2, 3))),
    ("low", tool_turn("get_caption((2, 3, 1))"), GetCaption((2, 3, 1))),
    ("no-spaces", tool_turn("get_caption((2,3,1))"), GetCaption((2, 3, 1))),
    ("spaces-newlines", tool_turn(" \n get_caption ( ( 2 ,\n 3 ) )\n "), GetCaption((2, 3))),
    ("trailing-comma-in-ids", tool_turn("get_caption((2, 3,))"), GetCaption((2, 3))),
    ("trailing-comma-in-args", tool_turn("get_caption((2, 3),)"), GetCaption((2, 3))),
    ("list-brackets", tool_turn("get_caption([1, 2])"), GetCaption((1, 2))),
    ("list-brackets-low", tool_turn("get_caption([1,2,3])"), GetCaption((1, 2, 3))),
    ("large-ids-left-to-the-tool", tool_turn("get_caption((9, 12))"), GetCaption((9, 12))),
    ("qa-double-quotes", tool_turn('video_qa((1, 2, 3), "what colour is the car?")'),
     VideoQA((1, 2, 3), "what colour is the car?")),
    ("qa-single-quotes", tool_turn("video_qa((1, 2, 3), 'what colour is the car?')"),
     VideoQA((1, 2, 3), "what colour is the car?")),
    ("qa-list-ids", tool_turn('video_qa([4, 4, 4], "who?")'), VideoQA((4, 4, 4), "who?")),
    ("qa-escaped-double", tool_turn(r'video_qa((1, 2, 3), "he said \"hi\"")'), VideoQA((1, 2, 3), 'he said "hi"')),
    ("qa-escaped-single", tool_turn(r"video_qa((1, 2, 3), 'it\'s red')"), VideoQA((1, 2, 3), "it's red")),
    ("qa-single-inside-double", tool_turn('video_qa((1, 2, 3), "what\'s that?")'), VideoQA((1, 2, 3), "what's that?")),
    ("qa-double-inside-single", tool_turn("video_qa((1, 2, 3), 'a \"b\" c')"), VideoQA((1, 2, 3), 'a "b" c')),
    ("qa-escaped-newline-backslash", tool_turn(r'video_qa((1, 2, 3), "a\nb\\c")'), VideoQA((1, 2, 3), "a\nb\\c")),
    ("qa-unknown-escape-kept", tool_turn(r'video_qa((1, 2, 3), "C:\path")'), VideoQA((1, 2, 3), "C:\\path")),
    ("qa-unicode", tool_turn('video_qa((1, 2, 3), "¿Qué color? 猫 🐱")'), VideoQA((1, 2, 3), "¿Qué color? 猫 🐱")),
    ("qa-query-stripped", tool_turn('video_qa((1, 2, 3), "  padded  ")'), VideoQA((1, 2, 3), "padded")),
    ("qa-trailing-comma", tool_turn('video_qa((1, 2, 3), "q",)'), VideoQA((1, 2, 3), "q")),
    ("answer", "<think>t</think><answer>B</answer>", Answer("B", "B")),
    ("answer-bracketed", "<think>t</think><answer> (C) </answer>", Answer("(C)", "C")),
    ("answer-without-letter", "<think>t</think><answer>a dog</answer>", Answer("a dog", None)),
    ("leading-whitespace", "\n  <think>t</think>\n<answer>D</answer>\n", Answer("D", "D")),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in VALID_TURNS], ids=[c[0] for c in VALID_TURNS])
def test_valid_turn_parses_to_action(text: str, expected: object) -> None:
    """A well-formed turn yields its thought, the expected action, no error and no problems."""
    turn = parse_turn(text)
    assert turn == Turn("t", expected, None, ())


def test_action_tags_inside_think_are_not_actions() -> None:
    """Tags the model mentions while thinking do not count: only the block after </think> is read."""
    turn = parse_turn("<think>maybe <tool>get_caption((1, 1))</tool> or <answer>A</answer></think><answer>B</answer>")
    assert turn.action == Answer("B", "B")
    assert turn.error is None
    assert "get_caption((1, 1))" in turn.think


INVALID_TURNS = [
    ("high-level-id", tool_turn("get_caption((3))"), ("1 id(s)", "high-level captions")),
    ("high-level-id-tuple", tool_turn("get_caption((3,))"), ("1 id(s)", "high-level captions")),
    ("two-bare-ints", tool_turn("get_caption(1, 2)"), ("takes one argument", "got 2")),
    ("bare-int", tool_turn("get_caption(3)"), ("in parentheses",)),
    ("string-ids", tool_turn('get_caption("1, 2")'), ("in parentheses",)),
    ("non-int-id", tool_turn("get_caption((1, 'a'))"), ("whole numbers",)),
    ("zero-id", tool_turn("get_caption((0, 1))"), ("start at 1", "(0, 1)")),
    ("negative-id", tool_turn("get_caption((1, -2))"), ("start at 1",)),
    ("four-ids", tool_turn("get_caption((1, 2, 3, 4))"), ("4 id(s)",)),
    ("no-args", tool_turn("get_caption()"), ("takes one argument", "got 0")),
    ("qa-two-ids", tool_turn('video_qa((1, 2), "q")'), ("video_qa takes (h, m, l)", "2 id(s)")),
    ("qa-no-query", tool_turn("video_qa((1, 2, 3))"), ("two arguments",)),
    ("qa-int-query", tool_turn("video_qa((1, 2, 3), 5)"), ("two arguments",)),
    ("qa-empty-query", tool_turn('video_qa((1, 2, 3), "")'), ("question is empty",)),
    ("qa-blank-query", tool_turn('video_qa((1, 2, 3), "  \\n ")'), ("question is empty",)),
    ("unknown-tool", tool_turn("get_frames((1, 2))"), ("unknown tool 'get_frames'",)),
    ("unknown-tool-bad-tail", tool_turn("search(video; all)"), ("unknown tool 'search'",)),
    ("python-import", tool_turn("__import__('os').system('x')"), ("unknown tool '__import__'",)),
    ("starts-with-int", tool_turn("3"), ("unknown tool 3",)),
    ("empty-tool-block", tool_turn("  "), ("tool block is empty",)),
    ("missing-close-paren", tool_turn("get_caption((1, 2)"), ("expected ')'", "end of the call")),
    ("extra-close-paren", tool_turn("get_caption((1, 2)))"), ("after the closing parenthesis",)),
    ("no-open-paren", tool_turn("get_caption"), ("expected '('",)),
    ("bad-character", tool_turn("get_caption((1; 2))"), ("unexpected character ';'",)),
    ("unclosed-string", tool_turn('video_qa((1, 2, 3), "oops)'), ("unexpected character '\"'",)),
    ("name-as-argument", tool_turn("get_caption(h)"), ("unexpected 'h'",)),
    ("nesting-too-deep", tool_turn("get_caption(((((1, 2)))))"), ("nested too deeply",)),
    ("overly-long-call", tool_turn("get_caption((1, 2" + ", 1" * MAX_CALL_CHARS + "))"),
     (f"at most {MAX_CALL_CHARS}",)),
    ("unclosed-tool", "<think>t</think><tool>get_caption((1, 2))", ("tool block is not closed",)),
    ("unclosed-answer", "<think>t</think><answer>B", ("answer block is not closed",)),
    ("two-tools", "<think>t</think><tool>get_caption((1, 2))</tool><tool>get_caption((1, 3))</tool>",
     ("exactly one action",)),
    ("tool-then-answer", "<think>t</think><tool>get_caption((1, 2))</tool><answer>B</answer>",
     ("exactly one action",)),
    ("answer-then-tool", "<think>t</think><answer>B</answer><tool>get_caption((1, 2))</tool>",
     ("exactly one action",)),
    ("answer-inside-tool", "<think>t</think><tool>get_caption((1, 2))<answer>B</answer></tool>",
     ("exactly one action",)),
    ("no-action", "<think>I am not sure yet.</think>", ("no action",)),
    ("empty-turn", "", ("no action",)),
    ("empty-answer", "<think>t</think><answer>  </answer>", ("answer block is empty",)),
]


@pytest.mark.parametrize(("text", "phrases"), [case[1:] for case in INVALID_TURNS],
                         ids=[case[0] for case in INVALID_TURNS])
def test_invalid_turn_gives_parse_error_with_reason(text: str, phrases: tuple[str, ...]) -> None:
    """An invalid turn yields no action and a ParseError whose reason says what is wrong, without action tags."""
    turn = parse_turn(text)
    assert turn.action is None
    assert isinstance(turn.error, ParseError)
    for phrase in phrases:
        assert phrase in turn.error.reason
    message = turn.error.message()
    assert message.startswith(turn.error.reason)
    assert VALID_FORMS in message
    assert not any(tag in message for tag in ACTION_TAGS)
    assert turn.error.to_dict() == {"name": "error", "reason": turn.error.reason}


def test_python_in_a_tool_block_is_never_executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`__import__('os').system(...)` is an unknown tool: no command runs and nothing is evaluated."""
    marker = tmp_path / "pwned"
    calls: list[tuple] = []

    def record(name: str):
        """A stand-in for `name` that records its calls instead of running anything."""
        def recorder(*args: object, **kwargs: object) -> None:
            """Record the call to `name` with its positional arguments, and do nothing else."""
            calls.append((name, args))
        return recorder

    call = f"__import__('os').system('touch {marker}')"
    with monkeypatch.context() as patch:
        patch.setattr(os, "system", record("os.system"))
        patch.setattr(builtins, "eval", record("eval"))
        patch.setattr(builtins, "exec", record("exec"))
        turn = parse_turn(tool_turn(call))
        direct = parse_call(call)
    assert calls == []
    assert not marker.exists()
    assert turn.action is None and "unknown tool '__import__'" in turn.error.reason
    assert isinstance(direct, ParseError)


def retained_bytes(bodies: object) -> int:
    """How many bytes stay allocated after parsing each body (each built, parsed and dropped in turn), cold cache."""
    parse_call.cache_clear()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for body in bodies:
            parse_call(body)
            # Only the cache may keep a body alive.
            del body
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        parse_call.cache_clear()


def test_the_call_cache_stays_within_its_byte_bound() -> None:
    """600 distinct 16 KB bodies (10 MB) leave at most CALL_CACHE_BYTES in the cache, counted and measured."""
    # Non-ASCII text makes each character 4 bytes: the costliest body the cache accepts (refused at its name, fast).
    def bodies() -> object:
        return (f"search({index}" + "\N{GRINNING FACE}" * (MAX_CALL_CHARS - 20) for index in range(600))

    assert retained_bytes(bodies()) <= CALL_CACHE_BYTES
    cache = actions._CALL_CACHE
    for body in bodies():
        parse_call(body)
        assert cache.bytes <= CALL_CACHE_BYTES
    assert sum(sys.getsizeof(key) for key in cache.entries) <= cache.bytes
    assert 0 < len(cache.entries) < 600


def test_bodies_longer_than_any_call_take_no_cache_room() -> None:
    """Forty distinct 1 MB bodies (the old cache kept every one) leave next to nothing allocated."""
    bodies = (f"get_caption((1, 2)){' ' * (1 << 20)}{index}" for index in range(40))
    assert retained_bytes(bodies) < 1 << 20


def test_cache_hits_return_the_same_result() -> None:
    """A cached parse is the very object the first parse returned, equal to a parse from a cold cache."""
    parse_call.cache_clear()
    calls = ['video_qa((1, 2, 3), "who?")', "get_caption((1, 2),)", "search(x)", "get_caption((1, 2))"]
    first = [parse_call(call) for call in calls]
    assert all(parse_call(call) is result for call, result in zip(calls, first, strict=True))
    parse_call.cache_clear()
    assert [parse_call(call) for call in calls] == first


@pytest.mark.parametrize(("text", "action", "phrase"), [
    ("<tool>get_caption((1, 2))</tool>", GetCaption((1, 2)), "must start with <think>"),
    ("I will look.<think>t</think><answer>B</answer>", Answer("B", "B"), "must start with <think>"),
    ("<think>unclosed thought <answer>B</answer>", Answer("B", "B"), "must start with <think>"),
    ("<think>t</think><answer>B</answer> thanks!", Answer("B", "B"), "text after the answer block is ignored"),
    ("<think>t</think><tool>get_caption((1, 2))</tool>\nmore", GetCaption((1, 2)),
     "text after the tool block is ignored"),
    ("<think>t</think> so: <answer>B</answer>", Answer("B", "B"), "between </think> and the action"),
], ids=["no-think", "text-before-think", "think-not-closed", "text-after-answer", "text-after-tool",
        "text-between"])
def test_format_problems_do_not_stop_the_action(text: str, action: object, phrase: str) -> None:
    """Missing <think> or stray text is reported as a problem while the action still parses."""
    turn = parse_turn(text)
    assert turn.action == action
    assert turn.error is None
    assert any(phrase in problem for problem in turn.problems)


def test_missing_think_leaves_no_thought() -> None:
    """Without a <think> block the turn's thought is None."""
    assert parse_turn("<answer>A</answer>").think is None


@pytest.mark.parametrize(("text", "letter"), [
    ("B", "B"),
    ("B.", "B"),
    ("(B)", "B"),
    ("[B]", "B"),
    (" B ", "B"),
    ("B. a dog", "B"),
    ("B) a dog", "B"),
    ("Option C", "C"),
    ("option C", "C"),
    ("Answer: C", "C"),
    ("the answer is: D", "D"),
    ("The answer is D", "D"),
    ("a dog", None),
    ("AB", None),
    ("b", "B"),
    ("", None),
    ("(dog)", None),
    ("I think B", None),
    ("B a dog", None),
    ("B, a dog", "B"),
    ("B, or maybe C", None),
    ("A. red car", "A"),
    ("A red car", None),
], ids=["bare", "dot", "parens", "brackets", "spaces", "dot-text", "paren-text", "Option", "option-lower",
        "Answer-colon", "the-answer-is-colon", "The-answer-is", "text-only", "two-letters", "lowercase", "empty",
        "paren-word", "sentence", "letter-then-word", "comma-text", "hedge-after-comma",
        "A-dot-text", "article"])
def test_letter_form(text: str, letter: str | None) -> None:
    """The option letter is read from the usual answer spellings, and None when there is no single letter."""
    assert letter_form(text) == letter


@pytest.mark.parametrize("text", ["B", "(C)", "Answer: B or C", "A and B", "Answer: (A), (C)", "a dog", "Z",
                                  "I think B"])
def test_stored_letter_is_the_readers_reading(text: str) -> None:
    """Answer.letter, written into every trajectory, is answers.answer_option's reading (without the options)."""
    turn = parse_turn(f"<think>t</think><answer>{text}</answer>")
    assert turn.action.letter == answer_option(text)
    assert parse_turn("<think>t</think><answer>Answer: B or C</answer>").action.letter is None


IDS = st.tuples(st.integers(1, 8), st.integers(1, 8)) | st.tuples(st.integers(1, 8), st.integers(1, 8),
                                                                    st.integers(1, 8))
LOW_IDS = st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(1, 8))
QUERIES = st.text(min_size=1).map(str.strip).filter(bool)
ACTIONS = st.builds(GetCaption, IDS) | st.builds(VideoQA, LOW_IDS, QUERIES)


@FAST
@given(ACTIONS)
@example(VideoQA((1, 2, 3), "cr\rbell\x07quote\"back\\slash\\n tab\t it's \\u0041"))
def test_render_round_trips_through_parse_call(action: GetCaption | VideoQA) -> None:
    """parse_call(action.render()) == action for any valid call, whatever characters the query holds."""
    assert parse_call(action.render()) == action


@FAST
@given(ACTIONS.filter(lambda action: not any(tag in action.render() for tag in ACTION_TAGS)))
def test_rendered_action_round_trips_through_a_turn(action: GetCaption | VideoQA) -> None:
    """A turn written with render() parses back to the same action with no problems."""
    assert parse_turn(tool_turn(action.render())) == Turn("t", action, None, ())


FRAGMENTS = ["<think>", "</think>", "<tool>", "</tool>", "<answer>", "</answer>", "get_caption(", "video_qa(",
             "((", "(", ")", "[", "]", "1", "9", "-1", ",", " ", "\n", '"', "'", "\\", "\\\\", "x", "B", "é"]
FRAGMENT_TEXT = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)


def _check_turn(turn: Turn) -> None:
    """Invariants of any parse result: exactly one of action and error, and errors free of action tags."""
    assert isinstance(turn, Turn)
    assert (turn.action is None) != (turn.error is None)
    if turn.error is not None:
        assert turn.error.reason
        assert not any(tag in turn.error.message() for tag in ACTION_TAGS)


@FAST
@given(st.text())
def test_parse_turn_never_raises_on_arbitrary_text(text: str) -> None:
    """parse_turn returns a Turn for any text at all."""
    _check_turn(parse_turn(text))


@FAST
@given(FRAGMENT_TEXT)
def test_parse_turn_never_raises_on_tag_and_call_fragments(text: str) -> None:
    """parse_turn returns a Turn for any mix of tags and call fragments, also wrapped as a tool block."""
    _check_turn(parse_turn(text))
    _check_turn(parse_turn(tool_turn(text)))
    assert isinstance(parse_call(text), GetCaption | VideoQA | ParseError)


def test_valid_forms_hold_no_action_tags() -> None:
    """VALID_FORMS, shown inside observations, names every form without a literal action tag."""
    assert not any(tag in VALID_FORMS for tag in ACTION_TAGS)
    for form in ("get_caption((h, m))", "get_caption((h, m, l))", 'video_qa((h, m, l), "question")'):
        assert form in VALID_FORMS


@pytest.mark.parametrize(("action", "expected"), [
    (GetCaption((2, 3)), {"name": "get_caption", "ids": [2, 3]}),
    (VideoQA((1, 2, 3), "q"), {"name": "video_qa", "ids": [1, 2, 3], "query": "q"}),
    (Answer("(B)", "B"), {"name": "answer", "text": "(B)", "letter": "B"}),
], ids=["get_caption", "video_qa", "answer"])
def test_to_dict_structured_form(action: object, expected: dict) -> None:
    """Actions serialise to the structured form stored in trajectory files."""
    assert action.to_dict() == expected
