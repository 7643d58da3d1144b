"""Tiny inline SVG charts for `rlaif report`: bars, histogram, heatmap, calibration, intervals, lines.

Why hand-built inline SVG: the report must open anywhere, offline, years later: no network, no
JavaScript, no plotting library to install (matplotlib is not a dependency). Each function returns
a complete <svg> element as a string; every text is escaped (candidate text is data, not markup).
"""
from __future__ import annotations

import html
import math

PALETTE = ["#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#a463f2", "#97bbf5", "#9c6b4e"]
FONT = "font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif"


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def num(v, digits=3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def pct(v: float | None) -> str:
    """A rate as a percentage (the HTML report and the eval console table share it)."""
    return "n/a" if v is None else f"{100 * v:.1f}%"


def pct_delta(v: float | None, ci: list[float] | tuple[float, float] | None = None) -> str:
    """A change of a rate in percentage points ("pts"), with its CI when given."""
    if v is None:
        return "n/a"
    return f"{100 * v:+.1f} pts" + (f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "")


# ---------------------------------------------------------------------------------------------
# Tiny SVG charts. Each returns a complete <svg> element as a string.
# ---------------------------------------------------------------------------------------------
def _legend(names: list[str], left: float, h: float, swatch: int) -> str:
    """One row of colour swatches and series names along the bottom: a square (swatch=10) for bars,
    a line stroke (swatch=3) for line charts."""
    out, lx = [], left
    for si, name in enumerate(names):
        y_box, y_text = (h - 14, h - 5) if swatch == 10 else (h - 12, h - 6)
        out.append(f'<rect x="{lx}" y="{y_box}" width="10" height="{swatch}" fill="{PALETTE[si % len(PALETTE)]}"/>'
                   f'<text x="{lx + 14}" y="{y_text}" font-size="11">{esc(name)}</text>')
        lx += 24 + 7 * len(name)
    return "".join(out)


def _svg(w, h, body, title) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" role="img" aria-label="{esc(title)}" style="{FONT}">'
            f'<title>{esc(title)}</title>'
            f'<text x="{w / 2}" y="16" text-anchor="middle" font-size="13" font-weight="600">{esc(title)}</text>'
            f'{body}</svg>')


def nice_max(v: float) -> float:
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
                   f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10" '
                   f'fill="#555">{esc(fmt(v))}</text>')
    return "".join(out)


def bar_chart(categories: list[str], series: dict[str, list[float | None]], title: str, *, ymax: float | None = None,
              w: int = 420, h: int = 260, fmt=lambda v: f"{v:g}", ref: float | None = None,
              intervals: dict[str, list] | None = None) -> str:
    """Grouped bars: one group per category, one bar per series. `ref` draws a dashed reference
    line (e.g. 0.5 = no bias); `intervals[series][i]` = [lo, hi] draws an error bar."""
    left, right, top, bottom = 44, 10, 28, 46 if len(series) > 1 else 34
    pw, ph = w - left - right, h - top - bottom
    vals = [v for vs in series.values() for v in vs if v is not None]
    ymax = ymax or nice_max(max(vals + [0]) * 1.05)
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
                body.append(f'<text x="{x + bw / 2:.1f}" y="{y0 - 3}" text-anchor="middle" font-size="9" '
                            f'fill="#999">n/a</text>')
                continue
            bh = ph * max(0.0, min(v, ymax)) / ymax
            body.append(f'<rect x="{x:.1f}" y="{y0 - bh:.1f}" width="{bw * 0.92:.1f}" height="{bh:.1f}" '
                        f'fill="{PALETTE[si % len(PALETTE)]}"><title>{esc(name)} {esc(cat)}: '
                        f'{esc(fmt(v))}</title></rect>')
            iv = (intervals or {}).get(name)
            if iv and iv[ci]:
                lo, hi = (y0 - ph * max(0, min(b, ymax)) / ymax for b in iv[ci])
                cx = x + bw * 0.46
                body.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{lo:.1f}" y2="{hi:.1f}" stroke="#222" '
                            f'stroke-width="1.2"/>'
                            f'<line x1="{cx - 3:.1f}" x2="{cx + 3:.1f}" y1="{hi:.1f}" y2="{hi:.1f}" stroke="#222"/>'
                            f'<line x1="{cx - 3:.1f}" x2="{cx + 3:.1f}" y1="{lo:.1f}" y2="{lo:.1f}" stroke="#222"/>')
        body.append(f'<text x="{left + gw * (ci + 0.5):.1f}" y="{y0 + 14}" text-anchor="middle" '
                    f'font-size="11">{esc(cat)}</text>')
    if ref is not None and 0 <= ref <= ymax:
        y = y0 - ph * ref / ymax
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#c00" '
                    f'stroke-dasharray="4 3"/>')
    if len(series) > 1:
        body.append(_legend(list(series), left, h, swatch=10))
    return _svg(w, h, "".join(body), title)


