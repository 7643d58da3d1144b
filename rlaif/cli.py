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
                          tie_margin=args.tie_margin,
                          skip_invalid=args.skip_invalid, concurrency=args.concurrency,
                          prompts_dirs=args.prompts_dir, rubrics_dirs=args.rubrics_dir, progress=not args.quiet,
                          cache=False if args.no_cache else None, ledger=args.ledger, rpm=args.rpm, tpm=args.tpm,
                          timeout=args.timeout, max_retries=args.max_retries, max_cost=args.max_cost,
                          prices=args.prices, dry_run=args.dry_run, shard=args.shard, batch=args.batch,
                          batch_poll=args.batch_poll, fresh=args.fresh)
    if args.dry_run:
        _stderr(_render_estimate(summary.estimate))
        return 0
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


def _render_estimate(e: dict) -> str:
    from rlaif.cost import fmt_usd

    return (f"dry run: {e['rows']} rows -> {e['requests']} requests ({e['cached']} already answered in the ledger: free)\n"
            f"  to send: {e['requests'] - e['cached']} requests, {e['prompt_tokens']:,} prompt tokens "
            f"[{e['count_method'] or 'nothing to count'}], at most {e['max_completion_tokens']:,} completion tokens (max_tokens)\n"
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
    p.add_argument("--rank-method", choices=["tournament", "listwise"], default="tournament",
                   help="tournament: all pairs, both orders, Bradley-Terry (any judge); listwise: one generative call per permutation")
    p.add_argument("--tie-margin", type=float, default=0.05, help="pairwise: |P(A)-0.5| at or below this is a tie")
    p.add_argument("--skip-invalid", action="store_true", help="skip malformed rows (reported) instead of stopping")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight at once (default 16)")
    _engine_options(p)
    p.add_argument("--show", type=int, default=10, help="how many verdicts to print when writing to a file")
    p.add_argument("--quiet", "-q", action="store_true")
    _dirs(p)
    p.set_defaults(func=cmd_judge)


def _engine_options(p) -> None:
    g = p.add_argument_group("API judges: limits, cache, cost, resume, scale")
    g.add_argument("--rpm", type=float, default=None, help="requests per minute limit")
    g.add_argument("--tpm", type=float, default=None, help="tokens per minute limit")
    g.add_argument("--timeout", type=float, default=None, help="seconds per request attempt (default 60)")
    g.add_argument("--max-retries", type=int, default=None, help="retries for 429/5xx/timeouts (default 6)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the request ledger")
    g.add_argument("--ledger", default=None, help="ledger file (default $RLAIF_CACHE_DIR/ledger.sqlite)")
    g.add_argument("--max-cost", type=float, default=None, help="stop spending at this many USD; the rest are unscored (budget)")
    g.add_argument("--prices", default=None, help="YAML/JSON price table overriding LiteLLM's: model: {input, output} USD per 1M tokens")
    g.add_argument("--dry-run", action="store_true", help="count requests, tokens and cost; send nothing")
    g.add_argument("--shard", default=None, help="judge only partition i/n (0-based), e.g. 0/4; join with `rlaif merge`")
    g.add_argument("--batch", action="store_true", help="use the provider's batch API (OpenAI, Anthropic): half price, slower")
    g.add_argument("--batch-poll", type=float, default=30.0, help="seconds between batch status checks")
    g.add_argument("--fresh", action="store_true", help="discard an unfinished OUT.partial instead of resuming it")


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
# merge (shard outputs)
# ---------------------------------------------------------------------------------------------
def cmd_merge(args) -> int:
    from rlaif.shards import merge

    n = merge(args.paths, args.output, input=args.input)
    _stderr(f"merged {n} rows from {len(args.paths)} file(s) into {args.output}")
    return 0


def add_merge(sub) -> None:
    p = sub.add_parser("merge", help="merge the outputs of `rlaif judge --shard i/n` runs")
    p.add_argument("paths", nargs="+", help="shard output files")
    p.add_argument("--output", "-o", required=True)
    p.add_argument("--input", default=None, help="the original input: restores its row order and checks that no row is missing")
    p.set_defaults(func=cmd_merge)


# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from rlaif import __version__

    parser = argparse.ArgumentParser(prog="rlaif", description="AI judges → preference datasets → LoRA DPO/GRPO.")
    parser.add_argument("--version", action="version", version=f"rlaif {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_judge(sub)
    add_rubric(sub)
    add_merge(sub)
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
    except BrokenPipeError:            # `rlaif ... | head`: the reader left; not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
