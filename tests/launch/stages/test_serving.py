"""Which vLLM a Plan starts (launch/stages/serving.py): `vllm serve` on GPUs, or the CPU build, from one config."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from launch.compose import compose_config
from launch.stages.serving import ServingConfigError, VLLMEngine, vllm_engine, vllm_service


def engine_of(*overrides: str, dry_run: bool = True, python: str = sys.executable) -> VLLMEngine:
    """The engine of a composed eval config with `overrides`."""
    config = compose_config("eval", ["recipe=qwen3_8b", f"dry_run={str(dry_run).lower()}", *overrides]).config
    return vllm_engine(config, python)


def test_gpu_backend_serves_with_vllm_serve_on_its_gpus() -> None:
    """backend gpu: `vllm serve MODEL`, tensor parallel over the GPUs it is pinned to."""
    service = vllm_service("model", "/m", "served", [2, 3], 4096, 0.8, ["--x"], 60, engine_of())
    assert service.argv[:3] == ["vllm", "serve", "/m"]
    assert service.argv[service.argv.index("--tensor-parallel-size") + 1] == "2"
    assert service.argv[service.argv.index("--gpu-memory-utilization") + 1] == "0.8"
    assert service.argv[-1] == "--x"
    assert (service.env["CUDA_VISIBLE_DEVICES"], service.gpus) == ("2,3", 2)


def test_cpu_backend_serves_the_cpu_build_without_gpus(tmp_path: Path) -> None:
    """backend cpu: the CPU build's API-server module, fp32, its KV cache bounded, no GPU flag and no GPU."""
    cpu_python = tmp_path / "python"
    cpu_python.touch()
    engine = engine_of("vllm.backend=cpu", f"vllm.cpu_python={cpu_python}", "vllm.cpu_kvcache_gib=3",
                       dry_run=False)
    service = vllm_service("model", "/m", "served", [0], 4096, 0.8, [], 60, engine)
    assert service.argv[:5] == [str(cpu_python), "-m", "vllm.entrypoints.openai.api_server", "--model", "/m"]
    assert service.argv[service.argv.index("--dtype") + 1] == "float32"
    assert "--tensor-parallel-size" not in service.argv and "--gpu-memory-utilization" not in service.argv
    assert service.env == {"CUDA_VISIBLE_DEVICES": "", "VLLM_CPU_KVCACHE_SPACE": "3"}
    assert service.gpus == 0
    assert service.ready.http_url.endswith("/health")


def test_cpu_build_is_found_beside_the_launching_environment(tmp_path: Path) -> None:
    """With no cpu_python, the CPU build is VENV/vllm-cpu/bin/python beside VENV/bin/python."""
    launcher = tmp_path / "venv" / "bin" / "python"
    assert engine_of("vllm.backend=cpu", python=str(launcher)).cpu_python == \
        str(tmp_path / "venv" / "vllm-cpu" / "bin" / "python")


@pytest.mark.parametrize(("overrides", "message"), [
    (["vllm.backend=tpu"], "vllm.backend='tpu' is not one of: gpu, cpu"),
    (["vllm.cpu_kvcache_gib=0"], "vllm.cpu_kvcache_gib=0.0 must be > 0"),
])
def test_bad_serving_settings_name_the_key(overrides: list[str], message: str) -> None:
    """Each wrong `vllm.*` value is refused with its key and what is expected (a missing build: preflight_checks)."""
    with pytest.raises(ServingConfigError) as error:
        engine_of(*overrides, dry_run=False)
    assert message in str(error.value)
