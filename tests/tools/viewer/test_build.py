"""Which source a path is, where its page goes, and the errors that name a bad file; the page's JSON escaping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launch import view
from tools.viewer.build import build_page, find_source
from tools.viewer.page import render, script_json
from tools.viewer.sources import ViewError, dump_items, record_items

TRAJECTORY = {"id": "q1", "data_source": "demo", "video_uid": "v", "question": "Which?", "options": ["a", "b"],
              "ground_truth": "A", "width": 4, "duration": 1024.0, "clue_intervals": [[144.0, 160.0]],
              "turns": [{"model": "<think>t</think><tool>get_caption((1, 3))</tool>",
                         "action": {"name": "get_caption", "ids": [1, 3]},
                         "observation": "Medium caption (1, 3) [128.0s-192.0s]: x", "valid": True},
                        {"model": "<think>t</think><answer>A</answer>",
                         "action": {"name": "answer", "text": "A", "letter": "A"}, "observation": "", "valid": True}],
              "answer": "A", "correct": True}


def touch(path: Path, text: str = "") -> Path:
    """A file with `text`, its folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


LAYOUTS = [
    # (files to make, path passed, kind found, file found)
    (["eval/trajectories.jsonl"], "", "questions", "eval/trajectories.jsonl"),
    (["trajectories/trajectories.jsonl"], "", "questions", "trajectories/trajectories.jsonl"),
    (["trajectories.jsonl"], "", "questions", "trajectories.jsonl"),
    (["rollouts/rollouts.jsonl"], "", "records", "rollouts/rollouts.jsonl"),
    (["rollouts/2.jsonl", "rollouts/10.jsonl", "rollouts/9.jsonl"], "", "dump", "rollouts/10.jsonl"),
    (["validation/0.jsonl", "validation/5.jsonl"], "", "dump", "validation/5.jsonl"),
    (["validation/0.jsonl", "validation/5.jsonl"], "validation/0.jsonl", "dump", "validation/0.jsonl"),
    (["rollouts/3.jsonl"], "rollouts", "dump", "rollouts/3.jsonl"),
    (["x/mine.jsonl"], "x/mine.jsonl", "questions", "x/mine.jsonl"),
]


@pytest.mark.parametrize(("files", "given", "kind", "found"), LAYOUTS)
def test_find_source(files: list[str], given: str, kind: str, found: str, tmp_path: Path) -> None:
    """A run folder, a stage folder or a file: the newest dump of a dump folder."""
    for name in files:
        touch(tmp_path / name)
    source = find_source(tmp_path / given)
    assert (source.kind, source.path) == (kind, tmp_path / found)


@pytest.mark.parametrize(("found", "output"), [("eval/trajectories.jsonl", "eval/view.html"),
                                               ("rollouts/rollouts.jsonl", "rollouts/view.html"),
                                               ("rollouts/12.jsonl", "rollouts/view-step12.html")])
def test_default_output_is_beside_the_source(found: str, output: str, tmp_path: Path) -> None:
    """Each run's page stays in its own folder; a dump's names its step."""
    touch(tmp_path / found)
    assert find_source(tmp_path).default_output() == tmp_path / output


def test_a_folder_without_rollouts_says_what_was_looked_for(tmp_path: Path) -> None:
    """An empty folder and a missing path are named, with what a source is."""
    with pytest.raises(ViewError, match=r"holds no rollouts to show: looked for trajectories.jsonl .*eval/"):
        find_source(tmp_path)
    with pytest.raises(ViewError, match="no such file or folder"):
        find_source(tmp_path / "nope")


BAD_FILES = [
    ("trajectories.jsonl", json.dumps(TRAJECTORY) + "\n{oops\n", r"trajectories.jsonl:2: not JSON"),
    ("trajectories.jsonl", json.dumps({**TRAJECTORY, "width": "four"}) + "\n", r":1: field width='four'"),
    ("rollouts.jsonl", json.dumps({"group": 0, "text": "x"}) + "\n", r"rollouts.jsonl:1: .*without its question"),
    ("rollouts.jsonl", json.dumps({"group": 0, "text": "x", "extra_info": {"width": 4}}) + "\n",
     r"rollouts.jsonl:1: extra_info.video_uid must be a non-empty string"),
    ("rollouts.jsonl", "[1, 2]\n", r"rollouts.jsonl:1: expected a JSON object, got list"),
]


