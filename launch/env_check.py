"""Import what each stage runs and print the versions: the last step of `launch/install.sh`.

    python -m launch.env_check cpu|gpu

A broken environment fails here, naming the module, instead of minutes into a job. The GPU
environment imports verl-tool's trainer entry and vLLM; the CPU one (CI's) has no vLLM, so it stops
at the deepest verl-tool modules that import without it (see tests/launch/test_environment.py).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

# What every environment imports: SFT (LLaMA-Factory's parser and data pipeline, DeepSpeed), the
# reward path (verl's reward manager and model merger, verl-tool's own verl), the tool server.
COMMON_MODULES = (
    "torch",
    "transformers",
    "llamafactory.hparams",
    "llamafactory.data",
    "deepspeed",
    "peft",
    "verl.workers.reward_manager",
    "verl.model_merger.fsdp_model_merger",
    "verl.trainer.ppo.core_algos",
    "verl.workers.fsdp_workers",
    "verl_tool.trainer.ppo.reward",
    "verl_tool.servers.tool_server",
    "tools.environment.serve_tool",
    "rewards.verl_entry",
)
# Only where vLLM and CUDA are: the RL trainer's entry and the policy/VLM server.
GPU_MODULES = ("vllm", "verl_tool.trainer.main_ppo")
MODULES = {"cpu": COMMON_MODULES, "gpu": COMMON_MODULES + GPU_MODULES}
VERSIONS = ("torch", "transformers", "tokenizers", "llamafactory", "deepspeed", "peft", "trl", "accelerate",
            "datasets", "ray", "tensordict", "numpy", "verl", "verl-tool", "vllm", "xformers", "flash-attn")


def check(mode: str) -> list[str]:
    """Import every module of `mode`; return one line per module that failed, with its error."""
    failed = []
    for name in MODULES[mode]:
        try:
            importlib.import_module(name)
        except Exception as error:
            failed.append(f"{name}: {type(error).__name__}: {error}")
    # verl-tool's agent loop, as the rollouts preflight imports it (its multimodal helpers stood in where
    # their dependencies do not load: on CPU).
    try:
        from tools.rollouts.text_only import import_agent_loop

        import_agent_loop()
    except Exception as error:
        failed.append(f"verl_tool.agent_loop (tools.rollouts.text_only): {type(error).__name__}: {error}")
    return failed


def versions() -> dict[str, str]:
    """The installed version of each package of `VERSIONS` that is installed."""
    found = {}
    for name in VERSIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def main(argv: list[str] | None = None) -> int:
    """Check one environment; exit 1 naming each module that does not import."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in MODULES:
        print(f"usage: python -m launch.env_check {{{'|'.join(MODULES)}}}", file=sys.stderr)
        return 2
    failed = check(args[0])
    if failed:
        print("install: error: these modules do not import:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    listed = ", ".join(f"{name} {version}" for name, version in versions().items())
    print(f"install: {args[0]} environment ready in {sys.prefix}: {listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
