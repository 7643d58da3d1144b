"""A reward model: LoRA on any causal LM plus a small linear head, saved as one peft adapter.

Why this shape: `AutoModelForSequenceClassification` gives every decoder architecture transformers
knows (Llama, Qwen, Mistral, Gemma, ...) a `score` layer on the hidden state; peft's SEQ_CLS task saves
that layer beside the LoRA weights (`modules_to_save`), so the adapter folder holds everything that
was trained, and checkpoints and exact resume work through the trainer core unchanged. The head reads
the hidden state of the last attended token (the end of the rendered prompt + response), the same
position TRL's RewardTrainer scores.

Three kinds of head, recorded in `reward_model.json` next to the adapter:
- `bt`: one scalar reward (Bradley–Terry pairs); only differences mean something;
- `regression`: one number, the rubric score rescaled to [-1, 1] (pointwise, expected score);
- `classes`: one logit per scale point (categorical labels, or the judge's distribution over the scale).

`RewardModel` loads one for inference (LoRA merged) and scores (prompt, response) rows in
length-sorted batches;
`scale_score` / `class_probs` map its outputs onto a rubric's scale (pure functions, tested).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from rlaif.errors import RlaifError

CARD_FILE = "reward_model.json"
FORMAT = "rlaif-reward-model"
KINDS = ("bt", "regression", "classes")
# What the head reads: `last` the hidden state of the last attended token (TRL's RewardTrainer);
# `mean` the mean over the attended tokens after the rendered prompt (the response and its end
# tokens), which a linear probe separates better for properties of the whole answer (measured for
# the over-refusal classifier, docs/reward_models.md section 5).
POOLINGS = ("last", "mean")


@dataclass
class RMInfo:
    """What `reward_model.json` records: enough to load the model and map its outputs to a rubric."""

    kind: str                       # bt | regression | classes
    num_labels: int
    rubric: str | None              # the rubric whose scale the outputs live on (None: bt without one)
    points: list[int] | None        # scale points (classes / regression)
    base_model: str
    max_length: int | None = 512
    labels: dict | None = None      # the rubric's label map, for categorical models
    metrics: dict | None = None     # held-out metrics at the end of training
    data: str | None = None
    mode: str | None = None         # pairwise | pointwise | categorical
    pooling: str = "last"           # last | mean (see POOLINGS); absent in older cards: last
    feature_layer: int | None = None    # the head reads the state after this many decoder layers (None: final)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {"format": FORMAT, "version": 1, **asdict(self)}


def shipped_model_dir(name: str) -> Path | None:
    """The folder of a reward model shipped inside the package (rlaif/_models/NAME), or None."""
    d = Path(__file__).resolve().parents[1] / "_models" / name
    return d if (d / CARD_FILE).exists() else None


def adapter_dir(path: str | Path) -> Path:
    """OUT (a `train rm` output folder) or OUT/adapter -> the folder holding the adapter and card.
    A bare name that is no folder here names a model shipped with rlaif (`rm/over_refusal`), so the
    shipped classifier is reachable from any working directory."""
    p = Path(path)
    if not p.exists() and len(p.parts) == 1 and (shipped := shipped_model_dir(p.name)) is not None:
        return shipped
    if (p / CARD_FILE).exists():
        return p
    if (p / "adapter" / CARD_FILE).exists():
        return p / "adapter"
    if not p.exists():
        raise RlaifError(f"rm/{path}: no such folder")
    raise RlaifError(f"rm/{path}: not a reward model (no {CARD_FILE} in {p} or {p / 'adapter'}; "
                     "train one with `rlaif train rm DATA -o OUT`)")


def read_info(path: str | Path) -> RMInfo:
    d = adapter_dir(path)
    f = d / CARD_FILE
    try:
        raw = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RlaifError(f"{f}: unreadable reward-model card ({e})") from e
    if raw.get("format") != FORMAT:
        raise RlaifError(f"{f}: field 'format': expected '{FORMAT}', got {raw.get('format')!r}")
    if raw.get("kind") not in KINDS:
        raise RlaifError(f"{f}: field 'kind': expected one of {', '.join(KINDS)}, got {raw.get('kind')!r}")
    if raw.get("pooling", "last") not in POOLINGS:
        raise RlaifError(f"{f}: field 'pooling': expected one of {', '.join(POOLINGS)}, got {raw.get('pooling')!r}")
    layer = raw.get("feature_layer")
    if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or layer < 1):
        raise RlaifError(f"{f}: field 'feature_layer': expected a layer count >= 1 or null, got {layer!r}")
    fields = {k: raw.get(k) for k in RMInfo.__dataclass_fields__ if k in raw}
    return RMInfo(**fields)


# ---------------------------------------------------------------------------------------------
# Outputs -> a rubric's scale (pure)
# ---------------------------------------------------------------------------------------------
def regression_target(score: float, lo: float, hi: float) -> float:
    """A score on [lo, hi] rescaled to [-1, 1] (what the regression head learns; 0 = mid-scale,
    so a zero-initialised head starts at the middle of the scale)."""
    return 0.0 if hi == lo else 2.0 * (score - lo) / (hi - lo) - 1.0


def scale_score(kind: str, outputs: list[float], lo: float, hi: float) -> float:
    """One row's outputs -> a score on [lo, hi].
    - regression: the inverse of regression_target, clipped to the scale;
    - bt: lo + (hi - lo)·σ(r): a monotone map of the reward (its absolute level is arbitrary; the
      mid-scale is r = 0);
    - classes: the expected score over the scale points lo..hi."""
    if kind == "regression":
        return min(hi, max(lo, lo + (outputs[0] + 1.0) * (hi - lo) / 2.0))
    if kind == "bt":
        return lo + (hi - lo) / (1.0 + math.exp(-outputs[0]))
    probs = class_probs(outputs)
    points = [lo + (hi - lo) * k / max(1, len(probs) - 1) for k in range(len(probs))]
    return sum(p * x for p, x in zip(probs, points))


def class_probs(logits: list[float]) -> list[float]:
    m = max(logits)
    e = [math.exp(x - m) for x in logits]
    s = sum(e)
    return [x / s for x in e]


def preference(r_a: float, r_b: float) -> float:
    """P(A is better) = σ(r_A − r_B): position-free by construction."""
    return 1.0 / (1.0 + math.exp(-(r_a - r_b)))


def reward_value(kind: str, outputs: list[float], points: list[int] | None) -> float:
    """The scalar a GRPO reward / pairwise comparison uses: the raw reward (bt), the rescaled score
    (regression), the expected scale point (classes)."""
    if kind == "classes":
        pts = points or list(range(len(outputs)))
        return sum(p * x for p, x in zip(class_probs(outputs), pts))
    return float(outputs[0])


# ---------------------------------------------------------------------------------------------
# The module (training and inference)
# ---------------------------------------------------------------------------------------------
def last_token_index(attention_mask):
    """Index of the last attended token of each row (right or left padding)."""
    import torch

    pos = torch.arange(attention_mask.size(1), device=attention_mask.device)
    return (pos * attention_mask.long()).argmax(-1)


def cut_layers(model, feature_layer: int | None) -> bool:
    """Drop the decoder layers after `feature_layer` (and the final norm, which only the last layer's
    output passes through) from a sequence-classification model, in place, before peft wraps it:
    a head reading layer K then costs K layers per forward, and its output is unchanged (the state
    after layer K is the same with or without the layers above it). False (nothing cut) when there
    is nothing to cut or the architecture keeps its layers elsewhere than `.layers` / `.norm`."""
    import torch

    if feature_layer is None:
        return False
    backbone = getattr(model, model.base_model_prefix, None)
    layers = getattr(backbone, "layers", None)
    if backbone is None or not isinstance(layers, torch.nn.ModuleList) or not hasattr(backbone, "norm"):
        return False
    if feature_layer > len(layers):
        raise RlaifError(f"feature_layer {feature_layer}: the model has only {len(layers)} decoder layers")
    if feature_layer == len(layers):       # hidden_states[L] is the normed final state: keep the model whole
        return False
    backbone.layers = torch.nn.ModuleList(list(layers)[:feature_layer])
    backbone.norm = torch.nn.Identity()
    return True


def make_reward_module():
    import torch

    class RewardModule(torch.nn.Module):
        """The peft SEQ_CLS model -> head outputs (B, K) on each row's pooled hidden state. A module
        (not a function) so accelerate / DDP / FSDP wrap the call that owns the parameters.
        `pooling` / `feature_layer`: what the head reads (RMInfo; defaults: the final layer's state
        at the last attended token)."""

        def __init__(self, model, pooling: str = "last", feature_layer: int | None = None):
            super().__init__()
            if pooling not in POOLINGS:
                raise RlaifError(f"pooling '{pooling}': expected one of {', '.join(POOLINGS)}")
            self.model = model
            self.pooling = pooling
            self.feature_layer = feature_layer

        def _base(self):
            return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

        def features(self, input_ids, attention_mask, pool_mask=None):
            """The pooled hidden state (B, H) the head reads. `pool_mask` (B, T): the tokens `mean`
            pooling averages (the response's); default every attended token."""
            base = self._base()
            backbone = getattr(base, base.base_model_prefix)
            k = self.feature_layer
            out = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                           output_hidden_states=k is not None)
            h = out.last_hidden_state if k is None else out.hidden_states[k]
            if self.pooling == "mean":
                w = (attention_mask if pool_mask is None else pool_mask).to(h.dtype).unsqueeze(-1)
                return (h * w).sum(1) / w.sum(1).clamp(min=1)
            return h[torch.arange(h.size(0), device=h.device), last_token_index(attention_mask)]

        def forward(self, input_ids=None, attention_mask=None, features=None, pool_mask=None):
            """Head outputs (B, K); `features` (precomputed pooled states, --probe) skip the backbone."""
            pooled = self.features(input_ids, attention_mask, pool_mask) if features is None else features
            head = head_of(self._base())
            return head(pooled.to(head.weight.dtype if hasattr(head, "weight") else pooled.dtype)).float()

    return RewardModule


