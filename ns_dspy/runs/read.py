"""Reading a finished (or running) run file without changing it: for reports and analyses.

:class:`~ns_dspy.runs.RunStore` creates a file that does not exist and adds its tables to an empty one, which
is right for ``ns-dspy explain`` but wrong for a reader: a typo must not leave an empty run behind. This
opens the file read-only and refuses anything that is not an ns-dspy run with a one-line message.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..scoring.bootstrap import bounds_text, sides
from ..trace import Cost, Statistical, TraceError
from ..types import UnitId
from .store import FORMAT, NeuronRecord

__all__ = ["RunData", "check_run_file", "cost_row", "flat_config", "read_run", "run_mode", "statistical_row", "statistical_rows", "summary_table"]


@dataclass
class RunData:
    """A run file's contents: ``meta`` (format, version, created, ``config``) and its neurons, by unit."""

    path: Path
    meta: dict[str, Any]
    records: list[NeuronRecord] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any]:
        """The run's settings in one shape whichever ns-dspy made the file (:func:`flat_config`)."""
        return flat_config(self.meta.get("config") or {})

    @property
    def mode(self) -> str:
        return run_mode(self.config)

    @property
    def done(self) -> list[NeuronRecord]:
        return [r for r in self.records if r.status == "done"]

    @property
    def failed(self) -> list[NeuronRecord]:
        return [r for r in self.records if r.status != "done"]

    def by_unit(self) -> dict[UnitId, NeuronRecord]:
        return {r.unit: r for r in self.records}


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A stored run configuration as readers use it: ``explain`` (the settings), ``lm``, ``temperature``,
    ``simulator``, ``embedder`` (specs), ``store`` and ``program``. Run files store a whole run configuration
    with its components' cache keys (:meth:`ns_dspy.build.Built.provenance`, version 2; also kept here, as
    ``run`` and ``components``); older ones stored this shape directly."""
    run = config.get("run")
    if config.get("version") != 2 or not isinstance(run, dict):
        return config
    part = lambda name: run.get(name) if isinstance(run.get(name), dict) else {}  # noqa: E731
    flat = {"explain": part("explain"), "lm": part("lm").get("spec"), "temperature": part("lm").get("temperature"),
            "simulator": part("simulator").get("spec"), "embedder": part("embedder").get("spec"),
            "run": run, "components": config.get("components")}
    if config.get("program_state"):  # a compiled program was loaded (a file, or the one packaged: "default")
        flat["program"] = {"path": run.get("program"), "state_sha256": config["program_state"]}
    return {**flat, **{k: v for k, v in config.items() if k not in ("version", "run", "components", "program_state")}}


def run_mode(config: dict[str, Any]) -> str:
    """``refine`` (NeuronScope), ``norefine`` (the paper's ablation), ``baseline`` (single pass) or ``stats``
    (the statistical explainer)."""
    explain = config.get("explain") or {}
    if explain.get("method") == "stats":
        return "stats"
    if explain.get("baseline"):
        return "baseline"
    return "refine" if explain.get("refine", True) else "norefine"


def statistical_row(record: NeuronRecord) -> Statistical | None:
    """A done unit's statistical explainer (explanation, valid and test scores; every method's trace carries it,
    the runner adding the test score), or None when the record has none with a test score."""
    if record.status != "done":
        return None
    try:
        row = record.typed_trace.statistical
    except TraceError:
        return None
    return row if row is not None and row.test is not None else None


def cost_row(record: NeuronRecord) -> Cost | None:
    """What the unit cost (:mod:`ns_dspy.costs`), with a number of seconds for every stage; None when the record
    has none or its trace is malformed (run files from before, or edited by hand)."""
    from ..costs import STAGES

    try:
        cost = record.typed_trace.cost
    except TraceError:
        return None
    if cost is None:
        return None
    return replace(cost, seconds={k: float(cost.seconds.get(k, 0.0)) for k in STAGES})


def statistical_rows(records) -> list[Statistical] | None:
    """The statistical rows of the done ``records``, or None unless every done record has one (a mean over
    fewer units would not sit beside theirs)."""
    done = [r for r in records if r.status == "done"]
    rows = [row for row in map(statistical_row, done) if row is not None]
    return rows if rows and len(rows) == len(done) else None


_COLUMNS = ("status", "error", "number", "score_valid", "score_test", "baseline_test", "lm_tokens", "lm_cost",
            "seconds")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _column_problem(row: tuple) -> str | None:
    """What is wrong with the columns of a ``neurons`` row (layer, idx, status, ..., seconds), or None."""
    for name, value in zip(_COLUMNS, row[2:11]):
        if name == "status":
            ok = isinstance(value, str)
        elif name == "error":
            ok = value is None or isinstance(value, str)
        else:
            ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
        if not ok:
            return f"its {name} is {str(value)[:30]!r}"
    return None


def _connect_for_reading(path: Path) -> sqlite3.Connection:
    """A connection that only reads the run file at ``path``. Read-write where the file is writable: closing the
    last connection then checkpoints and removes the ``-wal`` and ``-shm`` files of the run's WAL journal, where a
    read-only connection would leave them beside the user's file; read-only where it is not writable."""
    mode = "rw" if os.access(path, os.W_OK) else "ro"
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True, timeout=60)
    except sqlite3.Error as err:
        raise StoreError(f"cannot open run file {path}: {err}") from None


