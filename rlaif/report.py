"""`rlaif report`: one self-contained HTML file (and optionally a PNG) for a result.

Why hand-built inline SVG: the report must open anywhere, offline, years later: no network, no
JavaScript, no plotting library to install (matplotlib is not a dependency). A handful of small
chart functions below (bars, histogram, heatmap, calibration, interval plot) is all it needs.
The PNG is a screenshot of a compact summary page taken by headless Chromium (the one
rasteriser we can count on for HTML+SVG; Debian: `apt-get install chromium`).

Inputs it understands:
- a rubric-test result (`rlaif rubric test -o RESULT.json`): the full report;
- a rubric diff (`rlaif rubric diff -o DIFF.json`): changes with CIs and disagreeing items;
- a judged JSONL (`rlaif judge -o judged.jsonl`): score / preference histograms, position
  consistency, first-position and length preferences, unscored reasons, examples;
- an eval report (`rlaif eval -o EVAL.json`, schema rlaif.eval/1): win rate and the alignment
  tax (capability and refusal changes) with their CIs, base vs adapter bars, and the items where
  the adapter lost, changed its refusal, or changed its capability answer;
- any other JSON: shown generically (numbers as a table, every {value, ci} as an interval plot,
  number lists as histograms).
"""
from __future__ import annotations

import html
import math
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from rlaif.errors import InputError, RlaifError

PALETTE = ["#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#a463f2", "#97bbf5", "#9c6b4e"]
FONT = "font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif"


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def _num(v, digits=3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


# ---------------------------------------------------------------------------------------------
# Tiny SVG charts. Each returns a complete <svg> element as a string.
# ---------------------------------------------------------------------------------------------
def _svg(w, h, body, title) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" role="img" aria-label="{esc(title)}" style="{FONT}">'
            f'<title>{esc(title)}</title>'
            f'<text x="{w / 2}" y="16" text-anchor="middle" font-size="13" font-weight="600">{esc(title)}</text>'
            f'{body}</svg>')


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def _yaxis(x0, y0, plot_h, plot_w, ymax, ticks=None, fmt=lambda v: f"{v:g}") -> str:
    if ticks is None:      # 4 steps for 2, 2.5 (x10^k) and 1.0 (probabilities: quarters); 5 otherwise
        lead = ymax / 10 ** math.floor(math.log10(ymax))
        ticks = 4 if lead in (2, 2.5) or ymax == 1.0 else 5
    out = []
    for i in range(ticks + 1):
        v = ymax * i / ticks
        y = y0 - plot_h * i / ticks
        out.append(f'<line x1="{x0}" x2="{x0 + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                   f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10" fill="#555">{esc(fmt(v))}</text>')
    return "".join(out)


def bar_chart(categories: list[str], series: dict[str, list[float | None]], title: str, *, ymax: float | None = None,
              w: int = 420, h: int = 260, fmt=lambda v: f"{v:g}", ref: float | None = None,
              intervals: dict[str, list] | None = None) -> str:
    """Grouped bars: one group per category, one bar per series. `ref` draws a dashed reference
    line (e.g. 0.5 = no bias); `intervals[series][i]` = [lo, hi] draws an error bar."""
    left, right, top, bottom = 44, 10, 28, 46 if len(series) > 1 else 34
    pw, ph = w - left - right, h - top - bottom
    vals = [v for vs in series.values() for v in vs if v is not None]
    ymax = ymax or _nice_max(max(vals + [0]) * 1.05)
    y0 = top + ph
    body = [_yaxis(left, y0, ph, pw, ymax, fmt=fmt)]
    n, k = max(1, len(categories)), max(1, len(series))
    gw = pw / n
    bw = min(40, gw * 0.8 / k)
    for ci, cat in enumerate(categories):
        gx = left + gw * ci + (gw - bw * k) / 2
        for si, (name, vs) in enumerate(series.items()):
            v = vs[ci]
            x = gx + si * bw
            if v is None:
                body.append(f'<text x="{x + bw / 2:.1f}" y="{y0 - 3}" text-anchor="middle" font-size="9" fill="#999">n/a</text>')
                continue
            bh = ph * max(0.0, min(v, ymax)) / ymax
            body.append(f'<rect x="{x:.1f}" y="{y0 - bh:.1f}" width="{bw * 0.92:.1f}" height="{bh:.1f}" '
                        f'fill="{PALETTE[si % len(PALETTE)]}"><title>{esc(name)} {esc(cat)}: {esc(fmt(v))}</title></rect>')
            iv = (intervals or {}).get(name)
            if iv and iv[ci]:
                lo, hi = (y0 - ph * max(0, min(b, ymax)) / ymax for b in iv[ci])
                cx = x + bw * 0.46
                body.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{lo:.1f}" y2="{hi:.1f}" stroke="#222" stroke-width="1.2"/>'
                            f'<line x1="{cx - 3:.1f}" x2="{cx + 3:.1f}" y1="{hi:.1f}" y2="{hi:.1f}" stroke="#222"/>'
                            f'<line x1="{cx - 3:.1f}" x2="{cx + 3:.1f}" y1="{lo:.1f}" y2="{lo:.1f}" stroke="#222"/>')
        body.append(f'<text x="{left + gw * (ci + 0.5):.1f}" y="{y0 + 14}" text-anchor="middle" font-size="11">{esc(cat)}</text>')
    if ref is not None and 0 <= ref <= ymax:
        y = y0 - ph * ref / ymax
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#c00" stroke-dasharray="4 3"/>')
    if len(series) > 1:
        lx = left
        for si, name in enumerate(series):
            body.append(f'<rect x="{lx}" y="{h - 14}" width="10" height="10" fill="{PALETTE[si % len(PALETTE)]}"/>'
                        f'<text x="{lx + 14}" y="{h - 5}" font-size="11">{esc(name)}</text>')
            lx += 24 + 7 * len(name)
    return _svg(w, h, "".join(body), title)


