"""Reward-model scoring vs the local LLM judge on the same backbone (the embedded SmolLM2), same run.

    python bench/rm_throughput.py [--rm PATH] [--n 16] [--rounds 2] [--groups 2 --G 8] [--generative-rows 4]

Printed figures (targets from issue 11):
- rows/s of `rlaif judge --judge rm/PATH` ÷ rows/s of `--judge local/default` on the same rows and
  rubric (over_refusal), both through `judge()` in this process            (target >= 20x)
- one GRPO step's reward time for groups × G completions: `--reward rm:PATH` vs
  `--reward rubric:over_refusal@local/default`
- tokens read per row by each arm, and each arm's CPU seconds (process time): on a machine shared
  with other jobs wall time swings with their load, CPU time much less; both ratios are printed.
- with --generative-rows K: the same local judge writing its rationale (`generative=True`, what a
  judge without log-probabilities does) on the first K rows: a second, labelled comparison.

The LLM judge reads the rubric's judge prompt (instructions, levels, examples) around the
conversation and answers with a next-token distribution; the reward model reads only the
conversation, cut to the max_length it was trained with, and answers with its head: both are one
forward pass per row, so the ratio is close to the ratio of tokens read (attention adds a little for
the longer prompt). Arms alternate for --rounds rounds and each keeps its best round. Without --rm a
head-only reward model is fitted on 16 gold rows first (its weights do not change the speed). Rows:
the first N of examples/gold/refusal_labels_dev.jsonl.
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


def _timed(fn):
    """(result, wall seconds, CPU seconds of this process: all threads, the backends' workers too)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> int:
    from rlaif.judge import judge
    from rlaif.train.rewards import RubricReward
    from rlaif.train.rm_reward import RMReward

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rm", default=None)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per arm; each arm keeps its best")
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--G", type=int, default=8)
    ap.add_argument("--generative-rows", type=int, default=0, help="also time the generative local judge on K rows")
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
    import torch

    res: dict = {"rows": len(rows), "rm": path, "torch_threads": torch.get_num_threads()}
    from rlaif.backends import get_backend

    # one backend object each, reused: a name would load the model again on every judge() call
    backends = {"rm": get_backend(f"rm/{path}"), "local": get_backend("local/default")}
    for j in backends.values():
        judge(rows[:4], "over_refusal", judge=j)                 # load the model, warm up
    rm_model = backends["rm"].model()
    res["rm_max_length"] = rm_model.info.max_length
    best: dict = {}
    verdicts: dict = {}
    for _ in range(args.rounds):
        for name, j in backends.items():
            before = rm_model.tokens_scored
            (out, summary), wall, cpu = _timed(lambda j=j: judge(rows, "over_refusal", judge=j))
            tokens = (rm_model.tokens_scored - before if name == "rm" else (summary.run or {}).get("prompt_tokens", 0))
            verdicts[name] = [r.get("score") for r in out]
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu, tokens, sorted({r["method"] for r in out}))
    for name, (wall, cpu, tokens, methods) in best.items():
        res[f"{name}_rows_per_s"] = round(len(rows) / wall, 3)
        res[f"{name}_cpu_s_per_row"] = round(cpu / len(rows), 3)
        res[f"{name}_tokens_per_row"] = round(tokens / len(rows), 1)
        res[f"{name}_methods"] = methods
    res["rm_unscored"] = sum(v is None for v in verdicts["rm"])
    res["judge_speedup"] = round(res["rm_rows_per_s"] / res["local_rows_per_s"], 1)
    res["judge_speedup_cpu"] = round(res["local_cpu_s_per_row"] / res["rm_cpu_s_per_row"], 1)
    res["token_ratio"] = round(res["local_tokens_per_row"] / res["rm_tokens_per_row"], 1)
    if args.generative_rows:
        from rlaif.backends.local import LocalBackend

        gen_rows = rows[:args.generative_rows]
        model, tok = backends["local"].load()                    # the same weights, a second backend object
        gen = LocalBackend("default", model_obj=model, tokenizer=tok)
        (out, summary), wall, cpu = _timed(lambda: judge(gen_rows, "over_refusal", judge=gen, generative=True))
        run = summary.run or {}
        res["generative_rows"] = len(gen_rows)
        res["generative_rows_per_s"] = round(len(gen_rows) / wall, 3)
        res["generative_cpu_s_per_row"] = round(cpu / len(gen_rows), 3)
        res["generative_tokens_per_row"] = {"prompt": round(run.get("prompt_tokens", 0) / len(gen_rows), 1),
                                            "generated": round(run.get("completion_tokens", 0) / len(gen_rows), 1)}
        res["generative_unscored"] = sum(r.get("score") is None for r in out)
        res["judge_speedup_vs_generative"] = round(res["rm_rows_per_s"] / res["generative_rows_per_s"], 1)
    # one GRPO step's rewards: groups prompts × G completions
    k = args.groups * args.G
    prompts = [gold[i // args.G]["prompt"] for i in range(k)]
    comps = [gold[i % len(gold)]["response"] for i in range(k)]
    rm_fn = RMReward(path, model=rm_model.model, tokenizer=rm_model.tok)
    rubric_fn = RubricReward("over_refusal", backend=backends["local"])
    rm_fn(prompts[:4], comps[:4])
    rubric_fn(prompts[:4], comps[:4])
    for name, fn in (("rm", rm_fn), ("rubric", rubric_fn)):
        vals, wall, cpu = _timed(lambda fn=fn: fn(prompts, comps))
        res[f"grpo_reward_s_{name}"] = round(wall, 3)
        res[f"grpo_reward_cpu_s_{name}"] = round(cpu, 3)
        assert len(vals) == k
    res["grpo_completions"] = k
    res["grpo_reward_speedup"] = round(res["grpo_reward_s_rubric"] / res["grpo_reward_s_rm"], 1)
    res["grpo_reward_speedup_cpu"] = round(res["grpo_reward_cpu_s_rubric"] / res["grpo_reward_cpu_s_rm"], 1)
    print(json.dumps(res, indent=2))
    print(f"rm/ judge: {res['judge_speedup']}x the local LLM judge's rows/s ({res['judge_speedup_cpu']}x in CPU time; "
          f"target >= 20x); tokens per row {res['rm_tokens_per_row']} vs {res['local_tokens_per_row']} "
          f"({res['token_ratio']}x); GRPO reward for {k} completions: {res['grpo_reward_s_rm']}s with rm: vs "
          f"{res['grpo_reward_s_rubric']}s with rubric: ({res['grpo_reward_speedup']}x)")
    if args.generative_rows:
        print(f"vs the generative local judge (rationale + verdict, {args.generative_rows} rows): "
              f"{res['judge_speedup_vs_generative']}x")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


def _tiny_lora():
    from rlaif.train.lora import LoraSettings

    return LoraSettings(r=1, alpha=2, target_modules=["q_proj"])


if __name__ == "__main__":
    sys.exit(main())
