"""verl-tool's verl (0.7.0.dev, the RL trainer's): its naive reward manager scores tokenized rollouts.

Fed tokenized multi-turn rollouts, the manager scores them with our compute_score."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from rewards.rollout import COUNT_KEYS, decoded_rollout
from rewards.score import compute_score
from rewards.spec import spec_from_dict
from tests.fixtures.verl_reward import trainer_reward_manager
from tools.environment import geometry
from tools.environment.caption_tree import CaptionTree
from tools.environment.prompts import caption_observation, error_observation, first_user_turn, system_prompt

pytestmark = pytest.mark.slow

# A 1024 s video at width 4: medium segments last 64 s, low ones 16 s; the clue is low segment (2, 1, 1).
DURATION, WIDTH, TRUTH = 1024.0, 4, "B"
OPTIONS = ["a dog barks", "a red car drives by", "it rains", "nobody comes"]
CLUES = [[256.0, 272.0]]
TO_CLUE, SPAM = [(2, 1), (2, 1, 1)], [(2, 1), (2, 1, 1), (2, 1, 1), (2, 1, 1)]
# name -> (tool-call ids in order, answer letter, whether the question has clue intervals).
ROLLOUTS = {
    "right": (TO_CLUE, "B", True),
    "wrong": (TO_CLUE, "C", True),
    "spammer": (SPAM, "B", True),
    "invalid": ([(9, 1), *TO_CLUE], "B", True),
    "no_clues": (TO_CLUE, "B", False),
}
NAMES = list(ROLLOUTS)


def spec_dict(preset: str) -> dict:
    """The fully resolved spec of `preset`, as the RL stage passes it in reward_kwargs."""
    from launch.compose import compose_config, to_container

    return spec_from_dict(to_container(compose_config("sft", [f"reward={preset}"], False).config)["reward"]).to_dict()


def swept(preset: str, weight: float) -> dict:
    """The spec of `preset` with the answer weight changed, as one point of a sweep gives it."""
    spec = copy.deepcopy(spec_dict(preset))
    spec["components"]["answer"]["weight"] = weight
    return spec


SPECS = {"paper": spec_dict("paper"), "default": spec_dict("default"), "default_answer3": swept("default", 3.0)}


@pytest.fixture(scope="module")
def tokenizer():
    """The tiny Qwen3 tokenizer with the qwen3_nothink chat template, built locally."""
    from tools.builders.chat_template import jinja_template
    from tools.demo.tiny_model import build_tokenizer

    return build_tokenizer(jinja_template("qwen3_nothink"))


def steps_of(calls: list[tuple[int, ...]], letter: str) -> list[tuple[str, str]]:
    """(model turn, observation) pairs: each call with the tool's reply, then the answer with none."""
    steps = []
    for ids in calls:
        try:
            geometry.check_ids(ids, WIDTH)
            observation = caption_observation(ids, WIDTH, DURATION, f"caption of {ids}")
        except geometry.GeometryError as error:
            observation = error_observation(str(error))
        turn = f"<think>Look at {ids}.</think><tool>get_caption({geometry.format_ids(ids)})</tool>"
        steps.append((turn, observation))
    return [*steps, (f"<think>I know it.</think><answer>{letter}</answer>", "")]


def extra_info_of(index: int, has_clues: bool) -> dict:
    """The row's extra_info as the RL parquet holds it; clue_intervals only where the question has clues."""
    info = {"video_uid": f"video{index}", "duration": DURATION, "width": WIDTH, "options": OPTIONS, "index": index}
    return {**info, "clue_intervals": CLUES} if has_clues else info


def rollout_ids(tokenizer, index: int, steps: list[tuple[str, str]]) -> tuple[list[int], list[int]]:
    """Prompt and response ids as verl-tool assembles a multi-turn rollout."""
    tree = CaptionTree("test", WIDTH, (tuple(f"high caption {h}" for h in range(WIDTH)), (), ()), ())
    user = first_user_turn(f"Question {index}: what happens?" + " really" * index, OPTIONS, DURATION, tree)
    messages = [{"role": "system", "content": system_prompt(10)}, {"role": "user", "content": user}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    response = []
    for turn, observation in steps:
        response += tokenizer.encode(turn, add_special_tokens=False)
        # The final turn is closed by <|im_end|> alone; the others by the observation's user turn.
        closing = f"<|im_end|>\n<|im_start|>user\n{observation}<|im_end|>\n<|im_start|>assistant\n" if observation \
            else "<|im_end|>"
        response += tokenizer.encode(closing, add_special_tokens=False)
    return prompt, response


def batch(tokenizer):
    """A DataProto of every rollout, prompts left padded and responses right padded; also each row's steps."""
    from verl import DataProto

    pairs, steps = [], []
    for index, (calls, letter, _) in enumerate(ROLLOUTS.values()):
        steps.append(steps_of(calls, letter))
        pairs.append(rollout_ids(tokenizer, index, steps[-1]))
    prompt_len, response_len = max(len(p) for p, _ in pairs), max(len(r) for _, r in pairs)
    pad = tokenizer.pad_token_id
    prompts = torch.tensor([[pad] * (prompt_len - len(p)) + p for p, _ in pairs])
    responses = torch.tensor([r + [pad] * (response_len - len(r)) for _, r in pairs])
    mask = torch.tensor([[0] * (prompt_len - len(p)) + [1] * (len(p) + len(r)) + [0] * (response_len - len(r))
                         for p, r in pairs])
    non_tensors = {"data_source": np.array(["longvideo"] * len(pairs), dtype=object),
                   "reward_model": np.array([{"ground_truth": TRUTH} for _ in pairs], dtype=object),
                   "extra_info": np.array([extra_info_of(i, ROLLOUTS[name][2]) for i, name in enumerate(NAMES)],
                                          dtype=object)}
    tensors = {"prompts": prompts, "responses": responses, "attention_mask": mask,
               "input_ids": torch.cat([prompts, responses], dim=1)}
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensors), steps


