"""The typed trace: everything explaining one neuron produced, as the run store keeps it (JSON, versioned).

The program and the runner build a :class:`Trace`; :meth:`Trace.to_dict` is the JSON document stored in each
row of a run file (``runs/store.py``), and :meth:`Trace.from_dict` reads one back, checking the type of every
field it reads, so the report, the experiments and simulator training read fields (``trace.finals[0].test``),
never string keys. Its parts:

- :class:`Shown` - an exemplar shown to the Hypothesis agent (window, tokens, activations);
- :class:`Mode` - one semantic mode (a cluster of atomic conditions): its members, representative, final
  explanation and valid score, the refinement history (:class:`Candidate`, text and valid score), the best valid
  score after each iteration (``trajectory``) and the candidates raced out;
- :class:`Final` - each final explanation with its valid and test scores; :class:`Statistical` - the statistical
  explainer's row (no LM) beside every method, with its candidates (``stats_candidates``, text and valid score, an
  estimate for those raced out: ``stats_raced``, the valid exemplars each was judged on); :class:`Scores` - the
  neuron-level (polysemantic) scores;
- :class:`Cost` - LM tokens, simulated tokens and seconds by stage (:mod:`ns_dspy.costs`); ``lm_usage`` - the LM
  calls, tokens, cost and transient faults (:func:`ns_dspy.lms.lm_usage`).

Versions: ``version`` 2 is written since the typed trace; a trace without ``version`` (version 1, the run files
written before) has the same fields and is read as it is. A trace of a later version than this code knows is
refused with one line (:class:`TraceError`): upgrade ns-dspy to read it. Keys this version does not know are kept
in ``extra`` and written back unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import NsDspyError, json_kind

__all__ = ["TRACE_VERSION", "TraceError", "Trace", "Mode", "Candidate", "Final", "Statistical", "Scores", "Shown",
           "Cost"]

TRACE_VERSION = 2


class TraceError(NsDspyError):
    """A stored trace that cannot be read: one line saying which field is wrong."""


# -- checks: each returns a problem (one line) or None ------------------------------------------------------------
def _num(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str(value) -> bool:
    return isinstance(value, str)


def _fail(where: str, what: str, value) -> TraceError:
    return TraceError(f"{where} must be {what}, got {json_kind(value)}")


def _name(where: str, key: str) -> str:
    """``"clusters"[0]."valid"``: where a field is, as the error names it."""
    return f'{where}."{key}"' if where else f'"{key}"'


def _opt(d: dict, key: str, ok: Callable[[object], bool], what: str, where: str, default=None):
    """``d[key]`` when present and not null, checked with ``ok``; ``default`` otherwise."""
    value = d.get(key)
    if value is None:
        return default
    if not ok(value):
        raise _fail(_name(where, key), what, value)
    return value


def _items(d: dict, key: str, where: str, what: str = "a list") -> list:
    value = d.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(_name(where, key), what, value)
    return value


def _list_of(d: dict, key: str, ok: Callable[[object], bool], what: str, where: str = "") -> list:
    items = _items(d, key, where)
    bad = next((i for i, item in enumerate(items) if not ok(item)), None)
    if bad is not None:
        raise _fail(f"{_name(where, key)}[{bad}]", what, items[bad])
    return list(items)


def _object(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise _fail(where, "an object", value)
    return value


def _objects(d: dict, key: str, where: str = "") -> list[tuple[str, dict]]:
    name = _name(where, key)
    items = _items(d, key, where, "a list of objects")
    return [(f"{name}[{i}]", _object(item, f"{name}[{i}]")) for i, item in enumerate(items)]


def _pair(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and _str(value[0]) and _num(value[1])


# -- the parts -------------------------------------------------------------------------------------------------
@dataclass
class Candidate:
    """An explanation and its valid score (a refinement history entry, a baseline or statistical candidate)."""

    text: str
    score: float

    def to_json(self) -> list:
        return [self.text, self.score]

    @classmethod
    def list_from(cls, d: dict, key: str, where: str = "") -> list["Candidate"]:
        return [cls(t, s) for t, s in _list_of(d, key, _pair, "a [text, score] pair", where)]


def _bounds(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_num(v) for v in value) and value[0] <= value[1]


@dataclass
class Scores:
    """The neuron-level scores. ``test_interval``: the 90% bootstrap interval of the test score over the test
    windows (:func:`ns_dspy.scoring.bootstrap.interval`); ``lead_interval``: the paired interval of the test score
    minus the statistical row's on the same windows (methods other than the statistical one). Both ``[low, high]``,
    None in traces written before 2026-12-06."""

    valid: float | None = None
    test: float | None = None
    test_interval: list[float] | None = None
    lead_interval: list[float] | None = None

    @classmethod
    def from_dict(cls, d, where: str) -> "Scores":
        d = _object(d, where)
        pair = "a [low, high] pair of numbers, low first"
        return cls(_opt(d, "valid", _num, "a number or null", where), _opt(d, "test", _num, "a number or null", where),
                   _opt(d, "test_interval", _bounds, pair, where), _opt(d, "lead_interval", _bounds, pair, where))

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"valid": self.valid, "test": self.test}
        if self.test_interval is not None:
            out["test_interval"] = list(self.test_interval)
        if self.lead_interval is not None:
            out["lead_interval"] = list(self.lead_interval)
        return out


@dataclass
class Final:
    """A final explanation (one per mode; one for the baseline and the statistical method) and its scores."""

    explanation: str
    valid: float | None = None
    test: float | None = None


@dataclass
class Statistical:
    """The statistical explainer's explanation (no LM) and its scores; every method's trace carries it.

    ``explanations``: one word list, or one per activation tier (scored as a calibrated union, like a
    polysemantic neuron's modes); traces written before tiers hold one."""

    explanations: list[str]
    valid: float | None = None
    test: float | None = None

    @property
    def explanation(self) -> str:
        """The explanations as one line, tiers separated by `` | `` (as a union's score is labelled)."""
        return " | ".join(self.explanations)


@dataclass
class Shown:
    """An exemplar shown to the Hypothesis agent."""

    tokens: list[str]
    activations: list[float]
    window: int = -1


@dataclass
class Mode:
    """One semantic mode: a cluster of atomic conditions and, with refinement, what refining it did.

    ``source``: ``"lm"`` for a mode the agents wrote (a concept the LM named, ``ExplainConfig.concepts``,
    included), ``"stats"`` for one of the statistical explainer's word lists added to the modes
    (``ExplainConfig.stats_modes``; no conditions, no LM refinement; when the lists were edited from their valid
    errors, ``ExplainConfig.list_edits``, an edited list's ``trajectory`` is the set's valid score before and after
    each edit). ``stopped``: why the mode's refinement ended (``RefinementAgent``'s reasons: ``converged``,
    ``no_contribution``, ...); None without refinement and in traces written before it was kept."""

    members: list[str] = field(default_factory=list)
    representative: str | None = None
    explanation: str | None = None
    valid: float | None = None
    history: list[Candidate] = field(default_factory=list)
    trajectory: list[float] = field(default_factory=list)
    raced: dict[str, Any] = field(default_factory=dict)
    source: str = "lm"
    stopped: str | None = None

    def to_dict(self) -> dict:
        out = {"members": list(self.members), "representative": self.representative,
               "explanation": self.explanation, "valid": self.valid}
        if self.source != "lm":
            out["source"] = self.source
        if self.history or self.trajectory:
            out.update(history=[c.to_json() for c in self.history], trajectory=list(self.trajectory))
        if self.raced:
            out["raced"] = dict(self.raced)
        if self.stopped is not None:
            out["stopped"] = self.stopped
        return out

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "Mode":
        return cls(members=_list_of(d, "members", _str, "a string", where),
                   representative=_opt(d, "representative", _str, "a string", where),
                   explanation=_opt(d, "explanation", _str, "a string", where),
                   valid=_opt(d, "valid", _num, "a number or null", where),
                   history=Candidate.list_from(d, "history", where),
                   trajectory=_list_of(d, "trajectory", _num, "a number", where),
                   raced=dict(_opt(d, "raced", lambda v: isinstance(v, dict), "an object", where, {})),
                   source=_opt(d, "source", lambda v: v in ("lm", "stats"), '"lm" or "stats"', where, "lm"),
                   stopped=_opt(d, "stopped", _str, "a string or null", where))


@dataclass
class Cost:
    """What explaining the neuron cost (:mod:`ns_dspy.costs`): LM tokens, simulated tokens, seconds by stage."""

    lm_prompt_tokens: int = 0
    lm_completion_tokens: int = 0
    simulated_tokens: int = 0
    simulator_calls: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    seconds_total: float | None = None

    def to_dict(self) -> dict:
        return {"lm_prompt_tokens": self.lm_prompt_tokens, "lm_completion_tokens": self.lm_completion_tokens,
                "seconds": dict(self.seconds), "simulated_tokens": self.simulated_tokens,
                "simulator_calls": self.simulator_calls, "seconds_total": self.seconds_total}

    @classmethod
    def from_dict(cls, d, where: str = '"cost"') -> "Cost":
        d = _object(d, where)
        count = lambda v: _int(v) and v >= 0  # noqa: E731
        seconds = _opt(d, "seconds", lambda v: isinstance(v, dict), "an object", where, {})
        bad = next((k for k, v in seconds.items() if not (_num(v) and v >= 0)), None)
        if bad is not None:
            raise _fail(f'{where}."seconds"."{bad}"', "a number of seconds >= 0", seconds[bad])
        return cls(**{k: _opt(d, k, count, "a whole number >= 0", where, 0)
                      for k in ("lm_prompt_tokens", "lm_completion_tokens", "simulated_tokens", "simulator_calls")},
                   seconds={k: float(v) for k, v in seconds.items()},
                   seconds_total=_opt(d, "seconds_total", _num, "a number or null", where))


_KNOWN = ("version", "unit", "attempt", "method", "exemplars_shown", "raw_explanation", "conditions", "labels",
          "clusters", "statistics", "stats_candidates", "stats_raced", "baseline_candidates", "statistical", "finals",
          "polysemantic", "lm_usage", "cost", "failure")


@dataclass
class Trace:
    """What explaining one neuron produced (module docstring). ``modes`` is stored under ``"clusters"``."""

    unit: str | None = None
    attempt: int = 0
    method: str | None = None
    exemplars_shown: list[Shown] = field(default_factory=list)
    raw_explanation: str | None = None
    conditions: list[str] = field(default_factory=list)
    labels: list[int] | None = None
    modes: list[Mode] = field(default_factory=list)
    statistics: str | None = None  # the evidence table shown to the agents (stats method)
    stats_candidates: list[Candidate] = field(default_factory=list)
    stats_raced: dict[str, int] = field(default_factory=dict)  # candidate -> valid exemplars it was judged on
    baseline_candidates: list[Candidate] = field(default_factory=list)
    statistical: Statistical | None = None
    finals: list[Final] = field(default_factory=list)
    polysemantic: Scores | None = None
    lm_usage: dict = field(default_factory=dict)
    cost: Cost | None = None
    failure: str | None = None
    version: int = TRACE_VERSION
    extra: dict = field(default_factory=dict)

    # -- derived ------------------------------------------------------------------------------------------------
    def best_final(self) -> Final | None:
        """The final explanation with the highest valid score (None when there is none)."""
        return max(self.finals, key=lambda f: -math.inf if f.valid is None else f.valid, default=None)

    @property
    def faults(self) -> dict[str, int]:
        """Transient LM failures met while explaining, by kind (:mod:`ns_dspy.lms.retry`)."""
        faults = self.lm_usage.get("faults") if isinstance(self.lm_usage, dict) else None
        return {k: v for k, v in faults.items() if _int(v)} if isinstance(faults, dict) else {}

    def condition_modes(self) -> list[int]:
        """The mode index of each atomic condition (``-1`` when the noise policy dropped it)."""
        if self.labels is not None and len(self.labels) == len(self.conditions):
            return [int(x) for x in self.labels]
        index: dict[str, int] = {}
        for k, mode in enumerate(self.modes):
            for member in mode.members:
                index.setdefault(member, k)
        return [index.get(c, -1) for c in self.conditions]

    # -- JSON -----------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The stored JSON document; empty parts are left out, unknown keys read earlier are written back."""
        out: dict[str, Any] = {"version": self.version, "unit": self.unit, "attempt": self.attempt}
        if self.method is not None:
            out["method"] = self.method
        if self.exemplars_shown:
            out["exemplars_shown"] = [{"window": s.window, "tokens": list(s.tokens),
                                       "activations": list(s.activations)} for s in self.exemplars_shown]
        if self.raw_explanation is not None:
            out["raw_explanation"] = self.raw_explanation
        if self.conditions or self.raw_explanation is not None:
            out["conditions"] = list(self.conditions)
        if self.labels is not None:
            out["labels"] = list(self.labels)
        if self.modes or self.raw_explanation is not None:
            out["clusters"] = [m.to_dict() for m in self.modes]
        if self.statistics is not None:
            out["statistics"] = self.statistics
        if self.stats_candidates:
            out["stats_candidates"] = [c.to_json() for c in self.stats_candidates]
        if self.stats_raced:
            out["stats_raced"] = dict(self.stats_raced)
        if self.baseline_candidates:
            out["baseline_candidates"] = [c.to_json() for c in self.baseline_candidates]
        if self.statistical is not None:
            row = self.statistical
            out["statistical"] = {"explanation": row.explanation,  # tiers joined: what older readers show
                                  **({"explanations": list(row.explanations)} if len(row.explanations) > 1 else {}),
                                  "valid": row.valid, "test": row.test}
        if self.finals:
            out["finals"] = [{"explanation": f.explanation, "valid": f.valid, "test": f.test} for f in self.finals]
        if self.polysemantic is not None:
            out["polysemantic"] = self.polysemantic.to_dict()
        if self.lm_usage:
            out["lm_usage"] = dict(self.lm_usage)
        if self.cost is not None:
            out["cost"] = self.cost.to_dict()
        if self.failure is not None:
            out["failure"] = self.failure
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, d) -> "Trace":
        """Read a stored trace (any version up to :data:`TRACE_VERSION`); :class:`TraceError` names the first field
        of the wrong type."""
        if not isinstance(d, dict):
            raise TraceError(f"the trace must be an object, got {json_kind(d)}")
        version = _opt(d, "version", lambda v: _int(v) and v >= 1, "a whole number >= 1", "", 1)
        if version > TRACE_VERSION:
            raise TraceError(f"the trace is of version {version}, newer than this ns-dspy reads ({TRACE_VERSION}): "
                             "upgrade ns-dspy")
        shown = []
        for where, s in _objects(d, "exemplars_shown"):
            for key in ("tokens", "activations"):
                if key not in s:
                    raise TraceError(f'{where} needs "{key}"')
            shown.append(Shown(_list_of(s, "tokens", _str, "a string", where),
                               [float(a) for a in _list_of(s, "activations", _num, "a number", where)],
                               _opt(s, "window", _int, "an integer", where, -1)))
        statistical = d.get("statistical")
        if statistical is not None:
            s = _object(statistical, '"statistical"')
            texts = (_list_of(s, "explanations", _str, "a string", '"statistical"') if "explanations" in s
                     else [_opt(s, "explanation", _str, "a string", '"statistical"', "")])  # before tiers
            statistical = Statistical(texts, _opt(s, "valid", _num, "a number or null", '"statistical"'),
                                      _opt(s, "test", _num, "a number or null", '"statistical"'))
        finals = [Final(_opt(f, "explanation", _str, "a string", where, ""),
                        _opt(f, "valid", _num, "a number or null", where),
                        _opt(f, "test", _num, "a number or null", where)) for where, f in _objects(d, "finals")]
        poly = d.get("polysemantic")
        cost = d.get("cost")
        labels = d.get("labels")
        return cls(unit=_opt(d, "unit", _str, "a string", ""),
                   attempt=_opt(d, "attempt", lambda v: _int(v) and v >= 0, "a whole number >= 0", "", 0),
                   method=_opt(d, "method", _str, "a string", ""),
                   exemplars_shown=shown,
                   raw_explanation=_opt(d, "raw_explanation", _str, "a string", ""),
                   conditions=_list_of(d, "conditions", _str, "a string"),
                   labels=None if labels is None else _list_of(d, "labels", _int, "an integer"),
                   modes=[Mode.from_dict(m, where) for where, m in _objects(d, "clusters")],
                   statistics=_opt(d, "statistics", _str, "a string", ""),
                   stats_candidates=Candidate.list_from(d, "stats_candidates"),
                   stats_raced={k: int(v) for k, v in _opt(d, "stats_raced", lambda v: isinstance(v, dict) and all(
                       _int(x) for x in v.values()), "an object of whole numbers", "", {}).items()},
                   baseline_candidates=Candidate.list_from(d, "baseline_candidates"),
                   statistical=statistical, finals=finals,
                   polysemantic=None if poly is None else Scores.from_dict(poly, '"polysemantic"'),
                   lm_usage=dict(_opt(d, "lm_usage", lambda v: isinstance(v, dict), "an object", "", {})),
                   cost=None if cost is None else Cost.from_dict(cost),
                   failure=_opt(d, "failure", _str, "a string", ""),
                   version=TRACE_VERSION,
                   extra={k: v for k, v in d.items() if k not in _KNOWN})
