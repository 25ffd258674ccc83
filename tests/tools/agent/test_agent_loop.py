"""The agent loop plays a question exactly as verl-tool's multi-turn RL rollout does.

The demo world's questions are built by `tools.agent.run.load_questions` (the RL row function), the
model is a scripted policy behind the loopback OpenAI server (`tests.fixtures.fake_vlm.FakeVLM`) and video_qa
asks a second loopback server. The transcript is checked against the RL parquet's prompt, the
verl-tool glue's observations, the token ids verl-tool assembles and the reward verl computes; then
the loop's rules one by one: the turn limit, invalid actions, EOS, stop strings, endpoint failures,
the question deadline, hints, a user system prompt, timings and token counts.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rewards.rollout import decoded_rollout
from rewards.verl_entry import compute_score
from tests.fixtures.fake_vlm import FakeVLM
from tests.fixtures.scripted_policy import ScriptedPolicy
from tests.fixtures.tool_world import settings_dict
from tools.agent.loop import (
    TIMING_KEYS,
    AgentLoop,
    Generation,
    PromptRow,
    QuestionFailed,
    action_text,
    clue_segments,
    hint_text,
)
from tools.agent.run import load_questions, system_prompt_from_file
from tools.demo import world as demo_world
from tools.environment import prompts
from tools.environment.navigation import NavigationEnv
from tools.environment.tool_settings import ToolSettings, settings_from_dict
from tools.environment.trajectory import Trajectory
from tools.environment.verl_tool_glue import LongVideoNavTool
from tools.environment.vlm_client import Completion, VLMClient, VLMEndpoint

# The tool-call budget the demo questions are played with (the demo scripts need at most 4 calls).
MAX_TURNS = 15


def generation_of(**fields) -> Generation:
    """A Generation with the stages' neutral values (top_p 1, both stop settings on, a minute a question)."""
    return Generation(**{"top_p": 1.0, "send_stop": True, "vllm_stop": True, "question_timeout_s": 60.0, **fields})


STOPS = ["</tool>", "</answer>"]
LOOK = "<think>Look at the first medium segment.</think><tool>get_caption((1, 1))</tool>"


# The demo world, its RL rows, and the servers.


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo world (captions, MP4s, annotations, scripted trajectories) private to this module."""
    return demo_world.ensure(tmp_path_factory.mktemp("agent_loop") / "world")


def video_answer(body: dict[str, Any]) -> str:
    """The video_qa VLM's reply: it names the frame count and the question's first line, so a wrong leaf shows."""
    content = body["messages"][0]["content"]
    images = sum(1 for part in content if part["type"] == "image_url")
    return f"{images} frames; {content[-1]['text'].splitlines()[0]}"


@pytest.fixture(scope="module")
def video_vlm() -> Iterator[FakeVLM]:
    """The loopback VLM that video_qa asks."""
    with FakeVLM(answer=video_answer, model="fake-vlm") as server:
        yield server


def tool_settings(root: Path, base_url: str) -> ToolSettings:
    """Tool settings serving the demo world at `root` with the VLM at `base_url` (few frames, for speed)."""
    return settings_from_dict(settings_dict(root, base_url, frames_per_query=4))


@pytest.fixture(scope="module")
def settings(demo_root: Path, video_vlm: FakeVLM) -> ToolSettings:
    """The tool settings both the agent loop and the verl-tool glue serve with."""
    return tool_settings(demo_root, video_vlm.base_url)


def question_spec(root: Path) -> dict:
    """The cgbench question spec of the demo world, as the eval stage renders it."""
    return {"annotations": str(root / "annotations.json"), "format": "cgbench", "data_source": "demo",
            "caption_dir": str(root / "captions"), "video_dir": str(root / "videos")}


@pytest.fixture(scope="module")
def questions(demo_root: Path) -> list[PromptRow]:
    """Every demo question as the agent plays it, none rejected."""
    played, rejected = load_questions(question_spec(demo_root), MAX_TURNS)
    assert rejected == []
    assert len(played) == 32
    return played


@pytest.fixture(scope="module")
def rl_prompts(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """The `prompt` column of the RL parquet files built from the demo world, by question id."""
    import pandas as pd

    from tools.builders import rl_data

    output = tmp_path_factory.mktemp("rl_data")
    rl_data.build(demo_world.rl_settings(demo_root, MAX_TURNS), output)
    rows = pd.concat([pd.read_parquet(output / f"{split}.parquet") for split in rl_data.SPLITS])
    return {row["extra_info"]["question_id"]: [dict(message) for message in row["prompt"]]
            for _, row in rows.iterrows()}


@pytest.fixture(scope="module")
def question(questions: list[PromptRow]) -> PromptRow:
    """One demo question: width 4, 1024 s, ground truth D, its clue in low segment (1, 3, 2)."""
    first = questions[0]
    assert (first.id, first.extra_info["width"], first.ground_truth) == ("demo_video_0-1-3-2", 4, "D")
    return first


def endpoint(base_url: str, **overrides: Any) -> VLMEndpoint:
    """The agent model's endpoint at `base_url`: patient enough for a loopback server, no retries by default."""
    return VLMEndpoint(**{"base_url": base_url, "model": "policy", "timeout_s": 10.0, "max_retries": 0,
                          "backoff_s": 0.01, **overrides})


