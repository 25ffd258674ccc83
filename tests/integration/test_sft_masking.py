"""Masking proof through LLaMA-Factory's own SFT data pipeline, with the tiny recipe's rendered arguments."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

import pytest

from launch.compose import compose_config
from launch.stages.sft import LF_DIR, train_args
from tests.conftest import demo_samples
from tools.sft_format import dataset_info

pytestmark = pytest.mark.slow

IGNORE_INDEX = -100
COUNT = 6
# How qwen3_nothink renders each sharegpt message, as (prefix, suffix) around its value: the spec that
# verl-tool rollouts and inference also follow. Only `gpt` turns are trained.
RENDER = {
    "system": ("<|im_start|>system\n", "<|im_end|>\n"),
    "human": ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"),
    "observation": ("<|im_start|>user\n<tool_response>\n", "\n</tool_response><|im_end|>\n<|im_start|>assistant\n"),
    "gpt": ("", "<|im_end|>\n"),
}


class Encoded(NamedTuple):
    """LLaMA-Factory's tokenized SFT samples next to the trajectories they came from."""

    role: str
    records: list[dict]
    samples: list[dict]
    tokenizer: object
    cutoff_len: int


@pytest.fixture(scope="module", params=["user", "tool"])
def encoded(request: pytest.FixtureRequest, tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Encoded:
    """Demo trajectories (observations in the param's role) run through LLaMA-Factory's get_dataset."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    role = request.param
    tmp = tmp_path_factory.mktemp(f"sft-{role}")
    records = demo_samples(tiny_cache, role, COUNT)
    data = tmp / "trajectories.json"
    data.write_text(json.dumps(records))
    overrides = ["recipe=tiny", f"run_root={tmp / 'runs'}", f"sft.dataset.path={data}", "sft.dataset.build=null",
                 f"chat.observation_role={role}"]
    run_dir = tmp / "run"
    args = train_args(compose_config("sft", overrides).config, run_dir, "masking")
    (run_dir / LF_DIR).mkdir(parents=True)
    (run_dir / LF_DIR / "dataset_info.json").write_text(json.dumps(dataset_info(str(data))))
    # The datasets cache goes under tmp, not into ~/.cache/huggingface.
    model_args, data_args, training_args, _, _ = get_train_args({**args, "cache_dir": str(tmp / "hf")})
    # The same calls, in the same order, as llamafactory.train.sft.workflow.run_sft.
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    dataset = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)
    samples = list(dataset["train_dataset"])
    return Encoded(role, records, samples, tokenizer_module["tokenizer"], data_args.cutoff_len)


def segments(tokenizer, record: dict) -> list[tuple[list[int], bool]]:
    """Each message's token ids, rendered on its own by RENDER, and whether it is a model turn."""
    result = []
    for message in record["messages"]:
        prefix, suffix = RENDER[message["from"]]
        ids = tokenizer.encode(prefix + message["value"] + suffix, add_special_tokens=False)
        result.append((ids, message["from"] == "gpt"))
    return result


def runs(labels: list[int], labelled: bool) -> list[tuple[int, int]]:
    """(start, end) of each maximal run of labelled (or of masked) positions."""
    found, start = [], None
    for position, label in enumerate([*labels, None]):
        inside = label is not None and (label != IGNORE_INDEX) == labelled
        if inside and start is None:
            start = position
        elif not inside and start is not None:
            found.append((start, position))
            start = None
    return found


def pairs(encoded: Encoded) -> list[tuple[dict, dict]]:
    """Each trajectory with its sample; LLaMA-Factory keeps the file's order."""
    assert len(encoded.samples) == len(encoded.records) == COUNT
    return list(zip(encoded.records, encoded.samples, strict=True))


def test_no_sample_is_dropped_or_truncated(encoded: Encoded) -> None:
    """Every trajectory becomes one sample holding all its messages, rendered exactly, within cutoff_len."""
    for record, sample in pairs(encoded):
        expected = [token for ids, _ in segments(encoded.tokenizer, record) for token in ids]
        assert sample["input_ids"] == expected
        assert len(sample["input_ids"]) < encoded.cutoff_len


def test_only_model_turns_are_labelled(encoded: Encoded) -> None:
    """Labels are -100 exactly on system, question and observation tokens and equal input ids on model turns."""
    for record, sample in pairs(encoded):
        expected = []
        for ids, trained in segments(encoded.tokenizer, record):
            expected += ids if trained else [IGNORE_INDEX] * len(ids)
        assert sample["labels"] == expected


def test_every_model_turn_is_one_labelled_span(encoded: Encoded) -> None:
    """Each model turn, tool calls and answer alike, is its own labelled span: think, action and <|im_end|>."""
    for record, sample in pairs(encoded):
        ids, labels = sample["input_ids"], sample["labels"]
        spans = runs(labels, labelled=True)
        decoded = [encoded.tokenizer.decode(ids[start:end], skip_special_tokens=False) for start, end in spans]
        model_turns = [message["value"] + "<|im_end|>\n" for message in record["messages"] if message["from"] == "gpt"]
        # Every model turn (three or four tool calls, one answer): never only the last (mask_history).
        assert len(model_turns) >= 4
        assert decoded == model_turns
        assert all(labels[start:end] == ids[start:end] for start, end in spans)


def test_earlier_think_content_is_kept(encoded: Encoded) -> None:
    """The <think> content of every earlier model turn stays in the input ids, never stripped."""
    think_id = encoded.tokenizer.convert_tokens_to_ids("<think>")
    for record, sample in pairs(encoded):
        text = encoded.tokenizer.decode(sample["input_ids"], skip_special_tokens=False)
        model_turns = [message["value"] for message in record["messages"] if message["from"] == "gpt"]
        for turn in model_turns[:-1]:
            thought = re.match(r"<think>.+?</think>", turn).group(0)
            assert thought in text
        # One <think> per model turn, beyond those the system prompt mentions.
        system_thinks = record["messages"][0]["value"].count("<think>")
        assert sample["input_ids"].count(think_id) == len(model_turns) + system_thinks


def test_observations_are_masked_in_their_role(encoded: Encoded) -> None:
    """Each observation is one masked user turn; in the tool role its content is wrapped in <tool_response>."""
    for record, sample in pairs(encoded):
        ids = sample["input_ids"]
        masked = [encoded.tokenizer.decode(ids[start:end], skip_special_tokens=False)
                  for start, end in runs(sample["labels"], labelled=False)]
        observations = [message["value"] for message in record["messages"][2:] if message["from"] != "gpt"]
        if encoded.role == "tool":
            observations = ["<tool_response>\n" + value + "\n</tool_response>" for value in observations]
        # The first masked run is the system prompt and the question; then one run per observation.
        assert masked[1:] == ["<|im_start|>user\n" + value + "<|im_end|>\n<|im_start|>assistant\n"
                              for value in observations]
        assert len(observations) == len(masked) - 1 >= 3
