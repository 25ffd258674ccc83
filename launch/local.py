"""The local executor: runs a Plan on this node.

Each command runs in its own process group, its output is streamed to the terminal and saved
under `logs/`, its exit code is the run's; Ctrl-C or SIGTERM stops it and every service the Plan
started (and nothing else), and only a fully successful run gets its `DONE` marker.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from launch import service_records
from launch.console import StepConsole, log_tail
from launch.plan import Plan, Service, Step, resolve_placeholders
from launch.rundir import fault_point, mark_done
from tools.environment.secrets import SECRETS_ENV, encode_secrets

SOURCE_ROOT = Path(__file__).resolve().parents[1]
# Seconds a process group gets between SIGTERM and SIGKILL.
STOP_GRACE_S = 20.0


class PlanFailed(RuntimeError):
    """A step or service of the Plan failed; carries the exit code to propagate."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalResolver:
    """Resolves Plan placeholders for a single node: rank 0 of 1, head on loopback."""

    def __init__(self) -> None:
        self.ports: dict[str, str] = {}

    def __call__(self, name: str, key: str | None) -> str:
        """The value of placeholder `name` (with `key` for free ports)."""
        if name == "free_port":
            return self.ports.setdefault(key, str(free_port()))
        return {"node_rank": "0", "nnodes": "1", "head_addr": "127.0.0.1"}[name]


