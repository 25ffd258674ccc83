"""Trainer overrides (launch/trainer_keys.py): Hydra rendering, the key-set checks, and a replay through Hydra.

verl-tool is not installed here, so its composed trainer config is rebuilt from the key file's defaults
and the RL Plan's overrides are applied to it with Hydra's own override machinery, in struct mode,
exactly as the trainer's `@hydra.main` applies them.
"""

from __future__ import annotations

import re
import sys
from functools import cache
from pathlib import Path

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from launch.compose import PROJECT_ROOT, compose_config, recipe_names
from launch.stages import rl
from launch.trainer_keys import (
    ADDABLE,
    TrainerConfigError,
    check_override,
    check_overrides,
    effective,
    pinned_commit,
    render_override,
    render_value,
    trainer_keys,
)

KEY_TYPES = {"bool", "int", "float", "str", "list", "dict", "any"}


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point `paths.cache` at a tmp dir so no test reads or names ~/.cache."""
    monkeypatch.setenv("LONGVIDEO_R1_CACHE", str(tmp_path / "cache"))


def parse_value(text: str) -> object:
    """The value Hydra's own override parser reads from `key=<text>`."""
    return OverridesParser.create().parse_override(f"k={text}").value()


@cache
def plan_overrides(recipe: str, *overrides: str) -> tuple[str, ...]:
    """The trainer overrides of the recipe's dry-run RL Plan (rl.model set, so no hand-off is needed)."""
    config = compose_config("rl", [f"recipe={recipe}", "dry_run=true", f"rl.model={PROJECT_ROOT}", *overrides]).config
    plan = rl.build_plan(config, Path("/tmp/runs/rl") / recipe / "replay", f"{recipe}/replay", sys.executable)
    assert plan.main.argv[1:3] == ["-m", "verl_tool.trainer.main_ppo"]
    return tuple(plan.main.argv[3:])


def trainer_config() -> DictConfig:
    """verl-tool's composed trainer config rebuilt from the key file's defaults, in struct mode as Hydra loads it."""
    nested: dict = {}
    for key, spec in trainer_keys().items():
        *parents, leaf = key.split(".")
        node = nested
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = spec["default"]
    config = OmegaConf.create(nested)
    OmegaConf.set_struct(config, True)
    return config


def replay(overrides: list[str] | tuple[str, ...]) -> DictConfig:
    """Apply `overrides` to the rebuilt trainer config exactly as the trainer's `@hydra.main` does."""
    config = trainer_config()
    ConfigLoaderImpl._apply_overrides_to_config(OverridesParser.create().parse_overrides(list(overrides)), config)
    return config


# ---------------------------------------------------------------- render_value


@pytest.mark.parametrize(
    "value",
    [
        None, True, False, 0, -3, 12288, 1e-6, 0.0001, 12288.0, -2.5e-7, 1e16, "", "grpo", "null", "true", "1",
        "/data/my videos/run 1/model", "Qwen/Qwen3-8B", "a,b", "a=b", "[x]", "{a:1}", "~x", "$x", 'say "hi"',
        "http://127.0.0.1:{{free_port:tool}}/get_observation", [], ["console", "wandb"], [1, "a", [2.5, None]],
        {}, {"preset": "default", "components": {"answer": {"weight": 1.0}, "location": {"visits": ["low"]}}},
    ],
    ids=[
        "none", "true", "false", "zero", "negative", "int", "1e-6", "0.0001", "12288.0", "small-negative", "1e16",
        "empty-str", "str", "str-null", "str-true", "str-digit", "path-with-spaces", "hub-id", "comma", "equals",
        "brackets", "braces", "tilde", "dollar", "double-quote", "placeholder", "empty-list", "list-of-str",
        "nested-list", "empty-dict", "nested-dict",
    ],
)
def test_render_value_round_trips_through_hydra(value: object) -> None:
    """Hydra's override parser reads back exactly the value that was rendered, with its type."""
    parsed = parse_value(render_value(value, "some.key"))
    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(12288.0, "12288.0"), (1e-6, "1e-06"), (1, "1"), (True, "true"), ("x", "'x'")],
    ids=["float-keeps-point", "float-exponent", "int", "bool", "str-quoted"],
)
def test_render_value_keeps_the_type_visible(value: object, shown: str) -> None:
    """A float stays a float (12288.0, not 12288) and a string is always quoted."""
    assert render_value(value, "k") == shown


