"""`python -m launch eval|trajectories` end to end on the demo benchmark, with scripted stand-ins for the models.

The policy is the demo world's scripted teacher (tests/fixtures/scripted_policy.py) behind a loopback OpenAI server
(tests/fixtures/fake_vlm.py); video_qa asks a second loopback server that answers what the demo world's scripted
VLM answered, so a correct run reproduces the demo trajectories turn for turn. Runs go through the real
launcher: in this process (`launch.cli.main`, faster) and as real subprocesses (`python -m launch`).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from launch.rundir import DONE_MARKER
from tests.conftest import PROJECT_ROOT, launch
from tests.fixtures.browser import browser, row_count  # noqa: F401
from tests.fixtures.fake_vlm import FakeVLM
from tests.fixtures.scripted_policy import ScriptedPolicy, question_of
from tests.integration.conftest import Demo
from tests.launch.test_cli import Result, run_main
from tools.agent.eval_report import TIMING_FIELDS
from tools.builders.sft_report import CHAT_ROLES
from tools.environment import geometry
from tools.environment.trajectory import trajectory_from_dict

pytestmark = pytest.mark.slow

MARKER_ENV = "LONGVIDEO_R1_TEST_AGENT_STAGES"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------------------------
# The demo world and its stand-ins.


class Policy(ScriptedPolicy):
    """The demo's scripted turns, with planted misbehaviour per question id (`modes`).

    Modes: `http` (HTTP 500 from the first request), `http@N` (500 from turn N), `timeout@N` (turn N answers
    only after the client gave up), `malformed` (a 200 without choices; served by PolicyServer),
    `wrong_first` (the first episode answers a wrong letter), `always_wrong`. `delays` slows a question's turns.
    Every request is recorded with the question id and the reply (None when it failed).
    """

    def __init__(self, records: list[dict]) -> None:
        super().__init__({record["question"]: [turn["model"] for turn in record["turns"]] for record in records})
        self.ids = {record["question"]: record["id"] for record in records}
        self.truth = {record["id"]: record["ground_truth"] for record in records}
        self.modes: dict[str, str] = {}
        self.delays: dict[str, float] = {}
        self.released = threading.Event()
        self.calls: list[tuple[str, dict, str | None]] = []

    def _record(self, question_id: str, body: dict, reply: str | None) -> None:
        with self._lock:
            self.calls.append((question_id, body, reply))

    def requests(self) -> Counter:
        """Requests received per question id."""
        with self._lock:
            return Counter(question_id for question_id, _, _ in self.calls)

    def calls_of(self, question_id: str) -> list[tuple[dict, str | None]]:
        """(body, reply) of every request about one question, oldest first."""
        with self._lock:
            return [(body, reply) for qid, body, reply in self.calls if qid == question_id]

    def forget(self) -> None:
        """Drop the recorded requests."""
        with self._lock:
            self.calls.clear()
            self.bodies.clear()

    def wrong_letter(self, question_id: str) -> str:
        """A letter that is not the ground truth."""
        return "A" if self.truth[question_id] != "A" else "B"

    def __call__(self, body: dict[str, Any]) -> str:
        question_id = self.ids[question_of(body)]
        mode = self.modes.get(question_id, "")
        step = sum(1 for message in body["messages"] if message["role"] == "assistant")
        if mode == "http" or (mode.startswith("http@") and step >= int(mode[5:])):
            self._record(question_id, body, None)
            raise RuntimeError(f"planted server error for {question_id}")
        if mode.startswith("timeout@") and step >= int(mode[8:]):
            self._record(question_id, body, None)
            # No answer before the client's deadline (released at teardown, so the server closes at once).
            self.released.wait(10)
            raise TimeoutError(f"planted stall for {question_id}")
        if self.delays.get(question_id):
            time.sleep(self.delays[question_id])
        with self._lock:
            episode = sum(1 for qid, past, _ in self.calls
                          if qid == question_id and not any(m["role"] == "assistant" for m in past["messages"]))
            episode += step == 0
        reply = super().__call__(body)
        wrong = mode == "always_wrong" or (mode == "wrong_first" and episode == 1)
        if wrong and "<answer>" in reply:
            reply = reply.replace(f"<answer>{self.truth[question_id]}</answer>",
                                  f"<answer>{self.wrong_letter(question_id)}</answer>")
        self._record(question_id, body, reply)
        return reply


class PolicyServer(FakeVLM):
    """The loopback server of a Policy; questions in mode `malformed` get a 200 that is no chat completion."""

    def __init__(self, policy: Policy) -> None:
        super().__init__(answer=policy, model="policy")
        self.policy = policy

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        question_id = self.policy.ids[question_of(body)]
        if self.policy.modes.get(question_id) == "malformed":
            self.policy._record(question_id, body, None)
            return {"id": "chatcmpl-planted", "object": "chat.completion", "created": 0, "model": "policy",
                    "choices": []}
        return super()._completion(body)

    def close(self) -> None:
        self.policy.released.set()
        super().close()


# ---------------------------------------------------------------------------------------------------------------
# Running the launcher.


def eval_argv(root: Path, name: str, policy_url: str, vlm_url: str, *extra: str) -> list[str]:
    """`eval recipe=tiny benchmark=demo` against running endpoints (nothing served by the Plan)."""
    return ["eval", "recipe=tiny", "benchmark=demo", "eval.serve=false", f"eval.endpoint.base_url={policy_url}",
            f"tool.default.vlm.base_url={vlm_url}", "tool.default.vlm.max_retries=0", f"run_root={root}",
            f"name={name}", *extra]


def trajectories_argv(root: Path, name: str, policy_url: str, vlm_url: str, *extra: str) -> list[str]:
    """`trajectories recipe=tiny benchmark=demo` with the teacher at `policy_url`."""
    return ["trajectories", "recipe=tiny", "benchmark=demo", f"trajectories.endpoint.base_url={policy_url}",
            f"tool.default.vlm.base_url={vlm_url}", "tool.default.vlm.max_retries=0", f"run_root={root}",
            f"name={name}", *extra]


def jsonl(path: Path) -> list[dict]:
    """The objects of a JSONL file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Run:
    """A finished (or failed) agent run: its directory, the launcher's result and the policy it asked."""

    dir: Path
    result: Result
    policy: Policy
    stage: str = "eval"

    @property
    def out(self) -> Path:
        return self.dir / self.stage

    def results(self) -> dict:
        return json.loads((self.out / "results.json").read_text())

    def trajectories(self) -> list[dict]:
        return jsonl(self.out / "trajectories.jsonl")