def _open_run(path: Path) -> tuple[sqlite3.Connection, dict]:
    """A reading connection to the run file at ``path`` and its meta table; :class:`StoreError` (the connection
    closed) for a file of another kind or a corrupt meta table."""
    db = _connect_for_reading(path)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", "neurons"} <= tables:
            raise StoreError(f"{path} is not an ns-dspy run file (no meta and neurons tables)")
        meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
        if meta.get("format") != FORMAT:
            raise StoreError(f"{path} is not an ns-dspy run file (format {meta.get('format')!r})")
        return db, meta
    except StoreError:
        db.close()
        raise
    except sqlite3.DatabaseError as err:
        db.close()
        raise StoreError(f"{path} is not an ns-dspy run file ({err})") from None
    except (ValueError, TypeError) as err:  # ValueError: JSONDecodeError, or an integer of over 4300 digits
        db.close()
        raise StoreError(f"{path} is corrupt: its meta table is not JSON ({err})") from None


def check_run_file(path: str | Path, option: str = "--run") -> None:
    """Refuse in one line, before any model loads, an existing file at ``path`` that is not an ns-dspy run file
    (a missing one is fine: it will be created). Reads only; leaves no journal files behind."""
    path = Path(path)
    if not path.is_file():
        return
    try:
        db, _ = _open_run(path)
    except StoreError as err:
        raise StoreError(f"{err}: choose another {option}") from None
    db.close()


def read_run(path: str | Path) -> RunData:
    """Every row of the run file at ``path``; :class:`StoreError` for a missing, foreign or corrupt file."""
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a run file: give the .sqlite file ns-dspy explain wrote "
                         f"(default STORE.explain.sqlite)")
    if not path.is_file():
        raise StoreError(f"no run file at {path}: give the .sqlite file ns-dspy explain wrote (its --run)")
    db, meta = _open_run(path)
    try:
        rows = db.execute("SELECT layer, idx, status, error, number, score_valid, score_test, baseline_test, "
                          "lm_tokens, lm_cost, seconds, trace FROM neurons ORDER BY layer, idx").fetchall()
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path} is not an ns-dspy run file ({err})") from None
    finally:
        db.close()
    config = meta.get("config") or {}
    if isinstance(config, dict):
        config = flat_config(config)
    if not isinstance(config, dict) or not isinstance(config.get("explain") or {}, dict):
        raise StoreError(f"{path} is corrupt: its meta config is not a JSON object (with an \"explain\" object)")
    records = []
    for r in rows:
        if not (_is_int(r[0]) and _is_int(r[1]) and r[0] >= 0 and r[1] >= 0):
            raise StoreError(f"{path} is corrupt: a neurons row has layer {str(r[0])[:20]!r} and index "
                             f"{str(r[1])[:20]!r}, not two non-negative integers")
        problem = _column_problem(r)
        if problem:
            raise StoreError(f"{path} is corrupt: in the row of unit {r[0]}:{r[1]}, {problem}")
        try:
            trace = json.loads(r[11])
        except (ValueError, TypeError) as err:
            raise StoreError(f"{path} is corrupt: the trace of unit {r[0]}:{r[1]} is not JSON ({err})") from None
        if not isinstance(trace, dict):
            raise StoreError(f"{path} is corrupt: the trace of unit {r[0]}:{r[1]} is not a JSON object")
        records.append(NeuronRecord(UnitId(r[0], r[1]), *r[2:11], trace=trace))
    return RunData(path, meta, records)


