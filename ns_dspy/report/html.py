"""HTML building blocks: escaping, numbers, a token heat map, an inline SVG line chart and an interval chart.

Every piece of text that comes from a corpus, an LM or a run file goes through :func:`esc` (``html.escape``
with ``quote=True``), in element content and in attribute values alike; the functions here never build
markup from unescaped input.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

__all__ = ["esc", "num", "heat_tokens", "line_chart", "interval_chart", "PALETTE"]

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
"""Series and cluster colours (matplotlib's tab10, so the report and the experiment plots agree)."""

_VISIBLE = str.maketrans({"\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d"})


def esc(value: object) -> str:
    """``value`` as text safe in element content and in double- or single-quoted attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def num(value: float | None, digits: int = 3) -> str:
    """A score as shown everywhere in the report: fixed ``digits`` decimals, an en dash when absent."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "\u2013"
    return f"{value:.{digits}f}"


def heat_tokens(tokens: Sequence[str], activations: Sequence[float], scale: float) -> str:
    """One exemplar as ``<span>`` per token: orange background for positive activations, blue for negative,
    alpha = |activation| / ``scale`` (capped at 1); the tooltip gives the token and its value. Newlines and
    tabs are shown as the visible marks of ``ns-dspy show``."""
    parts = []
    for tok, act in zip(tokens, activations):
        act = float(act)
        level = min(1.0, abs(act) / scale) if scale > 0 else 0.0
        style = ""
        if level >= 0.02:
            rgb = "255,127,14" if act > 0 else "31,119,180"
            style = f' style="background:rgba({rgb},{level:.2f})"'
        tip = f"{tok!r}: {act:.4g}"
        parts.append(f'<span class="tok"{style} title="{esc(tip)}">{esc(tok.translate(_VISIBLE))}</span>')
    return "".join(parts)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo
    raw = span / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + k * step, 10) for k in range(int((hi - first) / step + 1e-9) + 1)]


def line_chart(series: Sequence[tuple[str, Sequence[float | None]]], *, x_label: str = "iteration",
               y_label: str = "valid score", width: int = 420, height: int = 220, title: str = "",
               legend: bool | None = None) -> str:
    """An inline SVG chart of ``series`` = ``[(name, [y at x=0, y at x=1, ...]), ...]``; ``None`` leaves a gap.

    Each point carries a ``<title>`` tooltip with its series, x and y; ``legend`` (default: with more than one
    series) names the series at the right. Returns ``""`` when there is no value.
    """
    legend = len(series) > 1 if legend is None else legend
    values = [y for _, ys in series for y in ys if y is not None and math.isfinite(y)]
    if not values:
        return ""
    n_x = max(len(ys) for _, ys in series)
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or max(0.05, abs(hi) * 0.1)
    lo, hi = lo - pad, hi + pad
    left, right, top, bottom = 52, 12 + (110 if legend else 0), 24 if title else 10, 38
    pw, ph = width - left - right, height - top - bottom
    sx = (lambda i: left + (pw * i / (n_x - 1) if n_x > 1 else pw / 2))
    sy = (lambda y: top + ph * (hi - y) / (hi - lo))
    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title or y_label)}">']
    if title:
        out.append(f'<text x="{left}" y="15" class="ct">{esc(title)}</text>')
    for t in _ticks(lo, hi):
        y = sy(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{t:g}</text>')
    step = max(1, math.ceil(n_x / 12))
    for i in range(0, n_x, step):
        out.append(f'<text x="{sx(i):.1f}" y="{top + ph + 15}" class="tick" text-anchor="middle">{i}</text>')
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" class="axis"/>'
               f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>'
               f'<text x="{left + pw / 2:.1f}" y="{height - 4}" class="lab" text-anchor="middle">{esc(x_label)}</text>'
               f'<text x="12" y="{top + ph / 2:.1f}" class="lab" text-anchor="middle" '
               f'transform="rotate(-90 12 {top + ph / 2:.1f})">{esc(y_label)}</text>')
    for k, (name, ys) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        points = [(i, y) for i, y in enumerate(ys) if y is not None and math.isfinite(y)]
        path, prev = [], None
        for i, y in points:
            path.append(f"{'L' if prev == i - 1 else 'M'}{sx(i):.1f},{sy(y):.1f}")
            prev = i
        out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="2"/>')
        for i, y in points:
            out.append(f'<circle cx="{sx(i):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{color}">'
                       f'<title>{esc(f"{name}: {x_label} {i}, {y_label} {y:.3f}")}</title></circle>')
        if legend:
            ly = top + 12 + 16 * k
            out.append(f'<rect x="{left + pw + 10}" y="{ly - 8}" width="10" height="10" fill="{color}"/>'
                       f'<text x="{left + pw + 25}" y="{ly + 1}" class="tick">{esc(name[:16])}</text>')
    out.append("</svg>")
    return "".join(out)


