"""`tools.builders.released_prompt`: the system prompt template of the paper's released RL parquet, and its CLI.

The parquet has the released shape (see tests/tools/builders/test_released_parquet.py): a `prompt` column of
[system, user] messages whose system prompt is formatted with the row's tree width, and `extra_info`
with the width; written with pandas and read back as numpy arrays. The width is replaced by `{width}`
wherever it stands as a whole number (no digit on either side), so the template below only holds
numbers that no row's width equals as a whole number: 1, 2, 15, 30, 100 against widths 3, 4 and 10.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tools.agent.run import system_prompt_from_file
from tools.builders.released_prompt import ReleasedPromptError, main, system_template, template_of

PROJECT_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = (
    "You are a careful video analyst. The video is a tree of captions with {width} high-level clips, each cut "
    "into {width} medium clips, each cut into {width} low clips, so ids run from 1 to {width}. Call "
    "<tool>get_caption((1, 2))</tool> to read a caption; a low clip lasts about 30 seconds, and a video up to "
    "100 minutes. You may make at most 15 calls. Think inside <think></think>, then answer <answer>LETTER</answer>."
)
OTHER = TEMPLATE.replace("at most 15 calls", "at most 16 calls")


def row(system: str | None, width: object = ..., *, user_first: bool = False, index: int = 0) -> dict:
    """One released-shape row; `system` is formatted with the width when it holds `{width}`."""
    extra_info = {"index": index, "need_tools_kwargs": True, "video_uid": f"video-{index}", "split": "train",
                  "duration": 640.0, "fps": 30.0, "data_source": "videocaption_cgbench"}
    if width is not ...:
        extra_info["width"] = width
    content = system.replace("{width}", str(int(width))) if system is not None and width not in (..., None) \
        else system
    user = {"role": "user", "content": "What is on the table?\nA. a cup\nB. a plate"}
    prompt = [user, {"role": "system", "content": content}] if user_first else \
        [{"role": "system", "content": content}, user]
    return {"data_source": "videocaption_cgbench", "prompt": prompt, "ability": "get_caption",
            "reward_model": {"style": "rule", "ground_truth": "A"}, "extra_info": extra_info, "metadata": None}


def parquet(path: Path, rows: list[dict]) -> Path:
    """Write `rows` with pandas, as the released preprocessing did."""
    pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.fixture
def released(tmp_path: Path) -> Path:
    """A released-shape parquet of rows of width 3, 4, 10 and 4, one template."""
    return parquet(tmp_path / "rl.parquet", [row(TEMPLATE, width, index=i) for i, width in enumerate((3, 4, 10, 4))])


# name: (system prompt, width, template)
TEMPLATE_ROWS = {
    "digit_after_stays": ("3 clips of 30 seconds", 3, "{width} clips of 30 seconds"),
    "digit_before_stays": ("13 or 3", 3, "13 or {width}"),
    "every_whole_occurrence": ("ids (1, 2, 3) at width 3", 3, "ids (1, 2, {width}) at width {width}"),
    "two_digit_width": ("10 clips, 100 s, 110 s, 210", 10, "{width} clips, 100 s, 110 s, 210"),
    "letters_are_no_digits": ("a 4x4 grid, clip4", 4, "a {width}x{width} grid, clip{width}"),
    "absent_width": ("no width here: 44", 4, "no width here: 44"),
    "sentence_end": ("width 4.", 4, "width {width}."),
}


@pytest.mark.parametrize("name", TEMPLATE_ROWS)
def test_template_of(name: str) -> None:
    """The width becomes `{width}` wherever no digit stands next to it."""
    system, width, expected = TEMPLATE_ROWS[name]
    assert template_of(system, width) == expected


@pytest.mark.parametrize("system", ["clips of 0.3 seconds", "clips of 3.5 seconds"])
def test_template_of_leaves_decimals(system: str) -> None:
    """A decimal is not a whole number: the width 3 is not in 0.3 or 3.5."""
    assert template_of(system, 3) == system


def test_system_template(released: Path) -> None:
    """The one template of every row, and how many rows agree."""
    assert system_template(released) == (TEMPLATE, 4)


def test_system_template_with_float_widths(tmp_path: Path) -> None:
    """A width stored as 4.0 (a float column) is the whole number 4."""
    path = parquet(tmp_path / "p.parquet", [row(TEMPLATE, 4.0), row(TEMPLATE, 3.0, index=1)])
    assert system_template(path) == (TEMPLATE, 2)


def test_cli_writes_the_template(released: Path, tmp_path: Path, capsys) -> None:
    """The CLI writes the template and says how many rows and width fields."""
    output = tmp_path / "prompt.txt"
    assert main(["--parquet", str(released), "--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == TEMPLATE
    assert capsys.readouterr().out == f"wrote the system prompt of 4 rows to {output} (4 width fields)\n"


def test_cli_as_a_subprocess(released: Path, tmp_path: Path) -> None:
    """`python -m tools.builders.released_prompt --parquet P --output O` twice: the second run refuses, O unchanged."""
    output = tmp_path / "prompt.txt"
    command = [sys.executable, "-m", "tools.builders.released_prompt", "--parquet", str(released),
               "--output", str(output)]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert output.read_text(encoding="utf-8") == TEMPLATE
    output.write_text("mine", encoding="utf-8")
    again = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and f"{output} exists" in again.stderr
    assert output.read_text(encoding="utf-8") == "mine"


def test_cli_refuses_an_existing_output(released: Path, tmp_path: Path, capsys) -> None:
    """An existing output is never overwritten: exit 2, the file unchanged."""
    output = tmp_path / "prompt.txt"
    output.write_text("keep me", encoding="utf-8")
    assert main(["--parquet", str(released), "--output", str(output)]) == 2
    assert output.read_text(encoding="utf-8") == "keep me"
    assert capsys.readouterr().err == f"error: {output} exists; choose another --output\n"


# name: (rows, what the error names)
BAD_ROWS = {
    "different_templates": ([row(TEMPLATE, 3), row(TEMPLATE, 4, index=1), row(OTHER, 4, index=2),
                             row(OTHER, 10, index=3)],
                            "2 different system prompts (first seen at rows 0, 2)"),
    # At width 3 "30 seconds" stays; at width 10 it would stay too, but "at most 10 calls" becomes {width}.
    "a_width_in_other_numbers": ([row(TEMPLATE, 3), row(TEMPLATE.replace("15 calls", "10 calls"), 10, index=1)],
                                 "2 different system prompts (first seen at rows 0, 1)"),
    "user_message_first": ([row(TEMPLATE, 3), row(TEMPLATE, 4, user_first=True, index=1)],
                           "row 1: field prompt: expected a list starting with a system message"),
    "width_missing_in_one_row": ([row(TEMPLATE, 3), row(TEMPLATE, 4, index=1), row(TEMPLATE, index=2)],
                                 "row 2: field extra_info.width=None: expected a positive integer"),
    "width_missing_everywhere": ([row(TEMPLATE), row(TEMPLATE, index=1)],
                                 "row 0: field extra_info.width=None: expected a positive integer"),
    "width_zero": ([row(TEMPLATE, 0)], "row 0: field extra_info.width=0: expected a positive integer"),
    "width_fractional": ([row("w", 3.5)], "row 0: field extra_info.width=3.5: expected a positive integer"),
}


@pytest.mark.parametrize("name", BAD_ROWS)
def test_bad_rows(tmp_path: Path, capsys, name: str) -> None:
    """Rows that cannot give one template: an error naming the file, the row and the field; nothing written."""
    rows, message = BAD_ROWS[name]
    path = parquet(tmp_path / "bad.parquet", rows)
    with pytest.raises(ReleasedPromptError) as error:
        system_template(path)
    assert str(error.value).startswith(str(path)) and message in str(error.value)
    output = tmp_path / "prompt.txt"
    assert main(["--parquet", str(path), "--output", str(output)]) == 2
    assert capsys.readouterr().err == f"error: {error.value}\n"
    assert not output.exists()


def test_not_a_parquet(tmp_path: Path) -> None:
    """A file that is not a parquet, or has no prompt column, or no rows: an error naming the file."""
    text = tmp_path / "rl.parquet"
    text.write_text("not a parquet")
    with pytest.raises(ReleasedPromptError, match="cannot read the prompt and extra_info columns"):
        system_template(text)
    with pytest.raises(ReleasedPromptError, match="cannot read the prompt and extra_info columns"):
        system_template(tmp_path / "missing.parquet")
    no_prompt = parquet(tmp_path / "np.parquet", [{"extra_info": {"width": 4}}])
    with pytest.raises(ReleasedPromptError, match="cannot read the prompt and extra_info columns"):
        system_template(no_prompt)
    empty = tmp_path / "empty.parquet"
    pd.DataFrame([row(TEMPLATE, 4)]).iloc[:0].to_parquet(empty)
    with pytest.raises(ReleasedPromptError, match=r"empty\.parquet: no rows"):
        system_template(empty)


@pytest.mark.parametrize("width", [4, 3, 10])
def test_round_trip(released: Path, tmp_path: Path, width: int) -> None:
    """The written file, read by the eval's system_prompt_from_file, gives each row's original system prompt."""
    output = tmp_path / "prompt.txt"
    assert main(["--parquet", str(released), "--output", str(output)]) == 0
    original = pd.read_parquet(released)
    build = system_prompt_from_file(str(output), 15)
    for prompt, info in zip(original["prompt"], original["extra_info"], strict=True):
        if int(info["width"]) == width:
            assert build({"width": width}) == prompt[0]["content"]
    assert build({"width": width}) == TEMPLATE.replace("{width}", str(width))
