"""The trajectory JSONL schema (tools/environment/README.md): one navigation episode per line, as the agent played it.

Teacher trajectories and evaluation write it; the SFT data builder and `compare` read it. The first
user turn is not stored: the prompt builder rebuilds it from the question fields and the caption
tree. `trajectory_from_dict` checks every field and raises TrajectoryError naming the field;
`read_trajectories` adds the file and line number, and raises it for a line that is not UTF-8.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tools.environment.prompts import LETTERS

FIELDS = ("id", "data_source", "video_uid", "question", "options", "ground_truth", "width", "duration",
          "clue_intervals", "turns", "answer", "correct", "hinted", "timings", "tokens")
TURN_FIELDS = ("model", "action", "observation", "valid")


class TrajectoryError(ValueError):
    """A trajectory that does not follow the schema; the message names the field and what was expected."""


@dataclass(frozen=True)
class TrajectoryTurn:
    """One model turn: its text verbatim, the parsed action, the tool's reply, and whether the tool served it."""

    model: str
    action: dict
    observation: str
    valid: bool


@dataclass(frozen=True)
class Trajectory:
    """One question and the turns an agent took on it, with the outcome and its costs."""

    id: str
    data_source: str
    video_uid: str
    question: str
    options: tuple[str, ...]
    ground_truth: str
    width: int
    duration: float
    clue_intervals: tuple[tuple[float, float], ...]
    turns: tuple[TrajectoryTurn, ...]
    answer: str | None
    correct: bool
    hinted: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)

    def tool_calls(self) -> int:
        """The number of tool-call turns (the answer turn is not counted, as `agent.max_turns` counts)."""
        return sum(1 for turn in self.turns if turn.action.get("name") != "answer")

    def to_dict(self) -> dict:
        """The JSON object of one JSONL line."""
        data = asdict(self)
        data["options"] = list(self.options)
        data["clue_intervals"] = [list(interval) for interval in self.clue_intervals]
        data["turns"] = [asdict(turn) for turn in self.turns]
        return data


def _require(data: Mapping, key: str, kind: type | tuple[type, ...], expected: str, where: str = "") -> Any:
    """`data[key]` if present and of `kind` (bool is never a number), else TrajectoryError naming `where+key`."""
    if key not in data:
        raise TrajectoryError(f"missing field {where}{key} ({expected})")
    value = data[key]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise TrajectoryError(f"field {where}{key}={value!r}: expected {expected}")
    if not isinstance(value, kind):
        raise TrajectoryError(f"field {where}{key}={value!r:.80}: expected {expected}")
    return value


def _non_empty(data: Mapping, key: str) -> str:
    """A non-empty string field."""
    value = _require(data, key, str, "a non-empty string")
    if not value.strip():
        raise TrajectoryError(f"field {key} is empty: expected a non-empty string")
    return value


def _options(data: Mapping) -> tuple[str, ...]:
    """The option texts: 2 to 26 non-empty strings."""
    options = _require(data, "options", list, "a list of option texts")
    if not 2 <= len(options) <= len(LETTERS) or not all(isinstance(o, str) and o.strip() for o in options):
        raise TrajectoryError(f"field options={options!r:.80}: expected 2 to {len(LETTERS)} non-empty strings")
    return tuple(options)


def _letter(data: Mapping, key: str, options: tuple[str, ...], nullable: bool = False) -> str | None:
    """An option letter in range of the options (or None where allowed)."""
    value = data.get(key, ...)
    if value is None and nullable:
        return None
    allowed = LETTERS[:len(options)]
    if not isinstance(value, str) or value not in allowed:
        nothing = " or null" if nullable else ""
        shown = "missing" if value is ... else repr(value)
        raise TrajectoryError(f"field {key}={shown}: expected one of the option letters {', '.join(allowed)}{nothing}")
    return value


def _intervals(data: Mapping, duration: float) -> tuple[tuple[float, float], ...]:
    """clue_intervals: a list of [start, end] seconds (empty when unknown), each inside the video."""
    raw = data.get("clue_intervals") or []
    if not isinstance(raw, list):
        raise TrajectoryError(f"field clue_intervals={raw!r:.80}: expected a list of [start, end] seconds")
    intervals = []
    for position, interval in enumerate(raw):
        ok = (isinstance(interval, list) and len(interval) == 2
              and all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in interval))
        if not ok or not 0 <= interval[0] < interval[1]:
            raise TrajectoryError(f"field clue_intervals[{position}]={interval!r}: expected [start, end] seconds "
                                  "with 0 <= start < end")
        intervals.append((float(interval[0]), float(interval[1])))
    return tuple(intervals)