def histogram(edges: list[float], counts: list[int], title: str, *, w: int = 420, h: int = 240,
              xfmt=lambda v: f"{v:g}", color: str = PALETTE[0], centers: bool = False) -> str:
    """Bars over [edges[i], edges[i+1]). `centers` labels each bin's centre instead of the edges
    (for bins built around scale points)."""
    left, right, top, bottom = 44, 12, 28, 34
    pw, ph = w - left - right, h - top - bottom
    ymax = _nice_max(max(counts + [1]) * 1.05)
    y0 = top + ph
    body = [_yaxis(left, y0, ph, pw, ymax, fmt=lambda v: f"{v:.0f}")]
    lo, hi = edges[0], edges[-1]
    sx = lambda v: left + pw * (v - lo) / (hi - lo)  # noqa: E731
    for i, c in enumerate(counts):
        x1, x2 = sx(edges[i]), sx(edges[i + 1])
        bh = ph * c / ymax
        body.append(f'<rect x="{x1 + 1:.1f}" y="{y0 - bh:.1f}" width="{max(1, x2 - x1 - 2):.1f}" height="{bh:.1f}" '
                    f'fill="{color}"><title>{xfmt(edges[i])}..{xfmt(edges[i + 1])}: {c}</title></rect>')
    step = max(1, len(edges) // 6)
    ticks = ([(a + b) / 2 for a, b in zip(edges, edges[1:])] if centers else
             edges[::step] + ([edges[-1]] if (len(edges) - 1) % step else []))
    for e in ticks:
        body.append(f'<text x="{sx(e):.1f}" y="{y0 + 14}" text-anchor="middle" font-size="10">{esc(xfmt(e))}</text>')
    return _svg(w, h, "".join(body), title)


def heatmap(matrix: list[list[int]], row_labels: list, col_labels: list, title: str, *,
            row_title: str = "human", col_title: str = "judge", cell: int | None = None) -> str:
    n_r, n_c = len(row_labels), len(col_labels)
    cell = cell or max(56, 7 * max(len(str(x)) for x in col_labels) + 10)
    left, top = 30 + 7 * max(len(str(x)) for x in row_labels), 48
    w, h = left + cell * n_c + 16, top + cell * n_r + 34
    peak = max([v for r in matrix for v in r] + [1])
    body = [f'<text x="{left + cell * n_c / 2}" y="36" text-anchor="middle" font-size="11" fill="#555">{esc(col_title)} →</text>',
            f'<text x="12" y="{top + cell * n_r / 2}" font-size="11" fill="#555" '
            f'transform="rotate(-90 12 {top + cell * n_r / 2})" text-anchor="middle">{esc(row_title)} →</text>']
    for i, rl in enumerate(row_labels):
        body.append(f'<text x="{left - 6}" y="{top + cell * i + cell / 2 + 4}" text-anchor="end" font-size="11">{esc(rl)}</text>')
        for j, _cl in enumerate(col_labels):
            v = matrix[i][j]
            a = v / peak
            fill = f"rgba(66,105,208,{0.08 + 0.92 * a:.3f})"
            diag = ' stroke="#111" stroke-width="2"' if str(row_labels[i]) == str(col_labels[j]) else ' stroke="#fff"'
            body.append(f'<rect x="{left + cell * j}" y="{top + cell * i}" width="{cell}" height="{cell}" fill="{fill}"{diag}>'
                        f'<title>{esc(row_title)} {esc(rl)}, {esc(col_title)} {esc(col_labels[j])}: {v}</title></rect>'
                        f'<text x="{left + cell * j + cell / 2}" y="{top + cell * i + cell / 2 + 5}" text-anchor="middle" '
                        f'font-size="13" fill="{"#fff" if a > 0.55 else "#111"}">{v}</text>')
    for j, cl in enumerate(col_labels):
        body.append(f'<text x="{left + cell * j + cell / 2}" y="{top + cell * n_r + 16}" text-anchor="middle" font-size="11">{esc(cl)}</text>')
    return _svg(w, h, "".join(body), title)


def calibration_plot(bins: list[dict], title: str, *, x_label: str = "predicted", y_label: str = "observed",
                     w: int = 300, h: int = 300) -> str:
    left, right, top, bottom = 44, 14, 28, 40
    pw, ph = w - left - right, h - top - bottom
    y0 = top + ph
    sx = lambda v: left + pw * v  # noqa: E731
    sy = lambda v: y0 - ph * v  # noqa: E731
    body = [_yaxis(left, y0, ph, pw, 1.0, fmt=lambda v: f"{v:.2f}"),
            f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(1)}" y2="{sy(1)}" stroke="#999" stroke-dasharray="4 3"/>']
    for v in (0, 0.5, 1):
        body.append(f'<text x="{sx(v):.1f}" y="{y0 + 14}" text-anchor="middle" font-size="10">{v:g}</text>')
    body.append(f'<text x="{left + pw / 2}" y="{h - 6}" text-anchor="middle" font-size="11" fill="#555">{esc(x_label)}</text>')
    body.append(f'<text x="12" y="{top + ph / 2}" font-size="11" fill="#555" transform="rotate(-90 12 {top + ph / 2})" '
                f'text-anchor="middle">{esc(y_label)}</text>')
    if bins:
        pts = " ".join(f"{sx(b['mean_pred']):.1f},{sy(b['observed']):.1f}" for b in bins)
        body.append(f'<polyline points="{pts}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>')
        nmax = max(b["n"] for b in bins)
        for b in bins:
            r = 3 + 7 * math.sqrt(b["n"] / nmax)
            body.append(f'<circle cx="{sx(b["mean_pred"]):.1f}" cy="{sy(b["observed"]):.1f}" r="{r:.1f}" '
                        f'fill="{PALETTE[0]}" fill-opacity="0.6"><title>predicted {b["mean_pred"]:.2f}, observed '
                        f'{b["observed"]:.2f}, n={b["n"]}</title></circle>')
    else:
        body.append(f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle" font-size="12" fill="#999">no data</text>')
    return _svg(w, h, "".join(body), title)


def interval_plot(rows: list[tuple[str, float | None, list | None]], title: str, *, lo: float = -1.0, hi: float = 1.0,
                  ref: float | None = 0.0, w: int = 560, extra: dict[str, list[tuple[float, str]]] | None = None) -> str:
    """One row per metric: a dot at the value and a line for its CI, on a shared axis from lo to hi.
    `extra[name]` adds labelled markers (e.g. baselines) on that row."""
    left, right, top, rh = 170, 20, 30, 24
    h = top + rh * len(rows) + 26
    pw = w - left - right
    sx = lambda v: left + pw * (min(max(v, lo), hi) - lo) / (hi - lo)  # noqa: E731
    body = []
    for t in (lo, (lo + hi) / 2, hi):
        body.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top - 4}" y2="{h - 22}" stroke="#eee"/>'
                    f'<text x="{sx(t):.1f}" y="{h - 8}" text-anchor="middle" font-size="10">{t:g}</text>')
    if ref is not None:
        body.append(f'<line x1="{sx(ref):.1f}" x2="{sx(ref):.1f}" y1="{top - 4}" y2="{h - 22}" stroke="#c00" stroke-dasharray="4 3"/>')
    for i, (name, v, ci) in enumerate(rows):
        y = top + rh * i + rh / 2
        body.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end" font-size="11">{esc(name)}</text>')
        if ci:
            body.append(f'<line x1="{sx(ci[0]):.1f}" x2="{sx(ci[1]):.1f}" y1="{y}" y2="{y}" stroke="{PALETTE[0]}" stroke-width="3"/>')
        for mv, ml in (extra or {}).get(name, []):
            if mv is not None:
                body.append(f'<path d="M{sx(mv):.1f},{y - 7} l4,6 l-4,6 l-4,-6 z" fill="{PALETTE[1]}"><title>{esc(ml)}: {mv:.3f}</title></path>')
        if v is not None:
            body.append(f'<circle cx="{sx(v):.1f}" cy="{y}" r="5" fill="{PALETTE[0]}"><title>{esc(name)}: {v:.3f}'
                        f'{f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""}</title></circle>'
                        f'<text x="{sx(v):.1f}" y="{y - 7}" text-anchor="middle" font-size="9" fill="#333">{v:.2f}</text>')
        else:
            body.append(f'<text x="{left + 4}" y="{y + 4}" font-size="10" fill="#999">n/a</text>')
    return _svg(w, h, "".join(body), title)


