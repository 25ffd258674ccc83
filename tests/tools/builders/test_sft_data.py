"""The SFT data builder on our trajectories: the JSONL schema, the checks, the files it writes, and the stage.

Table-driven like open-r1's tests/rewards/test_rewards.py. Inputs are the demo world's trajectories
(`tools.demo.world`, generated once per module), copied and mutated one field at a time, so each
row changes exactly what it names. The released-file importer is tested in tests/tools/builders/test_released_sft.py.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import pytest

from launch.cli import main as launch_main
from tests.conftest import CHAT_TEMPLATE, DEMO_MAX_TURNS, dry_run_in_fresh_interpreter, launch
from tools.builders.sft_checks import REASONS, Checks, check_trajectory
from tools.builders.sft_data import SFTDataSettings, build
from tools.builders.sft_format import dataset_info
from tools.demo import world as demo_world
from tools.demo.world import sft_settings
from tools.environment import prompts
from tools.environment.actions import parse_turn
from tools.environment.caption_tree import caption_path, load_caption_tree
from tools.environment.trajectory import TrajectoryError, read_trajectories, trajectory_from_dict, write_trajectories

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo world (captions, videos, trajectories.jsonl), generated once for this module."""
    return demo_world.ensure(tmp_path_factory.mktemp("sft_data") / "world")


@pytest.fixture(scope="module")
def demo_lines(demo_root: Path) -> list[dict]:
    """The demo world's trajectories as decoded JSON objects (all correct, all valid)."""
    return [json.loads(line) for line in (demo_root / "trajectories.jsonl").read_text().splitlines()]


@pytest.fixture
def base(demo_lines: list[dict]) -> dict:
    """A fresh copy of one valid trajectory, for a test to mutate."""
    return copy.deepcopy(demo_lines[0])


def tool_calls(data: dict) -> int:
    """The tool-call turns of a trajectory dict (every turn but the answer)."""
    return len(data["turns"]) - 1


def set_model(data: dict, position: int, text: str) -> None:
    """Replace turn `position`'s text, storing the action the parser reads from it (a placeholder if none)."""
    action = parse_turn(text).action
    data["turns"][position]["model"] = text
    data["turns"][position]["action"] = action.to_dict() if action is not None else {"name": "error"}


def answer_with(data: dict, text: str, letter: str | None) -> None:
    """Make the answer turn say `text`, with answer and correct fields that agree with `letter`."""
    set_model(data, -1, f"<think>I answer.</think><answer>{text}</answer>")
    data["answer"] = letter
    data["correct"] = letter == data["ground_truth"]


def other_letter(data: dict) -> str:
    """An option letter that is not the ground truth."""
    return next(letter for letter in prompts.LETTERS[:len(data["options"])] if letter != data["ground_truth"])


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    """A JSONL file of `rows` (a str row is written as is: a blank or a broken line)."""
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def settings_for(root: Path, input_path: Path, role: str = "user", **fields) -> SFTDataSettings:
    """Builder settings for `input_path`, with the demo world's caption trees and DEMO_MAX_TURNS."""
    return SFTDataSettings("trajectories", str(input_path), role, Checks(DEMO_MAX_TURNS),
                           {"default": str(root / "captions")}, **fields)


# ---------------------------------------------------------------- schema


def test_a_valid_trajectory_round_trips(base: dict) -> None:
    """to_dict -> JSON -> trajectory_from_dict gives an equal trajectory, and to_dict gives back the line."""
    trajectory = trajectory_from_dict(base)
    assert trajectory.to_dict() == base
    assert trajectory_from_dict(json.loads(json.dumps(trajectory.to_dict()))) == trajectory
    assert trajectory.tool_calls() == tool_calls(base)