@pytest.mark.parametrize(("name", "text", "message"), BAD_FILES)
def test_a_bad_file_is_named_with_its_line(name: str, text: str, message: str, tmp_path: Path) -> None:
    """Every reading error names the file and line and what was expected."""
    touch(tmp_path / name, text)
    with pytest.raises(ViewError, match=message):
        build_page([tmp_path / name])


def test_dump_lines_are_checked_and_joined_to_the_rl_data(tmp_path: Path) -> None:
    """A dump line without its fields, or whose prompt is in none of the RL rows, is named."""
    dump = touch(tmp_path / "rollouts" / "1.jsonl", json.dumps({"input": "x", "score": 0}) + "\n")
    with pytest.raises(ViewError, match=r"1.jsonl:1: missing output"):
        dump_items(dump, {})
    touch(dump, json.dumps({"input": "<|im_start|>user\nQ<|im_end|>", "output": "o", "score": 0.0}) + "\n")
    with pytest.raises(ViewError, match=r"1.jsonl:1: its prompt's user turn is in none of the RL data's 1 rows"):
        dump_items(dump, {"other": {}}, algorithm=None)
    with pytest.raises(ViewError, match=r"no config.yaml in .* pass it with --data"):
        build_page([tmp_path])
    touch(tmp_path / "config.yaml", "rl:\n  algorithm: grpo\n  data:\n    train_files: /nowhere/train.parquet\n")
    with pytest.raises(ViewError, match=r"the RL data /nowhere/train.parquet is not there"):
        build_page([tmp_path])


def test_records_group_in_group_order(tmp_path: Path) -> None:
    """The preflight's records become one item per group, their rollouts in file order."""
    extra = {"width": 4, "duration": 1024.0, "options": ["a", "b"], "clue_intervals": [], "question_id": "q",
             "video_uid": "v", "question": "Which?"}
    lines = [{"group": group, "text": "<think>t</think><answer>A</answer>", "extra_info": extra, "ground_truth": "A",
              "score": float(k), "reward": {}, "advantage": 0.0} for group, k in ((1, 0), (0, 1), (1, 2))]
    items = record_items(touch(tmp_path / "rollouts.jsonl", "".join(json.dumps(line) + "\n" for line in lines)))
    assert [[e.reward["score"] for e in item.episodes] for item in items] == [[1.0], [0.0, 2.0]]
    assert all(e.correct for item in items for e in item.episodes)


def test_two_runs_compare_only_question_runs(tmp_path: Path) -> None:
    """view A B with a preflight among them is refused, naming both."""
    touch(tmp_path / "a" / "trajectories.jsonl", json.dumps(TRAJECTORY) + "\n")
    touch(tmp_path / "b" / "rollouts.jsonl")
    with pytest.raises(ViewError, match="two runs compare only as eval or trajectories runs"):
        build_page([tmp_path / "a", tmp_path / "b"])


@pytest.mark.parametrize("text", ["</script><script>alert(1)</script>", "<!--", "a & b", "\u2028\u2029", "<|im_end|>"])
def test_script_json_never_holds_markup(text: str) -> None:
    """The page's JSON holds no `<`, `>` or `&` (so nothing closes its block) and reads back as the same data."""
    encoded = script_json({"text": text})
    assert not set("<>&\u2028\u2029") & set(encoded)
    assert json.loads(encoded) == {"text": text}


def test_the_page_refuses_every_load(tmp_path: Path) -> None:
    """The page's policy allows no request, only its own inline style and script."""
    touch(tmp_path / "trajectories.jsonl", json.dumps(TRAJECTORY) + "\n")
    page, _ = build_page([tmp_path])
    html = render(page)
    assert "default-src 'none'" in html and "http" not in html.replace("http-equiv", "").replace(
        "http://www.w3.org/2000/svg", "")


def test_cli_writes_the_page_and_names_a_bad_source(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`python -m launch view`: exit 0 and the page's path; exit 2 with one error line for a bad source."""
    touch(tmp_path / "eval" / "trajectories.jsonl", json.dumps(TRAJECTORY) + "\n")
    assert view.main([str(tmp_path)]) == 0
    assert (tmp_path / "eval" / "view.html").is_file()
    assert "1 rows" in capsys.readouterr().err
    assert view.main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
