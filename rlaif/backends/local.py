"""Local transformers backend: `local/default` (the embedded SmolLM2) or `local/<path or hub id>`.

Why it batches behind an async method: judge.py fires many concurrent `complete()` calls (one per
row and presentation order); this backend gathers whatever is waiting into one padded forward
pass, which is what makes a small model fast on a CPU. Batches run in a worker thread so the
event loop keeps collecting the next batch meanwhile.

Bounds: a prompt longer than `max_input_tokens` is unscored `too_long` (never cut: cutting from the
right removed the instructions and the assistant header, and the model still "scored" it); generation
is bounded by tokens, not wall time (`in_process`: the engine sets no timeout), and a batch whose
callers have all gone is stopped at its next token by a stopping criterion.

Scoring (max_tokens == 1 with `options`) reads the next-token distribution from one forward pass
and reports the exact log-probability of each option, e.g. "1".."5" or "A"/"B" (G-Eval style).
An option is matched as its bare token and its space-prefixed token (both are how a model may
start its answer). Options that are several tokens long, or share a first token ("1" and "10"),
are scored as whole continuations instead, with the mass of longer options subtracted from their
prefixes, so P("1") does not include P("10").
"""
from __future__ import annotations

import asyncio
import math
import threading
from dataclasses import dataclass
from functools import lru_cache

from rlaif.errors import BackendError
from rlaif.records import Completion, GenParams, Message, Usage


@dataclass
class _Pending:
    messages: list[Message]
    params: GenParams
    future: asyncio.Future


