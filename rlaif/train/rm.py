"""`rlaif train rm DATA -o OUT`: a reward model distilled from judge verdicts or human labels.

Three modes, picked from the columns (or `mode=`):
- pairwise: `rlaif pairs` rows (prompt, chosen, rejected): Bradley–Terry, -log σ(r_c − r_r − margin);
  with `soft_labels` each pair's `p_chosen` is the target of σ(r_c − r_r) (losses.bt_losses);
- pointwise: `rlaif judge` absolute rows (prompt, response, score[, probs]): regress the expected score
  (`target="expected"`, head = one number on [-1, 1]) or fit the judge's distribution over the scale
  (`target="distribution"`, one logit per scale point, soft cross-entropy); unscored rows are skipped;
- categorical: labelled rows (prompt, response, `human` or `label`) mapped through the rubric's
  `labels:` map (over_refusal: full_refusal / partial_refusal / full_compliance), cross-entropy.

The loop is the trainer core's (rlaif/train/loop.py: accelerate, LoRA, grad accumulation, compile,
checkpoints with exact resume, metrics.jsonl, --report-to); this file adds the head, the batches, the
losses and a held-out evaluation every `eval_steps` steps (accuracy and calibration). Rows are split
into train / held-out by a hash of the prompt, so no prompt is on both sides.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from rlaif.errors import InputError, MissingDependencyError, RlaifError
from rlaif.train import losses
from rlaif.train.loop import Run, TrainConfig
from rlaif.train.loop import with_overrides as _with

MODES = ("pairwise", "pointwise", "categorical")
TARGETS = ("expected", "distribution")


@dataclass
class RMConfig(TrainConfig):
    mode: str = "auto"                  # pairwise | pointwise | categorical | auto (from the columns)
    target: str = "expected"            # pointwise: expected (regression) | distribution (soft CE over the scale)
    soft_labels: bool = False           # pairwise: p_chosen is the target of σ(r_c − r_r)
    margin: bool = False                # pairwise: subtract each row's `margin` column (TRL's convention)
    rubric: str | None = None           # pointwise / categorical: the scale and labels map (default: from rows)
    label_field: str | None = None      # categorical: the label column (default: `human`, else `label`)
    probe: bool = False                 # train the head only, on the frozen model's features computed once
    pooling: str = "last"               # what the head reads: last token | mean over the response (rm_model.POOLINGS)
    feature_layer: int | None = None    # read the state after this many decoder layers (None: the final, normed)
    eval_fraction: float = 0.1          # share of prompts held out for evaluation
    eval_steps: int = 20                # evaluate every N optimiser steps (and at the end)
    max_length: int | None = 512        # a reward model needs the response's start, rarely 1k tokens
    batch_size: int = 8
    learning_rate: float = 1e-4         # LoRA + a fresh head: higher than DPO's, as for SFT
    split: str = "train"


RM_KEYS = ("loss", "accuracy", "eval/accuracy", "eval/loss")


# ---------------------------------------------------------------------------------------------
# Rows -> examples
# ---------------------------------------------------------------------------------------------
def infer_mode(row: dict, label_field: str | None) -> str:
    if "chosen" in row or "rejected" in row:
        return "pairwise"
    if label_field or any(isinstance(row.get(f), str) for f in ("human", "label")):
        return "categorical"
    return "pointwise"


def _rubric_of(cfg: RMConfig, rows, mode: str):
    from rlaif.rubrics import load_rubric

    name = cfg.rubric
    if name is None:
        first = next((r.get("rubric") for r in rows.rows if isinstance(r.get("rubric"), str)), None)
        if first is None:
            raise InputError(rows.path, rows.lines[0] if rows.lines else None, "rubric",
                             f"{mode} reward models need a rubric for the scale: pass --rubric NAME "
                             "(judged rows name theirs in a `rubric` column)")
        name = first.split("@", 1)[0]
    return load_rubric(name)


def _label_field(cfg: RMConfig, rows) -> str:
    if cfg.label_field:
        return cfg.label_field
    return "human" if any("human" in r for r in rows.rows) else "label"


def build_examples(tok, rows, cfg: RMConfig, mode: str, rubric) -> tuple[list[dict], dict]:
    """Check and tokenize every row for `mode` -> (examples, stats). Each example has `ids` (one
    sequence) or `chosen`/`rejected` (two), the target fields, and `group` (a prompt key for the
    held-out split). Bad rows raise InputError naming file, line and field."""
    from rlaif.train.data import as_messages, tokenize_pairs
    from rlaif.train.rm_model import encode_parts, regression_target, truncate_pair

    stats = {"rows": len(rows.rows), "skipped_unscored": 0, "dropped": 0}
    out = []
    if mode == "pairwise":
        by_line = {ln: r for ln, r in zip(rows.lines, rows.rows)}
        exs, dropped = tokenize_pairs(tok, rows, None, soft_labels=cfg.soft_labels)
        stats["dropped"] = dropped
        for e in exs:
            row = by_line[e["row"]]
            ex = {"group": prompt_group(row["prompt"]), "row": e["row"]}
            for side in ("chosen", "rejected"):
                p_ids, c_ids = truncate_pair(e["prompt_ids"], e[f"{side}_ids"], cfg.max_length)
                ex[side], ex[f"{side}_start"] = p_ids + c_ids, len(p_ids)
            if cfg.soft_labels:
                ex["p_chosen"] = e["p_chosen"]
            if cfg.margin:
                m = row.get("margin")
                if isinstance(m, bool) or not isinstance(m, (int, float)) or math.isnan(m):
                    raise InputError(rows.path, e["row"], "margin", f"--margin needs a number in every row, got {m!r}")
                ex["margin"] = float(m)
            out.append(ex)
        return out, stats
    points = list(rubric.scale.points)
    lo, hi = rubric.scale.min, rubric.scale.max
    field = _label_field(cfg, rows) if mode == "categorical" else None
    for i, row in enumerate(rows.rows):
        path, line = rows.where(i)
        for f in ("prompt", "response"):
            if f not in row or row[f] is None:
                need = f"prompt, response, {field}" if mode == "categorical" else "prompt, response, score"
                raise InputError(path, line, f, f"missing (a {mode} row needs {need})")
        prompt = as_messages(row["prompt"], "user", path, line, "prompt")
        response = as_messages(row["response"], "assistant", path, line, "response")
        ex = {"group": prompt_group(row["prompt"]), "row": line}
        if mode == "categorical":
            ex["label"] = points.index(_label_point(row, field, rubric, path, line))
        else:
            if "score" not in row:
                raise InputError(path, line, "score", "missing: judge the rows first (`rlaif judge --mode absolute`)"
                                 " or give human labels (categorical mode)")
            score = row["score"]
            if score is None:
                stats["skipped_unscored"] += 1
                continue
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not lo <= score <= hi:
                raise InputError(path, line, "score", f"expected a number on the scale {lo}..{hi}, got {score!r}")
            if cfg.target == "distribution":
                ex["probs"] = _probs(row, score, points, path, line)
            else:
                ex["target"] = regression_target(float(score), lo, hi)
            ex["score"] = float(score)
        try:
            ex["ids"], ex["start"] = encode_parts(tok, prompt, response, cfg.max_length)
        except Exception as e:
            raise InputError(path, line, "prompt", f"cannot apply the chat template: {e}") from e
        out.append(ex)
    return out, stats


def _label_point(row, field, rubric, path, line) -> int:
    if field not in row or row[field] is None:
        raise InputError(path, line, field, "missing (a categorical row needs prompt, response and a label)")
    v = row[field]
    labels = rubric.labels or {}
    if isinstance(v, str):
        if v not in labels:
            known = ", ".join(labels) if labels else f"none: rubric '{rubric.name}' has no labels: map"
            raise InputError(path, line, field, f"label {v!r} is not in rubric '{rubric.name}' labels ({known})")
        return labels[v]
    if isinstance(v, int) and not isinstance(v, bool) and v in rubric.scale.points:
        return v
    raise InputError(path, line, field, f"expected a label name or a scale point {rubric.scale.min}.."
                     f"{rubric.scale.max}, got {v!r}")


def _probs(row, score, points, path, line) -> list[float]:
    probs = row.get("probs")
    if probs is None:           # a verdict without a distribution: all mass on its (integer) score
        if float(score) not in [float(p) for p in points]:
            raise InputError(path, line, "probs", "--target distribution needs `probs` (or an integer score)")
        return [1.0 if float(score) == p else 0.0 for p in points]
    if not isinstance(probs, dict):
        raise InputError(path, line, "probs",
                         f"expected an object {{scale point: probability}}, got {type(probs).__name__}")
    bad = [k for k in probs if k not in {str(p) for p in points}]
    if bad:
        raise InputError(path, line, "probs", f"keys {bad} are not scale points {points}")
    vals = [float(probs.get(str(p), 0.0)) for p in points]
    total = sum(vals)
    if not total > 0:
        raise InputError(path, line, "probs", "all probabilities are 0")
    return [v / total for v in vals]


def prompt_group(prompt) -> str:
    key = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()


def split_by_prompt(examples: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    """(train, held_out): a prompt is held out when its hash falls below `fraction`, so the split
    is stable across runs and machines and no prompt is on both sides."""
    if fraction <= 0:
        return examples, []
    held = [e for e in examples if int(e["group"][:8], 16) / 0xFFFFFFFF < fraction]
    train = [e for e in examples if int(e["group"][:8], 16) / 0xFFFFFFFF >= fraction]
    return train, held


# ---------------------------------------------------------------------------------------------
# Batches and losses
# ---------------------------------------------------------------------------------------------
def collate_rm(examples: list[dict], pad_id: int, pad_multiple: int = 1) -> dict:
    """Right-padded input_ids / attention_mask: pairs as [chosen…; rejected…] (2B rows, TRL's
    layout), single rows as B rows; plus the targets."""
    import torch

    from rlaif.train.data import pad_right
    from rlaif.train.rm_model import response_mask

    if "features" in examples[0] or "chosen_features" in examples[0]:     # --probe: the backbone ran once
        feats = ([e["chosen_features"] for e in examples] + [e["rejected_features"] for e in examples]
                 if "chosen_features" in examples[0] else [e["features"] for e in examples])
        b = {"features": torch.stack(feats)}
    else:
        if "chosen" in examples[0]:
            seqs = [e["chosen"] for e in examples] + [e["rejected"] for e in examples]
            starts = [e.get("chosen_start") for e in examples] + [e.get("rejected_start") for e in examples]
        else:
            seqs = [e["ids"] for e in examples]
            starts = [e.get("start") for e in examples]
        b = {"input_ids": pad_right(seqs, pad_id, pad_multiple),
             "attention_mask": pad_right([[1] * len(s) for s in seqs], 0, pad_multiple)}
        known = [s for s in starts if s is not None]
        if len(known) == len(seqs):       # the response tokens, for `mean` pooling
            b["pool_mask"] = response_mask([len(s) for s in seqs], known, b["input_ids"].size(1))
    for k in ("p_chosen", "margin", "target", "score"):
        if k in examples[0]:
            b[k] = torch.tensor([e[k] for e in examples], dtype=torch.float32)
    if "label" in examples[0]:
        b["label"] = torch.tensor([e["label"] for e in examples], dtype=torch.long)
    if "probs" in examples[0]:
        b["probs"] = torch.tensor([e["probs"] for e in examples], dtype=torch.float32)
    return b


def forward(module, batch: dict):
    """Head outputs for a batch of token ids, or of precomputed features (--probe)."""
    if "features" in batch:
        return module(features=batch["features"])
    return module(batch["input_ids"], batch["attention_mask"], pool_mask=batch.get("pool_mask"))


def rm_batch_loss(module, batch: dict, kind: str) -> tuple:
    """(loss, per-row metrics) of one micro-batch. `module(ids, attn)` -> head outputs (N, K)."""
    import torch.nn.functional as F

    out = forward(module, batch)
    if kind == "bt":
        r_c, r_r = out.squeeze(-1).chunk(2)
        per = losses.bt_losses(r_c, r_r, p_chosen=batch.get("p_chosen"), margin=batch.get("margin"))
        m = {"accuracy": (r_c > r_r).float().detach(), "margin": (r_c - r_r).detach()}
        return per.mean(), m
    if kind == "regression":
        pred = out.squeeze(-1)
        loss = F.mse_loss(pred, batch["target"].to(pred.dtype))
        return loss, {"mae": (pred - batch["target"]).abs().detach()}
    if "probs" in batch:
        loss = losses.soft_cross_entropy(out, batch["probs"]).mean()
        return loss, {"accuracy": (out.argmax(-1) == batch["probs"].argmax(-1)).float().detach()}
    loss = F.cross_entropy(out, batch["label"])
    return loss, {"accuracy": (out.argmax(-1) == batch["label"]).float().detach()}


def evaluate_rm(module, examples: list[dict], kind: str, pad_id: int, device, batch_size: int = 16,
                points: list[int] | None = None) -> dict:
    """Held-out metrics: loss, accuracy and calibration (ECE of the model's confidence in its own
    prediction); pairwise soft labels also the Brier score against p_chosen; regression the MAE
    in scale units and the accuracy of the rounded score."""
    import torch
    import torch.nn.functional as F

    if not examples:
        return {}
    outs, batches = [], []
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            b = collate_rm(examples[i:i + batch_size], pad_id)
            b = {k: v.to(device) for k, v in b.items()}
            outs.append(forward(module, b).float().cpu())
            batches.append({k: v.cpu() for k, v in b.items()})
    cat = lambda k: torch.cat([b[k] for b in batches])        # noqa: E731
    m: dict = {"eval/rows": float(len(examples))}
    if kind == "bt":
        r_c = torch.cat([o.squeeze(-1).chunk(2)[0] for o in outs])
        r_r = torch.cat([o.squeeze(-1).chunk(2)[1] for o in outs])
        p = torch.sigmoid(r_c - r_r)
        soft = cat("p_chosen") if "p_chosen" in batches[0] else None
        m["eval/loss"] = float(losses.bt_losses(r_c, r_r, p_chosen=soft).mean())
        m["eval/accuracy"] = float((r_c > r_r).float().mean())
        m["eval/ece"] = losses.ece(torch.maximum(p, 1 - p), r_c > r_r)
        if soft is not None:
            m["eval/brier"] = float(((p - soft) ** 2).mean())
        return m
    logits = torch.cat(outs)
    if kind == "regression":
        pred, target = logits.squeeze(-1), cat("target")
        assert points is not None, "a regression reward model reads its rubric's scale points"
        lo, hi = min(points), max(points)
        to_scale = lambda z: lo + (z.clamp(-1, 1) + 1) * (hi - lo) / 2      # noqa: E731
        m["eval/loss"] = float(F.mse_loss(pred, target))
        m["eval/mae"] = float((to_scale(pred) - to_scale(target)).abs().mean())
        m["eval/accuracy"] = float((to_scale(pred).round() == to_scale(target).round()).float().mean())
        return m
    probs = logits.softmax(-1)
    target = cat("probs").argmax(-1) if "probs" in batches[0] else cat("label")
    m["eval/loss"] = float(losses.soft_cross_entropy(logits, cat("probs")).mean() if "probs" in batches[0]
                           else F.cross_entropy(logits, target))
    m["eval/accuracy"] = float((probs.argmax(-1) == target).float().mean())
    m["eval/ece"] = losses.ece(probs.max(-1).values, probs.argmax(-1) == target)
    return m


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
class RMRun(Run):
    """The trainer core with a sequence-classification model and the reward module in place of the
    log-prob wrapper; checkpoints, resume and logging are the core's."""

    num_labels = 1

    def load_model(self):
        import torch

        from rlaif.train.rm_model import load_seq_cls

        cuda = self.device.type == "cuda"
        dtype = getattr(torch, self.cfg.dtype) if self.cfg.dtype else (torch.bfloat16 if cuda else torch.float32)
        model, tok = load_seq_cls(self.cfg.model, self.num_labels, dtype=dtype)
        model, tok = self.setup_model(model, tok)
        model.peft_config["default"].base_model_name_or_path = self.cfg.model
        return model, tok

    def setup_model(self, model, tok):
        from rlaif.train.lora import disable_dropout
        from rlaif.train.rm_model import cut_layers, head_of, make_reward_module

        try:
            import peft
        except ModuleNotFoundError as e:
            raise MissingDependencyError("peft", extra="train", why="for LoRA training") from e

        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        out_features = head_of(model).weight.shape[0]
        if out_features != self.num_labels:
            raise RlaifError(f"the model's head has {out_features} outputs; this reward model needs {self.num_labels}")
        disable_dropout(model)
        cut_layers(model, self.cfg.feature_layer)      # before peft: no LoRA on layers the head never sees
        gc = self.cfg.gradient_checkpointing
        gc = self.device.type == "cuda" if gc is None else gc
        if gc:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        if not self.cfg.adapter:     # a zero head: every reward starts at 0, the pairwise loss at ln 2
            import torch

            with torch.no_grad():
                for prm in head_of(model).parameters():
                    prm.zero_()
        if self.cfg.adapter:      # continue from a trained reward model (e.g. after a relabel round)
            model = peft.PeftModel.from_pretrained(model, self.cfg.adapter, is_trainable=True)
        else:
            s = self.cfg.lora
            model = peft.get_peft_model(model, peft.LoraConfig(
                r=s.r, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=s.target_modules,
                init_lora_weights=s.init_weights, task_type="SEQ_CLS"))
        disable_dropout(model)
        if self.cfg.compile:
            from rlaif.train.loop import compile_layers

            compile_layers(model)
        self.tok = tok
        self.peft_model = model
        self.lp_model = make_reward_module()(model, self.cfg.pooling, self.cfg.feature_layer)
        return model, tok


