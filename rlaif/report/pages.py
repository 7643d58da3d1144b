"""The pages of `rlaif report`: one renderer per result kind (rubric test, rubric diff, judged
JSONL, eval report) on a shared page frame, plus the compact summary page the PNG is taken of.

Each renderer takes the parsed result and returns a whole HTML document; charts come from svg.py.
The training report (curves from metrics.jsonl) lives in training.py.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from rlaif.report.svg import (
    FONT,
    bar_chart,
    calibration_plot,
    esc,
    heatmap,
    histogram,
    interval_plot,
    nice_max,
    num,
    pct,
    pct_delta,
)

# ---------------------------------------------------------------------------------------------
# Page
# ---------------------------------------------------------------------------------------------
CSS = "\nbody{" + FONT + """;margin:24px auto;max-width:1280px;color:#111;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:13px} .grid{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:150px}
.card .v{font-size:26px;font-weight:700} .card .l{font-size:12px;color:#555}
.flag{background:#fff4e5;border-left:4px solid #ff9800;padding:8px 12px;margin:6px 0;font-size:14px}
table{border-collapse:collapse;font-size:13px}
td,th{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#fafafa} td.n{text-align:right;font-variant-numeric:tabular-nums} tr.head td{font-weight:700}
.ex{font-size:12px;white-space:pre-wrap;max-width:380px;max-height:140px;overflow:hidden;color:#333}
.small{font-size:12px;color:#555} svg.chart{background:#fff;border:1px solid #eee;border-radius:6px}
"""


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="generator" content="rlaif report"><style>{CSS}</style></head><body>{body}'
            f'<p class="small">Made by <code>rlaif report</code>. '
            f'Self-contained: no scripts, no network.</p></body></html>')


def cards(items: list[tuple[str, str, str]]) -> str:
    return '<div class="grid">' + "".join(
        f'<div class="card"><div class="v">{esc(v)}</div><div class="l">{esc(label)}</div>'
        f'<div class="small">{esc(s)}</div></div>' for v, label, s in items) + "</div>"


def table(header: list[str], rows: list[list], cls_rows: list[str] | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for i, r in enumerate(rows):
        cls = f' class="{cls_rows[i]}"' if cls_rows and cls_rows[i] else ""
        out.append(f"<tr{cls}>" + "".join(c if isinstance(c, Raw) else
                                          (f'<td class="n">{esc(num(c))}</td>'
                                           if isinstance(c, (int, float)) or c is None else f"<td>{esc(c)}</td>")
                                          for c in r) + "</tr>")
    return "".join(out) + "</table>"


class Raw(str):
    """A pre-rendered <td>."""


def td_ex(text) -> Raw:
    return Raw(f'<td><div class="ex">{esc(text or "")}</div></td>')


# ---------------------------------------------------------------------------------------------
# Rubric test
# ---------------------------------------------------------------------------------------------
def ci_str(m) -> str:
    return f"[{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]" if m.get("ci") else ""


def rubric_test_charts(res: dict) -> dict[str, str]:
    """The charts of a rubric-test result, by name (used by the full page and the PNG summary)."""
    mode = res["gold"]["mode"]
    M = res["metrics"]
    val = lambda k: (M.get(k) or {}).get("value")  # noqa: E731
    ci = lambda k: (M.get(k) or {}).get("ci")  # noqa: E731
    charts = {}
    conf = res["confusion"]
    label_names = {str(v): f"{v} {k}" for k, v in (res["rubric"].get("labels") or {}).items()}
    labels = [str(x) for x in conf["labels"]]
    shown = [label_names.get(str(x), str(x)) for x in conf["labels"]]
    charts["confusion"] = heatmap(conf["matrix"], shown, labels, "confusion matrix (rows: human)")
    hist = res["histograms"]
    charts["labels"] = bar_chart(shown, {"human": [hist["human"].get(k, 0) for k in labels],
                                          "judge": [hist["judge"].get(k, 0) for k in labels]},
                                 "label distribution: human vs judge", fmt=lambda v: f"{v:.0f}")
    if mode == "pairwise":
        hp = hist["p_a"]
        charts["scores"] = histogram(hp["edges"], hp["counts"], "judge P(A better), order-averaged")
        names = ["first_position_rate", "mean_p_first", "judge_a_rate", "human_a_rate", "position_consistency"]
        charts["position"] = bar_chart(["first slot", "P(first)", "judge: A", "human: A", "consistent"],
                                       {"share": [val(k) for k in names]}, "position: 0.5 = no preference for a slot",
                                       ymax=1.0, fmt=lambda v: f"{v:.2f}", ref=0.5,
                                       intervals={"share": [ci(k) for k in names]}, w=460)
        charts["length"] = bar_chart(["judge", "humans"], {"P(prefers longer)": [val("judge_prefers_longer"),
                                                                                 val("human_prefers_longer")]},
                                     "length: P(prefers the longer response)", ymax=1.0, fmt=lambda v: f"{v:.2f}",
                                     ref=0.5, intervals={"P(prefers longer)": [ci("judge_prefers_longer"),
                                                                               ci("human_prefers_longer")]}, w=300)
        rows = ["kappa", "kappa_linear", "accuracy", "accuracy_no_ties", "agreement_both_decided", "length_bias"]
    else:
        hs = hist["score"]
        charts["scores"] = histogram(hs["edges"], hs["counts"], "judge expected score",
                                     xfmt=lambda v: f"{v:g}", centers=True)
        rows = ["kappa_quadratic", "kappa_linear", "kappa", "accuracy", "spearman"]
    cal = res["calibration"]
    charts["calibration"] = calibration_plot(cal["bins"], f"calibration (ECE {num(cal.get('ece'))})",
                                             x_label=cal.get("x_label", "predicted"),
                                             y_label=cal.get("y_label", "observed"))
    extra: dict[str, list[tuple[float, str]]] = {}
    for bname, b in res["baselines"].items():
        for k, v in b.items():
            extra.setdefault(k, []).append((v, bname))
    charts["metrics"] = interval_plot([(k, val(k), ci(k)) for k in rows if k in M],
                                      "agreement with humans (dot: judge, line: 95% CI, ◆: baselines)", extra=extra)
    return charts


def _disagreements(res: dict, n: int = 20) -> list[dict]:
    items = [x for x in res["items"] if x.get("error") is None and x["judge"] != x["human"]]
    if res["gold"]["mode"] == "pairwise":
        items.sort(key=lambda x: -abs(x["p_a"] - 0.5))
    else:
        items.sort(key=lambda x: -abs(x["score"] - x["human"]))
    return items[:n]


def rubric_test_html(res: dict) -> str:
    mode = res["gold"]["mode"]
    M = res["metrics"]
    head = res["headline"]
    charts = rubric_test_charts(res)
    b = [f"<h1>Rubric test: {esc(res['rubric']['id'])}</h1>",
         f'<div class="meta">judge <b>{esc(res["judge"])}</b> ({esc(res["method"])}) · gold '
         f'<code>{esc(res["gold"]["path"])}</code> '
         f'({esc(mode)}, {res["n"]} of {res["gold"]["rows_in_file"]} items, {res["scored"]} scored) · '
         f'{esc(res["created"])} · '
         + (f'tie rule: {esc(res["settings"].get("tie_rule") or "-")}' if mode == "pairwise" else
            f'scores to labels: {esc(res["settings"].get("score_to_label"))}') + '</div>']
    for f in res.get("flags", []):
        b.append(f'<div class="flag">⚠ {esc(f)}</div>')
    heads = [(num(M[head]["value"]), head, ci_str(M[head]))]
    for bname, bl in res["baselines"].items():
        heads.append((num(bl.get(head)), f"{head}: {bname}", "baseline"))
    heads.append((num(M["accuracy"]["value"]), "accuracy", ci_str(M["accuracy"])))
    if mode == "pairwise":
        pc = M["position_consistency"]
        heads.append((num(pc["value"]), "position consistency", ci_str(pc)))
    else:
        heads.append((num(M["spearman"]["value"]), "Spearman ρ", ci_str(M["spearman"])))
    heads.append((f"{res['coverage']:.1%}" if res["coverage"] is not None else "n/a", "coverage",
                  ", ".join(f"{k}: {v}" for k, v in res["unscored"].items()) or "all scored"))
    b.append(cards(heads))
    b.append("<h2>Agreement</h2>")
    b.append('<div class="grid">' + charts["metrics"] + charts["confusion"] + "</div>")
    from rlaif.gold import METRIC_DOCS
    bnames = list(res["baselines"])
    rows, cls = [], []
    for k, m in M.items():
        rows.append([k, m["value"], ci_str(m),
                     *[res["baselines"][bn].get(k) if k in res["baselines"][bn] else "" for bn in bnames],
                     METRIC_DOCS.get(k, "")])
        cls.append("head" if k == head else "")
    b.append(table(["metric", "judge", "95% CI", *bnames, "meaning"], rows, cls))
    b.append("<h2>Distributions and biases</h2>")
    b.append('<div class="grid">' + charts["labels"] + charts["scores"] + charts.get("position", "")
             + charts.get("length", "") + charts["calibration"] + "</div>")
    b.append("<h2>Example disagreements</h2><p class='small'>The judge's most confident disagreements with the human "
             "label.</p>")
    ex = _disagreements(res)
    if not ex:
        b.append("<p>none: the judge agrees with every scored human label.</p>")
    elif mode == "pairwise":
        b.append(table(["id", "human", "judge", "P(A)", "consistent", "prompt", "response A", "response B"],
                        [[x["id"], x["human"], x["judge"], x["p_a"], str(x.get("consistent")), td_ex(x["prompt"]),
                          td_ex(x.get("response_a")), td_ex(x.get("response_b"))] for x in ex]))
    else:
        b.append(table(["id", "human", "judge", "expected score", "prompt", "response"],
                        [[x["id"], f"{x['human']} ({x['human_label']})" if x.get("human_label") else x["human"],
                          x["judge"], x["score"], td_ex(x["prompt"]), td_ex(x.get("response"))] for x in ex]))
    bad = [x for x in res["items"] if x.get("error")][:10]
    if bad:
        b.append("<h2>Unscored items</h2>")
        b.append(table(["id", "reason", "detail"], [[x["id"], x["error"], x.get("detail") or ""] for x in bad]))
    b.append(HOW_TO_READ)
    return page(f"rubric test {res['rubric']['id']}", "".join(b))


HOW_TO_READ = """<h2>How to read this report</h2><ul class="small">
<li><b>κ</b> is agreement corrected for chance: 0 is what a judge guessing with its own label frequencies gets,
1 is perfect. Compare it with the baselines (◆), not with 1: people agree with each other only partly
(MT-Bench human-human agreement is about 0.64 with ties, 0.82 without).</li>
<li><b>Accuracy without ties</b> forces the judge to choose on the items people did not call a tie.</li>
<li><b>Position</b>: "first slot" is how often a single-order verdict picks whichever response was shown first;
0.5 is unbiased. The final verdict averages both orders, so "judge: A" should sit near "human: A".</li>
<li><b>Length</b>: if the judge prefers the longer response much more often than people do,
the rubric rewards verbosity.</li>
<li><b>Calibration</b>: points on the dashed diagonal mean the judge's probabilities can be read as frequencies.</li>
<li>Lines are 95% bootstrap intervals over items; with a few hundred items a κ is uncertain by about ±0.07.</li>
</ul>"""


# ---------------------------------------------------------------------------------------------
# Rubric diff
# ---------------------------------------------------------------------------------------------
def rubric_diff_html(res: dict) -> str:
    ch = res["changes"]
    b = [f"<h1>Rubric diff: {esc(res['old']['rubric']['id'])} → {esc(res['new']['rubric']['id'])}</h1>",
         f'<div class="meta">gold <code>{esc(res["gold"]["path"])}</code> · {res["items_compared"]} items '
         f'scored by both · '
         f'judges {esc(res["old"]["judge"])} / {esc(res["new"]["judge"])}</div>']
    rows = [(k, c["delta"], c["ci"]) for k, c in ch.items() if c["delta"] is not None]
    span = max([abs(x) for _, d, c in rows for x in ([d] + (c or []))] + [0.05])
    span = nice_max(span)
    b.append(interval_plot(rows, "change per metric (new − old), paired bootstrap 95% CI", lo=-span, hi=span, ref=0.0))
    b.append(table(["metric", "old", "new", "delta", "95% CI", ""],
                    [[k, c["old"], c["new"], c["delta"], f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]" if c["ci"] else "",
                      "significant" if c["significant"] else ""] for k, c in ch.items()]))
    d = res["disagreements"]
    b.append(f"<h2>Items where the versions disagree ({len(d)})</h2><p class='small'>closer to the human label: "
             + esc(", ".join(f"{k} {v}" for k, v in sorted(res["disagreement_summary"].items()))) + "</p>")
    b.append(table(["id", "human", "old", "new", "closer", "prompt"],
                    [[x["id"], x["human"], x["old"], x["new"], x["better"], td_ex(x.get("prompt"))] for x in d[:50]]))
    return page("rubric diff", "".join(b))


# ---------------------------------------------------------------------------------------------
# A judged JSONL
# ---------------------------------------------------------------------------------------------
def judged_summary(rows: list[dict]) -> dict:
    from rlaif import agreement as ag

    scored = [r for r in rows if not r.get("error")]
    out = {"n": len(rows), "scored": len(scored),
           "unscored": dict(Counter(r["error"] for r in rows if r.get("error"))),
           "judges": dict(Counter(r.get("judge") for r in rows)),
           "rubrics": dict(Counter(r.get("rubric") for r in rows))}
    pw = [r for r in scored if r.get("p_a") is not None]
    ab = [r for r in scored if r.get("score") is not None]
    if pw:
        labels = [ag.pair_label(r["p_a"], r.get("consistent")) for r in pw]
        out["pairwise"] = {
            "n": len(pw), "preference": dict(Counter(labels)),
            "position_consistency": ag.position_consistency([r.get("consistent") for r in pw]),
            "first_position_rate": ag.first_position_rate([r.get("orders") for r in pw]),
            "mean_p_first": ag.mean_first_probability([r.get("orders") for r in pw]),
            "a_rate": ag.a_rate(labels),
            "prefers_longer": ag.prefers_longer_rate(labels, [len(r.get("response_a", "")) for r in pw],
                                                     [len(r.get("response_b", "")) for r in pw]),
            "p_a": [r["p_a"] for r in pw],
        }
    if ab:
        out["absolute"] = {"n": len(ab), "scores": [r["score"] for r in ab],
                           "mean": sum(r["score"] for r in ab) / len(ab)}
    return out


def judged_html(rows: list[dict], source: str) -> str:
    s = judged_summary(rows)
    b = [f"<h1>Judging run: {esc(Path(source).name)}</h1>",
         f'<div class="meta">{s["n"]} rows, {s["scored"]} scored · judge {esc(", ".join(map(str, s["judges"])))} · '
         f'rubric {esc(", ".join(map(str, s["rubrics"])))}</div>']
    heads = [(str(s["scored"]), "scored", f"of {s['n']}")]
    if s["unscored"]:
        heads.append((str(s["n"] - s["scored"]), "unscored", ", ".join(f"{k}: {v}" for k, v in s["unscored"].items())))
    charts = []
    if "pairwise" in s:
        p = s["pairwise"]
        heads.append((num(p["position_consistency"]), "position consistency", ""))
        charts.append(histogram([i / 10 for i in range(11)], _bin(p["p_a"], [i / 10 for i in range(11)]),
                                "P(A better), order-averaged"))
        charts.append(bar_chart(["a", "tie", "b"], {"verdicts": [p["preference"].get(k, 0) for k in ("a", "tie", "b")]},
                                "final preference", fmt=lambda v: f"{v:.0f}", w=300))
        charts.append(bar_chart(["first slot", "P(first)", "final: A", "consistent", "longer"],
                                {"share": [p["first_position_rate"], p["mean_p_first"], p["a_rate"],
                                           p["position_consistency"], p["prefers_longer"]]},
                                "position and length (0.5 = no preference)", ymax=1.0, fmt=lambda v: f"{v:.2f}",
                                ref=0.5, w=460))
    if "absolute" in s:
        a = s["absolute"]
        lo, hi = math.floor(min(a["scores"])), math.ceil(max(a["scores"]))
        hi = hi if hi > lo else lo + 1
        edges = [lo + (hi - lo) * i / 16 for i in range(17)]
        heads.append((num(a["mean"]), "mean score", ""))
        charts.append(histogram(edges, _bin(a["scores"], edges), "expected score", xfmt=lambda v: f"{v:.1f}"))
    b.append(cards(heads))
    b.append('<h2>Distributions and biases</h2><div class="grid">' + "".join(charts) + "</div>")
    bad = [r for r in rows if r.get("error")][:10]
    if bad:
        b.append("<h2>Unscored rows</h2>" + table(["id", "reason", "detail"],
                                                   [[r.get("id", ""), r["error"], r.get("detail") or ""] for r in bad]))
    return page(f"judged {Path(source).name}", "".join(b))


def _bin(values, edges) -> list[int]:
    counts = [0] * (len(edges) - 1)
    for v in values:
        for i in range(len(counts)):
            if edges[i] <= v < edges[i + 1] or (i == len(counts) - 1 and v == edges[-1]):
                counts[i] += 1
                break
    return counts


# ---------------------------------------------------------------------------------------------
# Eval report (rlaif.eval/1)
# ---------------------------------------------------------------------------------------------
def eval_charts(res: dict) -> dict[str, str]:
    """The eval report's charts by name (the full page and the PNG summary use them)."""
    wr, cap, ref = res.get("win_rate"), res.get("capability"), res.get("refusal")
    charts = {}
    if wr:
        charts["win_rate"] = interval_plot([("judged win rate", wr["value"], wr.get("ci"))],
                                           "adapter vs base (0.5 = no change)", lo=0.0, hi=1.0, ref=0.5)
    rows = []
    if cap:
        rows.append(("capability Δ (exact match)", cap["delta"], cap.get("delta_ci")))
    if ref:
        rows.append(("over-refusal Δ (safe)", ref["safe"]["delta"], ref["safe"].get("delta_ci")))
        rows.append(("refusal Δ (unsafe)", ref["unsafe"]["delta"], ref["unsafe"].get("delta_ci")))
    if rows:
        charts["tax"] = interval_plot(rows, "alignment tax: adapter − base (95% CIs)", lo=-1.0, hi=1.0, ref=0.0)
    cats, base, adapter = [], [], []
    if cap:
        cats.append("capability")
        base.append(cap["base"]["accuracy"])
        adapter.append(cap["adapter"]["accuracy"])
    if ref:
        for label, name in (("safe", "refused (safe)"), ("unsafe", "refused (unsafe)")):
            cats.append(name)
            base.append(ref[label]["base"]["rate"])
            adapter.append(ref[label]["adapter"]["rate"])
    if cats:
        charts["rates"] = bar_chart(cats, {"base": base, "adapter": adapter}, "base vs adapter", ymax=1.0,
                                    fmt=lambda v: f"{v:.2f}", w=460)
    if wr:
        counts = [wr["wins"], wr["ties"], wr["losses"], wr["identical"]]
        charts["outcomes"] = bar_chart(["wins", "ties", "losses", "identical"], {"items": counts},
                                       "adapter vs base, per prompt", fmt=lambda v: f"{v:.0f}", w=340,
                                       ymax=5 * math.ceil(max(counts + [1]) / 5))     # whole-number ticks
    return charts


def eval_html(res: dict, source: str) -> str:
    st, wr, cap, ref = res.get("settings", {}), res.get("win_rate"), res.get("capability"), res.get("refusal")
    b = [f"<h1>Eval: {esc(Path(str(st.get('adapter', source))).name)} vs its base</h1>",
         f'<div class="meta">judge {esc(res.get("judge"))} · rubric {esc(res.get("rubric"))} · refusals judged with '
         f'{esc(res.get("refusal_rubric"))} · {esc(st.get("decoding", ""))} decoding · '
         f'{esc(res.get("created", ""))}</div>']
    b += [f'<div class="flag">⚠ {esc(w)}</div>' for w in res.get("warnings") or []]
    heads = []
    if wr:
        heads.append((pct(wr["value"]), "judged win rate", f"95% CI {pct(wr['ci'][0])}–{pct(wr['ci'][1])} · "
                      f"{wr['n']} prompts, position consistency {num(wr.get('position_consistency'))}"))
    if cap:
        heads.append((pct_delta(cap["delta"]), "capability change", f"exact match {pct(cap['base']['accuracy'])} → "
                      f"{pct(cap['adapter']['accuracy'])} (n {cap['base']['n']})"))
    if ref:
        for label, what in (("safe", "over-refusal change"), ("unsafe", "unsafe-refusal change")):
            r = ref[label]
            heads.append((pct_delta(r["delta"]), what, f"{pct(r['base']['rate'])} → {pct(r['adapter']['rate'])} "
                          f"of {r['base']['n']} {label} prompts"))
    b.append(cards(heads))
    parts = [wr or {}] + ([ref[label][side] for label in ("safe", "unsafe") for side in ("base", "adapter")]
                          if ref else [])
    unscored = sum((Counter(p.get("unscored") or {}) for p in parts), Counter())     # summed over the sub-reports
    if unscored:
        b.append(f'<div class="flag">⚠ unscored judgments (excluded, not guessed): '
                 f'{esc(", ".join(f"{k}: {v}" for k, v in unscored.items()))}</div>')
    c = eval_charts(res)
    b.append('<div class="grid">' + "".join(c.values()) + "</div>")
    items = res.get("items") or {}
    lost = [r for r in items.get("win_rate") or [] if r.get("outcome") is not None and r["outcome"] < 0.5][:10]
    if lost:
        b.append("<h2>Prompts where the judge preferred the base</h2>" + table(
            ["id", "prompt", "base", "adapter", "P(adapter)"],
            [[r["id"], td_ex(r["prompt"]), td_ex(r["base"]), td_ex(r["adapter"]), r.get("p_adapter")] for r in lost]))
    flipped = [r for r in items.get("refusal") or [] if r.get("base_refused") is not None
               and r.get("adapter_refused") is not None and r["base_refused"] != r["adapter_refused"]][:10]
    if flipped:
        b.append("<h2>Refusal changed</h2>" + table(
            ["id", "label", "prompt", "base", "adapter"],
            [[r["id"], r["label"], td_ex(r["prompt"]),
              td_ex(("refused: " if r["base_refused"] else "answered: ") + r["base"]),
              td_ex(("refused: " if r["adapter_refused"] else "answered: ") + r["adapter"])] for r in flipped]))
    changed = [r for r in items.get("capability") or [] if r.get("base_correct") != r.get("adapter_correct")][:10]
    if changed:
        b.append("<h2>Capability answers that changed correctness</h2>" + table(
            ["id", "question", "gold", "base", "adapter"],
            [[r["id"], td_ex(r["question"]), r["gold"], td_ex(("✓ " if r["base_correct"] else "✗ ") + r["base"]),
              td_ex(("✓ " if r["adapter_correct"] else "✗ ") + r["adapter"])] for r in changed]))
    return page(f"eval {Path(source).name}", "".join(b))


def summary_html(res: dict) -> str | None:
    """A compact page for the PNG: title, headline numbers, and the main charts."""
    if str(res.get("schema", "")).startswith("rlaif.eval/"):
        return page("summary", '<div class="grid">' + "".join(eval_charts(res).values()) + "</div>")
    if res.get("kind") != "rubric_test":
        return None
    M, head = res["metrics"], res["headline"]
    c = rubric_test_charts(res)
    base = ", ".join(f"{n}: {num(bl.get(head))}" for n, bl in res["baselines"].items())
    body = (f'<h1>{esc(res["rubric"]["id"])} · {esc(res["judge"])} · {esc(Path(res["gold"]["path"]).name)}</h1>'
            f'<div class="meta">{head} <b>{num(M[head]["value"])}</b> {ci_str(M[head])} (baselines {esc(base)}) · '
            f'accuracy {num(M["accuracy"]["value"])} · {res["scored"]}/{res["n"]} scored</div>'
            + "".join(f'<div class="flag">⚠ {esc(f)}</div>' for f in res.get("flags", []))
            + '<div class="grid">' + c["metrics"] + c["confusion"] + c["calibration"] + c["scores"]
            + c.get("position", c["labels"]) + c.get("length", "") + "</div>")
    return page("summary", body)

