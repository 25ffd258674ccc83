"""The preflight's parts (tools/rollouts/): the policy client's requests, the text-only import, the report's numbers."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from tools.rollouts import text_only
from tools.rollouts.policy_client import PolicyError, completion_request, parse_choice
from tools.rollouts.report import call_kind, flat_groups, markdown, reward_components, summarize, tool_time_by_kind


@pytest.mark.parametrize(("prompt_len", "asked", "expected"), [
    (100, 50, 50),
    (1000, 50, 24),
    (10, None, 1014),
])
def test_turn_budget_is_capped_by_the_context_left(prompt_len: int, asked: int | None, expected: int) -> None:
    """max_tokens is the agent loop's, never past max_model_len, as verl-tool's own server caps it."""
    params = {"temperature": 1.0, "stop": ["</tool>"], "include_stop_str_in_output": True, "logprobs": False,
              "n": 1, "repetition_penalty": 1.0}
    if asked is not None:
        params["max_tokens"] = asked
    body = completion_request("policy", list(range(prompt_len)), params, 1024, {"seed": 3})
    assert body["max_tokens"] == expected
    assert body["prompt"] == list(range(prompt_len))
    assert (body["return_tokens_as_token_ids"], body["logprobs"], body["n"], body["seed"]) == (True, 0, 1, 3)
    assert body["stop"] == ["</tool>"] and body["include_stop_str_in_output"] is True


def test_choice_gives_token_ids_reasons_and_logprobs() -> None:
    """Token ids come from `token_id:N`; finish and stop reasons pass through; logprobs only when asked."""
    choice = {"text": "a</tool>", "finish_reason": "stop", "stop_reason": "</tool>",
              "logprobs": {"tokens": ["token_id:5", "token_id:9"], "token_logprobs": [-0.5, -1.0]}}
    parsed = parse_choice(choice, want_logprobs=True)
    assert (parsed["token_ids"], parsed["log_probs"]) == ([5, 9], [-0.5, -1.0])
    assert (parsed["finish_reason"], parsed["stop_reason"], parsed["text"]) == ("stop", "</tool>", "a</tool>")
    assert parse_choice(choice, want_logprobs=False)["log_probs"] is None


@pytest.mark.parametrize(("logprobs", "message"), [
    (None, "returned no token ids"),
    ({"tokens": ["hello"]}, "ignored return_tokens_as_token_ids"),
])
def test_a_reply_without_token_ids_is_refused(logprobs: dict | None, message: str) -> None:
    """A server that does not return token ids is an error, never a silently re-tokenized turn."""
    with pytest.raises(PolicyError, match=message):
        parse_choice({"text": "x", "logprobs": logprobs}, want_logprobs=False)


def test_multimodal_module_is_stood_in_only_when_its_dependency_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module whose dependency does not import is replaced by one that raises, naming the reason; others are not."""
    monkeypatch.setattr(text_only, "MULTIMODAL_MODULES", {
        "fake_pkg.vision": (("no_such_package_here",), ("fetch_image",)),
        "fake_pkg.present": (("json",), ("load",)),
    })
    monkeypatch.setattr(text_only, "STAND_IN_CONSTANTS", {"fake_pkg.vision": {"HELP": "none"}})
    monkeypatch.delitem(sys.modules, "fake_pkg.vision", raising=False)
    replaced = text_only.stand_in_multimodal_modules()
    assert set(replaced) == {"fake_pkg.vision"}
    assert "no_such_package_here" in replaced["fake_pkg.vision"]
    stand_in = sys.modules.pop("fake_pkg.vision")
    assert stand_in.HELP == "none"
    with pytest.raises(RuntimeError, match="a text policy never calls it"):
        stand_in.fetch_image("x.png")
    assert "fake_pkg.present" not in sys.modules


def record(group: int, score: float, mask: list[int], calls: int = 1, turns: int = 1, stop: str = "tool_signaled_done",
           answered: int = 1, advantage: float = 0.0) -> dict:
    """A rollout record with the fields the report reads."""
    return {"group": group, "score": score, "response_mask": mask, "num_turns": turns, "advantage": advantage,
            "reward": {"answered": answered, "answer": score, "format": 0.0},
            "tool_calls": [{"valid_action": 1, "obs": "o"} for _ in range(calls)], "stop_reason": stop,
            "cut_at_length": stop == "max_response_length_reached", "cut_at_turn_limit": stop == "max_turns_reached"}