@contextmanager
def model_client(base_url: str, **overrides: Any) -> Iterator[VLMClient]:
    """A VLMClient for the agent model, closed afterwards."""
    client = VLMClient(endpoint(base_url, **overrides), label="model")
    try:
        yield client
    finally:
        client.close()


def bodies(server: FakeVLM) -> list[dict]:
    """The JSON bodies of the chat requests `server` received, oldest first."""
    return [request.body for request in server.chat_requests()]


@dataclass
class Played:
    """One question played by the agent loop: the trajectory, every request body and every reply sent."""

    question: PromptRow
    trajectory: Trajectory
    requests: list[dict]
    replies: list[str]


class Recorder:
    """An answer callable that passes each request to `reply` and records what it answered."""

    def __init__(self, reply: Callable[[dict], str]) -> None:
        self.reply = reply
        self.replies: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, body: dict) -> str:
        """The reply to `body`, recorded."""
        text = self.reply(body)
        with self._lock:
            self.replies.append(text)
        return text


def play(question: PromptRow, reply: Callable[[dict], str] | str, settings: ToolSettings,
         generation: Generation | None = None, hinted: bool = False,
         system_prompt: Callable[[dict], str] | None = None) -> Played:
    """Play `question` against a fresh loopback model server answering with `reply`."""
    recorder = Recorder(reply if callable(reply) else lambda body: reply)
    with FakeVLM(answer=recorder, model="policy") as server, model_client(server.base_url) as client:
        loop = AgentLoop(NavigationEnv(settings), client, generation or generation_of(max_turns=MAX_TURNS),
                         system_prompt)
        trajectory = loop.play(question, hinted=hinted)
        return Played(question, trajectory, bodies(server), recorder.replies)


def scripted(question: PromptRow, *replies: str) -> ScriptedPolicy:
    """A policy that answers `question`'s requests with `replies` in order (and fails past their end)."""
    return ScriptedPolicy({question.extra_info["question"]: list(replies)})


@pytest.fixture(scope="module")
def demo_played(demo_root: Path, questions: list[PromptRow], settings: ToolSettings) -> list[Played]:
    """Every demo question played with its scripted, correct turns, one after another over one loop."""
    policy = ScriptedPolicy.from_trajectories(demo_root / "trajectories.jsonl")
    assert len(policy.scripts) == len(questions), "two demo questions share a text; the policy cannot tell them apart"
    recorder = Recorder(policy)
    results = []
    with FakeVLM(answer=recorder, model="policy") as server, model_client(server.base_url) as client:
        loop = AgentLoop(NavigationEnv(settings), client, generation_of(max_turns=MAX_TURNS))
        for item in questions:
            before, replied = len(server.chat_requests()), len(recorder.replies)
            trajectory = loop.play(item)
            results.append(Played(item, trajectory, bodies(server)[before:], recorder.replies[replied:]))
        assert loop.env.active_trajectories() == []
    return results


# 1. The transcript is the RL rollout's.


def test_every_request_opens_with_the_rl_parquet_prompt(demo_played: list[Played],
                                                         rl_prompts: dict[str, list[dict]]) -> None:
    """The first two messages of every request are the RL row's prompt; the system prompt is byte-identical."""
    assert {played.question.id for played in demo_played} == set(rl_prompts)
    for played in demo_played:
        prompt = rl_prompts[played.question.id]
        assert [message["role"] for message in prompt] == ["system", "user"]
        assert prompt[0]["content"] == prompts.system_prompt(MAX_TURNS)
        for body in played.requests:
            assert body["messages"][:2] == prompt
            assert body["messages"][0]["content"].encode() == prompt[0]["content"].encode()


def test_requests_carry_each_turn_and_its_observation(demo_played: list[Played]) -> None:
    """Request k holds the k earlier model turns as assistant messages, each followed by its observation as user."""
    for played in demo_played:
        turns = played.trajectory.turns
        assert len(played.requests) == len(turns)
        for step, body in enumerate(played.requests):
            expected = [message for turn in turns[:step] for message in
                        ({"role": "assistant", "content": turn.model}, {"role": "user", "content": turn.observation})]
            assert body["messages"][2:] == expected
        # Replies end on their stop string, so each is kept verbatim.
        assert [turn.model for turn in turns] == played.replies


