"""`rlaif rubric lint | render | list | test | diff`: shells over rlaif.rubrics and rlaif.gold.
"""
from __future__ import annotations

import json

from rlaif.cli.common import add_concurrency, add_dirs, add_judging_flags, add_quiet, count, kappa, parser, stderr
from rlaif.cli.gate import kappa_floor
from rlaif.errors import RlaifError


def cmd_rubric_lint(args) -> int:
    from rlaif.io import read_text
    from rlaif.rubrics import find_rubric, lint

    bad = unreadable = 0
    for target in args.paths:
        try:
            path = find_rubric(target, args.rubrics_dir)
            read_text(path)         # a file that cannot be read is bad input (exit 2), not a lint finding
        except RlaifError as e:
            stderr(f"error: {e}")
            unreadable += 1
            continue
        problems = lint(path, args.prompts_dir)
        if problems:
            bad += 1
            print(f"{path}: {len(problems)} problem(s)")
            for pr in problems:
                print(f"  - {pr}")
        else:
            print(f"{path}: ok")
    return 2 if unreadable else 1 if bad else 0


def cmd_rubric_render(args) -> int:
    from rlaif.io import infer_mode
    from rlaif.render import build_messages
    from rlaif.rubrics import load_rubric, sample_row

    rubric = load_rubric(args.name, args.rubrics_dir, args.prompts_dir)
    if args.example:
        from rlaif.io import read_json

        row = read_json(args.example)       # the one reader: missing file, folder, encoding, JSON errors
        if not isinstance(row, dict):
            raise RlaifError(f"{args.example}: expected one JSON object (a row), got {type(row).__name__}")
        mode = args.mode or infer_mode(row)
    else:
        mode = args.mode or rubric.modes[0]
        row = sample_row(rubric, mode)
    from rlaif.io import check_row
    check_row(row, args.example or "<sample>", None, mode, rubric.reference == "required")  # type: ignore[arg-type]
    msgs = build_messages(rubric, mode, row, generative=args.generative, swap=args.swap, prompts_dirs=args.prompts_dir)
    if args.json:
        print(json.dumps(msgs, ensure_ascii=False, indent=2))
    else:
        print(f"# rubric {rubric.id}, mode {mode}, template {rubric.templates[mode]}")  # type: ignore[index]
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
            n = len(getattr(e, "problems", []))
            print(f"{name:32} INVALID ({find_rubric(name, args.rubrics_dir)}): {n} problem(s)")
    return 0


def add_rubric(sub):
    p = parser(sub, "rubric", help="author rubrics: lint, render, list, test, diff",
               description="Rubric authoring: lint, render, list, test against human labels, diff versions.")
    rs = p.add_subparsers(dest="rubric_cmd", required=True)
    lp = parser(rs, "lint", help="validate rubric files; lists every problem, exits 1 if any")
    lp.add_argument("paths", nargs="+", help="rubric files or names")
    add_dirs(lp)
    lp.set_defaults(func=cmd_rubric_lint)
    rp = parser(rs, "render", help="print the exact messages a judge would receive")
    rp.add_argument("name", help="rubric name or path")
    rp.add_argument("--example", "-e", help="a JSON file with one input row (default: a built-in sample row)")
    rp.add_argument("--mode", choices=["absolute", "pairwise", "rank"],
                    help="mode to render (default: the rubric's first)")
    rp.add_argument("--generative", action="store_true", help="render the generative variant (rationale, then verdict)")
    rp.add_argument("--swap", action="store_true", help="pairwise: show the swapped order")
    rp.add_argument("--json", action="store_true", help="print the messages as JSON")
    add_dirs(rp)
    rp.set_defaults(func=cmd_rubric_render)
    ls = parser(rs, "list", help="list the rubrics rlaif can find")
    add_dirs(ls)
    ls.set_defaults(func=cmd_rubric_list)
    return rs


def cmd_rubric_test(args) -> int:
    from rlaif.gold import print_result, rubric_test

    res = rubric_test(args.rubric, args.gold, judge=args.judge, limit=args.limit, output=args.output,
                      generative=args.generative, both_orders=not args.one_order, tie_margin=args.tie_margin,
                      score_to_label=args.score_to_label, n_boot=args.bootstrap, seed=args.seed,
                      concurrency=args.concurrency, rubrics_dirs=args.rubrics_dir, prompts_dirs=args.prompts_dir,
                      progress=not args.quiet)
    print_result(res)
    if args.output:
        stderr(f"saved {args.output}")
    if args.min_kappa is not None:
        ok, msg = kappa_floor(res, args.min_kappa, args.output)
        stderr(("PASS: " if ok else "FAIL: ") + msg)
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
        stderr(f"saved {args.output}")
    return 0


def _gold_options(p) -> None:
    p.add_argument("--judge", "-j", default=None, help="provider/model; default local/default (the embedded SmolLM2)")
    p.add_argument("--limit", type=int, default=None, help="judge a seeded random subset of N gold items")
    p.add_argument("--seed", type=int, default=0, help="seed of --limit's subset and of the bootstrap")
    add_judging_flags(p, tie_help="pairwise: a tie when |P(A better) - 0.5| <= this, as `judge` labels it "
                      "(verdicts that flip when A and B swap are ties too)")
    p.add_argument("--score-to-label", choices=["round", "argmax"], default="round",
                   help="absolute: expected score rounded to the nearest point (default), or the most probable point")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs (0: none)")
    add_concurrency(p)
    add_quiet(p)
    add_dirs(p)


def add_rubric_test(rs) -> None:
    tp = parser(rs, "test", help="measure a rubric's agreement with human labels on a gold set",
                description="Judge a gold set (pairwise rows with human a/b/tie, or absolute rows with a "
                            "human score or label) and report κ, accuracy, biases and CIs next to baselines.")
    tp.add_argument("rubric", help="rubric name or path")
    tp.add_argument("--gold", "-g", required=True, help="gold JSONL (e.g. examples/gold/human_pairs_dev.jsonl)")
    tp.add_argument("--output", "-o", default=None, help="save the result JSON (input of rlaif report and the gate)")
    tp.add_argument("--min-kappa", type=kappa, default=None, help="exit 1 if the headline κ is below this")
    _gold_options(tp)
    tp.set_defaults(func=cmd_rubric_test)
    dp = parser(rs, "diff", help="compare two rubric versions on the same gold set",
                description="Both versions on the same gold items: each metric's change with a paired "
                            "bootstrap CI, and the items where they disagree. OLD/NEW may be rubrics or "
                            "saved rubric-test results (.json).")
    dp.add_argument("old", help="the old rubric (name or path) or its saved rubric-test result (.json)")
    dp.add_argument("new", help="the new rubric (name or path) or its saved rubric-test result (.json)")
    dp.add_argument("--gold", "-g", default=None, help="gold JSONL (not needed when OLD and NEW are results)")
    dp.add_argument("--output", "-o", default=None, help="save the diff JSON")
    dp.add_argument("--show", type=count, default=10, help="how many disagreeing items to print")
    _gold_options(dp)
    dp.set_defaults(func=cmd_rubric_diff)
