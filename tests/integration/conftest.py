"""Fixtures of the integration tests that play the demo world: the world itself and its scripted VLM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.fake_vlm import FakeVLM
from tools.environment import geometry, prompts


@dataclass(frozen=True)
class Demo:
    """The cached demo world: its folder and its scripted (correct) trajectories, in file order."""

    cache: Path
    world: Path
    records: list[dict]

    @property
    def ids(self) -> list[str]:
        """Every question id, in annotation order."""
        return [question["qid"] for question in json.loads((self.world / "annotations.json").read_text())]

    def by_id(self) -> dict[str, dict]:
        """The scripted trajectory of each question id."""
        return {record["id"]: record for record in self.records}


@pytest.fixture(scope="module")
def demo(tiny_cache: Path) -> Demo:
    """The demo world of the session's cache (LONGVIDEO_R1_CACHE points at it)."""
    world = tiny_cache / "demo" / "world"
    records = [json.loads(line) for line in (world / "trajectories.jsonl").read_text().splitlines()]
    assert len(records) == 32
    return Demo(tiny_cache, world, records)


def vlm_answers(records: list[dict]) -> dict[str, str]:
    """What the demo world's scripted VLM answered, keyed by the exact text video_qa sends with the frames."""
    answers = {}
    for record in records:
        for turn in record["turns"]:
            action = turn["action"]
            if action["name"] == "video_qa":
                start, end = geometry.time_range(tuple(action["ids"]), record["width"], record["duration"])
                text = turn["observation"].removeprefix("<information>").removesuffix("</information>")
                answers[prompts.vlm_question(action["query"], start, end)] = text
    return answers


@pytest.fixture(scope="module")
def demo_vlm(demo: Demo) -> Iterator[FakeVLM]:
    """A loopback VLM answering each video_qa of the demo as the demo world's scripted VLM did."""
    answers = vlm_answers(demo.records)

    def answer(body: dict[str, Any]) -> str:
        content = body["messages"][-1]["content"]
        if not any(part.get("type") == "image_url" for part in content):
            raise ValueError("video_qa sent no frames")
        return answers[content[-1]["text"]]

    with FakeVLM(answer=answer, model="demo-vlm") as server:
        yield server