@pytest.mark.parametrize(("scores", "flat"), [
    ([[1.0, 1.0], [0.0, 1.0]], 1),
    ([[0.0, 0.0], [0.0, 0.0]], 2),
    ([[0.2, 0.5], [1.0, 0.0]], 0),
])
def test_flat_groups_are_those_with_one_reward(scores: list[list[float]], flat: int) -> None:
    """A group whose rollouts all score the same gives GRPO no signal; it is counted."""
    records = [record(g, s, [1]) for g, group in enumerate(scores) for s in group]
    assert flat_groups(records) == (flat, len(scores))


def test_summary_numbers_come_from_the_records() -> None:
    """Rates, spreads, tokens per turn and the time split are the records' and the sampler's own numbers."""
    records = [record(0, 1.0, [1, 1, 0, 1], calls=2, turns=2), record(0, 0.0, [1, 1], stop="max_turns_reached",
                                                                       answered=0),
               record(1, 0.5, [1, 0, 0, 1], turns=2, stop="max_response_length_reached"), record(1, 0.5, [1])]
    config = SimpleNamespace(actor_rollout_ref=SimpleNamespace(
        rollout=SimpleNamespace(n=2),
        agent=SimpleNamespace(max_turns=3, max_response_length=64, max_action_length=16, max_obs_length=8)))
    sampled = SimpleNamespace(timing_s={"policy": 4.0, "tool": 0.5, "reward": 0.5, "generation_wall": 2.0},
                              policy_requests=6)
    summary = summarize(records, sampled, config, {"policy": {"path": "/m"}, "split": "train"})
    assert (summary["rollouts"], summary["groups"], summary["n"]) == (4, 2, 2)
    assert summary["answer_rate"] == 0.75
    assert summary["cut_at_length_rate"] == summary["cut_at_turn_limit_rate"] == 0.25
    assert summary["flat_group_rate"] == 0.5
    assert summary["tokens"]["generated_per_turn"] == pytest.approx(8 / 6)
    assert summary["tokens"]["observation_per_call"] == pytest.approx(3 / 5)
    assert summary["rollouts_per_s"] == 2.0
    assert summary["tool_plus_reward_over_policy"] == 0.25
    assert reward_components(records)["score"] == {"mean": 0.5, "std": pytest.approx(0.35355339), "min": 0.0,
                                                   "max": 1.0}
    assert "| GRPO groups with all rewards equal (no signal) | 50.0% |" in markdown(summary)


@pytest.mark.parametrize(("action", "kind"), [
    ("<think>where?</think><tool>get_caption((1, 2))</tool>", "get_caption"),
    ('<think>look</think><tool>video_qa((1, 2, 3), "who is there?")</tool>', "video_qa"),
    ("<think>sure</think><answer>B</answer>", "answer"),
    ("<think>hm</think><tool>get_caption(1, 2</tool>", "invalid"),
    ("", "invalid"),
    (None, "invalid"),
])
def test_call_kind_is_the_tools_reading(action: object, kind: str) -> None:
    """A tool request is classified as the tool reads it; what it cannot read is invalid."""
    assert call_kind(action) == kind


def test_tool_time_by_kind_from_the_servers_own_times() -> None:
    """Requests per kind and the server's ms per request; a request without a time counts but adds no time."""
    caption, video = "<tool>get_caption((1, 2))</tool>", '<tool>video_qa((1, 2, 3), "what?")</tool>'
    calls = [{"action": caption, "processing_time_ms": 2.0}, {"action": caption, "processing_time_ms": 4.0},
             {"action": video, "processing_time_ms": 1500.0}, {"action": video}, {"action": "junk",
                                                                                 "processing_time_ms": 1.0}]
    assert tool_time_by_kind(calls) == {
        "get_caption": {"calls": 2, "ms_mean": 3.0, "ms_max": 4.0},
        "invalid": {"calls": 1, "ms_mean": 1.0, "ms_max": 1.0},
        "video_qa": {"calls": 2, "ms_mean": 1500.0, "ms_max": 1500.0}}
    rollout = {**record(0, 1.0, [1]), "tool_calls": [{**call, "valid_action": 1, "obs": "o"} for call in calls]}
    config = SimpleNamespace(actor_rollout_ref=SimpleNamespace(
        rollout=SimpleNamespace(n=1),
        agent=SimpleNamespace(max_turns=3, max_response_length=64, max_action_length=16, max_obs_length=8)))
    sampled = SimpleNamespace(timing_s={"policy": 1.0}, policy_requests=1)
    summary = summarize([rollout], sampled, config, {"policy": {"path": "/m"}, "split": "train"})
    assert summary["tool_time_by_kind"] == tool_time_by_kind(calls)
    assert "| video_qa | 2 | 1500.0 | 1500.0 |" in markdown(summary).splitlines()