def run_manager(tokenizer, spec: dict) -> dict:
    """verl's manager output for the batch under `spec`, with the batch, each row's steps and the texts verl decoded."""
    spied = trainer_reward_manager(tokenizer, spec)
    data, steps = batch(tokenizer)
    return {**spied.manager(data, return_dict=True), "data": data, "steps": steps, "texts": spied.decoded,
            "spec": spec}


@pytest.fixture(scope="module", params=list(SPECS))
def scored(request, tokenizer) -> dict:
    """The manager's output under one spec of SPECS."""
    return run_manager(tokenizer, SPECS[request.param])


def row_scores(scored: dict) -> dict[str, float]:
    """Each rollout's score as verl logged it, by rollout name."""
    return dict(zip(NAMES, scored["reward_extra_info"]["score"], strict=True))


def test_think_survives_decoding(tokenizer) -> None:
    """<think> is a non-special added token: decoding without special tokens keeps it and drops <|im_end|>."""
    think = tokenizer.convert_tokens_to_ids("<think>")
    assert think not in tokenizer.all_special_ids
    ids = tokenizer.encode("<think>t</think><answer>B</answer><|im_end|>", add_special_tokens=False)
    assert think in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>t</think><answer>B</answer>"


def test_manager_scores_like_compute_score(scored: dict) -> None:
    """The reward tensor holds compute_score of verl's decoded text at each last response token, zeros elsewhere."""
    data, texts, spec = scored["data"], scored["texts"], scored["spec"]
    prompt_len = data.batch["prompts"].shape[1]
    valid = data.batch["attention_mask"][:, prompt_len:].sum(dim=1)
    expected = torch.zeros_like(data.batch["responses"], dtype=torch.float32)
    assert len(texts) == len(NAMES)
    for row, (name, text) in enumerate(zip(NAMES, texts, strict=True)):
        # verl drops the chat markers but keeps the think tags, leaving the text decoded_rollout models.
        assert "<|im_end|>" not in text and "<|im_start|>" not in text and "<think>" in text
        assert text == decoded_rollout(scored["steps"][row])
        direct = compute_score("longvideo", text, TRUTH, extra_info_of(row, ROLLOUTS[name][2]), **spec)
        expected[row, valid[row] - 1] = direct["score"]
        assert scored["reward_extra_info"]["score"][row] == direct["score"], name
    assert torch.equal(scored["reward_tensor"], expected)


def test_every_component_and_count_is_logged(scored: dict) -> None:
    """reward_extra_info holds every component and count, one value per row; location is NaN without clues."""
    extra = scored["reward_extra_info"]
    keys = {"score", "has_clues", *COUNT_KEYS, *scored["spec"]["components"]}
    assert keys <= set(extra)
    for key in keys:
        assert len(extra[key]) == len(NAMES), key
    location = dict(zip(NAMES, extra["location"], strict=True))
    assert math.isnan(location["no_clues"])
    assert all(not math.isnan(value) for name, value in location.items() if name != "no_clues")
    assert extra["has_clues"] == [int(ROLLOUTS[name][2]) for name in NAMES]
    counts = {key: dict(zip(NAMES, extra[key], strict=True)) for key in COUNT_KEYS}
    assert counts["repeats"]["spammer"] == 2 and counts["repeats"]["right"] == 0
    assert counts["invalid_turns"]["invalid"] == 1 and counts["tool_calls"]["invalid"] == 3
    assert counts["answered"] == dict.fromkeys(NAMES, 1)


def test_rankings(scored: dict) -> None:
    """The right answer beats the wrong one at equal navigation; repeating calls never beats not repeating."""
    scores = row_scores(scored)
    assert scores["right"] > scores["wrong"]
    assert scores["spammer"] < scores["right"]
    assert scores["invalid"] <= scores["right"]


def test_reward_kwargs_reach_the_function(tokenizer) -> None:
    """A sweep point with the answer weight at 3 instead of 1 adds exactly 2 x answer to each score."""
    base = run_manager(tokenizer, SPECS["default"])
    point = run_manager(tokenizer, SPECS["default_answer3"])
    answers = dict(zip(NAMES, base["reward_extra_info"]["answer"], strict=True))
    assert answers["right"] == 1.0 and answers["wrong"] == 0.0
    for name, score in row_scores(point).items():
        assert score == pytest.approx(row_scores(base)[name] + 2.0 * answers[name]), name
