"""The `rlaif train rm` command: argument parsing only, over `rlaif.train.rm.train_rm`.

Why its own module: the reward-model options are many and separate from DPO/SFT/GRPO's; it
registers itself with one call from `add_training` and takes the shared training options
(`common`, `to_kwargs`) as arguments instead of importing cli/train.py's private helpers.
"""
from __future__ import annotations

from rlaif.cli.common import parser


def add_train_rm(subparsers, common, to_kwargs, print_summary) -> None:
    """Add `train rm` to the `train` subparsers. `common(parser, lr, batch_help)` adds the shared
    training options; `to_kwargs(args)` turns them into TrainConfig fields."""
    p = parser(
        subparsers, "rm", help="a reward model (LoRA + head) from pairs, judged rows or human labels",
        description="DATA: a dataset folder from `rlaif pairs` or JSONL: pairs (prompt/chosen/rejected[/p_chosen]) "
                    "→ Bradley–Terry; judged rows (prompt/response/score[/probs]) → pointwise; labelled rows "
                    "(prompt/response/human) → categorical via the rubric's labels: map.")
    p.add_argument("data", help="pairs (dataset folder or JSONL), judged rows, or labelled rows")
    common(p, 1e-4, "rows (pairs) per micro-batch (per process)")
    p.add_argument("--mode", choices=["auto", "pairwise", "pointwise", "categorical"], default="auto",
                   help="default: from the columns")
    p.add_argument("--target", choices=["expected", "distribution"], default="expected",
                   help="pointwise: regress the expected score, or fit the judge's distribution over the scale")
    p.add_argument("--soft-labels", action="store_true", help="pairwise: p_chosen is the target of σ(r_c − r_r)")
    p.add_argument("--margin", action="store_true", help="pairwise: subtract each row's `margin` column")
    p.add_argument("--rubric", default=None, help="the scale / labels map (default: the rows' `rubric` column)")
    p.add_argument("--label-field", default=None, help="categorical: label column (default: human, else label)")
    p.add_argument("--probe", action="store_true",
                   help="train the head only, on the frozen model's features computed once (CPU-cheap)")
    p.add_argument("--pooling", choices=["last", "mean"], default="last",
                   help="what the head reads: the last token's state, or the mean over the response's tokens")
    p.add_argument("--feature-layer", type=int, default=None, metavar="K",
                   help="read the state after K decoder layers (default: the final layer); the later layers "
                        "are dropped, so scoring costs K layers")
    p.add_argument("--eval-fraction", type=float, default=0.1, help="share of prompts held out for evaluation")
    p.add_argument("--eval-steps", type=int, default=20, help="evaluate on the held-out rows every N steps")

    def run(args) -> int:
        from rlaif.train.rm import train_rm

        print_summary(train_rm(args.data, mode=args.mode, target=args.target, soft_labels=args.soft_labels,
                               margin=args.margin, rubric=args.rubric, label_field=args.label_field,
                               probe=args.probe, pooling=args.pooling, feature_layer=args.feature_layer,
                               eval_fraction=args.eval_fraction,
                               eval_steps=args.eval_steps, **to_kwargs(args)))
        return 0

    p.set_defaults(func=run, batch_size=8, max_length=512)


def add_grpo_rm_options(g) -> None:
    """`train grpo` options for an rm:PATH reward: the LLM-judge fallback band and the drift watch."""
    g.add_argument("--fallback", default=None, metavar="rubric:NAME@provider/model",
                   help="rm: rewards: the LLM judge for uncertain completions and the drift watch")
    g.add_argument("--fallback-band", type=float, default=None,
                   help="send completions within this many rubric-scale points of their group's mean reward to "
                        "the judge (default 0.25 with --fallback; 0: drift watch only)")
    g.add_argument("--drift-every", type=int, default=0, help="judge a fixed slice of every K-th rollout batch too")
    g.add_argument("--drift-n", type=int, default=8, help="completions in the drift slice")
    g.add_argument("--drift-floor", type=float, default=None, help="warn (or stop) under this pair agreement")
    g.add_argument("--drift-action", choices=["warn", "stop"], default="warn",
                   help="what to do when agreement falls under --drift-floor")


def grpo_rm_kwargs(args) -> dict:
    return dict(fallback=args.fallback, fallback_band=args.fallback_band, drift_every=args.drift_every,
                drift_n=args.drift_n, drift_floor=args.drift_floor, drift_action=args.drift_action)
