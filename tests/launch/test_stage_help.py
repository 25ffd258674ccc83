"""`python -m launch STAGE --help`: every key of every section a stage reads, typed, with its default, meaning
and choices, all read from the schemas, the registries and the composed config."""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest

from launch.cli import LocalLauncher, main
from launch.compose import compose_config, group_options, recipe_names
from launch.schema import CHOICES, HELP
from launch.stage_help import choice_list, section_values, stage_help
from launch.stages import SECTIONS, STAGES
from launch.stages.agent_config import benchmark_names
from launch.stages.rollouts import SPLITS
from launch.stages.sft_config import FINETUNING_TYPES
from rewards.spec import preset_names
from tests.conftest import launch

# `  KEY: TYPE = DEFAULT[  (choices: A, B)]`, then the meaning on the next line.
KEY_LINE = re.compile(r"^  (?P<key>[\w.]+): (?P<type>\S.*?) = (?P<default>.*?)(?:  \(choices: (?P<choices>.*)\))?$")


def leaf_fields(schema: type, prefix: str) -> dict[str, dataclasses.Field]:
    """Every key of `schema`, nested schemas walked down, by its dotted name under `prefix`."""
    hints = typing.get_type_hints(schema)
    found = {}
    for field in dataclasses.fields(schema):
        if dataclasses.is_dataclass(hints[field.name]):
            found.update(leaf_fields(hints[field.name], f"{prefix}.{field.name}"))
        else:
            found[f"{prefix}.{field.name}"] = field
    return found


def help_keys(text: str) -> dict[str, dict[str, str]]:
    """The keys a help text lists: type, default, choices and the meaning below each."""
    lines = text.splitlines()
    keys = {}
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        match = KEY_LINE.match(line)
        if match:
            keys[match["key"]] = {**match.groupdict(), "meaning": following.strip()}
    return keys


