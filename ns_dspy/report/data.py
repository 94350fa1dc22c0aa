"""Quantities derived from a neuron's trace, shared by the HTML report and the experiment analyses."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ..runs import NeuronRecord

__all__ = ["best_final", "padded", "neuron_trajectory", "mean_trajectories", "cluster_of_conditions"]


def best_final(record: NeuronRecord) -> dict:
    """The final explanation with the highest valid score (``{}`` when there is none)."""
    finals = record.trace.get("finals") or []
    return max(finals, key=lambda f: -math.inf if f.get("valid") is None else f["valid"], default={})


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
    trajectories = [c["trajectory"] for c in record.trace.get("clusters") or [] if c.get("trajectory")]
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


def cluster_of_conditions(trace: dict) -> list[int]:
    """The cluster index of each atomic condition (``-1`` when the noise policy dropped it)."""
    labels = trace.get("labels")
    if labels is not None and len(labels) == len(trace.get("conditions") or []):
        return [int(x) for x in labels]
    index = {}
    for k, cluster in enumerate(trace.get("clusters") or []):
        for member in cluster.get("members") or []:
            index.setdefault(member, k)
    return [index.get(c, -1) for c in trace.get("conditions") or []]