def test_demo_scripts_play_to_the_right_answer(demo_played: list[Played], demo_root: Path) -> None:
    """Each scripted trajectory is replayed turn for turn, every turn served, and ends on the correct answer."""
    scripts = {json.loads(line)["id"]: json.loads(line) for line in
               (demo_root / "trajectories.jsonl").read_text().splitlines()}
    for played in demo_played:
        trajectory, script = played.trajectory, scripts[played.question.id]
        assert [turn.model for turn in trajectory.turns] == [turn["model"] for turn in script["turns"]]
        assert [turn.action for turn in trajectory.turns] == [turn["action"] for turn in script["turns"]]
        assert all(turn.valid for turn in trajectory.turns)
        assert trajectory.turns[-1].action["name"] == "answer" and trajectory.turns[-1].observation == ""
        assert (trajectory.answer, trajectory.correct) == (played.question.ground_truth, True)
        assert trajectory.hinted is False
        assert trajectory.tool_calls() == len(trajectory.turns) - 1


def test_observations_equal_the_verl_tool_glue(demo_played: list[Played], settings: ToolSettings) -> None:
    """Each observation and valid flag equals what LongVideoNavTool.conduct_action returns for the same turns."""
    tool = LongVideoNavTool(settings=settings)
    video_qa_turns = 0
    for played in demo_played:
        trajectory_id = uuid.uuid4().hex
        turns = played.trajectory.turns
        for position, turn in enumerate(turns):
            observation, done, valid = tool.conduct_action(trajectory_id, turn.model,
                                                           {"extra_info": played.question.extra_info})
            assert (observation, valid) == (turn.observation, turn.valid)
            assert done == (position == len(turns) - 1)
            video_qa_turns += turn.action["name"] == "video_qa"
        tool.delete_env(trajectory_id)
    # The comparison covered the VLM's answers too, each about the leaf the turn named.
    assert video_qa_turns == len(demo_played)
    qa = next(turn for turn in demo_played[0].trajectory.turns if turn.action["name"] == "video_qa")
    assert qa.observation == "<information>4 frames; These frames are sampled uniformly from the video between " \
                             "144.0s and 160.0s, in order. Answer the question about them concisely and " \
                             "factually.</information>"


def test_decoded_rollout_scores_the_right_answer(demo_played: list[Played]) -> None:
    """verl's reward on the decoded rollout of each played trajectory gives the answer component 1.0."""
    for played in demo_played:
        turns = played.trajectory.turns
        text = decoded_rollout([(turn.model, turn.observation) for turn in turns])
        score = compute_score(played.question.data_source, text, played.question.ground_truth,
                              played.question.extra_info)
        assert score["answer"] == 1.0
        assert score["answered"] == 1
        assert score["invalid_turns"] == 0
        assert score["turns"] == len(turns)


