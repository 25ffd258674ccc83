"""The action parser: one model turn to its thought and its one action, or a structured error.

A turn is `<think>...</think>` then exactly one `<tool>CALL</tool>` or `<answer>X</answer>`, where CALL
is `get_caption((h, m))`, `get_caption((h, m, l))` or `video_qa((h, m, l), "query")`. The call is read
by a small tokenizer and grammar (whitespace, trailing commas, list brackets and either quote are
fine); nothing is ever evaluated. The tools, rewards, dataset builders and evaluation all parse
through this module.
"""

from __future__ import annotations

import re
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Union

from tools.environment.answers import answer_option
from tools.environment.geometry import format_ids

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
TOOL_OPEN, TOOL_CLOSE = "<tool>", "</tool>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
ACTION_TAGS = (TOOL_OPEN, TOOL_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
# The strings generation stops at: a model turn ends with its action's close tag.
ACTION_STOPS = (TOOL_CLOSE, ANSWER_CLOSE)
# Every tag that delimits a model turn: text from the video (captions, VLM answers) never carries one.
TURN_TAGS = (THINK_OPEN, THINK_CLOSE, *ACTION_TAGS)
# Shown to the model inside observations, which never hold a literal action tag (tools/environment/README.md).
VALID_FORMS = (
    "Valid actions, each in a tool block: get_caption((h, m)) reads a medium caption, "
    "get_caption((h, m, l)) reads a low caption, "
    'video_qa((h, m, l), "question") asks about a low segment whose caption you have read; '
    "or an answer block holding one option letter."
)
_LEADING_SPACE = re.compile(r"\s*")
_BLOCK = {TOOL_OPEN: "tool block", ANSWER_OPEN: "answer block"}
MAX_CALL_CHARS = 4000
MAX_NESTING = 3
_TOKEN = re.compile(r"""\s*(?:(?P<name>[A-Za-z_]\w*)|(?P<int>[+-]?\d+)|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
                    r"""|(?P<punct>[()\[\],]))""", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
_QUOTE = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}


@dataclass(frozen=True)
class GetCaption:
    """Read the caption of a medium `(h, m)` or low `(h, m, l)` segment."""

    ids: tuple[int, ...]

    def render(self) -> str:
        """The call as the model writes it."""
        return f"get_caption({format_ids(self.ids)})"

    def to_dict(self) -> dict:
        """The JSON form stored in trajectory files."""
        return {"name": "get_caption", "ids": list(self.ids)}


@dataclass(frozen=True)
class VideoQA:
    """Ask the VLM `query` about the frames of low segment `ids`."""

    ids: tuple[int, int, int]
    query: str

    def render(self) -> str:
        """The call as the model writes it."""
        return f"video_qa({format_ids(self.ids)}, {_quote(self.query)})"

    def to_dict(self) -> dict:
        """The JSON form stored in trajectory files."""
        return {"name": "video_qa", "ids": list(self.ids), "query": self.query}


@dataclass(frozen=True)
class Answer:
    """The final answer; `letter` is the option it names as `answers.answer_option` reads it without the options."""

    text: str
    letter: str | None

    def render(self) -> str:
        """The answer as the model writes it."""
        return self.text

    def to_dict(self) -> dict:
        """The JSON form stored in trajectory files."""
        return {"name": "answer", "text": self.text, "letter": self.letter}


@dataclass(frozen=True)
class ParseError:
    """Why a turn or call could not be read; `message()` adds the valid forms for the model."""

    reason: str

    def message(self) -> str:
        """The reason followed by the list of valid actions."""
        return f"{self.reason}. {VALID_FORMS}"

    def to_dict(self) -> dict:
        """The JSON form stored in trajectory files."""
        return {"name": "error", "reason": self.reason}


Action = Union[GetCaption, VideoQA, Answer]  # noqa: UP007 (a runtime alias on Python 3.10)


# Not frozen: a frozen dataclass's __init__ costs a microsecond per field, and the reward builds one per turn.
@dataclass(slots=True)
class Turn:
    """One parsed model turn: its thought, its action or error, and format problems that did not stop it."""

    think: str | None
    action: Action | None
    error: ParseError | None
    problems: tuple[str, ...] = ()


def _quote(text: str) -> str:
    """`text` as a double-quoted string that `_unquote` reads back exactly (json.dumps' \\r, \\uXXXX are not read)."""
    return '"' + "".join(_QUOTE.get(char, char) for char in text) + '"'


def _unquote(token: str) -> str:
    """The value of a quoted string token, with backslash escapes resolved (never evaluated)."""
    body, out, i = token[1:-1], [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], "\\" + body[i + 1]))
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def _tokenize(text: str) -> list[tuple[str, object]] | ParseError:
    """The tokens of a call: (kind, value) pairs, or a ParseError at the first unreadable character."""
    tokens, position = [], 0
    while position < len(text):
        if text[position:].isspace():
            break
        match = _TOKEN.match(text, position)
        if match is None:
            start = len(text) - len(text[position:].lstrip())
            return ParseError(f"unexpected character {text[start]!r} at position {start} of the call")
        kind = match.lastgroup
        raw = match.group(kind)
        value = int(raw) if kind == "int" else _unquote(raw) if kind == "str" else raw
        tokens.append((kind, value))
        position = match.end()
    return tokens


