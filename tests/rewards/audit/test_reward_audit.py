"""The reward audit: every preset passes its checks, the checks can fail, and the stage writes a table and a PNG."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from launch.compose import ConfigError, compose_config, to_container
from launch.stages.audit import audit_settings
from rewards.audit.questions import synthetic_questions
from rewards.audit.run import audit
from rewards.policies import POLICIES
from rewards.spec import preset_names, spec_from_dict

PROJECT_ROOT = Path(__file__).resolve().parents[3]
PRESETS = preset_names()
CHECKS = ("right answer beats wrong", "repeats never raise", "scores inside", "oracle locates")


def preset_spec(name: str, *overrides: str) -> dict:
    """The resolved `reward` section of preset `name` with `overrides`."""
    return to_container(compose_config("audit", [f"reward={name}", *overrides], False).config)["reward"]


def settings(specs: dict, questions: int = 10, **more) -> dict:
    """Audit settings for synthetic questions."""
    return {"specs": specs, "questions": questions, "seed": 3, "max_turns": 15, "parquet": None,
            "caption_dir": None, "limit": 50, **more}


@pytest.fixture(scope="module")
def every_preset(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list, Path]:
    """The audit of every preset over 10 synthetic questions."""
    output = tmp_path_factory.mktemp("audit")
    results, checks = audit(settings({name: preset_spec(name) for name in PRESETS}), output)
    return results, checks, output


def test_every_preset_is_documented():
    """Every preset in configs/reward/ (found by globbing, as the registry finds them) is named in the docs."""
    assert PRESETS == sorted(path.stem for path in (PROJECT_ROOT / "configs" / "reward").glob("*.yaml"))
    assert "default" in PRESETS
    docs = "".join(path.read_text(encoding="utf-8") for folder in ("", "configs", "rewards", "launch", "tools")
                   for path in sorted((PROJECT_ROOT / folder).glob("*.md")))
    assert [name for name in PRESETS if f"`{name}`" not in docs] == []


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("check", CHECKS)
def test_every_preset_passes_every_check(every_preset, preset, check):
    """Right beats wrong at equal navigation, repeats never pay, scores stay in range, oracle locates best."""
    _, checks, _ = every_preset
    found = [c for c in checks if c.spec == preset and c.name.startswith(check)]
    terms = {term.name for term in spec_from_dict(preset_spec(preset)).terms}
    if check == "oracle locates" and "location" not in terms:
        assert not found, f"{preset} has no location component to compare"
        return
    assert len(found) == 1 and found[0].passed, found


@pytest.mark.parametrize("preset", PRESETS)
def test_rollouts_confirm_the_checks_per_question(every_preset, preset):
    """From the scored rollouts: right beats wrong at equal navigation on every question, and repeats never pay."""
    _, _, output = every_preset
    rows = [json.loads(line) for line in (output / "rollouts.jsonl").read_text().splitlines()]
    score = {(r["policy"], r["question"]): r["scores"]["score"] for r in rows if r["spec"] == preset}
    questions = {question for _, question in score}
    assert len(questions) == 10
    for question in questions:
        assert score["oracle", question] > score["perfect_nav_wrong", question]
        assert score["guess_right", question] > score["guess_wrong", question]
        assert score["repeat_spammer", question] <= score["oracle", question] + 1e-9


def test_table_plot_and_results_are_written(every_preset):
    """table.md lists every policy for every preset, scores.png is a PNG, results.json holds means and checks."""
    results, _, output = every_preset
    table = (output / "table.md").read_text()
    for name in PRESETS:
        assert f"### {name} (score range" in table
    for policy in POLICIES:
        assert table.count(f"| {policy} |") == len(PRESETS)
    assert (output / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((output / "results.json").read_text())
    assert set(saved["specs"]) == set(PRESETS)
    assert saved["specs"]["default"]["policies"]["oracle"]["answer"] == 1.0
    assert math.isclose(saved["specs"]["answer_only"]["policies"]["guess_wrong"]["score"], 0.0)
    assert len(saved["checks"]) == len(results["checks"])


def test_default_pays_the_descent_as_much_as_the_oracle(every_preset):
    """Reading the medium caption on the way down costs location under the paper's rule, not under ours."""
    results, _, _ = every_preset
    paper, default = results["specs"]["paper"]["policies"], results["specs"]["default"]["policies"]
    assert paper["coarse_to_fine"]["location"] < paper["oracle"]["location"]
    assert default["coarse_to_fine"]["location"] == pytest.approx(default["oracle"]["location"])
    assert default["repeat_spammer"]["score"] < default["guess_right"]["score"]


