"""The Plan: what a stage wants run, independent of where it runs.

A stage turns the composed config into a Plan; an executor (this node, or an sbatch script)
decides where it runs. Values only known on the node that runs it (a free port, the head
node's address, the node rank) are written as placeholders ``{{name}}`` or ``{{free_port:key}}``
that the executor resolves there.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import yaml

# A placeholder is `{{node_rank}}`, `{{nnodes}}`, `{{head_addr}}` or `{{free_port:KEY}}`.
PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)(?::([A-Za-z0-9_]+))?\s*\}\}")
KNOWN_PLACEHOLDERS = ("node_rank", "nnodes", "head_addr", "free_port")


class _PlanDumper(yaml.SafeDumper):
    """Writes multi-line strings (rendered files) as literal blocks, so a printed Plan reads well."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_PlanDumper.add_representer(str, _represent_str)


@dataclass
class FileSpec:
    """A file the executor writes into the run directory before anything starts."""

    path: str
    content: str
    # Whether the executor resolves placeholders (e.g. a service's free port) in `content` first.
    resolve: bool = False


@dataclass
class ReadyCheck:
    """How an executor knows a service is up: an HTTP URL that answers 2xx, or a TCP port."""

    http_url: str | None = None
    tcp_port: str | None = None
    timeout_s: float = 600.0


@dataclass
class Step:
    """One command with its environment; `env` values may hold placeholders."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # The step runs only when this path (relative to the run dir or absolute) does not exist.
    skip_if_exists: str | None = None
    # What the console shows of it (launch/console.py): all of it, or, for a library-heavy step, its
    # progress, loss and problems (its log holds everything either way).
    console: str = "all"


@dataclass
class Service:
    """A long-running process the main command needs; started first, stopped last."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready: ReadyCheck = field(default_factory=ReadyCheck)
    gpus: int = 0


@dataclass
class Resources:
    """What the main command needs; read from the `launcher` config, never chosen by a stage."""

    nodes: int = 1
    gpus_per_node: int = 0
    # How the main command spans several nodes: "per_node" (one copy on every node, e.g. torchrun,
    # with the other steps on the first node only) or "ray" (once on the first node, over a Ray
    # cluster of every node; services run on the first node too).
    multi_node: str = "per_node"
    # GPU indices the main command uses on each node (a Ray node offers only these); None: all.
    main_gpus: list[int] | None = None


@dataclass
class Plan:
    """Everything a stage wants done, in order: files, services, steps before, main, steps after."""

    stage: str
    run_dir: str
    main: Step
    files: list[FileSpec] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    before: list[Step] = field(default_factory=list)
    after: list[Step] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    # Named results of a finished run (e.g. `model`), read by the next stage.
    outputs: dict[str, str] = field(default_factory=dict)

    def steps(self) -> list[Step]:
        """All steps in the order they run."""
        return [*self.before, self.main, *self.after]

    def to_dict(self) -> dict:
        """A plain dict of the Plan (file contents included)."""
        return dataclasses.asdict(self)

    def to_yaml(self, with_contents: bool = True) -> str:
        """The Plan as YAML; without contents, files are listed by path and size only."""
        data = self.to_dict()
        if not with_contents:
            data["files"] = [{"path": f.path, "bytes": len(f.content.encode())} for f in self.files]
        return yaml.dump(data, Dumper=_PlanDumper, sort_keys=False, width=100, allow_unicode=True)

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        """Rebuild a Plan from `to_dict` output."""

        def step(d: dict) -> Step:
            return Step(**d)

        return cls(
            stage=data["stage"],
            run_dir=data["run_dir"],
            main=step(data["main"]),
            files=[FileSpec(**f) for f in data.get("files", [])],
            services=[
                Service(**{**s, "ready": ReadyCheck(**s.get("ready", {}))}) for s in data.get("services", [])
            ],
            before=[step(s) for s in data.get("before", [])],
            after=[step(s) for s in data.get("after", [])],
            resources=Resources(**data.get("resources", {})),
            outputs=dict(data.get("outputs", {})),
        )

    @classmethod
    def from_yaml(cls, text: str) -> Plan:
        """Rebuild a Plan from `to_yaml` output."""
        return cls.from_dict(yaml.safe_load(text))


def placeholders_in(text: str) -> list[tuple[str, str | None]]:
    """The (name, key) pairs of every placeholder in `text`; unknown names are an error."""
    found = []
    for match in PLACEHOLDER.finditer(text):
        name, key = match.group(1), match.group(2)
        if name not in KNOWN_PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {match.group(0)!r}; known: {', '.join(KNOWN_PLACEHOLDERS)}")
        if (name == "free_port") != (key is not None):
            raise ValueError(f"placeholder {match.group(0)!r}: only free_port takes a key, and it needs one")
        found.append((name, key))
    return found


def resolve_placeholders(text: str, lookup: Callable[[str, str | None], str]) -> str:
    """Replace every placeholder in `text` with `lookup(name, key)`."""
    placeholders_in(text)
    return PLACEHOLDER.sub(lambda m: lookup(m.group(1), m.group(2)), text)