def head_of(base):
    head = getattr(base, "score", None)
    if head is None:
        head = getattr(base, "classifier", None)
    if head is None:
        raise RlaifError(f"{type(base).__name__} has no `score` head; "
                         "load the base with AutoModelForSequenceClassification")
    return head


def load_seq_cls(model_name: str, num_labels: int, device=None, dtype=None):
    """The base causal LM as a sequence classifier with `num_labels` outputs (its head new, zeroed)
    and its tokenizer (pad token set)."""
    import logging

    import torch
    from transformers import AutoModelForSequenceClassification

    from rlaif.models import load_tokenizer

    path, tok = load_tokenizer(model_name)
    log = logging.getLogger("transformers.modeling_utils")
    level = log.level
    log.setLevel(logging.ERROR)       # "score.weight newly initialized": expected, it is the head we train
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels, dtype=dtype)
    except ValueError as e:
        raise RlaifError(f"model '{model_name}' has no sequence-classification form in transformers: {e}") from e
    finally:
        log.setLevel(level)
    model.config.pad_token_id = tok.pad_token_id
    with torch.no_grad():
        head_of(model).weight.zero_()
    if device is not None:
        model.to(device)
    return model, tok


def encode_row(tok, prompt, response, max_length: int | None):
    """Token ids of prompt + response as the model would see the conversation. Over max_length the
    response keeps its start and at least half of the budget; the prompt keeps its start."""
    return encode_parts(tok, prompt, response, max_length)[0]


