"""The hand-offs between stages (launch/handoff.py): models (SFT -> RL -> eval) and input files, and the stages.

Finished runs are faked: a run directory with `attempts/` and the `DONE` marker `mark_done` writes, its
mtime set with os.utime so "newest" is explicit. The rl stage runs in-process through `launch.cli.main`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from launch.cli import main as cli_main
from launch.handoff import (
    Handoff,
    HandoffError,
    InputSource,
    finished_runs,
    newest_output,
    newest_output_of_stage,
    resolve_input,
    resolve_model,
    run_output,
)
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


# ---------------------------------------------------------------- input files: the newest run of a stage in any group

# Each layout: (stage, group, name, finished_at) runs; the run whose output is expected, None for none.
STAGE_LAYOUTS = {
    "newest-of-several-groups": ([("sft_data", "trajectories", "a", BASE_TIME), ("sft_data", "released", "b",
                                  BASE_TIME + 20), ("sft_data", "teach", "c", BASE_TIME + 10)], "released/b"),
    "a-sweep-point": ([("sft_data", "trajectories", "a", BASE_TIME), ("sft_data", "grid", "sweep/1", BASE_TIME + 5)],
                      "grid/sweep/1"),
    "unfinished-runs-ignored": ([("sft_data", "trajectories", "done", BASE_TIME), ("sft_data", "other", "running",
                                 None)], "trajectories/done"),
    "other-stages-ignored": ([("rl_data", "demo", "r", BASE_TIME + 50), ("sft", "sft_data", "s", BASE_TIME + 60)],
                             None),
    "only-unfinished": ([("sft_data", "trajectories", "crashed", None)], None),
    "none": ([], None),
}


@pytest.mark.parametrize("layout", STAGE_LAYOUTS)
def test_newest_output_of_stage_looks_in_every_group(tmp_path: Path, layout: str) -> None:
    """newest_output_of_stage takes the newest finished run of the stage whatever its group, else names the folder."""
    runs, expected = STAGE_LAYOUTS[layout]
    for stage, group, name, finished_at in runs:
        make_run(tmp_path, group, name, finished_at, stage=stage, outputs={"dataset": f"/{group}/{name}/sft.json"})
    if expected is None:
        with pytest.raises(HandoffError, match=f"no finished sft_data run under {tmp_path / 'sft_data'}$"):
            newest_output_of_stage(tmp_path, "sft_data", "dataset")
        return
    run_dir = tmp_path / "sft_data" / expected
    assert newest_output_of_stage(tmp_path, "sft_data", "dataset") == Handoff(run_dir, "dataset",
                                                                              f"/{expected}/sft.json")
    assert finished_runs(tmp_path, "sft_data", None)[0] == run_dir


SOURCE = InputSource("sft_data", "dataset", "python -m launch sft_data recipe=tiny")
# Each case: (a finished sft_data run exists, the key's value, a demo build, dry run) -> (path taken, demo, message).
INPUT_CASES = {
    "handed-off": ((True, None, False, False), ("RUN", False, "[launch] sft reads RUN (the dataset of sft_data run ")),
    "handed-off-over-the-demo": ((True, None, True, False), ("RUN", False, "(the dataset of sft_data run ")),
    "demo-fallback": ((False, None, True, False), ("DEMO", True, "(the demo file this Plan builds: no finished "
                                                                 "sft_data run under ")),
    "named": ((True, "NAMED", False, False), ("NAMED", False, "[launch] sft reads NAMED (sft.dataset.path)")),
    "named-with-demo-build": ((False, "NAMED", True, False), ("NAMED", True, "(sft.dataset.path)")),
    "dry-run-without-run": ((False, None, False, True),
                            ("<no finished sft_data run: set sft.dataset.path>", False,
                             "[launch] warning: no finished sft_data run under ")),
}


@pytest.mark.parametrize("case", INPUT_CASES)
def test_resolve_input_takes_the_key_the_newest_run_or_the_demo(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                 case: str) -> None:
    """resolve_input: the key when set, else the newest finished producer run, else the demo file; it says which."""
    (has_run, choice, demo, dry_run), (expected, builds, said) = INPUT_CASES[case]
    names = {"RUN": str(tmp_path / "runs" / "sft_data" / "d" / "r" / "sft_data" / "sft.json"),
             "DEMO": str(tmp_path / "cache" / "demo" / "sft.json"), "NAMED": str(tmp_path / "mine.json")}
    if has_run:
        make_run(tmp_path / "runs", "d", "r", BASE_TIME, stage="sft_data", outputs={"dataset": names["RUN"]})
    config = OmegaConf.create({"run_root": str(tmp_path / "runs"), "dry_run": dry_run})
    chosen = resolve_input(config, "sft", "sft.dataset.path", names.get(choice, choice), SOURCE,
                           names["DEMO"] if demo else None)
    assert (chosen.path, chosen.demo, chosen.found) == (names.get(expected, expected), builds, "<" not in expected)
    err = capsys.readouterr().err
    for name, path in names.items():
        said = said.replace(name, path)
    assert said in err
    if dry_run:
        assert "a real run stops here (run `python -m launch sft_data recipe=tiny` first, or set " \
               "sft.dataset.path=PATH)" in err


def test_resolve_input_stops_a_real_run_without_a_producer_run(tmp_path: Path) -> None:
    """No finished producer run, no demo build: a real run stops, naming the folder, the command and the key."""
    make_run(tmp_path, "d", "crashed", None, stage="sft_data")
    config = OmegaConf.create({"run_root": str(tmp_path), "dry_run": False})
    with pytest.raises(HandoffError, match=re.escape(
            f"sft: no finished sft_data run under {tmp_path / 'sft_data'}; run `python -m launch sft_data "
            "recipe=tiny` first, or set sft.dataset.path=PATH")):
        resolve_input(config, "sft", "sft.dataset.path", None, SOURCE)


def test_a_finished_run_without_the_output_is_no_reason_for_the_demo(tmp_path: Path) -> None:
    """The newest producer run's marker lacking the output is an error, even where the demo could be built."""
    run_dir = make_run(tmp_path, "d", "r", BASE_TIME, stage="sft_data", outputs={"report": "/r.json"})
    config = OmegaConf.create({"run_root": str(tmp_path), "dry_run": False})
    with pytest.raises(HandoffError, match=f"{run_dir}/{DONE_MARKER} records no `dataset` output"):
        resolve_input(config, "sft", "sft.dataset.path", None, SOURCE, str(tmp_path / "demo.json"))


