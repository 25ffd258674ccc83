"""A stand-in for `vllm serve`: FakeVLM (tests/fake_vlm.py) on the `--port` it is given, plus /health.

Tests put an executable named `vllm` first on PATH that runs `python tests/fake_vllm.py serve MODEL
--port PORT ...` (write_vllm_executable does it), so the launcher's real Plan starts this instead of
vLLM. Like vLLM it answers the OpenAI protocol under the served model name, says healthy on
`GET /health`, keeps an engine child process, and runs until it is terminated. Environment:

    FAKE_VLLM_STATE         file it writes (atomically, once listening) as JSON: pid, child_pid, port, argv, env
    FAKE_VLLM_HEALTH_DELAY  seconds /health answers 503 before it answers 200 (a model still loading)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make `tests.fake_vlm` importable from the project root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fake_vlm import FakeVLM, _Handler  # noqa: E402

STATE_ENV, DELAY_ENV = "FAKE_VLLM_STATE", "FAKE_VLLM_HEALTH_DELAY"


class _HealthHandler(_Handler):
    """FakeVLM's handler plus vLLM's `GET /health` (503 while the model 'loads'), logging each request."""

    ready_at = 0.0

    def do_GET(self) -> None:
        """Serve GET /health, and the rest as FakeVLM does."""
        if self.path.rstrip("/") != "/health":
            super().do_GET()
            return
        ready = time.monotonic() >= self.ready_at
        self.send_response(200 if ready else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """One line per request on stdout (the launcher's log of the service)."""
        print(f"fake vllm: {format % args}", flush=True)


class FakeVLLM(FakeVLM):
    """FakeVLM on a given port of 127.0.0.1, with /health that turns 200 `health_delay_s` after start."""

    def __init__(self, port: int, model: str, health_delay_s: float = 0.0) -> None:
        super().__init__(answer="fake vllm answer", model=model)
        self.wanted_port = port
        self.health_delay_s = health_delay_s

    def start(self) -> FakeVLLM:
        """Start serving on `wanted_port` (0: an ephemeral one)."""
        handler = type("Handler", (_HealthHandler,),
                       {"fake": self, "ready_at": time.monotonic() + self.health_delay_s})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.wanted_port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-vllm", daemon=True)
        self._thread.start()
        return self


def write_vllm_executable(bin_dir: Path) -> Path:
    """An executable `bin_dir/vllm` running this module with this interpreter; returns its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "vllm"
    path.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} \"$@\"\n")
    path.chmod(0o755)
    return path


def parse_args(argv: list[str]) -> argparse.Namespace:
    """`serve MODEL --port PORT [--served-model-name NAME]`; vLLM's other flags are accepted and ignored."""
    parser = argparse.ArgumentParser(prog="vllm")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name")
    args, _ = parser.parse_known_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, with an engine child in this process group that outlives it."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # vLLM runs its engine in a child process; so does the stand-in, to check that it is stopped too.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    server = FakeVLLM(args.port, args.served_model_name or args.model, float(os.environ.get(DELAY_ENV, "0")))
    server.start()
    print(f"fake vllm: serving {server.model} on {server.base_url} (pid {os.getpid()}, engine {child.pid})",
          flush=True)
    state = os.environ.get(STATE_ENV)
    if state:
        info = {"pid": os.getpid(), "child_pid": child.pid, "port": server.port, "argv": argv,
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
        Path(state + ".tmp").write_text(json.dumps(info))
        os.replace(state + ".tmp", state)
    try:
        while not stop.wait(0.1) and child.poll() is None:
            pass
    finally:
        # The engine child is left alone, as a crashing server would leave it: only stopping the
        # whole process group, as the launcher does, ends it.
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
