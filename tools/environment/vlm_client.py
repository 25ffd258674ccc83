"""A client for an OpenAI-compatible chat endpoint (`vllm serve`): the VLM of `video_qa`, and the agent model.

One call is one chat.completions request with a total deadline that covers waiting for a
concurrency slot, every attempt and the backoff between them. Connection errors, timeouts, HTTP
429 and 5xx are retried; on final failure a `VLMError` says in plain words what happened (fit to
show to the agent model as an observation) and its `kind` says which failure it was. The API key
is read from the environment variable named in the config and is never stored, logged or put in
an error message.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai

# Re-exported: the endpoint settings live in a module that planning can import without openai.
from tools.environment.vlm_endpoint import VLMEndpoint  # noqa: F401

log = logging.getLogger(__name__)

# Retryable HTTP statuses besides 5xx: rate limited, request timeout.
_RETRY_STATUSES = {408, 429}


# What a final failure was, as VLMError.kind: the evaluation records it per question.
FAILURE_KINDS = ("timeout", "connection", "http", "malformed_reply", "empty_reply")


class VLMError(Exception):
    """The endpoint gave no usable answer; the message says why in plain words, `kind` which failure it was."""

    def __init__(self, message: str, kind: str = "http") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Completion:
    """One chat completion: the text, why generation stopped, and the tokens the server counted."""

    text: str
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _kind(error: Exception) -> str:
    """The FAILURE_KINDS entry of one failed attempt."""
    if isinstance(error, (openai.APITimeoutError, _Deadline)):
        return "timeout"
    if isinstance(error, openai.APIConnectionError):
        return "connection"
    if isinstance(error, _EmptyAnswer):
        return "empty_reply"
    if isinstance(error, _Malformed):
        return "malformed_reply"
    return "http"


def _is_retryable(error: Exception) -> bool:
    """Whether `error` is worth another attempt: no connection, a timeout, 408, 429 or 5xx."""
    if isinstance(error, openai.APIConnectionError):
        return True
    if isinstance(error, openai.APIStatusError):
        return error.status_code in _RETRY_STATUSES or error.status_code >= 500
    return False


def _describe(error: Exception) -> str:
    """A short plain description of one failed attempt."""
    if isinstance(error, openai.APITimeoutError):
        return "the request timed out"
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__
        return f"connection failed ({cause})" if cause else "connection failed"
    if isinstance(error, openai.APIStatusError):
        # The server's own message when the body is an OpenAI error object, else the client's summary.
        detail = error.body.get("message") if isinstance(error.body, dict) else None
        return f"HTTP {error.status_code}: {detail or error.message}"
    if isinstance(error, (_EmptyAnswer, _Deadline, _Malformed)):
        return str(error)
    return f"{type(error).__name__}: {error}"


class VLMClient:
    """Asks one endpoint: questions about images (`ask`) or any chat (`complete`); safe to share between threads."""

    def __init__(self, endpoint: VLMEndpoint, label: str = "VLM") -> None:
        self.endpoint = endpoint
        # How errors name the endpoint: "VLM at http://... (model ...)".
        self.label = label
        self._api_key = os.environ.get(endpoint.api_key_env) or "EMPTY"
        # Retries are ours (they must respect the deadline); the per-attempt timeout is set per request.
        self._openai = openai.OpenAI(base_url=endpoint.base_url, api_key=self._api_key, max_retries=0,
                                     timeout=endpoint.timeout_s)
        self._slots = threading.BoundedSemaphore(endpoint.max_concurrency)
        # One thread per slot, so a submitted attempt never waits in the pool's queue.
        self._pool = concurrent.futures.ThreadPoolExecutor(endpoint.max_concurrency, thread_name_prefix="vlm")

    def __repr__(self) -> str:
        return f"VLMClient({self.endpoint!r})"

    def close(self) -> None:
        """Close the underlying HTTP connections and the attempt threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._openai.close()

    def ask(self, question: str, image_urls: Sequence[str]) -> str:
        """The VLM's answer to `question` about the images at `image_urls` (data: or http URLs)."""
        content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}} for url in image_urls]
        content.append({"type": "text", "text": question})
        return self.complete([{"role": "user", "content": content}]).text

    def complete(self, messages: list[dict[str, Any]], allow_empty: bool = False, **params: Any) -> Completion:
        """One chat completion of `messages` (extra request fields in `params`), retried within the deadline.

        An empty text is a failure unless `allow_empty` (a model may end a turn without a word).
        """
        endpoint = self.endpoint
        deadline = time.monotonic() + endpoint.timeout_s
        attempts = 0
        last_error, last_kind = "no attempt could start", "timeout"
        while True:
            remaining = deadline - time.monotonic()
            # Waiting for a free slot counts against the deadline.
            if remaining <= 0 or not self._slots.acquire(timeout=remaining):
                last_error = last_error if attempts else f"all {endpoint.max_concurrency} request slots stayed busy"
                raise self._failure(f"did not answer within {endpoint.timeout_s:g} s", attempts, last_error, "timeout")
            slot_held = True
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._failure(f"did not answer within {endpoint.timeout_s:g} s", attempts, last_error,
                                        "timeout")
                attempts += 1
                # The client's timeouts are per phase (connect, send, each read): a server that trickles
                # its reply could outlast them, so the attempt runs in the pool under a hard deadline.
                future = self._pool.submit(self._attempt, messages, remaining, allow_empty, params)
                try:
                    return future.result(timeout=remaining)
                except concurrent.futures.TimeoutError:
                    # The abandoned request keeps its slot until its own timeouts end it.
                    future.add_done_callback(lambda _: self._slots.release())
                    slot_held = False
                    raise _Deadline(f"no complete answer within {remaining:.1f} s") from None
            except openai.OpenAIError as error:
                last_error, last_kind = self._scrub(_describe(error)), _kind(error)
                if isinstance(error, _Deadline):
                    raise self._failure(f"did not answer within {endpoint.timeout_s:g} s", attempts,
                                        last_error, "timeout") from None
                if not _is_retryable(error):
                    raise self._failure("gave no usable answer", attempts, last_error, last_kind) from None
            finally:
                if slot_held:
                    self._slots.release()
            if time.monotonic() >= deadline:
                raise self._failure(f"did not answer within {endpoint.timeout_s:g} s", attempts, last_error, "timeout")
            if attempts > endpoint.max_retries:
                raise self._failure("failed", attempts, last_error, last_kind)
            pause = endpoint.backoff_s * 2 ** (attempts - 1)
            # No attempt could start after the pause: give up now rather than sleep until the deadline.
            if pause >= deadline - time.monotonic():
                raise self._failure(f"did not answer within {endpoint.timeout_s:g} s", attempts, last_error,
                                    last_kind)
            log.warning("%s at %s (model %s), attempt %d: %s; retrying in %.2f s",
                        self.label, endpoint.base_url, endpoint.model, attempts, last_error, pause)
            time.sleep(pause)

    def _attempt(self, messages: list[dict[str, Any]], timeout_s: float, allow_empty: bool,
                 params: dict[str, Any]) -> Completion:
        """One request with `timeout_s` for each phase (connect, send, wait for the answer)."""
        request = {"max_tokens": self.endpoint.max_tokens, "temperature": self.endpoint.temperature, **params}
        try:
            response = self._openai.chat.completions.create(
                model=self.endpoint.model, messages=messages, timeout=timeout_s, **request)
            choices = response.choices
            if choices is not None and not isinstance(choices, list):
                raise TypeError(f"choices is {type(choices).__name__}")
            choice = choices[0] if choices else None
            text = choice.message.content if choice is not None else None
            usage = response.usage
            tokens = (usage.prompt_tokens or 0, usage.completion_tokens or 0) if usage is not None else (0, 0)
        # The server said 200 but sent no chat.completion object (not JSON, or another shape).
        except (json.JSONDecodeError, AttributeError, TypeError) as error:
            raise _Malformed(f"the reply is not a chat completion ({type(error).__name__}: {error})") from None
        if choice is None:
            raise _Malformed("the reply has no choices")
        if text is not None and not isinstance(text, str):
            raise _Malformed(f"the reply's message content is {type(text).__name__}, not text")
        if not allow_empty and (not text or not text.strip()):
            raise _EmptyAnswer(f"the reply had no answer text (finish_reason={choice.finish_reason})")
        return Completion(text or "", choice.finish_reason, int(tokens[0]), int(tokens[1]))

    def _scrub(self, text: str) -> str:
        """`text` with the API key, should a server ever echo it, replaced by ***."""
        return text.replace(self._api_key, "***") if self._api_key != "EMPTY" else text

    def _failure(self, what: str, attempts: int, last_error: str, kind: str) -> VLMError:
        """The VLMError for a final failure, in words fit for the agent model."""
        endpoint = self.endpoint
        plural = "" if attempts == 1 else "s"
        return VLMError(self._scrub(f"{self.label} at {endpoint.base_url} (model {endpoint.model}) {what} "
                                    f"after {attempts} attempt{plural}: {last_error}"), kind)


class _EmptyAnswer(openai.OpenAIError):
    """A well-formed reply without answer text; not retried (the same request gives the same reply)."""


class _Deadline(openai.OpenAIError):
    """An attempt still unanswered when the whole `ask` ran out of time; not retried (no time is left)."""


class _Malformed(openai.OpenAIError):
    """A 200 reply that is not a chat completion; not retried (a broken server stays broken)."""
