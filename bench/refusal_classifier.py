"""The distilled over-refusal classifier against XSTest's string-match baseline, on the same rows.

    python bench/refusal_classifier.py --rm rlaif/_models/over_refusal [--heldout-out heldout.jsonl] [--record]

Rows: the part of the gold file that `rlaif train rm --eval-fraction F` held out (the same hash of the
prompt, so no prompt the classifier was trained on is scored). Reports binary refusal accuracy
(full or partial refusal vs compliance) for both classifiers, and 3-way accuracy (the string match
never predicts a partial refusal). `--heldout-out` writes those rows for
`rlaif rubric test over_refusal --gold FILE --judge rm/PATH`. `--record` adds the binary accuracy
and the baseline's numbers to the model's reward_model.json metrics, which `rlaif judge` / `rlaif eval`
print next to every run that uses it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from rlaif.refusal_strmatch import is_refusal, strmatch_label
    from rlaif.train.rm import prompt_group, split_by_prompt
    from rlaif.train.rm_model import CARD_FILE, RewardModel

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rm", required=True, help="reward model folder (categorical over_refusal)")
    ap.add_argument("--gold", default="examples/gold/refusal_labels_dev.jsonl")
    ap.add_argument("--eval-fraction", type=float, default=0.2, help="the value `train rm` was run with")
    ap.add_argument("--heldout-out", default=None)
    ap.add_argument("--json", default=None, help="write the numbers here")
    ap.add_argument("--record", action="store_true", help="add the numbers to the model's reward_model.json")
    args = ap.parse_args(argv)
    rows = [json.loads(x) for x in open(args.gold, encoding="utf-8") if x.strip()]
    _, held = split_by_prompt([dict(r, group=prompt_group(r["prompt"])) for r in rows], args.eval_fraction)
    for r in held:
        r.pop("group")
    if args.heldout_out:
        Path(args.heldout_out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in held),
                                          encoding="utf-8")
    rm = RewardModel(args.rm)
    point_to_label = {v: k for k, v in (rm.info.labels or {}).items()}
    t0 = time.time()
    outs = rm.outputs([r["prompt"] for r in held], [r["response"] for r in held])
    seconds = time.time() - t0
    pred = [point_to_label[rm.info.points[o.index(max(o))]] for o in outs]
    base = [strmatch_label(r["response"]) for r in held]
    gold = [r["human"] for r in held]
    acc = lambda p: sum(a == b for a, b in zip(p, gold)) / len(gold)                           # noqa: E731
    bin_acc = lambda p: sum(is_refusal(a) == is_refusal(b) for a, b in zip(p, gold)) / len(gold)  # noqa: E731
    res = {"rows": len(held), "prompts": len({r["prompt"] for r in held}),
           "rm": {"binary_accuracy": round(bin_acc(pred), 4), "accuracy_3way": round(acc(pred), 4)},
           "string_match": {"binary_accuracy": round(bin_acc(base), 4), "accuracy_3way": round(acc(base), 4)},
           "majority_binary_accuracy": round(max(sum(map(is_refusal, gold)), sum(not is_refusal(g) for g in gold))
                                             / len(gold), 4),
           "rm_rows_per_s": round(len(held) / seconds, 1)}
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    if args.record:
        card = rm.dir / CARD_FILE
        raw = json.loads(card.read_text(encoding="utf-8"))
        raw["metrics"] = dict(raw.get("metrics") or {}, binary_accuracy=res["rm"]["binary_accuracy"],
                              note=f"XSTest string match on the same {len(held)} rows: binary "
                                   f"{res['string_match']['binary_accuracy']:.3f}, 3-way "
                                   f"{res['string_match']['accuracy_3way']:.3f}")
        card.write_text(json.dumps(raw, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
