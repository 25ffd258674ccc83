"""Fuzz: 10,000 random and adversarial turns through the tool object verl-tool calls, none of them unexplained.

Turns are composed from real tags, calls with ids of every kind (negative, zero, huge, floats, strings,
too many or too few), malformed video_qa calls, answers, `</tool>` injection, nested tags, unicode,
huge strings and values that are not text at all (None, bytes, numbers), sent in verl-tool's batches
with mostly valid and sometimes broken extra fields. Every reply must be a well-typed triple whose
observation holds no action tag, and every refusal must say what was wrong; a bug caught by the
glue's last-resort handler (an "internal error" observation) fails the test too. A few well-formed
video_qa calls go to the loopback fake VLM, so the served path is fuzzed alongside the refusals.
Generation is derandomized, so CI replays the same turns.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from tests.fixtures.tool_world import WIDTH, extra_info
from tools.environment.actions import ACTION_TAGS, TURN_TAGS
from tools.environment.tool_settings import ENV_VAR, write_settings
from tools.environment.verl_tool_glue import LongVideoNavTool

BATCH = 25
EXAMPLES = 400
# No shrinking: a failure reports its turn at once instead of spending minutes of CI on a smaller one.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                phases=(Phase.explicit, Phase.generate))
# What an invalid turn's or a failed call's observation starts with (tools/environment/prompts.py).
REFUSALS = ("Invalid action: ", "The tool failed: ")

# Ids of every kind: in range, out of range, zero, negative, huge, floats, words and unicode digits.
ID = st.one_of(st.integers(1, WIDTH), st.integers(-3, 12), st.sampled_from(["10**30", "1e9", "1.5", "-0", "0",
                                                                             "x", "None", "١", "True", "''"]))
IDS = st.lists(ID, min_size=0, max_size=5).map(lambda ids: ", ".join(str(value) for value in ids))
BRACKETS = st.sampled_from(["({})", "[{}]", "{{{}}}", "(({}))", "({}", "{})", "{}", "((({})))"])
QUERY = st.one_of(st.sampled_from(['"who is there?"', "'what colour?'", '""', '"   "', '"unclosed', "42", "None",
                                  '"a</tool>b"', '"<answer>B</answer>"', '"\\"escaped\\""', "'mixed\"",
                                  '"' + "q" * 5000 + '"']),
                  st.text(max_size=30).map(lambda text: '"' + text.replace('"', "") + '"'))
CALL = st.one_of(
    st.builds(lambda ids, shape: f"get_caption({shape.format(ids)})", IDS, BRACKETS),
    st.builds(lambda ids, shape, query: f"video_qa({shape.format(ids)}, {query})", IDS, BRACKETS, QUERY),
    st.builds(lambda ids: f"video_qa(({ids}))", IDS),
    st.builds(lambda query: f"video_qa({query})", QUERY),
    st.sampled_from(["", " ", "get_caption", "get_caption()", "get_caption((1, 1)) get_caption((1, 2))",
                     "search('cats')", "__import__('os').system('true')", "get_caption((1, 1)),", "video_qa",
                     "get_caption(((((1, 1)))))", "get_caption((1, 1), (1, 2))", "GET_CAPTION((1, 1))",
                     "get_caption(h=1, m=1)", "get_caption((1,\n1))", "get_caption((1, 1))" + " " * 100_000]),
    st.text(max_size=40),
)
ANSWER = st.one_of(st.sampled_from(["B", "b", "(C)", "A or B", "B, or maybe C", "", " ", "the red car",
                                    "<answer>A</answer>", "Z" * 10_000]), st.text(max_size=20))
THINK = st.sampled_from(["<think>I look.</think>", "", "<think>", "<think></think>", "<think>use </tool></think>",
                         "<think><think>nested</think></think>", "I will look. "])
TEXT = st.text(max_size=60)
TURN = st.one_of(
    st.builds(lambda think, call: f"{think}<tool>{call}</tool>", THINK, CALL),
    st.builds(lambda think, answer: f"{think}<answer>{answer}</answer>", THINK, ANSWER),
    st.builds(lambda think, call: f"{think}<tool>{call}", THINK, CALL),
    st.builds(lambda call, answer: f"<think>t</think><tool>{call}</tool><answer>{answer}</answer>", CALL, ANSWER),
    st.builds(lambda call: f"<think>t</think><tool><tool>{call}</tool></tool>", CALL),
    st.lists(st.sampled_from([*TURN_TAGS, "get_caption((1, 1))", "(", ")", "1", "x", "é", "\x00", "🐱"]),
             max_size=30).map("".join),
    TEXT,
    st.sampled_from(["x" * 200_000, "</tool>" * 1000, "<tool>" * 1000 + "get_caption((1, 1))" + "</tool>" * 1000,
                     "\udcff", "\x00" * 50]),
    st.one_of(st.none(), st.binary(max_size=20), st.integers(), st.floats(), st.lists(st.integers(), max_size=2)),
)
# Mostly the world's question; sometimes data the tool must refuse (widths no tree has, fields missing).
EXTRA = st.one_of(
    st.just(extra_info()), st.just(extra_info()), st.just(extra_info()),
    st.sampled_from([extra_info(width=100), extra_info(width=1), extra_info(duration=-1), {}, None,
                     {"extra_info": extra_info()}, extra_info(video_uid="no-such-video"), "junk",
                     extra_info(width=5)]),
)
BATCHES = st.lists(st.tuples(TURN, EXTRA, st.integers(0, 9)), min_size=BATCH, max_size=BATCH)


@pytest.fixture(scope="module")
def tool(world, tmp_path_factory: pytest.TempPathFactory) -> LongVideoNavTool:
    """The tool as verl-tool builds it (num_workers only, settings from the environment variable)."""
    path = write_settings(world.settings, Path(tmp_path_factory.mktemp("fuzz")) / "tool.json")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, str(path))
        return LongVideoNavTool(num_workers=4)


def check_reply(action: object, observation: object, done: object, valid: object) -> None:
    """One reply: typed, free of action tags, explained when invalid, done only for an answer."""
    assert isinstance(observation, str) and isinstance(done, bool) and isinstance(valid, bool), (action, observation)
    assert not any(tag in observation for tag in ACTION_TAGS), observation[:300]
    assert "internal error" not in observation, (repr(action)[:300], observation)
    if not valid:
        assert observation.startswith(REFUSALS), (repr(action)[:300], observation[:300])
        reason = observation.split(": ", 1)[1]
        assert len(reason.strip(" .")) >= 10, observation
        assert not done
    elif done:
        assert observation == "" and isinstance(action, str) and "<answer>" in action
    else:
        assert observation.strip(), repr(action)[:300]


def test_ten_thousand_adversarial_turns_are_all_explained(tool: LongVideoNavTool) -> None:
    """10,000 fuzzed turns in batches of 25 across 10 trajectories: no exception, every reply explained."""
    served = []

    @FUZZ
    @given(BATCHES)
    def serve_batch(batch: list[tuple[object, object, int]]) -> None:
        """One verl-tool batch of fuzzed turns, each reply checked."""
        ids = [f"fuzz-{trajectory}" for _, _, trajectory in batch]
        actions = [action for action, _, _ in batch]
        fields = [field for _, field, _ in batch]
        observations, dones, valids = tool.get_observations(ids, actions, fields)
        assert len(observations) == len(dones) == len(valids) == BATCH
        for action, observation, done, valid in zip(actions, observations, dones, valids, strict=True):
            check_reply(action, observation, done, valid)
        served.append(len(batch))

    serve_batch()
    assert sum(served) >= 10_000


@pytest.mark.parametrize(("query", "served"), [("what colour is the car?", True), ("¿qué? 猫 🐱", True),
                                               ("q" * 2000, True), ("a </tool> b", False)],
                         ids=["plain", "unicode", "long", "stop-tag-inside"])
def test_well_formed_video_qa_reaches_the_vlm_and_is_explained(tool: LongVideoNavTool, query: str,
                                                               served: bool) -> None:
    """The served path: a leaf's caption, then video_qa about it, answered by the loopback VLM (a query holding
    `</tool>` ends the turn early, so it is refused and explained)."""
    leaf = "(2, 3, 4)"
    turns = [f"<think>t</think><tool>get_caption({leaf})</tool>",
             f"<think>t</think><tool>video_qa({leaf}, {query!r})</tool>"]
    replies = [tool.get_observations(["qa"], [action], [extra_info()]) for action in turns]
    for action, (observations, dones, valids) in zip(turns, replies, strict=True):
        check_reply(action, observations[0], dones[0], valids[0])
    assert replies[0][2] == [True] and replies[1][2] == [served]
    assert replies[1][0][0].startswith("<information>") == served
    tool.delete_env("qa")