def precompute_features(run: Run, examples: list[dict], pad_id: int, batch_size: int) -> None:
    """--probe: freeze everything but the head, run the backbone once over every example and keep
    each pooled hidden state (the head's input) in the example. The LoRA weights stay at their
    zero start, so the saved adapter scores exactly as it was trained. Training the head then costs
    no forward pass of the model, which is what makes it affordable on a CPU."""
    import time

    import torch

    from rlaif.train.data import pad_right
    from rlaif.train.rm_model import head_of, response_mask

    head_params = {id(p) for p in head_of(run.peft_model.get_base_model()).parameters()}
    for prm in run.peft_model.parameters():
        prm.requires_grad_(id(prm) in head_params and prm.requires_grad)
    module = run.lp_model.to(run.device)
    jobs = []          # (example, key, ids, response start)
    for e in examples:
        if "chosen" in e:
            jobs += [(e, "chosen_features", e["chosen"], e["chosen_start"]),
                     (e, "rejected_features", e["rejected"], e["rejected_start"])]
        else:
            jobs.append((e, "features", e["ids"], e["start"]))
    jobs.sort(key=lambda j: len(j[2]))
    t0, was = time.time(), module.training
    module.eval()
    with torch.no_grad(), run.acc.autocast():
        for i in range(0, len(jobs), batch_size):
            chunk = jobs[i:i + batch_size]
            ids = pad_right([j[2] for j in chunk], pad_id).to(run.device)
            attn = pad_right([[1] * len(j[2]) for j in chunk], 0).to(run.device)
            pool = response_mask([len(j[2]) for j in chunk], [j[3] for j in chunk], ids.size(1)).to(run.device)
            for (e, key, _, _), f in zip(chunk, module.features(ids, attn, pool).float().cpu()):
                e[key] = f
            if run.main and run.cfg.progress and (i // batch_size) % 10 == 9:
                print(f"features: {i + len(chunk)}/{len(jobs)} sequences ({time.time() - t0:.0f}s)", flush=True)
    module.train(was)
    if run.main:
        print(f"features of {len(jobs)} sequences computed once in {time.time() - t0:.1f}s", flush=True)


def _kind(mode: str, target: str) -> str:
    if mode == "pairwise":
        return "bt"
    if mode == "pointwise" and target == "expected":
        return "regression"
    return "classes"


def check_feature_layer(model_path: str, feature_layer: int | None) -> None:
    """--feature-layer K within the model's decoder layers, read from its config (no weights loaded)."""
    if feature_layer is None:
        return
    from transformers import AutoConfig

    n = getattr(AutoConfig.from_pretrained(model_path), "num_hidden_layers", None)
    if n is not None and feature_layer > n:
        raise RlaifError(f"--feature-layer {feature_layer}: the model has only {n} decoder layers")


def train_rm(data, cfg: RMConfig | None = None, *, model=None, tokenizer=None, **overrides) -> dict:
    """Train a reward model (LoRA + head); the CLI's `rlaif train rm` calls this.

    data: a `rlaif pairs` dataset folder, a JSONL file or a list of rows (see the module docstring
    for the three modes). `model`/`tokenizer`: an already loaded AutoModelForSequenceClassification
    (head with the right number of outputs) instead of `cfg.model`. Writes OUT/adapter (LoRA + head
    + tokenizer + reward_model.json), OUT/metrics.jsonl (train and eval/ metrics), checkpoints.
    Returns a summary with the final held-out metrics."""
    # why long: one reading of the run top to bottom: data -> mode -> model -> loop -> card
    from rlaif.rubrics import load_rubric
    from rlaif.train.data import pad_id_of, read_rows
    from rlaif.train.loop import mean_over
    from rlaif.train.rm_model import CARD_FILE, POOLINGS, RMInfo

    if isinstance(model, str):
        model, overrides = None, dict(overrides, model=model)
    cfg = _with(cfg or RMConfig(), overrides)
    rows = read_rows(data, cfg.split)
    mode = cfg.mode if cfg.mode != "auto" else infer_mode(rows.rows[0], cfg.label_field)
    problems = []
    if mode not in MODES:
        problems.append(f"unknown mode '{cfg.mode}' (choose {', '.join(MODES)} or auto)")
    if cfg.target not in TARGETS:
        problems.append(f"unknown target '{cfg.target}' (choose {', '.join(TARGETS)})")
    if cfg.soft_labels and mode != "pairwise":
        problems.append("--soft-labels applies to pairwise data (p_chosen)")
    if cfg.pooling not in POOLINGS:
        problems.append(f"unknown pooling '{cfg.pooling}' (choose {', '.join(POOLINGS)})")
    if cfg.feature_layer is not None and cfg.feature_layer < 1:
        problems.append(f"--feature-layer must be >= 1 (a decoder layer count), got {cfg.feature_layer}")
    if not 0.0 <= cfg.eval_fraction < 1.0:
        problems.append(f"eval_fraction must be in [0, 1), got {cfg.eval_fraction}")
    if problems:
        raise RlaifError("; ".join(problems))
    if mode != "pairwise":
        rubric = _rubric_of(cfg, rows, mode)
    else:       # optional: a pairwise model's scores are mapped onto this rubric's scale when judging
        rubric = load_rubric(cfg.rubric) if cfg.rubric else None
    if mode == "categorical" and not rubric.labels:
        raise RlaifError(f"rubric '{rubric.name}' has no labels: map; categorical reward models need one")
    kind = _kind(mode, cfg.target)
    points = list(rubric.scale.points) if rubric is not None else None
    run = RMRun(cfg, "rm")
    run.num_labels = len(points) if kind == "classes" and points is not None else 1   # classes: rubric known
    if model is None:
        from rlaif.models import load_tokenizer

        # rows checked and tokenized with the model's own tokenizer before its weights load (bad input fails fast)
        path, tokenizer0 = load_tokenizer(cfg.model)
        examples, stats = build_examples(tokenizer0, rows, cfg, mode, rubric)
        check_feature_layer(path, cfg.feature_layer)     # from the config: no weights loaded if it is bad
        model, tok = run.load_model()
    else:
        model, tok = run.setup_model(model, tokenizer)
        examples, stats = build_examples(tok, rows, cfg, mode, rubric)
    train, held = split_by_prompt(examples, cfg.eval_fraction)
    if not train:
        raise RlaifError(f"{rows.path}: no training rows left (rows {stats['rows']}, unscored "
                         f"{stats['skipped_unscored']}, held out {len(held)})")
    pad = pad_id_of(tok)
    if cfg.probe:
        precompute_features(run, examples, pad, max(cfg.batch_size, 16))
    run.prepare(len(train), lambda idx: collate_rm([train[i] for i in idx], pad, cfg.pad_multiple))
    if run.main:
        print(f"reward model ({mode}, {kind} head): {len(train)} train rows, {len(held)} held out", flush=True)

    def do_eval() -> dict:
        module = run.lp_model
        was = module.training
        module.eval()
        try:
            with run.acc.autocast():
                return evaluate_rm(module, held, kind, pad, run.device, max(cfg.batch_size, 8), points)
        finally:
            module.train(was)

    history, last_eval = [], {}
    run.start_progress()
    try:
        while run.step < cfg.max_steps:
            parts = []
            for k in range(cfg.grad_accum):
                batch = run.next_batch()
                with run.accumulate(k), run.acc.autocast():
                    loss, m = rm_batch_loss(run.lp_model, batch, kind)
                    run.backward(loss)
                run.tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else 0
                parts.append(dict(m, loss=loss.detach()))
            grad_norm = run.optimizer_step()
            metrics = run.reduce(mean_over(parts))
            metrics["grad_norm"] = grad_norm
            if held and (run.step % max(1, cfg.eval_steps) == 0 or run.step == cfg.max_steps):
                last_eval = do_eval()
                metrics.update(last_eval)
            history.append(run.log(metrics, RM_KEYS))
            run.maybe_save()
    finally:
        run.stop_progress()
    if held and not last_eval:         # resumed at the end: evaluate once for the card
        last_eval = do_eval()
    summary = run.finish({"mode": mode, "kind": kind, "rows": stats, "train_rows": len(train),
                          "eval_rows": len(held), "final": history[-1] if history else {}, "eval": last_eval})
    if run.main:
        info = RMInfo(kind=kind, num_labels=run.num_labels, rubric=rubric.name if rubric else None, points=points,
                      base_model=cfg.model if isinstance(cfg.model, str) else "default", max_length=cfg.max_length,
                      labels=dict(rubric.labels) if (rubric and rubric.labels) else None, metrics=last_eval,
                      data=rows.path, mode=mode, pooling=cfg.pooling, feature_layer=cfg.feature_layer)
        (run.out / "adapter" / CARD_FILE).write_text(json.dumps(info.to_dict(), indent=2), encoding="utf-8")
    return summary


__all__ = ["RMConfig", "train_rm", "build_examples", "collate_rm", "rm_batch_loss", "evaluate_rm", "split_by_prompt"]