def stop_group(target: subprocess.Popen | int, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM a process group (a child's, or a group id), then SIGKILL whatever is left after `grace_s`."""
    # A child of ours is reaped as it ends; another process's group is reaped by its own parent.
    pgid, reap = (target.pid, target.poll) if isinstance(target, subprocess.Popen) else (target, lambda: None)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                # The group is gone once no member is left to signal.
                os.killpg(pgid, 0)
            except ProcessLookupError:
                reap()
                return
            reap()
            time.sleep(0.1)


class LocalExecutor:
    """Runs a Plan's services and steps on this node, in order, with logs under the run dir."""

    def __init__(self, plan: Plan, attempt: int, stream: IO[str] | None = None,
                 resolver: Callable[[str, str | None], str] | None = None, log_suffix: str = "",
                 secrets: dict[str, Any] | None = None):
        self.plan = plan
        self.attempt = attempt
        self.run_dir = Path(plan.run_dir)
        self.logs = self.run_dir / "logs"
        self.stream = stream or sys.stdout
        self.resolve = resolver or LocalResolver()
        # Tells apart the logs of one step on several nodes (".node1").
        self.log_suffix = log_suffix
        # Handed to every command in $LONGVIDEO_R1_SECRETS, never written (a Slurm job inherits it from sbatch).
        self.secrets = dict(secrets or {})
        self.running: list[subprocess.Popen] = []
        self.services: list[tuple[Service, subprocess.Popen, Path]] = []
        self.stop_reason: str | None = None
        self.lock = threading.Lock()

    def write_files(self) -> None:
        """Write the Plan and its files into the run directory."""
        self.logs.mkdir(parents=True, exist_ok=True)
        for spec in self.plan.files:
            path = self.run_dir / spec.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(resolve_placeholders(spec.content, self.resolve) if spec.resolve else spec.content)
        plan_path = self.run_dir / "attempts" / str(self.attempt) / "plan.yaml"
        plan_path.write_text(self.plan.to_yaml(with_contents=False))

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        # Commands run with this interpreter's environment and this checkout's packages.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(SOURCE_ROOT), env.get("PYTHONPATH", "")] if p)
        env.update({k: resolve_placeholders(str(v), self.resolve) for k, v in extra.items()})
        if self.secrets:
            env[SECRETS_ENV] = encode_secrets(self.secrets)
        return env

    def _argv(self, argv: list[str]) -> list[str]:
        return [resolve_placeholders(a, self.resolve) for a in argv]

    def _start(self, argv: list[str], env: dict[str, str], log: IO[str] | int) -> subprocess.Popen:
        try:
            process = self._popen(argv, env, log)
        except OSError as error:
            # 127 is the shell's code for a command that cannot be found or run.
            raise PlanFailed(f"cannot start {argv[0]!r}: {error}", 127) from None
        with self.lock:
            self.running.append(process)
        return process

    def _popen(self, argv: list[str], env: dict[str, str], log: IO[str] | int) -> subprocess.Popen:
        return subprocess.Popen(
            argv,
            cwd=self.run_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True if log == subprocess.PIPE else None,
            bufsize=1 if log == subprocess.PIPE else -1,
        )

    def start_service(self, service: Service) -> None:
        """Start a service in its own process group and wait until its readiness check passes."""
        log_path = self.logs / f"{service.name}.{self.attempt}.log"
        with open(log_path, "a") as log:
            process = self._start(self._argv(service.argv), self._env(service.env), log)
        self.services.append((service, process, log_path))
        self._record_services()
        self._print(f"[launch] service {service.name} started (pid {process.pid}), log: {log_path}")
        deadline = time.monotonic() + service.ready.timeout_s
        while not self._is_ready(service):
            if self.stop_reason:
                raise PlanFailed(f"service {service.name} stopped: {self.stop_reason}", self._stop_code())
            if process.poll() is not None:
                raise PlanFailed(f"service {service.name} exited with {process.returncode}; see {log_path}", 1)
            if time.monotonic() > deadline:
                waited = service.ready.timeout_s
                raise PlanFailed(f"service {service.name} not ready after {waited}s; see {log_path}", 1)
            time.sleep(0.5)
        self._print(f"[launch] service {service.name} is ready")

    def _record_services(self) -> None:
        """Record the services this executor started, so a resume can stop them if this launcher is killed."""
        path = service_records.records_path(self.run_dir, self.attempt, self.log_suffix)
        service_records.write_records(path, [service_records.service_record(service.name, process.pid)
                                             for service, process, _log in self.services])

    def stop_orphans(self) -> None:
        """Stop the services that earlier attempts of the run recorded and left running on this host."""
        service_records.reap_orphans(self.run_dir, self.attempt, stop_group, self._print)

    def _is_ready(self, service: Service) -> bool:
        check = service.ready
        try:
            if check.http_url:
                url = resolve_placeholders(check.http_url, self.resolve)
                with urllib.request.urlopen(url, timeout=2) as response:
                    return 200 <= response.status < 300
            if check.tcp_port:
                port = int(resolve_placeholders(check.tcp_port, self.resolve))
                with socket.create_connection(("127.0.0.1", port), timeout=2):
                    return True
        except (OSError, http.client.HTTPException):
            return False
        return True

    def _dead_service(self) -> str | None:
        for service, process, log_path in self.services:
            if process.poll() is not None:
                return f"service {service.name} died with exit code {process.returncode}; see {log_path}"
        return None

    def _print(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def run_step(self, step: Step) -> None:
        """Run one step to its end, streaming its output to the terminal and its log."""
        if self.stop_reason:
            raise PlanFailed(f"not starting step {step.name}: {self.stop_reason}", self._stop_code())
        if step.skip_if_exists and (self.run_dir / step.skip_if_exists).exists():
            self._print(f"[launch] step {step.name}: {step.skip_if_exists} exists, skipped")
            return
        log_path = self.logs / f"{step.name}.{self.attempt}{self.log_suffix}.log"
        self._print(f"[launch] step {step.name}: {' '.join(step.argv)}")
        if step.console != "all":
            self._print(f"[launch]   its whole output: {log_path}")
        console = StepConsole(step.console, self.stream)
        with open(log_path, "a") as log:
            process = self._start(self._argv(step.argv), self._env(step.env), subprocess.PIPE)
            watcher = threading.Thread(target=self._watch_services, args=(process,), daemon=True)
            watcher.start()
            for line in process.stdout:
                console.write(line.rstrip("\n"))
                log.write(line)
            process.wait()
        console.close()
        with self.lock:
            self.running.remove(process)
        if self.stop_reason:
            raise PlanFailed(f"step {step.name} stopped: {self.stop_reason}", self._stop_code())
        if process.returncode != 0:
            if step.console != "all":
                tail = log_tail(log_path.read_text(errors="replace"))
                self._print(f"[launch] the last {len(tail)} lines of {log_path}:\n" + "\n".join(tail))
            raise PlanFailed(f"step {step.name} failed with exit code {process.returncode}; see {log_path}",
                             process.returncode if process.returncode > 0 else 128 - process.returncode)

    def _watch_services(self, process: subprocess.Popen) -> None:
        while process.poll() is None:
            reason = self._dead_service()
            if reason:
                self.stop(reason)
                return
            time.sleep(1.0)

    def _stop_code(self) -> int:
        if self.stop_reason and self.stop_reason.startswith("signal "):
            return 128 + int(self.stop_reason.split()[1])
        return 1

    def stop(self, reason: str) -> None:
        """Stop every process this executor started (steps first, then services)."""
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = reason
            processes = list(reversed(self.running))
        for process in processes:
            stop_group(process)

    def _on_signal(self, signum: int, _frame) -> None:
        self._print(f"[launch] received signal {signum}; stopping everything this run started")
        threading.Thread(target=self.stop, args=(f"signal {signum}",), daemon=True).start()

    def run(self, prepare: bool = True, main: bool = True, finish: bool = True) -> int:
        """Run the Plan, or a part of it, and return the exit code to propagate.

        `prepare` writes the files and runs the steps before the main command, `main` starts the
        services and runs the main command, `finish` runs the steps after it and marks the run done.
        A job over several nodes prepares and finishes on the first node and runs `main` on each.
        """
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            # This attempt holds the run's lock (or its job does), so no live attempt owns those services.
            if prepare or main:
                self.stop_orphans()
            if prepare:
                self._enter("files")
                self.write_files()
            if main:
                self._enter("services")
                for service in self.plan.services:
                    self.start_service(service)
            for step in self.plan.before if prepare else []:
                self.run_step(step)
            if main:
                self._enter("main")
                self.run_step(self.plan.main)
            if finish:
                self._enter("after")
                for step in self.plan.after:
                    self.run_step(step)
        except PlanFailed as failure:
            self._print(f"[launch] FAILED: {failure}")
            self.record_exit(failure.exit_code)
            return failure.exit_code
        finally:
            self.stop(self.stop_reason or "plan ended")
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if finish:
            mark_done(self.run_dir, self.plan.outputs)
            self.record_exit(0)
            self._print(f"[launch] finished: {self.run_dir}")
        return 0

    def _enter(self, phase: str) -> None:
        """Start a phase of the run (see rundir.FAULT_PHASES), unless a signal has asked to stop."""
        fault_point(phase, lambda: self.stop_reason is not None)
        if self.stop_reason:
            raise PlanFailed(f"stopped before {phase}: {self.stop_reason}", self._stop_code())

    def record_exit(self, code: int) -> None:
        """Write this attempt's exit code, which `python -m launch status` reports."""
        attempt_dir = self.run_dir / "attempts" / str(self.attempt)
        attempt_dir.mkdir(parents=True, exist_ok=True)
        (attempt_dir / f"exit_code{self.log_suffix}").write_text(f"{code}\n")
