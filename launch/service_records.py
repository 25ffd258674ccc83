"""Records of the services each attempt started, so a resume can stop those a killed launcher left running.

Each attempt writes `attempts/<N>/services<suffix>.json` as it starts each service: its name, pid,
process group, host, and the process's start time, which tells our process from a later one that
reuses its pid. A new attempt stops the recorded services of earlier attempts that still run here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from launch.rundir import write_atomic
from tools.environment.settings_file import read_mapping

# The fields of a record and their types.
FIELDS = {"name": str, "pid": int, "pgid": int, "start_time": int, "host": str, "boot_id": str}


def records_path(run_dir: Path, attempt: int, suffix: str = "") -> Path:
    """Where attempt `attempt` records its services on a node whose logs carry `suffix` (".node1")."""
    return run_dir / "attempts" / str(attempt) / f"services{suffix}.json"


def boot_id() -> str:
    """This boot's id: a pid and start time only name one process within one boot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_time(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot, /proc/<pid>/stat field 22); None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after it never do.
    fields = stat.rsplit(")", 1)[1].split()
    # A zombie has ended; only its parent's wait is missing.
    if fields[0] == "Z":
        return None
    return int(fields[19])


def service_record(name: str, pid: int) -> dict:
    """The record of service `name`, just started as process `pid` by this host."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pgid = pid
    return {"name": name, "pid": pid, "pgid": pgid, "start_time": start_time(pid) or 0,
            "host": os.uname().nodename, "boot_id": boot_id()}


def write_records(path: Path, records: list[dict]) -> None:
    """Write `records` to `path` atomically: a reader sees the old list or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"services": records}, indent=1) + "\n")


def read_records(path: Path) -> list[dict]:
    """The records in `path`; ValueError saying what is wrong when it is not a list this module wrote."""
    records = read_mapping(path, "service records", 'the {"services": [...]} this launcher writes').get("services")
    if not isinstance(records, list):
        raise ValueError(f'{path}: expected {{"services": [...]}}')
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: service {index} is a {type(record).__name__}, expected a mapping")
        for key, kind in FIELDS.items():
            # bool is an int to isinstance, but never a pid.
            if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
                raise ValueError(f"{path}: service {index} lacks {key!r} ({kind.__name__})")
    return records


def still_ours(record: dict) -> bool:
    """Whether the recorded service still runs on this host: same boot, same pid, same start time, same group."""
    if record["host"] != os.uname().nodename or record["boot_id"] != boot_id():
        return False
    if start_time(record["pid"]) != record["start_time"]:
        return False
    try:
        return os.getpgid(record["pid"]) == record["pgid"]
    except ProcessLookupError:
        return False


def reap_orphans(run_dir: Path, attempt: int, stop: Callable[[int], None], say: Callable[[str], None]) -> list[dict]:
    """Stop, with `stop(pgid)`, every service an attempt before `attempt` recorded that still runs here.

    Returns the records of the services it stopped. Records whose process is gone are skipped
    quietly; a malformed record file is reported through `say` and skipped.
    """
    stopped = []
    attempts = sorted((int(p.name), p) for p in (run_dir / "attempts").glob("*") if p.name.isdigit())
    for number, attempt_dir in attempts:
        if number >= attempt:
            continue
        for path in sorted(attempt_dir.glob("services*.json")):
            try:
                records = read_records(path)
            except ValueError as error:
                say(f"[launch] skipping malformed service records: {error}")
                continue
            for record in records:
                if not still_ours(record):
                    continue
                try:
                    stop(record["pgid"])
                except PermissionError:
                    say(f"[launch] cannot stop service {record['name']} (pid {record['pid']}) left running by "
                        f"attempt {number}: it belongs to another user")
                    continue
                say(f"[launch] stopped service {record['name']} (pid {record['pid']}) left running by attempt {number}")
                stopped.append(record)
    return stopped