@pytest.mark.parametrize(
    "value",
    ["it's", "C:\\models", "${oc.env:HOME}", ["ok", "b'ad"], {"name": "${x}"}],
    ids=["quote", "backslash", "interpolation", "inside-list", "inside-dict"],
)
def test_render_value_rejects_what_hydra_would_reinterpret(value: object) -> None:
    """A quote, a backslash or '${' cannot be passed safely; the error names the key."""
    with pytest.raises(TrainerConfigError, match=re.escape("actor_rollout_ref.model.path")):
        render_value(value, "actor_rollout_ref.model.path")


@pytest.mark.parametrize(
    ("value", "message"),
    [({"a b": 1}, "mapping key 'a b'"), ({1: 2}, "mapping key 1"), (object(), "a object cannot")],
    ids=["key-with-space", "int-key", "object"],
)
def test_render_value_rejects_unrenderable_values(value: object, message: str) -> None:
    """Mapping keys must be plain identifiers and only plain data renders; errors name the key."""
    with pytest.raises(TrainerConfigError, match=f"some.key.*{re.escape(message)}"):
        render_value(value, "some.key")


@pytest.mark.parametrize("name", ["null", "true", "False", "inf", "nan"])
def test_render_value_mapping_keys_that_are_hydra_keywords(name: str) -> None:
    """A mapping key spelt like a Hydra keyword round-trips as a string (or is refused)."""
    try:
        text = render_value({name: 1}, "some.key")
    except TrainerConfigError:
        return
    assert parse_value(text) == {name: 1}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("data.train_batch_size", 12, "data.train_batch_size=12"),
        ("trainer.logger", ["console"], "trainer.logger=['console']"),
        ("custom_reward_function.reward_kwargs", {"preset": "paper"}, "+custom_reward_function.reward_kwargs="
                                                                       "{preset:'paper'}"),
        ("actor_rollout_ref.model.override_config.attn", "eager",
         "+actor_rollout_ref.model.override_config.attn='eager'"),
        ("trainer.n_gpu_per_node", 6, "trainer.n_gpu_per_node=6"),
    ],
    ids=["existing", "list", "addable", "inside-dict-key", "unknown-stays-plain"],
)
def test_render_override_adds_plus_only_where_a_key_may_be_added(key: str, value: object, expected: str) -> None:
    """`+` prefixes only addable keys absent from the config; an unknown key renders plain so its check names it."""
    assert render_override(key, value) == expected


# ---------------------------------------------------------------- check_override


@pytest.mark.parametrize(
    ("text", "named", "suggested"),
    [
        ("actor_rollout_ref.actor.optim.learning_rate=1e-6", "actor_rollout_ref.actor.optim.learning_rate",
         "actor_rollout_ref.actor.optim.lr"),
        ("trainer.n_gpu_per_node=6", "trainer.n_gpu_per_node", "trainer.n_gpus_per_node"),
        ("actor_rollout_ref.rollout.temprature=1.0", "actor_rollout_ref.rollout.temprature",
         "actor_rollout_ref.rollout.temperature"),
        ("data.train_batch=12", "data.train_batch", "data.train_batch_size"),
    ],
    ids=["optim-learning-rate", "n-gpu-per-node", "temprature", "train-batch"],
)
def test_unknown_key_is_named_with_its_nearest_key(text: str, named: str, suggested: str) -> None:
    """A typo'd key is an error naming it, the pinned commit, and the close match."""
    with pytest.raises(TrainerConfigError) as error:
        check_override(text)
    message = str(error.value)
    assert f"{named} is not a key" in message
    # The suggestion is a whole key among "did you mean A or B or C?".
    assert re.search(rf"did you mean (\S+ or )*{re.escape(suggested)}( or |\?)", message), message
    assert pinned_commit()[:12] in message


@pytest.mark.parametrize("text", ["trainer=1", "actor_rollout_ref.actor.optim={lr:1e-6}", "data='x'"],
                         ids=["trainer", "optim", "data"])
def test_a_section_is_not_a_key(text: str) -> None:
    """Setting a whole section is an error that says it is a section."""
    with pytest.raises(TrainerConfigError, match=f"{re.escape(text.split('=')[0])} is a section"):
        check_override(text)


