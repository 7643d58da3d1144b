"""What DPO, GRPO and SFT share: model + LoRA setup, the optimiser, the data stream, logging,
checkpoints with exact resume. Each trainer (dpo.py, grpo.py, sft.py) is a short loop on top.

Why accelerate and nothing home-made: the same loop runs on one CPU, one GPU, or many GPUs under
`accelerate launch` (DDP, FSDP or DeepSpeed picked by the accelerate config). Accelerator
prepares the model, optimiser, scheduler and data loader (sharding batches across processes),
runs bf16 autocast, and carries the metric trackers (TensorBoard, W&B).

Exact resume: a checkpoint holds the adapter, the optimiser and scheduler states, every RNG
state (python, numpy, torch, CUDA; per process) and the data position (micro-batches consumed).
The data order is a pure function of the seed, so skipping that many batches puts a resumed run
on exactly the batch the uninterrupted run would see next; the loss curve continues identically.

Log-probs without full logits: `LogProbModel` runs the transformer, then the LM head only on the
positions that are scored (completion tokens), in chunks (logps.py). A (2B × T × vocab) float32
logits tensor is the largest thing a naive DPO step allocates; this never builds it. It also takes
packed batches (packing.py: a prompt read once for all its continuations, several sequences per
row without padding) and returns the same (sequences, T-1) per-token layout either way.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rlaif.errors import MissingDependencyError, RlaifError
from rlaif.train.card import write_adapter_card
from rlaif.train.checks import check_config, data_warnings, steps_for_epochs
from rlaif.train.fsdp import check_strategy
from rlaif.train.lora import LoraSettings, add_lora, count_parameters, disable_dropout, save_adapter


@dataclass
class TrainConfig:
    """Settings every trainer shares. The CLI flags map one to one onto these fields."""

    model: str = "default"                 # the embedded SmolLM2; or a local folder / hub id
    output_dir: str = "out"
    max_steps: int = 100                   # optimiser steps
    batch_size: int = 4                    # rows (pairs / demos / prompts) per micro-batch per process
    grad_accum: int = 1                    # micro-batches per optimiser step
    learning_rate: float = 5e-5            # LoRA tolerates ~10x full fine-tuning's rates
    lr_scheduler: str = "constant_with_warmup"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int | None = 1024          # tokens per prompt+completion; longer ones keep their start
    seed: int = 42
    lora: LoraSettings = field(default_factory=LoraSettings)
    adapter: str | None = None             # continue from this trained adapter (it is also the reference)
    save_steps: int = 50                   # checkpoint every N steps (and at the end)
    save_total_limit: int | None = 2       # keep the newest N checkpoints
    resume: str | bool | None = None       # True: newest checkpoint in output_dir; or a checkpoint folder
    log_every: int = 1
    report_to: list[str] = field(default_factory=list)   # "tensorboard", "wandb"
    gradient_checkpointing: bool | None = None            # None: on for CUDA (memory), off on CPU (speed)
    bf16: bool | None = None                              # None: on where CUDA supports it
    progress: bool = True
    dtype: str | None = None               # model weights dtype; None: bf16 on CUDA, float32 on CPU
    compile: bool = False                  # torch.compile each decoder layer (GPU speed; the first steps compile)
    packing: bool = True                   # several sequences per row, no padding between them (exact)
    share_prompt: bool = True              # DPO pair / GRPO group: the prompt read once for its continuations (exact)
    logp_kernel: str = "auto"              # auto: Liger on CUDA where installed and checked, else torch
    epochs: float | None = None            # when set, max_steps = the steps that cover this many passes

    def __post_init__(self):
        check_config(self)                 # out-of-range options fail here, before any model loads

    @property
    def pad_multiple(self) -> int:
        """Batches are padded to a multiple of this many tokens: 64 when compiled, so the compiled
        layers see a handful of lengths instead of recompiling for new ones; 1 (no rounding) in eager."""
        return 64 if self.compile else 1


# ---------------------------------------------------------------------------------------------
# Log-probs of the scored tokens
# ---------------------------------------------------------------------------------------------
def _causal_lm(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _fast_head_ok(lm) -> bool:
    """The chunked LM head path reproduces the model's logits only for a plain linear head without
    logit scaling or soft-capping; other models take the ordinary forward."""
    import torch

    cfg = lm.config.get_text_config() if hasattr(lm.config, "get_text_config") else lm.config
    if any(getattr(cfg, a, None) not in (None, 1.0) for a in ("final_logit_softcapping", "logit_scale",
                                                              "output_multiplier", "logits_scaling")):
        return False
    head = lm.get_output_embeddings()
    return type(head) is torch.nn.Linear and getattr(lm, lm.base_model_prefix, None) is not None


def compile_layers(model, dynamic: bool | None = False) -> int:
    """torch.compile every decoder layer in place: the repeated block (attention, MLP, norms, RoPE,
    the LoRA branches) becomes fused kernels, one compiled graph shared by all layers; the chunked
    LM head and the losses stay eager. The adapter on/off switch of the reference pass and the row
    width are guarded: with static shapes (dynamic=False) and batches whose widths come from a short
    ladder (packing.WIDTH_LADDER) and whose row count is fixed, each (variant, width) compiles once,
    during the first steps that see it, and never again (dynamic=None recompiled as dynamic on the
    second width seen, inside a timed window). Returns the count."""
    import torch

    lm = _causal_lm(model)
    layers = getattr(getattr(lm, lm.base_model_prefix, None), "layers", None)
    if layers is None or not len(layers):
        raise RlaifError(f"compile=True: {type(lm).__name__} has no `layers` list of decoder blocks to compile")
    # variants per layer: adapters on/off x grad on/off x a few padded lengths
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    for layer in layers:
        layer.compile(dynamic=dynamic)
    return len(layers)


def compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process (a count that stops growing once every variant
    and width has been seen: a rise in a late step is a recompile)."""
    import torch

    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def _make_logprob_module():
    import torch

    class LogProbModel(torch.nn.Module):
        """Wraps the peft model so that one forward returns per-token log-probs of the scored
        tokens, shape (S, T-1), 0 elsewhere: from a padded batch (input_ids, attention_mask,
        completion_mask) or a packed one (`packed=`, packing.build_packed). A module (not a
        function) so accelerate/DDP/FSDP wrap the call that owns the parameters."""

        def __init__(self, model, kernel: str = "auto"):
            from rlaif.train.logps import KERNELS

            super().__init__()
            if kernel not in KERNELS:
                raise RlaifError(f"unknown log-prob kernel '{kernel}'; choose one of {', '.join(KERNELS)}")
            self.model = model
            self.fast = _fast_head_ok(_causal_lm(model))
            self.kernel = kernel

        def forward(self, input_ids=None, attention_mask=None, completion_mask=None, packed=None):
            from rlaif.train.logps import head_logps
            from rlaif.train.losses import shifted_token_logps
            from rlaif.train.packing import attention_inputs, scatter_logps

            lm = _causal_lm(self.model)
            if packed is not None:
                kw = attention_inputs(packed, lm.dtype)
                ids = packed["input_ids"]
                if not self.fast:
                    logits = self.model(input_ids=ids, use_cache=False, **kw).logits
                    lp = logits.flatten(0, 1)[packed["src"]].float().log_softmax(-1)
                    return scatter_logps(lp.gather(-1, packed["labels"][:, None]).squeeze(-1), packed)
                h = getattr(lm, lm.base_model_prefix)(input_ids=ids, use_cache=False, **kw).last_hidden_state
                head = lm.get_output_embeddings()
                flat = head_logps(h.flatten(0, 1)[packed["src"]], head.weight, head.bias, packed["labels"],
                                  kernel=self.kernel)
                return scatter_logps(flat, packed)
            if not self.fast:
                logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
                return shifted_token_logps(logits, input_ids, completion_mask)
            backbone = getattr(lm, lm.base_model_prefix)
            h = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
            mask = completion_mask[:, 1:].bool()
            head = lm.get_output_embeddings()
            flat = head_logps(h[:, :-1][mask], head.weight, head.bias, input_ids[:, 1:][mask], kernel=self.kernel)
            return torch.zeros(mask.shape, dtype=torch.float32, device=h.device).masked_scatter(mask, flat)

    return LogProbModel


