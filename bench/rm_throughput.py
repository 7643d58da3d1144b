"""Reward-model scoring vs the local LLM judge on the same backbone (the embedded SmolLM2), same run.

    python bench/rm_throughput.py [--rm PATH] [--n 32] [--groups 4 --G 8]

Printed figures (targets from issue 11):
- rows/s of `rlaif judge --judge rm/PATH` ÷ rows/s of `--judge local/default` on the same rows and
  rubric (over_refusal)                                                       (>= 20x)
- one GRPO step's reward time for groups × G completions: `--reward rm:PATH` vs
  `--reward rubric:over_refusal@local/default`

The LLM judge reads the rubric's judge prompt (instructions, levels, examples: several hundred tokens)
and answers with a next-token distribution; the reward model reads only the conversation and answers
with its head: both are one forward pass per row, so the ratio is mostly prompt length and batch size.
Without --rm a head-only reward model is fitted on 16 gold rows first (its weights do not change the
speed). Rows: the first N of examples/gold/refusal_labels_dev.jsonl.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from rlaif.judge import judge
    from rlaif.train.rewards import RubricReward
    from rlaif.train.rm_reward import RMReward

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rm", default=None)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--G", type=int, default=8)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    gold = [json.loads(x) for x in open(ROOT / "examples/gold/refusal_labels_dev.jsonl", encoding="utf-8")]
    rows = [{"prompt": r["prompt"], "response": r["response"]} for r in gold[: args.n]]
    path = args.rm
    if path is None:
        from rlaif.train.rm import train_rm

        path = tempfile.mkdtemp(prefix="rlaif-rm-bench-")
        train_rm(gold[:16], rubric="over_refusal", probe=True, max_steps=1, max_length=256, lora=_tiny_lora(),
                 output_dir=path, progress=False, save_steps=0, eval_fraction=0.0)
    res: dict = {"rows": len(rows), "rm": path}
    from rlaif.backends import get_backend

    # one backend object each, reused: a name would load the model again on every judge() call
    backends = {"rm": get_backend(f"rm/{path}"), "local": get_backend("local/default")}
    for name, j in backends.items():
        judge(rows[:4], "over_refusal", judge=j)                 # load the model, warm up
        t0 = time.perf_counter()
        out, _ = judge(rows, "over_refusal", judge=j)
        dt = time.perf_counter() - t0
        res[f"{name}_rows_per_s"] = round(len(rows) / dt, 2)
        res[f"{name}_methods"] = sorted({r["method"] for r in out})
    res["judge_speedup"] = round(res["rm_rows_per_s"] / res["local_rows_per_s"], 1)
    # one GRPO step's rewards: groups prompts × G completions
    k = args.groups * args.G
    prompts = [gold[i // args.G]["prompt"] for i in range(k)]
    comps = [gold[i % len(gold)]["response"] for i in range(k)]
    rm_fn = RMReward(path, model=backends["rm"].model().model, tokenizer=backends["rm"].model().tok)
    rubric_fn = RubricReward("over_refusal", backend=backends["local"])
    rm_fn(prompts[:4], comps[:4])
    rubric_fn(prompts[:4], comps[:4])
    for name, fn in (("rm", rm_fn), ("rubric", rubric_fn)):
        t0 = time.perf_counter()
        vals = fn(prompts, comps)
        res[f"grpo_reward_s_{name}"] = round(time.perf_counter() - t0, 3)
        assert len(vals) == k
    res["grpo_completions"] = k
    res["grpo_reward_speedup"] = round(res["grpo_reward_s_rubric"] / res["grpo_reward_s_rm"], 1)
    print(json.dumps(res, indent=2))
    print(f"rm/ judge: {res['judge_speedup']}x the local LLM judge's rows/s (target >= 20x); "
          f"GRPO reward for {k} completions: {res['grpo_reward_s_rm']}s with rm: vs "
          f"{res['grpo_reward_s_rubric']}s with rubric:")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


def _tiny_lora():
    from rlaif.train.lora import LoraSettings

    return LoraSettings(r=1, alpha=2, target_modules=["q_proj"])


if __name__ == "__main__":
    sys.exit(main())
