"""verl: its RL data format, and an rlaif judge as its `custom_reward_function`.

Read from verl's code (volcengine/verl: examples/data_preprocess/gsm8k.py, verl/utils/dataset/rl_dataset.py,
verl/workers/reward_manager/{naive,batch}.py, verl/experimental/reward_loop/reward_manager/naive.py):

- Data: a parquet file per split whose rows are `data_source` (str), `prompt` (chat messages, a list of
  {role, content}: RLHFDataset applies the chat template to `prompt_key`, default "prompt"), `ability` (str),
  `reward_model` ({style, ground_truth}: the naive manager passes `ground_truth` to the reward), `extra_info`
  (a struct; `index` is read by RLHFDataset, the rest reaches the reward unchanged). gsm8k.py writes it with
  `datasets.Dataset.to_parquet`, as `export_rl_data` does.
- Reward: verl calls `compute_score(data_source=, solution_str=, ground_truth=, extra_info=, **reward_kwargs)`
  and takes a float, or a dict with "score" whose other keys are logged per sample (so every answer here has
  the same keys). The prompt is not an argument: `export_rl_data` puts it in `extra_info["question"]` (gsm8k's
  key), where `compute_score` reads it. The batch manager calls `compute_score(data_sources=, solution_strs=,
  ground_truths=, extra_infos=)` (here `compute_score_batch`), the async reward loop awaits a coroutine
  function (here `compute_score_async`).

Configure (verl YAML / overrides): `custom_reward_function.path=<this file>`, `.name=compute_score`, and
`custom_reward_function.reward_kwargs` with `reward: rubric:helpfulness@openai/gpt-4o-mini` (judged in the verl
worker) or `url: http://host:port` (an `rlaif serve reward` server), and `unscored_reward: <value>` to choose
what an unscored completion gets (without it, an unscored completion raises: no number is made up).
`RLAIF_REWARD` / `RLAIF_REWARD_URL` / `RLAIF_UNSCORED_REWARD` environment variables work as defaults.
"""
from __future__ import annotations

import os
from pathlib import Path

from rlaif.errors import InputError, RlaifError

FORMATS = ("verl",)
_REWARDS: dict[str, object] = {}          # spec -> Scorer, one per worker process (engines, ledgers kept warm)


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def verl_row(row: dict, index: int, *, split: str, data_source: str, ability: str, style: str) -> dict:
    """One prompt row (rlaif prompts format) as one verl RL row."""
    from rlaif.sampling import as_messages, judge_text

    messages = [{"role": m["role"], "content": m["content"]} for m in as_messages(row["prompt"])]
    ref = row.get("reference", row.get("answer"))
    return {
        "data_source": str(row.get("data_source", data_source)),
        "prompt": messages,
        "ability": str(row.get("ability", ability)),
        # ground_truth is always a string ("" when the row has none): one arrow type for the whole column
        "reward_model": {"style": style, "ground_truth": "" if ref is None else str(ref)},
        "extra_info": {"split": split, "index": index, "id": str(row["id"]), "question": judge_text(messages)},
    }


def export_rl_data(prompts, output: str | Path, format: str = "verl", *, split: str = "train",
                   data_source: str = "rlaif", ability: str = "general", style: str = "model") -> Path:
    """Write prompts (a JSONL path or rows) as RL training data for another engine; returns the file written.
    verl: OUTPUT/<split>.parquet with verl's RLHFDataset schema."""
    from rlaif.sampling import read_prompts

    if format not in FORMATS:
        raise RlaifError(f"--format {format}: known formats are {', '.join(FORMATS)}")
    rows = read_prompts(prompts)
    out_dir = Path(output)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(str(out_dir), None, None, "exists and is not a folder (-o takes a folder)")
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [verl_row(r, i, split=split, data_source=data_source, ability=ability, style=style)
               for i, r in enumerate(rows)]
    import datasets
    from datasets.utils import logging as ds_logging

    target = out_dir / f"{split}.parquet"
    tmp = out_dir / f".{split}.parquet.partial"
    bars = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()         # one line of output from us, not a progress bar per write
    try:
        datasets.Dataset.from_list(records).to_parquet(str(tmp))    # the writer verl's preprocess scripts use
    finally:
        if bars:
            ds_logging.enable_progress_bar()
    os.replace(tmp, target)                                       # a crash never leaves a half-written file
    return target


