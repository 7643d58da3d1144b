"""`rlaif train dpo | grpo | sft` and `rlaif export`: shells over rlaif/train/.
"""
from __future__ import annotations

import argparse

from rlaif.cli.common import add_quiet, parser, stderr
from rlaif.cli.rm import add_grpo_rm_options, add_train_rm
from rlaif.train.reward_spec import FORMS as REWARD_FORMS


def _train_common(p, default_lr: float, batch_help: str) -> None:
    p.add_argument("--model", "-m", default="default",
                   help="base model: 'default' (embedded SmolLM2), a folder or hub id")
    p.add_argument("--output", "-o", required=True, help="output folder: adapter/, checkpoint-N/, metrics.jsonl")
    p.add_argument("--max-steps", type=int, default=100, help="optimiser steps")
    p.add_argument("--epochs", type=float, default=None,
                   help="passes over the data; sets --max-steps from the data size")
    p.add_argument("--batch-size", type=int, default=4, help=batch_help)
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimiser step")
    p.add_argument("--lr", type=float, default=default_lr, help="learning rate")
    p.add_argument("--lr-scheduler", default="constant_with_warmup",
                   help="transformers scheduler name (linear, cosine, ...)")
    p.add_argument("--warmup-steps", type=int, default=0, help="learning-rate warmup steps")
    p.add_argument("--max-length", type=int, default=1024, help="max tokens of prompt+completion")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank")
    p.add_argument("--lora-alpha", type=int, default=32, help="LoRA scaling numerator (alpha / r)")
    p.add_argument("--lora-dropout", type=float, default=0.0, help="dropout on the LoRA input")
    p.add_argument("--target-modules", default="all-linear", help="comma-separated module names, or all-linear")
    p.add_argument("--adapter", default=None, help="continue from this trained adapter (also used as the reference)")
    p.add_argument("--seed", type=int, default=42, help="seed of data order, init and sampling")
    p.add_argument("--save-steps", type=int, default=50, help="checkpoint every N steps")
    p.add_argument("--save-total-limit", type=int, default=2, help="keep the newest N checkpoints")
    p.add_argument("--resume", nargs="?", const=True, default=None,
                   help="resume from the newest checkpoint in --output, or from the checkpoint folder given")
    p.add_argument("--report-to", action="append", default=[], choices=["tensorboard", "wandb"],
                   help="also log metrics to TensorBoard / W&B (repeatable)")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on with CUDA, off on CPU")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on where CUDA supports it")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile each decoder layer "
                        "(GPU: ~1.8x tokens/s on a 1.25B model; the first steps compile)")
    p.add_argument("--no-packing", action="store_true",
                   help="one padded sequence per row (packing is exact; off: for debugging)")
    p.add_argument("--no-share-prompt", action="store_true",
                   help="DPO/GRPO: run each continuation with its own copy of the prompt (sharing is exact)")
    p.add_argument("--logp-kernel", default="auto", choices=["auto", "torch", "checkpoint", "liger"],
                   help="LM-head log-probs: auto = Liger's fused kernel on CUDA where installed and exact, else torch")
    p.add_argument("--split", default="train", help="dataset split, for dataset folders with several")
    add_quiet(p)


def _train_kwargs(args) -> dict:
    from rlaif.train.lora import LoraSettings

    targets = args.target_modules if args.target_modules == "all-linear" else args.target_modules.split(",")
    return dict(model=args.model, output_dir=args.output, max_steps=args.max_steps, batch_size=args.batch_size,
                grad_accum=args.grad_accum, learning_rate=args.lr, lr_scheduler=args.lr_scheduler,
                warmup_steps=args.warmup_steps, max_length=args.max_length, adapter=args.adapter, seed=args.seed,
                lora=LoraSettings(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout,
                                  target_modules=targets),
                save_steps=args.save_steps, save_total_limit=args.save_total_limit, resume=args.resume,
                report_to=args.report_to, gradient_checkpointing=args.gradient_checkpointing, bf16=args.bf16,
                split=args.split, progress=not args.quiet, compile=args.compile, epochs=args.epochs,
                packing=not args.no_packing, share_prompt=not args.no_share_prompt, logp_kernel=args.logp_kernel)


def _print_summary(summary: dict) -> None:
    from rlaif.train.checks import format_summary

    if summary:
        stderr(format_summary(summary))       # significant digits: a 5e-5 learning rate is not 0.0001


def cmd_train_dpo(args) -> int:
    from rlaif.train.dpo import train_dpo

    _print_summary(train_dpo(args.data, beta=args.beta, loss_type=args.loss, label_smoothing=args.label_smoothing,
                             soft_labels=args.soft_labels, precompute_ref=args.precompute_ref, **_train_kwargs(args)))
    return 0


def cmd_train_sft(args) -> int:
    from rlaif.train.sft import train_sft

    _print_summary(train_sft(args.data, **_train_kwargs(args)))
    return 0


def cmd_train_grpo(args) -> int:
    from rlaif.cli.rm import grpo_rm_kwargs
    from rlaif.train.grpo import train_grpo

    _print_summary(train_grpo(args.prompts, rewards=args.reward, reward_weights=args.reward_weights,
                              num_generations=args.num_generations, max_completion_length=args.max_completion_length,
                              temperature=args.temperature, beta=args.beta, epsilon=args.epsilon,
                              epsilon_high=args.epsilon_high, loss_type=args.loss, scale_rewards=args.scale_rewards,
                              num_iterations=args.num_iterations, use_vllm=args.use_vllm, vllm_mode=args.vllm_mode,
                              vllm_server_url=args.vllm_server_url, **grpo_rm_kwargs(args), **_train_kwargs(args)))
    return 0


