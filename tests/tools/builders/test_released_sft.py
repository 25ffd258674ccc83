"""Importing the SFT file the paper released (LLaMA-Factory Alpaca: system, instruction, input, output, history).

Records are written here in exactly the released shape: `history` holds [user, model] pairs whose
first user text is the question and whose later ones are observations, `instruction` is the last
observation and `output` the answer turn. Table-driven like open-r1's tests/rewards/test_rewards.py.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tools.builders.released_sft import ReleasedRecordError, read_released, record_from_dict
from tools.builders.sft_checks import Checks
from tools.builders.sft_data import SFTDataSettings, build

SYSTEM = "You answer questions about long videos by reading their caption tree."
FIRST_USER = "Question: what is picked up?\nOptions:\nA. a dog\nB. a cat\nC. a kite\nD. a lamp"
ANSWER = "<think>The frames show a kite.</think><answer>C</answer>"
MAX_TURNS = 3


def call(m: int) -> str:
    """A model turn reading medium caption (1, m)."""
    return f"<think>I read medium segment {m}.</think><tool>get_caption((1, {m}))</tool>"


def observation(m: int) -> str:
    """The observation after call(m) (its trailing newline must survive)."""
    return f"Medium caption (1, {m}) [{m}0.0s-{m + 1}0.0s]: someone flies a kite.\n"


def record(calls: int = 2, output: str = ANSWER) -> dict:
    """A released record with `calls` tool calls: history [[first, model 1], [obs 1, model 2], ...]."""
    users = [FIRST_USER, *(observation(m) for m in range(1, calls))]
    history = [[user, call(m)] for m, user in enumerate(users, start=1)] if calls else []
    instruction = observation(calls) if calls else FIRST_USER
    return {"system": SYSTEM, "instruction": instruction, "input": "", "output": output, "history": history}


def expected_messages(calls: int, tag: str) -> list[dict]:
    """The sharegpt messages record(calls) must become, written out independently of the importer."""
    messages = [{"from": "system", "value": SYSTEM}, {"from": "human", "value": FIRST_USER}]
    for m in range(1, calls + 1):
        messages += [{"from": "gpt", "value": call(m)}, {"from": tag, "value": observation(m)}]
    return [*messages, {"from": "gpt", "value": ANSWER}]


def settings(path: Path, role: str = "user", max_turns: int = MAX_TURNS) -> SFTDataSettings:
    """Builder settings for a released file (no caption trees are read)."""
    return SFTDataSettings("released", str(path), role, Checks(max_turns), {})


def write_json(path: Path, records: list) -> Path:
    """The released file: one JSON list."""
    path.write_text(json.dumps(records, indent=2))
    return path


def built(tmp_path: Path, records: list, **kwargs) -> tuple[dict, list[dict], list[dict]]:
    """Build `records` (a JSON list file): report.json, the samples and the dropped lines."""
    output = tmp_path / "out"
    build(settings(write_json(tmp_path / "released.json", records), **kwargs), output)
    report = json.loads((output / "report.json").read_text())
    dropped = [json.loads(line) for line in (output / "dropped.jsonl").read_text().splitlines()]
    return report, json.loads((output / "sft.json").read_text()), dropped


@pytest.mark.parametrize(("role", "tag"), [("user", "human"), ("tool", "observation")])
def test_each_record_becomes_one_sample_verbatim(tmp_path: Path, role: str, tag: str) -> None:
    """system, human(first), gpt(model 1), obs(obs 1), ..., obs(instruction), gpt(output), all verbatim."""
    report, samples, dropped = built(tmp_path, [record(2), record(3), record(1)], role=role)
    assert samples == [{"messages": expected_messages(calls, tag)} for calls in (2, 3, 1)]
    assert (report["kept"], report["dropped"], dropped) == (3, 0, [])
    assert report["tool_calls_histogram"] == {"1": 1, "2": 1, "3": 1}
    assert report["source"] == "released"


def test_a_record_without_history_is_system_question_answer(tmp_path: Path) -> None:
    """No history: [system, human(instruction), gpt(output)] with zero tool calls."""
    report, samples, _ = built(tmp_path, [record(0)])
    assert samples == [{"messages": expected_messages(0, "human")}]
    assert report["tool_calls_histogram"] == {"0": 1}


@pytest.mark.parametrize(("value", "last_user"), [
    ("", observation(2)),
    (None, observation(2)),
    ("Answer with the letter.", observation(2) + "\nAnswer with the letter."),
])
def test_input_joins_instruction_with_a_newline(value: str | None, last_user: str) -> None:
    """A non-empty `input` follows `instruction` after a newline, as LLaMA-Factory does; empty or null adds nothing."""
    parsed = record_from_dict(record(2) | {"input": value})
    assert parsed.observations == (observation(1), last_user)
    assert parsed.models == (call(1), call(2), ANSWER)
    assert (parsed.system, parsed.first_user) == (SYSTEM, FIRST_USER)


def test_answers_are_not_checked_and_the_report_says_so(tmp_path: Path) -> None:
    """Any readable answer letter is kept (there is no ground truth), and the report notes it."""
    report, samples, _ = built(tmp_path, [record(1), record(1, output="<think>t</think><answer>A</answer>")])
    assert len(samples) == 2
    assert any("answers are not checked" in note for note in report["notes"])
    assert (tmp_path / "out" / "report.json").is_file() and (tmp_path / "out" / "report.png").is_file()


def _set(key: str, value: object) -> Callable[[dict], None]:
    """A mutation that sets a field of the record."""
    return lambda r: r.__setitem__(key, value)


def _model(position: int, text: str) -> Callable[[dict], None]:
    """A mutation that replaces history[position]'s model turn."""
    return lambda r: r["history"][position].__setitem__(1, text)