class LocalBackend:
    supports_logprobs = True
    # In-process generation is bounded by tokens (max_new_tokens), not by wall time: on a busy CPU a
    # 512-token verdict may take minutes, and a network-style timeout (60 s) failed every row while
    # the abandoned generation kept running. The engine applies no wall-clock timeout to an
    # in-process backend and never retries its timeouts (a retry would only add CPU load).
    in_process = True

    def __init__(self, model: str = "default", *, model_obj=None, tokenizer=None, batch_size: int = 8,
                 device: str | None = None, dtype=None, max_input_tokens: int = 4096,
                 max_new_tokens: int | None = None):
        self.name = f"local/{model}"
        self.model_name = model
        self.batch_size = batch_size          # 8: a good CPU trade-off between padding waste and overhead
        self.device = device
        self.dtype = dtype
        # A prompt longer than this is not judged (unscored `too_long`): cutting it from the right,
        # as tokenizer truncation does, removed the end of the response, the closing tag, the
        # "reply with the score" line and the assistant header, and the model still "scored" it.
        self.max_input_tokens = max_input_tokens
        # An optional cap on generated tokens per request, below what the judge asks (None: as asked).
        self.max_new_tokens = max_new_tokens
        self._model, self._tok = model_obj, tokenizer
        self._load_lock = threading.Lock()
        self._queue: asyncio.Queue | None = None
        self._worker_loop: asyncio.AbstractEventLoop | None = None
        self._option_cache: dict[tuple, object] = {}

    # -- loading -------------------------------------------------------------------------
    def load(self):
        with self._load_lock:
            if self._model is None or self._tok is None:
                from rlaif.models import load_model
                try:
                    self._model, self._tok = load_model(self.model_name, device=self.device, dtype=self.dtype)
                except OSError as e:
                    raise BackendError(f"cannot load local model '{self.model_name}': {e}",
                                       code="model_not_found") from e
            tok = self._tok
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            tok.padding_side = "left"
        return self._model, self._tok

    # -- the protocol ------------------------------------------------------------------------
    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._worker_loop is not loop:
            self._queue, self._worker_loop = asyncio.Queue(), loop
            loop.create_task(self._worker(self._queue))
        fut = loop.create_future()
        await self._queue.put(_Pending(messages, params, fut))
        return await fut

    async def _worker(self, queue: asyncio.Queue):
        while True:
            first = await queue.get()
            await asyncio.sleep(0)            # let every coroutine that is ready enqueue first
            batch = [first]
            while len(batch) < self.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            groups: dict[str, list[_Pending]] = {}
            for p in batch:
                # The seed is per request (see _SeededSampler), so requests differing only in seed share a batch.
                key = sorted((k, v) for k, v in p.params.key().items() if k != "seed")
                groups.setdefault(repr(key), []).append(p)
            for group in groups.values():
                group = [p for p in group if not p.future.done()]       # callers that gave up are not run
                if not group:
                    continue
                # Cancellation that stops the work: when every caller of a batch has gone (cancelled,
                # or the job ended), the flag makes generate() stop at its next token; the thread
                # does not run on for minutes burning the CPU.
                stop = threading.Event()
                remaining = [len(group)]

                def gone(fut, stop=stop, remaining=remaining):
                    if fut.cancelled():
                        remaining[0] -= 1
                        if remaining[0] <= 0:
                            stop.set()
                for p in group:
                    p.future.add_done_callback(gone)
                try:
                    results = await asyncio.to_thread(self._run, [p.messages for p in group], group[0].params,
                                                      [p.params.seed for p in group], stop)
                except asyncio.CancelledError:
                    stop.set()
                    raise
                except BaseException as e:  # noqa: BLE001 - delivered to each waiting caller
                    err = e if isinstance(e, BackendError) else BackendError(f"{type(e).__name__}: {e}",
                                                                             code="backend_error")
                    for p in group:
                        if not p.future.done():
                            p.future.set_exception(err)
                    continue
                for p, r in zip(group, results):
                    if not p.future.done():
                        if isinstance(r, BaseException):
                            p.future.set_exception(r)
                        else:
                            p.future.set_result(r)

    # -- the work (runs in a thread) ---------------------------------------------------------
    def _texts(self, batch_messages: list[list[Message]]) -> list[str]:
        _model, tok = self.load()
        texts = []
        for msgs in batch_messages:
            if getattr(tok, "chat_template", None):
                texts.append(tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
            else:   # a base model: plain concatenation
                texts.append("\n\n".join(m["content"] for m in msgs) + "\n\n")
        return texts

    def _encode(self, batch_messages: list[list[Message]], ids: list[list[int]] | None = None):
        """The padded batch; `ids`: the prompts already tokenized (by _run, which measured them)."""
        model, tok = self.load()
        if ids is None:
            ids = tok(self._texts(batch_messages), add_special_tokens=False)["input_ids"]
        # No truncation: _run has already set aside every prompt longer than max_input_tokens.
        enc = tok.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        return model, tok, enc.to(model.device)

    def _run(self, batch_messages: list[list[Message]], params: GenParams,
             seeds: list[int | None] | None = None, stop: threading.Event | None = None) -> list:
        """One Completion, or a BackendError (`too_long`), per request, in order."""
        _model, tok = self.load()
        all_ids = tok(self._texts(batch_messages), add_special_tokens=False)["input_ids"]
        out: list = [None] * len(all_ids)
        keep = []
        for i, ids in enumerate(all_ids):
            n = len(ids)
            if n > self.max_input_tokens:
                out[i] = BackendError(f"the prompt is {n} tokens, more than this local judge's max_input_tokens "
                                      f"({self.max_input_tokens}); it was not judged (cutting it would remove the "
                                      "end of the response or the instructions after it)", code="too_long")
            else:
                keep.append(i)
        if keep:
            msgs, txts = [batch_messages[i] for i in keep], [all_ids[i] for i in keep]
            if params.max_tokens == 1 and params.options:
                res = self._score(msgs, params, txts)
            else:
                res = self._generate(msgs, params, [seeds[i] for i in keep] if seeds else None, txts, stop)
            for i, r in zip(keep, res, strict=True):
                out[i] = r
        return out

    def _option_ids(self, tok, options: list[str]):
        """{option: [single-token ids]} when every option is one token with a unique first token, else None."""
        key = tuple(options)
        if key not in self._option_cache:
            ids: dict[str, list[int]] = {}
            ok = True
            for o in options:
                variants = []
                for v in (o, " " + o):
                    t = tok.encode(v, add_special_tokens=False)
                    if len(t) == 1:
                        variants.append(t[0])
                if not variants:
                    ok = False
                ids[o] = sorted(set(variants))
            flat = [i for v in ids.values() for i in v]
            if len(flat) != len(set(flat)):
                ok = False
            self._option_cache[key] = ids if ok else None
        return self._option_cache[key]

    def _score(self, batch_messages, params: GenParams, ids: list[list[int]] | None = None) -> list[Completion]:
        import torch

        model, tok, enc = self._encode(batch_messages, ids)
        from rlaif.models import last_token_logits

        with torch.inference_mode():   # row chunks: a padded batch's CPU attention is rows × T² (issue 14 #10)
            last = last_token_logits(model, enc["input_ids"], enc["attention_mask"])
        logprobs = torch.log_softmax(last.float(), dim=-1)
        options = params.options
        assert options, "_score runs only for a one-token request with options (_run)"
        option_ids = self._option_ids(tok, options)
        if option_ids is not None:
            opt_lp = [{o: float(torch.logsumexp(logprobs[i, ids], 0)) for o, ids in option_ids.items()}
                      for i in range(len(batch_messages))]
        else:
            opt_lp = self._score_sequences(model, tok, enc, options)
        k = params.top_logprobs or 5
        top = torch.topk(logprobs, k, dim=-1)
        results = []
        for i in range(len(batch_messages)):
            alts = {tok.decode([int(t)]): float(v) for v, t in zip(top.values[i], top.indices[i])}
            text = max(opt_lp[i], key=opt_lp[i].__getitem__) if opt_lp[i] else tok.decode([int(top.indices[i, 0])])
            results.append(Completion(text=text, option_logprobs=opt_lp[i], top_logprobs=[alts],
                                      usage=Usage(int(enc["attention_mask"][i].sum()), 1), finish_reason="length"))
        return results

    def _score_sequences(self, model, tok, enc, options: list[str]) -> list[dict[str, float]]:
        """Exact log P(option) for multi-token options, one forward pass per option."""
        import torch

        seqs = {o: tok.encode(o, add_special_tokens=False) for o in options}
        n = enc["input_ids"].shape[0]
        raw: list[dict[str, float]] = [{} for _ in range(n)]
        for o, ids in seqs.items():
            add = torch.tensor(ids, device=enc["input_ids"].device).unsqueeze(0).expand(n, -1)
            input_ids = torch.cat([enc["input_ids"], add], dim=1)
            mask = torch.cat([enc["attention_mask"], torch.ones_like(add)], dim=1)
            with torch.inference_mode():
                logits = model(input_ids=input_ids, attention_mask=mask, logits_to_keep=len(ids) + 1).logits.float()
            lp = torch.log_softmax(logits[:, :-1, :], dim=-1)        # predictions for the option tokens
            target = add.unsqueeze(-1)
            total = lp.gather(-1, target).squeeze(-1).sum(-1)
            for i in range(n):
                raw[i][o] = float(total[i])
        out = []
        for i in range(n):
            probs = {o: math.exp(v) for o, v in raw[i].items()}
            excl = {}
            for o in options:
                longer = sum(probs[o2] for o2 in options if o2 != o and seqs[o2][:len(seqs[o])] == seqs[o])
                p = probs[o] - longer
                excl[o] = math.log(p) if p > 0 else float("-inf")
            out.append({o: v for o, v in excl.items() if v != float("-inf")})
        return out

    def _generate(self, batch_messages, params: GenParams, seeds: list[int | None] | None = None,
                  ids: list[list[int]] | None = None, stop: threading.Event | None = None) -> list[Completion]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        model, tok, enc = self._encode(batch_messages, ids)
        do_sample = params.temperature > 0
        seeds = seeds if seeds is not None else [params.seed] * len(batch_messages)
        budget = params.max_tokens if self.max_new_tokens is None else min(params.max_tokens, self.max_new_tokens)
        kwargs = dict(max_new_tokens=budget, do_sample=do_sample, pad_token_id=tok.pad_token_id)
        if stop is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([_StopFlag(stop)])
        if do_sample and any(s is not None for s in seeds):
            # Seeded sampling: one random stream per request (Gumbel-max, then greedy decoding), so a
            # request's text depends on its own seed, not on which requests share its batch.
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None,
                          logits_processor=LogitsProcessorList([_SeededSampler(seeds, params.temperature, params.top_p,
                                                                               enc["input_ids"].device)]))
        elif do_sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=None)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:]
        results = []
        stop_ids = {tok.pad_token_id, tok.eos_token_id}
        gen_eos = getattr(model.generation_config, "eos_token_id", None)
        stop_ids |= set(gen_eos) if isinstance(gen_eos, (list, tuple)) else {gen_eos}
        for i in range(len(batch_messages)):
            ids, finish = [], "length"
            for t in new[i].tolist():
                if t in stop_ids:
                    finish = "stop"
                    break
                ids.append(t)
            text = tok.decode(ids, skip_special_tokens=True)
            for s in params.stop or []:
                if s in text:
                    text, finish = text[:text.index(s)], "stop"
            results.append(Completion(text=text, usage=Usage(int(enc["attention_mask"][i].sum()), len(ids)),
                                      finish_reason=finish))
        return results


