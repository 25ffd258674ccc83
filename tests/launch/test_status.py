"""`python -m launch status DIR` on a folder of runs (runs/sft/tiny, runs/sft): a row for every run below it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from launch.cli import main as cli_main
from launch.status import runs_in
from tests.launch.test_slurm_node import fake_program, make_run


def make_sweep(sweep_dir: Path, rewards: list[str]) -> None:
    """A finished sweep directory: one finished point per reward preset, recorded in sweep.yaml."""
    for index, reward in enumerate(rewards):
        make_run(sweep_dir / str(index), done=True)
        with open(sweep_dir / "sweep.yaml", "a") as record:
            record.write(yaml.safe_dump([{"index": index, "overrides": [f"reward={reward}"]}]))


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """runs/sft/{tiny: two runs, one failed, and a sweep; qwen3_8b: one run}, with no Slurm on PATH."""
    fake_program(tmp_path, monkeypatch, "scontrol", None, alone=True)
    root = tmp_path / "runs"
    make_run(root / "sft" / "tiny" / "20261201-a", done=True)
    make_run(root / "sft" / "tiny" / "20261202-b", exit_code=3)
    make_sweep(root / "sft" / "tiny" / "sweep1", ["paper", "default"])
    make_run(root / "sft" / "qwen3_8b" / "20261203-c", done=True)
    return root


def table(capsys: pytest.CaptureFixture) -> list[list[str]]:
    """The rows `status` printed (after its header), split into words."""
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["run", "state", "exit"]
    return [row.split() for row in rows]


def test_status_of_a_folder_of_runs_lists_each_run_and_sweep_point(runs: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """runs/sft/tiny: each run by name and each sweep point by sweep and index, in name order; 1 as one failed."""
    assert cli_main(["status", str(runs / "sft" / "tiny")]) == 1
    assert [row[:3] for row in table(capsys)] == [
        ["20261201-a", "COMPLETED", "0"], ["20261202-b", "FAILED", "3"],
        ["sweep1/0:", "reward=paper", "COMPLETED"], ["sweep1/1:", "reward=default", "COMPLETED"]]


def test_status_of_a_stage_folder_lists_the_runs_of_every_group(runs: Path, capsys: pytest.CaptureFixture) -> None:
    """runs/sft: the runs of every recipe below it, labelled by their path inside it."""
    assert cli_main(["status", str(runs / "sft")]) == 1
    assert [row[0] for row in table(capsys)] == ["qwen3_8b/20261203-c", "tiny/20261201-a", "tiny/20261202-b",
                                                "tiny/sweep1/0:", "tiny/sweep1/1:"]


def test_status_of_a_folder_of_finished_runs_exits_0(runs: Path, capsys: pytest.CaptureFixture) -> None:
    """Every run below the folder finished: exit 0."""
    assert cli_main(["status", str(runs / "sft" / "qwen3_8b")]) == 0
    assert [row[:2] for row in table(capsys)] == [["20261203-c", "COMPLETED"]]


def test_a_run_or_sweep_directory_is_never_searched_below(tmp_path: Path) -> None:
    """A run's own folders (checkpoints, attempts) and a sweep's points are not searched for further runs."""
    run = make_run(tmp_path / "group" / "run")
    make_run(run / "checkpoints" / "looks-like-a-run")
    make_sweep(tmp_path / "group" / "sweep", ["paper"])
    make_run(tmp_path / "group" / "sweep" / "0" / "nested")
    assert [label for label, _ in runs_in(tmp_path)] == ["group/run", "group/sweep/0: reward=paper"]
    assert [label for label, _ in runs_in(run)] == ["run"]


@pytest.mark.parametrize("make", ["empty", "file", "missing"])
def test_status_of_a_folder_without_runs_exits_2(make: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A folder with no run below it, a file, or a path that does not exist: exit 2 with a message."""
    target = tmp_path / "target"
    if make == "empty":
        (target / "sub").mkdir(parents=True)
    elif make == "file":
        target.write_text("not a run")
    assert cli_main(["status", str(target)]) == 2
    assert "neither a run directory" in capsys.readouterr().err
