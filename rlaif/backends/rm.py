"""`rm/PATH`: a trained reward model (`rlaif train rm`) answering wherever a judge does.

Why a backend that judges rows instead of completing chat messages: a reward model reads the
conversation (prompt + response) itself, not a judge prompt rendered from a rubric, and its verdict
is a number, not text. `Judge.judge_row` hands whole rows to a backend that has `judge_row`
(this one), so `rlaif judge`, `pairs`, `eval`, `rubric test` and juries use it unchanged:
- absolute: its output mapped onto the rubric's scale (rm_model.scale_score; a categorical model's
  class probabilities become `probs` over the scale points);
- pairwise: P(A) = σ(r_A − r_B), position-free by construction (both responses are scored alone);
- rank: responses ordered by score.
Every row records `method: reward_model`. Concurrent rows are gathered into padded batches (one
forward pass per batch, in a worker thread, like the local backend), so judging N rows costs
about N / batch_size forward passes of the backbone and no generation at all.
"""
from __future__ import annotations

import asyncio
import threading

from rlaif.errors import BackendError, RlaifError
from rlaif.records import Completion, GenParams, Judgment, Message

METHOD = "reward_model"


class RMBackend:
    supports_logprobs = True        # never asked to generate: Judge must not switch to generative mode
    judge_method = METHOD

    def __init__(self, path: str, *, batch_size: int = 32, device: str | None = None, model=None, tokenizer=None):
        from rlaif.train.rm_model import read_info

        self.name = f"rm/{path}"
        self.path = path
        self.info = read_info(path)           # fails now, naming the folder, if PATH is not a reward model
        self.batch_size = batch_size          # 32: short rows, one forward each; padding waste stays small
        self.device = device
        self._preloaded = (model, tokenizer)
        self._rm = None
        self._lock = threading.Lock()
        self._queue: asyncio.Queue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.rows_scored = 0

    def model(self):
        from rlaif.train.rm_model import RewardModel

        with self._lock:
            if self._rm is None:
                m, t = self._preloaded
                self._rm = RewardModel(self.path, device=self.device, batch_size=self.batch_size, model=m, tokenizer=t)
        return self._rm

    async def complete(self, messages: list[Message], params: GenParams) -> Completion:
        raise BackendError(f"{self.name} is a reward model: it scores rows (rlaif judge / pairs / eval / rubric test, "
                           "GRPO --reward rm:PATH) and cannot generate text", code="not_generative")

    # -- batching ---------------------------------------------------------------------------
    def _score_batch(self, prompts: list, responses: list):
        return self.model().outputs(prompts, responses)

    async def _outputs(self, prompt, response) -> list[float]:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:
            self._queue, self._loop = asyncio.Queue(), loop
            loop.create_task(self._worker(self._queue))
        fut = loop.create_future()
        await self._queue.put((prompt, response, fut))
        return await fut

    async def _worker(self, queue: asyncio.Queue):
        while True:
            first = await queue.get()
            await asyncio.sleep(0)            # let every ready coroutine enqueue first
            batch = [first]
            while len(batch) < self.batch_size * 4 and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                prompts, responses = [x[0] for x in batch], [x[1] for x in batch]
                outs = await asyncio.to_thread(self._score_batch, prompts, responses)   # loads on first use
            except BaseException as e:  # noqa: BLE001 - delivered to every waiting row
                err = e if isinstance(e, (BackendError, RlaifError)) else BackendError(f"{type(e).__name__}: {e}")
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            self.rows_scored += len(batch)
            for (*_, fut), o in zip(batch, outs):
                if not fut.done():
                    fut.set_result(o)

    # -- verdicts ---------------------------------------------------------------------------
    def check_rubric(self, rubric) -> None:
        if self.info.rubric and self.info.rubric != rubric.name:
            raise RlaifError(f"{self.name} was trained for rubric '{self.info.rubric}', not '{rubric.name}'")

    async def judge_row(self, rubric, row: dict, mode: str, tie_margin: float = 0.05) -> Judgment:
        from rlaif.train.rm_model import class_probs, preference, reward_value, scale_score

        self.check_rubric(rubric)
        lo, hi = rubric.scale.min, rubric.scale.max
        kind, points = self.info.kind, self.info.points
        if mode == "absolute":
            out = await self._outputs(row["prompt"], row["response"])
            probs = None
            if kind == "classes":
                probs = {str(p): v for p, v in zip(rubric.scale.points, class_probs(out))}
            return Judgment("absolute", self.name, rubric.id, score=scale_score(kind, out, lo, hi), probs=probs)
        if mode == "pairwise":
            a, b = await asyncio.gather(self._outputs(row["prompt"], row["response_a"]),
                                        self._outputs(row["prompt"], row["response_b"]))
            p_a = preference(reward_value(kind, a, points), reward_value(kind, b, points))
            pref = "tie" if abs(p_a - 0.5) <= tie_margin else ("a" if p_a > 0.5 else "b")
            return Judgment("pairwise", self.name, rubric.id, p_a=p_a, preference=pref)
        outs = await asyncio.gather(*(self._outputs(row["prompt"], r) for r in row["responses"]))
        scores = [reward_value(kind, o, points) for o in outs]
        ranking = sorted(range(len(scores)), key=lambda k: -scores[k])
        return Judgment("rank", self.name, rubric.id, ranking=ranking, scores=scores)
