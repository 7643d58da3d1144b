"""GRPO generation tokens/s: vLLM (colocate, the trained adapter pushed as a LoRA request) vs transformers
generate, through rlaif's own samplers (rlaif/train/generation.py), on one CUDA GPU. Target (issue 13): ≥ 5×.

A Llama-shaped model with random weights is written to a folder (vLLM loads models from disk), with the
SmolLM2 tokenizer; a LoRA adapter with random B (so the adapter changes the outputs) is attached. Random
weights rarely sample EOS, so completions run to --max-tokens and both back ends decode the same number
of tokens. Each back end is timed on its second round (the first pays CUDA graphs / warm-up).

    python bench/grpo_generation.py --tokenizer .devbench/tok --json out.json     # needs CUDA and vllm
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="llama1b")
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--prompts", type=int, default=8, help="prompts per round")
    ap.add_argument("-G", "--num-generations", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    from bench.train_throughput import build, rows
    from rlaif.train.generation import HFGenerator, make_generator
    from rlaif.train.grpo import GRPOConfig
    from rlaif.train.loop import Run
    from rlaif.train.lora import LoraSettings

    if not torch.cuda.is_available():
        raise SystemExit("grpo_generation.py needs a CUDA GPU (vLLM)")
    folder = tempfile.mkdtemp(prefix="gen-model-")
    model, tok, _ = build(args.size, "cuda", args.tokenizer, args.vocab)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    cfg = GRPOConfig(model=folder, output_dir=tempfile.mkdtemp(prefix="gen-out-"), num_generations=args.num_generations,
                     max_completion_length=args.max_tokens, lora=LoraSettings(r=16, alpha=32, init_weights=False),
                     use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.35, progress=False,
                     vllm_max_model_len=2048)
    run = Run(cfg, "grpo")
    run.load_model()
    run.peft_model.to(run.device)
    from rlaif.train.data import render_prompt

    prompt_ids = [render_prompt(tok, r["prompt"]) for r in rows(args.prompts, 60, 1)]
    out = {"gpu": torch.cuda.get_device_name(), "prompts": args.prompts, "G": args.num_generations,
           "max_tokens": args.max_tokens, "params": sum(p.numel() for p in run.peft_model.parameters())}
    for name, gen in (("hf", HFGenerator()), ("vllm", None)):
        if gen is None:
            t = time.perf_counter()
            gen = make_generator(run, cfg)
            out["vllm_startup_s"] = round(time.perf_counter() - t, 1)
        rates = []
        for rnd in range(2):
            torch.cuda.synchronize()
            t = time.perf_counter()
            comps = gen.generate(run, prompt_ids, cfg)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t
            n = sum(len(c) for c in comps)
            rates.append(n / dt)
            print(json.dumps({"backend": name, "round": rnd, "completions": len(comps), "tokens": n,
                              "seconds": round(dt, 2), "tokens_per_s": round(n / dt, 1)}), flush=True)
            run.step += 1          # a new adapter version each round, as in training
        out[f"{name}_tokens_per_s"] = round(rates[-1], 1)
    out["vllm_over_hf"] = round(out["vllm_tokens_per_s"] / out["hf_tokens_per_s"], 2)
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
