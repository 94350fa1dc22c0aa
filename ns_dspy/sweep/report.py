"""The sweep's outputs: the table of the top trials (text, CSV, Markdown) and the chosen configuration.

Rows are the complete trials, best first (mean valid score, then fewer LM tokens); pruned and failed trials
are only counted. Columns: rank, trial, mean valid score, LM tokens the configuration costs, mean Number
(semantic modes per neuron), failed neurons, seconds, the worker that ran it, then every swept parameter.
With the tokens objective, ``front`` marks the Pareto-optimal trials. Files are written atomically.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text

__all__ = ["trial_rows", "format_table", "to_csv", "to_markdown", "write_outputs"]


def trial_rows(study, top: int | None = None) -> list[dict[str, Any]]:
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    front = {t.number for t in study.best_trials} if len(study.directions) > 1 else set()
    complete.sort(key=lambda t: (-t.values[0], t.user_attrs.get("lm_tokens", 0), t.number))
    rows = []
    for rank, t in enumerate(complete[:top] if top else complete, 1):
        row = {"rank": rank, "trial": t.number, "valid": round(t.values[0], 4), "lm_tokens": t.user_attrs.get("lm_tokens"),
               "number": round(t.user_attrs.get("number", 0.0), 2), "failed": t.user_attrs.get("failed", 0),
               "seconds": t.user_attrs.get("seconds"), "worker": t.user_attrs.get("worker", "")}
        if front:
            row["front"] = "*" if t.number in front else ""
        row.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in t.params.items()})
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Fixed-width text, one row per trial (the worker column left out: see the CSV)."""
    if not rows:
        return "no complete trial"
    columns = [c for c in rows[0] if c != "worker"]
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def to_markdown(rows: list[dict[str, Any]], title: str) -> str:
    lines = [f"# {title}", ""]
    if not rows:
        return "\n".join(lines + ["No complete trial.", ""])
    columns = list(rows[0])
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---:" if c not in ("worker", "front") else "---" for c in columns) + "|")
    lines += ["| " + " | ".join(_cell(r.get(c)).replace("|", "\\|") for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_outputs(out: str | Path, rows: list[dict[str, Any]], title: str, summary: str) -> dict[str, Path]:
    """``trials.csv`` and ``trials.md`` (the table and ``summary`` below it) in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "trials.csv", "md": out / "trials.md"}
    atomic_write_text(paths["csv"], to_csv(rows))
    atomic_write_text(paths["md"], to_markdown(rows, title) + "\n" + summary + "\n")
    return paths
