"""LLaMA-Factory's sharegpt form of one trajectory, and the `dataset_info.json` entry that registers it.

One sample per trajectory: the system prompt, the first user turn, then each model turn (trained)
and each observation (masked) as its own message. With `chat.observation_role=user` an observation
is a `human` message, rendered `<|im_start|>user\\n{obs}<|im_end|>` exactly as verl-tool's multi-turn
rollout appends it; with `tool` it is an `observation` message, which LLaMA-Factory wraps in
`<tool_response>`. The SFT stage and the dataset builders both register the file through
`dataset_info`, so the tags they agree on are written once.
"""

from __future__ import annotations

from collections.abc import Iterable

DATASET_NAME = "longvideo_r1_trajectories"
# chat.observation_role -> the sharegpt `from` tag of an observation message.
OBSERVATION_TAGS = {"user": "human", "tool": "observation"}
TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "system_tag": "system",
}


class SampleError(ValueError):
    """A sample that LLaMA-Factory would reject or train wrongly; the message says which message is wrong."""


def observation_tag(observation_role: str) -> str:
    """The sharegpt tag of an observation for `chat.observation_role` (user or tool)."""
    if observation_role not in OBSERVATION_TAGS:
        raise ValueError(f"chat.observation_role={observation_role!r}: expected one of {', '.join(OBSERVATION_TAGS)}")
    return OBSERVATION_TAGS[observation_role]


def sharegpt_sample(system: str, first_user: str, exchanges: Iterable[tuple[str, str | None]],
                    observation_role: str) -> dict:
    """`{"messages": [...]}` from the prompts and (model turn, observation) pairs; the last observation is None."""
    tag = observation_tag(observation_role)
    messages = [{"from": "system", "value": system}, {"from": "human", "value": first_user}]
    pending = None
    for model, observation in exchanges:
        if pending is not None:
            raise SampleError(f"message {len(messages)}: a model turn follows the final answer turn")
        messages.append({"from": "gpt", "value": model})
        if observation is None:
            pending = model
        else:
            messages.append({"from": tag, "value": observation})
    if pending is None:
        raise SampleError("the last model turn has an observation after it: a sample must end with a model turn")
    return {"messages": messages}


def dataset_info(dataset_path: str) -> dict:
    """LLaMA-Factory's `dataset_info.json` entry for a sharegpt trajectory file."""
    return {DATASET_NAME: {"file_name": dataset_path, "formatting": "sharegpt",
                           "columns": {"messages": "messages"}, "tags": dict(TAGS)}}
