"""Build the `tiny` recipe's model: Qwen3-shaped, CPU-sized, with the real Qwen vocabulary.

No hub download: the byte-level BPE ranks come from the `qwen.tiktoken` file that the PyPI wheel
`dashscope` ships (151,643 tokens, the vocabulary of Qwen2.5 and Qwen3), and Qwen3's added tokens
are placed at their real ids, so text encodes exactly as with the real tokenizer.

    python -m tools.demo.tiny_model --output ~/.cache/longvideo-r1/models/tiny-qwen3 --template qwen3_nothink
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import tempfile
from pathlib import Path

# Qwen2/Qwen3 pre-tokenizer: digits one at a time, letters with an optional leading symbol.
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)
BASE_VOCAB = 151643
# Qwen3's added tokens from id 151643 on, and whether each is special (removed on decode).
ADDED_TOKENS = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False), ("<tool_response>", False), ("</tool_response>", False),
    ("<think>", False), ("</think>", False),
]
# Qwen3 pads its embedding matrix to a multiple of 128 beyond the 151,669 tokens.
PADDED_VOCAB = 151936
# head_dim 32: the smallest head vLLM's CPU attention serves (32, 64, 80 and up; 16 fails at the first request).
TINY_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=32, max_position_embeddings=8192)


def qwen_vocab_file() -> Path:
    """The `qwen.tiktoken` file shipped in the `dashscope` wheel."""
    spec = importlib.util.find_spec("dashscope")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the tiny tokenizer needs `pip install dashscope` (it ships qwen.tiktoken)")
    path = Path(spec.origin).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed dashscope wheel")
    return path


def build_tokenizer(chat_template: str):
    """A fast tokenizer equal to Qwen3's on text, with its added tokens at their real ids."""
    from tokenizers import AddedToken, normalizers
    from transformers import Qwen2TokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    # The added tokens go in below, one by one, so each lands at its real id.
    backend = TikTokenConverter(vocab_file=str(qwen_vocab_file()), pattern=QWEN_PATTERN,
                                additional_special_tokens=[]).converted()
    backend.normalizer = normalizers.NFC()
    # Qwen3's own tokenizer class (so the model's inputs are ids and attention mask, no token types),
    # with its special tokens unset here: they are added below at their real ids.
    tokenizer = Qwen2TokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False,
                                   unk_token=None, bos_token=None, eos_token=None, pad_token=None)
    for offset, (content, special) in enumerate(ADDED_TOKENS):
        token = AddedToken(content, special=special, normalized=False)
        if special:
            tokenizer.add_special_tokens({"additional_special_tokens": [token]},
                                         replace_additional_special_tokens=False)
        else:
            tokenizer.add_tokens([token])
        got = tokenizer.convert_tokens_to_ids(content)
        if got != BASE_VOCAB + offset:
            raise RuntimeError(f"added token {content} landed at id {got}, expected {BASE_VOCAB + offset}")
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.model_max_length = TINY_SHAPE["max_position_embeddings"]
    tokenizer.chat_template = chat_template
    return tokenizer


def build_model(seed: int = 0):
    """A randomly initialised Qwen3 causal LM of the tiny shape."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=PADDED_VOCAB, tie_word_embeddings=True, bos_token_id=None,
                         eos_token_id=151645, pad_token_id=151643, **TINY_SHAPE)
    return Qwen3ForCausalLM(config)


def build(output: Path, template: str, seed: int = 0) -> Path:
    """Write the tiny model and tokenizer to `output`, atomically; an existing one is kept."""
    from tools.builders.chat_template import jinja_template

    output = output.expanduser().absolute()
    if (output / "config.json").is_file():
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        build_tokenizer(jinja_template(template)).save_pretrained(staging)
        build_model(seed).save_pretrained(staging)
        try:
            staging.rename(output)
        except OSError:
            # Another process finished the same build first; theirs is as good as ours.
            if not (output / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def main() -> None:
    """CLI: build the tiny model into `--output` unless it is already there."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--template", required=True, help="the chat template its tokenizer ships (chat.template)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"tiny model ready at {build(args.output, args.template, args.seed)}")


if __name__ == "__main__":
    main()
