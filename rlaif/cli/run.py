"""`rlaif run`: a pipeline from one YAML config (rlaif.pipeline.run).
"""
from __future__ import annotations

from rlaif.cli.common import parser


def cmd_run(args) -> int:
    from rlaif.pipeline import run

    result = run(args.config, force=args.force, validate_only=args.check)
    if args.check or result is None:
        print(f"{args.config}: ok")
    else:
        print(result.render())
    return 0


def add_run(sub) -> None:
    p = parser(sub, "run", help="run a pipeline (sample → judge → pairs) from one YAML config, resumably",
               description="Run the stages of one YAML config (sample, judge, pairs, and optionally train "
                   "and eval) in a work folder; a finished stage is skipped on the next run.")
    p.add_argument("config", help="pipeline YAML")
    p.add_argument("--check", action="store_true", help="validate the config only")
    p.add_argument("--force", action="store_true", help="redo every stage even if done")
    p.set_defaults(func=cmd_run)
