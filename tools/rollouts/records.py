"""One record per sampled rollout, read from verl's batch after the trainer's reward and advantage steps.

Token ids are cut to their valid span (the prompt's left padding and the response's right padding
dropped), the response mask is verl's (1 where the policy generated, 0 where an observation was
appended), the text is what verl's reward manager decoded and scored, and the reward fields are our
`compute_score`'s dict as verl passed them on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# verl-tool's stop reasons for a rollout cut by the response budget, and by the turn limit.
LENGTH_STOPS = ("max_response_length_reached", "max_model_len_exceeded")
TURN_LIMIT_STOPS = ("max_turns_reached",)
# What the report keeps of each tool call verl-tool recorded.
TOOL_CALL_FIELDS = ("action", "obs", "valid_action", "done", "processing_time_ms")


def _plain(value: Any) -> Any:
    """`value` with numpy scalars and arrays turned into JSON types."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value.tolist()]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def rollout_records(batch, tokenizer, reward_keys: list[str]) -> list[dict[str, Any]]:
    """Every rollout of `batch` (verl's DataProto after `compute_advantage`) as a JSON-ready dict."""
    tensors, extras = batch.batch, batch.non_tensor_batch
    prompt_width = tensors["prompts"].shape[1]
    groups: dict[str, int] = {}
    records = []
    for row in range(len(batch)):
        attention = tensors["attention_mask"][row]
        prompt_valid = int(attention[:prompt_width].sum())
        response_valid = int(attention[prompt_width:].sum())
        prompt_ids = tensors["prompts"][row][prompt_width - prompt_valid:].tolist()
        response_ids = tensors["responses"][row][:response_valid].tolist()
        mask = tensors["response_mask"][row][:response_valid].tolist()
        generated = [position for position, bit in enumerate(mask) if bit]
        advantage = float(tensors["advantages"][row][generated[0]]) if generated else 0.0
        uid = str(extras["uid"][row])
        groups.setdefault(uid, len(groups))
        extra_info = _plain(extras["extra_info"][row]) if "extra_info" in extras else {}
        reward_model = _plain(extras["reward_model"][row]) if "reward_model" in extras else {}
        tool_calls = [{key: _plain(call.get(key)) for key in TOOL_CALL_FIELDS}
                      for call in extras["tool_interact_info"][row] or []]
        stop = str(extras["traj_stop_reason"][row])
        records.append({
            "group": groups[uid], "uid": uid, "question_id": extra_info.get("question_id"),
            "data_source": _plain(extras["data_source"][row]) if "data_source" in extras else None,
            # The question as the reward read it, so the viewer can draw the rollout over its video.
            "extra_info": extra_info, "ground_truth": reward_model.get("ground_truth"),
            "prompt_ids": prompt_ids, "response_ids": response_ids, "response_mask": mask,
            "text": tokenizer.decode(response_ids, skip_special_tokens=True),
            "score": float(tensors["token_level_scores"][row].sum()),
            "reward": {key: _plain(extras[key][row]) for key in reward_keys if key in extras},
            "advantage": advantage,
            "num_turns": int(extras["__num_turns__"][row]),
            "stop_reason": stop, "cut_at_length": stop in LENGTH_STOPS, "cut_at_turn_limit": stop in TURN_LIMIT_STOPS,
            "tool_calls": tool_calls,
            "metrics": _plain(extras["verl_tool_metrics"][row]) if "verl_tool_metrics" in extras else {},
        })
    return records