def test_write_then_read_gives_the_same_trajectories(demo_lines: list[dict], tmp_path: Path) -> None:
    """write_trajectories then read_trajectories yields the same trajectories, numbered from line 1."""
    trajectories = [trajectory_from_dict(line) for line in demo_lines[:3]]
    path = write_trajectories(tmp_path / "sub" / "t.jsonl", trajectories)
    assert list(read_trajectories(path)) == list(enumerate(trajectories, start=1))


def _pop(*keys: str | int) -> Callable[[dict], None]:
    """A mutation that deletes data[keys[0]][keys[1]]...; the last key is removed."""
    def mutate(data: dict) -> None:
        for key in keys[:-1]:
            data = data[key]
        del data[keys[-1]]
    return mutate


def _set(key: str, value: object) -> Callable[[dict], None]:
    """A mutation that sets a top-level field."""
    return lambda data: data.__setitem__(key, value)


@pytest.mark.parametrize(("mutate", "names"), [
    pytest.param(_pop("id"), "missing field id", id="missing-id"),
    pytest.param(_set("options", ["only one"]), "field options=", id="one-option"),
    pytest.param(_set("ground_truth", "E"), "field ground_truth='E'", id="ground-truth-out-of-range"),
    pytest.param(_set("width", 0), "width=0", id="width-zero"),
    pytest.param(_set("duration", -1.0), "duration=-1.0", id="negative-duration"),
    pytest.param(_set("turns", []), "field turns is empty", id="no-turns"),
    pytest.param(_pop("turns", 0, "valid"), "missing field turns[0].valid", id="turn-without-valid"),
    pytest.param(lambda d: d["turns"][1].__setitem__("valid", "yes"), "field turns[1].valid='yes'",
                 id="valid-not-bool"),
    pytest.param(lambda d: d["turns"][0].__setitem__("action", {"ids": [1]}), "turns[0].action=",
                 id="action-without-name"),
    pytest.param(_set("clue_intervals", [[5, 3]]), "field clue_intervals[0]=[5, 3]", id="reversed-interval"),
    pytest.param(_set("extra", 1), "unknown fields ['extra']", id="unknown-field"),
    pytest.param(_set("answer", "maybe"), "field answer='maybe'", id="answer-not-a-letter"),
    pytest.param(_set("correct", 1), "field correct=1", id="correct-not-bool"),
    pytest.param(_set("question", "  "), "field question is empty", id="blank-question"),
])
def test_schema_errors_name_the_field(base: dict, mutate: Callable[[dict], None], names: str) -> None:
    """Each schema violation is a TrajectoryError whose message names the field."""
    mutate(base)
    with pytest.raises(TrajectoryError, match=re.escape(names)):
        trajectory_from_dict(base)


def test_read_trajectories_numbers_bad_lines_and_skips_blanks(base: dict, tmp_path: Path) -> None:
    """A bad line and a non-JSON line are errors prefixed file:line:; blank lines are skipped but counted."""
    broken = {key: value for key, value in base.items() if key != "id"}
    path = write_jsonl(tmp_path / "file.jsonl", [base, "", broken, "{not json", "   ", base])
    items = list(read_trajectories(path))
    assert [number for number, _ in items] == [1, 3, 4, 6]
    assert [type(item).__name__ for _, item in items] == ["Trajectory", "TrajectoryError", "TrajectoryError",
                                                          "Trajectory"]
    assert str(items[1][1]).startswith(f"{path}:3: missing field id")
    assert str(items[2][1]).startswith(f"{path}:4: not JSON")


# ---------------------------------------------------------------- checks


def _no_think(d: dict) -> None:
    """The first turn loses its <think> block."""
    set_model(d, 0, re.sub(r"<think>.*?</think>", "", d["turns"][0]["model"]))


def _answer_first(d: dict) -> None:
    """An answer turn comes before the first tool call."""
    d["turns"].insert(0, copy.deepcopy(d["turns"][-1]))


def _wrong(d: dict) -> None:
    """The answer turn names another option, and answer/correct agree with it."""
    answer_with(d, other_letter(d), other_letter(d))


