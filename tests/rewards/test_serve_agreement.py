"""The environment and the reward agree on every call: served, refused or failed, and the time ranges served.

Each row plays a trajectory through the real NavigationEnv (a caption tree, a video and a loopback
VLM), decodes it as verl hands it to the reward, and replays it with `judge_rollout`: both apply
`tools.environment.serve_rule.serve_call`, so each turn's outcome and the served ranges must match.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rewards.rollout import decoded_rollout, judge_rollout
from tests.fixtures.fake_vlm import FakeVLM
from tests.fixtures.tool_world import DURATION, WIDTH, build_world, extra_info, turn
from tools.environment import geometry
from tools.environment.actions import Answer, parse_turn
from tools.environment.navigation import NavigationEnv

CAPTION = "get_caption((1, 1, 1))"
ASK = 'video_qa((1, 1, 1), "what car?")'
ANSWER = "<think>It is B.</think><answer>B</answer>"
# The reward's outcome of each env observation kind.
OUTCOME_OF_KIND = {"caption": "served", "video_qa": "served", "invalid": "refused", "tool_error": "failed",
                   "answer": "answer"}
# Each row: id, world (shared, no_video, timeout, unreachable), extra_info overrides, the turns (a call, or an
# answer turn as is), the step before which the VLM fails every attempt (and with which status), and the env's
# kind for each turn.
ROWS = [
    ("served-caption-and-qa", "shared", {}, [CAPTION, "get_caption((2, 3))", ASK, ANSWER], None,
     ["caption", "caption", "video_qa", "answer"]),
    ("duplicate-calls", "shared", {}, [CAPTION, CAPTION, ASK, ASK], None,
     ["caption", "caption", "video_qa", "video_qa"]),
    ("malformed-call", "shared", {}, ["get_caption((3))", "zoom((1, 2))", "get_caption(1, 2)"], None,
     ["invalid"] * 3),
    ("no-action", "shared", {}, ["<think>thinking only</think>"], None, ["invalid"]),
    ("out-of-range", "shared", {}, ["get_caption((5, 1))", "get_caption((2, 2, 9))", "get_caption((1, 0))"], None,
     ["invalid"] * 3),
    ("wrong-level", "shared", {}, ['video_qa((1, 2), "what?")', "get_caption((1, 2, 3, 4))"], None, ["invalid"] * 2),
    ("video-qa-before-caption", "shared", {}, [ASK, "get_caption((1, 1))", ASK, "get_caption((1, 1, 2))", ASK],
     None, ["invalid", "caption", "invalid", "caption", "invalid"]),
    ("vlm-500", "shared", {}, [CAPTION, ASK], (1, 500), ["caption", "tool_error"]),
    ("vlm-400", "shared", {}, [CAPTION, ASK], (1, 400), ["caption", "tool_error"]),
    ("vlm-fails-then-answers", "shared", {}, [CAPTION, ASK, ASK], (1, 500), ["caption", "tool_error", "video_qa"]),
    ("vlm-answer-looks-like-a-failure", "shared", {"vlm_answer": "The tool failed: not really."}, [CAPTION, ASK],
     None, ["caption", "video_qa"]),
    ("vlm-timeout", "timeout", {}, [CAPTION, ASK], None, ["caption", "tool_error"]),
    ("vlm-unreachable", "unreachable", {}, [CAPTION, ASK], None, ["caption", "tool_error"]),
    ("missing-video", "no_video", {}, [CAPTION, ASK], None, ["caption", "tool_error"]),
    ("missing-caption-tree", "shared", {"video_uid": "absent"}, ["get_caption((1, 1))", "get_caption((9, 9))"],
     None, ["tool_error", "invalid"]),
    ("tree-of-another-width", "shared", {"width": 5}, ["get_caption((1, 1))", "get_caption((1, 6))"], None,
     ["tool_error", "invalid"]),
]


def world_env(kind: str, shared, tmp_path: Path, vlm: FakeVLM) -> NavigationEnv:
    """An environment over the shared world, or over a world whose video or VLM is broken as `kind` says."""
    if kind == "shared":
        return NavigationEnv(shared.settings)
    overrides = {"no_video": {"with_video": False},
                 "timeout": {"vlm": {"timeout_s": 0.3, "max_retries": 0}},
                 "unreachable": {"vlm": {"base_url": "http://127.0.0.1:9/v1", "max_retries": 0}}}[kind]
    return NavigationEnv(build_world(tmp_path, vlm, **overrides).settings)


@pytest.mark.parametrize(("kind", "info", "actions", "fail_at", "expected"), [row[1:] for row in ROWS],
                         ids=[row[0] for row in ROWS])
def test_env_and_reward_agree_on_every_call(world, vlm: FakeVLM, tmp_path: Path, kind: str, info: dict,
                                            actions: list[str], fail_at: tuple[int, int] | None,
                                            expected: list[str]) -> None:
    """Each turn's outcome, the served calls and their time ranges are the same for the env and the reward."""
    vlm.reset()
    info = dict(info)
    vlm.answer = info.pop("vlm_answer", "a red car drives by")
    env = world_env(kind, world, tmp_path, vlm)
    if kind == "timeout":
        vlm.stall(5)
    steps, kinds, env_served = [], [], []
    try:
        for position, action in enumerate(actions):
            if fail_at is not None and position == fail_at[0]:
                vlm.fail_next(10, fail_at[1])
            text = action if action.startswith("<think>") else turn(action)
            observation = env.step("t", text, extra_info(**info))
            if fail_at is not None and position == fail_at[0]:
                # The failures not used up must not reach the next call.
                vlm.reset()
            steps.append((text, observation.text))
            kinds.append(observation.kind)
            if observation.kind in ("caption", "video_qa"):
                env_served.append(parse_turn(text).action)
    finally:
        vlm.stall(0)
    assert kinds == expected
    width = info.get("width", WIDTH)
    judged = judge_rollout(decoded_rollout(steps), width)
    reward_kinds = ["answer" if isinstance(t.parsed.action, Answer) and t.valid else
                    "refused" if not t.valid else "failed" if t.failed else "served" for t in judged.turns]
    assert reward_kinds == [OUTCOME_OF_KIND[k] for k in kinds]
    assert list(judged.served_calls) == env_served
    ranges = [geometry.time_range(action.ids, width, DURATION) for action in judged.served_calls]
    assert ranges == [geometry.time_range(action.ids, width, DURATION) for action in env_served]