@pytest.fixture(scope="module")
def nothink_tokenizer(tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny checkpoint's tokenizer with qwen3_nothink installed, as vLLM and verl-tool load it."""
    from tests.integration.test_chat_template import installed

    return installed(tiny_cache, tmp_path_factory, "qwen3_nothink")


@pytest.mark.slow
def test_final_request_renders_the_rollout_token_ids(demo_played: list[Played], rl_prompts: dict[str, list[dict]],
                                                     nothink_tokenizer) -> None:
    """The last request rendered with a generation prompt, then the final turn, is verl-tool's rollout ids."""
    from tests.integration.test_chat_template import rollout_ids

    tokenizer = nothink_tokenizer
    end_of_turn = tokenizer.encode("<|im_end|>\n", add_special_tokens=False)
    for played in demo_played:
        turns = played.trajectory.turns
        rendered = tokenizer.apply_chat_template(played.requests[-1]["messages"], add_generation_prompt=True,
                                                 return_dict=False)
        ours = rendered + tokenizer.encode(turns[-1].model, add_special_tokens=False)
        # verl-tool's sequence: the parquet prompt, then each model turn and the glue's observation.
        messages = list(rl_prompts[played.question.id])
        for position, turn in enumerate(turns):
            messages.append({"role": "assistant", "content": turn.model})
            if position < len(turns) - 1:
                messages.append({"role": "user", "content": turn.observation})
        rollout = rollout_ids(tokenizer, messages)
        assert rollout[-len(end_of_turn):] == end_of_turn
        assert ours == rollout[:-len(end_of_turn)]


# 2. The turn limit.


def test_turn_limit_without_an_answer(question: PromptRow, settings: ToolSettings) -> None:
    """max_turns=2 and a policy that only reads captions: 3 requests, 2 served turns, a 3rd no tool sees."""
    played = play(question, LOOK, settings, generation_of(max_turns=2))
    assert len(played.requests) == 3
    assert [len(body["messages"]) for body in played.requests] == [2, 4, 6]
    turns = played.trajectory.turns
    assert len(turns) == 3
    for turn in turns[:2]:
        assert turn.observation.startswith("Medium caption (1, 1) [0.0s-64.0s]: ")
        assert turn.valid is True
    assert (turns[2].model, turns[2].observation, turns[2].valid) == (LOOK, "", False)
    assert turns[2].action == {"name": "get_caption", "ids": [1, 1]}
    assert (played.trajectory.answer, played.trajectory.correct) == (None, False)


@pytest.mark.parametrize(("letter", "correct"), [("D", True), ("B", False)])
def test_turn_limit_answer_on_the_last_generation(question: PromptRow, settings: ToolSettings, letter: str,
                                                  correct: bool) -> None:
    """An answer in the (max_turns+1)-th generation is recorded as valid, and scored against the ground truth."""
    answer = f"<think>Enough.</think><answer>{letter}</answer>"
    played = play(question, scripted(question, LOOK, LOOK, answer), settings, generation_of(max_turns=2))
    assert len(played.requests) == 3
    last = played.trajectory.turns[-1]
    assert (last.model, last.observation, last.valid) == (answer, "", True)
    assert last.action == {"name": "answer", "text": letter, "letter": letter}
    assert (played.trajectory.answer, played.trajectory.correct) == (letter, correct)


def test_turn_limit_zero_allows_only_an_answer(question: PromptRow, settings: ToolSettings) -> None:
    """max_turns=0: one generation, never sent to the tool."""
    played = play(question, LOOK, settings, generation_of(max_turns=0))
    assert len(played.requests) == 1
    assert [(turn.observation, turn.valid) for turn in played.trajectory.turns] == [("", False)]


# 3. Invalid actions.


@pytest.mark.parametrize(("bad_turn", "reason"), [
    ("<think>Hm.</think><tool>get_caption(1, 2</tool>", "cannot read the get_caption call"),
    ("<think>Hm.</think><tool>get_caption((9, 9))</tool>", "get_caption((9, 9)): "),
    ("<think>Hm.</think><tool>video_qa((1, 1, 1), \"what?\")</tool>", "only allowed after reading its caption"),
    ("<think>Hm.</think><tool>look_around()</tool>", ""),
])
def test_invalid_action_is_explained_and_the_episode_goes_on(question: PromptRow, settings: ToolSettings,
                                                             bad_turn: str, reason: str) -> None:
    """An unreadable or refused action gets the tool's 'Invalid action:' observation and the next turn is asked."""
    played = play(question, scripted(question, bad_turn, "<think>Then D.</think><answer>D</answer>"), settings)
    first, second = played.trajectory.turns
    assert first.observation.startswith("Invalid action: ")
    assert reason in first.observation
    assert first.valid is False
    assert second.action["name"] == "answer"
    assert played.requests[1]["messages"][2:] == [{"role": "assistant", "content": bad_turn},
                                                  {"role": "user", "content": first.observation}]
    assert (played.trajectory.answer, played.trajectory.correct) == ("D", True)


# 4. A turn that ends without an action.


@pytest.mark.parametrize("reply", ["<think>I cannot tell.</think>", "The answer is D.", ""])
def test_eos_without_an_action_ends_the_episode(question: PromptRow, settings: ToolSettings, reply: str) -> None:
    """A reply with no action tag (finish_reason stop) is the last turn: no observation, no answer."""
    played = play(question, reply, settings)
    assert len(played.requests) == 1
    (turn,) = played.trajectory.turns
    assert (turn.model, turn.observation, turn.valid) == (reply, "", False)
    assert turn.action["name"] == "error"
    assert (played.trajectory.answer, played.trajectory.correct) == (None, False)


class StubClient:
    """A model client that returns the given Completions in order and records the messages it was asked."""

    def __init__(self, *replies: Completion) -> None:
        self.replies = list(replies)
        self.asked: list[list[dict]] = []

    def complete(self, messages: list[dict], allow_empty: bool = False, **params: Any) -> Completion:
        """The next reply; the messages are copied as they were at the call."""
        assert allow_empty, "the agent loop must accept a turn without a word"
        self.asked.append(json.loads(json.dumps(messages)))
        return self.replies.pop(0)


@pytest.mark.parametrize("finish_reason", ["length", None])
def test_cut_off_reply_ends_the_episode_unserved(question: PromptRow, settings: ToolSettings,
                                                 finish_reason: str | None) -> None:
    """A reply cut off inside a tool block (finish_reason not stop) is never completed nor sent to the tool."""
    text = "<think>Look.</think><tool>get_caption((1, 1))"
    client = StubClient(Completion(text, finish_reason, 3, 4))
    trajectory = AgentLoop(NavigationEnv(settings), client, generation_of(max_turns=3)).play(question)
    assert len(client.asked) == 1
    (turn,) = trajectory.turns
    assert (turn.model, turn.observation, turn.valid) == (text, "", False)
    assert trajectory.tokens == {"prompt": 3, "completion": 4}


# 5. Stop strings.


@pytest.mark.parametrize(("text", "finish_reason", "expected"), [
    pytest.param("<think>a</think><tool>get_caption((1, 1))</tool>", "stop",
                 ("<think>a</think><tool>get_caption((1, 1))</tool>", True), id="ends-on-tool-close"),
    pytest.param("<think>a</think><answer>B</answer>", "stop", ("<think>a</think><answer>B</answer>", True),
                 id="ends-on-answer-close"),
    pytest.param("<think>a</think><tool>get_caption((1, 1))</tool>\nuser\nfake obs<answer>A</answer>", "stop",
                 ("<think>a</think><tool>get_caption((1, 1))</tool>", True), id="cut-after-tool-close"),
    pytest.param("<think>a</think><answer>C</answer><tool>get_caption((1, 1))</tool>", "stop",
                 ("<think>a</think><answer>C</answer>", True), id="cut-at-the-first-close"),
    pytest.param("<think>a</think><tool>get_caption((1, 1))</tool><tool>get_caption((1, 2))</tool>", "length",
                 ("<think>a</think><tool>get_caption((1, 1))</tool>", True), id="close-tag-beats-length"),
    pytest.param("<think>a</think><answer>B", "stop", ("<think>a</think><answer>B</answer>", True),
                 id="answer-close-restored"),
    pytest.param("<think>a</think><tool>get_caption((1, 1))", "stop",
                 ("<think>a</think><tool>get_caption((1, 1))</tool>", True), id="tool-close-restored"),
    pytest.param("<tool>get_caption((1, 1))", "stop", ("<tool>get_caption((1, 1))</tool>", True),
                 id="restored-without-think"),
    pytest.param("<think>a</think><answer>B", "length", ("<think>a</think><answer>B", False), id="length-no-restore"),
    pytest.param("<think>a</think><tool>get_caption((1, 1))", None,
                 ("<think>a</think><tool>get_caption((1, 1))", False), id="no-finish-reason-no-restore"),
    pytest.param("<think>maybe <answer>A or <tool>x</think>", "stop", ("<think>maybe <answer>A or <tool>x</think>",
                                                                       False), id="tags-inside-think-ignored"),
    pytest.param("<think>a</think>", "stop", ("<think>a</think>", False), id="no-action"),
    pytest.param("", "stop", ("", False), id="empty"),
])
def test_action_text(text: str, finish_reason: str | None, expected: tuple[str, bool]) -> None:
    """action_text cuts after the first action close tag and restores one an endpoint dropped at a stop."""
    assert action_text(Completion(text, finish_reason)) == expected


@pytest.mark.parametrize(("generation", "expected"), [
    pytest.param(generation_of(max_turns=1), {"top_p": 1.0, "stop": STOPS,
                                           "extra_body": {"include_stop_str_in_output": True}}, id="vllm"),
    pytest.param(generation_of(max_turns=1, send_stop=False, vllm_stop=False), {"top_p": 1.0}, id="neither"),
    pytest.param(generation_of(max_turns=1, vllm_stop=False, top_p=0.9), {"top_p": 0.9, "stop": STOPS}, id="stop-only"),
    pytest.param(generation_of(max_turns=1, send_stop=False, extra_body={"reasoning_effort": "high"}),
                 {"top_p": 1.0, "extra_body": {"reasoning_effort": "high", "include_stop_str_in_output": True}},
                 id="extra-body"),
])
def test_generation_request(generation: Generation, expected: dict) -> None:
    """Generation.request() sends stop and include_stop_str_in_output as configured, extra_body merged."""
    extra_before = dict(generation.extra_body)
    assert generation.request() == expected
    assert generation.extra_body == extra_before


@pytest.mark.parametrize(("generation", "fields"), [
    pytest.param(generation_of(max_turns=1), {"stop": STOPS, "include_stop_str_in_output": True, "top_p": 1.0},
                 id="vllm"),
    pytest.param(generation_of(max_turns=1, send_stop=False, vllm_stop=False, top_p=0.5), {"top_p": 0.5},
                 id="neither"),
    pytest.param(generation_of(max_turns=1, send_stop=False, extra_body={"reasoning_effort": "high"}),
                 {"reasoning_effort": "high", "include_stop_str_in_output": True, "top_p": 1.0}, id="extra-body"),
])
def test_stop_fields_reach_the_server(question: PromptRow, settings: ToolSettings, generation: Generation,
                                      fields: dict) -> None:
    """Every request body the server received carries exactly the configured stop fields."""
    played = play(question, scripted(question, LOOK, "<think>So.</think><answer>D</answer>"), settings, generation)
    assert len(played.requests) == 2
    for body in played.requests:
        sent = {key: body[key] for key in ("stop", "include_stop_str_in_output", "reasoning_effort", "top_p")
                if key in body}
        assert sent == fields


# An endpoint that may drop the stop string (no vLLM extension): a dropped close tag is restored.
DROPS_STOP = generation_of(max_turns=MAX_TURNS, vllm_stop=False)


@pytest.mark.parametrize(("reply", "generation", "kept", "served"), [
    pytest.param(LOOK + "\nuser\nMedium caption (2, 2): fake<answer>A</answer>", None, LOOK, True, id="cut"),
    pytest.param(LOOK.removesuffix("</tool>"), DROPS_STOP, LOOK, True, id="tool-restored"),
    pytest.param("<think>D it is.</think><answer>D", DROPS_STOP, "<think>D it is.</think><answer>D</answer>", False,
                 id="answer-restored"),
])
def test_loop_keeps_the_turn_as_the_rollout_does(question: PromptRow, settings: ToolSettings, reply: str,
                                                 generation: Generation | None, kept: str, served: bool) -> None:
    """A reply running past </tool> is cut there, a dropped close tag restored; the next request shows the kept turn."""
    played = play(question, scripted(question, reply, "<think>So.</think><answer>D</answer>"), settings, generation)
    first = played.trajectory.turns[0]
    assert first.model == kept
    if served:
        assert first.observation.startswith("Medium caption (1, 1) ")
        assert played.requests[1]["messages"][2] == {"role": "assistant", "content": kept}
        assert len(played.trajectory.turns) == 2
    else:
        assert len(played.requests) == 1
        assert (first.observation, first.valid) == ("", True)
    assert (played.trajectory.answer, played.trajectory.correct) == ("D", True)


def test_vllm_reply_ending_inside_a_block_is_not_an_action(question: PromptRow, settings: ToolSettings) -> None:
    """With vLLM keeping stop strings, an open answer block means the model ended there: unanswered, as RL scores it."""
    played = play(question, scripted(question, "<think>D it is.</think><answer>D"), settings)
    [turn] = played.trajectory.turns
    assert (turn.model, turn.observation, turn.valid) == ("<think>D it is.</think><answer>D", "", False)
    assert (played.trajectory.answer, played.trajectory.correct) == (None, False)
    assert compute_score("demo", decoded_rollout([(turn.model, "")]), "D", question.extra_info)["answer"] == 0.0


# 6. and 7. Failures are recorded per question.


@contextmanager
def raw_server(body: bytes, content_type: str = "application/json") -> Iterator[str]:
    """A loopback HTTP server answering every POST with 200 and `body`; yields its OpenAI base URL."""

    class Handler(BaseHTTPRequestHandler):
        """Answers every POST with the fixed body."""

        def do_POST(self) -> None:
            """Read the request, send 200 with `body`."""
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """The base URL of a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def fail_with(question: PromptRow, settings: ToolSettings, base_url: str, **overrides: Any) -> QuestionFailed:
    """The QuestionFailed raised when `question` is played against `base_url`; the env holds no state after."""
    env = NavigationEnv(settings)
    with model_client(base_url, **overrides) as client:
        with pytest.raises(QuestionFailed) as caught:
            AgentLoop(env, client, generation_of(max_turns=3)).play(question)
    assert env.active_trajectories() == []
    return caught.value


def test_stalled_server_is_a_timeout(question: PromptRow, settings: ToolSettings) -> None:
    """A server that never answers within the endpoint's timeout fails the question with kind 'timeout'."""
    with FakeVLM(answer=LOOK) as server:
        server.stall(10)
        failed = fail_with(question, settings, server.base_url, timeout_s=0.3)
    assert (failed.kind, failed.turns) == ("timeout", 0)
    assert "did not answer within 0.3 s" in str(failed)


def test_refused_connection_is_a_connection_failure(question: PromptRow, settings: ToolSettings) -> None:
    """A port nothing listens on fails the question with kind 'connection', after the allowed retry."""
    url = closed_port_url()
    failed = fail_with(question, settings, url, max_retries=1, timeout_s=2.0)
    assert (failed.kind, failed.turns) == ("connection", 0)
    assert "after 2 attempts" in str(failed) and url in str(failed)


@pytest.mark.parametrize("body", [b"this is not JSON", b'{"foo": 1}', b'{"choices": []}'])
def test_malformed_reply(question: PromptRow, settings: ToolSettings, body: bytes) -> None:
    """A 200 reply that is not a chat completion fails the question with kind 'malformed_reply'."""
    with raw_server(body) as url:
        failed = fail_with(question, settings, url, max_retries=1)
    assert (failed.kind, failed.turns) == ("malformed_reply", 0)
    assert "after 1 attempt:" in str(failed)


@pytest.mark.parametrize(("status", "retries", "attempts"), [(400, 1, 1), (500, 0, 1), (503, 1, 2)])
def test_http_error_after_a_served_turn(question: PromptRow, settings: ToolSettings, status: int, retries: int,
                                        attempts: int) -> None:
    """An HTTP error on the second turn fails the question with kind 'http', one turn played, its state freed."""
    low = "<think>Read a leaf.</think><tool>get_caption((1, 3, 2))</tool>"

    def reply(body: dict) -> str:
        """The leaf read, then the next requests fail with `status`."""
        server.fail_next(attempts, status)
        return low

    with FakeVLM(answer=reply) as server:
        failed = fail_with(question, settings, server.base_url, max_retries=retries)
        assert len(server.chat_requests()) == 1 + attempts
    assert (failed.kind, failed.turns) == ("http", 1)
    assert f"HTTP {status}" in str(failed)


def test_deadline_after_the_first_turn(question: PromptRow, settings: ToolSettings) -> None:
    """A question over its wall-clock budget fails with kind 'deadline' before the next generation is asked."""
    with FakeVLM(answer=LOOK) as server, model_client(server.base_url) as client:
        server.stall(0.2)
        loop = AgentLoop(NavigationEnv(settings), client, generation_of(max_turns=5, question_timeout_s=0.1))
        with pytest.raises(QuestionFailed) as caught:
            loop.play(question)
        assert len(server.chat_requests()) == 1
    assert (caught.value.kind, caught.value.turns) == ("deadline", 1)
    assert "took over 0.1 s (1 turns played)" in str(caught.value)
    assert loop.env.active_trajectories() == []


# 8. Hints.


@pytest.mark.parametrize(("width", "duration", "clues", "segments"), [
    pytest.param(2, 80.0, [[10, 25]], [(1, 1, 2), (1, 2, 1)], id="two-leaves"),
    pytest.param(2, 80.0, [[0, 10]], [(1, 1, 1)], id="touching-boundary-excluded"),
    pytest.param(2, 80.0, [[10, 25], [75, 80]], [(1, 1, 2), (1, 2, 1), (2, 2, 2)], id="two-clues"),
    pytest.param(2, 80.0, [[75, 80], [10, 25]], [(1, 1, 2), (1, 2, 1), (2, 2, 2)], id="clue-order-irrelevant"),
    pytest.param(3, 27.0, [[4.5, 5.5]], [(1, 2, 2), (1, 2, 3)], id="width-3"),
    pytest.param(3, 54.0, [[52.0, 54.0]], [(3, 3, 3)], id="last-leaf"),
    pytest.param(3, 27.0, [], [], id="no-clues"),
    pytest.param(3, 27.0, None, [], id="clues-unknown"),
])
def test_clue_segments(width: int, duration: float, clues: list | None, segments: list[tuple]) -> None:
    """clue_segments names exactly the low segments sharing positive time with a clue interval."""
    info = {"width": width, "duration": duration, "clue_intervals": clues}
    assert clue_segments(info) == segments
    named = ", ".join("(" + ", ".join(map(str, ids)) + ")" for ids in segments)
    assert hint_text(info) == (f"\nHint: the evidence is in the low segments {named}." if segments else "")


def test_demo_hint_points_at_the_clue_leaf(questions: list[PromptRow]) -> None:
    """Each demo question's hint names its clue leaf alone, and never an option or a letter as the answer."""
    for item in questions:
        leaf = tuple(int(part) for part in item.id.split("-")[1:])
        assert clue_segments(item.extra_info) == [leaf]
        hint = hint_text(item.extra_info)
        assert hint == f"\nHint: the evidence is in the low segments ({', '.join(map(str, leaf))})."
        assert not any(option in hint for option in item.extra_info["options"])


def test_hinted_play_appends_the_hint_to_the_first_user_turn(question: PromptRow, settings: ToolSettings,
                                                             rl_prompts: dict[str, list[dict]]) -> None:
    """hinted=True: every request's first user turn is the RL one plus the hint; the question itself is unchanged."""
    original = json.loads(json.dumps(question.messages))
    system, user = rl_prompts[question.id]
    for _ in range(2):
        played = play(question, scripted(question, LOOK, "<think>So.</think><answer>D</answer>"), settings,
                      hinted=True)
        assert played.trajectory.hinted is True
        assert len(played.requests) == 2
        for body in played.requests:
            assert body["messages"][0] == system
            assert body["messages"][1] == {"role": "user",
                                           "content": user["content"] + "\nHint: the evidence is in the low segments "
                                                                        "(1, 3, 2)."}
            text = json.dumps(body)
            assert not any(f"answer is {letter}" in text for letter in "ABCD")
            # The ground-truth option appears once: in the options list of the RL prompt.
            assert text.count(question.extra_info["options"]["ABCD".index(question.ground_truth)]) == 1
    assert json.loads(json.dumps(question.messages)) == original


def test_unhinted_play_sends_no_hint(demo_played: list[Played], rl_prompts: dict[str, list[dict]]) -> None:
    """hinted=False: no request mentions a hint or 'answer is X', and each opens with the RL prompt exactly."""
    for played in demo_played:
        assert played.trajectory.hinted is False
        hint = hint_text(played.question.extra_info).strip()
        for body in played.requests:
            text = json.dumps(body)
            assert "Hint" not in text and hint not in text
            assert not any(f"answer is {letter}" in text for letter in "ABCD")
            assert body["messages"][:2] == rl_prompts[played.question.id]


# 9. A user system prompt.


def test_system_prompt_file_replaces_the_system_message(question: PromptRow, settings: ToolSettings,
                                                        rl_prompts: dict[str, list[dict]], tmp_path: Path) -> None:
    """system_prompt_from_file fills {width} and {max_turns}; it replaces the system message of every request."""
    path = tmp_path / "system.txt"
    path.write_text("Navigate a width-{width} tree; at most {max_turns} calls. Width again: {width}.")
    prompt = system_prompt_from_file(str(path), 7)
    played = play(question, scripted(question, LOOK, "<think>So.</think><answer>D</answer>"), settings,
                  generation_of(max_turns=7), system_prompt=prompt)
    assert len(played.requests) == 2
    for body in played.requests:
        assert body["messages"][0] == {"role": "system",
                                       "content": "Navigate a width-4 tree; at most 7 calls. Width again: 4."}
        assert body["messages"][1] == rl_prompts[question.id][1]
    assert question.messages[0]["content"] == prompts.system_prompt(MAX_TURNS)


# 10. Timings and tokens.


def test_timings_and_tokens(demo_root: Path, questions: list[PromptRow]) -> None:
    """Timings split model, get_caption and video_qa seconds within the total; tokens sum the server's usage."""
    question = next(item for item in questions if item.id == "demo_video_0-1-3-2")
    policy = ScriptedPolicy.from_trajectories(demo_root / "trajectories.jsonl")
    with FakeVLM(answer=video_answer) as slow_vlm:
        slow_vlm.stall(0.15)
        settings = tool_settings(demo_root, slow_vlm.base_url)
        recorder = Recorder(policy)
        with FakeVLM(answer=recorder, model="policy") as server, model_client(server.base_url) as client:
            server.stall(0.05)
            trajectory = AgentLoop(NavigationEnv(settings), client, generation_of(max_turns=MAX_TURNS)).play(question)
            sent = bodies(server)
    timings = trajectory.timings
    assert tuple(timings) == TIMING_KEYS
    assert all(value >= 0 for value in timings.values())
    # Four generations stalled 0.05 s each; one video_qa stalled 0.15 s, counted for video_qa alone.
    assert [turn.action["name"] for turn in trajectory.turns] == ["get_caption", "get_caption", "video_qa", "answer"]
    assert timings["model_s"] >= 0.2
    assert timings["video_qa_s"] >= 0.15
    assert timings["get_caption_s"] < 0.15
    assert timings["total_s"] >= timings["model_s"]
    assert timings["total_s"] + 1e-3 >= timings["model_s"] + timings["get_caption_s"] + timings["video_qa_s"]
    assert len(sent) == 4
    assert trajectory.tokens == {
        "prompt": sum(len(json.dumps(body["messages"]).split()) for body in sent),
        "completion": sum(len(reply.split()) for reply in recorder.replies),
    }
    assert trajectory.tokens["completion"] > 0
