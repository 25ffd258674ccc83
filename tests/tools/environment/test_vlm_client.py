"""The VLM client against a real local HTTP server that speaks the OpenAI protocol."""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from tests.fixtures.fake_vlm import FakeVLM
from tools.environment.frames import to_jpeg_data_url
from tools.environment.vlm_client import VLMClient, VLMEndpoint, VLMError

SECRET = "sk-test-very-secret-key-0123456789"


@pytest.fixture
def fake_vlm() -> Iterator[FakeVLM]:
    """A running FakeVLM, closed after the test."""
    with FakeVLM(answer="a red car") as server:
        yield server


def make_client(server: FakeVLM, **settings: Any) -> VLMClient:
    """A client for `server` that retries quickly."""
    return VLMClient(VLMEndpoint(base_url=server.base_url, model="fake-vlm", backoff_s=0.01, **settings))


def image_urls(count: int) -> list[str]:
    """`count` distinct small JPEG data URLs."""
    return [to_jpeg_data_url(Image.new("RGB", (8, 8), (i * 40, 0, 0))) for i in range(count)]


def full_text(error: BaseException) -> str:
    """An exception as a traceback prints it, chained causes included."""
    return "".join(traceback.format_exception(error))


def test_ask_returns_the_answer(fake_vlm: FakeVLM) -> None:
    """ask returns the server's answer text."""
    assert make_client(fake_vlm).ask("what is shown?", image_urls(2)) == "a red car"


def test_images_then_question_arrive_in_order(fake_vlm: FakeVLM) -> None:
    """The request carries model, max_tokens and one user message: the image URLs in order, then the question."""
    urls = image_urls(3)
    make_client(fake_vlm, max_tokens=77).ask("which colour?", urls)
    (request,) = fake_vlm.chat_requests()
    assert request.body is not None
    assert request.body["model"] == "fake-vlm"
    assert request.body["max_tokens"] == 77
    (message,) = request.body["messages"]
    assert message["role"] == "user"
    parts = message["content"]
    assert [p["type"] for p in parts] == ["image_url"] * 3 + ["text"]
    assert [p["image_url"]["url"] for p in parts[:3]] == urls
    assert all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in parts[:3])
    assert parts[3]["text"] == "which colour?"


def test_answer_callable_sees_the_request(fake_vlm: FakeVLM) -> None:
    """A callable answer receives the request body, so the reply can echo the question."""
    fake_vlm.answer = lambda body: body["messages"][0]["content"][-1]["text"].upper()
    assert make_client(fake_vlm).ask("echo me", []) == "ECHO ME"


