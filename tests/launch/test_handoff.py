"""The SFT -> RL hand-off (launch/handoff.py) and how the rl stage uses it.

Finished runs are faked: a run directory with `attempts/` and the `DONE` marker `mark_done` writes, its
mtime set with os.utime so "newest" is explicit. The rl stage runs in-process through `launch.cli.main`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from launch.cli import main as cli_main
from launch.handoff import Handoff, HandoffError, finished_runs, newest_output, resolve_model, run_output
from launch.plan import Plan
from launch.rundir import DONE_MARKER, mark_done

BASE_TIME = 1_800_000_000


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tmp cache and no W&B key, so nothing depends on the machine."""
    monkeypatch.setenv("LONGVIDEO_R1_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def make_run(run_root: Path, recipe: str, name: str, finished_at: int | None, stage: str = "sft",
             outputs: dict[str, str] | None = None) -> Path:
    """A run directory with attempts/1; finished (DONE written, mtime `finished_at`) unless `finished_at` is None."""
    run_dir = run_root / stage / recipe / name
    (run_dir / "attempts" / "1").mkdir(parents=True)
    if finished_at is not None:
        mark_done(run_dir, {"model": str(run_dir / "model")} if outputs is None else outputs)
        os.utime(run_dir / DONE_MARKER, (finished_at, finished_at))
    return run_dir


def run_rl(run_root: Path, capsys: pytest.CaptureFixture, *overrides: str, dry_run: bool = True,
           recipe: str = "qwen3_8b") -> tuple[int, str, str]:
    """`python -m launch rl recipe=RECIPE` in-process under `run_root`: exit code, stdout, stderr."""
    argv = ["rl", f"recipe={recipe}", f"run_root={run_root}", *overrides, *(["--dry-run"] if dry_run else [])]
    code = cli_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def model_of(stdout: str) -> str:
    """actor_rollout_ref.model.path in the Plan a dry run printed."""
    plan = Plan.from_yaml(stdout.partition("\n# Plan (dry run")[2].split("\n", 1)[1])
    [arg] = [a for a in plan.main.argv if a.startswith("actor_rollout_ref.model.path=")]
    return arg.split("=", 1)[1].strip("'")


# ---------------------------------------------------------------- finished_runs and newest_output


def test_newest_finished_run_of_the_recipe_is_picked(tmp_path: Path) -> None:
    """The newest DONE of the recipe wins over older ones, unfinished runs, other recipes and other stages."""
    older = make_run(tmp_path, "qwen3_8b", "a-older", BASE_TIME)
    newest = make_run(tmp_path, "qwen3_8b", "b-newest", BASE_TIME + 20)
    make_run(tmp_path, "qwen3_8b", "c-middle", BASE_TIME + 10)
    make_run(tmp_path, "qwen3_8b", "z-unfinished", None)
    make_run(tmp_path, "qwen3_4b", "other-recipe", BASE_TIME + 100)
    make_run(tmp_path, "qwen3_8b", "rl-run", BASE_TIME + 100, stage="rl")
    runs = finished_runs(tmp_path, "sft", "qwen3_8b")
    assert [run.name for run in runs] == ["b-newest", "c-middle", "a-older"]
    assert runs[-1] == older.absolute()
    assert newest_output(tmp_path, "sft", "qwen3_8b", "model") == Handoff(newest, "model", str(newest / "model"))


def test_the_marker_time_decides_not_the_name(tmp_path: Path) -> None:
    """A run named earlier but finished later is the newest (the DONE marker's mtime orders runs)."""
    make_run(tmp_path, "tiny", "20260102-000000-aaaa", BASE_TIME)
    late = make_run(tmp_path, "tiny", "20260101-000000-bbbb", BASE_TIME + 5)
    assert finished_runs(tmp_path, "sft", "tiny")[0] == late


