"""`python -m launch eval|trajectories`: every benchmark composes and dry-runs; settings, services and errors.

No server and no run: dry runs print the Plan, whose `<stage>/settings.json` is what `tools.agent.run` reads;
errors must exit 2 before anything is created, with a message naming the key to fix.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints
from unittest import mock

import pytest
import yaml
from omegaconf import open_dict

from launch.cli import main
from launch.compose import RECIPE_DIR, compose_config
from launch.plan import Plan
from launch.rundir import mark_done
from launch.stages import STAGES
from launch.stages.agent import build_eval_plan, build_trajectories_plan
from launch.stages.agent_config import (
    GENERATION_KEYS,
    AgentConfigError,
    BenchmarkConfig,
    GenerationConfig,
    benchmark_names,
    check_benchmark,
)
from launch.stages.serving import local_url
from tools.agent.loop import Generation

STAGE_NAMES = ("eval", "trajectories")
RECIPES = ("tiny", "qwen3_8b")
MODEL_URL = "http://127.0.0.1:{{free_port:model}}/v1"
VLM_URL = "http://127.0.0.1:{{free_port:vlm}}/v1"


@dataclass(frozen=True)
class Benchmark:
    """What a benchmark config must resolve to, relative to the data folder (or the cache for demo)."""

    format: str
    data_source: str
    annotations: str
    caption_dir: str
    video_dir: str
    length: str | None = None
    in_cache: bool = False


BENCHMARKS = {
    "lvbench": Benchmark("lvbench", "lvbench", "lvbench/video_info.meta.jsonl", "lvbench/captions", "lvbench/videos"),
    "videomme_long": Benchmark("videomme", "videomme", "videomme/test-00000-of-00001.parquet", "videomme/captions",
                               "videomme/videos", length="long"),
    "cgbench": Benchmark("cgbench", "cgbench", "cgbench/cgbench.json", "cgbench/captions", "cgbench/videos"),
    "demo": Benchmark("cgbench", "demo", "demo/world/annotations.json", "demo/world/captions", "demo/world/videos",
                      in_cache=True),
}


@dataclass
class Result:
    """Exit code and output of one in-process launcher call."""

    code: int
    out: str
    err: str


@dataclass
class Env:
    """A private data folder, cache and run root."""

    data: Path
    cache: Path
    run_root: Path

    def vars(self) -> dict[str, str]:
        return {"LONGVIDEO_R1_DATA": str(self.data), "LONGVIDEO_R1_CACHE": str(self.cache), "WANDB_API_KEY": ""}


@pytest.fixture
def env(tmp_path: Path) -> Env:
    """Folders that exist nowhere yet: dry runs must not need them."""
    return Env(tmp_path / "data", tmp_path / "cache", tmp_path / "runs")


def run_main(env: Env, *argv: str) -> Result:
    """`launch.cli.main` in this process with the private folders; stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env.vars()), redirect_stdout(out), redirect_stderr(err):
        code = main([*argv, f"run_root={env.run_root}"])
    return Result(code, out.getvalue(), err.getvalue())


