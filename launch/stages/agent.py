"""The agent-loop stages: `eval` (the trained model on a benchmark) and `trajectories` (a teacher's SFT data).

Both render one settings file, `<stage>/settings.json`, and run `python -m tools.agent.run` on it,
which writes its results beside it. The questions come from the chosen benchmark (`benchmark=`),
the turn limit from the recipe (`agent.max_turns`, as RL), the tool from the `tool` config with the
benchmark's folders for its data source. Eval can serve the model (and the VLM) with `vllm serve`
as services of the Plan; the teacher is a remote endpoint.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from omegaconf import DictConfig

from launch.handoff import Handoff, HandoffError, resolve_model
from launch.plan import FileSpec, Plan, Resources, Step
from launch.preflight_checks import Needs, check_needs
from launch.stages.agent_config import (
    GENERATION_KEYS,
    AgentConfigError,
    AgentStageConfig,
    BenchmarkConfig,
    EvalConfig,
    TrajectoriesConfig,
    check_benchmark,
    check_stage_section,
)
from launch.stages.datasets import demo_world_dir, existing_path, max_turns_of, tool_settings
from launch.stages.serving import local_url, served_gpus, tool_settings_dict, vllm_engine, vllm_service
from launch.stages.sft_config import check_chat_config
from launch.view import VIEW_FILE, view_step
from tools.environment.vlm_endpoint import VLMEndpoint


def run_settings(config: DictConfig, stage: str, section: AgentStageConfig, endpoint: dict,
                 spec: BenchmarkConfig) -> dict:
    """The settings `tools.agent.run` reads, every value checked and resolved."""
    try:
        VLMEndpoint.from_dict(endpoint, f"{stage}.endpoint")
    except (TypeError, ValueError) as error:
        raise AgentConfigError(str(error)) from None
    prompt_file = section.system_prompt_file
    if prompt_file is not None:
        prompt_file = existing_path(prompt_file, f"{stage}.system_prompt_file")
    # Sources served from the benchmark's folders: the tool reads the same trees the questions were built from.
    tool = tool_settings_dict(tool_settings(config), served_vlm(section))
    tool["sources"][spec.data_source] = {**tool["sources"].get(spec.data_source, tool["default"]),
                                         "caption_dir": spec.caption_dir, "video_dir": spec.video_dir}
    generation = {key: getattr(section, key) for key in GENERATION_KEYS}
    generation["max_turns"] = max_turns_of(config)
    teacher = isinstance(section, TrajectoriesConfig)
    return {"mode": stage, "benchmark": spec.name, "questions": dataclasses.asdict(spec), "generation": generation,
            "model": endpoint, "tool": tool, "concurrency": section.concurrency,
            "system_prompt_file": prompt_file, "hints": section.hints if teacher else False,
            "attempts": section.attempts if teacher else 1, "max_failed_questions": section.max_failed_questions}


def served_vlm(section: AgentStageConfig) -> str | None:
    """The VLM model name this Plan serves (eval with `eval.vlm.serve`), else None."""
    return section.vlm.model if isinstance(section, EvalConfig) and section.vlm.serve else None


def eval_model(config: DictConfig, recipe: str) -> str:
    """The model eval serves: `eval.model`, else the newest finished RL run's, else SFT's; says which one it took."""
    choice = config.eval.model
    try:
        if choice is not None:
            chosen = resolve_model(str(choice), config.run_root, "rl", recipe)
        else:
            chosen = newest_trained_model(config.run_root, recipe)
    except HandoffError as error:
        hint = (f"run `python -m launch sft recipe={recipe}` (and `rl`) first, or set eval.model=PATH "
                "(a model or a run)")
        if choice is not None or not config.dry_run:
            raise HandoffError(f"eval: {error}; {hint}") from None
        print(f"[launch] warning: {error}; a real run stops here ({hint})", file=sys.stderr)
        return f"<no finished rl or sft run of {recipe}: set eval.model>"
    if isinstance(chosen, Handoff):
        print(f"[launch] eval serves {chosen.value} (the model of {chosen.run_dir})", file=sys.stderr)
        return chosen.value
    print(f"[launch] eval serves {chosen} (eval.model)", file=sys.stderr)
    return chosen


def newest_trained_model(run_root: str, recipe: str) -> Handoff:
    """The newest finished RL run's model, or the newest finished SFT run's when the recipe has no RL run yet."""
    try:
        return resolve_model(None, run_root, "rl", recipe)
    except HandoffError as rl_error:
        try:
            return resolve_model(None, run_root, "sft", recipe)
        except HandoffError as sft_error:
            raise HandoffError(f"{rl_error}, and {sft_error}") from None


def _plan(config: DictConfig, stage: str, run_dir: Path, python: str, settings: dict, services: list) -> Plan:
    """The Plan of one agent run: its settings file, the demo world if asked for, services, and the loop."""
    if int(config.launcher.nodes) != 1:
        raise AgentConfigError(f"launcher.nodes={config.launcher.nodes}: {stage} runs on one node (its questions "
                               "share one tool and one endpoint); use launcher.nodes=1")
    settings_file = f"{stage}/settings.json"
    files = [FileSpec(settings_file, json.dumps(settings, indent=2) + "\n", resolve=True)]
    before = []
    if settings["questions"].get("build") == "demo":
        before.append(Step("build_demo_world", [python, "-m", "tools.demo.world", "--output", demo_world_dir(config)],
                           skip_if_exists=str(Path(demo_world_dir(config)) / "COMPLETE")))
    main = Step(stage, [python, "-m", "tools.agent.run", "--settings", settings_file, "--output", stage],
                env={"PYTHONUNBUFFERED": "1"})
    return Plan(stage=stage, run_dir=str(run_dir), main=main, files=files, services=services, before=before,
                after=[view_step(python, stage)],
                resources=Resources(nodes=1, gpus_per_node=int(config.launcher.gpus_per_node)),
                outputs={"results": str(run_dir / stage / "results.json"),
                         "trajectories": str(run_dir / stage / "trajectories.jsonl"),
                         "view": str(run_dir / stage / VIEW_FILE)})


def build_eval_plan(config: DictConfig, run_dir: Path, run_name: str, python: str) -> Plan:
    """The eval Plan: serve the model (and VLM) if asked, then play the benchmark."""
    chat = check_chat_config(config)
    if chat.observation_role != "user":
        raise AgentConfigError(f"chat.observation_role={chat.observation_role}: the agent loop sends each observation "
                               "as a user turn, as the RL rollout does; evaluate a user-role recipe")
    spec = check_benchmark(config, "eval")
    section: EvalConfig = check_stage_section(config, "eval")
    endpoint = dict(section.endpoint)
    available = int(config.launcher.gpus_per_node)
    vlm = section.vlm
    # The `vllm` section matters, and vLLM must be installed, only when this Plan serves a model.
    engine = vllm_engine(config, python) if section.serve or vlm.serve else None
    services = []
    model_gpus: list[int] = []
    vlm_gpus: list[int] = []
    if section.serve:
        model_gpus = served_gpus(section.gpus, "eval.gpus", available, engine)
        services.append(vllm_service("model", eval_model(config, run_name.split("/", 1)[0]), endpoint["model"],
                                     model_gpus, section.max_model_len, section.gpu_memory_utilization,
                                     section.extra_args, section.ready_timeout_s, engine))
        endpoint["base_url"] = local_url("model")
    if vlm.serve:
        vlm_gpus = served_gpus(vlm.gpus, "eval.vlm.gpus", available, engine)
        if set(vlm_gpus) & set(model_gpus):
            raise AgentConfigError(f"eval.vlm.gpus={vlm_gpus} overlaps eval.gpus={section.gpus}")
        services.append(vllm_service("vlm", vlm.model, vlm.model, vlm_gpus, vlm.max_model_len,
                                     vlm.gpu_memory_utilization, vlm.extra_args, vlm.ready_timeout_s, engine))
    plan = _plan(config, "eval", run_dir, python, run_settings(config, "eval", section, endpoint, spec), services)
    check_needs(config, "eval", python, Needs(vllm=engine, gpus=[*model_gpus, *vlm_gpus]))
    return plan


def build_trajectories_plan(config: DictConfig, run_dir: Path, run_name: str, python: str) -> Plan:
    """The trajectories Plan: the teacher plays the question set; CPU only, no service."""
    spec = check_benchmark(config, "trajectories")
    section = check_stage_section(config, "trajectories")
    settings = run_settings(config, "trajectories", section, dict(section.endpoint), spec)
    return _plan(config, "trajectories", run_dir, python, settings, [])
