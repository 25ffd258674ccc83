"""A scripted agent policy for the loopback OpenAI server (`tests.fake_vlm.FakeVLM`): the one remote service tests
stand in for.

    policy = ScriptedPolicy.from_trajectories(world / "trajectories.jsonl")
    with FakeVLM(answer=policy, model="policy") as server:
        ...  # point the agent loop at server.base_url

For each chat request the policy finds the question in the first user turn and replies with the next
model turn of its script (the number of assistant messages so far says which). A script may end
early, as a model that stops talking would; a reply may be a callable of the request body.
Replies end on their action stop string, as vLLM's `include_stop_str_in_output` leaves them.
Also runnable as a process, for tests that start the CLI:

    python -m tests.scripted_policy --trajectories FILE --port-file PATH
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fake_vlm import FakeVLM

Reply = str | Callable[[dict[str, Any]], str]


def question_of(body: dict[str, Any]) -> str:
    """The question text of a chat request: the first user turn's `Question:` line."""
    user = next(message["content"] for message in body["messages"] if message["role"] == "user")
    first_line = user.split("\n", 1)[0]
    if not first_line.startswith("Question: "):
        raise ValueError(f"the first user turn does not start with 'Question: ': {first_line[:80]!r}")
    return first_line[len("Question: "):]


class ScriptedPolicy:
    """Replies with each question's scripted turns in order; records the conversation of every request."""

    def __init__(self, scripts: dict[str, list[Reply]]) -> None:
        self.scripts = scripts
        self._lock = threading.Lock()
        self.bodies: list[dict[str, Any]] = []

    @classmethod
    def from_trajectories(cls, path: Path, rewrite: Callable[[str, list[str]], list[Reply]] | None = None
                          ) -> ScriptedPolicy:
        """The model turns of each trajectory in a JSONL file, keyed by question; `rewrite` may change them."""
        scripts = {}
        for line in Path(path).read_text().splitlines():
            record = json.loads(line)
            turns = [turn["model"] for turn in record["turns"]]
            scripts[record["question"]] = rewrite(record["id"], turns) if rewrite else turns
        return cls(scripts)

    def __call__(self, body: dict[str, Any]) -> str:
        """The next scripted turn of the question in `body`."""
        with self._lock:
            self.bodies.append(body)
        script = self.scripts[question_of(body)]
        step = sum(1 for message in body["messages"] if message["role"] == "assistant")
        if step >= len(script):
            raise IndexError(f"the script of {question_of(body)!r} has {len(script)} turns; turn {step + 1} was asked")
        reply = script[step]
        return reply(body) if callable(reply) else reply


def main() -> None:
    """Serve a policy from a trajectory file until SIGTERM; write the port to --port-file once listening."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--model", default="policy")
    parser.add_argument("--stall", type=float, default=0.0, help="seconds before each reply")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FakeVLM(answer=ScriptedPolicy.from_trajectories(args.trajectories), model=args.model) as server:
        server.stall(args.stall)
        args.port_file.write_text(str(server.port))
        stop.wait()


if __name__ == "__main__":
    main()