def test_equal_times_break_ties_by_name(tmp_path: Path) -> None:
    """Runs whose markers have the same mtime are ordered by name, the later name first."""
    make_run(tmp_path, "tiny", "20260101-000000-aaaa", BASE_TIME)
    make_run(tmp_path, "tiny", "20260101-000001-aaaa", BASE_TIME)
    assert [run.name for run in finished_runs(tmp_path, "sft", "tiny")] == ["20260101-000001-aaaa",
                                                                            "20260101-000000-aaaa"]


def test_sweep_points_count_as_runs(tmp_path: Path) -> None:
    """A finished point `<sweep>/<index>/` of an SFT sweep is a run and can be the newest."""
    make_run(tmp_path, "qwen3_8b", "plain", BASE_TIME)
    (tmp_path / "sft" / "qwen3_8b" / "sweep").mkdir(parents=True)
    (tmp_path / "sft" / "qwen3_8b" / "sweep" / "sweep.yaml").write_text("- {index: 0, overrides: []}\n")
    make_run(tmp_path, "qwen3_8b", "sweep/0", BASE_TIME + 1)
    point = make_run(tmp_path, "qwen3_8b", "sweep/1", BASE_TIME + 2)
    make_run(tmp_path, "qwen3_8b", "sweep/2", None)
    runs = finished_runs(tmp_path, "sft", "qwen3_8b")
    assert runs[0] == point
    assert sorted(run.relative_to(tmp_path / "sft" / "qwen3_8b").as_posix() for run in runs) == \
        ["plain", "sweep/0", "sweep/1"]


@pytest.mark.parametrize("layout", ["missing", "empty", "only-unfinished"])
def test_no_finished_run_names_the_folder_searched(tmp_path: Path, layout: str) -> None:
    """Without a finished run, newest_output names the stage, recipe and the folder it searched."""
    if layout != "missing":
        (tmp_path / "sft" / "qwen3_8b").mkdir(parents=True)
    if layout == "only-unfinished":
        make_run(tmp_path, "qwen3_8b", "crashed", None)
    assert finished_runs(tmp_path, "sft", "qwen3_8b") == []
    with pytest.raises(HandoffError, match=f"no finished sft run of qwen3_8b under {tmp_path / 'sft' / 'qwen3_8b'}"):
        newest_output(tmp_path, "sft", "qwen3_8b", "model")


def test_run_output_reads_the_marker_mark_done_writes(tmp_path: Path) -> None:
    """mark_done's outputs are what run_output hands on."""
    run_dir = make_run(tmp_path, "tiny", "r", BASE_TIME, outputs={"model": "/m", "checkpoints": "/c"})
    assert yaml.safe_load((run_dir / DONE_MARKER).read_text())["outputs"] == {"model": "/m", "checkpoints": "/c"}
    assert run_output(run_dir, "checkpoints") == Handoff(run_dir, "checkpoints", "/c")


@pytest.mark.parametrize(
    ("outputs", "listed"),
    [({"checkpoints": "/c"}, "it has: checkpoints"), ({}, "it has: none")],
    ids=["other-output", "no-outputs"],
)
def test_a_marker_without_a_model_is_a_clear_error(tmp_path: Path, outputs: dict, listed: str) -> None:
    """A DONE recording no `model` output names the marker, the output and what it has."""
    run_dir = make_run(tmp_path, "qwen3_8b", "r", BASE_TIME, outputs=outputs)
    with pytest.raises(HandoffError) as error:
        newest_output(tmp_path, "sft", "qwen3_8b", "model")
    assert f"{run_dir}/{DONE_MARKER} records no `model` output" in str(error.value)
    assert listed in str(error.value)


def test_an_empty_marker_is_a_clear_error(tmp_path: Path) -> None:
    """An empty DONE (no outputs at all) is reported, not a crash."""
    run_dir = make_run(tmp_path, "qwen3_8b", "r", None)
    (run_dir / DONE_MARKER).write_text("")
    with pytest.raises(HandoffError, match="records no `model` output"):
        run_output(run_dir, "model")