@pytest.mark.parametrize(("name", "spec", "failing"), [
    ("wrong-pays", {"components": {"answer": {"weight": -1.0}}}, "right answer beats wrong"),
    ("repeats-pay", {"components": {"answer": {"weight": 1.0}, "repeat_ratio": {"weight": 0.5}}},
     "repeats never raise"),
])
def test_checks_catch_a_gameable_reward(tmp_path, name, spec, failing):
    """A reward that pays the wrong thing fails the matching check, so the audit can fail."""
    _, checks = audit(settings({name: spec}, questions=4), tmp_path)
    assert any(not check.passed and check.name.startswith(failing) for check in checks), checks


def test_synthetic_questions_are_deterministic(tmp_path):
    """The same seed writes the same questions and caption files."""
    first = synthetic_questions(5, 11, tmp_path / "a")
    second = synthetic_questions(5, 11, tmp_path / "b")
    assert first == second
    assert sorted(p.read_text() for p in (tmp_path / "a").iterdir()) == \
        sorted(p.read_text() for p in (tmp_path / "b").iterdir())
    assert all(question.clues for question in first)


def test_parquet_rows_replace_the_synthetic_questions(tmp_path):
    """An RL parquet plus caption dir is played; rows without clue intervals are skipped and counted."""
    import pandas

    questions = synthetic_questions(3, 5, tmp_path / "captions")
    rows = [{"data_source": "cgbench", "prompt": [{"role": "user", "content": "q"}],
             "reward_model": {"ground_truth": q.letter, "style": "rule"}, "extra_info": q.extra_info(i)}
            for i, q in enumerate(questions)]
    rows[1]["extra_info"] = {**rows[1]["extra_info"], "clue_intervals": []}
    pandas.DataFrame(rows).to_parquet(tmp_path / "rl.parquet")
    results, checks = audit(settings({"paper": preset_spec("paper")}, parquet=str(tmp_path / "rl.parquet"),
                                     caption_dir=str(tmp_path / "captions")), tmp_path / "out")
    assert results["questions"] == 2
    assert all(check.passed for check in checks), checks


def test_stage_settings_label_an_overridden_preset_and_check_paths(tmp_path):
    """An overridden preset is scored as NAME* next to the preset; parquet without caption_dir is an error."""
    config = compose_config("audit", ["reward=default", "reward.components.location.weight=0.25"], False).config
    specs = audit_settings(config)["specs"]
    assert specs["default*"]["components"]["location"]["weight"] == 0.25
    assert specs["default"]["components"]["location"]["weight"] == 0.5
    config = compose_config("audit", [f"audit.parquet={tmp_path}/x.parquet"], False).config
    with pytest.raises(ConfigError, match="audit.parquet and audit.caption_dir go together"):
        audit_settings(config)
    config = compose_config("audit", ["reward.components.format.penalty_per_turn=-1"], False).config
    with pytest.raises(ConfigError, match=r"reward.components.format.penalty_per_turn=-1"):
        audit_settings(config)


def test_cli_sweep_audits_each_preset(tmp_path):
    """`python -m launch audit -m reward=paper,answer_only` runs one audit per point, each with table and PNG."""
    result = subprocess.run(
        [sys.executable, "-m", "launch", "audit", "-m", "reward=paper,answer_only", "audit.questions=3",
         "audit.compare=[]", f"run_root={tmp_path}", "name=sweep"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for index, preset in enumerate(("paper", "answer_only")):
        run = tmp_path / "audit" / preset / "sweep" / str(index)
        assert (run / "DONE").exists()
        assert (run / "audit" / "scores.png").stat().st_size > 1000
        table = (run / "audit" / "table.md").read_text()
        assert f"### {preset} (score range" in table and table.count("### ") == 1


def _write(path: Path, data: object) -> Path:
    """`data` as JSON (a str or bytes as is) at `path`."""
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


AUDIT_INPUT_ERRORS = {
    # name: (settings file contents given tmp_path, parts of the one error line)
    "settings_truncated": (lambda tmp: '{"specs": {', ["settings.json: cannot read the audit settings",
                                                       "expected the JSON object"]),
    "settings_missing_keys": (lambda tmp: {"specs": {}}, ["settings.json: audit settings without", "'questions'"]),
    "parquet_not_parquet": (lambda tmp: settings({}, parquet=str(_write(tmp / "rl.parquet", b"not parquet")),
                                                 caption_dir=str(tmp)),
                            ["rl.parquet: cannot read it as a parquet table", "expected an RL parquet"]),
    "bad_spec": (lambda tmp: settings({"x": {"components": {"no_such": {"weight": 1}}}}), ["no_such"]),
}


@pytest.mark.parametrize("case", list(AUDIT_INPUT_ERRORS))
def test_an_input_error_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str):
    """Settings or a parquet the audit cannot read give one `error:` line naming the file, and exit code 2."""
    from rewards.audit.run import main

    contents, parts = AUDIT_INPUT_ERRORS[case]
    path = _write(tmp_path / "settings.json", contents(tmp_path))
    code = main(["--settings", str(path), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for part in parts:
        assert part in err