# ---------------------------------------------------------------- the stages that read a handed-off file


def dry_run(run_root: Path, capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """`python -m launch ARGV --dry-run` in-process under `run_root`: exit code, stdout, stderr."""
    code = cli_main([*argv, f"run_root={run_root}", "--dry-run"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("recipe", ["tiny", "qwen3_8b"])
def test_sft_trains_on_the_newest_sft_data_run(tmp_path: Path, capsys: pytest.CaptureFixture, recipe: str) -> None:
    """sft (no sft.dataset.path) registers the newest sft_data run's file, and builds no demo file."""
    make_run(tmp_path, "trajectories", "old", BASE_TIME, stage="sft_data", outputs={"dataset": "/old/sft.json"})
    new = make_run(tmp_path, "released", "new", BASE_TIME + 1, stage="sft_data", outputs={"dataset": "/new/sft.json"})
    code, out, err = dry_run(tmp_path, capsys, "sft", f"recipe={recipe}")
    assert code == 0, err
    assert f"[launch] sft reads /new/sft.json (the dataset of sft_data run {new})" in err
    assert '"file_name": "/new/sft.json"' in out and "/old/sft.json" not in out
    assert "build_dataset" not in out


def test_tiny_sft_builds_the_demo_file_without_an_sft_data_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """sft recipe=tiny with no sft_data run trains on the demo file its Plan builds in the cache."""
    code, out, err = dry_run(tmp_path / "runs", capsys, "sft", "recipe=tiny")
    assert code == 0, err
    demo = tmp_path / "cache" / "demo" / "sft-user-t15" / "sft.json"
    assert f"[launch] sft reads {demo} (the demo file this Plan builds: no finished sft_data run under" in err
    assert "build_dataset" in out and f'"file_name": "{demo}"' in out


def test_rl_reads_the_newest_rl_data_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """rl (no rl.data.*_files) reads the newest rl_data run's train and val parquet, and builds no demo parquet."""
    make_run(tmp_path, "qwen3_8b", "s", BASE_TIME)
    run_dir = make_run(tmp_path, "cgbench", "r", BASE_TIME, stage="rl_data",
                       outputs={"train": "/d/train.parquet", "val": "/d/val.parquet"})
    code, out, err = dry_run(tmp_path, capsys, "rl", "recipe=tiny", f"rl.model={tmp_path}")
    assert code == 0, err
    for key, name in (("train", "train"), ("val", "val")):
        assert f"[launch] rl reads /d/{name}.parquet (the {key} of rl_data run {run_dir})" in err
    assert "data.train_files='/d/train.parquet'" in out and "data.val_files='/d/val.parquet'" in out
    assert "build_rl_data" not in out


def test_rl_without_an_rl_data_run_warns_in_a_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """rl recipe=qwen3_8b with no rl_data run: the dry run warns with the command to run first."""
    make_run(tmp_path, "qwen3_8b", "s", BASE_TIME)
    code, _, err = dry_run(tmp_path, capsys, "rl", "recipe=qwen3_8b")
    assert code == 0, err
    assert (f"[launch] warning: no finished rl_data run under {tmp_path / 'rl_data'}; a real run stops here (run "
            "`python -m launch rl_data recipe=qwen3_8b rl_data.annotations=PATH` first, or set "
            "rl.data.train_files=PATH)") in err


def test_sft_data_reads_the_newest_trajectories_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """sft_data (no input, source trajectories) reads the newest finished trajectories run's trajectories.jsonl."""
    trajectories = tmp_path / "t.jsonl"
    trajectories.write_text("")
    run_dir = make_run(tmp_path, "demo", "t", BASE_TIME, stage="trajectories",
                       outputs={"trajectories": str(trajectories)})
    code, out, err = dry_run(tmp_path, capsys, "sft_data", "recipe=tiny")
    assert code == 0, err
    assert f"[launch] sft_data reads {trajectories} (the trajectories of trajectories run {run_dir})" in err
    assert f'"input": "{trajectories}"' in out


def test_released_sft_data_needs_its_input_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """sft_data.source=released with no input is an error naming the key: a released file is never handed off."""
    code, _, err = dry_run(tmp_path, capsys, "sft_data", "recipe=tiny", "sft_data.source=released")
    assert code == 2
    assert "sft_data.input: null takes a trajectories run's output, and sft_data.source=released" in err


def test_a_handed_off_dataset_that_vanished_stops_a_real_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The plan-time input check sees the handed-off path: a recorded file that is gone stops a real sft run."""
    make_run(tmp_path, "trajectories", "r", BASE_TIME, stage="sft_data", outputs={"dataset": "/gone/sft.json"})
    code = cli_main(["sft", "recipe=tiny", f"run_root={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "sft.dataset.path=/gone/sft.json: no such file (build it with `python -m launch sft_data recipe=tiny`" in err
    assert not (tmp_path / "sft").exists()