def summary_table(records) -> str:
    """The summary a command prints: per unit status, Number, scores, LM tokens, seconds and the best
    explanation; failures by kind; means with the statistical row beside them; and the cost table."""
    lines = [f"{'unit':>9} {'status':<7} {'Number':>6} {'valid':>7} {'test':>7} {'test 90%':>14} {'LM tok':>8} "
             f"{'sec':>6}  explanation"]
    for r in records:
        if r.status == "done":
            trace = r.typed_trace
            best = trace.best_final()
            text = best.explanation if best else ""
            if trace.method == "stats" and trace.statistical is not None:
                text = trace.statistical.explanation  # its tiers together (``A | B``): one explanation
            lines.append(f"{str(r.unit):>9} {r.status:<7} {r.number:>6} {r.score_valid:>7.3f} {r.score_test:>7.3f} "
                         f"{bounds_text(trace.polysemantic and trace.polysemantic.test_interval):>14} "
                         f"{r.lm_tokens or 0:>8} {r.seconds or 0:>6.0f}  {text[:90]}")
        else:
            lines.append(f"{str(r.unit):>9} {r.status:<7} {'':>6} {'':>7} {'':>7} {'':>14} {r.lm_tokens or 0:>8} "
                         f"{r.seconds or 0:>6.0f}  {r.error}")
    kinds = Counter(r.typed_trace.failure or "other" for r in records if r.status != "done")
    if kinds:
        lines.append(f"failed: {sum(kinds.values())} ({', '.join(f'{k} {n}' for k, n in kinds.most_common())})")
    faults = Counter()  # transient LM failures met while explaining (each retried, up to the retry limit), by kind
    for r in records:
        faults.update(r.typed_trace.faults)
    if faults:
        lines.append(f"LM call failures: {sum(faults.values())} "
                     f"({', '.join(f'{k} {n}' for k, n in sorted(faults.items(), key=lambda kv: (-kv[1], kv[0])))})")
    done = [r for r in records if r.status == "done"]
    if done:
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        lines.append(f"mean over {len(done)} units: Number {mean([r.number for r in done]):.2f}, "
                     f"score valid {mean([r.score_valid for r in done]):.3f}, test {mean([r.score_test for r in done]):.3f}")
        stats = statistical_rows(done)
        if stats and any(r.typed_trace.method != "stats" for r in done):
            lines.append(f"statistical explainer (no LM) on the same {len(done)} units: "
                         f"valid {mean([s.valid for s in stats]):.3f}, test {mean([s.test for s in stats]):.3f}")
            leads = [p.lead_interval for r in done if (p := r.typed_trace.polysemantic) and p.lead_interval]
            if leads:
                counts = sides(leads)
                lines.append(f"test score minus the statistical row's, 90% interval over each unit's test windows: "
                             f"above 0 on {counts['above']}, below 0 on {counts['below']}, 0 inside on "
                             f"{counts['undecided']} of {len(leads)} units")
    lines += _cost_table(records)
    return "\n".join(lines)


def cached_calls(record: NeuronRecord) -> int:
    """The unit's LM calls answered from the LM cache (they spent no token): 0 when its trace has no count."""
    try:
        usage = record.typed_trace.lm_usage or {}
    except TraceError:
        return 0
    return int(usage.get("cached_calls", 0) or 0)


def _cost_table(records) -> list[str]:
    """Per neuron: LM prompt / completion tokens, LM calls answered from the cache (a rerun's zero tokens are not a
    free LM), simulated tokens and seconds by stage (and their means)."""
    from ..costs import STAGES

    rows = [(r, c, cached_calls(r)) for r in records if (c := cost_row(r)) is not None]
    if not rows:
        return []
    short = {"hypothesis": "hyp s", "decomposition": "dec s", "clustering": "clu s", "refinement": "ref s",
             "scoring": "score s"}
    head = (f"{'cost':>9} {'LM in':>8} {'LM out':>7} {'cached':>6} {'simulated':>10} "
            + " ".join(f"{short[s]:>7}" for s in STAGES))

    def line(label, c, cached):
        return (f"{label:>9} {c.lm_prompt_tokens:>8.0f} {c.lm_completion_tokens:>7.0f} {cached:>6.0f} "
                f"{c.simulated_tokens:>10.0f} " + " ".join(f"{c.seconds[s]:>7.1f}" for s in STAGES))

    out = ["", head] + [line(str(r.unit), c, cached) for r, c, cached in rows]
    if len(rows) > 1:
        n = len(rows)
        mean = Cost(**{k: sum(getattr(c, k) for _, c, _ in rows) / n
                       for k in ("lm_prompt_tokens", "lm_completion_tokens", "simulated_tokens")},
                    seconds={s: sum(c.seconds[s] for _, c, _ in rows) / n for s in STAGES})
        out.append(line("mean", mean, sum(cached for _, _, cached in rows) / n))
    out.append("(cached: LM calls answered from the LM cache, which spent no tokens)")
    return out