def _turn(data: object, position: int) -> TrajectoryTurn:
    """One turn object."""
    where = f"turns[{position}]."
    if not isinstance(data, dict):
        raise TrajectoryError(f"field turns[{position}]={data!r:.80}: expected an object with {', '.join(TURN_FIELDS)}")
    model = _require(data, "model", str, "the model's text", where)
    action = _require(data, "action", dict, "the parser's action object", where)
    if not isinstance(action.get("name"), str):
        raise TrajectoryError(f"field {where}action={action!r:.80}: expected an object with a 'name'")
    observation = _require(data, "observation", str, "the tool's reply text", where)
    valid = _require(data, "valid", bool, "true or false", where)
    return TrajectoryTurn(model, action, observation, valid)


def _number_map(data: Mapping, key: str, kind: type) -> dict:
    """timings or tokens: a mapping of names to numbers (absent: empty)."""
    value = data.get(key) or {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, kind) and not isinstance(v, bool) for k, v in value.items()):
        raise TrajectoryError(f"field {key}={value!r:.80}: expected an object of names to {kind.__name__} values")
    return dict(value)


def trajectory_from_dict(data: object) -> Trajectory:
    """Check one decoded JSONL object against the schema; TrajectoryError naming the first bad field."""
    if not isinstance(data, dict):
        raise TrajectoryError(f"expected a JSON object with {', '.join(FIELDS)}, got {type(data).__name__}")
    options = _options(data)
    width = _require(data, "width", int, "a positive integer")
    duration = _require(data, "duration", (int, float), "a positive number of seconds")
    if width < 1 or not math.isfinite(duration) or duration <= 0:
        raise TrajectoryError(f"fields width={width!r}, duration={duration!r}: expected a positive width and duration")
    turns = _require(data, "turns", list, "a list of turns")
    if not turns:
        raise TrajectoryError("field turns is empty: expected at least the answer turn")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise TrajectoryError(f"unknown fields {unknown}; the schema has {', '.join(FIELDS)}")
    return Trajectory(
        id=_non_empty(data, "id"), data_source=_non_empty(data, "data_source"), video_uid=_non_empty(data, "video_uid"),
        question=_non_empty(data, "question"), options=options, ground_truth=_letter(data, "ground_truth", options),
        width=width, duration=float(duration), clue_intervals=_intervals(data, duration),
        turns=tuple(_turn(turn, position) for position, turn in enumerate(turns)),
        answer=_letter(data, "answer", options, nullable=True),
        correct=_require(data, "correct", bool, "true or false"), hinted=bool(data.get("hinted", False)),
        timings=_number_map(data, "timings", (int, float)), tokens=_number_map(data, "tokens", int))


def _decoded(path: Path, number: int, raw: bytes) -> str:
    """Line `number` of `path` as text; TrajectoryError naming the file, line and byte unless it is UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TrajectoryError(f"{path}:{number}: not UTF-8 (byte 0x{raw[error.start]:02x} at byte {error.start + 1} "
                              "of the line); expected UTF-8 JSON lines, one trajectory object per line") from None


def read_trajectories(path: str | Path) -> Iterator[tuple[int, Trajectory | TrajectoryError]]:
    """(line number, trajectory or the error that names what is wrong) for each non-blank line of a JSONL file.

    A line that is not UTF-8 raises TrajectoryError naming the file and line: the file is not trajectories.
    """
    path = Path(path)
    # Bytes, decoded line by line, so that a decoding error names its line (a text handle decodes in chunks).
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = _decoded(path, number, raw)
            if not line.strip():
                continue
            try:
                yield number, trajectory_from_dict(json.loads(line))
            except json.JSONDecodeError as error:
                yield number, TrajectoryError(f"{path}:{number}: not JSON ({error.msg} at column {error.colno})")
            except TrajectoryError as error:
                yield number, TrajectoryError(f"{path}:{number}: {error}")


def write_trajectories(path: str | Path, trajectories: list[Trajectory]) -> Path:
    """Write trajectories as JSONL (one object per line, UTF-8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for trajectory in trajectories:
            handle.write(json.dumps(trajectory.to_dict(), ensure_ascii=False) + "\n")
    return path
