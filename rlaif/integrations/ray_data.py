"""Ray Data: `judge_dataset(ds, rubric, judge=...)` and `sample_dataset(ds, n, model=...)` give the rows
`rlaif judge` / `rlaif sample` give, computed on a pool of Ray actors.

Why: corpora of millions of rows judged by local models (a vLLM server per GPU, or an in-process model) need
more than one machine's event loop. Ray Data streams the rows through a pool of actors; each actor holds one
judge backend (a loaded local model is loaded once per actor, not per batch) and the request ledger, and judges
its batch with `rlaif.judge.judge`, so a row's verdict is exactly the one `rlaif judge` gives for it.

Faults: Ray Data restarts a dead actor and re-runs the batch it held (`max_restarts` / `max_task_retries`
below), so a killed actor's rows are judged again, not lost; answers it had already received are in the ledger
(for API judges; local/fake judges are free and deterministic), so they are not paid for twice.

Row format: Ray Data stores rows as Arrow tables, where a key missing from one row and present in another reads
back as None: compare with `rlaif judge`'s rows after dropping None values. Ray Data does not keep the input
order unless `DataContext.get_current().execution_options.preserve_order = True`; rows keep their `id`.

Needs `pip install 'rlaif[ray]'` (ray[data]).
"""
from __future__ import annotations

from typing import Any

from rlaif.errors import MissingDependencyError

# Restart a dead actor without limit and retry the batch it held: a killed actor must not lose rows.
ACTOR_RETRY_ARGS = {"max_restarts": -1, "max_task_retries": -1}


def _ray():
    try:
        import ray
        import ray.data
    except ModuleNotFoundError as e:
        raise MissingDependencyError("ray[data]", extra="ray", why="for judging Ray Data datasets") from e
    return ray


class JudgeActor:
    """One actor of the pool: a backend, a ledger, and `rlaif.judge.judge` over each batch (an Arrow table)."""

    def __init__(self, rubric, judge=None, mode: str | None = None, judge_kwargs: dict | None = None,
                 backend_factory=None):
        from rlaif.backends import get_backend
        from rlaif.judge import default_cache
        from rlaif.ledger import Ledger

        kw = dict(judge_kwargs or {})
        backend_options = kw.pop("backend_options", {})
        self.backend = backend_factory() if backend_factory is not None else get_backend(judge, **backend_options)
        self.rubric, self.mode = rubric, mode
        cache = kw.pop("cache", None)
        cache = default_cache(self.backend) if cache is None else cache
        ledger = kw.pop("ledger", None)
        self.ledger = (ledger if isinstance(ledger, Ledger) else Ledger(ledger)) if cache else None
        self.kw = kw

    def __call__(self, batch):
        import pyarrow as pa

        from rlaif.judge import judge

        rows = [{k: v for k, v in r.items() if v is not None} for r in batch.to_pylist()]
        out, _ = judge(rows, self.rubric, judge=self.backend, mode=self.mode, ledger=self.ledger,
                       cache=self.ledger is not None, progress=False, **self.kw)
        return pa.Table.from_pylist(out)


def judge_dataset(ds, rubric, *, judge: str | None = None, mode: str | None = None, actors: int = 2,
                  batch_size: int = 256, num_cpus: float = 1, num_gpus: float = 0, backend_factory=None,
                  **judge_kwargs: Any):
    """Judge every row of a `ray.data.Dataset` (rows as `rlaif judge` reads them) -> a lazy Dataset of the
    judged rows. `actors`: the pool size (one backend each); `batch_size`: rows per `judge()` call (its rows
    are judged concurrently inside the actor, `concurrency=` sets how many at once); `num_gpus`: per actor, for
    local models. `judge_kwargs` go to `rlaif.judge.judge` (concurrency, max_cost, generative, ...).
    `backend_factory`: a picklable zero-argument callable building the backend in each actor (instead of
    `judge`, a name)."""
    ray = _ray()
    return ds.map_batches(JudgeActor, batch_size=batch_size, batch_format="pyarrow",
                          compute=ray.data.ActorPoolStrategy(size=actors),
                          fn_constructor_kwargs={"rubric": rubric, "judge": judge, "mode": mode,
                                                 "judge_kwargs": judge_kwargs, "backend_factory": backend_factory},
                          num_cpus=num_cpus, num_gpus=num_gpus or None, **ACTOR_RETRY_ARGS)


class SampleActor:
    """One actor of the sampling pool: a backend (a local model loads once per actor) and `rlaif.sampling.sample`
    over each batch. Candidates are seeded per (seed, prompt id, k), so a batch gives the same candidates here as
    the whole file does under `rlaif sample`; prompt rows therefore need their own `id`."""

    def __init__(self, n: int, model=None, sample_kwargs: dict | None = None, backend_factory=None):
        from rlaif.backends import get_backend

        kw = dict(sample_kwargs or {})
        backend_options = kw.pop("backend_options", {})
        self.backend = backend_factory() if backend_factory is not None else get_backend(model, **backend_options)
        self.n, self.kw = n, kw

    def __call__(self, batch):
        import pyarrow as pa

        from rlaif.errors import InputError
        from rlaif.sampling import sample

        rows = [{k: v for k, v in r.items() if v is not None} for r in batch.to_pylist()]
        for i, r in enumerate(rows):
            if "id" not in r:
                raise InputError("<ray dataset>", None, "id", f"row {i} of a batch has no id: sampling on Ray Data "
                                 "needs an id per prompt (its candidates' seeds and grouping follow from it)")
        out, _ = sample(rows, self.n, model=self.backend, progress=False, **self.kw)
        return pa.Table.from_pylist(out)


def sample_dataset(ds, n: int, *, model: str | None = None, actors: int = 2, batch_size: int = 64,
                   num_cpus: float = 1, num_gpus: float = 0, backend_factory=None, **sample_kwargs: Any):
    """N candidates per prompt row of a `ray.data.Dataset` -> a lazy Dataset of `rlaif sample`'s candidate rows.
    `sample_kwargs` go to `rlaif.sampling.sample` (temperature, max_new_tokens, seed, concurrency, ...)."""
    ray = _ray()
    return ds.map_batches(SampleActor, batch_size=batch_size, batch_format="pyarrow",
                          compute=ray.data.ActorPoolStrategy(size=actors),
                          fn_constructor_kwargs={"n": n, "model": model, "sample_kwargs": sample_kwargs,
                                                 "backend_factory": backend_factory},
                          num_cpus=num_cpus, num_gpus=num_gpus or None, **ACTOR_RETRY_ARGS)


def judge_jsonl(input_path: str, rubric, output_dir: str, **kwargs) -> None:
    """Read a JSONL file with Ray Data, judge it on the actor pool, write JSONL files to output_dir."""
    ray = _ray()
    judge_dataset(ray.data.read_json(input_path, lines=True), rubric, **kwargs).write_json(output_dir)