# (row id, mutation of record(MAX_TURNS), reason, a fragment of the detail)
BAD_RECORDS = [
    ("missing-output", lambda r: r.pop("output"), "schema", "field output=missing"),
    ("blank-instruction", _set("instruction", " "), "schema", "field instruction="),
    ("history-pair-of-three", lambda r: r["history"][0].append("extra"), "schema", "field history[0]="),
    ("history-pair-a-string", lambda r: r["history"].__setitem__(1, "user then model"), "schema", "history[1]"),
    ("history-not-a-list", _set("history", {"a": "b"}), "schema", "field history="),
    ("model-turn-without-think", _model(1, "<tool>get_caption((1, 2))</tool>"), "unparseable_action", "turns[1]"),
    ("model-turn-unknown-tool", _model(0, "<think>t</think><tool>zoom((1, 1))</tool>"), "unparseable_action",
     "turns[0]"),
    ("output-a-tool-call", _set("output", call(4)), "no_answer", "the last turn is a tool call"),
    ("answer-inside-history", _model(1, ANSWER), "no_answer", "turns[1] answers"),
    ("observation-with-tag", lambda r: r["history"][1].__setitem__(0, "x <answer>B</answer>"), "bad_observation",
     "observation 1"),
    ("too-many-tool-calls", lambda r: r.update(record(MAX_TURNS + 1)), "too_many_turns",
     f"{MAX_TURNS + 1} tool calls"),
]


@pytest.mark.parametrize(("mutate", "reason", "detail"), [pytest.param(*row[1:], id=row[0]) for row in BAD_RECORDS])
def test_bad_records_are_dropped_with_their_number(tmp_path: Path, mutate: Callable[[dict], None], reason: str,
                                                   detail: str) -> None:
    """Between two good records, a bad one is dropped as record 2 for its reason; the good ones are kept."""
    bad = copy.deepcopy(record(MAX_TURNS))
    mutate(bad)
    report, samples, dropped = built(tmp_path, [record(MAX_TURNS), bad, record(1)])
    assert len(samples) == report["kept"] == 2
    assert report["dropped_by_reason"] == {reason: 1}
    assert [(d["line"], d["id"], d["reason"]) for d in dropped] == [(2, None, reason)]
    assert detail in dropped[0]["detail"]
    if reason == "schema":
        assert "record 2:" in dropped[0]["detail"]


def test_exactly_max_turns_tool_calls_are_kept(tmp_path: Path) -> None:
    """A record with max_turns tool calls is kept; one more is dropped (the answer turn is not counted)."""
    report, _, dropped = built(tmp_path, [record(MAX_TURNS), record(MAX_TURNS + 1)])
    assert report["kept"] == 1
    assert [(d["line"], d["reason"]) for d in dropped] == [(2, "too_many_turns")]


def test_the_jsonl_variant_reads_the_same(tmp_path: Path) -> None:
    """The same records as JSONL (blank lines skipped) give the same sft.json; a bad line is dropped by its number."""
    records = [record(2), record(0), record(1)]
    build(settings(write_json(tmp_path / "released.json", records)), tmp_path / "from_json")
    lines = [json.dumps(records[0]), "", json.dumps(records[1]), "{broken", json.dumps(records[2])]
    (tmp_path / "released.jsonl").write_text("\n".join(lines) + "\n")
    report = build(settings(tmp_path / "released.jsonl"), tmp_path / "from_jsonl").to_dict()
    assert (tmp_path / "from_jsonl" / "sft.json").read_text() == (tmp_path / "from_json" / "sft.json").read_text()
    assert report["dropped_by_reason"] == {"schema": 1}
    (dropped,) = [json.loads(line) for line in (tmp_path / "from_jsonl" / "dropped.jsonl").read_text().splitlines()]
    assert dropped["line"] == 4 and "record 4: not JSON" in dropped["detail"]


def test_a_json_list_that_does_not_parse_names_the_file(tmp_path: Path) -> None:
    """A file that starts like a JSON list but is not JSON raises ReleasedRecordError naming the file."""
    path = tmp_path / "broken.json"
    path.write_text('[{"system": "s",')
    with pytest.raises(ReleasedRecordError, match=re.escape(f"{path}: not valid JSON")):
        list(read_released(path))


@pytest.mark.parametrize("value", [[], "text", None])
def test_a_record_that_is_not_an_object_is_an_error(value: object) -> None:
    """record_from_dict rejects a record that is not a JSON object, naming the fields it expects."""
    with pytest.raises(ReleasedRecordError, match="expected an object with system, instruction"):
        record_from_dict(value)
