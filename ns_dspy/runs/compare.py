"""Two run files on the same neurons, compared pair by pair on the same test windows.

A mean over a few neurons hides which differences are real: on the 16 evaluation neurons of gemma-3-270m one
neuron carried most of NeuronScope's lead over its statistical row. :func:`compare_runs` scores each neuron both
runs finished with the same simulator on the same test windows (each run's final explanations, their maps fitted
on valid as that run's ``test_maps`` says, so each score is the one its run reports, to about 0.001) and gives the
paired 90% bootstrap interval of the difference (:func:`ns_dspy.scoring.bootstrap.difference_interval`): whether
run A beats run B on this neuron beyond the luck of which windows were held out. :func:`compare_table` writes the
table ``ns-dspy compare`` prints, with the mean difference, its standard error over neurons and the count of
neurons above, below and undecided. Test data is only read here, never chosen on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError
from ..scoring import HeldOut, bootstrap, polysemantic
from ..scoring.bootstrap import Interval
from ..types import UnitId
from .read import RunData

__all__ = ["Pair", "compare_runs", "compare_table", "summary_lines"]


@dataclass(frozen=True)
class Pair:
    """One neuron of both runs: their test scores on the same windows and the interval of ``a - b``."""

    unit: UnitId
    a: float
    b: float
    interval: Interval

    @property
    def verdict(self) -> str:
        """``above`` (A higher beyond the interval), ``below`` or ``undecided`` (0 inside it)."""
        return self.interval.side


def _finals(record) -> list[str]:
    return [f.explanation for f in record.typed_trace.finals]


def compare_runs(a: RunData, b: RunData, store, simulator) -> tuple[list[Pair], list[UnitId]]:
    """``(pairs, skipped)``: a :class:`Pair` per unit done in both runs (in run A's order), and the units done in
    one run only. :class:`ConfigError` when no unit is done in both."""
    done_b = {r.unit: r for r in b.done}
    shared = [r for r in a.done if r.unit in done_b]
    skipped = sorted({r.unit for r in a.done} ^ set(done_b), key=lambda u: (u.layer, u.index))
    if not shared:
        raise ConfigError(f"{a.path} and {b.path} have no neuron done in both: compare runs of the same neurons")
    maps = [(run.config.get("explain") or {}).get("test_maps") for run in (a, b)]
    pairs = []
    for record in shared:
        unit = record.unit
        test, valid = HeldOut.from_store(store, unit, "test"), HeldOut.from_store(store, unit, "valid")
        scored = [polysemantic(simulator, _finals(r), test, calibration=valid, final_kind=kind)
                  for r, kind in ((record, maps[0]), (done_b[unit], maps[1]))]
        trues, kinds = [ex.activations for ex in test.exemplars], [ex.kind for ex in test.exemplars]
        pairs.append(Pair(unit, scored[0].value, scored[1].value,
                          bootstrap.difference_interval(scored[0].predictions, scored[1].predictions, trues, kinds)))
    return pairs, skipped


def summary_lines(pairs: Sequence[Pair], skipped: Sequence[UnitId] = ()) -> list[str]:
    """The mean scores and difference with its standard error over neurons, the count of neurons above, below
    and undecided, and the neurons of one run only."""
    diffs = [p.a - p.b for p in pairs]
    n = len(diffs)
    mean = sum(diffs) / n
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else float("nan")
    counts = bootstrap.sides([(p.interval.low, p.interval.high) for p in pairs])
    lines = [f"mean over {n} neurons: A {sum(p.a for p in pairs) / n:.3f}, B {sum(p.b for p in pairs) / n:.3f}, "
             f"A - B {mean:+.3f} ± {se:.3f} (standard error over neurons)",
             f"A above B beyond the interval on {counts['above']}, below on {counts['below']}, "
             f"undecided on {counts['undecided']} of {n} neurons"]
    if skipped:
        shown = ", ".join(map(str, skipped[:8])) + (", ..." if len(skipped) > 8 else "")
        lines.append(f"not compared ({len(skipped)}, done in one run only): {shown}")
    return lines


def compare_table(pairs: Sequence[Pair], name_a: str, name_b: str, skipped: Sequence[UnitId] = ()) -> str:
    """The per-neuron table and the summary lines ``ns-dspy compare`` prints."""
    lines = [f"A = {name_a}, B = {name_b}; test scores on the same windows, A - B with its 90% interval over them",
             f"{'unit':>9} {'A':>7} {'B':>7} {'A - B':>7} {'90% interval':>16}  verdict"]
    for p in pairs:
        lines.append(f"{str(p.unit):>9} {p.a:>7.3f} {p.b:>7.3f} {p.a - p.b:>+7.3f} "
                     f"{f'[{p.interval.low:+.3f}, {p.interval.high:+.3f}]':>16}  {p.verdict}")
    return "\n".join(lines + summary_lines(pairs, skipped))
