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

    rows, summary = judge(args.input, _one_or_many(args.rubric), judge=_one_or_many(args.judge), mode=args.mode,
                          output=args.output, generative=args.generative, both_orders=not args.one_order,
                          rank_method=args.rank_method, tie_margin=args.tie_margin, skip_invalid=args.skip_invalid, concurrency=args.concurrency,
                          prompts_dirs=args.prompts_dir, rubrics_dirs=args.rubrics_dir, progress=not args.quiet,
                          **api_judge_kwargs(args), **engine_kwargs(args))
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
    if len(args.judge or [None]) == 1 and len(args.rubric) == 1:     # issue 11: the judge's recorded agreement
        from rlaif.judge_cards import agreement_line

        line = agreement_line((args.judge or [None])[0], args.rubric[0])
        if line:
            _stderr(line)
    return 0


def engine_kwargs(args) -> dict:
    """The engine options of `rlaif judge` (limits, ledger, cost, resume, shards, batch) as judge() kwargs."""
    return {"cache": False if args.no_cache else None, "ledger": args.ledger, "rpm": args.rpm, "tpm": args.tpm,
            "timeout": args.timeout, "max_retries": args.max_retries, "max_cost": args.max_cost,
            "prices": args.prices, "dry_run": args.dry_run, "shard": args.shard, "batch": args.batch,
            "batch_poll": args.batch_poll, "fresh": args.fresh}


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
    p.add_argument("--rubric", "-r", required=True, action="append",
                   help="rubric name (e.g. helpfulness) or path to a YAML file; repeat for a jury of rubrics")
    p.add_argument("--judge", "-j", default=None, action="append",
                   help="provider/model; default local/default (the embedded SmolLM2); repeat for a jury")
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
    add_api_judge_options(p)
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
# judge: API judges and juries (options of `rlaif judge`)
# ---------------------------------------------------------------------------------------------
def _one_or_many(values):
    """argparse 'append' gives a list; one value means a plain judge, several a jury."""
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def add_api_judge_options(p) -> None:
    g = p.add_argument_group("API judges and juries")
    g.add_argument("--base-url", default=None,
                   help="OpenAI-compatible server for openai/ and litellm/ judges (vLLM, llama.cpp, Ollama, "
                        "transformers serve), e.g. http://127.0.0.1:8000/v1; default $OPENAI_BASE_URL")
    g.add_argument("--samples", type=int, default=0, metavar="K",
                   help="estimate probabilities from K sampled verdicts (for judges without logprobs; K x cost)")
    g.add_argument("--no-structured", action="store_true",
                   help="don't ask for JSON-schema / tool-use verdicts; parse prose instead")
    g.add_argument("--no-repair", action="store_true", help="don't re-ask once when a verdict cannot be read")
    g.add_argument("--max-tokens", type=int, default=512,
                   help="generative verdicts: room for the rationale and the verdict line (default 512)")
    g.add_argument("--reasoning-effort", choices=["minimal", "low", "medium", "high"], default=None,
                   help="openai/ reasoning models (o3, o4-mini, gpt-5...): how hard they think before the verdict")
    g.add_argument("--aggregate", choices=["mean", "majority", "weighted"], default=None,
                   help="jury aggregation over several --judge / --rubric (default mean)")
    g.add_argument("--gold", default=None, help="JSONL rows with a gold label (gold/human/label) for --aggregate weighted")


