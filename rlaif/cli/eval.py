"""`rlaif eval` (rlaif.evaluate) and `rlaif report` (rlaif.report): reading results.
"""
from __future__ import annotations

from rlaif.cli.common import add_concurrency, add_dirs, add_quiet, parser, stderr


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
    from rlaif.judge_cards import agreement_line  # each judge's recorded agreement with people, if known

    for j, r in ((report["judge"], args.rubric), (report["settings"].get("refusal_judge"), args.refusal_rubric)):
        if j and (line := agreement_line(j, r)):
            stderr(line)
    if args.output:
        stderr(f"report written to {args.output}")
    return 0


def add_eval(sub) -> None:
    p = parser(sub, "eval", help="judged win rate of a LoRA adapter vs its base, and the alignment tax",
               description="Generate greedy answers from the base model and from base+adapter, judge each "
                           "pair in both orders (win rate, bootstrap 95% CI), and measure the alignment tax: "
                           "exact match on a capability set and refusal rates on XSTest's safe and unsafe "
                           "prompts.")
    p.add_argument("--adapter", "-a", required=True, help="LoRA adapter directory (output of `rlaif train ...`)")
    p.add_argument("--prompts", "-p", required=True, help="held-out prompts JSONL (field `prompt`)")
    p.add_argument("--refusal-judge", default=None,
                   help="judge for the refusal part (e.g. rm/PATH); default: --judge, or the shipped over-refusal "
                        "classifier when no --judge is given and one is shipped")
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
    p.add_argument("--max-new-tokens", type=int, default=96, help="most tokens per answer to a held-out prompt")
    p.add_argument("--capability-max-new-tokens", type=int, default=24, help="most tokens per capability answer")
    p.add_argument("--batch-size", type=int, default=8, help="generation batch size")
    p.add_argument("--generative", action="store_true", help="the judge writes a rationale, then the verdict")
    add_concurrency(p)
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--n-resamples", type=int, default=10_000, help="bootstrap resamples")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    add_quiet(p)
    add_dirs(p)
    p.set_defaults(func=cmd_eval)


def cmd_report(args) -> int:
    from rlaif.report import report

    out = report(args.input, args.output, png=args.png)
    stderr(f"wrote {out['html']}" + (f" and {out['png']}" if out.get("png") else ""))
    return 0


def add_report(sub) -> None:
    p = parser(sub, "report", help="a self-contained HTML report (and --png summary) of a result",
               description="Render a rubric-test result (JSON), a judged JSONL, a rubric diff or an eval "
                           "report (JSON) as one HTML file with inline SVG plots; no network, no scripts.")
    p.add_argument("input", help="RESULT.json from `rlaif rubric test`, a judged .jsonl, or an eval JSON")
    p.add_argument("--output", "-o", required=True, help="HTML file to write")
    p.add_argument("--png", default=None, help="also write a summary image (needs Chromium: apt-get install chromium)")
    p.set_defaults(func=cmd_report)
