"""LoRA on any causal LM with peft, and the reference model for free.

Why LoRA and no second model: the reference policy DPO and GRPO measure against is the base
model, which is exactly the LoRA model with its adapter switched off (`model.disable_adapter()`),
so no second copy of the weights is held in memory. When training continues from an adapter
that was already trained, the reference must be *that* adapter, not the bare base: it is loaded
a second time under the name "ref", frozen, and switched on for reference passes.

Default targets: "all-linear" (every linear layer of the transformer blocks, not the LM head) —
peft resolves it per architecture, and adapting all projections (QLoRA paper) learns markedly
better than q/v only at the same rank, for little extra memory.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from rlaif.errors import MissingDependencyError

REF_ADAPTER = "ref"


@dataclass
class LoraSettings:
    r: int = 16                   # enough capacity for preference tuning; cheap at any model size
    alpha: int = 32               # alpha = 2r: the common scale, keeps the update size stable across r
    dropout: float = 0.0          # 0: dropout makes policy ≠ reference at step 0 and biases DPO's log-ratios
    target_modules: list[str] | str = field(default_factory=lambda: "all-linear")
    init_weights: bool | str = True   # peft default: B = 0, so the adapter starts as the identity


def _peft():
    try:
        import peft
    except ModuleNotFoundError as e:
        raise MissingDependencyError("peft", extra="train", why="for LoRA training") from e
    return peft


def disable_dropout(model) -> None:
    """Set every dropout probability to 0 (as TRL does by default): dropout noise would make the
    policy and the reference differ even with identical weights."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


def add_lora(model, settings: LoraSettings | None = None, adapter: str | None = None):
    """Wrap `model` (a transformers causal LM) as a peft model with a trainable LoRA adapter.

    adapter: a folder with a trained adapter to continue from. It becomes the trainable "default"
    adapter *and* is loaded again as the frozen reference adapter "ref"."""
    peft = _peft()
    s = settings or LoraSettings()
    if adapter:
        model = peft.PeftModel.from_pretrained(model, adapter, is_trainable=True)
        model.load_adapter(adapter, adapter_name=REF_ADAPTER, is_trainable=False)
        model.set_adapter("default")
    else:
        cfg = peft.LoraConfig(r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=s.target_modules,
                              init_lora_weights=s.init_weights, task_type="CAUSAL_LM")
        model = peft.get_peft_model(model, cfg)
    return model


def has_ref_adapter(model) -> bool:
    return REF_ADAPTER in getattr(model, "peft_config", {})


@contextlib.contextmanager
def reference(model):
    """Run `model` as the reference policy inside this block: the frozen "ref" adapter when
    training continues from an adapter, otherwise the base with the adapter disabled."""
    if has_ref_adapter(model):
        model.set_adapter(REF_ADAPTER, inference_mode=True)
        try:
            yield model
        finally:
            model.set_adapter("default")
            # set_adapter marks the active adapter trainable; keep "ref" frozen
            for n, p in model.named_parameters():
                if f".{REF_ADAPTER}." in n:
                    p.requires_grad_(False)
    else:
        with model.disable_adapter():
            yield model


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def save_adapter(model, path, state_dict: dict | None = None) -> None:
    """Save only the trained "default" adapter (never the frozen reference copy). `state_dict`: the
    tensors to write when the model's own are shards (FSDP: rlaif.train.fsdp.full_adapter_state)."""
    from rlaif.models import make_shareable

    # save_embedding_layers=False: LoRA here never resizes or targets the embeddings, and peft's
    # "auto" probes the Hub for the base config when the recorded base is not a local folder
    extra = {} if state_dict is None else {"state_dict": state_dict}
    model.save_pretrained(str(path), selected_adapters=["default"], save_embedding_layers=False, **extra)
    make_shareable(path)