def totals(results: dict) -> dict:
    """What two runs of the same script must agree on: every count and metric but the clock."""
    keep = ("questions", "evaluated", "correct", "accuracy", "accuracy_of_evaluated", "answered", "failed",
            "rejected", "errors_by_kind", "per_category", "turns", "tool_calls", "get_caption_calls",
            "video_qa_calls", "invalid_turns", "location_f1", "tokens_per_question", "accuracy_by_tool_calls")
    rows = sorted(({k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in results["per_question"]),
                  key=lambda row: row["id"])
    return {**{key: results[key] for key in keep}, "per_question": rows}


def check_usage(trajectory: dict, policy: Policy) -> None:
    """The trajectory's tokens are exactly what the server counted over every request about its question."""
    calls = policy.calls_of(trajectory["id"])
    prompt = sum(len(json.dumps(body["messages"]).split()) for body, _ in calls)
    completion = sum(len(reply.split()) for _, reply in calls if reply)
    assert trajectory["tokens"] == {"prompt": prompt, "completion": completion}, trajectory["id"]


@pytest.fixture(scope="module")
def baseline(demo: Demo, demo_vlm: FakeVLM, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One uninterrupted eval of the whole demo benchmark with the scripted policy."""
    root = tmp_path_factory.mktemp("baseline") / "runs"
    policy = Policy(demo.records)
    with PolicyServer(policy) as server:
        result = run_main(*eval_argv(root, "base", server.base_url, demo_vlm.base_url))
    return Run(root / "eval" / "tiny" / "base", result, policy)


SYSTEM_PROMPT = "A released checkpoint's prompt: width {width}, at most {max_turns} tool calls, {width} again."


@pytest.fixture(scope="module")
def limited(demo: Demo, demo_vlm: FakeVLM, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The demo benchmark as a smoke test (benchmark.limit=5), with a system prompt file of the user's."""
    folder = tmp_path_factory.mktemp("limited")
    prompt = folder / "system.txt"
    prompt.write_text(SYSTEM_PROMPT)
    root = folder / "runs"
    policy = Policy(demo.records)
    with PolicyServer(policy) as server:
        result = run_main(*eval_argv(root, "five", server.base_url, demo_vlm.base_url, "benchmark.limit=5",
                                     f"eval.system_prompt_file={prompt}"))
    return Run(root / "eval" / "tiny" / "five", result, policy)


# ---------------------------------------------------------------------------------------------------------------
# eval


def test_eval_end_to_end_reproduces_the_demo_script(baseline: Run, demo: Demo, demo_vlm: FakeVLM) -> None:
    """eval on the demo: 32/32, the demo's turn and tool-call counts, and each trajectory turn for turn."""
    assert baseline.result.code == 0, baseline.result.out + baseline.result.err
    assert (baseline.dir / DONE_MARKER).is_file()
    out = baseline.out
    for name in ("trajectories.jsonl", "results.json", "results.md", "results.png", "questions.jsonl",
                 "rejected.jsonl", "settings.json"):
        assert (out / name).is_file(), name
    assert not (out / "errors.jsonl").exists()
    assert (out / "results.png").read_bytes().startswith(PNG_MAGIC)
    assert (out / "results.png").stat().st_size > 1000
    assert "# eval on demo" in (out / "results.md").read_text()
    assert "100.00% (32/32)" in (out / "results.md").read_text()
    assert (out / "rejected.jsonl").read_text() == ""
    assert sorted(row["id"] for row in jsonl(out / "questions.jsonl")) == sorted(demo.ids)

    results = baseline.results()
    turns = [len(record["turns"]) for record in demo.records]
    calls = Counter(str(count - 1) for count in turns)
    assert (results["benchmark"], results["mode"]) == ("demo", "eval")
    assert results["questions"] == results["evaluated"] == results["correct"] == results["answered"] == 32
    assert results["accuracy"] == results["accuracy_of_evaluated"] == 1.0
    assert (results["failed"], results["rejected"], results["errors_by_kind"]) == (0, 0, {})
    assert results["location_f1"]["questions"] == 32
    assert 0 < results["location_f1"]["mean"] <= 1
    assert results["turns"]["mean"] == round(statistics.fmean(turns), 4)
    assert results["turns"]["histogram"] == dict(sorted(Counter(str(t) for t in turns).items()))
    assert results["tool_calls"]["mean"] == round(statistics.fmean(turns) - 1, 4)
    assert results["tool_calls"]["histogram"] == dict(sorted(calls.items()))
    # video_qa was served (one per question in the script), nothing was refused.
    assert results["video_qa_calls"]["mean"] == 1.0
    assert results["invalid_turns"]["mean"] == 0.0
    assert results["trajectories"] == str(out / "trajectories.jsonl")

    lines = (out / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 32
    scripted = demo.by_id()
    for line in lines:
        data = json.loads(line)
        trajectory = trajectory_from_dict(data)
        record = scripted[trajectory.id]
        # The model turns, the actions, every observation (captions and video_qa answers) and validity.
        assert data["turns"] == record["turns"], trajectory.id
        assert (trajectory.answer, trajectory.correct, trajectory.hinted) == (record["ground_truth"], True, False)
        for key in ("data_source", "video_uid", "question", "options", "ground_truth", "width", "duration",
                    "clue_intervals"):
            assert data[key] == record[key], (trajectory.id, key)
        assert set(trajectory.timings) == {"model_s", "get_caption_s", "video_qa_s", "total_s"}
        assert 0 < trajectory.timings["model_s"] <= trajectory.timings["total_s"]
        check_usage(data, baseline.policy)
    # One request per scripted turn, each with the eval endpoint's settings.
    assert baseline.policy.requests() == Counter({record["id"]: len(record["turns"]) for record in demo.records})
    for _, body, _ in baseline.policy.calls:
        assert body["model"] == "longvideo-r1"
        assert body["stop"] == ["</tool>", "</answer>"]
        assert body["include_stop_str_in_output"] is True
        assert (body["max_tokens"], body["temperature"], body["top_p"]) == (256, 0.0, 1.0)


def test_eval_writes_its_view_showing_each_question_as_played(baseline: Run, browser) -> None:  # noqa: F811
    """eval/view.html in a real browser: a row per question; per question, the visited segments of results.json in
    order and the trajectory's clue intervals; no request leaves the page."""
    page_file = baseline.out / "view.html"
    assert page_file.is_file()
    per_question = baseline.results()["per_question"]
    clues = {record["id"]: record["clue_intervals"] for record in baseline.trajectories()}
    with browser.open(page_file) as opened:
        assert row_count(opened) == len(per_question) == 32
        opened.screenshot("eval-index.png")
        rows = opened.page.eval_on_selector_all("#rows .index-row", "rows => rows.map(r => Number(r.dataset.i))")
        for position in rows:
            opened.show(position)
            question = opened.page.inner_text("#detail-view h2")
            row = next(row for row in per_question if row["id"] == question)
            visits = opened.page.eval_on_selector_all("#detail-view .visit",
                                                      "nodes => nodes.map(n => n.dataset.ids.split(',').map(Number))")
            assert visits == row["visited"], question
            shown = opened.page.eval_on_selector_all(
                "#detail-view .clue", "nodes => nodes.map(n => [Number(n.dataset.start), Number(n.dataset.end)])")
            assert shown == clues[question]
        opened.screenshot("eval-question.png", full_page=True)
        assert opened.network_requests() == [] and opened.errors == []


def test_eval_conversation_is_the_sft_conversation(baseline: Run, demo: Demo) -> None:
    """What the evaluated model reads is exactly the SFT sample built from the demo script: same prompts, turns."""
    samples = json.loads((demo.cache / "demo" / "sft-user-t15" / "sft.json").read_text())
    by_question = {sample["messages"][1]["value"].split("\n", 1)[0]: sample for sample in samples}
    for record in demo.records:
        body, _ = baseline.policy.calls_of(record["id"])[-1]
        sample = by_question[f"Question: {record['question']}"]
        expected = [{"role": CHAT_ROLES[m["from"]], "content": m["value"]} for m in sample["messages"][:-1]]
        assert body["messages"] == expected, record["id"]


def test_benchmark_limit_plays_exactly_the_first_questions(limited: Run, demo: Demo) -> None:
    """benchmark.limit=5 plays the first 5 questions of the annotations, and nothing else is asked; the user's
    system prompt file is what the model reads."""
    assert limited.result.code == 0, limited.result.out
    assert (limited.dir / DONE_MARKER).is_file()
    first = demo.ids[:5]
    assert sorted(t["id"] for t in limited.trajectories()) == sorted(first)
    assert [row["id"] for row in jsonl(limited.out / "questions.jsonl")] == first
    results = limited.results()
    assert (results["questions"], results["evaluated"], results["correct"], results["failed"]) == (5, 5, 5, 0)
    assert set(limited.policy.requests()) == set(first)
    # eval.system_prompt_file replaces the system prompt, {width} and {max_turns} filled in per question.
    scripted = demo.by_id()
    for qid, body, _ in limited.policy.calls:
        width = scripted[qid]["width"]
        assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT.format(width=width, max_turns=15)}


# ---------------------------------------------------------------------------------------------------------------
# Interruption and resume


def _alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def marked_pids(marker: str) -> list[int]:
    """Live processes whose environment holds MARKER_ENV=marker (the launcher and everything it started)."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0") and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def kill_marked(marker: str, timeout_s: float = 10.0) -> list[int]:
    """SIGKILL every marked process; the ones still alive after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (left := marked_pids(marker)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return marked_pids(marker)


def most_questions_open(policy: Policy) -> int:
    """The most questions in progress at once: begun (first request answered) and not yet at their last one."""
    order = [qid for qid, _, _ in policy.calls]
    spans = {qid: (order.index(qid), len(order) - 1 - order[::-1].index(qid)) for qid in set(order)}
    return max(sum(1 for start, end in spans.values() if start <= i <= end) for i in range(len(order)))


def start_scripted_policy(demo: Demo, tmp_path: Path, stall_s: float) -> tuple[subprocess.Popen, str]:
    """`python -m tests.fixtures.scripted_policy` serving the demo script; the process and its base URL."""
    port_file = tmp_path / "policy.port"
    process = subprocess.Popen([sys.executable, "-m", "tests.fixtures.scripted_policy", "--trajectories",
                                str(demo.world / "trajectories.jsonl"), "--port-file", str(port_file),
                                "--stall", str(stall_s)], cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (port_file.exists() and port_file.read_text().strip().isdigit()):
        assert process.poll() is None, f"the scripted policy exited with {process.returncode}"
        assert time.monotonic() < deadline, "the scripted policy did not start"
        time.sleep(0.05)
    return process, f"http://127.0.0.1:{int(port_file.read_text())}/v1"


def test_rerun_after_interruption_gives_the_same_totals(demo: Demo, demo_vlm: FakeVLM, baseline: Run,
                                                        tmp_path: Path) -> None:
    """SIGKILL mid-run plus a torn last line; `resume=true` replays only the unfinished questions."""
    root = tmp_path / "runs"
    run_dir = root / "eval" / "tiny" / "cut"
    out = run_dir / "eval" / "trajectories.jsonl"
    marker = uuid.uuid4().hex
    policy_process, policy_url = start_scripted_policy(demo, tmp_path, stall_s=0.3)
    log = (tmp_path / "launcher.log").open("w")
    launcher = subprocess.Popen([sys.executable, "-m", "launch",
                                 *eval_argv(root, "cut", policy_url, demo_vlm.base_url, "eval.concurrency=2")],
                                cwd=PROJECT_ROOT, env={**os.environ, MARKER_ENV: marker}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and out.read_bytes().count(b"\n") >= 4):
            assert launcher.poll() is None, (tmp_path / "launcher.log").read_text()
            assert time.monotonic() < deadline, "no 4 finished questions within 120 s"
            time.sleep(0.05)
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait(timeout=30)
        # The executor starts the agent loop in a session of its own: kill it too, as a crash would.
        assert kill_marked(marker) == []
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait(timeout=30)
        kill_marked(marker)
        policy_process.terminate()
        policy_process.wait(timeout=30)
        log.close()
    assert not (run_dir / DONE_MARKER).exists()
    written = out.read_bytes()
    before = written[:written.rfind(b"\n") + 1].decode().splitlines()
    finished = [json.loads(line)["id"] for line in before]
    assert 4 <= len(finished) < 32
    # A write torn by the interruption: half a line, no newline.
    with out.open("ab") as handle:
        handle.write(b'{"id": "' + demo.ids[-1].encode() + b'", "data_source": "de')

    policy = Policy(demo.records)
    with PolicyServer(policy) as server:
        resumed = run_main(*eval_argv(root, "cut", server.base_url, demo_vlm.base_url, "eval.concurrency=2",
                                      "resume=true"))
        in_flight = server.max_in_flight
    assert resumed.code == 0, resumed.out + resumed.err
    assert (run_dir / DONE_MARKER).is_file()
    assert "removing a partial last line" in resumed.out
    # eval.concurrency=2: at most two requests, and two questions, in progress at any time.
    assert in_flight <= 2
    assert most_questions_open(policy) <= 2
    lines = out.read_text().splitlines()
    assert len(lines) == 32
    assert lines[:len(before)] == before
    ids = [trajectory_from_dict(json.loads(line)).id for line in lines]
    assert sorted(ids) == sorted(demo.ids)
    # The questions finished before the kill were not asked again; every other one was played in full.
    scripted = demo.by_id()
    assert policy.requests() == Counter({qid: len(scripted[qid]["turns"]) for qid in demo.ids
                                         if qid not in finished})
    assert totals(json.loads((run_dir / "eval" / "results.json").read_text())) == totals(baseline.results())


# ---------------------------------------------------------------------------------------------------------------
# Failures per question


FAILURES = {"http": 0, "http@2": 1, "timeout@1": 2, "malformed": 3}
KINDS = {"http": "http", "http@2": "http", "timeout@1": "timeout", "malformed": "malformed_reply"}
TURNS = {"http": 0, "http@2": 2, "timeout@1": 1, "malformed": 0}


def test_failed_questions_are_recorded_and_retried_on_resume(demo: Demo, demo_vlm: FakeVLM, tmp_path: Path) -> None:
    """HTTP 500, a timeout and a malformed reply fail only their question; exit 1 without DONE unless tolerated
    (eval.max_failed_questions=4: exactly as many as failed); resume retries only them."""
    root = tmp_path / "runs"
    # Every demo question has 4 or 5 turns, so http@2 and timeout@1 fail mid-episode.
    chosen = {mode: demo.records[7 * index + 3]["id"] for mode, index in FAILURES.items()}
    failing = {qid: mode for mode, qid in chosen.items()}
    policy = Policy(demo.records)
    policy.modes = dict(failing)
    patience = ("eval.endpoint.max_retries=0", "eval.endpoint.timeout_s=2")
    strict_dir = root / "eval" / "tiny" / "strict"
    with PolicyServer(policy) as server:
        strict = run_main(*eval_argv(root, "strict", server.base_url, demo_vlm.base_url, *patience))
        check_failed_run(strict, strict_dir, demo, failing)
        played = jsonl(strict_dir / "eval" / "trajectories.jsonl")
        tolerant = run_main(*eval_argv(root, "tolerant", server.base_url, demo_vlm.base_url, *patience,
                                       "eval.max_failed_questions=4"))
        policy.modes.clear()
        policy.forget()
        resumed = run_main(*eval_argv(root, "strict", server.base_url, demo_vlm.base_url, *patience, "resume=true"))

    tolerant_dir = root / "eval" / "tiny" / "tolerant"
    assert tolerant.code == 0, tolerant.out
    assert (tolerant_dir / DONE_MARKER).is_file()
    tolerant_results = json.loads((tolerant_dir / "eval" / "results.json").read_text())
    assert (tolerant_results["failed"], tolerant_results["correct"]) == (4, 28)
    assert len(jsonl(tolerant_dir / "eval" / "errors.jsonl")) == 4

    assert resumed.code == 0, resumed.out
    assert (strict_dir / DONE_MARKER).is_file()
    scripted = demo.by_id()
    assert policy.requests() == Counter({qid: len(scripted[qid]["turns"]) for qid in failing})
    final = jsonl(strict_dir / "eval" / "trajectories.jsonl")
    assert len(final) == 32
    assert sorted(t["id"] for t in final) == sorted(demo.ids)
    assert final[:28] == played
    results = json.loads((strict_dir / "eval" / "results.json").read_text())
    assert (results["failed"], results["correct"], results["accuracy"]) == (0, 32, 1.0)
    assert results["errors_by_kind"] == {}
    # The failures stay on record; they count no more.
    assert len(jsonl(strict_dir / "eval" / "errors.jsonl")) == 4


def check_failed_run(strict: Result, strict_dir: Path, demo: Demo, failing: dict[str, str]) -> None:
    """A run with 4 failed questions and eval.max_failed_questions=0: exit 1, no DONE, each failure recorded."""
    assert strict.code == 1, strict.out
    assert not (strict_dir / DONE_MARKER).exists()
    assert (strict_dir / "attempts" / "0" / "exit_code").read_text() == "1\n"
    errors = jsonl(strict_dir / "eval" / "errors.jsonl")
    assert sorted(error["id"] for error in errors) == sorted(failing)
    for error in errors:
        mode = failing[error["id"]]
        assert error["kind"] == KINDS[mode], error
        assert error["turns"] == TURNS[mode], error
        assert error["message"] and error["time"]
    played = jsonl(strict_dir / "eval" / "trajectories.jsonl")
    assert sorted(t["id"] for t in played) == sorted(set(demo.ids) - set(failing))
    results = json.loads((strict_dir / "eval" / "results.json").read_text())
    assert (results["questions"], results["evaluated"], results["correct"], results["failed"]) == (32, 28, 28, 4)
    assert results["accuracy"] == round(28 / 32, 6)
    assert results["accuracy_of_evaluated"] == 1.0
    assert results["errors_by_kind"] == dict(Counter(KINDS.values()))
    assert "Failed questions by kind" in (strict_dir / "eval" / "results.md").read_text()


# ---------------------------------------------------------------------------------------------------------------
# trajectories, feeding sft_data


def files_holding(folder: Path, secret: str) -> list[Path]:
    """Every file under `folder` whose bytes contain `secret`."""
    return [path for path in folder.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]


def test_trajectories_end_to_end_feed_sft_data(demo: Demo, demo_vlm: FakeVLM, tmp_path: Path) -> None:
    """`python -m launch trajectories` (subprocess) with a keyed teacher, then `sft_data` on its output: 32 kept,
    the same samples as the demo's own SFT file; the key is used and written nowhere."""
    root = tmp_path / "runs"
    key = f"sk-teacher-{uuid.uuid4().hex}"
    policy = Policy(demo.records)
    with PolicyServer(policy) as server:
        done = launch(*trajectories_argv(root, "teach", server.base_url, demo_vlm.base_url,
                                         "trajectories.endpoint.api_key_env=AGENT_STAGES_TEACHER_KEY"),
                      env={"AGENT_STAGES_TEACHER_KEY": key}, timeout=300)
        requests = server.chat_requests()
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = root / "trajectories" / "demo" / "teach"
    assert (run_dir / DONE_MARKER).is_file()
    output = run_dir / "trajectories" / "trajectories.jsonl"
    trajectories = [trajectory_from_dict(item) for item in jsonl(output)]
    assert sorted(t.id for t in trajectories) == sorted(demo.ids)
    assert all(t.correct and not t.hinted for t in trajectories)
    results = json.loads((run_dir / "trajectories" / "results.json").read_text())
    assert (results["mode"], results["questions"], results["correct"]) == ("trajectories", 32, 32)
    # The run's page to read the trajectories in, one row a question.
    page = (run_dir / "trajectories" / "view.html").read_text()
    assert page.count('<script type="application/json" id="d-') == 32
    # Every question right at its first episode: one request per scripted turn (attempts=3 stops there).
    scripted = demo.by_id()
    assert policy.requests() == Counter({qid: len(scripted[qid]["turns"]) for qid in demo.ids})
    for request in requests:
        assert request.headers["authorization"] == f"Bearer {key}"
        body = request.body
        assert "stop" not in body and "include_stop_str_in_output" not in body
        assert (body["model"], body["max_tokens"], body["temperature"]) == ("gpt-5", 8192, 1.0)
        assert "Hint:" not in body["messages"][1]["content"]
    assert files_holding(run_dir, key) == []
    assert "AGENT_STAGES_TEACHER_KEY" in (run_dir / "config.yaml").read_text()

    built = run_main("sft_data", "recipe=tiny", f"sft_data.input={output}", f"run_root={root}", "name=teach")
    assert built.code == 0, built.out + built.err
    sft_dir = root / "sft_data" / "trajectories" / "teach" / "sft_data"
    report = json.loads((sft_dir / "report.json").read_text())
    assert (report["kept"], report["dropped"], report["dropped_by_reason"]) == (32, 0, {})
    assert (sft_dir / "dropped.jsonl").read_text() == ""
    samples = json.loads((sft_dir / "sft.json").read_text())
    demo_samples = json.loads((demo.cache / "demo" / "sft-user-t15" / "sft.json").read_text())
    assert sorted(map(json.dumps, samples)) == sorted(map(json.dumps, demo_samples))


# Every kind of place a user can pass a secret-looking key: the request body (flat and nested), the W&B section,
# the top level. Each gets its own marker, and what the teacher must receive in its body.
PLANTED_SECRETS = {
    "trajectories.extra_body.api_key": "MARK-api-key",
    "trajectories.extra_body.session_token": "MARK-session-token",
    "trajectories.extra_body.auth.client_secret": "MARK-client-secret",
    "wandb.password": "MARK-wandb-password",
    "hub_token": "MARK-hub-token",
}


def test_planted_secrets_reach_the_teacher_and_no_file(demo: Demo, demo_vlm: FakeVLM, tmp_path: Path) -> None:
    """A secret in every kind of secret-looking key: the teacher's requests carry the body's secrets, and no file
    of the run directory (config, settings, Plan, provenance, logs, results) holds any of them."""
    root = tmp_path / "runs"
    markers = {key: f"{value}-{uuid.uuid4().hex}" for key, value in PLANTED_SECRETS.items()}
    policy = Policy(demo.records)
    with PolicyServer(policy) as server:
        done = launch(*trajectories_argv(root, "planted", server.base_url, demo_vlm.base_url, "benchmark.limit=2",
                                         *(f"+{key}={value}" for key, value in markers.items())), timeout=300)
        requests = server.chat_requests()
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = root / "trajectories" / "demo" / "planted"
    assert (run_dir / DONE_MARKER).is_file()
    assert requests
    for request in requests:
        body = request.body
        assert body["api_key"] == markers["trajectories.extra_body.api_key"]
        assert body["session_token"] == markers["trajectories.extra_body.session_token"]
        assert body["auth"] == {"client_secret": markers["trajectories.extra_body.auth.client_secret"]}
    settings = json.loads((run_dir / "trajectories" / "settings.json").read_text())
    assert settings["generation"]["extra_body"]["api_key"] == "<redacted:trajectories.extra_body.api_key>"
    written = [path for path in run_dir.rglob("*") if path.is_file()]
    assert {"config.yaml", "settings.json", "plan.yaml", "command.txt", "results.json"} <= {p.name for p in written}
    for key, value in markers.items():
        assert files_holding(run_dir, value) == [], key
        assert value not in done.stdout + done.stderr, key


def test_hinted_trajectories_are_marked_and_dropped_by_sft_data(demo: Demo, demo_vlm: FakeVLM,
                                                                 tmp_path: Path) -> None:
    """trajectories.hints=true: the teacher reads where the clue is, every trajectory says hinted, and sft_data
    drops them all (reason `hinted`) unless sft_data.keep_hinted=true."""
    root = tmp_path / "runs"
    policy = Policy(demo.records)
    with PolicyServer(policy) as server:
        result = run_main(*trajectories_argv(root, "hinted", server.base_url, demo_vlm.base_url,
                                             "trajectories.hints=true"))
    assert result.code == 0, result.out
    output = root / "trajectories" / "demo" / "hinted" / "trajectories" / "trajectories.jsonl"
    trajectories = jsonl(output)
    assert len(trajectories) == 32
    assert all(t["hinted"] is True and t["correct"] is True for t in trajectories)
    scripted = demo.by_id()
    for qid, body, _ in policy.calls:
        user = body["messages"][1]["content"]
        leaf = next(turn["action"]["ids"] for turn in scripted[qid]["turns"] if turn["action"]["name"] == "video_qa")
        hint = user.rsplit("\n", 1)[1]
        assert hint.startswith("Hint: the evidence is in the low segments "), user[-200:]
        assert geometry.format_ids(tuple(leaf)) in hint
        # Where, never what: no option text and no answer in the hint.
        assert not any(option in hint for option in scripted[qid]["options"])

    dropped = run_main("sft_data", "recipe=tiny", f"sft_data.input={output}", f"run_root={root}", "name=hinted")
    assert dropped.code != 0
    sft_dir = root / "sft_data" / "trajectories" / "hinted" / "sft_data"
    lines = jsonl(sft_dir / "dropped.jsonl")
    assert len(lines) == 32
    assert {line["reason"] for line in lines} == {"hinted"}
    assert not (sft_dir / "sft.json").exists()
    kept = run_main("sft_data", "recipe=tiny", f"sft_data.input={output}", "sft_data.keep_hinted=true",
                    f"run_root={root}", "name=kept")
    assert kept.code == 0, kept.out + kept.err
    report = json.loads((root / "sft_data" / "trajectories" / "kept" / "sft_data" / "report.json").read_text())
    assert (report["kept"], report["dropped"]) == (32, 0)


def test_attempts_replay_a_wrong_question_and_sum_its_costs(demo: Demo, demo_vlm: FakeVLM, tmp_path: Path) -> None:
    """trajectories.attempts=2: wrong at first, right at the second episode ends correct with both episodes'
    tokens and time; wrong twice stays wrong; a question right at once is played once."""
    root = tmp_path / "runs"
    second, again, never = demo.records[0]["id"], demo.records[9]["id"], demo.records[20]["id"]
    delay_s = 0.1
    policy = Policy(demo.records)
    policy.modes = {second: "wrong_first", again: "wrong_first", never: "always_wrong"}
    policy.delays = {second: delay_s}
    with PolicyServer(policy) as server:
        result = run_main(*trajectories_argv(root, "attempts", server.base_url, demo_vlm.base_url,
                                             "trajectories.attempts=2"))
    assert result.code == 0, result.out
    run = Run(root / "trajectories" / "demo" / "attempts", result, policy, "trajectories")
    by_id = {t["id"]: t for t in run.trajectories()}
    assert len(by_id) == 32
    scripted = demo.by_id()
    expected = Counter({qid: len(scripted[qid]["turns"]) for qid in demo.ids})
    for qid in (second, again, never):
        expected[qid] *= 2
    assert policy.requests() == expected
    for qid in (second, again):
        assert (by_id[qid]["correct"], by_id[qid]["answer"]) == (True, scripted[qid]["ground_truth"])
    assert (by_id[never]["correct"], by_id[never]["answer"]) == (False, policy.wrong_letter(never))
    for trajectory in by_id.values():
        check_usage(trajectory, policy)
    # Both episodes' waiting is counted: each of its requests took at least delay_s.
    timings = by_id[second]["timings"]
    assert timings["model_s"] >= 2 * len(scripted[second]["turns"]) * delay_s * 0.95
    assert timings["total_s"] >= timings["model_s"]
    results = run.results()
    assert (results["correct"], results["failed"], results["accuracy"]) == (31, 0, round(31 / 32, 6))


# ---------------------------------------------------------------------------------------------------------------
# compare


def test_compare_prints_both_runs(baseline: Run, limited: Run) -> None:
    """`python -m launch compare A B` on two eval runs' results.json: exit 0, both named, questions paired."""
    a, b = baseline.out / "results.json", limited.out / "results.json"
    result = launch("compare", str(a), str(b), timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"A: {a} (demo)" in result.stdout
    assert f"B: {b} (demo)" in result.stdout
    assert "| questions | 32 | 5 | -27 |" in result.stdout
    assert "| accuracy (strict) | 100.00% | 100.00% | +0.00% |" in result.stdout
    assert "Questions both finished: 5; both right 5, only A right 0, only B right 0, both wrong 0" in result.stdout