def histogram(edges: list[float], counts: list[int], title: str, *, w: int = 420, h: int = 240,
              xfmt=lambda v: f"{v:g}", color: str = PALETTE[0], centers: bool = False) -> str:
    """Bars over [edges[i], edges[i+1]). `centers` labels each bin's centre instead of the edges
    (for bins built around scale points)."""
    left, right, top, bottom = 44, 12, 28, 34
    pw, ph = w - left - right, h - top - bottom
    ymax = nice_max(max(counts + [1]) * 1.05)
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
    body = [f'<text x="{left + cell * n_c / 2}" y="36" text-anchor="middle" font-size="11" '
            f'fill="#555">{esc(col_title)} →</text>',
            f'<text x="12" y="{top + cell * n_r / 2}" font-size="11" fill="#555" '
            f'transform="rotate(-90 12 {top + cell * n_r / 2})" text-anchor="middle">{esc(row_title)} →</text>']
    for i, rl in enumerate(row_labels):
        body.append(f'<text x="{left - 6}" y="{top + cell * i + cell / 2 + 4}" text-anchor="end" '
                    f'font-size="11">{esc(rl)}</text>')
        for j, _cl in enumerate(col_labels):
            v = matrix[i][j]
            a = v / peak
            fill = f"rgba(66,105,208,{0.08 + 0.92 * a:.3f})"
            diag = ' stroke="#111" stroke-width="2"' if str(row_labels[i]) == str(col_labels[j]) else ' stroke="#fff"'
            body.append(f'<rect x="{left + cell * j}" y="{top + cell * i}" width="{cell}" height="{cell}" '
                        f'fill="{fill}"{diag}>'
                        f'<title>{esc(row_title)} {esc(rl)}, {esc(col_title)} {esc(col_labels[j])}: {v}</title></rect>'
                        f'<text x="{left + cell * j + cell / 2}" y="{top + cell * i + cell / 2 + 5}" '
                        f'text-anchor="middle" '
                        f'font-size="13" fill="{"#fff" if a > 0.55 else "#111"}">{v}</text>')
    for j, cl in enumerate(col_labels):
        body.append(f'<text x="{left + cell * j + cell / 2}" y="{top + cell * n_r + 16}" text-anchor="middle" '
                    f'font-size="11">{esc(cl)}</text>')
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
    body.append(f'<text x="{left + pw / 2}" y="{h - 6}" text-anchor="middle" font-size="11" '
                f'fill="#555">{esc(x_label)}</text>')
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
        body.append(f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle" font-size="12" '
                    f'fill="#999">no data</text>')
    return _svg(w, h, "".join(body), title)


