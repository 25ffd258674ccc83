"""The environment: two locks from one source of versions, installed as locked, with verl-tool's own verl.

The GPU lock (`launch/env/gpu.lock`) is what a CUDA node installs; this environment is the CPU lock,
the same stack less CUDA. Here we check that the locks agree, that this environment is the CPU lock,
that the verl in it is verl-tool's (never the registry's), that the trainer key file regenerates from
the installed checkout, and, against the registry, that both locks still resolve.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from launch import locks
from launch.compose import PROJECT_ROOT
from launch.env_check import MODULES, check
from launch.trainer_keys import KEYS_FILE, pinned_commit

GPU, CPU = locks.read_pins(locks.GPU_LOCK), locks.read_pins(locks.CPU_LOCK)
# Removed by launch/install.sh on CPU: the registry's torchvision is a CUDA build that cannot load here.
REMOVED_ON_CPU = {"torchvision"}


def verl_tool_checkout() -> Path:
    """The folder verl-tool is installed from (editable), which holds its verl too."""
    import verl_tool

    return Path(verl_tool.__path__[0]).parent


# ---------------------------------------------------------------- the locks


def test_locks_agree_on_every_package_they_share() -> None:
    """A package in both locks has one version, except torch's own builds, which follow torch."""
    assert locks.shared_disagreements(GPU, CPU) == []
    assert len(GPU.keys() & CPU.keys()) > 150
    assert (GPU["torch"], CPU["torch"]) == ("2.8.0", "2.13.0")


def test_shared_disagreements_names_package_and_both_versions() -> None:
    """A drifted package is reported with both versions; torch builds are not reported."""
    drifted = locks.shared_disagreements({"numpy": "1.26.4", "torch": "2.8.0"}, {"numpy": "2.0.0", "torch": "2.13.0"})
    assert drifted == ["numpy: gpu.lock 1.26.4, cpu.lock 2.0.0"]


@pytest.mark.parametrize(("package", "version"), [
    ("vllm", "0.11.0"), ("xformers", "0.0.32.post1"), ("transformers", "4.57.6"), ("llamafactory", "0.9.5"),
    ("deepspeed", "0.19.8"), ("ray", "2.60.0"), ("tensordict", "0.10.0"), ("numpy", "1.26.4"), ("click", "8.2.1"),
])
def test_gpu_lock_holds_the_stack_verl_tool_runs(package: str, version: str) -> None:
    """The GPU lock pins the versions verl-tool's trainer and vLLM 0.11 run with."""
    assert GPU[package] == version


def test_gpu_lock_takes_torchs_cuda_12_8_wheels() -> None:
    """torch 2.8.0 from the registry is the CUDA 12.8 build: its nvidia runtime wheels are cu12 12.8."""
    assert GPU["nvidia-cuda-runtime-cu12"].startswith("12.8.")
    assert "flash-attn" not in GPU, "flash-attn is built after the lock, against the installed torch"


def test_cpu_lock_has_no_cuda_and_no_vllm() -> None:
    """CI's lock: no vLLM, xformers, triton or CUDA runtime wheel; the test tools and the resolver are in it."""
    cuda = sorted(name for name in CPU if name.startswith(("nvidia-", "cuda-")) or name == "triton")
    assert cuda == []
    assert not {"vllm", "xformers", "flash-attn", "liger-kernel"} & CPU.keys()
    assert {"pytest", "hypothesis", "ruff", "uv"} <= CPU.keys()


def test_no_lock_holds_the_registrys_verl() -> None:
    """verl comes only from verl-tool's checkout: neither lock names `verl` or verl-tool."""
    for pins in (GPU, CPU):
        assert "verl" not in pins and "verl-tool" not in pins


def test_every_declared_requirement_is_locked() -> None:
    """Each name in pyproject.toml's dependencies and extras is in the CPU lock, and (but dev) in the GPU lock."""
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    name = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")
    for extra, requirements in {"": project["dependencies"], **project["optional-dependencies"]}.items():
        for requirement in requirements:
            package = locks.normalize(name.match(requirement).group(0))
            assert package in CPU, f"{extra or 'dependencies'}: {package} is not in cpu.lock"
            assert extra == "dev" or package in GPU, f"{extra or 'dependencies'}: {package} is not in gpu.lock"
    assert "rl" not in project["optional-dependencies"] and "verl" not in project["optional-dependencies"]


def test_lock_headers_give_the_regeneration_command() -> None:
    """Both locks start with the command that regenerates them."""
    for path in (locks.GPU_LOCK, locks.CPU_LOCK):
        assert locks.COMPILE_COMMAND in "".join(path.read_text().splitlines(keepends=True)[:3]), path