# ---------------------------------------------------------------------------------------------
# Page
# ---------------------------------------------------------------------------------------------
CSS = """
body{%s;margin:24px auto;max-width:1280px;color:#111;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:13px} .grid{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.card{border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:150px}
.card .v{font-size:26px;font-weight:700} .card .l{font-size:12px;color:#555}
.flag{background:#fff4e5;border-left:4px solid #ff9800;padding:8px 12px;margin:6px 0;font-size:14px}
table{border-collapse:collapse;font-size:13px} td,th{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#fafafa} td.n{text-align:right;font-variant-numeric:tabular-nums} tr.head td{font-weight:700}
.ex{font-size:12px;white-space:pre-wrap;max-width:380px;max-height:140px;overflow:hidden;color:#333}
.small{font-size:12px;color:#555} svg.chart{background:#fff;border:1px solid #eee;border-radius:6px}
""" % FONT


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="generator" content="rlaif report"><style>{CSS}</style></head><body>{body}'
            f'<p class="small">Made by <code>rlaif report</code>. Self-contained: no scripts, no network.</p></body></html>')


def _cards(cards: list[tuple[str, str, str]]) -> str:
    return '<div class="grid">' + "".join(
        f'<div class="card"><div class="v">{esc(v)}</div><div class="l">{esc(l)}</div>'
        f'<div class="small">{esc(s)}</div></div>' for v, l, s in cards) + "</div>"


