"""`python -m launch view` pages in a real headless chromium: the DOM against the data, filters, hostile text, scale.

Pages are built by the real command from the demo world's trajectories (and variants of them made
here: wrong answers, refused turns, hostile captions, 10,000 questions, a second run). Every page
must make no request beyond its own file. The eval's and the preflight's own `view.html` are
checked in test_agent_stages.py and test_rollouts_stage.py.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.browser import browser, row_count, set_filter, visible_rows  # noqa: F401
from tools.demo import world as demo_world
from tools.environment.trajectory import read_trajectories

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ('<script>window.__pwned = 1</script><img src="http://192.0.2.1/x.png" onerror="window.__pwned = 2">'
           '</pre></script><b>bold?</b><!-- <|im_end|> &amp; \u2028')


def view(*args: object) -> subprocess.CompletedProcess:
    """`python -m launch view ARGS` from the project root; fails the test unless it exits 0."""
    done = subprocess.run([sys.executable, "-m", "launch", "view", *map(str, args)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """Records as a trajectories.jsonl."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The demo world's 32 scripted trajectories."""
    world = demo_world.ensure(tmp_path_factory.mktemp("viewer") / "world")
    return [json.loads(line) for line in (world / "trajectories.jsonl").read_text().splitlines()]


def refused_turn() -> dict:
    """A turn the tool refuses: an id out of range at width 4."""
    return {"model": "<think>Try far.</think><tool>get_caption((9, 9))</tool>",
            "action": {"name": "get_caption", "ids": [9, 9]},
            "observation": "get_caption((9, 9)): h=9 in (9, 9) is out of range", "valid": False}


