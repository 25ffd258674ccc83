"""Save a genuine verl FSDP2 checkpoint of a Hugging Face causal LM on CPU, as an RL run's trainer does.

Each rank loads the model, adds `delta(shape, step)` to every parameter, shards it with FSDP2's
`fully_shard` over a CPU ("fsdp",) device mesh (gloo), takes one real AdamW step with lr=0 (the
optimizer state is real, the weights stay exactly the perturbed ones) and saves with verl's own
`FSDPCheckpointManager` into `CHECKPOINTS/global_step_N/actor`; rank 0 then records the last step
in `latest_checkpointed_iteration.txt`, as verl's trainer does.

    torchrun --standalone --nproc_per_node 2 -m tests.fsdp_checkpoint --model DIR --checkpoints DIR --steps 1 3
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

# The perturbation of step N: N * DELTA_SCALE * (1..5, cycling over the flattened parameter).
DELTA_SCALE = 0.01
LATEST_FILE = "latest_checkpointed_iteration.txt"


def delta(shape: torch.Size, step: int) -> torch.Tensor:
    """The known, deterministic float32 offset added to a parameter of `shape` before step `step` is saved."""
    numel = int(torch.Size(shape).numel())
    return (step * DELTA_SCALE * (1 + torch.arange(numel) % 5)).to(torch.float32).reshape(shape)


def perturb(model: torch.nn.Module, step: int) -> torch.nn.Module:
    """Add `delta(., step)` to every parameter of `model` in place (a tied parameter once); returns it."""
    with torch.no_grad():
        for param in model.parameters():
            param.add_(delta(param.shape, step))
    return model


def save_steps(model_dir: Path, checkpoints: Path, steps: list[int]) -> None:
    """This rank's part of saving `steps` of the perturbed model with verl's FSDPCheckpointManager."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from verl.utils.checkpoint.fsdp_checkpoint_manager import FSDPCheckpointManager

    dist.init_process_group("gloo")
    try:
        # verl's actor mesh for pure FSDP: one dimension named "fsdp" (the merger accepts only that or ddp x fsdp).
        mesh = init_device_mesh("cpu", (dist.get_world_size(),), mesh_dim_names=("fsdp",))
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        batch = tokenizer(["The red car turns left at the corner."], return_tensors="pt")
        for step in steps:
            torch.manual_seed(step)
            model = perturb(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), step)
            # As verl's apply_fsdp2: each decoder layer, then the root (embedding, final norm, tied lm_head).
            for layer in model.model.layers:
                fully_shard(layer, mesh=mesh)
            fully_shard(model, mesh=mesh)
            optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, weight_decay=0.01)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
            loss = model(**batch, labels=batch["input_ids"]).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            manager = FSDPCheckpointManager(model, optimizer, scheduler, processing_class=tokenizer)
            manager.save_checkpoint(str(checkpoints / f"global_step_{step}" / "actor"), global_step=step)
        if dist.get_rank() == 0:
            (checkpoints / LATEST_FILE).write_text(str(steps[-1]))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main() -> None:
    """CLI (under torchrun): save `--steps` of `--model` under `--checkpoints`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a Hugging Face causal LM folder")
    parser.add_argument("--checkpoints", type=Path, required=True, help="verl's trainer.default_local_dir")
    parser.add_argument("--steps", type=int, nargs="+", required=True, help="steps to save; the last is the latest")
    args = parser.parse_args()
    if "RANK" not in os.environ:
        parser.error("run under torchrun (torch.distributed.run)")
    save_steps(args.model, args.checkpoints, args.steps)


if __name__ == "__main__":
    main()
