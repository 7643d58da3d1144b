"""`rlaif judge`: a thin shell over rlaif.judge(); the estimate and per-row lines are formatted here.
"""
from __future__ import annotations

import json

from rlaif.cli.common import (
    add_api_judge_flags,
    add_concurrency,
    add_dirs,
    add_engine_flags,
    add_judging_flags,
    add_quiet,
    api_judge_kwargs,
    count,
    engine_kwargs,
    one_or_many,
    parser,
    stderr,
)


def cmd_judge(args) -> int:
    from rlaif.judge import judge

    rows, summary = judge(args.input, one_or_many(args.rubric), judge=one_or_many(args.judge), mode=args.mode,
                          output=args.output, generative=args.generative, both_orders=not args.one_order,
                          rank_method=args.rank_method, tie_margin=args.tie_margin, skip_invalid=args.skip_invalid,
                          concurrency=args.concurrency,
                          prompts_dirs=args.prompts_dir, rubrics_dirs=args.rubrics_dir, progress=not args.quiet,
                          **api_judge_kwargs(args), **engine_kwargs(args))
    if args.dry_run:
        stderr(_render_estimate(summary.estimate or {}))
        return 0
    if not args.output:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
    elif not args.quiet:
        for r in rows[: args.show]:
            stderr(_one_line(r))
        if len(rows) > args.show:
            stderr(f"... {len(rows) - args.show} more in {args.output}")
    stderr(summary.render())
    if len(args.judge or [None]) == 1 and len(args.rubric) == 1:     # the judge's recorded agreement, if known
        from rlaif.judge_cards import agreement_line

        if line := agreement_line((args.judge or [None])[0], args.rubric[0]):
            stderr(line)
    return 0


def _render_estimate(e: dict) -> str:
    from rlaif.cost import fmt_usd

    return (f"dry run: {e['rows']} rows -> {e['requests']} requests "
            f"({e['cached']} already answered in the ledger: free)\n"
            f"  to send: {e['requests'] - e['cached']} requests, {e['prompt_tokens']:,} prompt tokens "
            f"[{e['count_method'] or 'nothing to count'}], "
            f"at most {e['max_completion_tokens']:,} completion tokens (max_tokens)\n"
            f"  estimated cost: at most {fmt_usd(e['cost'])}"
            + (f" (prices: {e['price_source']})" if e.get('price_source') else
               " (no price known for this model: give one with --prices)"))


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
    p = parser(sub, "judge", help="judge JSONL rows with a rubric (absolute, pairwise or rank)",
               description="Judge rows: `prompt`+`response` (absolute), `response_a`+`response_b` "
                           "(pairwise), or `responses` (rank). The mode is inferred from the first row.")
    p.add_argument("input", help="JSONL file")
    p.add_argument("--rubric", "-r", required=True, action="append",
                   help="rubric name (e.g. helpfulness) or path to a YAML file; repeat for a jury of rubrics")
    p.add_argument("--judge", "-j", default=None, action="append",
                   help="provider/model; default local/default (the embedded SmolLM2); repeat for a jury")
    p.add_argument("--mode", choices=["absolute", "pairwise", "rank"], default=None,
                   help="judging mode (default: inferred from the first row)")
    p.add_argument("--output", "-o", default=None, help="output JSONL (default: print to stdout)")
    add_judging_flags(p)
    p.add_argument("--rank-method", choices=["tournament", "listwise"], default="tournament",
                   help="tournament: all pairs, both orders, Bradley-Terry (any judge); "
                        "listwise: one generative call per permutation")
    p.add_argument("--skip-invalid", action="store_true", help="skip malformed rows (reported) instead of stopping")
    add_concurrency(p)
    add_engine_flags(p)
    p.add_argument("--show", type=count, default=10, help="how many verdicts to print when writing to a file")
    add_quiet(p)
    add_api_judge_flags(p)
    add_dirs(p)
    p.set_defaults(func=cmd_judge)
