"""Import the SFT data the paper released (`longvideor1-sft-qwen3-llamafactory.json`).

It is LLaMA-Factory's Alpaca format: `{"system", "instruction", "input", "output", "history"}`,
where `history` holds `[user, model]` pairs, the first user turn is the question with the
high-level captions, every later user turn (the next pair's user text, then `instruction` joined
with `input` by a newline, as LLaMA-Factory joins them) is a tool observation, and `output` is the
answer turn. Prompts and observations are kept verbatim: they are what the released checkpoint was
trained on. Each record becomes one sharegpt sample in which every model turn is trained (the paper
trained with `mask_history: true`, which trains only `output`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

RECORD_FIELDS = ("system", "instruction", "input", "output", "history")


class ReleasedRecordError(ValueError):
    """A record that is not in the released file's shape; the message names the field."""


@dataclass(frozen=True)
class ReleasedRecord:
    """One released trajectory: prompts, model turns and observations, verbatim."""

    system: str
    first_user: str
    models: tuple[str, ...]
    observations: tuple[str, ...]


def _text(record: dict, key: str, required: bool = True) -> str:
    """A string field (absent or null: empty, unless required)."""
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        shown = "missing" if key not in record else f"{value!r:.80}"
        raise ReleasedRecordError(f"field {key}={shown}: expected a non-empty string")
    return value


def record_from_dict(record: object) -> ReleasedRecord:
    """Read one Alpaca record into its turns; ReleasedRecordError naming the bad field."""
    if not isinstance(record, dict):
        raise ReleasedRecordError(f"expected an object with {', '.join(RECORD_FIELDS)}, got {type(record).__name__}")
    history = record.get("history") or []
    if not isinstance(history, list):
        raise ReleasedRecordError(f"field history={history!r:.80}: expected a list of [user, model] pairs")
    users, models = [], []
    for position, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(text, str) and text for text in pair)):
            raise ReleasedRecordError(f"field history[{position}]={pair!r:.80}: expected a [user, model] pair of "
                                      "non-empty strings")
        users.append(pair[0])
        models.append(pair[1])
    last_user = "\n".join(text for text in (_text(record, "instruction"), _text(record, "input", False)) if text)
    users.append(last_user)
    models.append(_text(record, "output"))
    return ReleasedRecord(system=_text(record, "system"), first_user=users[0], models=tuple(models),
                          observations=tuple(users[1:]))


def read_released(path: str | Path) -> Iterator[tuple[int, ReleasedRecord | ReleasedRecordError]]:
    """(record number from 1, record or its error) for each record of a released JSON list (or JSONL) file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise ReleasedRecordError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
        numbered = enumerate(records, start=1)
    else:
        numbered = ((number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip())
    for number, record in numbered:
        try:
            if isinstance(record, str):
                record = json.loads(record)
            yield number, record_from_dict(record)
        except json.JSONDecodeError as error:
            yield number, ReleasedRecordError(f"{path}: record {number}: not JSON ({error.msg})")
        except ReleasedRecordError as error:
            yield number, ReleasedRecordError(f"{path}: record {number}: {error}")