def test_api_key_reaches_the_server_but_no_error_or_log(fake_vlm: FakeVLM, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The API key is sent as a bearer token but never appears in errors, the client's repr or the logs."""
    monkeypatch.setenv("MY_VLM_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    client = make_client(fake_vlm, api_key_env="MY_VLM_KEY", max_retries=1)
    assert client.ask("q", []) == "a red car"
    assert fake_vlm.chat_requests()[0].headers["authorization"] == f"Bearer {SECRET}"
    fake_vlm.fail_next(5, status=503)
    with pytest.raises(VLMError) as caught:
        client.ask("q", [])
    fake_vlm.fail_next(1, status=401)
    with pytest.raises(VLMError) as rejected:
        client.ask("q", [])
    for error in (caught.value, rejected.value):
        assert SECRET not in full_text(error)
    assert SECRET not in repr(client)
    assert SECRET not in caplog.text
    assert all(SECRET not in str(record.args) for record in caplog.records)


def test_missing_api_key_sends_a_placeholder(fake_vlm: FakeVLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the API key variable set, the client sends the placeholder bearer token EMPTY."""
    monkeypatch.delenv("VLM_API_KEY", raising=False)
    make_client(fake_vlm).ask("q", [])
    assert fake_vlm.chat_requests()[0].headers["authorization"] == "Bearer EMPTY"


@pytest.mark.parametrize("status", [500, 503, 429])
def test_transient_failures_are_retried(fake_vlm: FakeVLM, status: int) -> None:
    """HTTP 500, 503 and 429 are retried until the request succeeds."""
    fake_vlm.fail_next(2, status=status)
    assert make_client(fake_vlm, max_retries=3).ask("q", []) == "a red car"
    assert len(fake_vlm.chat_requests()) == 3


def test_persistent_failure_names_url_and_attempts(fake_vlm: FakeVLM) -> None:
    """A failure outlasting the retries raises VLMError naming the URL, the attempt count and the status."""
    fake_vlm.fail_next(100, status=500)
    with pytest.raises(VLMError) as caught:
        make_client(fake_vlm, max_retries=2).ask("q", [])
    message = str(caught.value)
    assert fake_vlm.base_url in message
    assert "after 3 attempts" in message
    assert "HTTP 500" in message
    assert len(fake_vlm.chat_requests()) == 3


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_not_retried(fake_vlm: FakeVLM, status: int) -> None:
    """HTTP 400, 401 and 404 raise VLMError after one attempt, without retrying."""
    fake_vlm.fail_next(1, status=status)
    with pytest.raises(VLMError, match=f"after 1 attempt: HTTP {status}"):
        make_client(fake_vlm).ask("q", [])
    assert len(fake_vlm.chat_requests()) == 1


@pytest.mark.parametrize("answer", ["", "   ", None])
def test_empty_answer_is_an_error(fake_vlm: FakeVLM, answer: str | None) -> None:
    """An empty, blank or null answer raises VLMError."""
    fake_vlm.answer = answer
    with pytest.raises(VLMError, match="no answer text"):
        make_client(fake_vlm).ask("q", [])


def test_stall_past_the_deadline_gives_up_in_time(fake_vlm: FakeVLM) -> None:
    """A server stalling past timeout_s makes ask give up promptly with a VLMError naming the timeout and URL."""
    fake_vlm.stall(30)
    timeout_s = 0.5
    started = time.monotonic()
    with pytest.raises(VLMError) as caught:
        make_client(fake_vlm, timeout_s=timeout_s).ask("q", [])
    elapsed = time.monotonic() - started
    # A liveness bound (it did not hang), not a performance assertion.
    assert elapsed < timeout_s * 3 + 1
    message = str(caught.value)
    assert f"did not answer within {timeout_s:g} s" in message
    assert fake_vlm.base_url in message


def test_a_trickled_reply_cannot_outlast_the_deadline(fake_vlm: FakeVLM) -> None:
    """Every byte arrives quickly but the whole reply would take 8 s: the 1 s deadline still holds."""
    fake_vlm.trickle(8)
    started = time.monotonic()
    try:
        with pytest.raises(VLMError, match=r"did not answer within 1 s after 1 attempt: no complete answer"):
            make_client(fake_vlm, timeout_s=1.0, max_retries=0).ask("q", [])
    finally:
        fake_vlm.trickle(0)
    # A liveness bound: it returned long before the trickle ended.
    assert time.monotonic() - started < 5


def test_unreachable_port_is_a_vlm_error() -> None:
    """A closed port raises VLMError naming the URL, the connection failure and the attempt count."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    client = VLMClient(VLMEndpoint(base_url=base_url, model="m", timeout_s=5, max_retries=1, backoff_s=0.01))
    with pytest.raises(VLMError) as caught:
        client.ask("q", [])
    message = str(caught.value)
    assert base_url in message
    assert "connection failed" in message
    assert "after 2 attempts" in message


def ask_from_threads(client: VLMClient, count: int) -> list[str]:
    """Answers to `count` questions asked at once from `count` threads sharing `client`."""
    answers: list[str] = []
    lock = threading.Lock()

    def ask() -> None:
        answer = client.ask("q", [])
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=ask) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


@pytest.mark.parametrize(("max_concurrency", "capped"), [(2, True), (8, False)])
def test_concurrency_cap_limits_requests_in_flight(fake_vlm: FakeVLM, max_concurrency: int, capped: bool) -> None:
    """max_concurrency caps the requests in flight at once; a higher cap lets them overlap."""
    fake_vlm.stall(0.2)
    client = make_client(fake_vlm, max_concurrency=max_concurrency, timeout_s=30)
    assert ask_from_threads(client, 6) == ["a red car"] * 6
    # The uncapped case shows that the server does see overlapping requests when the client allows them.
    assert (fake_vlm.max_in_flight <= 2) is capped


def test_waiting_for_a_slot_counts_against_the_deadline(fake_vlm: FakeVLM) -> None:
    """Time spent queueing for a concurrency slot counts against each caller's timeout."""
    fake_vlm.stall(30)
    timeout_s = 0.5
    client = make_client(fake_vlm, max_concurrency=1, timeout_s=timeout_s, max_retries=0)
    errors: list[VLMError] = []

    def ask_and_fail() -> None:
        with pytest.raises(VLMError) as caught:
            client.ask("q", [])
        errors.append(caught.value)

    threads = [threading.Thread(target=ask_and_fail) for _ in range(3)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # A liveness bound: queued callers gave up on their own deadline instead of queueing behind others.
    assert time.monotonic() - started < timeout_s * 3 + 1
    assert len(errors) == 3
    assert all(f"did not answer within {timeout_s:g} s" in str(error) for error in errors)


def test_models_endpoint_lists_the_model(fake_vlm: FakeVLM) -> None:
    """The fake server's /models endpoint lists the fake-vlm model to the OpenAI client."""
    import openai

    listed = openai.OpenAI(base_url=fake_vlm.base_url, api_key="x").models.list()
    assert [m.id for m in listed.data] == ["fake-vlm"]


def test_reset_clears_behaviour_and_records(fake_vlm: FakeVLM) -> None:
    """reset clears queued failures, the stall and the recorded requests."""
    fake_vlm.fail_next(1)
    with pytest.raises(VLMError):
        make_client(fake_vlm, max_retries=0).ask("q", [])
    fake_vlm.fail_next(3)
    fake_vlm.stall(30)
    fake_vlm.reset()
    assert fake_vlm.requests == []
    assert make_client(fake_vlm, max_retries=0, timeout_s=10).ask("q", []) == "a red car"
    assert len(fake_vlm.requests) == 1


@pytest.mark.parametrize(("settings", "message"), [
    ({"base_url": "http://x/v1", "model": "m", "temprature": 0.5}, "vlm.temprature: unknown key"),
    ({"base_url": "http://x/v1", "model": "m", "api_key": SECRET}, "vlm.api_key: the key must not be in a config"),
    ({"model": "m"}, "vlm.base_url: missing"),
    ({"base_url": "http://x/v1", "model": "m", "max_retries": "3"}, "vlm.max_retries='3': expected int"),
    ({"base_url": "http://x/v1", "model": "m", "timeout_s": True}, "vlm.timeout_s=True: expected float"),
    ({"base_url": "x", "model": "m"}, "vlm: VLMEndpoint.base_url='x'"),
    ({"base_url": "http://x/v1", "model": "m", "max_concurrency": 0}, "max_concurrency=0"),
])
def test_from_dict_rejects_bad_settings(settings: dict[str, Any], message: str) -> None:
    """from_dict rejects unknown, secret, missing, mistyped and invalid settings without leaking the key."""
    with pytest.raises((ValueError, TypeError)) as caught:
        VLMEndpoint.from_dict(settings, where="vlm")
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)


def test_from_dict_accepts_ints_for_floats() -> None:
    """from_dict accepts an int for a float field and converts it."""
    endpoint = VLMEndpoint.from_dict({"base_url": "http://x/v1", "model": "m", "timeout_s": 30}, where="vlm")
    assert endpoint == VLMEndpoint(base_url="http://x/v1", model="m", timeout_s=30.0)