class _Grammar:
    """A recursive-descent reader of `name(value, ...)` where a value is an int, a string or a group."""

    def __init__(self, tokens: list[tuple[str, object]]):
        self.tokens, self.position = tokens, 0

    def peek(self) -> tuple[str, object] | None:
        """The next token, or None at the end."""
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def expect(self, value: str) -> None:
        """Consume the punctuation `value` or stop with what was found instead."""
        token = self.peek()
        if token is None or token[1] != value or token[0] != "punct":
            found = "the end of the call" if token is None else repr(token[1])
            raise _Stop(f"expected {value!r} but found {found}")
        self.position += 1

    def values(self, close: str, depth: int) -> list:
        """Comma-separated values up to the bracket `close` (a trailing comma is fine)."""
        items = []
        while True:
            token = self.peek()
            if token == ("punct", close):
                self.position += 1
                return items
            items.append(self.value(depth))
            token = self.peek()
            if token == ("punct", ","):
                self.position += 1
            elif token != ("punct", close):
                self.expect(close)

    def value(self, depth: int):
        """One int, string or bracketed group."""
        token = self.peek()
        if token is None:
            raise _Stop("the call ends too early")
        kind, value = token
        self.position += 1
        if kind in ("int", "str"):
            return value
        if kind == "punct" and value in "([":
            if depth >= MAX_NESTING:
                raise _Stop("the arguments are nested too deeply")
            return tuple(self.values(")" if value == "(" else "]", depth + 1))
        raise _Stop(f"unexpected {value!r} in the arguments")


class _Stop(Exception):
    """Internal: the grammar stopped with a reason."""


def _ids(value: object, tool: str, lengths: tuple[int, ...]) -> tuple[int, ...] | ParseError:
    """Segment ids from a parsed argument, or a ParseError saying what was wrong with them."""
    shapes = " or ".join({2: "(h, m)", 3: "(h, m, l)"}[n] for n in lengths)
    if not isinstance(value, tuple):
        return ParseError(f"{tool} takes segment ids in parentheses, {shapes}, but got {value!r}")
    if not all(isinstance(v, int) for v in value):
        return ParseError(f"{tool} segment ids must be whole numbers, got {value!r}")
    if len(value) not in lengths:
        hint = "; the high-level captions are already in the question" if len(value) == 1 else ""
        return ParseError(f"{tool} takes {shapes}, but got {len(value)} id(s) {format_ids(value)}{hint}")
    if any(v < 1 for v in value):
        return ParseError(f"segment ids start at 1, got {format_ids(value)}")
    return value


