"""The HTML report of a run: ``ns-dspy report RUN --out report.html``.

One self-contained page per run file (inline CSS, one inline script allowed by hash, inline SVG charts, no
network): the run's configuration, a sortable summary table, and per neuron the top train exemplars as a
token heat map, the atomic conditions grouped by semantic mode, each mode's refinement trajectory and
scored candidates, the final explanations with valid and test scores, the polysemantic score, and failures
with their error. Every corpus and LM string is HTML-escaped.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import ConfigError
from ..runs.read import RunData, read_run
from ..types import parse_units
from .data import check_traces
from .page import render_page

__all__ = ["render_report", "write_report"]


def render_report(run: str | Path | RunData, *, neurons: str | None = None, exemplars: int | None = None) -> str:
    """The report page of the run file ``run``; ``neurons`` (``"5:12,9:3"``) keeps only those units,
    ``exemplars`` caps the exemplars shown per neuron."""
    data = run if isinstance(run, RunData) else read_run(run)
    records = data.records
    if neurons:
        wanted = parse_units(neurons)
        present = {r.unit for r in records}
        missing = [str(u) for u in wanted if u not in present]
        if missing:
            raise ConfigError(f"unit {missing[0]} is not in run {data.path}: it holds "
                              f"{', '.join(str(r.unit) for r in records[:8]) or 'no unit'}"
                              f"{', ...' if len(records) > 8 else ''}")
        records = [r for r in records if r.unit in set(wanted)]
    if exemplars is not None and exemplars < 0:
        raise ConfigError(f"--exemplars must be >= 0 (0 = all), got {exemplars}")
    check_traces(data.path, records)
    return render_page(data, records=records, exemplars=exemplars or None)


def write_report(run: str | Path | RunData, out: str | Path, **options) -> Path:
    """Render and write the report atomically (a reader sees the old file or the new one); returns ``out``."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory: give a file name, e.g. {out / 'report.html'}")
    page = render_report(run, **options)
    try:
        atomic_write_text(out, page)
    except OSError as err:
        raise ConfigError(f"cannot write {out}: {err.strerror or err}") from None
    return out
