"""Masking proof through LLaMA-Factory's own SFT data pipeline, with the tiny recipe's rendered arguments."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

import pytest

from launch.compose import compose_config
from launch.stages.sft import LF_DIR, train_args
from tests.conftest import DEMO_MAX_TURNS, demo_samples
from tools.builders.sft_format import dataset_info

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


def verl_tool_separator(tokenizer, chat_template: str, role: str) -> str:
    """verl-tool's multi-turn separator (`mtrl_sep` left null), derived from the checkpoint's template as it does."""
    probe = tokenizer.apply_chat_template([{"role": "system", "content": "{obs}"}], chat_template=chat_template,
                                          tokenize=False, add_generation_prompt=True)
    return ("<|im_end|>" + "\n" + probe).replace("system", role)


def rollout_ids(tokenizer, chat_template: str, prompt: list[dict], exchanges: list[tuple[str, str | None]],
                separator: str) -> list[int]:
    """The ids verl-tool's rollout holds: the parquet prompt, then each action and its observation in `separator`."""
    ids = tokenizer.apply_chat_template(prompt, chat_template=chat_template, add_generation_prompt=True,
                                        return_dict=False)
    for model, observation in exchanges:
        # Generation stops at </tool> or </answer>; the tool's reply comes back as one separator-wrapped string.
        ids += tokenizer.encode(model, add_special_tokens=False)
        if observation is not None:
            ids += tokenizer.encode(separator.replace("{obs}", observation), add_special_tokens=False)
    return ids


def rl_prompts(tiny_cache: Path, ids: list[str]) -> list[list[dict]]:
    """The RL parquet prompts that the rl_data builder writes for the demo questions `ids`."""
    from tools.builders.annotations import read_annotations
    from tools.builders.rl_data import RLDataSettings, rl_row
    from tools.environment.caption_tree import load_caption_tree

    world = tiny_cache / "demo" / "world"
    settings = RLDataSettings(str(world / "annotations.json"), "cgbench", "demo", str(world / "captions"), None,
                              DEMO_MAX_TURNS, 0.0, 0)
    questions = {q.question_id: q for q in read_annotations(settings.annotations, settings.format)[0]}
    return [rl_row(questions[i], load_caption_tree(world / "captions" / f"{questions[i].video_uid}.json"),
                   settings)["prompt"] for i in ids]


def test_sft_sample_is_the_rl_rollout(encoded: Encoded, tiny_cache: Path) -> None:
    """The SFT sample's ids are the RL rollout's ids for the same trajectory, built from the rl_data prompt.

    With observations as user turns they are equal up to the `<|im_end|>\\n` SFT trains after the answer,
    which RL never generates (generation stops at </answer>). In the tool role SFT wraps each observation
    in <tool_response>, which verl-tool's multi-turn rollout never writes: only that wrapper differs.
    """
    from tools.builders.chat_template import jinja_template
    from tools.environment.trajectory import read_trajectories

    template = jinja_template("qwen3_nothink")
    trajectories = [item for _, item in read_trajectories(tiny_cache / "demo" / "world" / "trajectories.jsonl")]
    prompts = rl_prompts(tiny_cache, [t.id for t in trajectories[:COUNT]])
    separator = verl_tool_separator(encoded.tokenizer, template, "user")
    for trajectory, prompt, (_, sample) in zip(trajectories, prompts, pairs(encoded), strict=False):
        exchanges = [(turn.model, turn.observation) for turn in trajectory.turns[:-1]]
        exchanges.append((trajectory.turns[-1].model, None))
        rollout = rollout_ids(encoded.tokenizer, template, prompt, exchanges, separator)
        answer_end = encoded.tokenizer.encode("<|im_end|>\n", add_special_tokens=False)
        if encoded.role == "user":
            assert sample["input_ids"] == rollout + answer_end
            continue
        sft_text = encoded.tokenizer.decode(sample["input_ids"])
        rl_text = encoded.tokenizer.decode(rollout + answer_end)
        assert sft_text != rl_text
        for turn in trajectory.turns[:-1]:
            sft_text = sft_text.replace(f"<|im_start|>user\n<tool_response>\n{turn.observation}\n</tool_response>",
                                        f"<|im_start|>user\n{turn.observation}", 1)
        assert sft_text == rl_text
