"""Secrets: which keys are secret, their markers in place of values, and their way back from the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.environment.secrets import (
    SECRETS_ENV,
    SecretsError,
    encode_secrets,
    is_secret_key,
    marker,
    redact_argv,
    restore_secrets,
    split_secrets,
)
from tools.environment.settings_file import read_mapping, read_settings


@pytest.mark.parametrize(
    ("config", "expected", "secrets"),
    [
        ({"api_key": "s3cr3t"}, {"api_key": "<redacted:api_key>"}, {"api_key": "s3cr3t"}),
        ({"WANDB_API_KEY": "s"}, {"WANDB_API_KEY": "<redacted:WANDB_API_KEY>"}, {"WANDB_API_KEY": "s"}),
        ({"openai_apikey": "s"}, {"openai_apikey": "<redacted:openai_apikey>"}, {"openai_apikey": "s"}),
        ({"hf_token": "hf_x"}, {"hf_token": "<redacted:hf_token>"}, {"hf_token": "hf_x"}),
        ({"Token": "t"}, {"Token": "<redacted:Token>"}, {"Token": "t"}),
        ({"client_secret": "c"}, {"client_secret": "<redacted:client_secret>"}, {"client_secret": "c"}),
        ({"db_password": 1234}, {"db_password": "<redacted:db_password>"}, {"db_password": 1234}),
        # Keys that only name a variable, or merely contain a secret word, are kept.
        ({"api_key_env": "WANDB_API_KEY"}, {"api_key_env": "WANDB_API_KEY"}, {}),
        ({"token_file": "/x"}, {"token_file": "/x"}, {}),
        ({"max_new_tokens": 5}, {"max_new_tokens": 5}, {}),
        # A tokenizer's special tokens are not secrets.
        ({"turn_end_token": "<|im_end|>"}, {"turn_end_token": "<|im_end|>"}, {}),
        ({"eos_token": "</s>", "pad_token": "<pad>"}, {"eos_token": "</s>", "pad_token": "<pad>"}, {}),
        # An empty secret has nothing to hide; a marker is already redacted.
        ({"token": ""}, {"token": ""}, {}),
        ({"api_key": None}, {"api_key": None}, {}),
        ({"api_key": "<redacted:a.api_key>"}, {"api_key": "<redacted:a.api_key>"}, {}),
        (
            {"wandb": {"project": "p", "api_key": "k", "api_key_env": "E"}, "list": [{"token": "t"}, 3]},
            {"wandb": {"project": "p", "api_key": "<redacted:wandb.api_key>", "api_key_env": "E"},
             "list": [{"token": "<redacted:list.0.token>"}, 3]},
            {"wandb.api_key": "k", "list.0.token": "t"},
        ),
    ],
)
def test_split_secrets(config: dict, expected: dict, secrets: dict) -> None:
    """Values of keys ending in api_key/apikey/token/secret/password become markers naming their dotted key."""
    before = repr(config)
    assert split_secrets(config) == (expected, secrets)
    # The input is not modified.
    assert repr(config) == before


@pytest.mark.parametrize(("arg", "expected"), [
    ("+trajectories.extra_body.api_key=sk-123",
     "+trajectories.extra_body.api_key=<redacted:trajectories.extra_body.api_key>"),
    ("++eval.extra_body.Token=abc", "++eval.extra_body.Token=<redacted:eval.extra_body.Token>"),
    ("wandb.password=hunter2", "wandb.password=<redacted:wandb.password>"),
    ("sft.learning_rate=1e-5", "sft.learning_rate=1e-5"),
    ("wandb.api_key_env=WANDB_API_KEY", "wandb.api_key_env=WANDB_API_KEY"),
    ("name=token", "name=token"),
    ("--dry-run", "--dry-run"),
])
def test_command_line_secrets_are_redacted(arg: str, expected: str) -> None:
    """Only the value of an override whose key looks secret is replaced; other arguments stay as given."""
    assert redact_argv(["launch", "sft", arg]) == ["launch", "sft", expected]


def test_restore_puts_every_secret_back() -> None:
    """A tree split and then restored from the environment's secrets is the original tree."""
    tree = {"extra_body": {"api_key": "sk-1", "n": 2, "nested": [{"session_token": {"k": "v"}}]}, "model": "m"}
    redacted, secrets = split_secrets(tree)
    assert "sk-1" not in json.dumps(redacted)
    assert restore_secrets(redacted, "s.json", {SECRETS_ENV: encode_secrets(secrets)}) == tree
    # A tree without markers needs no environment.
    assert restore_secrets({"a": [1, "x"]}, "s.json", {}) == {"a": [1, "x"]}