@lru_cache(maxsize=1)
def _stop_flag_class():
    from transformers import StoppingCriteria

    class StopFlag(StoppingCriteria):
        """Ends generate() at the next token once `flag` is set (every caller of the batch is gone)."""

        def __init__(self, flag: threading.Event):
            self.flag = flag

        def __call__(self, input_ids, scores, **kwargs):
            import torch

            return torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool, device=input_ids.device)

    return StopFlag


def _StopFlag(flag: threading.Event):
    return _stop_flag_class()(flag)


def top_p_filter(logits, top_p: float):
    """Nucleus filtering: keep the smallest set of tokens whose probability reaches `top_p`
    (always at least the most likely one); the rest get -inf."""
    import torch

    if top_p >= 1.0:
        return logits
    sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)
    cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    drop_sorted = cum - torch.softmax(sorted_logits, dim=-1) >= top_p     # mass before this token already enough
    drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


class _SeededSampler:
    """A logits processor that turns greedy decoding into sampling with one torch.Generator per row.

    argmax(logits / T + Gumbel noise) over the top-p set is an exact draw from the same distribution
    multinomial sampling uses (the Gumbel-max trick), but row i's noise comes from its own
    generator, seeded by its request's seed. So the same seed gives the same text whatever else is
    in the batch (up to float noise from padding, which almost never changes a draw)."""

    def __init__(self, seeds: list[int | None], temperature: float, top_p: float, device):
        import random

        import torch

        self.temperature, self.top_p = temperature, top_p
        # A request without a seed gets a fresh random one: unseeded means not reproducible, as asked.
        self.gens = [torch.Generator(device=device)
                     .manual_seed(s if s is not None else random.SystemRandom().randrange(2**63)) for s in seeds]

    def __call__(self, input_ids, scores):
        import torch

        scores = top_p_filter(scores.float() / self.temperature, self.top_p)
        u = torch.stack([torch.rand(scores.shape[-1], generator=g, device=scores.device) for g in self.gens])
        gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
        return scores + gumbel
