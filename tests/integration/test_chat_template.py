"""The checkpoint's chat template is the one SFT trained on and RL and inference render, token for token."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import demo_samples
from tools.builders.chat_template import install, jinja_template

pytestmark = pytest.mark.slow

# sharegpt `from` -> the chat role apply_chat_template takes, and the role LLaMA-Factory's template encodes.
CHAT_ROLES = {"system": "system", "human": "user", "gpt": "assistant", "observation": "tool"}
LF_ROLES = {"human": "user", "gpt": "assistant", "observation": "observation"}
# A template the checkpoint may come with (not ours), which install must replace.
FOREIGN_TEMPLATE = "{%- for m in messages -%}{{- m.role + ': ' + m.content + '\\n' -}}{%- endfor -%}"


def chat(record: dict) -> list[dict]:
    """A sharegpt record as apply_chat_template's role/content messages."""
    return [{"role": CHAT_ROLES[m["from"]], "content": m["value"]} for m in record["messages"]]


def installed(tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory, template: str):
    """The tokenizer of a copy of the tiny model, reloaded after `install` of `template` over a foreign one."""
    from transformers import AutoTokenizer

    model_dir = shutil.copytree(tiny_cache / "models" / "tiny-qwen3", tmp_path_factory.mktemp(template) / "model")
    (model_dir / "chat_template.jinja").write_text(FOREIGN_TEMPLATE)
    install(model_dir, template)
    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def record_user(tiny_cache: Path) -> dict:
    """One demo trajectory with its observations as user turns."""
    return demo_samples(tiny_cache, "user", 1)[0]


@pytest.fixture(scope="module", params=["user", "tool"])
def record(request: pytest.FixtureRequest, tiny_cache: Path) -> dict:
    """One demo trajectory with its observations in the param's role."""
    return demo_samples(tiny_cache, request.param, 1)[0]


@pytest.fixture(scope="module")
def tokenizer(tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """The checkpoint tokenizer with qwen3_nothink installed, as vLLM and verl-tool load it."""
    return installed(tiny_cache, tmp_path_factory, "qwen3_nothink")


@pytest.fixture(scope="module")
def qwen_tokenizer(tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """The checkpoint tokenizer with the `qwen` variant installed."""
    return installed(tiny_cache, tmp_path_factory, "qwen")


@pytest.fixture(scope="module")
def lf_tokenizer(tiny_cache: Path):
    """The tiny model's tokenizer as LLaMA-Factory's SFT loads it."""
    from llamafactory.hparams import ModelArguments
    from llamafactory.model import load_tokenizer

    return load_tokenizer(ModelArguments(model_name_or_path=str(tiny_cache / "models" / "tiny-qwen3")))["tokenizer"]


def llamafactory_ids(lf_tokenizer, template_name: str, record: dict) -> list[int]:
    """input_ids of `record` as LLaMA-Factory's supervised processor builds them (template.encode_multiturn)."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    template = get_template_and_fix_tokenizer(lf_tokenizer, DataArguments(template=template_name))
    messages = record["messages"]
    system = messages[0]["value"] if messages[0]["from"] == "system" else None
    turns = [{"role": LF_ROLES[m["from"]], "content": m["value"]} for m in messages if m["from"] != "system"]
    return [token for source, target in template.encode_multiturn(lf_tokenizer, turns, system)
            for token in source + target]


def rollout_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids as verl-tool's multi-turn rollout assembles them: prompt, then each model turn and observation."""
    ids = tokenizer.apply_chat_template(messages[:2], add_generation_prompt=True, return_dict=False)
    for turn in range(2, len(messages), 2):
        ids += tokenizer.encode(messages[turn]["content"], add_special_tokens=False)
        if turn + 1 < len(messages):
            observation = messages[turn + 1]["content"]
            closing = "<|im_end|>\n<|im_start|>user\n" + observation + "<|im_end|>\n<|im_start|>assistant\n"
        else:
            closing = "<|im_end|>\n"
        ids += tokenizer.encode(closing, add_special_tokens=False)
    return ids


def test_rollout_ids_equal_the_chat_template(tokenizer, record_user: dict) -> None:
    """apply_chat_template of a whole trajectory gives exactly the ids the RL rollout builds turn by turn."""
    messages = chat(record_user)
    calls = len(messages) // 2 - 1
    assert [m["role"] for m in messages] == ["system", "user"] + ["assistant", "user"] * calls + ["assistant"]
    assert tokenizer.apply_chat_template(messages, return_dict=False) == rollout_ids(tokenizer, messages)
    # verl-tool derives its observation separator from the checkpoint's template (mtrl_role=user) this way.
    probe = [{"role": "system", "content": "{obs}"}]
    separator = "\n" + tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    assert separator.replace("system", "user") == "\n<|im_start|>user\n{obs}<|im_end|>\n<|im_start|>assistant\n"


def test_llamafactory_encodes_the_same_ids(tokenizer, lf_tokenizer, record: dict) -> None:
    """LLaMA-Factory's qwen3_nothink encoding of a trajectory equals apply_chat_template's, in either role."""
    expected = llamafactory_ids(lf_tokenizer, "qwen3_nothink", record)
    assert tokenizer.apply_chat_template(chat(record), return_dict=False) == expected


def test_earlier_think_content_survives(tokenizer, record_user: dict) -> None:
    """The <think> content of earlier assistant turns is rendered verbatim, and no empty think block is added."""
    messages = chat(record_user)
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assistant = [m["content"] for m in messages if m["role"] == "assistant"]
    for content in assistant[:-1]:
        assert content.startswith("<think>")
        assert "<|im_start|>assistant\n" + content + "<|im_end|>\n" in text
    # One <think> per assistant turn, beyond those the system prompt mentions.
    assert text.count("<think>") == len(assistant) + messages[0]["content"].count("<think>")
    assert "<think>\n\n</think>" not in text


def test_qwen_variant_inserts_default_system(qwen_tokenizer, lf_tokenizer, record_user: dict) -> None:
    """The `qwen` variant adds LLaMA-Factory's default system prompt only when the trajectory has none."""
    from llamafactory.data.template import TEMPLATES

    default = TEMPLATES["qwen"].default_system
    without_system = {"messages": record_user["messages"][1:]}
    text = qwen_tokenizer.apply_chat_template(chat(without_system), tokenize=False)
    assert text.startswith("<|im_start|>system\n" + default + "<|im_end|>\n<|im_start|>user\nQuestion:")
    ids = qwen_tokenizer.apply_chat_template(chat(without_system), return_dict=False)
    assert ids == llamafactory_ids(lf_tokenizer, "qwen", without_system)
    # A trajectory's own system prompt replaces the default.
    assert default not in qwen_tokenizer.apply_chat_template(chat(record_user), tokenize=False)


def test_unsupported_template_is_rejected() -> None:
    """jinja_template('qwen3') raises ValueError naming the templates that are supported."""
    with pytest.raises(ValueError, match="'qwen3'") as error:
        jinja_template("qwen3")
    supported = str(error.value).split("supported:")[1]
    assert sorted(name.strip() for name in supported.split(",")) == ["qwen", "qwen3_nothink"]