def printed_plan(output: str) -> Plan:
    """The Plan a dry run printed (the YAML after the `# Plan` line, up to the next `# ` header)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Plan"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("# ")), len(lines))
    return Plan.from_yaml("\n".join(lines[start + 1:end]))


def settings_of(plan: Plan) -> dict:
    """The settings file the Plan writes for tools.agent.run."""
    return json.loads(next(f.content for f in plan.files if f.path == f"{plan.stage}/settings.json"))


def dry_run(env: Env, stage: str, *overrides: str) -> tuple[Result, Plan, dict]:
    """A dry run that must succeed: its result, Plan and settings."""
    result = run_main(env, stage, *overrides, "--dry-run")
    assert result.code == 0, result.err
    plan = printed_plan(result.out)
    return result, plan, settings_of(plan)


def recipe_max_turns(recipe: str) -> int:
    """agent.max_turns as the recipe file sets it."""
    return yaml.safe_load((RECIPE_DIR / f"{recipe}.yaml").read_text())["agent"]["max_turns"]


# ---------------------------------------------------------------------------------------------------------------
# Every benchmark, stage and recipe


def test_the_benchmarks_tested_are_the_registry() -> None:
    """Every configs/benchmark/*.yaml has its expected row here, so a new benchmark is dry-run below."""
    assert sorted(BENCHMARKS) == benchmark_names()


def test_the_generation_keys_are_the_agent_loops() -> None:
    """The stages pass exactly the fields of the agent loop's Generation (less the recipe's max_turns), typed alike."""
    loop = get_type_hints(Generation)
    del loop["max_turns"]
    assert get_type_hints(GenerationConfig) == {**loop, "extra_body": dict[str, Any]}
    assert GENERATION_KEYS == tuple(loop)


@pytest.mark.parametrize("key", [field.name for field in dataclasses.fields(BenchmarkConfig)])
def test_a_benchmark_key_left_out_is_named(key: str) -> None:
    """A benchmark YAML must state every key (null where unused): one left out is named."""
    config = compose_config("eval", ["recipe=tiny", "benchmark=demo", "dry_run=true"]).config
    with open_dict(config):
        del config.benchmark[key]
    with pytest.raises(AgentConfigError, match=rf"^benchmark\.{key}: missing"):
        check_benchmark(config, "eval")


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("stage", STAGE_NAMES)
@pytest.mark.parametrize("benchmark", list(BENCHMARKS))
def test_every_benchmark_dry_runs(benchmark: str, stage: str, recipe: str, env: Env) -> None:
    """Each benchmark × stage × recipe dry-runs without its data; the settings hold the benchmark, the recipe's
    turn limit, the stage's stop settings and the tool's folders for the benchmark's data source."""
    result, plan, settings = dry_run(env, stage, f"recipe={recipe}", f"benchmark={benchmark}")
    expected = BENCHMARKS[benchmark]
    base = (env.cache if expected.in_cache else env.data).absolute()
    assert not env.run_root.exists()
    group = recipe if stage == "eval" else benchmark
    assert Path(plan.run_dir).parent == env.run_root.absolute() / stage / group
    assert (settings["mode"], settings["benchmark"]) == (stage, benchmark)
    questions = settings["questions"]
    assert questions["name"] == benchmark
    assert (questions["format"], questions["data_source"], questions["length"], questions["limit"]) == \
        (expected.format, expected.data_source, expected.length, None)
    assert questions["annotations"] == str(base / expected.annotations)
    assert questions["caption_dir"] == str(base / expected.caption_dir)
    assert questions["video_dir"] == str(base / expected.video_dir)
    generation = settings["generation"]
    assert generation["max_turns"] == recipe_max_turns(recipe)
    # eval ends each turn where the RL rollout does; a reasoning-model teacher refuses `stop`.
    stops = (True, True) if stage == "eval" else (False, False)
    assert (generation["send_stop"], generation["vllm_stop"]) == stops
    # The tool reads the benchmark's own trees for its data source.
    source = settings["tool"]["sources"][expected.data_source]
    assert source["caption_dir"] == questions["caption_dir"]
    assert source["video_dir"] == questions["video_dir"]
    assert (settings["hints"], settings["attempts"]) == (False, 1 if stage == "eval" else 3)
    assert settings["max_failed_questions"] == 0
    assert plan.main.argv[1:] == ["-m", "tools.agent.run", "--settings", f"{stage}/settings.json", "--output", stage]
    assert plan.outputs == {"results": f"{plan.run_dir}/{stage}/results.json",
                            "trajectories": f"{plan.run_dir}/{stage}/trajectories.jsonl",
                            "view": f"{plan.run_dir}/{stage}/view.html"}
    # Once the questions are played, the run writes its page to read them in.
    (view,) = plan.after
    assert view.argv[1:] == ["-m", "launch", "view", stage, "--output", f"{stage}/view.html"]
    if expected.in_cache:
        (build,) = plan.before
        assert build.argv[1:] == ["-m", "tools.demo.world", "--output", str(env.cache.absolute() / "demo" / "world")]
        assert build.skip_if_exists == str(env.cache.absolute() / "demo" / "world" / "COMPLETE")
    else:
        assert plan.before == []
    if stage == "trajectories":
        assert plan.services == []
        assert settings["model"]["base_url"] == "https://api.openai.com/v1"
        assert settings["model"]["api_key_env"] == "OPENAI_API_KEY"
    else:
        services = {service.name: service for service in plan.services}
        # tiny serves on vLLM's CPU build (vllm.backend=cpu); the GPU recipes on GPU 0.
        assert services["model"].env["CUDA_VISIBLE_DEVICES"] == ("" if recipe == "tiny" else "0")
        assert services["model"].gpus == (0 if recipe == "tiny" else 1)
        assert settings["model"]["base_url"] == MODEL_URL
        if recipe == "qwen3_8b":
            # The paper's recipe serves the VLM where its RL stage does, apart from the model.
            assert services["vlm"].env["CUDA_VISIBLE_DEVICES"] == "6,7"
            assert source["vlm"]["base_url"] == VLM_URL
        else:
            assert list(services) == ["model"]


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_settings_follow_the_recipe_and_the_stage_keys(stage: str, env: Env) -> None:
    """build_*_plan on a composed config: agent.max_turns, the stop settings, benchmark.length and .limit and
    every stage key reach the settings; a data source the tool config knows keeps its own VLM and gets the
    benchmark's folders."""
    overrides = ["recipe=tiny", "benchmark=videomme_long", "benchmark.length=short", "benchmark.limit=7",
                 "agent.max_turns=7", f"{stage}.send_stop=false",
                 f"{stage}.vllm_stop=false", f"{stage}.concurrency=3", f"{stage}.max_failed_questions=2",
                 f"{stage}.question_timeout_s=99", f"{stage}.top_p=0.5", f"+{stage}.extra_body.seed=1",
                 "+tool.sources.videomme.vlm.base_url=http://vlm.example:1/v1",
                 "+tool.sources.videomme.caption_dir=/elsewhere/captions", "dry_run=true"]
    if stage == "eval":
        overrides += ["eval.serve=false", "eval.endpoint.base_url=http://policy.example:2/v1"]
    else:
        overrides += ["trajectories.hints=true", "trajectories.attempts=4"]
    with mock.patch.dict(os.environ, env.vars()):
        config = compose_config(stage, overrides).config
        build = build_eval_plan if stage == "eval" else build_trajectories_plan
        plan = build(config, env.run_root / "x", "tiny/x", "python")
    settings = settings_of(plan)
    assert settings["generation"] == {"top_p": 0.5, "send_stop": False, "vllm_stop": False, "question_timeout_s": 99,
                                      "extra_body": {"seed": 1}, "max_turns": 7}
    assert (settings["concurrency"], settings["max_failed_questions"]) == (3, 2)
    assert settings["model"]["max_concurrency"] == 3
    assert (settings["questions"]["length"], settings["questions"]["limit"]) == ("short", 7)
    source = settings["tool"]["sources"]["videomme"]
    assert source["caption_dir"] == str(env.data.absolute() / "videomme" / "captions")
    assert source["vlm"]["base_url"] == "http://vlm.example:1/v1"
    if stage == "eval":
        assert plan.services == []
        assert settings["model"]["base_url"] == "http://policy.example:2/v1"
        assert (settings["hints"], settings["attempts"]) == (False, 1)
    else:
        assert (settings["hints"], settings["attempts"]) == (True, 4)


# ---------------------------------------------------------------------------------------------------------------
# Serving


def test_eval_serves_the_model_on_its_gpus(env: Env) -> None:
    """serve=true: a `model` service runs `vllm serve MODEL` on eval.gpus under eval.endpoint.model, and the
    agent loop asks the service's port."""
    result, plan, settings = dry_run(env, "eval", "recipe=qwen3_8b", "benchmark=demo", "eval.model=org/agent",
                                     "eval.gpus=[2,3]", "eval.endpoint.model=my-agent")
    # eval.model is named: no hand-off warning (a machine without vLLM or GPUs still warns of those).
    assert "no finished" not in result.err
    model = next(service for service in plan.services if service.name == "model")
    assert model.argv[:3] == ["vllm", "serve", "org/agent"]
    assert model.argv[model.argv.index("--served-model-name") + 1] == "my-agent"
    assert model.argv[model.argv.index("--tensor-parallel-size") + 1] == "2"
    assert model.argv[model.argv.index("--port") + 1] == "{{free_port:model}}"
    assert model.env["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert model.gpus == 2
    assert model.ready.http_url == "http://127.0.0.1:{{free_port:model}}/health"
    assert settings["model"]["base_url"] == MODEL_URL == local_url("model")
    assert settings["model"]["model"] == "my-agent"


def test_eval_serves_the_newest_finished_rl_model(env: Env) -> None:
    """Without eval.model, the `model` output of the newest finished RL run of the recipe is served."""
    sft_run, rl_run = env.run_root / "sft" / "tiny" / "s1", env.run_root / "rl" / "tiny" / "r1"
    for run, model in ((sft_run, "/models/sft-s1"), (rl_run, "/models/rl-r1")):
        run.mkdir(parents=True)
        mark_done(run, {"model": model})
    result, plan, _ = dry_run(env, "eval", "recipe=tiny", "benchmark=demo", "vllm.backend=gpu",
                              "launcher.gpus_per_node=1")
    assert plan.services[0].argv[:3] == ["vllm", "serve", "/models/rl-r1"]
    assert plan.services[0].env["CUDA_VISIBLE_DEVICES"] == "0"
    assert f"eval serves /models/rl-r1 (the model of {rl_run.absolute()})" in result.err


def test_eval_serves_the_newest_sft_model_when_there_is_no_rl_run(env: Env) -> None:
    """No finished RL run: the newest finished SFT run's model is served, on the CPU build for tiny, and named."""
    sft_run = env.run_root / "sft" / "tiny" / "s1"
    sft_run.mkdir(parents=True)
    mark_done(sft_run, {"model": "/models/sft-s1"})
    result, plan, _ = dry_run(env, "eval", "recipe=tiny", "benchmark=demo")
    model = plan.services[0]
    assert model.argv[1:5] == ["-m", "vllm.entrypoints.openai.api_server", "--model", "/models/sft-s1"]
    assert model.argv[0].endswith("vllm-cpu/bin/python")
    assert f"eval serves /models/sft-s1 (the model of {sft_run.absolute()})" in result.err


def test_eval_serves_the_vlm_beside_the_model(env: Env) -> None:
    """eval.vlm.serve=true adds a `vlm` service on eval.vlm.gpus, and video_qa asks it for every source."""
    _, plan, settings = dry_run(env, "eval", "recipe=tiny", "benchmark=demo", "eval.model=org/agent",
                                "launcher.gpus_per_node=2", "vllm.backend=gpu", "eval.vlm.serve=true",
                                "eval.vlm.gpus=[1]",
                                "eval.vlm.model=org/vlm")
    assert [service.name for service in plan.services] == ["model", "vlm"]
    vlm = plan.services[1]
    assert vlm.argv[:3] == ["vllm", "serve", "org/vlm"]
    assert vlm.argv[vlm.argv.index("--served-model-name") + 1] == "org/vlm"
    assert vlm.env["CUDA_VISIBLE_DEVICES"] == "1"
    tool = settings["tool"]
    for source in (tool["default"], tool["sources"]["demo"]):
        assert (source["vlm"]["base_url"], source["vlm"]["model"]) == (VLM_URL, "org/vlm")


def test_eval_without_serving_asks_the_given_endpoints(env: Env) -> None:
    """serve=false: no service; the settings keep eval.endpoint and tool.default.vlm as given."""
    _, plan, settings = dry_run(env, "eval", "recipe=tiny", "benchmark=demo", "eval.serve=false",
                                "eval.endpoint.base_url=http://10.0.0.5:9000/v1",
                                "tool.default.vlm.base_url=http://10.0.0.6:9001/v1")
    assert plan.services == []
    assert settings["model"]["base_url"] == "http://10.0.0.5:9000/v1"
    assert settings["tool"]["sources"]["demo"]["vlm"]["base_url"] == "http://10.0.0.6:9001/v1"


def test_eval_without_a_finished_rl_run(env: Env) -> None:
    """serve=true and no finished RL or SFT run: a dry run warns and prints its Plan; a real run stops before
    anything starts, naming the command that makes the model."""
    result, plan, _ = dry_run(env, "eval", "recipe=tiny", "benchmark=demo")
    assert "warning" in result.err
    assert "python -m launch sft recipe=tiny" in result.err
    model = plan.services[0].argv
    assert model[model.index("--model") + 1] == "<no finished rl or sft run of tiny: set eval.model>"
    real = run_main(env, "eval", "recipe=tiny", "benchmark=demo", "vllm.backend=gpu", "launcher.gpus_per_node=1")
    assert real.code == 2
    assert real.err.startswith("error: eval: ")
    assert "python -m launch sft recipe=tiny" in real.err
    assert "eval.model" in real.err
    assert not env.run_root.exists()


# ---------------------------------------------------------------------------------------------------------------
# Errors


ERRORS = [
    ("eval", [], "benchmark=NAME", False),
    ("trajectories", [], "benchmark=NAME", False),
    ("eval", ["benchmark=demo", "benchmark.length=huge"], "benchmark.length", False),
    ("eval", ["benchmark=demo", "benchmark.limit=0"], "benchmark.limit", False),
    ("eval", ["benchmark=demo", "eval.send_stop=maybe"], "eval.send_stop", True),
    ("trajectories", ["benchmark=demo", "trajectories.hints=maybe"], "trajectories.hints", True),
    ("trajectories", ["benchmark=demo", "trajectories.attempts=0"], "trajectories.attempts", False),
    ("eval", ["benchmark=demo", "eval.max_failed_questions=-1"], "eval.max_failed_questions", False),
    # VLMEndpoint's message: "eval.endpoint: VLMEndpoint.timeout_s=-1: expected a positive number".
    ("eval", ["benchmark=demo", "eval.endpoint.timeout_s=-1"], "eval.endpoint: VLMEndpoint.timeout_s=-1", False),
    ("eval", ["benchmark=demo", "eval.system_prompt_file=/nonexistent"], "eval.system_prompt_file", False),
    ("eval", ["benchmark=demo", "eval.gpus=[5]", "launcher.gpus_per_node=1", "vllm.backend=gpu"], "eval.gpus", False),
    ("eval", ["benchmark=demo", "eval.gpus=[5]", "launcher.gpus_per_node=1", "vllm.backend=gpu"], "eval.gpus", True),
    ("eval", ["benchmark=demo", "eval.vlm.serve=true", "eval.vlm.gpus=[0]", "vllm.backend=gpu",
              "launcher.gpus_per_node=1"], "eval.vlm.gpus=[0] overlaps", False),
    ("eval", ["benchmark=demo", "vllm.backend=cpu", "vllm.cpu_python=/nowhere/python"], "vllm.backend=cpu", True),
    ("eval", ["benchmark=demo", "chat.observation_role=tool"], "chat.observation_role", True),
]


@pytest.mark.parametrize(("stage", "overrides", "key", "real"), ERRORS,
                         ids=[f"{e[0]} {' '.join(e[1][1:])}{' real' if e[3] else ''}" for e in ERRORS])
def test_bad_settings_exit_2_naming_the_key(stage: str, overrides: list[str], key: str, real: bool,
                                            env: Env) -> None:
    """Each wrong setting: exit 2, `error:` on stderr naming the key, nothing created (dry or real run)."""
    # A model is named so that a real eval run gets as far as checking the settings.
    model = ["eval.model=org/agent"] if stage == "eval" else []
    result = run_main(env, stage, "recipe=tiny", *overrides, *model, *([] if real else ["--dry-run"]))
    assert result.code == 2, result.out
    error = result.err.splitlines()[-1]
    assert error.startswith("error: ")
    assert key in error
    assert not env.run_root.exists()


@pytest.mark.parametrize(("stage", "override"), [("eval", "eval.endpoint.api_key=sk-planted-0123"),
                                                ("trajectories", "+trajectories.endpoint.api_key=sk-planted-0123")])
def test_an_api_key_in_the_config_is_refused(stage: str, override: str, env: Env) -> None:
    """An API key in the config is refused (exit 2 naming api_key) and never echoed."""
    result = run_main(env, stage, "recipe=tiny", "benchmark=demo", override, "--dry-run")
    assert result.code == 2
    assert f"{stage}.endpoint.api_key" in result.err
    assert "sk-planted-0123" not in result.out + result.err.replace(override, "")
    assert not env.run_root.exists()


def test_a_real_run_names_the_missing_annotations(env: Env) -> None:
    """A real run whose benchmark folders exist but whose annotation file does not: exit 2 naming
    benchmark.annotations, before any run directory is made."""
    for folder in ("lvbench/captions", "lvbench/videos"):
        (env.data / folder).mkdir(parents=True)
    result = run_main(env, "eval", "recipe=tiny", "benchmark=lvbench", "eval.serve=false")
    assert result.code == 2
    assert "benchmark.annotations" in result.err
    assert str(env.data.absolute() / "lvbench" / "video_info.meta.jsonl") in result.err
    assert not env.run_root.exists()
    missing = run_main(env, "trajectories", "recipe=tiny", "benchmark=cgbench")
    assert missing.code == 2
    assert "benchmark.caption_dir" in missing.err


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_zero_concurrency_names_the_concurrency_key(stage: str, env: Env) -> None:
    """<stage>.concurrency=0: the error names <stage>.concurrency."""
    result = run_main(env, stage, "recipe=tiny", "benchmark=demo", f"{stage}.concurrency=0", "--dry-run")
    assert result.code == 2
    assert f"{stage}.concurrency=0" in result.err


@pytest.mark.parametrize("benchmark", ["demo"])
def test_length_is_refused_where_questions_have_no_length(benchmark: str, env: Env) -> None:
    """Only Video-MME questions have a length class: benchmark.length elsewhere would select nothing."""
    result = run_main(env, "eval", "recipe=tiny", f"benchmark={benchmark}", "benchmark.length=long", "--dry-run")
    assert result.code == 2
    assert "benchmark.length" in result.err


@pytest.mark.parametrize("stage", ["trajectories"])
def test_a_question_timeout_below_zero_is_refused(stage: str, env: Env) -> None:
    """<stage>.question_timeout_s must be positive."""
    result = run_main(env, stage, "recipe=tiny", "benchmark=demo", f"{stage}.question_timeout_s=-5", "--dry-run")
    assert result.code == 2
    assert f"{stage}.question_timeout_s" in result.err


def test_both_stages_are_registered() -> None:
    """eval groups runs by recipe, trajectories by benchmark; both need a recipe."""
    assert STAGES["eval"].needs_recipe and STAGES["trajectories"].needs_recipe