def api_judge_kwargs(args) -> dict:
    return {"base_url": args.base_url, "samples": args.samples, "structured": False if args.no_structured else None,
            "repair": not args.no_repair, "max_tokens": args.max_tokens, "aggregate": args.aggregate, "gold": args.gold,
            **({"judge_options": {"reasoning_effort": args.reasoning_effort}} if args.reasoning_effort else {})}


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
    p = sub.add_parser("rubric", help="author rubrics: lint, render, list, test, diff")
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
# eval
# ---------------------------------------------------------------------------------------------
def cmd_eval(args) -> int:
    from rlaif.evaluate import evaluate, render_table

    report = evaluate(args.adapter, args.prompts, base=args.base, judge=args.judge, rubric=args.rubric,
                      refusal_rubric=args.refusal_rubric, output=args.output, capability=args.capability,
                      xstest=args.xstest, limit=args.limit, no_capability=args.no_capability,
                      no_refusal=args.no_refusal, max_new_tokens=args.max_new_tokens,
                      capability_max_new_tokens=args.capability_max_new_tokens, batch_size=args.batch_size,
                      generative=args.generative, concurrency=args.concurrency, seed=args.seed,
                      n_resamples=args.n_resamples, device=args.device, rubrics_dirs=args.rubrics_dir,
                      prompts_dirs=args.prompts_dir, progress=not args.quiet, refusal_judge=args.refusal_judge)
    from rich.console import Console

    Console().print(render_table(report))
    # issue 11: each judge's recorded agreement
    from rlaif.judge_cards import agreement_line

    for j, r in ((report["judge"], args.rubric), (report["settings"].get("refusal_judge"), args.refusal_rubric)):
        line = agreement_line(j, r) if j else None
        if line:
            _stderr(line)
    if args.output:
        _stderr(f"report written to {args.output}")
    return 0


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="judged win rate of a LoRA adapter vs its base, and the alignment tax",
                       description="Generate greedy answers from the base model and from base+adapter, judge each "
                                   "pair in both orders (win rate, bootstrap 95%% CI), and measure the alignment tax: "
                                   "exact match on a capability set and refusal rates on XSTest's safe and unsafe prompts.")
    p.add_argument("--adapter", "-a", required=True, help="LoRA adapter directory (output of `rlaif train ...`)")
    p.add_argument("--prompts", "-p", required=True, help="held-out prompts JSONL (field `prompt`)")
    p.add_argument("--refusal-judge", default=None,
                   help="judge for the refusal part (e.g. rm/PATH); default: --judge, or the shipped over-refusal "
                        "classifier when no --judge is given")
    p.add_argument("--base", default=None, help="base model (default: the adapter config's base_model_name_or_path); "
                                               "'default' = the embedded SmolLM2")
    p.add_argument("--judge", "-j", default=None, help="provider/model; default local/default (the embedded SmolLM2)")
    p.add_argument("--rubric", "-r", default="helpfulness", help="rubric for the pairwise win rate")
    p.add_argument("--refusal-rubric", default="over_refusal", help="rubric that classifies refusals (1..3)")
    p.add_argument("--output", "-o", default=None, help="JSON report path")
    p.add_argument("--capability", default=None, help="capability JSONL (question, answer[, aliases]); "
                                                      "default examples/capability.jsonl")
    p.add_argument("--xstest", default=None, help="XSTest prompts JSONL; default examples/xstest/xstest_prompts.jsonl")
    p.add_argument("--limit", type=int, default=None, help="at most N items per set (stratified, deterministic)")
    p.add_argument("--no-capability", action="store_true", help="skip the capability set")
    p.add_argument("--no-refusal", action="store_true", help="skip the XSTest refusal rates")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--capability-max-new-tokens", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=8, help="generation batch size")
    p.add_argument("--generative", action="store_true", help="the judge writes a rationale, then the verdict")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--n-resamples", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--quiet", "-q", action="store_true")
    _dirs(p)
    p.set_defaults(func=cmd_eval)
# rubric test | diff  (testing a rubric against human labels: rlaif/gold.py)  and  report
# ---------------------------------------------------------------------------------------------
def cmd_rubric_test(args) -> int:
    from rlaif.gold import print_result, rubric_test

    res = rubric_test(args.rubric, args.gold, judge=args.judge, limit=args.limit, output=args.output,
                      generative=args.generative, both_orders=not args.one_order, tie_margin=args.tie_margin,
                      score_to_label=args.score_to_label, n_boot=args.bootstrap, seed=args.seed,
                      concurrency=args.concurrency, rubrics_dirs=args.rubrics_dir, prompts_dirs=args.prompts_dir,
                      progress=not args.quiet)
    print_result(res)
    if args.output:
        _stderr(f"saved {args.output}")
    if args.min_kappa is not None:
        from rlaif.gate import GateError, check_gate

        if not args.output:
            k = res["metrics"][res["headline"]]["value"]
            ok = k is not None and k >= args.min_kappa
            msg = f"{res['headline']} = {k} {'>=' if ok else '<'} --min-kappa {args.min_kappa}"
        else:
            try:
                check_gate(args.output, args.min_kappa, res["rubric"]["id"])
                ok, msg = True, f"{res['headline']} passes --min-kappa {args.min_kappa}"
            except GateError as e:
                ok, msg = False, str(e)
        _stderr(("PASS: " if ok else "FAIL: ") + msg)
        return 0 if ok else 1
    return 0


def cmd_rubric_diff(args) -> int:
    from rlaif.gold import print_diff, rubric_diff

    res = rubric_diff(args.old, args.new, args.gold, output=args.output, n_boot=args.bootstrap, seed=args.seed,
                      judge=args.judge, limit=args.limit, generative=args.generative,
                      both_orders=not args.one_order, tie_margin=args.tie_margin, score_to_label=args.score_to_label,
                      concurrency=args.concurrency, rubrics_dirs=args.rubrics_dir, prompts_dirs=args.prompts_dir,
                      progress=not args.quiet)
    print_diff(res, show=args.show)
    if args.output:
        _stderr(f"saved {args.output}")
    return 0