def _table(header: list[str], rows: list[list], cls_rows: list[str] | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for i, r in enumerate(rows):
        cls = f' class="{cls_rows[i]}"' if cls_rows and cls_rows[i] else ""
        out.append(f"<tr{cls}>" + "".join(c if isinstance(c, _Raw) else
                                          (f'<td class="n">{esc(_num(c))}</td>' if isinstance(c, (int, float)) or c is None
                                           else f"<td>{esc(c)}</td>") for c in r) + "</tr>")
    return "".join(out) + "</table>"


class _Raw(str):
    """A pre-rendered <td>."""


def _td_ex(text) -> _Raw:
    return _Raw(f'<td><div class="ex">{esc(text or "")}</div></td>')


# ---------------------------------------------------------------------------------------------
# Rubric test
# ---------------------------------------------------------------------------------------------
def _ci_str(m) -> str:
    return f"[{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]" if m.get("ci") else ""


def rubric_test_charts(res: dict) -> dict[str, str]:
    """The charts of a rubric-test result, by name (used by the full page and the PNG summary)."""
    mode = res["gold"]["mode"]
    M = res["metrics"]
    val = lambda k: (M.get(k) or {}).get("value")  # noqa: E731
    ci = lambda k: (M.get(k) or {}).get("ci")  # noqa: E731
    charts = {}
    conf = res["confusion"]
    names = {str(v): f"{v} {k}" for k, v in (res["rubric"].get("labels") or {}).items()}
    labels = [str(x) for x in conf["labels"]]
    shown = [names.get(str(x), str(x)) for x in conf["labels"]]
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
    charts["calibration"] = calibration_plot(cal["bins"], f"calibration (ECE {_num(cal.get('ece'))})",
                                             x_label=cal.get("x_label", "predicted"), y_label=cal.get("y_label", "observed"))
    extra = {}
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
         f'<div class="meta">judge <b>{esc(res["judge"])}</b> ({esc(res["method"])}) · gold <code>{esc(res["gold"]["path"])}</code> '
         f'({esc(mode)}, {res["n"]} of {res["gold"]["rows_in_file"]} items, {res["scored"]} scored) · '
         f'{esc(res["created"])} · '
         + (f'tie rule: {esc(res["settings"].get("tie_rule") or "-")}' if mode == "pairwise" else
            f'scores to labels: {esc(res["settings"].get("score_to_label"))}') + '</div>']
    for f in res.get("flags", []):
        b.append(f'<div class="flag">⚠ {esc(f)}</div>')
    cards = [(_num(M[head]["value"]), head, _ci_str(M[head]))]
    for bname, bl in res["baselines"].items():
        cards.append((_num(bl.get(head)), f"{head}: {bname}", "baseline"))
    cards.append((_num(M["accuracy"]["value"]), "accuracy", _ci_str(M["accuracy"])))
    if mode == "pairwise":
        cards.append((_num(M["position_consistency"]["value"]), "position consistency", _ci_str(M["position_consistency"])))
    else:
        cards.append((_num(M["spearman"]["value"]), "Spearman ρ", _ci_str(M["spearman"])))
    cards.append((f"{res['coverage']:.1%}" if res["coverage"] is not None else "n/a", "coverage",
                  ", ".join(f"{k}: {v}" for k, v in res["unscored"].items()) or "all scored"))
    b.append(_cards(cards))
    b.append("<h2>Agreement</h2>")
    b.append('<div class="grid">' + charts["metrics"] + charts["confusion"] + "</div>")
    from rlaif.gold import METRIC_DOCS
    bnames = list(res["baselines"])
    rows, cls = [], []
    for k, m in M.items():
        rows.append([k, m["value"], _ci_str(m), *[res["baselines"][bn].get(k) if k in res["baselines"][bn] else "" for bn in bnames],
                     METRIC_DOCS.get(k, "")])
        cls.append("head" if k == head else "")
    b.append(_table(["metric", "judge", "95% CI", *bnames, "meaning"], rows, cls))
    b.append("<h2>Distributions and biases</h2>")
    b.append('<div class="grid">' + charts["labels"] + charts["scores"] + charts.get("position", "")
             + charts.get("length", "") + charts["calibration"] + "</div>")
    b.append("<h2>Example disagreements</h2><p class='small'>The judge's most confident disagreements with the human label.</p>")
    ex = _disagreements(res)
    if not ex:
        b.append("<p>none: the judge agrees with every scored human label.</p>")
    elif mode == "pairwise":
        b.append(_table(["id", "human", "judge", "P(A)", "consistent", "prompt", "response A", "response B"],
                        [[x["id"], x["human"], x["judge"], x["p_a"], str(x.get("consistent")), _td_ex(x["prompt"]),
                          _td_ex(x.get("response_a")), _td_ex(x.get("response_b"))] for x in ex]))
    else:
        b.append(_table(["id", "human", "judge", "expected score", "prompt", "response"],
                        [[x["id"], f"{x['human']} ({x['human_label']})" if x.get("human_label") else x["human"],
                          x["judge"], x["score"], _td_ex(x["prompt"]), _td_ex(x.get("response"))] for x in ex]))
    bad = [x for x in res["items"] if x.get("error")][:10]
    if bad:
        b.append("<h2>Unscored items</h2>")
        b.append(_table(["id", "reason", "detail"], [[x["id"], x["error"], x.get("detail") or ""] for x in bad]))
    b.append(HOW_TO_READ)
    return page(f"rubric test {res['rubric']['id']}", "".join(b))