def interval_chart(rows: Sequence[tuple[str, float, tuple[float, float], float | None]], *, width: int = 560,
                   title: str = "", x_label: str = "test score") -> str:
    """An inline SVG chart of scores with their intervals, one line per ``(label, score, (low, high), other)``:
    the interval as a bar, the score as a dot, ``other`` (a reference on the same data, e.g. the statistical row;
    None: none) as a hollow diamond. Each mark has a ``<title>`` tooltip. Returns ``""`` without rows."""
    if not rows:
        return ""
    values = [v for _, s, (lo, hi), o in rows for v in (s, lo, hi, o) if v is not None and math.isfinite(v)]
    lo_all, hi_all = min(values + [0.0]), max(values + [0.0])
    pad = (hi_all - lo_all) * 0.05 or 0.05
    lo_all, hi_all = lo_all - pad, hi_all + pad
    left, right, top, bottom, line = 70, 14, 24 if title else 10, 36, 16
    height = top + bottom + line * len(rows)
    pw = width - left - right
    sx = (lambda v: left + pw * (v - lo_all) / (hi_all - lo_all))
    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title or x_label)}">']
    if title:
        out.append(f'<text x="{left}" y="15" class="ct">{esc(title)}</text>')
    bottom_y = top + line * len(rows)
    for t in _ticks(lo_all, hi_all):
        x = sx(t)
        cls = "axis" if abs(t) < 1e-12 else "grid"
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom_y}" class="{cls}"/>'
                   f'<text x="{x:.1f}" y="{bottom_y + 14}" class="tick" text-anchor="middle">{t:g}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" class="lab" text-anchor="middle">{esc(x_label)}</text>')
    for k, (label, score, (lo, hi), other) in enumerate(rows):
        y = top + line * k + line / 2
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{esc(label)}</text>'
                   f'<line x1="{sx(lo):.1f}" x2="{sx(hi):.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{PALETTE[0]}" '
                   f'stroke-width="3" stroke-opacity="0.45"><title>{esc(f"{label}: 90% interval [{lo:.3f}, {hi:.3f}]")}'
                   f'</title></line>'
                   f'<circle cx="{sx(score):.1f}" cy="{y:.1f}" r="4" fill="{PALETTE[0]}">'
                   f'<title>{esc(f"{label}: {x_label} {score:.3f}")}</title></circle>')
        if other is not None and math.isfinite(other):
            x = sx(other)
            diamond = f"M{x:.1f},{y - 5:.1f} L{x + 5:.1f},{y:.1f} L{x:.1f},{y + 5:.1f} L{x - 5:.1f},{y:.1f} Z"
            out.append(f'<path d="{diamond}" fill="none" stroke="{PALETTE[1]}" stroke-width="1.5">'
                       f'<title>{esc(f"{label}: reference {other:.3f}")}</title></path>')
    out.append("</svg>")
    return "".join(out)