def cmd_export(args) -> int:
    from rlaif.train.export import export

    out = export(args.adapter, args.output, merge=args.merge, base=args.base, dtype=args.dtype)
    stderr(f"{'merged model' if args.merge else 'adapter'} written to {out}")
    return 0


def add_training(sub) -> None:
    p = parser(sub, "train", help="LoRA training: dpo, grpo, sft (runs under `accelerate launch` for multi-GPU)",
               description="LoRA training on judged data: DPO on pairs, SFT on the best responses, GRPO with "
                           "judges as the reward.")
    ts = p.add_subparsers(dest="train_cmd", required=True)
    d = parser(ts, "dpo", help="DPO (sigmoid / ipo / hinge / robust) on preference pairs",
               description="DATA: a dataset folder from `rlaif pairs`, or JSONL with prompt/chosen/rejected.")
    d.add_argument("data", help="dataset folder from `rlaif pairs`, or JSONL with prompt/chosen/rejected")
    _train_common(d, 5e-5, "pairs per micro-batch (per process)")
    d.add_argument("--beta", type=float, default=0.1, help="DPO temperature: strength of the pull to the reference")
    d.add_argument("--loss", choices=["sigmoid", "ipo", "hinge", "robust"], default="sigmoid", help="DPO loss variant")
    d.add_argument("--label-smoothing", type=float, default=0.0, help="cDPO / robust DPO: assumed label noise")
    d.add_argument("--soft-labels", action="store_true",
                   help="use each pair's judge probability p_chosen as the target")
    d.add_argument("--precompute-ref", action="store_true", help="compute reference log-probs once before training")
    d.set_defaults(func=cmd_train_dpo)
    s = parser(ts, "sft", help="SFT on the best-judged response of each prompt (rejection sampling)",
               description="DATA: judged JSONL from `rlaif judge` (absolute), or a preference dataset "
                    "(its chosen).")
    s.add_argument("data", help="judged JSONL (absolute) or a preference dataset (its chosen responses)")
    _train_common(s, 1e-4, "demonstrations per micro-batch (per process)")
    s.set_defaults(func=cmd_train_sft)
    g = parser(ts, "grpo", help="GRPO with rubric judges and/or Python functions as the reward",
               description="PROMPTS: JSONL or dataset folder with a `prompt` column.")
    g.add_argument("prompts", help="JSONL or dataset folder with a `prompt` column")
    g.add_argument("--reward", action="append", required=True, metavar="SPEC",
                   help=f"{REWARD_FORMS} (repeatable)")
    g.add_argument("--reward-weights", type=float, nargs="+", default=None,
                   help="one weight per --reward (default: 1 each)")
    g.add_argument("--num-generations", "-G", type=int, default=8, help="completions per prompt")
    g.add_argument("--max-completion-length", type=int, default=128, help="most tokens per sampled completion")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of the completions")
    g.add_argument("--beta", type=float, default=0.0, help="KL weight (k3 estimator); 0 skips the reference pass")
    g.add_argument("--epsilon", type=float, default=0.2, help="PPO clip range (lower side)")
    g.add_argument("--epsilon-high", type=float, default=None,
                   help="upper clip range (DAPO clip-higher; default: --epsilon)")
    g.add_argument("--loss", choices=["grpo", "dr_grpo", "dapo"], default="dapo", help="how token losses are averaged")
    g.add_argument("--scale-rewards", choices=["group", "batch", "none"], default="group",
                   help="divide advantages by the reward std of the group, the batch, or not at all")
    g.add_argument("--num-iterations", type=int, default=1, help="optimiser steps per generated batch (μ)")
    g.add_argument("--use-vllm", action=argparse.BooleanOptionalAction, default=None,
                   help="generate with vLLM (default: when installed and CUDA runs; else transformers generate)")
    g.add_argument("--vllm-mode", choices=["colocate", "server"], default="colocate",
                   help="colocate: vLLM in this process, asleep between rounds; server: --vllm-server-url")
    g.add_argument("--vllm-server-url", default="http://localhost:8000", help="vLLM server for --vllm-mode server")
    _train_common(g, 1e-5, "prompts per micro-batch (per process), each sampled G times")
    g.set_defaults(func=cmd_train_grpo, batch_size=2)
    add_grpo_rm_options(g)           # rm: rewards: the LLM-judge fallback band and the drift watch
    add_train_rm(ts, _train_common, _train_kwargs, _print_summary)
    e = parser(sub, "export", help="export a trained adapter, merged into its base or alone",
               description="Write a trained LoRA adapter as is, or merged into its base model's weights "
                           "(a plain transformers model), atomically.")
    e.add_argument("--adapter", "-a", default=None,
                   help="adapter folder (OUT/adapter from `rlaif train`); required unless exporting rl-data")
    e.add_argument("--output", "-o", required=True, help="folder to write")
    e.add_argument("--merge", action="store_true", help="merge into the base weights (a plain transformers model)")
    e.add_argument("--base", default=None, help="base model, if not the one recorded in the adapter")
    e.add_argument("--dtype", default=None, help="merged weights dtype (float32, bfloat16); default: the base's")
    e.set_defaults(func=cmd_export)
