"""Reading trajectory JSONL files: bytes that are not UTF-8 are the module's TrajectoryError naming file and line.

The schema's field checks are tested with the SFT data builder (tests/tools/builders/test_sft_data.py); here
the file reader meets files that are not UTF-8 JSON lines, one row per way of being wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.environment.trajectory import (
    Trajectory,
    TrajectoryError,
    TrajectoryTurn,
    read_trajectories,
    write_trajectories,
)

TRAJECTORY = Trajectory(
    id="q1", data_source="demo", video_uid="v1", question="What happens?", options=("A dog runs.", "A cat sleeps."),
    ground_truth="A", width=4, duration=64.0, clue_intervals=((0.0, 16.0),),
    turns=(TrajectoryTurn("<answer>A</answer>", {"name": "answer", "letter": "A"}, "", True),),
    answer="A", correct=True)
GOOD = json.dumps(TRAJECTORY.to_dict(), ensure_ascii=False).encode("utf-8") + b"\n"


@pytest.mark.parametrize(("content", "line", "byte", "position", "before"), [
    pytest.param(GOOD.replace(b"What", b"Caf\xe9 what"), 1, "e9", GOOD.index(b"What") + 4, 0, id="latin-1-on-line-1"),
    pytest.param(GOOD + b"\n" + GOOD + b'{"id": "\x80"}\n', 4, "80", 9, 2, id="stray-byte-after-good-lines"),
    pytest.param(GOOD + b"\xa0\n" + GOOD, 2, "a0", 1, 1, id="latin-1-space-on-a-blank-looking-line"),
    pytest.param(GOOD.decode("utf-8").encode("utf-16"), 1, "ff", 1, 0, id="utf-16-file"),
    pytest.param(GOOD + b'{"id": "\xe2\x82', 2, "e2", 9, 1, id="cut-mid-character-at-end-of-file"),
])
def test_a_file_that_is_not_utf8_raises_trajectory_error_naming_file_and_line(
        tmp_path: Path, content: bytes, line: int, byte: str, position: int, before: int) -> None:
    """Reading stops at the first line that is not UTF-8 with a TrajectoryError naming file, line, byte, expectation."""
    path = tmp_path / "trajectories.jsonl"
    path.write_bytes(content)
    read = []
    with pytest.raises(TrajectoryError) as raised:
        read.extend(read_trajectories(path))
    message = str(raised.value)
    assert message.startswith(f"{path}:{line}: not UTF-8 (byte 0x{byte} at byte {position} of the line)")
    assert "expected UTF-8 JSON lines" in message
    # The good lines before the bad one were read as trajectories.
    assert [item for _, item in read] == [TRAJECTORY] * before


def test_crlf_and_lf_files_read_the_same(tmp_path: Path) -> None:
    """A file written with CRLF line ends reads as the same trajectories, numbered the same, as the LF file."""
    lf = write_trajectories(tmp_path / "lf.jsonl", [TRAJECTORY, TRAJECTORY])
    crlf = tmp_path / "crlf.jsonl"
    crlf.write_bytes(lf.read_bytes().replace(b"\n", b"\r\n"))
    assert list(read_trajectories(crlf)) == list(read_trajectories(lf)) == [(1, TRAJECTORY), (2, TRAJECTORY)]