@pytest.mark.parametrize(
    ("text", "expected", "got"),
    [
        ("data.train_batch_size=12.5", "int", "float"),
        ("data.train_batch_size='12'", "int", "str"),
        ("data.train_batch_size=true", "int", "bool"),
        ("actor_rollout_ref.actor.optim.lr='1e-6'", "float", "str"),
        ("actor_rollout_ref.actor.optim.lr=false", "float", "bool"),
        ("trainer.val_before_train='yes'", "bool", "str"),
        ("trainer.val_before_train=1", "bool", "int"),
        ("trainer.project_name=123", "str", "int"),
        ("trainer.project_name=[a]", "str", "list"),
        ("trainer.logger='console'", "list", "str"),
        ("trainer.logger=console", "list", "str"),
        ("actor_rollout_ref.model.override_config=[1]", "dict", "list"),
        ("data.train_batch_size=null", "int", "null"),
        ("trainer.project_name=null", "str", "null"),
    ],
    ids=["int-got-float", "int-got-str", "int-got-bool", "float-got-str", "float-got-bool", "bool-got-str",
         "bool-got-int", "str-got-int", "str-got-list", "list-got-quoted-str", "list-got-bare-str",
         "dict-got-list", "int-got-null", "str-got-null"],
)
def test_wrong_type_names_key_and_expected_type(text: str, expected: str, got: str) -> None:
    """A value of the wrong type (null included, where the default is not null) names key, type and value's type."""
    key = text.split("=")[0]
    with pytest.raises(TrainerConfigError) as error:
        check_override(text)
    message = str(error.value)
    assert message.startswith(f"{key}=")
    assert f"expects {expected}, got {got}" in message


def test_a_number_for_a_string_key_says_to_quote_it() -> None:
    """trainer.project_name=123 suggests quoting, since Hydra reads 123 as an int."""
    with pytest.raises(TrainerConfigError, match="quote it to pass a string"):
        check_override("trainer.project_name=123")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("actor_rollout_ref.actor.optim.lr=1", 1),
        ("actor_rollout_ref.actor.optim.lr=1e-6", 1e-6),
        ("actor_rollout_ref.actor.entropy_coeff=0.001", 0.001),
        ("actor_rollout_ref.rollout.top_p=0.95", 0.95),
        ("actor_rollout_ref.rollout.val_kwargs.temperature=0.6", 0.6),
        ("data.train_batch_size=12", 12),
        ("trainer.val_before_train=false", False),
        ("trainer.project_name='longvideo-r1'", "longvideo-r1"),
        ("trainer.project_name=longvideo", "longvideo"),
        ("trainer.logger=['console','wandb']", ["console", "wandb"]),
        ("actor_rollout_ref.model.override_config={}", {}),
        ("trainer.total_training_steps=null", None),
        ("trainer.total_training_steps=100", 100),
        ("actor_rollout_ref.agent.mtrl_sep=null", None),
        ("custom_reward_function.path='/x/verl_entry.py'", "/x/verl_entry.py"),
        ("+custom_reward_function.reward_kwargs={preset:'paper',components:{answer:{weight:2.0}}}",
         {"preset": "paper", "components": {"answer": {"weight": 2.0}}}),
        ("+custom_reward_function.reward_kwargs.preset='paper'", "paper"),
        ("+actor_rollout_ref.model.override_config.x=1", 1),
        ("+actor_rollout_ref.rollout.engine_kwargs.vllm.enforce_eager=true", True),
        ("+trainer.total_training_steps=5", 5),
    ],
    ids=["float-key-takes-int", "float", "entropy-coeff-int-in-yaml", "top-p-int-in-yaml",
         "val-temperature-int-in-yaml", "int", "bool", "quoted-str", "bare-str", "list", "dict", "null-where-null",
         "number-where-null", "mtrl-sep-null", "path-where-null", "add-reward-kwargs", "add-inside-reward-kwargs",
         "add-inside-override-config", "add-inside-engine-kwargs", "add-to-null-key"],
)
def test_valid_overrides_are_accepted(text: str, value: object) -> None:
    """Well-typed values are accepted and returned as Hydra parsed them."""
    key = text.lstrip("+").split("=")[0]
    assert check_override(text) == (key, value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("+data.train_batch_size=12", "+data.train_batch_size: the key exists"),
        ("+trainer.logger=['console']", "+trainer.logger: the key exists"),
        ("+trainer.remove_previous_ckpt_in_save=false", "+trainer.remove_previous_ckpt_in_save: not in verl-tool"),
        ("++data.train_batch_size=12.5", "data.train_batch_size=12.5: verl-tool's trainer expects int"),
        ("+trainer.my_extra=1", "+trainer.my_extra: not in verl-tool"),
        ("+actor_rollout_ref.agent.extra_key=1", "+actor_rollout_ref.agent.extra_key: not in verl-tool"),
        ("actor_rollout_ref.model.override_config.x=1", "actor_rollout_ref.model.override_config.x is not a key"),
        ("custom_reward_function.reward_kwargs={preset:'paper'}",
         "custom_reward_function.reward_kwargs is not a key"),
        ("~trainer.total_epochs", "trainer.total_epochs: deleting"),
        ("~trainer.total_epochs=2", "trainer.total_epochs: deleting"),
        ("trainer.total_epochs=1,2", "trainer.total_epochs: a sweep"),
        ("trainer.total_epochs=range(1,3)", "trainer.total_epochs: a sweep"),
        ("data.train_files='a", "does not parse"),
        ("++trainer.remove_previous_ckpt_in_save=false", "trainer.remove_previous_ckpt_in_save is not a key"),
    ],
    ids=["plus-on-existing", "plus-on-existing-list", "dead-key-of-the-paper-script", "force-add-wrong-type",
         "plus-unknown", "plus-unknown-in-agent", "set-inside-dict-without-plus", "set-addable-without-plus",
         "delete", "delete-with-value", "sweep", "range-sweep", "unbalanced-quote", "force-add-unknown"],
)
def test_additions_deletions_and_sweeps_are_refused(text: str, message: str) -> None:
    """`+` only adds what the trainer reads, `~` and sweeps are refused; the message names the key."""
    with pytest.raises(TrainerConfigError, match=re.escape(message)):
        check_override(text)