def _gold_options(p) -> None:
    p.add_argument("--judge", "-j", default=None, help="provider/model; default local/default (the embedded SmolLM2)")
    p.add_argument("--limit", type=int, default=None, help="judge a seeded random subset of N gold items")
    p.add_argument("--seed", type=int, default=0, help="seed of --limit's subset and of the bootstrap")
    p.add_argument("--generative", action="store_true", help="judge writes a rationale, then the verdict (parsed)")
    p.add_argument("--one-order", action="store_true", help="pairwise: judge only the given A/B order (no swap)")
    p.add_argument("--tie-margin", type=float, default=0.0,
                   help="pairwise: also call a tie when |P(A better) - 0.5| <= this (default 0: only "
                        "verdicts that flip when A and B swap are ties)")
    p.add_argument("--score-to-label", choices=["round", "argmax"], default="round",
                   help="absolute: expected score rounded to the nearest point (default), or the most probable point")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs (0: none)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--quiet", "-q", action="store_true")
    _dirs(p)


def add_rubric_test(rs) -> None:
    tp = rs.add_parser("test", help="measure a rubric's agreement with human labels on a gold set",
                       description="Judge a gold set (pairwise rows with human a/b/tie, or absolute rows with a "
                                   "human score or label) and report κ, accuracy, biases and CIs next to baselines.")
    tp.add_argument("rubric", help="rubric name or path")
    tp.add_argument("--gold", "-g", required=True, help="gold JSONL (e.g. examples/gold/human_pairs_dev.jsonl)")
    tp.add_argument("--output", "-o", default=None, help="save the result JSON (input of rlaif report and the gate)")
    tp.add_argument("--min-kappa", type=float, default=None, help="exit 1 if the headline κ is below this")
    _gold_options(tp)
    tp.set_defaults(func=cmd_rubric_test)
    dp = rs.add_parser("diff", help="compare two rubric versions on the same gold set",
                       description="Both versions on the same gold items: each metric's change with a paired "
                                   "bootstrap CI, and the items where they disagree. OLD/NEW may be rubrics or "
                                   "saved rubric-test results (.json).")
    dp.add_argument("old")
    dp.add_argument("new")
    dp.add_argument("--gold", "-g", default=None, help="gold JSONL (not needed when OLD and NEW are results)")
    dp.add_argument("--output", "-o", default=None, help="save the diff JSON")
    dp.add_argument("--show", type=int, default=10, help="how many disagreeing items to print")
    _gold_options(dp)
    dp.set_defaults(func=cmd_rubric_diff)


def cmd_report(args) -> int:
    from rlaif.report import report

    out = report(args.input, args.output, png=args.png)
    _stderr(f"wrote {out['html']}" + (f" and {out['png']}" if out.get("png") else ""))
    return 0


def add_report(sub) -> None:
    p = sub.add_parser("report", help="a self-contained HTML report (and --png summary) of a result",
                       description="Render a rubric-test result (JSON), a judged JSONL, a rubric diff or an eval "
                                   "report (JSON) as one HTML file with inline SVG plots; no network, no scripts.")
    p.add_argument("input", help="RESULT.json from `rlaif rubric test`, a judged .jsonl, or an eval JSON")
    p.add_argument("--output", "-o", required=True, help="HTML file to write")
    p.add_argument("--png", default=None, help="also write a summary image (needs Chromium: apt-get install chromium)")
    p.set_defaults(func=cmd_report)
# sample | pairs | run   (sampling, preference datasets, pipelines)
# ---------------------------------------------------------------------------------------------
def cmd_sample(args) -> int:
    from rlaif.sampling import sample

    rows, summary = sample(args.prompts, args.n, model=args.model, output=args.output,
                           max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                           seed=args.seed, concurrency=args.concurrency, limit=args.limit, resume=args.resume,
                           progress=not args.quiet)
    if not args.output:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
    _stderr(summary.render() + (f"\nwrote {args.output}" if args.output else ""))
    return 0


def cmd_pairs(args) -> int:
    from datasets.utils.logging import disable_progress_bar

    from rlaif.pairs import build_pairs

    disable_progress_bar()
    res = build_pairs(args.judged, args.output, policy=args.policy, min_margin=args.min_margin,
                      inconsistent=args.inconsistent, inconsistent_weight=args.inconsistent_weight,
                      max_length_ratio=args.max_length_ratio, seed=args.seed, formats=args.format or [],
                      push_to_hub_repo=args.push_to_hub, name=args.name, min_kappa=args.min_kappa,
                      rubric_test_result=args.rubric_test)
    print(res.render())
    print(f"wrote {res.output} (load with datasets.load_from_disk; card in {res.output}/README.md)")
    if res.url:
        print(f"pushed to {res.url}")
    return 0


def cmd_run(args) -> int:
    from rlaif.pipeline import run

    result = run(args.config, force=args.force, validate_only=args.check)
    if args.check:
        print(f"{args.config}: ok")
    else:
        print(result.render())
    return 0