def run_help(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """`main(argv)` for a stage's --help: it exits 0; its output."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def expected_fields(stage: str, section: str) -> dict[str, dataclasses.Field]:
    """The keys of `section` that `stage --help` must list with recipe=tiny (launcher=local: LocalLauncher's)."""
    fields = leaf_fields(SECTIONS[section].schema, section)
    if section == "launcher":
        return {key: fields[key] for key in leaf_fields(LocalLauncher, section)}
    return fields


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_stage_help_lists_every_key_of_its_sections(stage: str, capsys: pytest.CaptureFixture) -> None:
    """`STAGE --help` exits 0 and lists every schema key of each section it reads, with a type and a meaning."""
    text = run_help([stage, "--help"], capsys)
    assert text.startswith(f"usage: python -m launch {stage} ")
    listed = help_keys(text)
    assert STAGES[stage].sections and STAGES[stage].sections[0] == stage
    for section in STAGES[stage].sections:
        for key, field in expected_fields(stage, section).items():
            assert key in listed, f"{stage} --help does not list {key}"
            assert listed[key]["type"] and listed[key]["meaning"] == field.metadata[HELP]


@pytest.mark.parametrize("name", list(SECTIONS))
def test_every_schema_field_has_a_meaning(name: str) -> None:
    """Every key of every section's schema carries its one-line meaning in its metadata."""
    for key, field in leaf_fields(SECTIONS[name].schema, name).items():
        meaning = field.metadata.get(HELP)
        assert meaning and "\n" not in meaning, f"{key} has no one-line meaning"


@pytest.mark.parametrize("stage", list(STAGES))
def test_the_schemas_hold_exactly_the_composed_sections(stage: str) -> None:
    """Each section a stage reads composes (recipe=tiny) into exactly its schema's keys, so the help misses none."""
    config = compose_config(stage, ["recipe=tiny"], STAGES[stage].needs_recipe).config
    for section in STAGES[stage].sections:
        values = section_values(config, section)
        if values is None:
            # benchmark=NAME picks it; the tiny recipe picks none.
            assert SECTIONS[section].options is not None
            continue
        assert set(flat_keys(values, section)) == set(expected_fields(stage, section)), section


def flat_keys(values: dict, prefix: str) -> list[str]:
    """The dotted keys of the composed section `prefix`, walked down where its schema nests another schema."""
    leaves = leaf_fields(SECTIONS[prefix].schema, prefix)
    nested = {key.rsplit(".", depth)[0] for key in leaves for depth in range(1, key.count("."))}
    keys, todo = [], [(prefix, values)]
    while todo:
        where, mapping = todo.pop()
        for name, value in mapping.items():
            key = f"{where}.{name}"
            if isinstance(value, dict) and key in nested:
                todo.append((key, value))
            else:
                keys.append(key)
    return keys


@pytest.mark.parametrize(
    ("stage", "key", "choices"),
    [
        ("sft", "sft.finetuning_type", list(FINETUNING_TYPES)),
        ("audit", "reward.preset", preset_names()),
        ("eval", "benchmark.name", benchmark_names()),
        ("rollouts", "rollouts.split", list(SPLITS)),
        ("rl", "launcher.name", group_options("launcher")),
    ],
)
def test_a_choice_key_shows_the_choices_of_its_registry(stage: str, key: str, choices: list[str],
                                                        capsys: pytest.CaptureFixture) -> None:
    """A key whose values a list or registry defines shows exactly those values."""
    assert help_keys(run_help([stage, "--help"], capsys))[key]["choices"] == ", ".join(choices)


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_key_with_choices_shows_them(stage: str, capsys: pytest.CaptureFixture) -> None:
    """Every listed key whose schema field names its choices shows them; a key without any shows none."""
    listed = help_keys(run_help([stage, "--help"], capsys))
    for section in STAGES[stage].sections:
        for key, field in expected_fields(stage, section).items():
            choices = choice_list(field.metadata.get(CHOICES))
            assert listed[key]["choices"] == (", ".join(choices) if choices else None), key


def test_group_sections_name_their_options(capsys: pytest.CaptureFixture) -> None:
    """A section a config group picks names the group's options in its heading; an unpicked one has no defaults."""
    text = run_help(["eval", "--help"], capsys)
    assert f"benchmark=NAME picks it: {', '.join(benchmark_names())}:" in text
    assert help_keys(text)["benchmark.format"]["default"] == "(set by benchmark=NAME)"
    picked = help_keys(run_help(["eval", "benchmark=demo", "--help"], capsys))
    assert picked["benchmark.name"]["default"] == "demo"


def test_the_recipe_on_the_command_line_gives_the_defaults(capsys: pytest.CaptureFixture) -> None:
    """Defaults are the composed config of the recipe given (recipe=tiny without one), overrides included."""
    tiny = help_keys(run_help(["sft", "--help"], capsys))
    paper = help_keys(run_help(["sft", "recipe=qwen3_8b", "sft.learning_rate=3e-5", "--help"], capsys))
    composed = compose_config("sft", ["recipe=qwen3_8b"]).config
    assert tiny["sft.cutoff_len"]["default"] == str(compose_config("sft", ["recipe=tiny"]).config.sft.cutoff_len)
    assert paper["sft.cutoff_len"]["default"] == str(composed.sft.cutoff_len)
    assert paper["sft.learning_rate"]["default"] == "3e-05"
    assert paper["sft.deepspeed"]["default"] == (str(composed.sft.deepspeed) if composed.sft.deepspeed else "null")


def test_slurm_launcher_help_lists_every_slurm_key(capsys: pytest.CaptureFixture) -> None:
    """launcher=slurm lists all of the Slurm launcher's keys; launcher=local only the three it holds."""
    slurm = help_keys(run_help(["rl", "launcher=slurm", "--help"], capsys))
    assert set(leaf_fields(SECTIONS["launcher"].schema, "launcher")) <= set(slurm)
    local = help_keys(run_help(["rl", "--help"], capsys))
    assert {key for key in local if key.startswith("launcher.")} == set(leaf_fields(LocalLauncher, "launcher"))


def test_stage_help_lists_the_recipes() -> None:
    """The help names every recipe recipe=NAME chooses from."""
    assert f"Recipes (recipe=NAME): {', '.join(recipe_names())}" in stage_help("sft", [])


def test_an_unknown_stage_help_errors_clearly(capsys: pytest.CaptureFixture) -> None:
    """`python -m launch nope --help` exits 2 naming the valid stages; a bad recipe in a stage's help too."""
    assert main(["nope", "--help"]) == 2
    err = capsys.readouterr().err
    assert "unknown stage 'nope'" in err and all(name in err for name in STAGES)
    assert main(["sft", "recipe=nope", "--help"]) == 2
    assert "nope" in capsys.readouterr().err


def test_global_help_points_at_stage_help() -> None:
    """`python -m launch --help` is the global help and names `STAGE --help`; a stage's help runs as a command."""
    assert main(["--help"]) == 0
    result = launch("sft", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m launch sft ")
    assert "python -m launch STAGE --help" in launch("--help").stdout
