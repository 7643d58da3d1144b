"""The command line: each command is a thin shell over the public function of the same name.

`rlaif judge` → rlaif.judge(), `rlaif rubric lint` → rlaif.rubrics.lint(), and so on. Errors rlaif
raises on purpose (RlaifError) print as one clear message and exit 2; anything else is a bug and
keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rlaif.errors import RlaifError


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# judge
# ---------------------------------------------------------------------------------------------
def cmd_judge(args) -> int:
    from rlaif.judge import judge

    rows, summary = judge(args.input, args.rubric, judge=args.judge, mode=args.mode, output=args.output,
                          generative=args.generative, both_orders=not args.one_order, rank_method=args.rank_method,
                          skip_invalid=args.skip_invalid, concurrency=args.concurrency,
                          prompts_dirs=args.prompts_dir, rubrics_dirs=args.rubrics_dir, progress=not args.quiet)
    if not args.output:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
    elif not args.quiet:
        for r in rows[: args.show]:
            _stderr(_one_line(r))
        if len(rows) > args.show:
            _stderr(f"... {len(rows) - args.show} more in {args.output}")
    _stderr(summary.render())
    return 0


def _one_line(r: dict) -> str:
    rid = r.get("id", "")
    if r.get("error"):
        return f"[{rid}] unscored: {r['error']} ({(r.get('detail') or '')[:80]})"
    if r.get("score") is not None:
        probs = " ".join(f"{k}:{v:.2f}" for k, v in (r.get("probs") or {}).items())
        return f"[{rid}] score {r['score']:.2f}  ({probs})  {r.get('response', '')[:60]!r}"
    if r.get("p_a") is not None:
        return f"[{rid}] P(A better) {r['p_a']:.2f} -> {r['preference']}  consistent={r.get('consistent')}"
    if r.get("ranking") is not None:
        return f"[{rid}] ranking (best first) {r['ranking']}"
    return f"[{rid}] {r}"


def add_judge(sub) -> None:
    p = sub.add_parser("judge", help="judge JSONL rows with a rubric (absolute, pairwise or rank)",
                       description="Judge rows: `prompt`+`response` (absolute), `response_a`+`response_b` "
                                   "(pairwise), or `responses` (rank). The mode is inferred from the first row.")
    p.add_argument("input", help="JSONL file")
    p.add_argument("--rubric", "-r", required=True, help="rubric name (e.g. helpfulness) or path to a YAML file")
    p.add_argument("--judge", "-j", default=None, help="provider/model; default local/default (the embedded SmolLM2)")
    p.add_argument("--mode", choices=["absolute", "pairwise", "rank"], default=None)
    p.add_argument("--output", "-o", default=None, help="output JSONL (default: print to stdout)")
    p.add_argument("--generative", action="store_true", help="judge writes a rationale, then the verdict (parsed)")
    p.add_argument("--one-order", action="store_true", help="pairwise: judge only the given A/B order (no position swap)")
    p.add_argument("--rank-method", choices=["tournament", "listwise"], default="tournament")
    p.add_argument("--skip-invalid", action="store_true", help="skip malformed rows (reported) instead of stopping")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--show", type=int, default=10, help="how many verdicts to print when writing to a file")
    p.add_argument("--quiet", "-q", action="store_true")
    _dirs(p)
    p.set_defaults(func=cmd_judge)


def _dirs(p) -> None:
    p.add_argument("--rubrics-dir", action="append", default=None, help="extra rubric directory (searched first)")
    p.add_argument("--prompts-dir", action="append", default=None, help="extra template directory (searched first)")


# ---------------------------------------------------------------------------------------------
# rubric lint | render | list
# ---------------------------------------------------------------------------------------------
def cmd_rubric_lint(args) -> int:
    from rlaif.rubrics import find_rubric, lint

    bad = 0
    for target in args.paths:
        try:
            path = find_rubric(target, args.rubrics_dir)
        except RlaifError as e:
            _stderr(str(e))
            bad += 1
            continue
        problems = lint(path, args.prompts_dir)
        if problems:
            bad += 1
            print(f"{path}: {len(problems)} problem(s)")
            for pr in problems:
                print(f"  - {pr}")
        else:
            print(f"{path}: ok")
    return 1 if bad else 0


def cmd_rubric_render(args) -> int:
    from rlaif.io import infer_mode
    from rlaif.judge import build_messages
    from rlaif.rubrics import load_rubric, sample_row

    rubric = load_rubric(args.name, args.rubrics_dir, args.prompts_dir)
    if args.example:
        try:
            row = json.loads(Path(args.example).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise RlaifError(f"{args.example}: invalid JSON: {e.msg} (line {e.lineno})")
        mode = args.mode or infer_mode(row)
    else:
        mode = args.mode or rubric.modes[0]
        row = sample_row(rubric, mode)
    from rlaif.io import check_row
    check_row(row, args.example or "<sample>", None, mode, rubric.reference == "required")
    msgs = build_messages(rubric, mode, row, generative=args.generative, swap=args.swap, prompts_dirs=args.prompts_dir)
    if args.json:
        print(json.dumps(msgs, ensure_ascii=False, indent=2))
    else:
        print(f"# rubric {rubric.id}, mode {mode}, template {rubric.templates[mode]}")
        for m in msgs:
            print(f"\n===== {m['role']} =====\n{m['content']}")
    return 0


def cmd_rubric_list(args) -> int:
    from rlaif.rubrics import find_rubric, list_rubrics, load_rubric

    for name in list_rubrics(args.rubrics_dir):
        try:
            r = load_rubric(name, args.rubrics_dir, args.prompts_dir)
            print(f"{r.id:32} {r.scale.min}..{r.scale.max}  {','.join(r.modes):24} {r.description[:60]}")
        except RlaifError as e:
            print(f"{name:32} INVALID ({find_rubric(name, args.rubrics_dir)}): {len(getattr(e, 'problems', []))} problem(s)")
    return 0


def add_rubric(sub):
    p = sub.add_parser("rubric", help="author rubrics: lint, render, list")
    rs = p.add_subparsers(dest="rubric_cmd", required=True)
    lp = rs.add_parser("lint", help="validate rubric files; lists every problem, exits 1 if any")
    lp.add_argument("paths", nargs="+", help="rubric files or names")
    _dirs(lp)
    lp.set_defaults(func=cmd_rubric_lint)
    rp = rs.add_parser("render", help="print the exact messages a judge would receive")
    rp.add_argument("name", help="rubric name or path")
    rp.add_argument("--example", "-e", help="a JSON file with one input row (default: a built-in sample row)")
    rp.add_argument("--mode", choices=["absolute", "pairwise", "rank"])
    rp.add_argument("--generative", action="store_true")
    rp.add_argument("--swap", action="store_true", help="pairwise: show the swapped order")
    rp.add_argument("--json", action="store_true", help="print the messages as JSON")
    _dirs(rp)
    rp.set_defaults(func=cmd_rubric_render)
    ls = rs.add_parser("list", help="list the rubrics rlaif can find")
    _dirs(ls)
    ls.set_defaults(func=cmd_rubric_list)
    return rs


# ---------------------------------------------------------------------------------------------
# train dpo | grpo | sft, export   (LoRA training: rlaif/train/)
# ---------------------------------------------------------------------------------------------
def _train_common(p, default_lr: float, batch_help: str) -> None:
    p.add_argument("--model", "-m", default="default", help="base model: 'default' (embedded SmolLM2), a folder or hub id")
    p.add_argument("--output", "-o", required=True, help="output folder: adapter/, checkpoint-N/, metrics.jsonl")
    p.add_argument("--max-steps", type=int, default=100, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=4, help=batch_help)
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimiser step")
    p.add_argument("--lr", type=float, default=default_lr, help="learning rate")
    p.add_argument("--lr-scheduler", default="constant_with_warmup", help="transformers scheduler name (linear, cosine, ...)")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--max-length", type=int, default=1024, help="max tokens of prompt+completion")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=int, default=32)
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--target-modules", default="all-linear", help="comma-separated module names, or all-linear")
    p.add_argument("--adapter", default=None, help="continue from this trained adapter (also used as the reference)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--save-steps", type=int, default=50, help="checkpoint every N steps")
    p.add_argument("--save-total-limit", type=int, default=2, help="keep the newest N checkpoints")
    p.add_argument("--resume", nargs="?", const=True, default=None,
                   help="resume from the newest checkpoint in --output, or from the checkpoint folder given")
    p.add_argument("--report-to", action="append", default=[], choices=["tensorboard", "wandb"],
                   help="also log metrics to TensorBoard / W&B (repeatable)")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on with CUDA, off on CPU")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="default: on where CUDA supports it")
    p.add_argument("--split", default="train", help="dataset split, for dataset folders with several")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _train_kwargs(args) -> dict:
    from rlaif.train.lora import LoraSettings

    targets = args.target_modules if args.target_modules == "all-linear" else args.target_modules.split(",")
    return dict(model=args.model, output_dir=args.output, max_steps=args.max_steps, batch_size=args.batch_size,
                grad_accum=args.grad_accum, learning_rate=args.lr, lr_scheduler=args.lr_scheduler,
                warmup_steps=args.warmup_steps, max_length=args.max_length, adapter=args.adapter, seed=args.seed,
                lora=LoraSettings(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout, target_modules=targets),
                save_steps=args.save_steps, save_total_limit=args.save_total_limit, resume=args.resume,
                report_to=args.report_to, gradient_checkpointing=args.gradient_checkpointing, bf16=args.bf16,
                split=args.split, progress=not args.quiet)


def _print_summary(summary: dict) -> None:
    if summary:
        final = {k: round(v, 4) if isinstance(v, float) else v for k, v in (summary.get("final") or {}).items()}
        _stderr(f"trained {summary.get('steps')} steps in {summary.get('seconds')}s -> {summary.get('adapter')}")
        _stderr("final: " + json.dumps(final))


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
    from rlaif.train.grpo import train_grpo

    _print_summary(train_grpo(args.prompts, rewards=args.reward, reward_weights=args.reward_weights,
                              num_generations=args.num_generations, max_completion_length=args.max_completion_length,
                              temperature=args.temperature, beta=args.beta, epsilon=args.epsilon,
                              epsilon_high=args.epsilon_high, loss_type=args.loss, scale_rewards=args.scale_rewards,
                              num_iterations=args.num_iterations, **_train_kwargs(args)))
    return 0


def cmd_export(args) -> int:
    from rlaif.train.export import export

    out = export(args.adapter, args.output, merge=args.merge, base=args.base, dtype=args.dtype)
    _stderr(f"{'merged model' if args.merge else 'adapter'} written to {out}")
    return 0


def add_training(sub) -> None:
    p = sub.add_parser("train", help="LoRA training: dpo, grpo, sft (runs under `accelerate launch` for multi-GPU)")
    ts = p.add_subparsers(dest="train_cmd", required=True)
    d = ts.add_parser("dpo", help="DPO (sigmoid / ipo / hinge / robust) on preference pairs",
                      description="DATA: a dataset folder from `rlaif pairs`, or JSONL with prompt/chosen/rejected.")
    d.add_argument("data")
    _train_common(d, 5e-5, "pairs per micro-batch (per process)")
    d.add_argument("--beta", type=float, default=0.1)
    d.add_argument("--loss", choices=["sigmoid", "ipo", "hinge", "robust"], default="sigmoid")
    d.add_argument("--label-smoothing", type=float, default=0.0, help="cDPO / robust DPO: assumed label noise")
    d.add_argument("--soft-labels", action="store_true", help="use each pair's judge probability p_chosen as the target")
    d.add_argument("--precompute-ref", action="store_true", help="compute reference log-probs once before training")
    d.set_defaults(func=cmd_train_dpo)
    s = ts.add_parser("sft", help="SFT on the best-judged response of each prompt (rejection sampling)",
                      description="DATA: judged JSONL from `rlaif judge` (absolute), or a preference dataset (its chosen).")
    s.add_argument("data")
    _train_common(s, 1e-4, "demonstrations per micro-batch (per process)")
    s.set_defaults(func=cmd_train_sft)
    g = ts.add_parser("grpo", help="GRPO with rubric judges and/or Python functions as the reward",
                      description="PROMPTS: JSONL or dataset folder with a `prompt` column.")
    g.add_argument("prompts")
    g.add_argument("--reward", action="append", required=True,
                   help="rubric:NAME[@provider/model] | module:function | file.py[:function] (repeatable)")
    g.add_argument("--reward-weights", type=float, nargs="+", default=None)
    g.add_argument("--num-generations", "-G", type=int, default=8, help="completions per prompt")
    g.add_argument("--max-completion-length", type=int, default=128)
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--beta", type=float, default=0.0, help="KL weight (k3 estimator); 0 skips the reference pass")
    g.add_argument("--epsilon", type=float, default=0.2)
    g.add_argument("--epsilon-high", type=float, default=None)
    g.add_argument("--loss", choices=["grpo", "dr_grpo", "dapo"], default="dapo")
    g.add_argument("--scale-rewards", choices=["group", "batch", "none"], default="group")
    g.add_argument("--num-iterations", type=int, default=1, help="optimiser steps per generated batch (μ)")
    _train_common(g, 1e-5, "prompts per micro-batch (per process), each sampled G times")
    g.set_defaults(func=cmd_train_grpo, batch_size=2)
    e = sub.add_parser("export", help="export a trained adapter, merged into its base or alone")
    e.add_argument("--adapter", "-a", required=True, help="adapter folder (OUT/adapter from `rlaif train`)")
    e.add_argument("--output", "-o", required=True)
    e.add_argument("--merge", action="store_true", help="merge into the base weights (a plain transformers model)")
    e.add_argument("--base", default=None, help="base model, if not the one recorded in the adapter")
    e.add_argument("--dtype", default=None, help="merged weights dtype (float32, bfloat16); default: the base's")
    e.set_defaults(func=cmd_export)


# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from rlaif import __version__

    parser = argparse.ArgumentParser(prog="rlaif", description="AI judges → preference datasets → LoRA DPO/GRPO.")
    parser.add_argument("--version", action="version", version=f"rlaif {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_judge(sub)
    add_rubric(sub)
    add_training(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RlaifError as e:
        _stderr(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        _stderr("interrupted; rows written so far are intact")
        return 130


if __name__ == "__main__":
    sys.exit(main())
