#!/usr/bin/env bash
# Install this project and its training stack into a virtual environment, pinned.
#   bash launch/install.sh [VENV_DIR]        (default: .venv)
# torch goes in first and alone, and every later install is constrained to the same versions:
# otherwise pip replaces a CPU torch with a CUDA build and gigabytes of nvidia-* packages.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip install --quiet torch==2.13.0
"$py" -m pip install --quiet -c launch/constraints.txt -e ".[train,tools,verl,dev]"

# PyPI's torchvision and torchaudio wheels are CUDA builds; against a CPU torch their compiled
# parts fail to load. transformers works without torchvision, so a broken one is removed.
# LLaMA-Factory imports torchaudio unconditionally (for audio data only), and torchaudio's Python
# code imports fine without its compiled extension, so a broken extension is removed.
if ! "$py" -c "import torchvision" >/dev/null 2>&1; then
    echo "install: torchvision does not load against this torch; removing it"
    "$py" -m pip uninstall --quiet -y torchvision
fi
if ! "$py" -c "import torchaudio" >/dev/null 2>&1; then
    echo "install: torchaudio's compiled extension does not load against this torch; removing it"
    ta_dir=$("$py" -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('torchaudio').origin))")
    rm -f "$ta_dir"/lib/*.so
fi
"$py" -c "import torchaudio; from llamafactory.hparams import get_train_args; from llamafactory.data import get_dataset"
echo "install: ready in $venv ($("$py" -c 'import torch, transformers, llamafactory; print("torch", torch.__version__, "transformers", transformers.__version__, "llamafactory", llamafactory.__version__)'))"
