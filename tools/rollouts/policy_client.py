"""The policy's vLLM behind verl-tool's server interface: token ids in, token ids out, over HTTP.

verl-tool's agent loop asks a rollout server `generate(request_id, *, prompt_ids, sampling_params,
image_data, audio_data)` for a `VerlToolTokenOutput`; in its trainer that server is vLLM inside the
training job (GPU only). `PolicyClient` answers the same call from any OpenAI-compatible vLLM server
(`vllm serve` on a GPU, the CPU build elsewhere) through `/v1/completions` with the prompt as token
ids, vLLM's `return_tokens_as_token_ids`, and the agent loop's own stop strings, so each turn ends,
is tokenized and is reported (finish and stop reasons) exactly as the trainer's engine reports it.
It applies the trainer server's rules: the turn's `max_tokens` is capped by the context left, and
logprobs come back when the agent loop asks for them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

# Sampling keys of verl's rollout that vLLM's completions endpoint takes under the same name.
FORWARDED = ("temperature", "top_p", "top_k", "repetition_penalty", "stop", "include_stop_str_in_output",
             "max_tokens", "seed")
TOKEN_PREFIX = "token_id:"


class PolicyError(RuntimeError):
    """The policy server refused or broke a request; the message has its status and body."""


def completion_request(model: str, prompt_ids: list[int], sampling_params: dict[str, Any], max_model_len: int,
                       extra_body: dict[str, Any]) -> dict[str, Any]:
    """The `/v1/completions` body for one agent-loop turn (verl-tool's server rules applied)."""
    params = dict(sampling_params)
    # verl-tool's server: never past the context, and logprobs of the chosen tokens only when asked.
    params["max_tokens"] = min(max_model_len - len(prompt_ids), int(params.get("max_tokens", max_model_len)))
    body = {key: params[key] for key in FORWARDED if params.get(key) is not None}
    body.update(model=model, prompt=list(prompt_ids), n=1, logprobs=0, return_tokens_as_token_ids=True,
                skip_special_tokens=False, **extra_body)
    return body


def parse_choice(choice: dict[str, Any], want_logprobs: bool) -> dict[str, Any]:
    """The fields of a `VerlToolTokenOutput` from one completion choice; PolicyError when it has no token ids."""
    logprobs = choice.get("logprobs") or {}
    tokens = logprobs.get("tokens")
    if tokens is None:
        raise PolicyError(f"the policy server returned no token ids (logprobs.tokens) in {choice!r}")
    if any(not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) for token in tokens):
        raise PolicyError("the policy server ignored return_tokens_as_token_ids: tokens "
                          f"{tokens[:4]!r} are not `token_id:N`")
    token_ids = [int(token[len(TOKEN_PREFIX):]) for token in tokens]
    log_probs = [float(value) for value in logprobs.get("token_logprobs") or []] if want_logprobs else None
    return {"token_ids": token_ids, "log_probs": log_probs, "text": choice.get("text", ""),
            "finish_reason": choice.get("finish_reason"), "stop_reason": choice.get("stop_reason"),
            "finished": True}


class PolicyClient:
    """verl-tool's rollout-server call shape over vLLM's HTTP API; run as a Ray actor (`ray.remote(PolicyClient)`)."""

    def __init__(self, base_url: str, model: str, max_model_len: int, timeout_s: float,
                 extra_body: dict[str, Any] | None = None) -> None:
        self.url = base_url.rstrip("/") + "/completions"
        self.model = model
        self.max_model_len = max_model_len
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.extra_body = dict(extra_body or {})
        self.session: aiohttp.ClientSession | None = None
        # Wall seconds spent waiting for the policy, and the turns asked for (the report's policy time).
        self.busy_s = 0.0
        self.requests = 0

    async def generate(self, request_id: str = "", *, prompt_ids: list[int], sampling_params: dict[str, Any],
                       image_data: Any = None, audio_data: Any = None):
        """One turn: the policy's continuation of `prompt_ids` as verl-tool's `VerlToolTokenOutput`."""
        from verl_tool.workers.rollout.replica import VerlToolTokenOutput

        if image_data or audio_data:
            raise PolicyError("image and audio inputs are not served over the completions API; the navigation "
                              "policy is text only")
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=self.timeout)
        body = completion_request(self.model, prompt_ids, sampling_params, self.max_model_len, self.extra_body)
        started = time.monotonic()
        try:
            async with self.session.post(self.url, json=body) as response:
                text = await response.text()
                if response.status != 200:
                    raise PolicyError(f"{self.url} answered {response.status}: {text[:500]}")
                reply = await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise PolicyError(f"{self.url}: {type(error).__name__}: {error}") from None
        finally:
            self.busy_s += time.monotonic() - started
            self.requests += 1
        return VerlToolTokenOutput(**parse_choice(reply["choices"][0], bool(sampling_params.get("logprobs"))))

    def usage(self) -> dict[str, float]:
        """Requests made and the seconds spent in them (summed over concurrent requests)."""
        return {"requests": self.requests, "busy_s": self.busy_s}
