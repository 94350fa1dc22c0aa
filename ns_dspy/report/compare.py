"""The HTML page of ``ns-dspy compare RUN_A RUN_B --html FILE``: the per-neuron differences as a chart and a table.

Self-contained like the run report (inline CSS and SVG, no script, no network): the two run files, the summary
lines, a chart of each neuron's difference A - B with its paired 90% interval over the test windows, and the
table with both scores. Every run path and unit is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..runs.compare import Pair, summary_lines
from ..types import UnitId
from .html import esc, interval_chart, num
from .page import document

__all__ = ["render_compare"]

#: no script on this page, so none is allowed
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def render_compare(pairs: Sequence[Pair], name_a: str, name_b: str, skipped: Sequence[UnitId] = (),
                   simulator: str = "") -> str:
    """The comparison of ``pairs`` (:func:`ns_dspy.runs.compare.compare_runs`) as one HTML document."""
    summary = summary_lines(pairs, skipped)
    rows = "".join(f'<tr data-unit="{esc(p.unit)}"><td>{esc(p.unit)}</td><td class="n">{num(p.a)}</td>'
                   f'<td class="n">{num(p.b)}</td><td class="n">{esc(f"{p.a - p.b:+.3f}")}</td>'
                   f'<td class="n">{esc(f"[{p.interval.low:+.3f}, {p.interval.high:+.3f}]")}</td>'
                   f"<td>{esc(p.verdict)}</td></tr>" for p in pairs)
    chart = interval_chart([(str(p.unit), p.a - p.b, (p.interval.low, p.interval.high), None) for p in pairs],
                           width=640, x_label="test score A - B")
    body = (f"<h1>ns-dspy compare</h1><p>A = <code>{esc(name_a)}</code><br>B = <code>{esc(name_b)}</code>"
            f"{f'<br>simulator <code>{esc(simulator)}</code>' if simulator else ''}</p>"
            + "".join(f'<p class="muted" data-summary>{esc(line)}</p>' for line in summary)
            + '<h3>A - B per neuron</h3><p class="muted">The difference of the two runs\' test scores on the same '
              "windows (dot) and its paired 90% bootstrap interval over them (bar): right of 0 beyond the bar, A "
              "is higher on this neuron whichever windows had been held out.</p>"
            + f'<div data-chart="differences">{chart}</div>'
            + '<table id="compare"><thead><tr><th>unit</th><th>A</th><th>B</th><th>A - B</th><th>90% interval</th>'
              f"<th>verdict</th></tr></thead><tbody>{rows}</tbody></table>")
    return document(f"ns-dspy compare: {name_a} vs {name_b}", body, csp=CSP)
