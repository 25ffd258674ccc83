"""Questions evaluation cannot play are rejected by the RL builder's own checks, each naming its file and row.

Tiny CG-Bench files and caption trees are written per test; no model or VLM is started.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.tool_world import caption_tree_data
from tools.agent.run import load_questions


def cg_record(uid: str, qid: str, **overrides: object) -> dict:
    """One CG-Bench row about video `uid` (80 s, width 3)."""
    return {"qid": qid, "video_uid": uid, "question": "What is shown?", "choices": ["a", "b", "c", "d"],
            "right_answer": "B", "clue_intervals": [[10.0, 20.0]], "duration": 80.0, **overrides}


def test_unplayable_questions_are_rejected_naming_the_file(tmp_path: Path) -> None:
    """A Latin-1 caption file, a repeated id and clues after the video are rejected by reason; the rest play."""
    captions = tmp_path / "captions"
    captions.mkdir()
    (captions / "good.json").write_text(json.dumps(caption_tree_data(3, 80.0, lambda ids: f"segment {ids}")))
    (captions / "latin.json").write_bytes('{"width": 3, "captions": "caf\u00e9"}'.encode("latin-1"))
    records = [cg_record("good", "q1"), cg_record("latin", "q2"), cg_record("good", "q1"),
               cg_record("good", "q4", clue_intervals=[[100.0, 120.0]]), cg_record("good", "q5")]
    annotations = tmp_path / "a.json"
    annotations.write_text(json.dumps(records))
    spec = {"annotations": str(annotations), "format": "cgbench", "data_source": "demo", "caption_dir": str(captions)}
    played, rejected = load_questions(spec, 5)
    assert [row.id for row in played] == ["q1", "q5"]
    assert [(r["row"], r["id"], r["reason"]) for r in rejected] == [
        (2, "q2", "caption_tree"), (3, "q1", "duplicate_id"), (4, "q4", "reward_input")]
    assert all(r["detail"].startswith(f"{annotations} row {r['row']}: ") for r in rejected)
    assert f"{captions / 'latin.json'}: not valid UTF-8" in rejected[0]["detail"]