def _answer_b(text: str) -> Callable[[dict], None]:
    """Option B becomes "a dog" and the ground truth; the answer turn says `text`."""
    def mutate(d: dict) -> None:
        d["options"][1], d["ground_truth"] = "a dog", "B"
        answer_with(d, text, "B")
    return mutate


# (row id, mutation, Checks fields beyond max_turns, max_turns relative to the tool calls, expected reason)
CHECK_ROWS = [
    ("valid", lambda d: None, {}, 0, None),
    ("no-think", _no_think, {}, 0, "unparseable_action"),
    ("unclosed-tool", lambda d: set_model(d, 0, d["turns"][0]["model"].removesuffix("</tool>")), {}, 0,
     "unparseable_action"),
    ("two-actions", lambda d: set_model(d, 0, d["turns"][0]["model"] + "<tool>get_caption((1, 1))</tool>"), {}, 0,
     "unparseable_action"),
    ("stored-action-differs", lambda d: d["turns"][0].__setitem__("action", {"name": "get_caption", "ids": [9, 9]}),
     {}, 0, "action_mismatch"),
    ("last-turn-a-tool-call", lambda d: d["turns"].pop(), {}, 0, "no_answer"),
    ("answer-before-the-last-turn", _answer_first, {}, 0, "no_answer"),
    ("one-call-over-max-turns", lambda d: None, {}, -1, "too_many_turns"),
    ("exactly-max-turns", lambda d: None, {}, 0, None),
    ("invalid-turn", lambda d: d["turns"][0].__setitem__("valid", False), {}, 0, "invalid_turn"),
    ("invalid-turn-kept", lambda d: d["turns"][0].__setitem__("valid", False), {"keep_invalid_turns": True}, 0, None),
    ("observation-with-tool-close", lambda d: d["turns"][0].__setitem__("observation", "a </tool> b"), {}, 0,
     "bad_observation"),
    ("observation-with-think", lambda d: d["turns"][1].__setitem__("observation", "<think>x"), {}, 0,
     "bad_observation"),
    ("last-observation-with-answer", lambda d: d["turns"][-2].__setitem__("observation", "<answer>A</answer>"), {},
     0, "bad_observation"),
    ("answer-field-disagrees", lambda d: d.update(answer=other_letter(d), correct=False), {}, 0, "answer_mismatch"),
    ("correct-flag-disagrees", lambda d: d.update(correct=False), {}, 0, "answer_mismatch"),
    ("wrong-answer", _wrong, {}, 0, "wrong_answer"),
    ("wrong-answer-kept", _wrong, {"keep_wrong": True}, 0, None),
    ("hinted-dropped-by-default", lambda d: d.update(hinted=True), {}, 0, "hinted"),
    ("hinted-kept", lambda d: d.update(hinted=True), {"keep_hinted": True}, 0, None),
    ("answer-letter-then-text", _answer_b("B. a dog"), {}, 0, None),
    ("answer-letter-in-brackets", _answer_b("(B)"), {}, 0, None),
    ("answer-by-option-text", _answer_b("a dog"), {}, 0, None),
]


@pytest.mark.parametrize(("mutate", "flags", "slack", "reason"), [pytest.param(*row[1:], id=row[0])
                                                                  for row in CHECK_ROWS])
def test_check_trajectory(base: dict, mutate: Callable[[dict], None], flags: dict, slack: int,
                          reason: str | None) -> None:
    """Each mutation of a valid trajectory is dropped for its reason (with a detail), or kept."""
    calls = tool_calls(base)
    mutate(base)
    problem = check_trajectory(trajectory_from_dict(base), Checks(calls + slack, **flags))
    if reason is None:
        assert problem is None
    else:
        assert problem is not None and problem[0] == reason, problem
        assert problem[1]


