"""The chat template a trained checkpoint carries: the one SFT trained on, RL and evaluation render.

Qwen3's stock template strips `<think>` content from earlier assistant turns and inserts empty
think blocks; LLaMA-Factory's `qwen3_nothink` (and `qwen`) templates train on every turn verbatim.
After training, the Plan installs the Jinja equivalent of the training template into the
checkpoint, so `apply_chat_template` (vLLM, verl) renders a trajectory exactly as SFT saw it.
An observation in the `tool` role is wrapped as LLaMA-Factory's observation slot wraps it.

    python -m tools.builders.chat_template --model runs/sft/tiny/NAME/checkpoints --template qwen3_nothink
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tools.environment.registry import add_entry

# LLaMA-Factory template name -> its default system prompt (None: no system turn unless given).
_TEMPLATES: dict[str, str | None] = {}


def register_template(name: str, default_system: str | None) -> None:
    """Register LLaMA-Factory's template `name` with its default system prompt; a second one of a name is refused."""
    add_entry(_TEMPLATES, "chat template", name, default_system)


register_template("qwen3_nothink", None)
register_template("qwen", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
# The templates that have an inference chat template here, for CLI choices, config checks and error messages.
TEMPLATE_NAMES = tuple(_TEMPLATES)

# Every output is a Jinja string expression, so whitespace control never eats a newline.
_BODY = r"""
{%- if messages[0].role != 'system' and default_system -%}
{{- '<|im_start|>system\n' + default_system + '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in messages -%}
{%- if message.role == 'system' -%}
{{- '<|im_start|>system\n' + message.content + '<|im_end|>\n' -}}
{%- elif message.role == 'user' -%}
{{- '<|im_start|>user\n' + message.content + '<|im_end|>\n' -}}
{%- elif message.role == 'assistant' -%}
{{- '<|im_start|>assistant\n' + message.content + '<|im_end|>\n' -}}
{%- elif message.role == 'tool' -%}
{{- '<|im_start|>user\n<tool_response>\n' + message.content + '\n</tool_response><|im_end|>\n' -}}
{%- else -%}
{{- raise_exception('unknown role: ' + message.role) -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- endif -%}"""


def jinja_template(template: str) -> str:
    """The Jinja chat template equivalent to LLaMA-Factory's template `template`."""
    if template not in _TEMPLATES:
        raise ValueError(f"chat.template={template!r} has no inference chat template here; "
                         f"supported: {', '.join(TEMPLATE_NAMES)}")
    system = _TEMPLATES[template]
    header = "{%- set default_system = " + (repr(system) if system else "none") + " -%}"
    return header + _BODY


def install(model_dir: Path, template: str) -> Path:
    """Save the tokenizer in `model_dir` again with the template's Jinja chat template."""
    from transformers import AutoTokenizer

    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a saved model (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = jinja_template(template)
    tokenizer.save_pretrained(model_dir)
    # Read it back: a checkpoint that renders differently from training must not pass silently.
    reloaded = AutoTokenizer.from_pretrained(model_dir)
    probe = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>t</think><answer>A</answer>"}]
    if reloaded.apply_chat_template(probe, tokenize=False) != tokenizer.apply_chat_template(probe, tokenize=False):
        raise RuntimeError(f"{model_dir}: the saved chat template does not render as installed")
    return model_dir


def main() -> None:
    """CLI: install the chat template of `--template` into the model at `--model`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--template", required=True, choices=TEMPLATE_NAMES)
    args = parser.parse_args()
    print(f"chat template {args.template} installed in {install(args.model, args.template)}")


if __name__ == "__main__":
    main()
