"""The Plan: YAML round-trips, the file listing without contents, and placeholder resolution."""

from __future__ import annotations

import socket

import pytest
import yaml

from launch.local import LocalResolver
from launch.plan import (
    FileSpec,
    Plan,
    ReadyCheck,
    Resources,
    Service,
    Step,
    placeholders_in,
    resolve_placeholders,
)


def full_plan() -> Plan:
    """A Plan using every field: files, services with both ready checks, steps before/after, outputs."""
    return Plan(
        stage="sft",
        run_dir="/runs/sft/tiny/x",
        main=Step("train", ["llamafactory-cli", "train", "lf/train.yaml"],
                  env={"MASTER_PORT": "{{free_port:master}}", "NNODES": "{{nnodes}}"}),
        files=[
            FileSpec("lf/train.yaml", "stage: sft\ncutoff_len: 2048\n"),
            FileSpec("notes.txt", "trailing space \nünïcödé\n"),
            FileSpec("one_line.txt", "no newline"),
        ],
        services=[
            Service("vlm", ["serve", "--port", "{{free_port:vlm}}"], env={"A": "1"},
                    ready=ReadyCheck(http_url="http://{{head_addr}}:{{free_port:vlm}}/health", timeout_s=30.0),
                    gpus=2),
            Service("tcp", ["nc", "-l"], ready=ReadyCheck(tcp_port="{{free_port:tcp}}")),
        ],
        before=[Step("build", ["python", "-m", "tools.demo.tiny_model"], skip_if_exists="model/config.json")],
        after=[Step("merge", ["llamafactory-cli", "export"], env={"CUDA_VISIBLE_DEVICES": ""}),
               Step("template", ["python", "-m", "tools.builders.chat_template"])],
        resources=Resources(nodes=2, gpus_per_node=8),
        outputs={"model": "/runs/sft/tiny/x/model"},
    )


@pytest.mark.parametrize(
    "plan",
    [full_plan(), Plan(stage="sft", run_dir="/r", main=Step("main", ["true"]))],
    ids=["full", "minimal"],
)
def test_plan_round_trips_through_yaml(plan: Plan) -> None:
    """from_yaml(to_yaml(plan)) rebuilds an equal Plan, nested dataclasses included."""
    again = Plan.from_yaml(plan.to_yaml())
    assert again == plan
    assert all(isinstance(s.ready, ReadyCheck) for s in again.services)
    assert isinstance(again.resources, Resources)


def test_plan_from_dict_fills_defaults_for_missing_sections() -> None:
    """A dict with only stage, run_dir and main gives empty lists and default resources."""
    plan = Plan.from_dict({"stage": "sft", "run_dir": "/r", "main": {"name": "m", "argv": ["x"]}})
    assert (plan.files, plan.services, plan.before, plan.after, plan.outputs) == ([], [], [], [], {})
    assert plan.resources == Resources()


def test_multi_line_file_contents_print_as_literal_blocks() -> None:
    """A rendered file reads as a `|` block in the printed Plan, not as an escaped one-liner."""
    text = full_plan().to_yaml()
    assert "content: |" in text
    assert "    cutoff_len: 2048\n" in text


def test_to_yaml_without_contents_lists_files_by_path_and_size() -> None:
    """with_contents=False lists each file's path and size in bytes (UTF-8), never its content."""
    plan = full_plan()
    text = plan.to_yaml(with_contents=False)
    files = yaml.safe_load(text)["files"]
    assert files == [{"path": f.path, "bytes": len(f.content.encode())} for f in plan.files]
    # The unicode file has more bytes than characters: the size is in bytes.
    assert files[1]["bytes"] > len(plan.files[1].content)
    assert "cutoff_len" not in text
    # The Plan itself is not changed by printing it without contents.
    assert plan.files[0].content.startswith("stage: sft")


def test_steps_are_before_then_main_then_after() -> None:
    """steps() gives every step in the order it runs."""
    assert [s.name for s in full_plan().steps()] == ["build", "train", "merge", "template"]


def fake_lookup(name: str, key: str | None) -> str:
    """A lookup that shows what it was asked for."""
    return f"<{name}:{key}>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{node_rank}}", "<node_rank:None>"),
        ("--nnodes={{nnodes}}", "--nnodes=<nnodes:None>"),
        ("{{head_addr}}:{{free_port:master}}", "<head_addr:None>:<free_port:master>"),
        ("{{ node_rank }}", "<node_rank:None>"),
        ("{{free_port:a}}-{{free_port:B_2}}", "<free_port:a>-<free_port:B_2>"),
        ("no placeholder {here}", "no placeholder {here}"),
        ("", ""),
    ],
)
def test_resolve_placeholders_replaces_each_placeholder(text: str, expected: str) -> None:
    """Each placeholder is replaced by lookup(name, key); other text is kept as is."""
    assert resolve_placeholders(text, fake_lookup) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{node_rank}}", "0"),
        ("{{nnodes}}", "1"),
        ("{{head_addr}}", "127.0.0.1"),
        ("rank {{node_rank}} of {{nnodes}} at {{head_addr}}", "rank 0 of 1 at 127.0.0.1"),
    ],
)
def test_local_resolver_is_rank_zero_of_one_on_loopback(text: str, expected: str) -> None:
    """On one node the rank is 0, there is 1 node, and the head is 127.0.0.1."""
    assert resolve_placeholders(text, LocalResolver()) == expected


def test_free_port_is_stable_per_key_and_distinct_across_keys() -> None:
    """The same key gives the same port every time; different keys get different, bindable ports."""
    resolver = LocalResolver()
    first = resolve_placeholders("{{free_port:master}}", resolver)
    again = resolve_placeholders("http://127.0.0.1:{{free_port:master}}/", resolver)
    assert again == f"http://127.0.0.1:{first}/"
    ports = [int(resolve_placeholders(f"{{{{free_port:{key}}}}}", resolver)) for key in ("master", "vlm", "tool")]
    assert len(set(ports)) == 3
    for port in ports:
        assert 1024 <= port <= 65535
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_free_ports_are_per_resolver() -> None:
    """A fresh resolver (another run) does not reuse the first one's memory of keys."""
    first, second = LocalResolver(), LocalResolver()
    resolve_placeholders("{{free_port:master}}", first)
    assert second.ports == {} and list(first.ports) == ["master"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{foo}}", "unknown placeholder"),
        ("x {{node_rank}} {{gpu_count}}", "unknown placeholder"),
        ("{{free_port}}", "needs one"),
        ("{{node_rank:x}}", "only free_port takes a key"),
        ("{{ head_addr:1 }}", "only free_port takes a key"),
    ],
)
def test_bad_placeholders_raise_value_error(text: str, message: str) -> None:
    """Unknown names, free_port without a key, and keys on other names raise ValueError."""
    with pytest.raises(ValueError, match=message):
        resolve_placeholders(text, fake_lookup)


def test_bad_placeholder_raises_before_any_lookup() -> None:
    """A bad placeholder anywhere in the text fails before a port is taken for the good ones."""
    resolver = LocalResolver()
    with pytest.raises(ValueError):
        resolve_placeholders("{{free_port:master}} {{bogus}}", resolver)
    assert resolver.ports == {}


def test_placeholders_in_lists_name_and_key_pairs() -> None:
    """placeholders_in gives (name, key) for each placeholder, in order."""
    found = placeholders_in("{{head_addr}}:{{free_port:master}} rank {{node_rank}}")
    assert found == [("head_addr", None), ("free_port", "master"), ("node_rank", None)]
