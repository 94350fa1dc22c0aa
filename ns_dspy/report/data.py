"""Quantities derived from a neuron's trace, shared by the HTML report and the experiment analyses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import StoreError
from ..runs import NeuronRecord
from ..trace import Final, Trace, TraceError

__all__ = ["best_final", "padded", "neuron_trajectory", "mean_trajectories", "trace_problem", "check_traces"]


def trace_problem(trace) -> str | None:
    """What is wrong with a stored trace (one line, :meth:`ns_dspy.trace.Trace.from_dict`), or None."""
    try:
        Trace.from_dict(trace)
    except TraceError as err:
        return str(err)
    return None


def check_traces(path: str | Path, records: Iterable[NeuronRecord]) -> None:
    """Raise :class:`StoreError` naming the run file and the neuron when a record's trace is malformed."""
    for record in records:
        problem = trace_problem(record.trace)
        if problem:
            raise StoreError(f"{path}: the stored trace of neuron {record.unit} is malformed: {problem}; explain "
                             "that neuron again into a new --run, or leave it out with --neurons")


def best_final(record: NeuronRecord) -> Final | None:
    """The final explanation with the highest valid score (None when there is none)."""
    return record.typed_trace.best_final()


def padded(trajectory: Sequence[float], length: int) -> list[float]:
    """``trajectory`` (best valid score after each iteration, ``[0]`` the seed) carried forward to ``length``
    entries: a cluster whose refinement stopped early keeps its best score in the later iterations."""
    values = list(trajectory)
    if not values:
        return []
    return (values + [values[-1]] * length)[:length] if length > len(values) else values[:length]


def neuron_trajectory(record: NeuronRecord, length: int | None = None) -> list[float]:
    """Mean over the neuron's clusters of their carried-forward trajectories, one entry per iteration
    (``[]`` for a neuron without refinement). ``length`` defaults to the longest trajectory."""
    trajectories = [m.trajectory for m in record.typed_trace.modes if m.trajectory]
    if not trajectories:
        return []
    n = length or max(len(t) for t in trajectories)
    rows = [padded(t, n) for t in trajectories]
    return [sum(r[i] for r in rows) / len(rows) for i in range(n)]


def mean_trajectories(records: Iterable[NeuronRecord], length: int | None = None
                      ) -> dict[int, tuple[list[float], int]]:
    """Per layer: (mean over its done neurons of :func:`neuron_trajectory`, number of neurons)."""
    by_layer: dict[int, list[NeuronRecord]] = {}
    for r in records:
        if r.status == "done" and neuron_trajectory(r):
            by_layer.setdefault(r.unit.layer, []).append(r)
    out = {}
    for layer, rs in sorted(by_layer.items()):
        n = length or max(len(neuron_trajectory(r)) for r in rs)
        rows = [neuron_trajectory(r, n) for r in rs]
        out[layer] = ([sum(row[i] for row in rows) / len(rows) for i in range(n)], len(rows))
    return out
