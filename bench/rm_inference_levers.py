"""What each RewardModel inference lever saves, one at a time, in one process (CPU time per row).

    python bench/rm_inference_levers.py [--n 12] [--r 16] [--reps 3]

The embedded SmolLM2 as a 3-class reward model with a LoRA of rank r on every linear layer (its B
matrices random, so merging changes the weights for real), the first N rows of
examples/gold/refusal_labels_dev.jsonl cut to 256 tokens. Settings:
- before: LoRA unmerged, 32-row batches (what RewardModel did before the merge and the CPU cap);
- merged: LoRA merged into the base (peft merge_and_unload), 32-row batches;
- merged+cap: merged, batches of <= rm_model.CPU_BATCH_TOKENS padded tokens (what RewardModel does on a CPU).
Each setting's best of --reps runs; the largest output difference from `before` is printed (the
levers must not change verdicts). CPU time (thread time, one OMP thread) is used because the
machine is shared: wall time swings with the other jobs' load.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    import peft
    import torch

    from rlaif.train.data import pad_right
    from rlaif.train.rm_model import CPU_BATCH_TOKENS, encode_row, length_batches, load_seq_cls, make_reward_module

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    gold = [json.loads(x) for x in open(ROOT / "examples/gold/refusal_labels_dev.jsonl", encoding="utf-8")]
    base, tok = load_seq_cls("default", 3)
    torch.manual_seed(0)
    torch.nn.init.normal_(base.score.weight, std=0.02)
    model = peft.get_peft_model(base, peft.LoraConfig(r=args.r, lora_alpha=2 * args.r, target_modules="all-linear",
                                                      task_type="SEQ_CLS"))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.01)
    model.eval()
    seqs = [encode_row(tok, r["prompt"], r["response"], 256) for r in gold[:args.n]]

    def run(module, cap):
        out: list = [None] * len(seqs)
        with torch.inference_mode():
            for idx in length_batches([len(s) for s in seqs], 32, cap):
                ids = pad_right([seqs[i] for i in idx], tok.pad_token_id)
                attn = pad_right([[1] * len(seqs[i]) for i in idx], 0)
                for i, o in zip(idx, module(ids, attn)):
                    out[i] = o
        return torch.stack(out)

    def best(module, cap):
        t = []
        for _ in range(args.reps):
            c = time.thread_time()
            y = run(module, cap)
            t.append(time.thread_time() - c)
        return y, min(t) / len(seqs)

    res: dict = {"rows": len(seqs), "tokens_per_row": round(sum(map(len, seqs)) / len(seqs), 1), "lora_r": args.r,
                 "torch_threads": torch.get_num_threads()}
    ref, res["before_cpu_s_per_row"] = best(make_reward_module()(model), None)
    merged = make_reward_module()(model.merge_and_unload())
    y1, res["merged_cpu_s_per_row"] = best(merged, None)
    y2, res["merged_cap_cpu_s_per_row"] = best(merged, CPU_BATCH_TOKENS)
    res["max_abs_diff"] = float(max((y1 - ref).abs().max(), (y2 - ref).abs().max()))
    res["same_argmax"] = bool((y2.argmax(-1) == ref.argmax(-1)).all())
    res["speedup"] = round(res["before_cpu_s_per_row"] / res["merged_cap_cpu_s_per_row"], 2)
    for k in ("before_cpu_s_per_row", "merged_cpu_s_per_row", "merged_cap_cpu_s_per_row"):
        res[k] = round(res[k], 3)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