def test_addable_keys_are_absent_from_the_config() -> None:
    """Every ADDABLE key is missing from verl-tool's config (else `+` would be the wrong way to set it)."""
    for key in ADDABLE:
        assert key not in trainer_keys()


def test_check_overrides_refuses_a_key_set_twice() -> None:
    """The same key twice is an error naming it, even with equal values."""
    with pytest.raises(TrainerConfigError, match="trainer.total_epochs is set twice"):
        check_overrides(["trainer.total_epochs=2", "data.train_batch_size=12", "trainer.total_epochs=2"])


def test_check_overrides_returns_values_by_key() -> None:
    """check_overrides maps each key (without `+`) to its parsed value."""
    values = check_overrides(["trainer.total_epochs=2", "+custom_reward_function.reward_kwargs={preset:'x'}"])
    assert values == {"trainer.total_epochs": 2, "custom_reward_function.reward_kwargs": {"preset": "x"}}


@pytest.mark.parametrize(
    ("key", "expected"),
    [("trainer.total_epochs", 5), ("data.train_batch_size", 1024), ("actor_rollout_ref.agent.mtrl_sep", None)],
    ids=["overridden", "default", "null-default"],
)
def test_effective_reads_override_then_default(key: str, expected: object) -> None:
    """effective() is the override's value, else the key file's default."""
    assert effective({"trainer.total_epochs": 5}, key) == expected


def test_effective_names_an_unknown_key() -> None:
    """effective() on a key that does not exist is the unknown-key error."""
    with pytest.raises(TrainerConfigError, match="trainer.n_gpu_per_node is not a key"):
        effective({}, "trainer.n_gpu_per_node")


# ---------------------------------------------------------------- the key file


def test_key_file_types_are_known() -> None:
    """Every key has a known type, and a non-null default that matches it."""
    keys = trainer_keys()
    assert len(keys) > 400
    for key, spec in keys.items():
        assert spec["type"] in KEY_TYPES, key
        assert (spec["type"] == "any") == (spec["default"] is None), key


def test_key_file_keys_are_leaves() -> None:
    """No key is also a section of another key, so the file unflattens into one config."""
    keys = set(trainer_keys())
    sections = {key.rsplit(".", i)[0] for key in keys for i in range(1, key.count(".") + 1)}
    assert not keys & sections


@pytest.mark.parametrize("recipe", recipe_names())
def test_key_file_has_every_key_the_stage_renders(recipe: str) -> None:
    """Each key the recipe's Plan sets is in the key file, or is an ADDABLE key added with `+`."""
    for text in plan_overrides(recipe):
        key = text.split("=", 1)[0]
        assert key in trainer_keys() or (key.startswith("+") and key[1:] in ADDABLE), key


def test_key_file_has_the_lora_keys() -> None:
    """The LoRA keys qwen2_5_7b renders exist with the types the stage gives them."""
    keys = trainer_keys()
    assert [keys[f"actor_rollout_ref.model.{k}"]["type"] for k in ("lora_rank", "lora_alpha", "target_modules")] \
        == ["int", "int", "str"]


# ---------------------------------------------------------------- replay through Hydra


def test_qwen3_8b_overrides_replay_through_hydra() -> None:
    """Hydra applies every override of the qwen3_8b Plan to verl-tool's config in struct mode, values landing."""
    config = replay(plan_overrides("qwen3_8b"))
    assert config.actor_rollout_ref.rollout.n == 16
    assert config.actor_rollout_ref.actor.optim.lr == 1e-6
    assert config.actor_rollout_ref.actor.kl_loss_type == "low_var_kl"
    assert config.actor_rollout_ref.agent.mtrl_sep is None
    assert config.custom_reward_function.reward_kwargs.preset == "default"
    assert config.custom_reward_function.reward_kwargs.components.answer.weight == 1.0
    assert config.trainer.logger[0] == "console"
    assert config.actor_rollout_ref.agent.tool_server_url.endswith(":{{free_port:tool}}/get_observation")