# ---------------------------------------------------------------- resolve_model


@pytest.mark.parametrize("choice", ["Qwen/Qwen3-8B", "org/model-name"], ids=["qwen", "other"])
def test_a_hub_id_is_used_as_given(tmp_path: Path, choice: str) -> None:
    """A hub id (not a local folder) is returned unchanged."""
    assert resolve_model(choice, tmp_path, "sft", "qwen3_8b") == choice


def test_a_model_folder_is_used_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder that is not a run directory is the model itself, made absolute."""
    (tmp_path / "models" / "m").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve_model("models/m", tmp_path / "runs", "sft", "qwen3_8b") == str(tmp_path / "models" / "m")


def test_a_finished_run_dir_gives_its_model(tmp_path: Path) -> None:
    """A finished run directory as the choice hands on its recorded model, even of another recipe."""
    run_dir = make_run(tmp_path, "qwen3_4b", "r", BASE_TIME)
    assert resolve_model(str(run_dir), tmp_path, "sft", "qwen3_8b") == Handoff(run_dir, "model", str(run_dir / "model"))


def test_an_unfinished_run_dir_is_refused(tmp_path: Path) -> None:
    """A run directory (attempts/) without DONE is not a model: the error names it and the marker."""
    run_dir = make_run(tmp_path, "qwen3_8b", "crashed", None)
    with pytest.raises(HandoffError, match=f"{run_dir} is not a finished run \\(no {DONE_MARKER} marker\\)"):
        resolve_model(str(run_dir), tmp_path, "sft", "qwen3_8b")


@pytest.mark.parametrize("choice", ["/no/such/model", "./no-such-model", "~/no-such-model-xyz"],
                         ids=["absolute", "relative", "home"])
def test_a_missing_local_path_is_refused(tmp_path: Path, choice: str) -> None:
    """A path that looks local but does not exist is an error, not a hub id."""
    with pytest.raises(HandoffError, match=f"model {choice}: no such folder"):
        resolve_model(choice, tmp_path, "sft", "qwen3_8b")


def test_a_missing_relative_run_path_is_not_a_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mistyped relative run path (more than `org/name`) is an error, not a model id to download."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HandoffError, match="runs/sft/qwen3_8b/typo"):
        resolve_model("runs/sft/qwen3_8b/typo", tmp_path / "runs", "sft", "qwen3_8b")


# ---------------------------------------------------------------- the rl stage


def test_dry_run_says_which_sft_run_it_took(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The dry run prints `[launch] rl starts from MODEL (the model of SFT run DIR)` and trains that model."""
    make_run(tmp_path, "qwen3_8b", "old", BASE_TIME)
    newest = make_run(tmp_path, "qwen3_8b", "new", BASE_TIME + 1)
    make_run(tmp_path, "qwen3_8b", "unfinished", None)
    make_run(tmp_path, "qwen3_4b", "other", BASE_TIME + 2)
    code, out, err = run_rl(tmp_path, capsys)
    assert code == 0, err
    assert f"[launch] rl starts from {newest / 'model'} (the model of SFT run {newest})" in err
    assert model_of(out) == str(newest / "model")


@pytest.mark.parametrize("kind", ["folder", "finished-run", "hub-id"])
def test_rl_model_overrides_the_handoff(tmp_path: Path, capsys: pytest.CaptureFixture, kind: str) -> None:
    """rl.model (a folder, a finished run dir, a hub id) wins over the newest SFT run."""
    make_run(tmp_path, "qwen3_8b", "newest", BASE_TIME + 100)
    folder = tmp_path / "my-model"
    folder.mkdir()
    other = make_run(tmp_path / "elsewhere", "qwen3_8b", "older", BASE_TIME)
    choice, expected, said = {
        "folder": (str(folder), str(folder), f"rl starts from {folder} (rl.model)"),
        "finished-run": (str(other), str(other / "model"), f"(the model of SFT run {other})"),
        "hub-id": ("Qwen/Qwen3-8B", "Qwen/Qwen3-8B", "rl starts from Qwen/Qwen3-8B (rl.model)"),
    }[kind]
    code, out, err = run_rl(tmp_path, capsys, f"rl.model={choice}")
    assert code == 0, err
    assert said in err
    assert model_of(out) == expected


