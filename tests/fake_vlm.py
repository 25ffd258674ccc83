"""A stand-in for a remote OpenAI-compatible model server: a real HTTP server on 127.0.0.1.

    with FakeVLM(answer="a red car") as vlm:
        client = VLMClient(VLMEndpoint(base_url=vlm.base_url, model=vlm.model))
        ...
        assert vlm.requests[0].body["messages"][0]["content"][-1]["text"] == "what is shown?"

It serves `POST /v1/chat/completions` and `GET /v1/models` with the JSON a real server returns,
records every request, and its behaviour (answer, failures, stalls) can be changed at any time
from the test, so it serves as the VLM and as a teacher LLM alike.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = str | None | Callable[[dict[str, Any]], str | None]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received: method, path, parsed JSON body (None without one), headers.

    Header names are lower-case (`headers["authorization"]`), whatever case the client sent.
    """

    method: str
    path: str
    body: dict[str, Any] | None
    headers: dict[str, str]


class FakeVLM:
    """A threaded OpenAI-compatible HTTP server whose answers, failures and delays a test sets."""

    def __init__(self, answer: Answer = "fake answer", model: str = "fake-vlm") -> None:
        self.answer = answer
        self.model = model
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._failures: list[int] = []
        self._stall_s = 0.0
        self._trickle_s = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle.

    def start(self) -> FakeVLM:
        """Start serving on an ephemeral port of 127.0.0.1."""
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        # A short poll interval keeps close() quick.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-vlm", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; stalled requests wake up at once."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeVLM:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        if self._server is None:
            raise RuntimeError("FakeVLM is not started; use it as a context manager or call start()")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, http://127.0.0.1:PORT/v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    # Behaviour a test may change at any time.

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next `n` chat requests with HTTP `status` and an OpenAI-style error body."""
        with self._lock:
            self._failures.extend([status] * n)

    def stall(self, seconds: float) -> None:
        """Wait `seconds` before answering each chat request (0 to stop stalling)."""
        with self._lock:
            self._stall_s = seconds

    def trickle(self, seconds: float) -> None:
        """Send each answer a byte at a time, spread over `seconds` (0 to stop): every read is quick,
        the whole reply is slow, which per-phase client timeouts alone never catch."""
        with self._lock:
            self._trickle_s = seconds

    def reset(self) -> None:
        """Forget recorded requests, pending failures, stalls, trickling and the in-flight maximum."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self._stall_s = 0.0
            self._trickle_s = 0.0
            self.max_in_flight = self.in_flight

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def chat_requests(self) -> list[RecordedRequest]:
        """The recorded chat.completions requests only."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # Used by the request handler.

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _enter_chat(self) -> tuple[float, int | None]:
        """Count a chat request in flight; its stall time and the failure status to give, if any."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            failure = self._failures.pop(0) if self._failures else None
            return self._stall_s, failure

    def _leave_chat(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        """The chat.completion object a real server returns for `body`."""
        answer = self.answer(body) if callable(self.answer) else self.answer
        prompt_words = len(json.dumps(body.get("messages", [])).split())
        answer_words = len(answer.split()) if answer else 0
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": prompt_words, "completion_tokens": answer_words,
                      "total_tokens": prompt_words + answer_words},
        }


def _lower_case(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as a dict keyed by lower-case names."""
    return {name.lower(): value for name, value in headers}


def _error_body(status: int, message: str) -> dict[str, Any]:
    """An OpenAI-style error object."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


class _Handler(BaseHTTPRequestHandler):
    """Serves one connection for the FakeVLM in the class attribute `fake`."""

    fake: FakeVLM

    def log_message(self, format: str, *args: Any) -> None:
        # Keep test output quiet.
        """Discard the server's per-request log lines instead of writing them to stderr."""
        pass

    def _send_json(self, status: int, payload: dict[str, Any], trickle_s: float = 0.0) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if trickle_s <= 0:
                self.wfile.write(data)
                return
            for i in range(len(data)):
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                if self.fake._closing.wait(trickle_s / len(data)):
                    return
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout); nothing left to do.
            pass

    def _read_body(self) -> tuple[dict[str, Any] | None, str | None]:
        """The parsed JSON body, or None and the reason it could not be parsed."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None, None
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as error:
            return None, f"request body is not JSON: {error}"
        return (body, None) if isinstance(body, dict) else (None, "request body is not a JSON object")

    def do_GET(self) -> None:
        """Serve GET /v1/models."""
        self.fake._record(RecordedRequest("GET", self.path, None, _lower_case(self.headers.items())))
        if self.path.rstrip("/") == "/v1/models":
            model = {"id": self.fake.model, "object": "model", "created": 0, "owned_by": "fake"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_json(404, _error_body(404, f"no route GET {self.path}"))

    def do_POST(self) -> None:
        """Serve POST /v1/chat/completions."""
        body, problem = self._read_body()
        self.fake._record(RecordedRequest("POST", self.path, body, _lower_case(self.headers.items())))
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, _error_body(404, f"no route POST {self.path}"))
            return
        if body is None:
            self._send_json(400, _error_body(400, problem or "request body is empty"))
            return
        stall_s, failure = self.fake._enter_chat()
        try:
            # An Event wait, not sleep: close() wakes every stalled request.
            if stall_s > 0 and self.fake._closing.wait(stall_s):
                return
            status, payload = self._chat_reply(body, failure)
        finally:
            # Leave before replying: a client that got its answer may send the next request at once.
            self.fake._leave_chat()
        self._send_json(status, payload, self.fake._trickle_s)

    def _chat_reply(self, body: dict[str, Any], failure: int | None) -> tuple[int, dict[str, Any]]:
        """The status and JSON payload answering one chat request."""
        if failure is not None:
            return failure, _error_body(failure, f"fake failure with HTTP {failure}")
        try:
            return 200, self.fake._completion(body)
        # A test's answer callable failed: report it to the client as a server error.
        except Exception as error:
            return 500, _error_body(500, f"answer callable raised {type(error).__name__}: {error}")