def test_every_reason_is_exercised() -> None:
    """Every REASONS key is produced by a check row or the mixed-file build below (schema, duplicate, captions)."""
    built_here = {"schema", "duplicate_id", "caption_tree"} | {case[1] for case in SHARED_ROW_CHECKS.values()}
    assert set(REASONS) == {row[-1] for row in CHECK_ROWS if row[-1]} | built_here


# ---------------------------------------------------------------- the builder


@pytest.mark.parametrize(("role", "tag"), [("user", "human"), ("tool", "observation")])
def test_samples_rebuild_the_first_turn_and_keep_turns_verbatim(demo_root: Path, demo_lines: list[dict],
                                                                tmp_path: Path, role: str, tag: str) -> None:
    """One sample per trajectory: system, the rebuilt first user turn, then verbatim model turns and observations."""
    report = build(sft_settings(demo_root, role, DEMO_MAX_TURNS), tmp_path / "out")
    samples = json.loads((tmp_path / "out" / "sft.json").read_text())
    assert isinstance(samples, list) and len(samples) == len(demo_lines) == report.to_dict()["kept"]
    for sample, line in zip(samples, demo_lines, strict=True):
        tree = load_caption_tree(caption_path(demo_root / "captions", line["video_uid"]))
        expected = [{"from": "system", "value": prompts.system_prompt(DEMO_MAX_TURNS)},
                    {"from": "human", "value": prompts.first_user_turn(line["question"], line["options"],
                                                                       line["duration"], tree)}]
        for turn in line["turns"][:-1]:
            expected += [{"from": "gpt", "value": turn["model"]}, {"from": tag, "value": turn["observation"]}]
        expected.append({"from": "gpt", "value": line["turns"][-1]["model"]})
        assert sample == {"messages": expected}