def encode_parts(tok, prompt, response, max_length: int | None) -> tuple[list[int], int]:
    """(encode_row's ids, the index where the response starts: what `mean` pooling averages from)."""
    from rlaif.train.data import encode

    p, (c,) = encode(tok, prompt, [response])
    p, c = truncate_pair(p, c, max_length)
    return p + c, len(p)


def truncate_pair(prompt_ids: list[int], completion_ids: list[int], max_length: int | None) -> tuple[list, list]:
    """(prompt, completion) within max_length together: the completion keeps its start and at least
    half of the budget (what it says first decides most verdicts), the prompt keeps its start."""
    p, c = prompt_ids, completion_ids
    if max_length is not None and len(p) + len(c) > max_length:
        keep_c = min(len(c), max(max_length // 2, max_length - len(p)))
        p, c = p[:max_length - keep_c], c[:keep_c]
    return p, c


def join_truncated(prompt_ids: list[int], completion_ids: list[int], max_length: int | None) -> list[int]:
    """prompt + completion within max_length (truncate_pair)."""
    p, c = truncate_pair(prompt_ids, completion_ids, max_length)
    return p + c


def response_mask(lengths: list[int], starts: list[int], width: int):
    """(B, width) 0/1 mask of each right-padded row's response tokens [start, length): the tokens
    `mean` pooling averages. A row whose response was cut away entirely keeps its last token."""
    import torch

    m = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, (n, s) in enumerate(zip(lengths, starts)):
        m[i, min(s, n - 1):n] = 1
    return m


# On a CPU a batch is capped at this many padded tokens (rows × longest row): it bounds the
# activations and attention scores a batch holds (32 rows × 512 tokens would hold ~0.4 GB) and keeps
# them nearer the core's caches. Speed on the embedded SmolLM2 (rows of ~250 tokens, 1 OMP thread,
# bench/rm_inference_levers.py): within noise of 32-row batches, at most a few % faster. On a GPU
# the cap is off: there a large batch is what keeps the device busy.
CPU_BATCH_TOKENS = 1024


def length_batches(lengths: list[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Row indices in batches of similar length: sorted by length, at most `batch_size` rows, and
    (when max_tokens is given) rows × longest row ≤ max_tokens, one row at least."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out: list[list[int]] = []
    for i in order:
        b = out[-1] if out else None
        if b is not None and len(b) < batch_size and (max_tokens is None or (len(b) + 1) * lengths[i] <= max_tokens):
            b.append(i)
        else:
            out.append([i])
    return out


class RewardModel:
    """A trained reward model for inference: `outputs(prompts, responses)` -> [[head outputs], ...]
    in length-sorted batches under inference_mode.

    Loaded from its folder, the LoRA weights are merged into the base (`merge=True`): inference
    then runs plain linear layers instead of base + two low-rank matmuls per adapted layer (17%
    less CPU time with r=16 on every linear layer, bench/rm_inference_levers.py; outputs equal to
    a few 1e-6, tested). A model passed in (`model=`, e.g. the one being trained) is used as it is."""

    def __init__(self, path: str | Path, device: str | None = None, batch_size: int = 16, model=None, tokenizer=None,
                 merge: bool = True):
        import torch

        self.dir = adapter_dir(path)
        self.info = read_info(self.dir)
        self.batch_size = batch_size
        if model is None:
            from peft import PeftModel

            dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
            base, tok = load_seq_cls(self.info.base_model, self.info.num_labels, device=dev)
            cut_layers(base, self.info.feature_layer)       # as in training: the adapter has no later layers
            try:
                model = PeftModel.from_pretrained(base, str(self.dir))
            except (OSError, ValueError, KeyError) as e:
                raise RlaifError(f"{self.dir}: cannot load the reward-model adapter: {e}") from e
            if merge:
                model = model.merge_and_unload()     # the trained head (modules_to_save) stays in place
            tokenizer = tok
        model.eval()
        self.model, self.tok = model, tokenizer
        self.module = make_reward_module()(model, self.info.pooling, self.info.feature_layer)
        self.device = next(model.parameters()).device
        self.max_batch_tokens = CPU_BATCH_TOKENS if self.device.type == "cpu" else None
        self.tokens_scored = 0          # tokens read so far (after truncation): the bench prints them per row

    def outputs(self, prompts: list, responses: list) -> list[list[float]]:
        import torch

        from rlaif.train.data import pad_id_of, pad_right

        parts = [encode_parts(self.tok, p, r, self.info.max_length) for p, r in zip(prompts, responses)]
        seqs = [ids for ids, _ in parts]
        self.tokens_scored += sum(len(s) for s in seqs)
        out: list[list[float] | None] = [None] * len(seqs)
        pad = pad_id_of(self.tok)
        with torch.inference_mode():
            for idx in length_batches([len(s) for s in seqs], self.batch_size, self.max_batch_tokens):
                ids = pad_right([seqs[i] for i in idx], pad).to(self.device)
                attn = pad_right([[1] * len(seqs[i]) for i in idx], 0).to(self.device)
                pool = response_mask([len(seqs[i]) for i in idx], [parts[i][1] for i in idx], ids.size(1))
                for i, row in zip(idx, self.module(ids, attn, pool_mask=pool.to(self.device)).tolist()):
                    out[i] = row
        return out  # type: ignore[return-value]

    def rewards(self, prompts: list, responses: list) -> list[float]:
        return [reward_value(self.info.kind, o, self.info.points) for o in self.outputs(prompts, responses)]