def test_the_locks_resolve_against_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both inputs, resolved again for Linux x86_64 (CUDA for the GPU lock), give exactly the committed locks.

    A version removed from the registry, or an input edited without regenerating, fails here rather
    than in a user's first GPU job. uv reads package metadata only: with a cache of its own, nothing
    the size of a wheel of torch, vLLM or a CUDA library is downloaded.
    """
    cache = tmp_path / "uv-cache"
    monkeypatch.setenv("UV_CACHE_DIR", str(cache))
    try:
        locks.check_locks()
    except locks.LockError as error:
        offline = re.search(r"(?i)failed to fetch|dns|connect|network", str(error))
        if offline and not os.environ.get("LONGVIDEO_R1_REQUIRE_REGISTRY"):
            pytest.skip(f"the package registry is not reachable: {str(error)[:300]}")
        raise
    large = [f"{path} ({path.stat().st_size >> 20} MiB)" for path in cache.rglob("*")
             if path.is_file() and path.stat().st_size > 20 << 20]
    assert large == []


# ---------------------------------------------------------------- this environment


def test_this_environment_is_the_cpu_lock() -> None:
    """Every package of the CPU lock is installed at its locked version (torch as its CPU build)."""
    wrong = []
    for package, version in CPU.items():
        try:
            installed = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            if package not in REMOVED_ON_CPU:
                wrong.append(f"{package}: not installed")
            continue
        if installed.split("+")[0] != version:
            wrong.append(f"{package}: {installed}, locked {version}")
    assert wrong == []


def test_verl_is_verl_tools_own_copy() -> None:
    """The installed verl is 0.7.0.dev from verl-tool's checkout, editable, not the registry's."""
    import verl

    checkout = verl_tool_checkout()
    assert Path(verl.__file__).resolve().is_relative_to((checkout / "verl").resolve())
    assert importlib.metadata.version("verl").startswith("0.7.0.dev")
    assert (checkout / "verl" / "verl" / "version" / "version").read_text().strip() == "0.7.0.dev"


def test_every_module_the_cpu_environment_runs_imports() -> None:
    """The install script's last check passes here: each stage's modules import."""
    assert check("cpu") == []
    assert set(MODULES["cpu"]) < set(MODULES["gpu"])


def test_the_deepest_trainer_modules_import_without_vllm_and_cuda() -> None:
    """The trainer's modules below the agent loop import on CPU; the rest stops at torchvision.

    Imported here: verl-tool's reward loader (`verl_tool.trainer.ppo.reward`), its rollout replica
    (`verl_tool.workers.rollout.replica`), verl's PPO trainer (`verl.trainer.ppo.ray_trainer`) and
    FSDP workers (`verl.workers.fsdp_workers`, which import transformers' AutoModelForVision2Seq).
    Not importable without a GPU build: `verl_tool.trainer.main_ppo` -> `verl_tool.trainer.ppo.ray_trainer`
    -> `verl_tool.agent_loop` -> `vision_process`, which imports torchvision for image inputs, and the
    registry's torchvision is a CUDA build that cannot load against the CPU torch; vLLM (the rollout
    engine) is not in this environment at all.
    """
    for name in ("verl_tool.trainer.ppo.reward", "verl_tool.workers.rollout.replica",
                 "verl.trainer.ppo.ray_trainer", "verl.workers.fsdp_workers"):
        importlib.import_module(name)
    done = subprocess.run([sys.executable, "-c", "import verl_tool.trainer.main_ppo"], capture_output=True, text=True)
    assert done.returncode != 0
    assert "No module named 'torchvision'" in done.stderr, done.stderr[-2000:]


def test_the_agent_loop_imports_on_cpu_with_its_multimodal_helpers_stood_in() -> None:
    """With tools.rollouts.text_only, verl-tool's agent loop imports here (its trainer entry still needs vLLM);
    exactly the three image and audio modules are stood in, each naming the dependency that does not load."""
    code = ("import json\n"
            "from tools.rollouts.text_only import stand_in_multimodal_modules\n"
            "replaced = stand_in_multimodal_modules()\n"
            "import verl_tool.agent_loop\n"
            "from verl_tool.agent_loop import VerlToolAgentLoop\n"
            "print(json.dumps(replaced))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    replaced = json.loads(done.stdout.splitlines()[-1])
    assert set(replaced) == {"verl.utils.dataset.vision_utils", "verl_tool.agent_loop.vision_process",
                             "verl_tool.utils.dataset.audio_utils"}
    assert replaced["verl_tool.agent_loop.vision_process"].startswith("torchvision:")


def test_trainer_key_file_regenerates_from_the_installed_checkout(tmp_path: Path) -> None:
    """`launch.gen_trainer_keys` on the installed verl-tool gives the committed key file, byte for byte."""
    output = tmp_path / "keys.json"
    done = subprocess.run([sys.executable, "-m", "launch.gen_trainer_keys", str(verl_tool_checkout()),
                           "--output", str(output)], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr
    assert output.read_text() == KEYS_FILE.read_text(), "the pin moved: regenerate launch/verl_tool_trainer_keys.json"


def test_key_file_commit_is_the_pin() -> None:
    """The key file was generated at the commit launch/env/verl_tool.pin installs."""
    repository, commit = locks.verl_tool_pin()
    assert pinned_commit() == commit
    assert json.loads(KEYS_FILE.read_text())["source"] == repository


def test_the_installed_checkout_is_the_pinned_commit() -> None:
    """The installed verl-tool's folder is named for the pin (an archive) or is a checkout at it."""
    checkout, (_, commit) = verl_tool_checkout(), locks.verl_tool_pin()
    if (checkout / ".git").exists():
        head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert head.stdout.strip() == commit
    else:
        assert checkout.name.endswith(commit[:8]), checkout