def test_build_writes_dataset_info_report_and_png(demo_root: Path, demo_lines: list[dict], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """dataset_info.json registers the absolute sft.json; report.json counts tool calls; report.png is a PNG."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    report = build(sft_settings(demo_root, "user", DEMO_MAX_TURNS), Path("out"))
    output = tmp_path / "out"
    info = json.loads((output / "dataset_info.json").read_text())
    assert info == dataset_info(str(output / "sft.json"))
    saved = json.loads((output / "report.json").read_text())
    assert saved == json.loads(json.dumps(report.to_dict()))
    histogram = Counter(tool_calls(line) for line in demo_lines)
    assert saved["tool_calls_histogram"] == {str(calls): count for calls, count in sorted(histogram.items())}
    assert (saved["kept"], saved["dropped"], saved["dropped_by_reason"]) == (len(demo_lines), 0, {})
    assert (output / "dropped.jsonl").read_text() == ""
    assert (output / "report.png").read_bytes()[:8] == PNG_MAGIC
    with Image.open(output / "report.png") as image:
        assert image.format == "PNG" and min(image.size) > 100
    assert sorted(path.name for path in output.iterdir()) == ["dataset_info.json", "dropped.jsonl", "report.json",
                                                              "report.png", "sft.json"]


def test_a_mixed_file_is_counted_by_reason(demo_root: Path, demo_lines: list[dict], tmp_path: Path) -> None:
    """Good lines are kept; a duplicate id, schema error, wrong answer and missing or mismatched tree are dropped."""
    good = [copy.deepcopy(line) for line in demo_lines[:3]]
    duplicate = copy.deepcopy(demo_lines[3]) | {"id": good[0]["id"]}
    schema = {key: value for key, value in demo_lines[4].items() if key != "id"}
    wrong = copy.deepcopy(demo_lines[5])
    _wrong(wrong)
    no_tree = copy.deepcopy(demo_lines[6]) | {"video_uid": "no_such_video"}
    narrow = copy.deepcopy(demo_lines[7]) | {"width": demo_lines[7]["width"] - 1}
    rows = [good[0], good[1], duplicate, schema, "", wrong, no_tree, narrow, good[2]]
    output = tmp_path / "out"
    report = build(settings_for(demo_root, write_jsonl(tmp_path / "mixed.jsonl", rows)), output).to_dict()
    assert (report["kept"], report["dropped"]) == (3, 5)
    assert report["dropped_by_reason"] == {"schema": 1, "duplicate_id": 1, "wrong_answer": 1, "caption_tree": 2}
    assert report["tool_calls_histogram"] == dict(sorted(Counter(map(tool_calls, good)).items()))
    dropped = [json.loads(line) for line in (output / "dropped.jsonl").read_text().splitlines()]
    assert [(d["line"], d["id"], d["reason"]) for d in dropped] == [
        (3, good[0]["id"], "duplicate_id"), (4, None, "schema"), (6, wrong["id"], "wrong_answer"),
        (7, no_tree["id"], "caption_tree"), (8, narrow["id"], "caption_tree")]
    assert ":4: missing field id" in dropped[1]["detail"]
    assert "no_such_video" in dropped[3]["detail"] and "width" in dropped[4]["detail"]
    samples = json.loads((output / "sft.json").read_text())
    assert [s["messages"][1]["value"].splitlines()[0] for s in samples] == [f"Question: {g['question']}" for g in good]


def _latin1_tree(data: dict, captions: Path) -> None:
    """The trajectory's caption file (in a folder of its own data source) is Latin-1, not UTF-8."""
    data["data_source"] = "broken"
    (captions / f"{data['video_uid']}.json").write_bytes('{"width": 4, "captions": "caf\u00e9"}'.encode("latin-1"))


def _nested_tree(data: dict, captions: Path) -> None:
    """The trajectory's caption file nests deeper than the JSON parser goes."""
    data["data_source"] = "broken"
    (captions / f"{data['video_uid']}.json").write_text("[" * 100_000 + "]" * 100_000)


SHARED_ROW_CHECKS = {
    # name: (mutation of a valid trajectory given its own caption folder, reason, parts of the detail)
    "duration_other_than_the_tree": (lambda d, _: d.update(duration=999.0), "duration_mismatch",
                                     ["the caption file's duration is", "the question's is 999 s"]),
    "clues_after_the_video": (lambda d, _: d.update(clue_intervals=[[d["duration"] + 10, d["duration"] + 20]]),
                              "reward_input", ["mixed.jsonl:2:", "the reward would refuse", "clue_intervals",
                                               "no interval overlaps the video"]),
    "tree_not_utf8": (_latin1_tree, "caption_tree", ["broken", "not valid UTF-8"]),
    "tree_nested_too_deep": (_nested_tree, "caption_tree", ["broken", "nested too deep"]),
}


@pytest.mark.parametrize("case", list(SHARED_ROW_CHECKS))
def test_the_checks_every_builder_shares_drop_the_line(demo_root: Path, demo_lines: list[dict], tmp_path: Path,
                                                       case: str) -> None:
    """A trajectory the RL builder or the reward would refuse is dropped with its reason; the next line is kept."""
    mutate, reason, parts = SHARED_ROW_CHECKS[case]
    captions = tmp_path / "broken_captions"
    captions.mkdir()
    bad, good = copy.deepcopy(demo_lines[0]), copy.deepcopy(demo_lines[1])
    mutate(bad, captions)
    settings = settings_for(demo_root, write_jsonl(tmp_path / "mixed.jsonl", [good, bad, demo_lines[2]]))
    settings.caption_dirs["sources"] = {"broken": str(captions)}
    report = build(settings, tmp_path / "out").to_dict()
    assert (report["kept"], report["dropped_by_reason"]) == (2, {reason: 1})
    (dropped,) = [json.loads(line) for line in (tmp_path / "out" / "dropped.jsonl").read_text().splitlines()]
    assert (dropped["line"], dropped["id"], dropped["reason"]) == (2, bad["id"], reason)
    for part in parts:
        assert part in dropped["detail"], dropped


def test_build_refuses_an_existing_sft_json(demo_root: Path, tmp_path: Path) -> None:
    """A second build into the same folder raises FileExistsError and leaves the first sft.json as it was."""
    output = tmp_path / "out"
    build(sft_settings(demo_root, "user", DEMO_MAX_TURNS), output)
    before = (output / "sft.json").read_bytes()
    with pytest.raises(FileExistsError, match="sft.json exists"):
        build(sft_settings(demo_root, "tool", DEMO_MAX_TURNS), output)
    assert (output / "sft.json").read_bytes() == before


def test_build_with_nothing_kept_names_dropped_jsonl(demo_root: Path, demo_lines: list[dict], tmp_path: Path) -> None:
    """When every line is dropped, ValueError names dropped.jsonl, which lists them; no sft.json is left."""
    rows = [copy.deepcopy(line) for line in demo_lines[:2]]
    for row in rows:
        _wrong(row)
    output = tmp_path / "out"
    with pytest.raises(ValueError, match=re.escape(str(output / "dropped.jsonl"))):
        build(settings_for(demo_root, write_jsonl(tmp_path / "wrong.jsonl", rows)), output)
    assert len((output / "dropped.jsonl").read_text().splitlines()) == 2
    assert not (output / "sft.json").exists() and not list(output.glob(".sft.json.*"))


def test_main_with_nothing_kept_is_one_line_and_exit_2(demo_root: Path, demo_lines: list[dict], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m tools.builders.sft_data` with every line dropped prints one `error:` line naming the file; exit 2."""
    from tools.builders import sft_data

    wrong = copy.deepcopy(demo_lines[0])
    _wrong(wrong)
    trajectories = write_jsonl(tmp_path / "wrong.jsonl", [wrong])
    values = {"source": "trajectories", "input": str(trajectories), "observation_role": "user",
              "max_turns": DEMO_MAX_TURNS, "keep_wrong": False, "keep_hinted": False, "keep_invalid_turns": False,
              "caption_dirs": {"default": str(demo_root / "captions")}}
    (tmp_path / "settings.json").write_text(json.dumps(values))
    monkeypatch.setattr("sys.argv", ["sft_data", "--settings", str(tmp_path / "settings.json"),
                                     "--output", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_info:
        sft_data.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: {trajectories}: no trajectory was kept") and "dropped.jsonl" in err


@pytest.mark.parametrize(("change", "error", "message"), [
    ({"source": "bogus"}, ValueError, "source='bogus'"),
    ({"input": "/no/such/file.jsonl"}, FileNotFoundError, "input=/no/such/file.jsonl"),
])
def test_settings_from_dict_rejects_bad_values(demo_root: Path, change: dict, error: type, message: str) -> None:
    """SFTDataSettings.from_dict re-checks the source and that the input exists."""
    data = {"source": "trajectories", "input": str(demo_root / "trajectories.jsonl"), "observation_role": "user",
            "max_turns": 15, "keep_wrong": False, "keep_hinted": False, "keep_invalid_turns": False,
            "caption_dirs": {"default": str(demo_root / "captions")}}
    assert SFTDataSettings.from_dict(data).checks == Checks(15)
    with pytest.raises(error, match=re.escape(message)):
        SFTDataSettings.from_dict(data | change)


@pytest.mark.slow
def test_tokens_are_counted_with_the_chat_template(tiny_cache: Path, demo_root: Path, demo_lines: list[dict],
                                                   tmp_path: Path) -> None:
    """With a tokenizer, the report counts tokens as apply_chat_template does and counts samples over cutoff_len."""
    from transformers import AutoTokenizer

    from tools.builders.chat_template import jinja_template
    from tools.builders.sft_report import CHAT_ROLES

    tokenizer_path = tiny_cache / "models" / "tiny-qwen3"
    output = tmp_path / "out"
    settings = settings_for(demo_root, write_jsonl(tmp_path / "two.jsonl", demo_lines[:2]),
                            tokenizer=str(tokenizer_path), chat_template=CHAT_TEMPLATE, cutoff_len=200)
    report = build(settings, output).to_dict()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    samples = json.loads((output / "sft.json").read_text())
    counts = [len(tokenizer.apply_chat_template(
        [{"role": CHAT_ROLES[m["from"]], "content": m["value"]} for m in sample["messages"]],
        chat_template=jinja_template(CHAT_TEMPLATE), return_dict=False)) for sample in samples]
    assert report["tokens_per_sample"]["min"] == min(counts) and report["tokens_per_sample"]["max"] == max(counts)
    assert report["tokens_total"] == sum(counts)
    assert report["cutoff_len"] == 200 and report["over_cutoff_len"] == sum(c > 200 for c in counts) > 0


# ---------------------------------------------------------------- the stage


def stage_args(demo_root: Path, run_root: Path, *more: str) -> list[str]:
    """`python -m launch sft_data` arguments for the demo world."""
    return ["sft_data", "recipe=tiny", f"sft_data.input={demo_root / 'trajectories.jsonl'}",
            f"tool.default.caption_dir={demo_root / 'captions'}", f"run_root={run_root}", *more]


def test_stage_runs_end_to_end(demo_root: Path, demo_lines: list[dict], run_root: Path, tmp_path: Path) -> None:
    """`python -m launch sft_data` writes DONE and sft.json under runs/sft_data/<dataset>/<name>/sft_data/."""
    result = launch(*stage_args(demo_root, run_root, "sft_data.dataset=demo", "name=first"),
                    env={"LONGVIDEO_R1_CACHE": str(tmp_path / "cache"), "WANDB_API_KEY": ""}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = run_root / "sft_data" / "demo" / "first"
    assert (run_dir / "DONE").is_file()
    assert len(json.loads((run_dir / "sft_data" / "sft.json").read_text())) == len(demo_lines)
    settings = json.loads((run_dir / "sft_data" / "settings.json").read_text())
    assert (settings["max_turns"], settings["observation_role"]) == (DEMO_MAX_TURNS, "user")
    assert settings["caption_dirs"]["default"] == str(demo_root / "captions")


def test_stage_dry_run_imports_no_heavy_module(demo_root: Path, run_root: Path, tmp_path: Path) -> None:
    """A dry run (fresh interpreter) prints the builder command, imports no heavy module and creates nothing."""
    out, heavy = dry_run_in_fresh_interpreter([*stage_args(demo_root, run_root), "--dry-run"],
                                              env={"LONGVIDEO_R1_CACHE": str(tmp_path / "cache")})
    assert heavy == []
    assert "tools.builders.sft_data" in out
    assert not run_root.exists()


@pytest.mark.parametrize(("change", "message"), [
    ("sft_data.input=???", "sft_data.input: missing"),
    ("sft_data.input=/no/such/file.jsonl", "sft_data.input=/no/such/file.jsonl: no such file"),
    ("sft_data.source=bogus", "sft_data.source='bogus'"),
    ("sft_data.keep_wrong=maybe", "sft_data.keep_wrong='maybe'"),
])
def test_stage_config_errors_name_the_key(demo_root: Path, run_root: Path, tmp_path: Path, change: str,
                                          message: str) -> None:
    """A missing input, an input that does not exist, and bad values exit 2 naming the key."""
    args = stage_args(demo_root, run_root, "--dry-run")
    if change.startswith("~"):
        args = [arg for arg in args if not arg.startswith(change[1:] + "=")]
    else:
        args.append(change)
    err = io.StringIO()
    with mock.patch.dict(os.environ, {"LONGVIDEO_R1_CACHE": str(tmp_path / "cache")}), \
            redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = launch_main(args)
    assert code == 2
    assert message in err.getvalue()
    assert not run_root.exists()
