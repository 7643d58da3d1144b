"""`rlaif sample`, `rlaif pairs`, `rlaif merge`: the data stages, shells over rlaif.sample,
rlaif.build_pairs and rlaif.merge.
"""
from __future__ import annotations

import json

from rlaif.cli.common import add_concurrency, add_quiet, kappa, parser, stderr


def cmd_sample(args) -> int:
    from rlaif.sampling import sample

    rows, summary = sample(args.prompts, args.n, model=args.model, output=args.output,
                           max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                           seed=args.seed, concurrency=args.concurrency, limit=args.limit, resume=args.resume,
                           progress=not args.quiet)
    if not args.output:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
    stderr(summary.render() + (f"\nwrote {args.output}" if args.output else ""))
    return 0


def cmd_pairs(args) -> int:
    from datasets.utils.logging import disable_progress_bar

    from rlaif.pairs import build_pairs, render_dropped

    disable_progress_bar()
    res = build_pairs(args.judged, args.output, policy=args.policy, min_margin=args.min_margin,
                      inconsistent=args.inconsistent, inconsistent_weight=args.inconsistent_weight,
                      max_length_ratio=args.max_length_ratio, seed=args.seed, formats=args.format or [],
                      push_to_hub_repo=args.push_to_hub, name=args.name, min_kappa=args.min_kappa,
                      rubric_test_result=args.rubric_test)
    print(res.render())
    if dropped := render_dropped(res.stats):       # why rows were dropped, in one line (the card has the table)
        print(dropped)
    print(f"wrote {res.output} (load with datasets.load_from_disk; card in {res.output}/README.md)")
    if res.url:
        print(f"pushed to {res.url}")
    return 0


def cmd_merge(args) -> int:
    from rlaif.shards import merge

    n = merge(args.paths, args.output, input=args.input)
    stderr(f"merged {n} rows from {len(args.paths)} file(s) into {args.output}")
    return 0


def add_merge(sub) -> None:
    p = parser(sub, "merge", help="merge the outputs of `rlaif judge --shard i/n` runs",
               description="Join the outputs of `rlaif judge --shard i/n` runs into one file, atomically; "
                           "with --input, in the input's row order and checked for missing rows.")
    p.add_argument("paths", nargs="+", help="shard output files")
    p.add_argument("--output", "-o", required=True, help="the merged JSONL file")
    p.add_argument("--input", default=None,
                   help="the original input: restores its row order and checks that no row is missing")
    p.set_defaults(func=cmd_merge)


def add_sample_pairs(sub) -> None:
    from rlaif.sampling import DEFAULT_MAX_NEW_TOKENS, DEFAULT_N, DEFAULT_SEED, DEFAULT_TEMPERATURE, DEFAULT_TOP_P

    p = parser(sub, "sample", help="sample N candidate responses per prompt",
               description="Rows: `prompt` (a string or a list of {role, content} messages ending with a "
                           "user turn) and an optional `id`. One output row per candidate.")
    p.add_argument("prompts", help="JSONL file of prompts")
    p.add_argument("-n", type=int, default=DEFAULT_N, help="candidates per prompt")
    p.add_argument("--model", "-m", default=None, help="provider/model; default local/default (the embedded SmolLM2)")
    p.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, help="most tokens per candidate")
    p.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE, help="sampling temperature (0..5)")
    p.add_argument("--top-p", type=float, default=DEFAULT_TOP_P, help="nucleus sampling mass (0, 1]")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="same seed, same candidates")
    add_concurrency(p)
    p.add_argument("--limit", type=int, default=None, help="sample only the first N prompts")
    p.add_argument("--resume", action="store_true",
                   help="journal candidates to OUTPUT.partial and reuse an interrupted run's (needs -o)")
    p.add_argument("--output", "-o", default=None, help="output JSONL (default: stdout)")
    add_quiet(p)
    p.set_defaults(func=cmd_sample)

    from rlaif.pairs import FORMATS, INCONSISTENT, POLICIES
    p = parser(sub, "pairs", help="build a TRL preference dataset (with card and bias audit) from judged rows",
               description="JUDGED is the output of `rlaif judge` (absolute, rank or pairwise).")
    p.add_argument("judged", help="judged JSONL file")
    p.add_argument("--output", "-o", required=True, help="dataset folder (datasets.save_to_disk + README.md card)")
    p.add_argument("--policy", choices=POLICIES, default="best_vs_worst",
                   help="which responses of a prompt make a pair")
    p.add_argument("--min-margin", type=float, default=None,
                   help="smallest score gap that makes a pair (default: 0.25 for absolute scores, 0 otherwise)")
    p.add_argument("--inconsistent", choices=INCONSISTENT, default="drop",
                   help="what to do with verdicts that flip with presentation order")
    p.add_argument("--inconsistent-weight", type=float, default=0.5,
                   help="the weight of an inconsistent pair with --inconsistent downweight")
    p.add_argument("--max-length-ratio", type=float, default=None,
                   help="drop pairs whose longer response is more than this many times the shorter (chars)")
    p.add_argument("--seed", type=int, default=0, help="best_vs_random's choice")
    p.add_argument("--min-kappa", type=kappa, default=None,
                   help="export gate: refuse unless --rubric-test shows this rubric+judge reach at least this κ")
    p.add_argument("--rubric-test", default=None, help="RESULT.json from `rlaif rubric test` (needed with --min-kappa)")
    p.add_argument("--format", action="extend", nargs="+", choices=FORMATS,
                   help="also export pairs.parquet / pairs.jsonl (several: --format parquet jsonl)")
    p.add_argument("--name", default=None, help="dataset name for the card")
    p.add_argument("--push-to-hub", default=None, metavar="REPO", help="upload to the Hugging Face Hub (needs a token)")
    p.set_defaults(func=cmd_pairs)
