"""What the trainer does differently when accelerate runs it under FSDP2 (`fsdp_version: 2`).

Why a file of its own: under FSDP every rank holds a shard of each parameter (a DTensor) and of
the optimiser state, so the things rank 0 alone used to do from its own copy (save the adapter,
save the optimiser) become collectives that every rank enters, after which rank 0 writes full,
ordinary tensors: a checkpoint and an adapter look the same however the run was sharded, and the
adapter loads anywhere with peft. Resume is the reverse: every rank reads the full tensors and
keeps its own shard.

Also: accelerate (1.16) switches to FSDP or DeepSpeed only from a GPU-type setup; with CPU
processes it keeps DDP (MULTI_CPU) and ignores the FSDP/DeepSpeed config without a word. Training
on with a strategy other than the one asked for is a silent fallback, so check_strategy refuses it.
"""
from __future__ import annotations

import os

from rlaif.errors import RlaifError


def check_strategy(acc) -> bool:
    """True under FSDP; an error when the accelerate config asked for FSDP or DeepSpeed and the
    processes run something else (CPU processes: accelerate turns those configs into DDP)."""
    from accelerate.utils import DistributedType

    kind = acc.distributed_type
    for env, want, name in (("ACCELERATE_USE_FSDP", DistributedType.FSDP, "FSDP"),
                            ("ACCELERATE_USE_DEEPSPEED", DistributedType.DEEPSPEED, "DeepSpeed")):
        if os.environ.get(env, "false").lower() == "true" and kind != want:
            raise RlaifError(f"the accelerate config asks for {name}, but accelerate set up {kind.value} "
                             f"(accelerate runs {name} only on GPUs; on CPU processes it would silently train "
                             "with DDP). Use a DDP config (--multi_gpu) on CPU, or run on GPUs")
    if kind == DistributedType.FSDP and not acc.is_fsdp2:
        raise RlaifError("rlaif trains under FSDP2 only: set fsdp_version: 2 in the accelerate config "
                         "(examples/accelerate/fsdp2.yaml)")
    return kind == DistributedType.FSDP


def _full(t):
    """A DTensor shard gathered into the full tensor (a collective), on the CPU; other tensors as is."""
    from torch.distributed.tensor import DTensor

    return (t.full_tensor() if isinstance(t, DTensor) else t).detach().cpu()


def full_adapter_state(peft_model, adapter: str = "default") -> dict:
    """The adapter's LoRA tensors, gathered whole, keyed as peft's model.state_dict() names them
    (what `save_pretrained(state_dict=...)` filters). Every rank must call it, in the same order."""
    tag = f".{adapter}."
    return {k: _full(v) for k, v in peft_model.state_dict().items() if "lora_" in k and tag in k}


def full_optimizer_state(lp_model, opt) -> dict:
    """The optimiser state gathered whole onto rank 0 (other ranks get {}); every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(lp_model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_optimizer_state(lp_model, opt, state: dict) -> None:
    """Give each rank its shard of a full optimiser state (rank 0's copy is broadcast)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(lp_model, opt, optim_state_dict=state,
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


def load_full_adapter_state(peft_model, weights: dict, adapter: str = "default") -> None:
    """Copy a saved adapter (the keys of peft's file: the parameter name without the adapter name) into
    the sharded LoRA parameters; each rank keeps its own shard. Every key must match, both ways."""
    import torch
    from torch.distributed.tensor import DTensor, distribute_tensor

    seen: set[str] = set()
    for name, p in peft_model.named_parameters():
        if "lora_" not in name or f".{adapter}." not in name:
            continue
        key = name.replace(f".{adapter}.", ".")
        if key not in weights:
            raise RlaifError(f"--resume: the checkpoint's adapter has no tensor for {key}")
        full = weights[key].to(p.dtype)
        with torch.no_grad():
            if isinstance(p, DTensor):
                p.copy_(distribute_tensor(full.to(p.device), p.device_mesh, p.placements))
            else:
                p.copy_(full)
        seen.add(key)
    extra = sorted(set(weights) - seen)
    if extra:
        raise RlaifError(f"--resume: the checkpoint's adapter does not match this model ({extra[:3]}...)")