@pytest.mark.parametrize("recipe", recipe_names())
def test_every_recipe_replays_through_hydra(recipe: str) -> None:
    """Every recipe's Plan overrides apply with Hydra's machinery to the rebuilt trainer config."""
    config = replay(plan_overrides(recipe))
    assert config.trainer.n_gpus_per_node == check_overrides(list(plan_overrides(recipe)))["trainer.n_gpus_per_node"]


@pytest.mark.parametrize(
    "text",
    ["actor_rollout_ref.actor.optim.learning_rate=1e-6", "trainer.n_gpu_per_node=6",
     "actor_rollout_ref.model.override_config.x=1"],
    ids=["typo", "typo-trainer", "inside-dict-without-plus"],
)
def test_hydra_refuses_what_check_override_refuses(text: str) -> None:
    """The replay is meaningful: Hydra's machinery refuses a typo'd key on the rebuilt struct config."""
    with pytest.raises(TrainerConfigError):
        check_override(text)
    with pytest.raises(ConfigCompositionException, match="Could not override"):
        replay([text])


def test_hydra_would_add_the_papers_dead_key() -> None:
    """Hydra adds `+trainer.remove_previous_ckpt_in_save` silently (nothing reads it); only the check stops it."""
    assert replay(["+trainer.remove_previous_ckpt_in_save=false"]).trainer.remove_previous_ckpt_in_save is False
    with pytest.raises(TrainerConfigError, match="nothing in the trainer would read it"):
        check_override("+trainer.remove_previous_ckpt_in_save=false")


def accepted(check, text: str) -> bool:
    """Whether `check(text)` passes (False when it raises)."""
    try:
        check(text)
    except (TrainerConfigError, ConfigCompositionException):
        return False
    return True


@pytest.mark.parametrize(
    "text",
    [
        "actor_rollout_ref.actor.optim.lr=1",
        "trainer.total_training_steps=5",
        "trainer.logger=['console']",
        "+custom_reward_function.reward_kwargs={preset:'paper'}",
        "+actor_rollout_ref.model.override_config.attn_implementation='eager'",
        "actor_rollout_ref.model.override_config={}",
        "trainer.n_gpu_per_node=6",
        "actor_rollout_ref.model.override_config.x=1",
        "+data.train_batch_size=12",
        pytest.param("actor_rollout_ref.model.override_config={attn_implementation:'eager'}"),
    ],
    ids=["float-key-int", "null-key", "list", "add-reward-kwargs", "add-inside-dict", "empty-dict", "typo",
         "inside-dict-without-plus", "plus-on-existing", "dict-value-on-dict-key"],
)
def test_check_override_agrees_with_hydra(text: str) -> None:
    """check_override accepts an override exactly when Hydra's machinery applies it (no surprise at trainer start)."""
    assert accepted(check_override, text) == accepted(lambda t: replay([t]), text)


def test_accepted_values_land_where_hydra_puts_them() -> None:
    """The value check_override returns is the value Hydra sets in the trainer config."""
    for text in ["actor_rollout_ref.actor.optim.lr=1", "+actor_rollout_ref.model.override_config.attn='eager'",
                 "+custom_reward_function.reward_kwargs={preset:'paper'}"]:
        key, value = check_override(text)
        assert OmegaConf.select(replay([text]), key) == value


@pytest.mark.parametrize(
    "override",
    [
        "+rl.trainer_overrides.trainer.log_val_generations=10",
        "+rl.trainer_overrides.actor_rollout_ref.rollout.val_kwargs.temperature=0.6",
        pytest.param("+rl.trainer_overrides.actor_rollout_ref.rollout.engine_kwargs.vllm.enforce_eager=true"),
        pytest.param("+rl.trainer_overrides.actor_rollout_ref.model.override_config.attn_implementation=eager"),
    ],
    ids=["plain-key", "float-key", "inside-engine-kwargs", "inside-override-config"],
)
def test_rl_trainer_overrides_replay_through_hydra(override: str) -> None:
    """A nested rl.trainer_overrides renders overrides that Hydra applies to the trainer config."""
    overrides = plan_overrides("qwen3_8b", override)
    key, value = override.removeprefix("+rl.trainer_overrides.").split("=")
    assert str(OmegaConf.select(replay(overrides), key)).lower() == value
