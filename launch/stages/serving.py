"""Models a Plan serves with `vllm serve`: the VLM that video_qa asks (RL, eval) and the evaluated model (eval).

Each service listens on a free loopback port the executor picks (`{{free_port:KEY}}`), pinned to its
GPUs, and is ready when `/health` answers. The tool settings a Plan renders point every data source
that uses the default VLM endpoint at the served VLM.
"""

from __future__ import annotations

from collections.abc import Sequence

from launch.plan import ReadyCheck, Service
from tools.tool_settings import ToolSettings


def port(key: str) -> str:
    """The placeholder of the free port named `key`."""
    return "{{free_port:" + key + "}}"


def local_url(key: str) -> str:
    """The OpenAI base URL of the service on port `key`."""
    return f"http://127.0.0.1:{port(key)}/v1"


def vllm_service(name: str, model: str, served_name: str, gpus: Sequence[int], max_model_len: int,
                 gpu_memory_utilization: float, extra_args: Sequence[str], ready_timeout_s: float) -> Service:
    """`vllm serve MODEL` on `gpus` (tensor parallel over all of them) under `served_name`, on port `name`."""
    argv = ["vllm", "serve", model, "--served-model-name", served_name, "--host", "127.0.0.1",
            "--port", port(name), "--tensor-parallel-size", str(len(gpus)), "--max-model-len", str(max_model_len),
            "--gpu-memory-utilization", str(gpu_memory_utilization), *extra_args]
    return Service(name, argv, env={"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))},
                   ready=ReadyCheck(http_url=f"http://127.0.0.1:{port(name)}/health", timeout_s=ready_timeout_s),
                   gpus=len(gpus))


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
