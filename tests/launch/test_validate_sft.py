"""launch.validate_sft on the dataset: a file LLaMA-Factory would not read, or would partly skip, is named.

The whole-argument checks against LLaMA-Factory's parser are in tests/integration/test_recipe_validation.py;
these build a dataset_info.json and a tiny sharegpt file per case.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from launch import validate_sft
from launch.validate_sft import TrainArgsError, check_dataset
from tools.builders.sft_format import DATASET_NAME, dataset_info, sharegpt_sample

GOOD = sharegpt_sample("system", "question", [("call", "seen"), ("answer", None)], "user")


def dataset_args(tmp_path: Path, text: str) -> dict:
    """Training arguments whose registered dataset file holds `text`."""
    data = tmp_path / "sft.json"
    data.write_text(text, encoding="utf-8")
    (tmp_path / "dataset_info.json").write_text(json.dumps(dataset_info(str(data))))
    return {"dataset_dir": str(tmp_path), "dataset": DATASET_NAME}


def reordered(*order: int) -> dict:
    """The good sample with its messages in `order` (indices into its messages)."""
    return {"messages": [GOOD["messages"][index] for index in order]}


DATASETS = {
    # name: (dataset file text, parts of the error, or None when it is valid)
    "valid": (json.dumps([GOOD, GOOD]), None),
    "truncated": (json.dumps([GOOD, GOOD])[:-40], ["sft.json: not valid JSON at line 1", "expected a JSON list"]),
    "truncated_second_line": ('[\n{"messages": [', ["sft.json: not valid JSON at line 2"]),
    "not_utf8": (None, ["sft.json: cannot read it as UTF-8 JSON", "UnicodeDecodeError"]),
    "two_user_turns_in_a_row": (json.dumps([GOOD, reordered(0, 1, 1, 2, 3, 4)]),
                                ["sft.json: record 1: message 2 is 'human'", "Skipping this abnormal example"]),
    "assistant_first": (json.dumps([reordered(0, 2, 1, 4, 3, 4)]), ["record 0: message 1 is 'gpt'"]),
    "observation_not_after_a_call": (json.dumps([reordered(0, 1, 3, 2, 4)]), ["record 0: message 2 is 'human'"]),
    "ends_with_an_observation": (json.dumps([reordered(0, 1, 2, 3)]), ["record 0: 3 messages after the system"]),
}


@pytest.mark.parametrize("case", list(DATASETS))
def test_dataset_file_problems_name_the_file_and_record(tmp_path: Path, case: str) -> None:
    """A truncated, non-UTF-8 or wrongly ordered dataset raises TrainArgsError naming file, line or record."""
    text, parts = DATASETS[case]
    args = dataset_args(tmp_path, text or "")
    if text is None:
        (tmp_path / "sft.json").write_bytes(b'[{"messages": "caf\xe9"}]')
    if parts is None:
        check_dataset(args, "train.yaml")
        return
    with pytest.raises(TrainArgsError) as error:
        check_dataset(args, "train.yaml")
    for part in parts:
        assert part in str(error.value)


def test_a_truncated_dataset_info_is_named(tmp_path: Path) -> None:
    """dataset_info.json that does not parse is named with its line, not a bare JSONDecodeError."""
    args = dataset_args(tmp_path, json.dumps([GOOD]))
    (tmp_path / "dataset_info.json").write_text('{"longvideo": {')
    with pytest.raises(TrainArgsError, match=r"dataset_info.json: not valid JSON at line 1"):
        check_dataset(args, "train.yaml")


@pytest.mark.parametrize(("text", "part"), [
    ("stage: sft\nmodel: [", "train.yaml: cannot read the training YAML"),
    ("- a list", "train.yaml: top level is a list; expected a mapping"),
])
def test_main_prints_one_line_and_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], text: str, part: str) -> None:
    """`python -m launch.validate_sft` on a YAML it cannot read prints one line naming it and exits 2."""
    (tmp_path / "train.yaml").write_text(text)
    monkeypatch.setattr(sys, "argv", ["validate_sft", str(tmp_path / "train.yaml")])
    with pytest.raises(SystemExit) as exit_info:
        validate_sft.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and part in err, err
