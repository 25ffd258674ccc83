"""Validate a rendered LLaMA-Factory training YAML before training starts.

LLaMA-Factory's own parser (`get_train_args`, which rejects unknown keys and wrong types) checks
every argument; our checks add what it only discovers after loading the model and data: the
stage, that the template exists, that the dataset is registered and its file is readable
sharegpt whose every record LLaMA-Factory would train (`tools.builders.sft_checks.check_role_order`: it
skips a record with the wrong role order with only a warning). Arguments that only make sense in the
launched process (DeepSpeed needs torchrun; bf16, fp16 and Liger need a GPU) are checked for type here
and left out of the parser's call.

    python -m launch.validate_sft runs/sft/tiny/NAME/llamafactory/train.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tools.builders.chat_template import TEMPLATE_NAMES
from tools.builders.sft_checks import check_role_order
from tools.environment.settings_file import read_mapping

# Arguments that need the launched process's devices; checked for type only.
DEVICE_BOUND = {"deepspeed": str, "bf16": bool, "fp16": bool, "enable_liger_kernel": bool}


# The exit code of an invalid training YAML or dataset (the launcher's code for a bad config, too).
INVALID_EXIT = 2


class TrainArgsError(ValueError):
    """A rendered training YAML would fail (or train the wrong thing) once started."""


def read_json(path: Path, expected: str) -> object:
    """The decoded JSON file at `path`; TrainArgsError naming the file, line and `expected` when it does not parse."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise TrainArgsError(f"{path}: not valid JSON at line {error.lineno} column {error.colno} ({error.msg}); "
                             f"expected {expected}") from None
    except (OSError, UnicodeDecodeError, RecursionError) as error:
        raise TrainArgsError(f"{path}: cannot read it as UTF-8 JSON ({type(error).__name__}); expected "
                             f"{expected}") from None


def check_dataset(args: dict, source: str) -> None:
    """The dataset is registered in `dataset_info.json` and its file is sharegpt messages LLaMA-Factory keeps."""
    info_path = Path(args["dataset_dir"]) / "dataset_info.json"
    if not info_path.is_file():
        raise TrainArgsError(f"{source}: dataset_dir has no dataset_info.json: {info_path}")
    info = read_json(info_path, "an object of dataset names to their file and columns")
    for name in str(args["dataset"]).split(","):
        if name not in info:
            raise TrainArgsError(f"{source}: dataset {name!r} is not registered in {info_path}")
        data_path = Path(info[name]["file_name"])
        if not data_path.is_file():
            raise TrainArgsError(f"{source}: dataset file of {name!r} not found: {data_path} "
                                 "(build it with the sft_data stage, or set sft.dataset.path)")
        records = read_json(data_path, "a JSON list of sharegpt records")
        if not isinstance(records, list) or not records:
            raise TrainArgsError(f"{data_path}: expected a non-empty JSON list of trajectories")
        column = info[name].get("columns", {}).get("messages", "conversations")
        for row, record in enumerate(records):
            if not isinstance(record, dict) or not isinstance(record.get(column), list):
                raise TrainArgsError(f"{data_path}: record {row} has no list field {column!r}")
            problem = check_role_order(record[column], info[name].get("tags"))
            if problem is not None:
                raise TrainArgsError(f"{data_path}: record {row}: {problem}; LLaMA-Factory would skip it "
                                     "('Skipping this abnormal example')")


def check_train_args(args: dict, source: str = "<args>") -> None:
    """Raise TrainArgsError naming the argument when `args` would not train as intended."""
    from llamafactory.data.template import TEMPLATES
    from llamafactory.hparams import get_train_args

    if args.get("stage") != "sft":
        raise TrainArgsError(f"{source}: stage must be 'sft', got {args.get('stage')!r}")
    if args.get("mask_history"):
        raise TrainArgsError(f"{source}: mask_history trains only the last turn; remove it")
    if args.get("template") not in TEMPLATES:
        raise TrainArgsError(f"{source}: template {args.get('template')!r} is not one of LLaMA-Factory's "
                             f"({len(TEMPLATES)} known, e.g. {', '.join(TEMPLATE_NAMES)})")
    for key, kind in DEVICE_BOUND.items():
        if key in args and not isinstance(args[key], kind):
            raise TrainArgsError(f"{source}: {key} must be {kind.__name__}, got {args[key]!r}")
    if "deepspeed" in args and not Path(args["deepspeed"]).is_file():
        raise TrainArgsError(f"{source}: deepspeed config not found: {args['deepspeed']}")
    check_dataset(args, source)
    portable = {k: v for k, v in args.items() if k not in DEVICE_BOUND}
    try:
        get_train_args(portable)
    except (ValueError, TypeError) as error:
        raise TrainArgsError(f"{source}: LLaMA-Factory rejects these arguments: {error}") from None


def read_train_yaml(path: Path) -> dict:
    """The arguments of a rendered training YAML; TrainArgsError naming the file when it cannot be read."""
    return read_mapping(path, "training YAML", "a mapping of arguments, the file the sft stage rendered",
                        TrainArgsError)


def main() -> None:
    """CLI: validate one training YAML; exit 2 with the reason in one line when it is invalid."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train_yaml", type=Path)
    path = parser.parse_args().train_yaml
    try:
        check_train_args(read_train_yaml(path), str(path))
    except TrainArgsError as error:
        # One line: a YAML or LLaMA-Factory message may span several.
        print(f"invalid SFT arguments: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(INVALID_EXIT)
    print(f"{path}: valid for LLaMA-Factory")


if __name__ == "__main__":
    main()