def add_sample_pairs_run(sub) -> None:
    from rlaif.sampling import DEFAULT_MAX_NEW_TOKENS, DEFAULT_N, DEFAULT_SEED, DEFAULT_TEMPERATURE, DEFAULT_TOP_P

    p = sub.add_parser("sample", help="sample N candidate responses per prompt",
                       description="Rows: `prompt` (a string or a list of {role, content} messages ending with a "
                                   "user turn) and an optional `id`. One output row per candidate.")
    p.add_argument("prompts", help="JSONL file of prompts")
    p.add_argument("-n", type=int, default=DEFAULT_N, help=f"candidates per prompt (default {DEFAULT_N})")
    p.add_argument("--model", "-m", default=None, help="provider/model; default local/default (the embedded SmolLM2)")
    p.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    p.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE)
    p.add_argument("--top-p", type=float, default=DEFAULT_TOP_P)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="same seed, same candidates")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--limit", type=int, default=None, help="sample only the first N prompts")
    p.add_argument("--resume", action="store_true",
                   help="journal candidates to OUTPUT.partial and reuse an interrupted run's (needs -o)")
    p.add_argument("--output", "-o", default=None, help="output JSONL (default: stdout)")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=cmd_sample)

    from rlaif.pairs import FORMATS, INCONSISTENT, POLICIES
    p = sub.add_parser("pairs", help="build a TRL preference dataset (with card and bias audit) from judged rows",
                       description="JUDGED is the output of `rlaif judge` (absolute, rank or pairwise).")
    p.add_argument("judged", help="judged JSONL file")
    p.add_argument("--output", "-o", required=True, help="dataset folder (datasets.save_to_disk + README.md card)")
    p.add_argument("--policy", choices=POLICIES, default="best_vs_worst")
    p.add_argument("--min-margin", type=float, default=None,
                   help="smallest score gap that makes a pair (default: 0.25 for absolute scores, 0 otherwise)")
    p.add_argument("--inconsistent", choices=INCONSISTENT, default="drop",
                   help="what to do with verdicts that flip with presentation order")
    p.add_argument("--inconsistent-weight", type=float, default=0.5)
    p.add_argument("--max-length-ratio", type=float, default=None,
                   help="drop pairs whose longer response is more than this many times the shorter (chars)")
    p.add_argument("--seed", type=int, default=0, help="best_vs_random's choice")
    p.add_argument("--min-kappa", type=float, default=None,
                   help="export gate: refuse unless --rubric-test shows this rubric+judge reach at least this κ")
    p.add_argument("--rubric-test", default=None, help="RESULT.json from `rlaif rubric test` (needed with --min-kappa)")
    p.add_argument("--format", action="append", choices=FORMATS, help="also export pairs.parquet / pairs.jsonl")
    p.add_argument("--name", default=None, help="dataset name for the card")
    p.add_argument("--push-to-hub", default=None, metavar="REPO", help="upload to the Hugging Face Hub (needs a token)")
    p.set_defaults(func=cmd_pairs)

    p = sub.add_parser("run", help="run a pipeline (sample → judge → pairs) from one YAML config, resumably")
    p.add_argument("config", help="pipeline YAML")
    p.add_argument("--check", action="store_true", help="validate the config only")
    p.add_argument("--force", action="store_true", help="redo every stage even if done")
    p.set_defaults(func=cmd_run)
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
    p.add_argument("--compile", action="store_true",
                   help="torch.compile each decoder layer (GPU: ~1.8x tokens/s on a 1.25B model; the first steps compile)")
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
                split=args.split, progress=not args.quiet, compile=args.compile)


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
    from rlaif.train.rm_cli import grpo_rm_kwargs

    _print_summary(train_grpo(args.prompts, rewards=args.reward, reward_weights=args.reward_weights,
                              num_generations=args.num_generations, max_completion_length=args.max_completion_length,
                              temperature=args.temperature, beta=args.beta, epsilon=args.epsilon,
                              epsilon_high=args.epsilon_high, loss_type=args.loss, scale_rewards=args.scale_rewards,
                              num_iterations=args.num_iterations, **grpo_rm_kwargs(args), **_train_kwargs(args)))
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
    # issue 11: reward models
    from rlaif.train.rm_cli import add_grpo_rm_options, add_train_rm

    add_grpo_rm_options(g)
    add_train_rm(ts, _train_common, _train_kwargs, _print_summary)
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
    # in the order of the loop: sample -> judge -> pairs (run does all three) -> train -> eval
    add_sample_pairs_run(sub)
    add_judge(sub)
    add_training(sub)
    add_eval(sub)
    add_rubric_test(add_rubric(sub))
    add_report(sub)
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