@pytest.fixture(scope="module")
def mixed(records: list[dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo trajectories with every 4th answered wrong and every 5th holding a refused turn first."""
    changed = copy.deepcopy(records)
    for position, record in enumerate(changed):
        if position % 4 == 1:
            wrong = next(letter for letter in "ABCD" if letter != record["ground_truth"])
            record["turns"][-1]["model"] = f"<think>Guess.</think><answer>{wrong}</answer>"
            record["turns"][-1]["action"] = {"name": "answer", "text": wrong, "letter": wrong}
            record.update(answer=wrong, correct=False)
        if position % 5 == 2:
            record["turns"].insert(0, refused_turn())
        if position % 2:
            record["data_source"] = "demo_b"
    return write_jsonl(tmp_path_factory.mktemp("mixed") / "eval" / "trajectories.jsonl", changed)


def served_visits(record: dict) -> list[tuple[float, float]]:
    """The time ranges of the calls the environment served, in order (what the timeline must highlight)."""
    from tools.environment import geometry

    return [geometry.time_range(tuple(turn["action"]["ids"]), record["width"], record["duration"])
            for turn in record["turns"] if turn["valid"] and turn["action"]["name"] != "answer"]


def test_each_question_highlights_its_visits_and_clues(mixed: Path, browser) -> None:  # noqa: F811
    """Per question: one numbered highlight per served call at its time range, one clue band per clue interval."""
    view(mixed.parent)
    page_file = mixed.parent / "view.html"
    trajectories = [item for _, item in read_trajectories(mixed)]
    with browser.open(page_file) as opened:
        assert opened.network_requests() == [] and opened.errors == []
        assert row_count(opened) == len(trajectories)
        for position, trajectory in enumerate(trajectories):
            opened.show(position)
            visits = opened.page.eval_on_selector_all(
                "#detail-view .visit", "nodes => nodes.map(n => [Number(n.dataset.n), Number(n.dataset.start), "
                "Number(n.dataset.end)])")
            expected = served_visits(trajectory.to_dict())
            assert [v[0] for v in visits] == list(range(1, len(expected) + 1))
            assert [value for visit in visits for value in visit[1:]] == pytest.approx(
                [value for interval in expected for value in interval], abs=1e-3)
            clues = opened.page.eval_on_selector_all(
                "#detail-view .clue", "nodes => nodes.map(n => [Number(n.dataset.start), Number(n.dataset.end)])")
            assert clues == [list(interval) for interval in trajectory.clue_intervals]
            refused = opened.page.eval_on_selector_all("#detail-view .turn.status-refused .reason",
                                                       "nodes => nodes.map(n => n.textContent)")
            assert len(refused) == sum(not turn.valid for turn in trajectory.turns)
            assert all("out of range" in text for text in refused)
            widths = opened.page.eval_on_selector_all(".level", "nodes => nodes.map(n => Number(n.dataset.segments))")
            assert widths == [trajectory.width ** level for level in (1, 2, 3)]
        opened.home()
        assert opened.network_requests() == []


def test_filters_change_the_visible_rows(mixed: Path, browser) -> None:  # noqa: F811
    """Wrong only, invalid turns, reward below, data source: the row count is what the data says."""
    view(mixed.parent)
    rows = json.loads(Path(mixed.parent / "view.html").read_text().split('id="index-data">')[1].split("</script>")[0])
    rows = rows["rows"]
    with browser.open(mixed.parent / "view.html") as opened:
        set_filter(opened, "correct:check", True)
        assert row_count(opened) == sum(not row["correct"] for row in rows) == 8
        assert set(visible_rows(opened)) == {row["id"] for row in rows if not row["correct"]}
        set_filter(opened, "invalid:check", True)
        assert row_count(opened) == sum(not row["correct"] and row["invalid"] > 0 for row in rows)
        set_filter(opened, "correct:check", False)
        assert row_count(opened) == sum(row["invalid"] > 0 for row in rows) == 6
        set_filter(opened, "invalid:check", False)
        threshold = sorted(row["reward"] for row in rows)[len(rows) // 2]
        set_filter(opened, "reward:below", threshold)
        assert row_count(opened) == sum(row["reward"] < threshold for row in rows) > 0
        set_filter(opened, "reward:below", "")
        set_filter(opened, "data_source:select", "demo_b")
        assert row_count(opened) == 16
        assert opened.network_requests() == []


def column(opened, key: str) -> list:
    """The cells of column `key` of the rows in the DOM, numbers as numbers."""
    return opened.page.eval_on_selector_all(f"#rows .index-row span[data-key='{key}']",
                                            "s => s.map(x => isNaN(+x.textContent) ? x.textContent : +x.textContent)")


def test_sorting_orders_the_rows(mixed: Path, browser) -> None:  # noqa: F811
    """A click on a header sorts by it; a second click reverses."""
    view(mixed.parent)
    with browser.open(mixed.parent / "view.html") as opened:
        opened.page.click("#table-head span[data-key='calls']")
        assert column(opened, "calls") == sorted(column(opened, "calls"))
        opened.page.click("#table-head span[data-key='calls']")
        assert column(opened, "calls") == sorted(column(opened, "calls"), reverse=True)
        opened.page.click("#table-head span[data-key='id']")
        assert column(opened, "id") == sorted(column(opened, "id"))


def test_hostile_text_renders_as_text_and_runs_nothing(records: list[dict], tmp_path: Path, browser) -> None:  # noqa: F811
    """Script, markup and tag look-alikes in the question, options, thoughts and observations stay literal text."""
    record = copy.deepcopy(records[0])
    record["question"] = f"Which? {HOSTILE}"
    record["options"][0] = HOSTILE
    record["id"] = "hostile-<script>1</script>"
    for turn in record["turns"]:
        turn["model"] = turn["model"].replace("<think>", f"<think>{HOSTILE} ", 1)
        if turn["observation"]:
            turn["observation"] += HOSTILE
    source = write_jsonl(tmp_path / "eval" / "trajectories.jsonl", [record])
    view(source)
    html = (tmp_path / "eval" / "view.html").read_text()
    assert "<script>window.__pwned" not in html and "<img" not in html
    with browser.open(tmp_path / "eval" / "view.html") as opened:
        opened.show(0)
        opened.page.eval_on_selector_all("#detail-view details", "nodes => nodes.forEach(n => n.open = true)")
        assert opened.page.evaluate("window.__pwned") is None
        markup = opened.page.eval_on_selector_all("#detail-view :is(img, b, script)", "nodes => nodes.length")
        assert markup == 0
        text = opened.page.inner_text("#detail-view")
        assert text.count("<script>window.__pwned = 1</script>") >= 6
        assert '<b>bold?</b>' in text and "hostile-<script>1</script>" in text
        assert opened.network_requests() == [] and opened.errors == []


def test_ten_thousand_questions_render_only_the_visible_rows(records: list[dict], tmp_path: Path,
                                                              browser) -> None:  # noqa: F811
    """10,000 questions: a few dozen rows in the DOM, scrolling reaches the last, a filter answers at once."""
    many = []
    for position in range(10_000):
        record = copy.deepcopy(records[position % len(records)])
        record["id"] = f"q{position:05d}"
        if position % 3 == 0:
            record["answer"], record["correct"] = None, False
        many.append(record)
    source = write_jsonl(tmp_path / "eval" / "trajectories.jsonl", many)
    started = time.perf_counter()
    view(source)
    built = time.perf_counter() - started
    page_file = tmp_path / "eval" / "view.html"
    with browser.open(page_file) as opened:
        loaded = opened.page.evaluate("performance.now()")
        assert row_count(opened) == 10_000
        assert 10 < len(visible_rows(opened)) < 120
        opened.page.eval_on_selector("#viewport", "v => { v.scrollTop = v.scrollHeight; }")
        opened.page.wait_for_function("document.querySelector('#rows .index-row:last-child').dataset.id === 'q09999'")
        set_filter(opened, "correct:check", True)
        assert row_count(opened) == 3334
        assert len(visible_rows(opened)) < 120
        opened.show(9_999)
        assert opened.page.inner_text("#detail-view h2") == "q09999"
        assert opened.network_requests() == []
    print(f"\n10,000 questions: page {page_file.stat().st_size / 1e6:.1f} MB, built in {built:.1f} s, "
          f"loaded in {loaded / 1000:.2f} s")


def test_two_runs_side_by_side(records: list[dict], mixed: Path, tmp_path: Path, browser) -> None:  # noqa: F811
    """`view A B`: one row per shared question with compare's agreement; the detail shows both timelines."""
    first = write_jsonl(tmp_path / "a" / "eval" / "trajectories.jsonl", records)
    output = tmp_path / "both.html"
    view(first.parent.parent, mixed.parent.parent, "--output", output)
    with browser.open(output) as opened:
        assert row_count(opened) == 32
        set_filter(opened, "agreement:check", True)
        assert row_count(opened) == 8
        assert set(column(opened, "agreement")) == {"only A right"}
        opened.show(1)
        labels = opened.page.eval_on_selector_all("#detail-view .episode", "e => e.map(x => x.dataset.label)")
        assert labels == ["A", "B"]
        assert opened.page.eval_on_selector_all("#detail-view .timeline", "t => t.length") == 2
        assert opened.network_requests() == []


def test_screenshots_of_the_index_and_a_question(mixed: Path, browser) -> None:  # noqa: F811
    """The README's pictures: the index and one question (saved under the test artifacts)."""
    view(mixed.parent)
    with browser.open(mixed.parent / "view.html", width=1200, height=760) as opened:
        index = opened.screenshot("viewer-index.png")
        opened.show(2)
        question = opened.screenshot("viewer-question.png")
    for path in (index, question):
        assert 5_000 < path.stat().st_size < 200_000