@pytest.mark.parametrize(("environ", "message"), [
    ({}, r"s.json: body.api_key holds <redacted:eval.extra_body.api_key>, whose secret \$LONGVIDEO_R1_SECRETS "
         r"does not carry; .* pass eval.extra_body.api_key=\.\.\. again"),
    ({SECRETS_ENV: encode_secrets({"other": "x"})}, r"s.json: body.api_key holds <redacted:eval.extra_body.api_key>"),
    ({SECRETS_ENV: "{not json"}, r"\$LONGVIDEO_R1_SECRETS is not valid JSON"),
    ({SECRETS_ENV: "[1]"}, r"\$LONGVIDEO_R1_SECRETS holds a list; expected a JSON object"),
])
def test_a_marker_without_its_secret_is_an_error(environ: dict, message: str) -> None:
    """A marker is never passed on as if it were the value: a missing secret names the file, field and key."""
    with pytest.raises(SecretsError, match=message):
        restore_secrets({"body": {"api_key": marker("eval.extra_body.api_key")}}, "s.json", environ)


@pytest.mark.parametrize("key", ["api_key", "apikey", "Token", "hub_token", "client_secret", "PASSWORD"])
def test_secret_words(key: str) -> None:
    """The secret-looking key names, in any case."""
    assert is_secret_key(key)


class Refused(ValueError):
    """The caller's own error type."""


@pytest.mark.parametrize(("name", "text", "parts"), [
    ("s.json", "{", ["s.json: cannot read the settings (Expecting property name", "expected the JSON object"]),
    ("s.json", "[1]", ["s.json: top level is a list; expected the JSON object"]),
    ("s.json", b"\xff\xfe", ["s.json: cannot read the settings ('utf-8' codec can't decode"]),
    ("s.yaml", "a: [", ["s.yaml: cannot read the settings (while parsing a flow node"]),
    ("s.yaml", "- 1", ["s.yaml: top level is a list"]),
    ("missing.json", None, ["missing.json: cannot read the settings ([Errno 2]"]),
])
def test_read_mapping_names_the_file(tmp_path: Path, name: str, text: str | bytes | None, parts: list[str]) -> None:
    """A settings file that is not one readable mapping raises the caller's error, naming the file and why."""
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(Refused) as raised:
        read_mapping(path, "settings", "the JSON object the stage rendered", Refused)
    message = str(raised.value)
    assert "\n" not in message
    for part in parts:
        assert part in message


def test_read_settings_restores_and_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """read_settings gives the secret in place of its marker, or the caller's error naming the field."""
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"extra_body": {"api_key": marker("trajectories.extra_body.api_key")}}))
    monkeypatch.delenv(SECRETS_ENV, raising=False)
    with pytest.raises(Refused, match=r"settings.json: extra_body.api_key holds <redacted:"):
        read_settings(path, "settings", "the JSON object", Refused)
    monkeypatch.setenv(SECRETS_ENV, encode_secrets({"trajectories.extra_body.api_key": "sk-9"}))
    assert read_settings(path, "settings", "the JSON object", Refused) == {"extra_body": {"api_key": "sk-9"}}