HOW_TO_READ = """<h2>How to read this report</h2><ul class="small">
<li><b>κ</b> is agreement corrected for chance: 0 is what a judge guessing with its own label frequencies gets,
1 is perfect. Compare it with the baselines (◆), not with 1: people agree with each other only partly
(MT-Bench human-human agreement is about 0.64 with ties, 0.82 without).</li>
<li><b>Accuracy without ties</b> forces the judge to choose on the items people did not call a tie.</li>
<li><b>Position</b>: "first slot" is how often a single-order verdict picks whichever response was shown first;
0.5 is unbiased. The final verdict averages both orders, so "judge: A" should sit near "human: A".</li>
<li><b>Length</b>: if the judge prefers the longer response much more often than people do, the rubric rewards verbosity.</li>
<li><b>Calibration</b>: points on the dashed diagonal mean the judge's probabilities can be read as frequencies.</li>
<li>Lines are 95% bootstrap intervals over items; with a few hundred items a κ is uncertain by about ±0.07.</li>
</ul>"""


# ---------------------------------------------------------------------------------------------
# Rubric diff
# ---------------------------------------------------------------------------------------------
def rubric_diff_html(res: dict) -> str:
    ch = res["changes"]
    b = [f"<h1>Rubric diff: {esc(res['old']['rubric']['id'])} → {esc(res['new']['rubric']['id'])}</h1>",
         f'<div class="meta">gold <code>{esc(res["gold"]["path"])}</code> · {res["items_compared"]} items scored by both · '
         f'judges {esc(res["old"]["judge"])} / {esc(res["new"]["judge"])}</div>']
    rows = [(k, c["delta"], c["ci"]) for k, c in ch.items() if c["delta"] is not None]
    span = max([abs(x) for _, d, c in rows for x in ([d] + (c or []))] + [0.05])
    span = _nice_max(span)
    b.append(interval_plot(rows, "change per metric (new − old), paired bootstrap 95% CI", lo=-span, hi=span, ref=0.0))
    b.append(_table(["metric", "old", "new", "delta", "95% CI", ""],
                    [[k, c["old"], c["new"], c["delta"], f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]" if c["ci"] else "",
                      "significant" if c["significant"] else ""] for k, c in ch.items()]))
    d = res["disagreements"]
    b.append(f"<h2>Items where the versions disagree ({len(d)})</h2><p class='small'>closer to the human label: "
             + esc(", ".join(f"{k} {v}" for k, v in sorted(res["disagreement_summary"].items()))) + "</p>")
    b.append(_table(["id", "human", "old", "new", "closer", "prompt"],
                    [[x["id"], x["human"], x["old"], x["new"], x["better"], _td_ex(x.get("prompt"))] for x in d[:50]]))
    return page("rubric diff", "".join(b))