def interval_plot(rows: list[tuple[str, float | None, list | None]], title: str, *, lo: float = -1.0,
                  hi: float = 1.0, ref: float | None = 0.0, w: int = 560,
                  extra: dict[str, list[tuple[float, str]]] | None = None) -> str:
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
        body.append(f'<line x1="{sx(ref):.1f}" x2="{sx(ref):.1f}" y1="{top - 4}" y2="{h - 22}" stroke="#c00" '
                    f'stroke-dasharray="4 3"/>')
    for i, (name, v, ci) in enumerate(rows):
        y = top + rh * i + rh / 2
        body.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end" font-size="11">{esc(name)}</text>')
        if ci:
            body.append(f'<line x1="{sx(ci[0]):.1f}" x2="{sx(ci[1]):.1f}" y1="{y}" y2="{y}" stroke="{PALETTE[0]}" '
                        f'stroke-width="3"/>')
        for mv, ml in (extra or {}).get(name, []):
            if mv is not None:
                body.append(f'<path d="M{sx(mv):.1f},{y - 7} l4,6 l-4,6 l-4,-6 z" '
                            f'fill="{PALETTE[1]}"><title>{esc(ml)}: {mv:.3f}</title></path>')
        if v is not None:
            body.append(f'<circle cx="{sx(v):.1f}" cy="{y}" r="5" fill="{PALETTE[0]}"><title>{esc(name)}: {v:.3f}'
                        f'{f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""}</title></circle>'
                        f'<text x="{sx(v):.1f}" y="{y - 7}" text-anchor="middle" font-size="9" '
                        f'fill="#333">{v:.2f}</text>')
        else:
            body.append(f'<text x="{left + 4}" y="{y + 4}" font-size="10" fill="#999">n/a</text>')
    return _svg(w, h, "".join(body), title)



def line_chart(series: dict[str, list[tuple[float, float]]], title: str, *, w: int = 420, h: int = 240,
               x_label: str = "step", fmt=lambda v: f"{v:.3g}", ref: float | None = None) -> str:
    """One line per series over (x, y) points, axes fitted to the data (y may be negative: losses,
    margins, log-ratios). Points with a non-finite y are skipped. `ref` draws a dashed line."""
    left, right, top, bottom = 52, 12, 28, 40 if len(series) > 1 else 30
    pw, ph = w - left - right, h - top - bottom
    pts = {k: [(float(x), float(y)) for x, y in v if y is not None and math.isfinite(y)] for k, v in series.items()}
    xs = [x for v in pts.values() for x, _ in v]
    ys = [y for v in pts.values() for _, y in v] + ([ref] if ref is not None else [])
    if not xs:
        return _svg(w, h, f'<text x="{w / 2}" y="{h / 2}" text-anchor="middle" font-size="11" fill="#999">'
                          f'no data</text>', title)
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - (abs(y0) or 1) * 0.5, y1 + (abs(y1) or 1) * 0.5
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad

    def px(x):
        return left + pw * (x - x0) / (x1 - x0)

    def py(y):
        return top + ph * (1 - (y - y0) / (y1 - y0))

    body = []
    for i in range(5):
        v = y0 + (y1 - y0) * i / 4
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#e5e5e5"/>'
                    f'<text x="{left - 4}" y="{py(v) + 4:.1f}" text-anchor="end" font-size="10" fill="#555">'
                    f'{esc(fmt(v))}</text>')
    for v in (x0, x1):
        body.append(f'<text x="{px(v):.1f}" y="{top + ph + 13}" text-anchor="middle" font-size="10" fill="#555">'
                    f'{esc(f"{v:g}")}</text>')
    body.append(f'<text x="{left + pw / 2}" y="{top + ph + 13}" text-anchor="middle" font-size="10" fill="#555">'
                f'{esc(x_label)}</text>')
    if ref is not None:
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(ref):.1f}" y2="{py(ref):.1f}" stroke="#c00" '
                    f'stroke-dasharray="4 3"/>')
    for si, (name, line) in enumerate(pts.items()):
        color = PALETTE[si % len(PALETTE)]
        if len(line) == 1:
            body.append(f'<circle cx="{px(line[0][0]):.1f}" cy="{py(line[0][1]):.1f}" r="3" fill="{color}"/>')
        elif line:
            d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in line)
            body.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.6">'
                        f'<title>{esc(name)}: last {esc(fmt(line[-1][1]))}</title></polyline>')
    if len(series) > 1:
        body.append(_legend(list(series), left, h, swatch=3))
    return _svg(w, h, "".join(body), title)