def packed_hidden_states(model, packed: dict):
    """Final hidden states (rows × W, H) of a packed batch (packing.build_packed) through the model's
    transformer without its head: index them with packing.last_token_index to read each sequence's
    last token, where a reward model's score head reads it (a sequence-classification model's own
    forward finds that token from pad ids, which a packed row does not have)."""
    from rlaif.train.packing import attention_inputs

    lm = _causal_lm(model)
    backbone = getattr(lm, lm.base_model_prefix)
    kw = attention_inputs(packed, lm.dtype)
    return backbone(input_ids=packed["input_ids"], use_cache=False, **kw).last_hidden_state.flatten(0, 1)


def batch_logps(lp_model, batch: dict):
    """Per-token log-probs (S, T-1) of a collated batch, packed (batch["packed"]) or padded."""
    if "packed" in batch:
        return lp_model(packed=batch["packed"])
    return lp_model(batch["input_ids"], batch["attention_mask"], batch["completion_mask"])


# ---------------------------------------------------------------------------------------------
# The run: everything around the loss
# ---------------------------------------------------------------------------------------------
class StepStream:
    """The deterministic order rows are seen in: epoch e is a permutation drawn from seed + e.
    Index k of the stream is the k-th row the run consumes; a torch Dataset, so accelerate's
    DataLoader shards and skips it."""

    def __init__(self, n_rows: int, total: int, seed: int):
        import torch

        order: list[int] = []
        e = 0
        while len(order) < total:
            g = torch.Generator().manual_seed(seed + e)
            order.extend(torch.randperm(n_rows, generator=g).tolist())
            e += 1
        self.order = order[:total]

    def __len__(self):
        return len(self.order)

    def __getitem__(self, k):
        return self.order[k]