# ---------------------------------------------------------------------------------------------
# A judged JSONL
# ---------------------------------------------------------------------------------------------
def judged_summary(rows: list[dict]) -> dict:
    from rlaif import agreement as ag

    scored = [r for r in rows if not r.get("error")]
    out = {"n": len(rows), "scored": len(scored), "unscored": dict(Counter(r["error"] for r in rows if r.get("error"))),
           "judges": dict(Counter(r.get("judge") for r in rows)), "rubrics": dict(Counter(r.get("rubric") for r in rows))}
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
    cards = [(str(s["scored"]), "scored", f"of {s['n']}")]
    if s["unscored"]:
        cards.append((str(s["n"] - s["scored"]), "unscored", ", ".join(f"{k}: {v}" for k, v in s["unscored"].items())))
    charts = []
    if "pairwise" in s:
        p = s["pairwise"]
        cards.append((_num(p["position_consistency"]), "position consistency", ""))
        charts.append(histogram([i / 10 for i in range(11)], _bin(p["p_a"], [i / 10 for i in range(11)]),
                                "P(A better), order-averaged"))
        charts.append(bar_chart(["a", "tie", "b"], {"verdicts": [p["preference"].get(k, 0) for k in ("a", "tie", "b")]},
                                "final preference", fmt=lambda v: f"{v:.0f}", w=300))
        charts.append(bar_chart(["first slot", "P(first)", "final: A", "consistent", "longer"],
                                {"share": [p["first_position_rate"], p["mean_p_first"], p["a_rate"],
                                           p["position_consistency"], p["prefers_longer"]]},
                                "position and length (0.5 = no preference)", ymax=1.0, fmt=lambda v: f"{v:.2f}", ref=0.5,
                                w=460))
    if "absolute" in s:
        a = s["absolute"]
        lo, hi = math.floor(min(a["scores"])), math.ceil(max(a["scores"]))
        hi = hi if hi > lo else lo + 1
        edges = [lo + (hi - lo) * i / 16 for i in range(17)]
        cards.append((_num(a["mean"]), "mean score", ""))
        charts.append(histogram(edges, _bin(a["scores"], edges), "expected score", xfmt=lambda v: f"{v:.1f}"))
    b.append(_cards(cards))
    b.append('<h2>Distributions and biases</h2><div class="grid">' + "".join(charts) + "</div>")
    bad = [r for r in rows if r.get("error")][:10]
    if bad:
        b.append("<h2>Unscored rows</h2>" + _table(["id", "reason", "detail"],
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
def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _delta(v) -> str:
    return "n/a" if v is None else f"{100 * v:+.1f} pts"


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
         f'{esc(res.get("refusal_rubric"))} · {esc(st.get("decoding", ""))} decoding · {esc(res.get("created", ""))}</div>']
    cards = []
    if wr:
        cards.append((_pct(wr["value"]), "judged win rate", f"95% CI {_pct(wr['ci'][0])}–{_pct(wr['ci'][1])} · "
                      f"{wr['n']} prompts, position consistency {_num(wr.get('position_consistency'))}"))
    if cap:
        cards.append((_delta(cap["delta"]), "capability change", f"exact match {_pct(cap['base']['accuracy'])} → "
                      f"{_pct(cap['adapter']['accuracy'])} (n {cap['base']['n']})"))
    if ref:
        for label, what in (("safe", "over-refusal change"), ("unsafe", "unsafe-refusal change")):
            r = ref[label]
            cards.append((_delta(r["delta"]), what, f"{_pct(r['base']['rate'])} → {_pct(r['adapter']['rate'])} "
                          f"of {r['base']['n']} {label} prompts"))
    b.append(_cards(cards))
    parts = [wr or {}] + ([ref[label][side] for label in ("safe", "unsafe") for side in ("base", "adapter")] if ref else [])
    unscored = sum((Counter(p.get("unscored") or {}) for p in parts), Counter())     # summed over the sub-reports
    if unscored:
        b.append(f'<div class="flag">⚠ unscored judgments (excluded, not guessed): '
                 f'{esc(", ".join(f"{k}: {v}" for k, v in unscored.items()))}</div>')
    c = eval_charts(res)
    b.append('<div class="grid">' + "".join(c.values()) + "</div>")
    items = res.get("items") or {}
    lost = [r for r in items.get("win_rate") or [] if r.get("outcome") is not None and r["outcome"] < 0.5][:10]
    if lost:
        b.append("<h2>Prompts where the judge preferred the base</h2>" + _table(
            ["id", "prompt", "base", "adapter", "P(adapter)"],
            [[r["id"], _td_ex(r["prompt"]), _td_ex(r["base"]), _td_ex(r["adapter"]), r.get("p_adapter")] for r in lost]))
    flipped = [r for r in items.get("refusal") or [] if r.get("base_refused") is not None
               and r.get("adapter_refused") is not None and r["base_refused"] != r["adapter_refused"]][:10]
    if flipped:
        b.append("<h2>Refusal changed</h2>" + _table(
            ["id", "label", "prompt", "base", "adapter"],
            [[r["id"], r["label"], _td_ex(r["prompt"]), _td_ex(("refused: " if r["base_refused"] else "answered: ") + r["base"]),
              _td_ex(("refused: " if r["adapter_refused"] else "answered: ") + r["adapter"])] for r in flipped]))
    changed = [r for r in items.get("capability") or [] if r.get("base_correct") != r.get("adapter_correct")][:10]
    if changed:
        b.append("<h2>Capability answers that changed correctness</h2>" + _table(
            ["id", "question", "gold", "base", "adapter"],
            [[r["id"], _td_ex(r["question"]), r["gold"], _td_ex(("✓ " if r["base_correct"] else "✗ ") + r["base"]),
              _td_ex(("✓ " if r["adapter_correct"] else "✗ ") + r["adapter"])] for r in changed]))
    return page(f"eval {Path(source).name}", "".join(b))


# ---------------------------------------------------------------------------------------------
# Anything else: shown generically
# ---------------------------------------------------------------------------------------------
def _walk(obj, prefix=""):
    if isinstance(obj, dict):
        if "value" in obj and isinstance(obj.get("value"), (int, float)) and not isinstance(obj["value"], bool):
            yield prefix, obj
            return
        for k, v in obj.items():
            yield from _walk(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix, obj
    elif isinstance(obj, list) and obj and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in obj):
        yield prefix, obj


def generic_html(obj: dict, source: str) -> str:
    scalars, intervals, lists = [], [], []
    for k, v in _walk(obj):
        if isinstance(v, dict):
            intervals.append((k, float(v["value"]), v.get("ci")))
        elif isinstance(v, list):
            lists.append((k, v))
        else:
            scalars.append([k, v])
    b = [f"<h1>Report: {esc(Path(source).name)}</h1>",
         f'<div class="meta">kind: {esc(obj.get("kind", "unknown"))} · shown generically (numbers, intervals, '
         f'distributions)</div>']
    if intervals:
        vals = [x for _, v, c in intervals for x in [v] + list(c or [])]
        lo, hi = min(vals + [0.0]), max(vals + [1.0])
        b.append(interval_plot(intervals, "values with confidence intervals", lo=lo, hi=hi, ref=None))
    charts = []
    for k, v in lists[:12]:
        lo, hi = min(v), max(v)
        hi = hi if hi > lo else lo + 1
        edges = [lo + (hi - lo) * i / 12 for i in range(13)]
        charts.append(histogram(edges, _bin(v, edges), k, xfmt=lambda x: f"{x:.2g}", w=320))
    if charts:
        b.append('<h2>Distributions</h2><div class="grid">' + "".join(charts) + "</div>")
    if scalars:
        b.append("<h2>Numbers</h2>" + _table(["field", "value"], scalars))
    return page(Path(source).name, "".join(b))


# ---------------------------------------------------------------------------------------------
# Entry point, PNG
# ---------------------------------------------------------------------------------------------
def summary_html(res: dict) -> str:
    """A compact page for the PNG: title, headline numbers, and the main charts."""
    if str(res.get("schema", "")).startswith("rlaif.eval/"):
        return page("summary", '<div class="grid">' + "".join(eval_charts(res).values()) + "</div>")
    if res.get("kind") != "rubric_test":
        return None
    M, head = res["metrics"], res["headline"]
    c = rubric_test_charts(res)
    base = ", ".join(f"{n}: {_num(bl.get(head))}" for n, bl in res["baselines"].items())
    body = (f'<h1>{esc(res["rubric"]["id"])} · {esc(res["judge"])} · {esc(Path(res["gold"]["path"]).name)}</h1>'
            f'<div class="meta">{head} <b>{_num(M[head]["value"])}</b> {_ci_str(M[head])} (baselines {esc(base)}) · '
            f'accuracy {_num(M["accuracy"]["value"])} · {res["scored"]}/{res["n"]} scored</div>'
            + "".join(f'<div class="flag">⚠ {esc(f)}</div>' for f in res.get("flags", []))
            + '<div class="grid">' + c["metrics"] + c["confusion"] + c["calibration"] + c["scores"]
            + c.get("position", c["labels"]) + c.get("length", "") + "</div>")
    return page("summary", body)


def render(input: str | Path) -> tuple[str, dict | None]:
    """(html, parsed result or None) for any supported input file."""
    p = Path(input)
    if not p.exists():
        raise InputError(str(p), None, None, "file not found")
    if p.suffix == ".jsonl":
        from rlaif.io import iter_jsonl

        rows = []
        for n, v in iter_jsonl(p):
            if isinstance(v, InputError):
                raise v
            if not isinstance(v, dict):
                raise InputError(str(p), n, None, "expected a JSON object")
            rows.append(v)
        if not rows:
            raise InputError(str(p), None, None, "file is empty")
        return judged_html(rows, str(p)), None
    from rlaif.io import read_json

    obj = read_json(p)          # the one reader: UTF-8, BOM, folders, NaN, surrogates
    if not isinstance(obj, dict):
        raise InputError(str(p), None, None, "expected a JSON object")
    if obj.get("kind") == "rubric_test":
        from rlaif.gold import check_result

        check_result(obj, str(p))
        return rubric_test_html(obj), obj
    if obj.get("kind") == "rubric_diff":
        return rubric_diff_html(obj), obj
    if str(obj.get("schema", "")).startswith("rlaif.eval/"):
        return eval_html(obj, str(p)), obj
    return generic_html(obj, str(p)), obj


def report(input: str | Path, output: str | Path, *, png: str | Path | None = None) -> dict:
    """Write a self-contained HTML report of `input` to `output` (atomically); with `png`, also a
    summary image rendered by headless Chromium. Returns {"html": path, "png": path or None}."""
    from rlaif.journal import check_output

    check_output(output, inputs=[input])      # a folder or the input as -o: refused before any work
    text, obj = render(input)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    result = {"html": str(out), "png": None}
    if png:
        summary = summary_html(obj) if obj else None
        with tempfile.TemporaryDirectory() as d:
            src = Path(d) / "summary.html"
            src.write_text(summary or text, encoding="utf-8")
            screenshot(src, png, width=1300, height=1000 if summary else 1400)
        result["png"] = str(png)
    return result


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--disable-extensions", "--mute-audio"]


def chromium_binary() -> str | None:
    """$RLAIF_CHROMIUM, else the first Chromium/Chrome on PATH, else None."""
    env = os.environ.get("RLAIF_CHROMIUM")
    if env:
        return env
    for n in CHROMIUM_NAMES:
        found = shutil.which(n)
        if found:
            return found
    return None


def run_chromium(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run headless Chromium with a throwaway profile (no network services, no first-run UI)."""
    exe = chromium_binary()
    if not exe:
        raise RlaifError("rendering a PNG needs Chromium, which was not found; install it "
                         "(Debian/Ubuntu: apt-get install chromium) or set RLAIF_CHROMIUM to its path")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def screenshot(html_path: str | Path, png_path: str | Path, *, width: int = 1300, height: int = 1000) -> None:
    png = Path(png_path).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    if png.exists():
        png.unlink()
    proc = run_chromium([f"--screenshot={png}", f"--window-size={width},{height}",
                         Path(html_path).resolve().as_uri()])
    if not png.exists() or png.stat().st_size == 0:
        raise RlaifError(f"Chromium did not write {png} (exit {proc.returncode}): {proc.stderr[-500:]}")