def test_unfinished_run_as_rl_model_stops_a_real_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """rl.model naming an unfinished run dir fails a real run with exit 2 and creates no RL run."""
    crashed = make_run(tmp_path, "qwen3_8b", "crashed", None)
    code, _, err = run_rl(tmp_path, capsys, f"rl.model={crashed}", dry_run=False)
    assert code == 2
    assert f"error: rl: {crashed} is not a finished run" in err
    assert not (tmp_path / "rl").exists()


def test_no_sft_run_stops_a_real_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Without a finished SFT run a real run exits 2, naming the folder searched and the command to run first."""
    make_run(tmp_path, "qwen3_8b", "crashed", None)
    code, out, err = run_rl(tmp_path, capsys, dry_run=False)
    assert code == 2
    assert f"no finished sft run of qwen3_8b under {tmp_path / 'sft' / 'qwen3_8b'}" in err
    assert "run `python -m launch sft recipe=qwen3_8b` first" in err
    assert "rl.model=" in err
    assert err.splitlines()[-1].startswith("error: ")
    assert "# Plan" not in out
    assert not (tmp_path / "rl").exists()


def test_no_sft_run_still_prints_a_dry_run_plan(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A dry run without an SFT run warns (naming the folder and the fix) and still prints the Plan."""
    code, out, err = run_rl(tmp_path, capsys, recipe="tiny")
    assert code == 0, err
    assert err.startswith("[launch] warning: no finished sft run of tiny under ")
    assert "a real run stops here" in err and "python -m launch sft recipe=tiny" in err
    assert model_of(out) == "<no finished sft run of tiny: set rl.model>"
    assert not tmp_path.joinpath("rl").exists()


def test_marker_without_model_stops_a_real_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The newest SFT run's DONE without a `model` output fails a real run with a message naming the marker."""
    run_dir = make_run(tmp_path, "qwen3_8b", "r", BASE_TIME, outputs={"checkpoints": "/c"})
    code, _, err = run_rl(tmp_path, capsys, dry_run=False)
    assert code == 2
    assert f"{run_dir}/{DONE_MARKER} records no `model` output (it has: checkpoints)" in err


def test_newer_unfinished_run_does_not_hide_a_finished_one(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An SFT run still in progress (newer, no DONE) is skipped; RL takes the last finished one."""
    finished = make_run(tmp_path, "qwen3_8b", "20260101-000000-aaaa", BASE_TIME)
    running = make_run(tmp_path, "qwen3_8b", "20260102-000000-bbbb", None)
    os.utime(running, (BASE_TIME + 50, BASE_TIME + 50))
    code, out, err = run_rl(tmp_path, capsys)
    assert code == 0, err
    assert model_of(out) == str(finished / "model")


def test_an_explicit_rl_model_must_exist_even_in_a_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """rl.model naming an unfinished run is an error in a dry run too; only the default hand-off may wait for SFT."""
    crashed = make_run(tmp_path, "qwen3_8b", "crashed", None)
    code, out, err = run_rl(tmp_path, capsys, f"rl.model={crashed}")
    assert code == 2
    assert f"error: rl: {crashed} is not a finished run" in err
    assert "# Plan" not in out


def test_a_handed_off_model_that_vanished_stops_a_real_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The newest SFT run's recorded model folder must still exist when a real run starts."""
    run_dir = make_run(tmp_path, "qwen3_8b", "r", BASE_TIME)
    code, _, err = run_rl(tmp_path, capsys, dry_run=False)
    assert code == 2
    assert f"SFT run {run_dir} records model {run_dir / 'model'}, which no longer exists" in err