# The form nearly every call takes, read without the tokenizer; anything else goes through the grammar.
_PLAIN_GET_CAPTION = re.compile(r"\s*get_caption\s*\(\s*\(\s*([1-9]\d*)\s*,\s*([1-9]\d*)\s*"
                                r"(?:,\s*([1-9]\d*)\s*)?\)\s*\)\s*")


# The parses of recent call bodies are kept (a rollout repeats calls, and GRPO scores 16 rollouts of each question)
# in at most this many bytes, bodies and results counted.
CALL_CACHE_BYTES = 4 * 1024 * 1024
# What an entry holds besides its body and text: the result object, its ids and the map's slot (an upper bound).
CACHE_ENTRY_OVERHEAD = 512


class _ByteBoundedCache:
    """A least-recently-used map from call bodies to their parse that never holds more than `limit` bytes."""

    def __init__(self, limit: int):
        self.limit, self.bytes = limit, 0
        self.entries: OrderedDict[str, tuple[GetCaption | VideoQA | ParseError, int]] = OrderedDict()
        # verl-tool serves a batch from several threads.
        self.lock = threading.Lock()

    def get(self, key: str) -> GetCaption | VideoQA | ParseError | None:
        """The cached parse of `key` (now the most recent), or None."""
        with self.lock:
            entry = self.entries.get(key)
            if entry is None:
                return None
            self.entries.move_to_end(key)
            return entry[0]

    def put(self, key: str, value: GetCaption | VideoQA | ParseError) -> None:
        """Keep `value` for `key`, dropping the least recent entries to stay within the limit."""
        text = value.query if isinstance(value, VideoQA) else value.reason if isinstance(value, ParseError) else ""
        size = sys.getsizeof(key) + sys.getsizeof(text) + CACHE_ENTRY_OVERHEAD
        with self.lock:
            if size > self.limit or key in self.entries:
                return
            self.entries[key] = (value, size)
            self.bytes += size
            while self.bytes > self.limit:
                self.bytes -= self.entries.popitem(last=False)[1][1]

    def clear(self) -> None:
        """Forget every entry."""
        with self.lock:
            self.entries.clear()
            self.bytes = 0


_CALL_CACHE = _ByteBoundedCache(CALL_CACHE_BYTES)


def parse_call(text: str) -> GetCaption | VideoQA | ParseError:
    """Parse the text inside `<tool>...</tool>` into a GetCaption or VideoQA, or a ParseError (cached by bytes)."""
    # A body longer than any call is refused on its length, cheaply, so it never takes room in the cache.
    if len(text) > MAX_CALL_CHARS:
        return _parse_call(text)
    cached = _CALL_CACHE.get(text)
    if cached is None:
        cached = _parse_call(text)
        _CALL_CACHE.put(text, cached)
    return cached


# As functools.lru_cache names it, for the benchmarks that time a cold cache.
parse_call.cache_clear = _CALL_CACHE.clear


