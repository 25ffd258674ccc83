"""The typed-section helpers every stage checks its config with (launch/schema.py): one line naming the key."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from omegaconf import OmegaConf

from launch.compose import ConfigError
from launch.schema import check_range, typed_section


@dataclass
class Inner:
    """A nested section."""

    gpus: list[int]


@dataclass
class Section:
    """A section with the kinds of field the stages use: no defaults, so the YAML holds every value."""

    count: int
    ratio: float
    flag: bool
    path: str | None
    inner: Inner


VALID = {"count": 2, "ratio": 0.5, "flag": True, "path": None, "inner": {"gpus": [0, 1]}}


def test_a_valid_section_becomes_its_dataclass() -> None:
    """Every key present and well typed: an instance of the schema, nested sections included."""
    section = typed_section(Section, OmegaConf.create(VALID), "demo")
    assert section == Section(2, 0.5, True, None, Inner([0, 1]))


@pytest.mark.parametrize(("values", "message"), [
    ({"count": "many"}, "demo.count='many': expected an integer"),
    ({"count": {"a": 1}}, "demo.count={'a': 1}: expected an integer, not a mapping; write demo.count=<an integer>"),
    ({"flag": "maybe"}, "demo.flag='maybe': expected true or false"),
    ({"path": [1]}, "demo.path=[1]: expected a string or null, not a list"),
    ({"inner": 3}, "demo.inner=3: expected a mapping of gpus; set its keys one by one, e.g. demo.inner.gpus=..."),
    ({"inner": {"gpus": [True]}}, "demo.inner.gpus[0]=True"),
    ({"count": "???"}, "demo.count: missing; set demo.count=..."),
    ({"extra": 1}, "demo.extra: no such key; keys of demo: count, flag, inner, path, ratio"),
    ({"cuont": 1}, "demo.cuont: no such key; did you mean demo.count?"),
    ({"inner": {"gpus": [0], "cpus": 2}}, "demo.inner.cpus: no such key; did you mean demo.inner.gpus?"),
])
def test_a_wrong_section_names_the_key_in_one_line(values: dict, message: str) -> None:
    """A wrong type, a missing value or an unknown key: one ConfigError line naming `section.key`."""
    with pytest.raises(ConfigError) as error:
        typed_section(Section, OmegaConf.create({**VALID, **values}), "demo")
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_key_the_yaml_leaves_out_is_named() -> None:
    """The schema holds no defaults: a key missing from the YAML is an error naming it."""
    values = {key: value for key, value in VALID.items() if key != "ratio"}
    with pytest.raises(ConfigError, match=r"^demo\.ratio: missing"):
        typed_section(Section, OmegaConf.create(values), "demo")


@pytest.mark.parametrize(("value", "low_open", "high", "allowed"), [
    (0.0, False, 1.0, True), (1.0, False, 1.0, True), (0.0, True, 1.0, False), (1.5, False, 1.0, False),
    (float("nan"), False, 1.0, False), (1e9, False, None, True), (-1.0, False, None, False),
])
def test_check_range_refuses_what_is_outside_and_nan(value: float, low_open: bool, high: float | None,
                                                     allowed: bool) -> None:
    """[low, high] or (low, high]; no upper bound when high is None; NaN is never inside."""
    if allowed:
        check_range("demo", "x", value, 0, high, low_open=low_open)
        return
    with pytest.raises(ConfigError, match=r"^demo\.x=.* must be in [\[(]0, "):
        check_range("demo", "x", value, 0, high, low_open=low_open)
