"""Quantities derived from a neuron's trace, shared by the HTML report and the experiment analyses."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ..errors import StoreError, json_kind
from ..runs import NeuronRecord

__all__ = ["best_final", "padded", "neuron_trajectory", "mean_trajectories", "cluster_of_conditions", "trace_problem",
           "check_traces"]


# -- the shape of a stored trace --------------------------------------------------------------------------
def _is_num(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_pair(value) -> bool:
    """``[text, score]``: a refinement history entry or a baseline candidate."""
    return isinstance(value, list) and len(value) == 2 and _is_num(value[1])


def _where(key: str, problem: str) -> str:
    return f"{key}{problem}" if problem.startswith("[") else f"{key} {problem}"


_Check = Callable[[object], "str | None"]


def _number(value) -> str | None:
    return None if _is_num(value) else f"must be a number or null, got {json_kind(value)}"


def _list_of(ok: Callable[[object], bool], each: str) -> _Check:
    def check(value):
        if not isinstance(value, list):
            return f"must be a list, each {each}, got {json_kind(value)}"
        bad = next((i for i, item in enumerate(value) if not ok(item)), None)
        return None if bad is None else f"[{bad}] must be {each}, got {json_kind(value[bad])}"
    return check


def _object(fields: dict[str, _Check], required: tuple[str, ...] = ()) -> _Check:
    def check(value):
        if not isinstance(value, dict):
            return f"must be an object, got {json_kind(value)}"
        for key in required:
            if key not in value:
                return f'needs "{key}"'
        for key, field_check in fields.items():
            problem = None if value.get(key) is None else field_check(value[key])
            if problem:
                return _where(f'."{key}"', problem)
        return None
    return check


def _list_of_objects(fields: dict[str, _Check], required: tuple[str, ...] = ()) -> _Check:
    each = _object(fields, required)

    def check(value):
        if not isinstance(value, list):
            return f"must be a list of objects, got {json_kind(value)}"
        for i, item in enumerate(value):
            problem = each(item)
            if problem:
                return f"[{i}]{problem}" if problem.startswith(".") else f"[{i}] {problem}"
        return None
    return check


_TRACE: dict[str, _Check] = {
    "finals": _list_of_objects({"valid": _number, "test": _number}),
    "polysemantic": _object({"valid": _number, "test": _number}),
    "lm_usage": _object({}),
    "exemplars_shown": _list_of_objects({"tokens": _list_of(lambda t: isinstance(t, str), "a string"),
                                         "activations": _list_of(_is_num, "a number")},
                                        required=("tokens", "activations")),
    "conditions": _list_of(lambda c: isinstance(c, str), "a string"),
    "labels": _list_of(lambda x: isinstance(x, int) and not isinstance(x, bool), "an integer"),
    "clusters": _list_of_objects({"members": _list_of(lambda m: isinstance(m, str), "a string"),
                                  "trajectory": _list_of(_is_num, "a number"), "valid": _number,
                                  "history": _list_of(_is_pair, "a [text, score] pair")}),
    "baseline_candidates": _list_of(_is_pair, "a [text, score] pair"),
    "cost": _object({"lm_prompt_tokens": _number, "lm_completion_tokens": _number, "simulated_tokens": _number,
                     "seconds": _object({})}),
}
"""What the report and the analyses read from a trace (a key that is absent or null is fine); other keys are
passed over."""


def trace_problem(trace) -> str | None:
    """What is wrong with the parts of a stored trace that the report reads (one line), or None."""
    if not isinstance(trace, dict):
        return f"the trace must be an object, got {json_kind(trace)}"
    for key, check in _TRACE.items():
        problem = None if trace.get(key) is None else check(trace[key])
        if problem:
            return _where(f'"{key}"', problem)
    return None


def check_traces(path: str | Path, records: Iterable[NeuronRecord]) -> None:
    """Raise :class:`StoreError` naming the run file and the neuron when a record's trace is malformed."""
    for record in records:
        problem = trace_problem(record.trace)
        if problem:
            raise StoreError(f"{path}: the stored trace of neuron {record.unit} is malformed: {problem}; explain "
                             "that neuron again into a new --run, or leave it out with --neurons")


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