# ------------------------------------------------------------------------------------------------
# reward
# ------------------------------------------------------------------------------------------------
def _settings(kwargs: dict) -> tuple[str | None, str | None, float | None, str | None]:
    spec = kwargs.get("reward") or os.environ.get("RLAIF_REWARD")
    url = kwargs.get("url") or os.environ.get("RLAIF_REWARD_URL")
    unscored = kwargs.get("unscored_reward", os.environ.get("RLAIF_UNSCORED_REWARD"))
    if not spec and not url:
        raise RlaifError("rlaif compute_score: set custom_reward_function.reward_kwargs.reward (a spec like "
                         "rubric:helpfulness@openai/gpt-4o-mini) or .url (an `rlaif serve reward` server), "
                         "or RLAIF_REWARD / RLAIF_REWARD_URL")
    return spec, url, None if unscored is None else float(unscored), kwargs.get("token_env")


def _prompt(extra_info, i: int = 0) -> str:
    info = extra_info or {}
    p = info.get("question", info.get("prompt"))
    if not isinstance(p, str):
        raise RlaifError(f"rlaif compute_score: sample {i}'s extra_info has no 'question' (the prompt a judge "
                         "reads); write the data with `rlaif export rl-data --format verl`")
    return p


def _answers(values, reasons, unscored_reward) -> list[dict]:
    out = []
    for v, why in zip(values, reasons, strict=True):
        if v is None:
            if unscored_reward is None:
                raise RlaifError(f"rlaif compute_score: a completion could not be scored ({why}); set "
                                 "reward_kwargs.unscored_reward to choose the value it gets")
            out.append({"score": float(unscored_reward), "rlaif_unscored": 1.0})
        else:
            out.append({"score": float(v), "rlaif_unscored": 0.0})
    return out


async def _score_local(spec, prompts, completions, labels):
    from rlaif.rewards import PythonScorer, resolve

    scorer = _REWARDS.get(spec)
    if scorer is None:
        scorer = _REWARDS[spec] = resolve(spec)
    cols = {"label": labels} if isinstance(scorer, PythonScorer) else {"reference": labels}
    scored = await scorer.score(prompts, completions, **cols)
    return [v for v, _ in scored], [r for _, r in scored]


def _server_request(url, token_env, prompts, completions, labels) -> tuple[str, dict, dict]:
    headers = {}
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise RlaifError(f"rlaif compute_score: token_env {token_env} is not set")
        headers["Authorization"] = f"Bearer {token}"
    return url.rstrip("/") + "/score", {"prompts": prompts, "completions": completions, "labels": labels}, headers


def _server_answer(r) -> tuple[list, list]:
    if r.status_code != 200:
        raise RlaifError(f"rlaif compute_score: the reward server answered {r.status_code}: {r.text[:300]}")
    body = r.json()
    return body["rewards"], body["unscored"]


async def _score(spec, url, token_env, prompts, completions, labels):
    if url:
        import httpx

        target, body, headers = _server_request(url, token_env, prompts, completions, labels)
        async with httpx.AsyncClient(timeout=600) as client:
            return _server_answer(await client.post(target, json=body, headers=headers))
    return await _score_local(spec, prompts, completions, labels)


def _labels(ground_truths) -> list[str | None]:
    return [g if isinstance(g, str) and g else None for g in ground_truths]


async def compute_score_batch_async(data_sources, solution_strs, ground_truths, extra_infos, **kwargs) -> list[dict]:
    spec, url, unscored, token_env = _settings(kwargs)
    prompts = [_prompt(e, i) for i, e in enumerate(extra_infos)]
    values, reasons = await _score(spec, url, token_env, prompts, list(solution_strs), _labels(ground_truths))
    return _answers(values, reasons, unscored)


def compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos, **kwargs) -> list[dict]:
    """verl's BatchRewardManager form: all of a step's completions judged concurrently."""
    from rlaif.engine import run_sync

    return run_sync(compute_score_batch_async(data_sources, solution_strs, ground_truths, extra_infos, **kwargs))


async def compute_score_async(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    """verl's async reward loop form (it awaits coroutine functions)."""
    return (await compute_score_batch_async([data_source], [solution_str], [ground_truth], [extra_info],
                                            **kwargs))[0]


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    """verl's `custom_reward_function`: {"score": reward, "rlaif_unscored": 0.0 | 1.0} for one completion."""
    return compute_score_batch([data_source], [solution_str], [ground_truth], [extra_info], **kwargs)[0]