def _parse_call(text: str) -> GetCaption | VideoQA | ParseError:
    """parse_call without the cache."""
    plain = _PLAIN_GET_CAPTION.fullmatch(text)
    if plain is not None:
        return GetCaption(tuple(int(value) for value in plain.groups() if value is not None))
    if len(text) > MAX_CALL_CHARS:
        return ParseError(f"the call is {len(text)} characters long; at most {MAX_CALL_CHARS} are allowed")
    head = _TOKEN.match(text)  # an unknown name is reported as such, even if what follows cannot be tokenized
    if head is not None and head.lastgroup == "name" and head.group("name") not in ("get_caption", "video_qa"):
        return ParseError(f"unknown tool {head.group('name')!r}: the tools are get_caption and video_qa")
    tokens = _tokenize(text)
    if isinstance(tokens, ParseError):
        return tokens
    if not tokens:
        return ParseError("the tool block is empty")
    name = tokens[0][1] if tokens[0][0] == "name" else None
    if name not in ("get_caption", "video_qa"):
        return ParseError(f"unknown tool {tokens[0][1]!r}: the tools are get_caption and video_qa")
    grammar = _Grammar(tokens)
    grammar.position = 1
    try:
        grammar.expect("(")
        args = grammar.values(")", 0)
        if grammar.peek() is not None:
            raise _Stop(f"unexpected {grammar.peek()[1]!r} after the closing parenthesis")
    except _Stop as stop:
        return ParseError(f"cannot read the {name} call: {stop}")
    if name == "get_caption":
        if len(args) != 1:
            return ParseError(f"get_caption takes one argument, the ids (h, m) or (h, m, l), but got {len(args)}: "
                              f"write get_caption((h, m))")
        ids = _ids(args[0], name, (2, 3))
        return ids if isinstance(ids, ParseError) else GetCaption(ids)
    if len(args) != 2 or not isinstance(args[1], str):
        return ParseError('video_qa takes two arguments, the ids (h, m, l) and a quoted question: '
                          'video_qa((h, m, l), "question")')
    ids = _ids(args[0], name, (3,))
    if isinstance(ids, ParseError):
        return ids
    if not args[1].strip():
        return ParseError("the video_qa question is empty")
    return VideoQA(ids, args[1].strip())


def _think(text: str, action_start: int) -> tuple[str | None, list[str]]:
    """The thought before the action and any problems with how it is written (index arithmetic, no copies)."""
    first = _LEADING_SPACE.match(text, 0, action_start).end()
    body_start = first + len(THINK_OPEN)
    close = text.find(THINK_CLOSE, body_start, action_start) if text.startswith(THINK_OPEN, first) else -1
    if close < 0 or body_start > action_start:
        return None, ["the turn must start with <think>...</think> before the action"]
    rest_start = close + len(THINK_CLOSE)
    problems = [] if _LEADING_SPACE.match(text, rest_start, action_start).end() == action_start else \
        ["text between </think> and the action is ignored"]
    return text[body_start:close].strip(), problems


def parse_turn(text: str) -> Turn:
    """Parse one model turn; never raises. Exactly one <tool> or <answer> must follow the thought."""
    think_end = text.find(THINK_CLOSE)
    region = think_end + len(THINK_CLOSE) if think_end >= 0 else 0
    tool_at, answer_at = text.find(TOOL_OPEN, region), text.find(ANSWER_OPEN, region)
    if tool_at < 0 and answer_at < 0:
        return Turn(None, None, ParseError("the turn has no action: end it with one tool block or one answer block"))
    if answer_at < 0 or 0 <= tool_at < answer_at:
        start, open_tag, close_tag = tool_at, TOOL_OPEN, TOOL_CLOSE
    else:
        start, open_tag, close_tag = answer_at, ANSWER_OPEN, ANSWER_CLOSE
    think, problems = _think(text, start)
    end = text.find(close_tag, start)
    if end < 0:
        return Turn(think, None, ParseError(f"the {_BLOCK[open_tag]} is not closed"), tuple(problems))
    body = text[start + len(open_tag):end]
    tail = text[end + len(close_tag):]
    if (TOOL_OPEN in body or TOOL_CLOSE in body or ANSWER_OPEN in body or ANSWER_CLOSE in body
            or TOOL_OPEN in tail or ANSWER_OPEN in tail):
        return Turn(think, None, ParseError("a turn holds exactly one action, but this one has more"),
                    tuple(problems))
    if tail and not tail.isspace():
        problems.append(f"text after the {_BLOCK[open_tag]} is ignored")
    if open_tag == ANSWER_OPEN:
        answer = body.strip()
        if not answer:
            return Turn(think, None, ParseError("the answer block is empty"), tuple(problems))
        return Turn(think, Answer(answer, answer_option(answer)), None, tuple(problems))
    call = parse_call(body)
    if isinstance(call, ParseError):
        return Turn(think, None, call, tuple(problems))
    return Turn(think, call, None, tuple(problems))
