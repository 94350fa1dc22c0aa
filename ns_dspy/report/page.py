"""One self-contained HTML page for one run: config, summary, and every neuron's trace.

The page loads nothing: styles, the small sorting/filter script and the charts (inline SVG) are in the file.
A Content-Security-Policy allows only that script (by its SHA-256) and inline styles, as a second line of
defence behind escaping: even a string that slipped through unescaped could not run a script or load a
resource.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import datetime, timezone

from .. import __version__
from ..runs import NeuronRecord
from ..runs.read import RunData, cost_row, statistical_rows
from ..scoring.bootstrap import bounds_text
from ..trace import Final, Mode, Scores, Trace
from .data import best_final, mean_trajectories, neuron_trajectory
from .html import PALETTE, esc, heat_tokens, interval_chart, line_chart, num

__all__ = ["render_page", "document"]

MODE_TITLES = {"refine": "NeuronScope (with refinement)", "norefine": "NeuronScope without refinement (ablation)",
               "baseline": "single-pass baseline (best of k hypotheses on valid)",
               "stats": "statistical explainer (token statistics, no LM)"}

CSS = """
:root{--fg:#1d2125;--muted:#5f6b76;--line:#d8dde2;--bg2:#f5f7f9;--bad:#b42318}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
margin:0 auto;max-width:1180px;padding:18px 22px 60px}h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;
margin:28px 0 8px;border-bottom:2px solid var(--line);padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}
.muted{color:var(--muted)}table{border-collapse:collapse;margin:6px 0 10px}th,td{border:1px solid var(--line);
padding:3px 7px;vertical-align:top;text-align:left}th{background:var(--bg2);font-weight:600}td.n{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}#summary th{cursor:pointer;user-select:none}
#summary th[data-dir=asc]::after{content:" \\25B2"}#summary th[data-dir=desc]::after{content:" \\25BC"}
.cfg td:first-child{font-family:ui-monospace,monospace;color:var(--muted)}.cards{display:flex;gap:10px;
flex-wrap:wrap;margin:8px 0}.card{background:var(--bg2);border:1px solid var(--line);border-radius:6px;
padding:6px 12px}.card b{display:block;font-size:18px}.neuron{border:1px solid var(--line);border-radius:8px;
padding:4px 16px 12px;margin:18px 0}.neuron.failed{border-color:var(--bad)}.err{color:var(--bad);
font-weight:600;white-space:pre-wrap}.ex{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px;
white-space:pre-wrap;word-break:break-word;margin:2px 0 6px;padding:4px 6px;background:#fff;border-left:3px solid
var(--line)}.exh{font-size:12px;color:var(--muted)}.tok{border-radius:2px}.mode{border-left:5px solid;
padding:2px 10px;margin:8px 0}.mode ul{margin:4px 0 4px 18px;padding:0}.rep{font-weight:600}.badge{display:inline-block;
font-size:11px;border-radius:8px;padding:0 6px;margin-left:4px;background:#e7ecf0;color:#333}.final td.expl{
max-width:760px}.chart .grid{stroke:#eceff2}.chart .axis{stroke:#888}.chart .tick{font-size:11px;fill:#555}
.chart .lab{font-size:12px;fill:#333}.chart .ct{font-size:12px;font-weight:600}details>summary{cursor:pointer;
color:var(--muted);margin:4px 0}.raw{white-space:pre-wrap;background:var(--bg2);padding:6px 8px;border-radius:4px}
.clamp{display:-webkit-box;-webkit-line-clamp:3;-webkit-box-orient:vertical;overflow:hidden}
.legend span{display:inline-block;width:60px;height:10px;vertical-align:middle}#filter{padding:4px 8px;width:320px}
"""

SCRIPT = """(function () {
  document.documentElement.setAttribute("data-js", "ready");
  var table = document.getElementById("summary");
  if (table && table.tHead) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (head, col) {
      head.addEventListener("click", function () {
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var asc = head.getAttribute("data-dir") !== "asc";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("data-dir"); });
        head.setAttribute("data-dir", asc ? "asc" : "desc");
        rows.sort(function (a, b) {
          var x = a.cells[col].getAttribute("data-v") || "", y = b.cells[col].getAttribute("data-v") || "";
          var nx = parseFloat(x), ny = parseFloat(y);
          var r = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
          return asc ? r : -r;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }
  var box = document.getElementById("filter");
  if (box) {
    box.addEventListener("input", function () {
      var q = box.value.toLowerCase();
      document.querySelectorAll("[data-search]").forEach(function (el) {
        el.hidden = q !== "" && el.getAttribute("data-search").indexOf(q) < 0;
      });
    });
  }
})();"""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
CSP = (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{_SCRIPT_HASH}'; "
       "base-uri 'none'; form-action 'none'")


def _anchor(record: NeuronRecord) -> str:
    return f"u{record.unit.layer}-{record.unit.index}"


def _flatten(config: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for key in sorted(config):
        value = config[key]
        if isinstance(value, dict) and value:
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def _mean(values: Sequence[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _search(record: NeuronRecord) -> str:
    best = best_final(record)
    text = f"{record.unit} {record.status} {best.explanation if best else ''} {record.error or ''}"
    return esc(text.lower())


def _header(run: RunData) -> str:
    meta, config = run.meta, run.config
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in _flatten(config))
    return (f"<h1>ns-dspy run report: {esc(MODE_TITLES.get(run.mode, run.mode))}</h1>"
            f'<p class="muted">run file <code>{esc(run.path)}</code> &middot; created {esc(meta.get("created", "?"))}'
            f' &middot; format {esc(meta.get("format"))} v{esc(meta.get("version"))} &middot; report made '
            f'{esc(datetime.now(timezone.utc).isoformat(timespec="seconds"))} by ns-dspy {esc(__version__)}</p>'
            f'<details><summary>run configuration ({len(_flatten(config))} settings)</summary>'
            f'<table class="cfg"><tbody>{rows}</tbody></table></details>')


def _summary(run: RunData, records: list[NeuronRecord]) -> str:
    done = [r for r in records if r.status == "done"]
    tokens = sum(r.lm_tokens or 0 for r in records)
    seconds = sum(r.seconds or 0 for r in records)
    cards = [("neurons", f"{len(done)} done / {len(records) - len(done)} failed"),
             ("mean Number", num(_mean([r.number for r in done]), 2)),
             ("mean score valid", num(_mean([r.score_valid for r in done]))),
             ("mean score test", num(_mean([r.score_test for r in done]))),
             ("LM tokens", f"{tokens:,}"), ("wall time", f"{seconds / 60:.1f} min")]
    costs = [c for c in map(cost_row, records) if c is not None]
    if costs:
        cards.append(("simulated tokens / neuron", f"{sum(c.simulated_tokens for c in costs) / len(costs):,.0f}"))
    stats = statistical_rows(done)
    if stats and run.mode != "stats":  # the no-LM row on the same neurons and data
        cards.insert(4, ("statistical explainer: test", num(_mean([s.test for s in stats]))))
    out = ['<h2 id="summary-h">Summary</h2><div class="cards">']
    out += [f'<div class="card" data-card="{esc(name)}">{esc(name)}<b>{esc(value)}</b></div>' for name, value in cards]
    out.append('</div><p class="muted">Score: the neuron-level (polysemantic) Pearson correlation of the simulated '
               'with the true activations, the per-token maximum over the neuron\'s final explanations (each '
               'calibrated linearly against the valid activations; a "(negative)" explanation says where the '
               'activation goes below zero and pulls the prediction down there); selected on valid, reported on '
               'test. Number: the count of semantic modes (clusters). Click a column to sort.</p>')
    out.append('<p><input id="filter" type="search" placeholder="filter neurons by unit, status or text"></p>')
    out.append('<table id="summary"><thead><tr><th>unit</th><th>status</th><th>Number</th><th>valid</th>'
               '<th>test</th><th>test 90%</th><th>LM tokens</th><th>sec</th><th>best explanation (by valid) or error'
               '</th></tr></thead><tbody>')
    for r in records:
        best = best_final(r)
        text = (best.explanation if best else "") if r.status == "done" else (r.error or "")
        interval = _test_interval(r)
        cells = [("unit", f'<a href="#{_anchor(r)}">{esc(r.unit)}</a>', "", r.unit.layer * 1e6 + r.unit.index),
                 ("status", esc(r.status), "", r.status),
                 ("number", esc(r.number if r.number is not None else "\u2013"), "n", r.number),
                 ("valid", num(r.score_valid), "n", r.score_valid), ("test", num(r.score_test), "n", r.score_test),
                 ("interval", esc(bounds_text(interval)), "n", interval[0] if interval else None),
                 ("tokens", esc(r.lm_tokens or 0), "n", r.lm_tokens or 0),
                 ("seconds", esc(f"{r.seconds or 0:.0f}"), "n", r.seconds or 0),
                 ("text", f'<div class="clamp" title="{esc(text)}">{esc(text)}</div>', "err" if r.status != "done"
                  else "", text)]
        tds = "".join(f'<td data-col="{name}" class="{cls}" data-v="{esc("" if v is None else v)}">{shown}</td>'
                      for name, shown, cls, v in cells)
        out.append(f'<tr data-unit="{esc(r.unit)}" data-search="{_search(r)}">{tds}</tr>')
    out.append("</tbody></table>")
    return "".join(out)


def _test_interval(record: NeuronRecord) -> list[float] | None:
    """The record's test interval ``[low, high]``, None for failed units and traces from before intervals."""
    if record.status != "done":
        return None
    poly = record.typed_trace.polysemantic
    return poly.test_interval if poly is not None else None


def _scores_chart(records: list[NeuronRecord], stats_mode: bool) -> str:
    """Each done neuron's test score with its 90% interval over the test windows, and the statistical row's test
    score on the same windows (methods other than the statistical one); empty when no trace has an interval."""
    rows = []
    for r in records:
        if r.status != "done":
            continue
        trace = r.typed_trace
        poly = trace.polysemantic
        if poly is None or poly.test_interval is None or r.score_test is None:
            continue
        other = None if stats_mode or trace.statistical is None else trace.statistical.test
        rows.append((str(r.unit), r.score_test, tuple(poly.test_interval), other))
    if not rows:
        return ""
    what = "" if stats_mode else (", the statistical explainer's test score on the same windows as a hollow "
                                  "diamond (whether the neuron's score beats it is judged by the paired interval "
                                  "of the difference, in the neuron's section: far narrower than this bar)")
    return ('<h3>Test scores and how far they could move</h3><p class="muted">Per neuron, the test score (dot) and '
            "its 90% bootstrap interval over the test windows (bar: the windows resampled within top and random)"
            f"{esc(what)}. The interval covers which windows were held out, not the simulator's or the LM's "
            f'randomness.</p><div data-chart="scores">{interval_chart(rows, width=640)}</div>')


def _layer_chart(records: list[NeuronRecord]) -> str:
    curves = mean_trajectories(records)
    if not curves:
        return ""
    series = [(f"layer {layer} (n={n})", ys) for layer, (ys, n) in curves.items()]
    chart = line_chart(series, title="mean valid score against refinement iteration, per layer", width=560,
                       height=260, legend=True)
    return ('<h3>Refinement convergence</h3><p class="muted">Per neuron, the mean over its modes of the best valid '
            'score after each iteration (iteration 0: the cluster representative; a mode that stopped early keeps '
            'its best score); then the mean over the layer\'s neurons (the paper\'s Figure 2a).</p>' + chart)


def _exemplars(trace: Trace, limit: int | None) -> str:
    shown = trace.exemplars_shown
    if not shown:
        return ""
    scale = max((max(ex.activations, default=0.0) for ex in shown), default=0.0)
    what = "the highest shown"
    if scale <= 0:  # nothing positive (a failed or dead unit): scale by the largest magnitude instead
        scale = max((abs(a) for ex in shown for a in ex.activations), default=0.0)
        what = "the largest magnitude shown; no activation is positive"
    items = []
    for k, ex in enumerate(shown[: limit] if limit else shown, 1):
        peak = max(ex.activations, default=0.0)
        window = ex.window if ex.window >= 0 else "?"
        items.append(f'<div class="exh">#{k} &middot; window {esc(window)} &middot; max {num(peak)}'
                     f'</div><div class="ex">{heat_tokens(ex.tokens, ex.activations, scale)}</div>')
    first, rest = items[:5], items[5:]
    more = (f"<details><summary>{len(rest)} more exemplars</summary>{''.join(rest)}</details>" if rest else "")
    hidden = len(shown) - len(items)
    note = f" ({hidden} more not shown: --exemplars)" if hidden > 0 else ""
    return (f'<h3>Top train exemplars shown to the explainer ({len(shown)}){esc(note)}</h3>'
            f'<p class="muted legend">Background: activation / {num(scale)} ({what}) '
            '<span style="background:linear-gradient(90deg,rgba(255,127,14,0),rgba(255,127,14,1))"></span> '
            'negative: <span style="background:linear-gradient(90deg,rgba(31,119,180,0),rgba(31,119,180,1))">'
            '</span> &middot; hover a token for its value.</p>' + "".join(first) + more)


def _history_table(mode: Mode) -> str:
    history = mode.history
    if not history:
        return ""
    rows = []
    for rank, (text, score) in enumerate(((c.text, c.score) for c in history), 1):
        tags = []
        if text == mode.explanation:
            tags.append("final")
        if text == mode.representative:
            tags.append("seed")
        badges = "".join(f'<span class="badge">{t}</span>' for t in tags)
        rows.append(f'<tr><td class="n">{rank}</td><td class="n">{num(score)}</td><td>{esc(text)}{badges}</td></tr>')
    return (f"<details><summary>all {len(history)} scored candidates, ranked by valid score</summary>"
            '<table class="hist"><thead><tr><th>#</th><th>valid</th><th>candidate</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></details>")


def _modes(trace: Trace, finals: list[Final]) -> str:
    clusters = trace.modes
    if not clusters:
        return ""
    labels = trace.condition_modes()
    conditions = trace.conditions
    n_lm = sum(m.source == "lm" for m in clusters)
    added = len(clusters) - n_lm
    lists = f", and {added} statistical word list{'s' if added != 1 else ''}" if added else ""
    out = [f"<h3>Atomic conditions ({len(conditions)}) grouped into {n_lm} semantic "
           f"mode{'s' if n_lm != 1 else ''}{lists}</h3>"]
    for k, cluster in enumerate(clusters):
        color = PALETTE[k % len(PALETTE)]
        members = []
        for m in cluster.members:
            rep = m == cluster.representative
            members.append(f'<li class="{"rep" if rep else ""}">{esc(m)}'
                           f'{"<span class=badge>representative</span>" if rep else ""}</li>')
        final = next((f for f in finals if f.explanation == cluster.explanation), None)
        chosen = final is not None
        final = final or Final(cluster.explanation or "", cluster.valid)
        traj = cluster.trajectory
        chart = line_chart([(f"mode {k + 1}", traj)], title=f"mode {k + 1}: best valid score per iteration",
                           width=340, height=170) if len(traj) > 1 else ""
        arrow = " \u2192 "
        why = (" (stopped: it added nothing to the statistical word lists on valid)"
               if cluster.stopped == "no_contribution" else "")
        steps = f'<p class="muted">trajectory: {esc(arrow.join(num(v) for v in traj))}{why}</p>' if traj else ""
        edited = ", edited from its errors on valid (the trajectory: the lists' valid score per edit)" \
            if cluster.source == "stats" and len(traj) > 1 else ""
        what = (f"statistical word list (no LM){edited}, added because it raised the neuron's valid score"
                if cluster.source == "stats" else f"{len(cluster.members)} conditions")
        left_out = "" if chosen else ' <span class="badge">left out: no better on valid</span>'
        out.append(f'<div class="mode" style="border-color:{color}" data-mode="{k + 1}"><b>Mode {k + 1}</b> '
                   f'<span class="muted">({esc(what)})</span><ul>{"".join(members)}'
                   f'</ul><div>final: <b>{esc(final.explanation)}</b>{left_out} '
                   f'<span class="muted">valid {num(final.valid)}, test '
                   f'{num(final.test)}</span></div>{steps}{chart}{_history_table(cluster)}</div>')
    dropped = [c for c, lab in zip(conditions, labels) if lab < 0]
    if dropped:
        out.append("<p class=muted>dropped by the noise policy:</p><ul>"
                   + "".join(f"<li>{esc(c)}</li>" for c in dropped) + "</ul>")
    return "".join(out)


def _finals(trace: Trace) -> str:
    finals = trace.finals
    if not finals:
        return ""
    poly = trace.polysemantic or Scores()
    rows = "".join(f'<tr data-final="{k}"><td class="n">{k}</td><td class="expl">{esc(f.explanation)}</td>'
                   f'<td class="n" data-col="valid">{num(f.valid)}</td>'
                   f'<td class="n" data-col="test">{num(f.test)}</td></tr>'
                   for k, f in enumerate(finals, 1))
    return ('<h3>Final explanations</h3><table class="final"><thead><tr><th>mode</th><th>explanation</th>'
            f'<th>valid</th><th>test</th></tr></thead><tbody>{rows}</tbody><tfoot><tr class="poly"><td></td>'
            '<td>polysemantic (per-token maximum over the modes, calibrated on valid; negative modes subtract)</td>'
            f'<td class="n" data-col="poly-valid">{num(poly.valid)}</td>'
            f'<td class="n" data-col="poly-test">{num(poly.test)}</td></tr></tfoot></table>')


def _baseline(trace: Trace, finals: list[Final]) -> str:
    candidates = [(c.text, c.score) for c in trace.baseline_candidates]
    if not candidates:
        return ""
    chosen = finals[0].explanation if finals else None
    ranked = sorted(candidates, key=lambda c: -c[1])
    rows = "".join(f'<tr><td class="n">{num(score)}</td><td>{esc(text)}'
                   f'{"<span class=badge>chosen</span>" if text == chosen else ""}</td></tr>' for text, score in ranked)
    return (f"<h3>Single-pass hypotheses ({len(candidates)}), ranked by valid score</h3>"
            f'<table class="hist"><thead><tr><th>valid</th><th>hypothesis</th></tr></thead><tbody>{rows}</tbody>'
            "</table>")


def _interval_text(trace: Trace) -> str:
    """`` (90% interval over the test windows [a, b]; minus the statistical row's [c, d])``, escaped; empty for
    traces written before intervals."""
    poly = trace.polysemantic
    if poly is None or poly.test_interval is None:
        return ""
    lead = f"; minus the statistical row's {bounds_text(poly.lead_interval)}" if poly.lead_interval else ""
    return esc(f" (90% interval over the test windows {bounds_text(poly.test_interval)}{lead})")


def _neuron(record: NeuronRecord, exemplars: int | None) -> str:
    trace = record.typed_trace
    usage = trace.lm_usage
    finals = trace.finals
    head = (f'<h2 id="{_anchor(record)}">Neuron {esc(record.unit)} <span class="badge">{esc(record.status)}</span>'
            "</h2>")
    facts = [f"Number {esc(record.number if record.number is not None else chr(8211))}",
             f"score valid {num(record.score_valid)}", f"test {num(record.score_test)}{_interval_text(trace)}",
             f"LM tokens {esc(record.lm_tokens or 0)} ({esc(usage.get('calls', 0))} calls, "
             f"{esc(usage.get('cached_calls', 0))} cached)", f"{esc(f'{record.seconds or 0:.0f}')} s"]
    parts = [head, f'<p class="muted">{" &middot; ".join(facts)}</p>']
    cost = cost_row(record)
    if cost is not None:
        stages = ", ".join(f"{name} {secs:.1f} s" for name, secs in cost.seconds.items())
        parts.append(f'<p class="muted" data-cost>cost: LM {esc(cost.lm_prompt_tokens)} prompt + '
                     f'{esc(cost.lm_completion_tokens)} completion tokens &middot; simulated '
                     f'{esc(cost.simulated_tokens)} tokens &middot; {esc(stages)}</p>')
    if record.status != "done":
        parts.append(f'<p class="err">failed: {esc(record.error)}</p>')
    parts.append(_finals(trace))
    parts.append(_exemplars(trace, exemplars))
    if trace.raw_explanation:
        parts.append('<h3>Raw explanation (Hypothesis agent)</h3>'
                     f'<details><summary>show</summary><div class="raw">{esc(trace.raw_explanation)}</div>'
                     "</details>")
    parts.append(_modes(trace, finals))
    parts.append(_baseline(trace, finals))
    cls = "neuron" + ("" if record.status == "done" else " failed")
    return (f'<section class="{cls}" data-unit="{esc(record.unit)}" data-search="{_search(record)}">'
            + "".join(parts) + "</section>")


def render_page(run: RunData, *, records: list[NeuronRecord] | None = None, exemplars: int | None = None) -> str:
    """The report of ``run`` (or of ``records``, a subset of it) as one HTML document."""
    records = run.records if records is None else records
    trajectories = [r for r in records if neuron_trajectory(r)]
    body = [_header(run), _summary(run, records), _scores_chart(records, run.mode == "stats"),
            _layer_chart(trajectories) if trajectories else "",
            "".join(_neuron(r, exemplars) for r in records)]
    if not records:
        body.append('<p class="muted">This run holds no neuron yet.</p>')
    title = f"ns-dspy report: {run.path.name} ({MODE_TITLES.get(run.mode, run.mode)})"
    return document(title, "".join(body), csp=CSP, script=SCRIPT)


def document(title: str, body: str, *, csp: str, script: str = "") -> str:
    """A self-contained page: ``body`` (markup already escaped) under the report's styles, its
    Content-Security-Policy ``csp`` and, when given, one inline ``script`` (which ``csp`` must allow)."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            + body + (f"<script>{script}</script>" if script else "") + "</body></html>\n")
