"""How the shipped over-refusal classifier's features were chosen: grouped cross-validation on the
training part of the gold labels only (the held-out part is never read here).

    python bench/refusal_probe_search.py [--layers 0,9,18,24,30] [--tokens 16,32,64,96] [--json out.json]

The embedded SmolLM2 runs once per row over the rendered prompt + the first max(--tokens) response
tokens, keeping every layer's states; for each (pooling, layer, response tokens) a logistic regression
(standardised features) is fitted under 5-fold cross-validation grouped by prompt on the rows that
`rlaif train rm --eval-fraction 0.2` trains on. Pooling: `last` (the last token), `mean` (the mean over
the response tokens, what `--pooling mean` reads), `mean_all` (over every token). Prints binary refusal
and 3-way accuracy per configuration, and XSTest's string match on the same rows. Needs scikit-learn;
~12-25 min on 2 shared CPU cores (the forward passes), seconds for the fits.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def features(rows, max_tokens: int, cuts: list[int], layers: list[int]):
    """{(pooling, layer, cut): (rows, H) array} from one forward pass per row."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from rlaif.models import load_tokenizer
    from rlaif.train.data import encode

    path, tok = load_tokenizer("default")
    model = AutoModelForCausalLM.from_pretrained(path).model.eval()
    out: dict = {}
    t0 = time.time()
    with torch.inference_mode():
        for i, r in enumerate(rows):
            p, (c,) = encode(tok, [{"role": "user", "content": r["prompt"]}],
                             [[{"role": "assistant", "content": r["response"]}]])
            c = c[:max_tokens]
            hs = torch.stack(model(input_ids=torch.tensor([p + c]), output_hidden_states=True).hidden_states)[:, 0]
            cs = hs.cumsum(1)                                         # (layers, T, H)
            for n in cuts:
                end = len(p) + min(n, len(c)) - 1
                for pool, v in (("last", hs[:, end]), ("mean", (cs[:, end] - cs[:, len(p) - 1]) / min(n, len(c))),
                                ("mean_all", cs[:, end] / (end + 1))):
                    for layer in layers:
                        out.setdefault((pool, layer, n), np.zeros((len(rows), v.shape[1]), np.float32))[i] = v[layer]
            if i % 100 == 99:
                print(f"features: {i + 1}/{len(rows)} rows ({time.time() - t0:.0f}s)", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gold", default="examples/gold/refusal_labels_dev.jsonl")
    ap.add_argument("--eval-fraction", type=float, default=0.2, help="the part `train rm` holds out (not read)")
    ap.add_argument("--layers", default="0,9,18,24,30")
    ap.add_argument("--tokens", default="16,32,64,96", help="response tokens read")
    ap.add_argument("--C", type=float, default=0.05, help="inverse L2 strength of the logistic regression")
    ap.add_argument("--limit", type=int, default=None, help="only the first N training rows (a smoke run)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    try:
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GroupKFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ModuleNotFoundError as e:
        raise SystemExit(f"this study needs scikit-learn: pip install scikit-learn ({e})") from e
    from rlaif.refusal_strmatch import strmatch_label
    from rlaif.train.rm import prompt_group, split_by_prompt

    rows = [json.loads(x) for x in open(args.gold, encoding="utf-8") if x.strip()]
    train, _ = split_by_prompt([dict(r, group=prompt_group(r["prompt"])) for r in rows], args.eval_fraction)
    train = train[:args.limit]
    labels = {"full_refusal": 0, "partial_refusal": 1, "full_compliance": 2}
    y = np.array([labels[r["human"]] for r in train])
    groups = np.array([r["group"] for r in train])
    layers, cuts = [int(x) for x in args.layers.split(",")], [int(x) for x in args.tokens.split(",")]

    def scores(pred):
        return {"binary_accuracy": round(float(((pred <= 1) == (y <= 1)).mean()), 4),
                "accuracy_3way": round(float((pred == y).mean()), 4)}

    res = {"rows": len(train), "string_match": scores(np.array([0 if strmatch_label(r["response"]) == "full_refusal"
                                                                else 2 for r in train])), "cv": []}
    print(f"{len(train)} training rows; string match: {res['string_match']}", flush=True)
    feats = features(train, max(cuts), cuts, layers)
    for (pool, layer, n), X in sorted(feats.items()):
        pred = np.zeros(len(y), int)
        for a, b in GroupKFold(5).split(X, y, groups):
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, max_iter=2000)).fit(X[a], y[a])
            pred[b] = clf.predict(X[b])
        res["cv"].append(dict(pooling=pool, layer=layer, response_tokens=n, **scores(pred)))
        print(json.dumps(res["cv"][-1]), flush=True)
    best = max(res["cv"], key=lambda r: r["binary_accuracy"])
    print("best by CV binary accuracy:", json.dumps(best))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