class Run:
    def __init__(self, cfg: TrainConfig, kind: str):
        import torch
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.cfg, self.kind = cfg, kind
        self.out = Path(cfg.output_dir)
        for name in cfg.report_to:
            if name not in ("tensorboard", "wandb"):
                raise RlaifError(f"--report-to: unknown tracker '{name}' (use tensorboard and/or wandb)")
            mod = "torch.utils.tensorboard" if name == "tensorboard" else "wandb"
            try:
                __import__("tensorboard" if name == "tensorboard" else "wandb")
            except ModuleNotFoundError as e:
                raise MissingDependencyError(name, why=f"for --report-to {name} ({mod})") from e
        cuda = torch.cuda.is_available()
        bf16 = cfg.bf16 if cfg.bf16 is not None else (cuda and torch.cuda.is_bf16_supported())
        # Under `accelerate launch --multi_gpu --num_processes N` on a machine without CUDA, only cpu=True makes
        # accelerate join the N processes (gloo, DDP); without it each process would train alone on all the data.
        cpu_ddp = not cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.acc = Accelerator(mixed_precision="bf16" if bf16 else "no", log_with=cfg.report_to or None,
                               project_dir=str(self.out), cpu=cpu_ddp)
        self.fsdp = check_strategy(self.acc)
        self.device = self.acc.device
        set_seed(cfg.seed)
        self._progress = None
        self.step = 0
        self.micro = 0          # micro-batches consumed (the data position)
        self.t0 = time.time()
        self.tokens = 0

    @property
    def main(self) -> bool:
        return self.acc.is_main_process

    # -- model -------------------------------------------------------------------------------
    def load_model(self):
        import torch
        from transformers import AutoModelForCausalLM

        from rlaif.models import load_tokenizer

        path, tok = load_tokenizer(self.cfg.model)
        cuda = self.device.type == "cuda"
        dtype = getattr(torch, self.cfg.dtype) if self.cfg.dtype else (torch.bfloat16 if cuda else torch.float32)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        model, tok = self.setup_model(model, tok)
        # a base that loads offline (the converted folder for "default"); the card names the Hub id to share
        from rlaif.models import base_reference
        model.peft_config["default"].base_model_name_or_path = base_reference(self.cfg.model)
        return model, tok

    def setup_model(self, model, tok):
        """LoRA, no dropout, gradient checkpointing (GPU), the log-prob wrapper. Accepts an
        already-built model (tests, benchmarks)."""
        disable_dropout(model)
        gc = self.cfg.gradient_checkpointing
        if gc is None:
            gc = self.device.type == "cuda"
        if gc:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        model = add_lora(model, self.cfg.lora, self.cfg.adapter)
        disable_dropout(model)
        self.layout = layout_for(model, self.cfg, self.main)
        if self.cfg.compile:     # static shapes with the packed layout's width ladder; padded batches: dynamic
            compile_layers(model, dynamic=False if self.layout is not None else None)
        self.tok = tok
        self.peft_model = model
        self.lp_model = _make_logprob_module()(model, self.cfg.logp_kernel)
        return model, tok

    def prepare(self, n_rows: int, collate, rows_per_micro: int | None = None):
        """Optimiser, scheduler and data loader, prepared by accelerate; then resume if asked."""
        import torch
        from torch.utils.data import DataLoader
        from transformers import get_scheduler

        cfg, acc = self.cfg, self.acc
        params = [p for p in self.lp_model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        # accelerate steps a prepared scheduler once per process per optimiser step: scale to match
        n = acc.num_processes
        sched = get_scheduler(cfg.lr_scheduler, opt, num_warmup_steps=cfg.warmup_steps * n,
                              num_training_steps=cfg.max_steps * n)
        per_micro = rows_per_micro or cfg.batch_size
        per_step = per_micro * cfg.grad_accum * acc.num_processes
        if cfg.epochs:
            cfg.max_steps = steps_for_epochs(n_rows, cfg.epochs, per_step)
        if self.main and not cfg.resume:
            for w in data_warnings(n_rows, cfg.max_steps, per_step):
                print(f"warning: {w}", file=sys.stderr, flush=True)
        total_rows = cfg.max_steps * cfg.grad_accum * per_micro * n
        stream = StepStream(n_rows, total_rows, cfg.seed)
        # StepStream is a map-style dataset by protocol (__len__/__getitem__), not a Dataset subclass, so
        # that importing this module does not import torch; DataLoader accepts it, its stubs do not
        loader: DataLoader = DataLoader(stream, batch_size=per_micro, shuffle=False,  # type: ignore[arg-type]
                                        collate_fn=collate, generator=torch.Generator().manual_seed(cfg.seed))
        self.lp_model, self.opt, self.sched, self.loader = acc.prepare(self.lp_model, opt, sched, loader)
        # FSDP replaces the parameters with sharded ones: clip (and count) the ones the optimiser now holds
        self.params = [p for p in self.lp_model.parameters() if p.requires_grad] if self.fsdp else params
        if cfg.resume:
            self.load_checkpoint(self.find_checkpoint(cfg.resume))
        elif self.main and self.out.exists() and any(self.out.glob("checkpoint-*")):
            raise RlaifError(f"{self.out} already holds checkpoints; pass --resume to continue, or choose a new -o")
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            self._trim_metrics()
        if cfg.report_to:
            acc.init_trackers(f"rlaif-{self.kind}", config=_flat_config(cfg))
        skip = acc.skip_first_batches(self.loader, self.micro) if self.micro else self.loader
        self._batches = iter(skip)
        return self

    def next_batch(self):
        self.micro += 1
        return next(self._batches)

    @property
    def model(self):
        """The peft model (unwrapped), e.g. for generation or reference passes."""
        return self.acc.unwrap_model(self.lp_model).model

    # -- the optimiser step ------------------------------------------------------------------
    def accumulate(self, k: int):
        """Context for micro-batch k of a step: skip the gradient all-reduce until the last one."""
        if k < self.cfg.grad_accum - 1 and self.acc.num_processes > 1:
            return self.acc.no_sync(self.lp_model)
        return contextlib.nullcontext()

    def backward(self, loss):
        self.acc.backward(loss / self.cfg.grad_accum)

    def optimizer_step(self) -> float:
        gn = self.acc.clip_grad_norm_(self.params, self.cfg.max_grad_norm) if self.cfg.max_grad_norm else None
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        return float(gn) if gn is not None else float("nan")

    def reduce(self, metrics: dict) -> dict:
        """Average each metric over processes (a no-op on one)."""
        import torch

        out = {}
        for k, v in metrics.items():
            t = v.detach().float().mean() if torch.is_tensor(v) else torch.tensor(float(v))
            if self.acc.num_processes > 1:
                t = self.acc.reduce(t.to(self.device), "mean")
            out[k] = float(t)
        return out

    # -- the supervised loop (DPO, SFT) --------------------------------------------------------
    def train_loop(self, micro_step, keys: tuple) -> list[dict]:
        """Optimiser steps until max_steps: each accumulates `grad_accum` micro-batches, where
        `micro_step(batch) -> (loss, metrics)` runs under autocast and its loss is back-propagated;
        then clip + step, metrics averaged over the micro-batches (and processes), logged, and a
        checkpoint when due. Returns the logged metrics of each step. GRPO has its own loop
        (generation, rewards, several updates per batch)."""
        history = []
        self.start_progress()
        try:
            while self.step < self.cfg.max_steps:
                parts = []
                for k in range(self.cfg.grad_accum):
                    batch = self.next_batch()
                    with self.accumulate(k), self.acc.autocast():
                        loss, m = micro_step(batch)
                        self.backward(loss)
                    self.tokens += int(batch["attention_mask"].sum())
                    parts.append(dict(m, loss=loss.detach()))
                grad_norm = self.optimizer_step()
                metrics = self.reduce(mean_over(parts))
                metrics["grad_norm"] = grad_norm
                history.append(self.log(metrics, keys))
                self.maybe_save()
        finally:
            self.stop_progress()
        return history

    # -- logging -----------------------------------------------------------------------------
    def stop_progress(self):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def start_progress(self):
        if not (self.cfg.progress and self.main):
            self._progress = None
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(f"{self.kind}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                  TimeRemainingColumn(), "{task.fields[info]}", console=Console(stderr=True))
        self._progress.start()
        self._task = self._progress.add_task(self.kind, total=self.cfg.max_steps, completed=self.step, info="")

    def log(self, metrics: dict, keys: tuple = ()) -> dict:
        metrics = dict(step=self.step, lr=self.sched.get_last_lr()[0], **metrics,
                       elapsed_s=round(time.time() - self.t0, 3))
        if self.cfg.compile:
            metrics["compiled_graphs"] = compiled_graphs()
        if self.main:
            with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(metrics) + "\n")
            if self._progress is not None:
                info = "  ".join(f"{k.split('/')[-1] if k.count('/') else k} {metrics[k]:.4g}"
                                 for k in keys if k in metrics)
                self._progress.update(self._task, completed=self.step, info=info)
                if self.step % max(1, self.cfg.log_every) == 0:
                    self._progress.console.print(f"step {self.step:>5}  " + "  ".join(
                        f"{k} {metrics[k]:.4f}" for k in keys if k in metrics))
        if self.cfg.report_to:
            self.acc.log({k: v for k, v in metrics.items() if k != "step"}, step=self.step)
        return metrics

    def _trim_metrics(self):
        """On resume, forget metrics logged after the checkpoint (they will be logged again)."""
        p = self.out / "metrics.jsonl"
        if not p.exists():
            return
        keep = [ln for ln in p.read_text(encoding="utf-8").splitlines()
                if ln.strip() and json.loads(ln)["step"] <= self.step]
        tmp = p.with_suffix(".tmp")
        tmp.write_text("".join(x + "\n" for x in keep), encoding="utf-8")
        os.replace(tmp, p)

    # -- checkpoints ---------------------------------------------------------------------------
    def adapter_state(self) -> dict | None:
        """Under FSDP the adapter's tensors gathered whole (every rank calls this); else None (peft reads them)."""
        from rlaif.train.fsdp import full_adapter_state

        return full_adapter_state(self.model) if self.fsdp else None

    def optimizer_state(self) -> dict:
        """The optimiser state to save from rank 0 (under FSDP gathered whole: every rank calls this)."""
        from rlaif.train.fsdp import full_optimizer_state

        return full_optimizer_state(self.lp_model, self.opt.optimizer) if self.fsdp else self.opt.state_dict()

    def maybe_save(self, force: bool = False):
        if force or (self.cfg.save_steps and self.step % self.cfg.save_steps == 0):
            self.save_checkpoint()

    def save_checkpoint(self):
        """OUT/checkpoint-STEP/: adapter/, optimizer.pt, scheduler.pt, rng-RANK.pt, state.json.
        Written into a temporary folder and renamed, so a crash never leaves a half checkpoint."""
        import numpy as np
        import torch

        acc = self.acc
        final = self.out / f"checkpoint-{self.step}"
        tmp = self.out / f".checkpoint-{self.step}.tmp"
        if self.main:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
        torch.save(rng, tmp / f"rng-{acc.process_index}.pt")
        adapter, optim = self.adapter_state(), self.optimizer_state()     # collectives under FSDP: every rank
        if self.main:
            save_adapter(self.model, tmp / "adapter", state_dict=adapter)
            torch.save(optim, tmp / "optimizer.pt")
            torch.save(self.sched.state_dict(), tmp / "scheduler.pt")
            state = {"step": self.step, "micro_batches": self.micro, "kind": self.kind, "tokens": self.tokens,
                     "num_processes": acc.num_processes, "fsdp": self.fsdp, "config": _flat_config(self.cfg)}
            (tmp / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
        acc.wait_for_everyone()
        if self.main:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            self._prune()
        acc.wait_for_everyone()

    def _prune(self):
        limit = self.cfg.save_total_limit
        if not limit:
            return
        cks = sorted(self.out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        for p in cks[:-limit]:
            shutil.rmtree(p, ignore_errors=True)

    def find_checkpoint(self, resume) -> Path:
        if resume is True or resume == "latest":
            cks = sorted(self.out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            if not cks:
                raise RlaifError(f"--resume: no checkpoint-* folder in {self.out}")
            return cks[-1]
        p = Path(resume)
        if not (p / "state.json").exists():
            raise RlaifError(f"--resume: {p} is not a checkpoint folder (no state.json)")
        return p

    def load_checkpoint(self, path: Path):
        import numpy as np
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        if state.get("kind") != self.kind:
            raise RlaifError(f"--resume: {path} is a '{state.get('kind')}' checkpoint, not '{self.kind}'")
        if state.get("num_processes", 1) != self.acc.num_processes:
            raise RlaifError(f"--resume: {path} was written by {state['num_processes']} processes; resume with the "
                             f"same number (now {self.acc.num_processes}) so the data position stays exact")
        if bool(state.get("fsdp", False)) != self.fsdp:
            raise RlaifError(f"--resume: {path} was written {'with' if state.get('fsdp') else 'without'} FSDP; "
                             "resume it with the same accelerate config")
        weights = load_file(str(path / "adapter" / "adapter_model.safetensors"))
        if self.fsdp:
            from rlaif.train.fsdp import load_full_adapter_state, load_full_optimizer_state

            load_full_adapter_state(self.model, weights)
            optim = torch.load(path / "optimizer.pt", weights_only=False) if self.main else {}
            load_full_optimizer_state(self.lp_model, self.opt.optimizer, optim)
        else:
            res = set_peft_model_state_dict(self.model, weights, adapter_name="default")
            unexpected = getattr(res, "unexpected_keys", None)
            if unexpected:
                raise RlaifError(f"--resume: adapter in {path} does not match this model ({unexpected[:3]}...)")
            self.opt.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
        self.sched.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
        rng = torch.load(path / f"rng-{self.acc.process_index}.pt", weights_only=False)
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.step, self.micro, self.tokens = state["step"], state["micro_batches"], state.get("tokens", 0)
        if self.main:
            print(f"resumed from {path} at step {self.step}", flush=True)

    # -- the end -------------------------------------------------------------------------------
    def finish(self, summary: dict) -> dict:
        """Final checkpoint, the adapter in OUT/adapter, a summary in OUT/train_summary.json."""
        if self._progress is not None:
            self._progress.stop()
        if not (self.out / f"checkpoint-{self.step}").exists():
            self.save_checkpoint()
        adapter = self.adapter_state()
        if self.main:
            adapter_dir = self.out / "adapter"
            tmp = self.out / ".adapter.tmp"
            if tmp.exists():
                shutil.rmtree(tmp)
            save_adapter(self.model, tmp, state_dict=adapter)
            self.tok.save_pretrained(str(tmp))
            write_adapter_card(tmp, self.cfg, self.kind, self.out / "metrics.jsonl", summary)
            if adapter_dir.exists():
                shutil.rmtree(adapter_dir)
            os.replace(tmp, adapter_dir)
            trainable, total = count_parameters(self.model)
            summary = dict(summary, kind=self.kind, steps=self.step, adapter=str(adapter_dir), tokens=self.tokens,
                           trainable_params=trainable, total_params=total,
                           seconds=round(time.time() - self.t0, 2), model=self.cfg.model)
            (self.out / "train_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        if self.cfg.report_to:
            self.acc.end_training()
        # One report per run: under `accelerate launch` only rank 0 has written (and returns) the summary.
        return summary if self.main else {}


def layout_for(model, cfg: TrainConfig, say: bool = True):
    """The packed-batch layout this model and config take (packing.Layout), or None for padded
    batches: packing and prompt sharing both off, or a model they cannot run on (said once)."""
    from rlaif.train.logps import say_once
    from rlaif.train.packing import Layout, packing_support

    if not (cfg.packing or cfg.share_prompt):
        return None
    kind, why = packing_support(model)
    if kind is None:
        if say:
            say_once(f"note: packed batches are off for this model ({why}); padded batches instead")
        return None
    share = cfg.share_prompt and kind != "varlen"
    if cfg.share_prompt and not share and say:
        say_once("note: flash-attention cannot mask one continuation from another: the prompt is repeated "
                 "per continuation (packing stays on); use attn_implementation='sdpa' or 'flex_attention' to share it")
    # compiled layers: one document per row (a fixed row count) and widths from a ladder (few shapes)
    return Layout(share_prompt=share, pack=cfg.packing and not cfg.compile, mask=kind, ladder=cfg.compile)


def _flat_config(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    lora = d.pop("lora")
    d.update({f"lora_{k}": v for k, v in lora.items()})
    d["report_to"] = ",".join(cfg.report_to)
    return {k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v)) for k, v in d.items()}


def mean_over(parts: list[dict]) -> dict:
    """Per-key mean of a step's micro-batch metrics (tensors)."""
    import torch

    return {k: torch.stack([p[k].float().mean() for p in parts]).mean() for k in parts[0]}


def with_overrides(cfg, overrides: dict):
    """`cfg` with keyword overrides; an unknown option is an error (not silently ignored)."""
    import dataclasses

    bad = [k for k in overrides if k not in {f.name for f in dataclasses.fields(cfg)}]
    if bad:
        raise TypeError(f"unknown training option(s): {', '.join(bad)}")
    return dataclasses.replace(cfg, **overrides)
