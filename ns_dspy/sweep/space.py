"""The search space of a sweep: which settings vary, over which ranges, checked before any trial runs.

A parameter is named after the setting it sets: an :class:`~ns_dspy.program.ExplainConfig` field
(``iterations``, ``candidates``, ...), ``cluster.FIELD`` for a :class:`~ns_dspy.agents.ClusterConfig` field
(``cluster.min_cluster_size``, ``cluster.metric`` - the distance, ...), or ``temperature`` (the explainer LM's).
These are the optuna parameter names too, as the dashboard shows them.

A space file (JSON, TOML or YAML) lists the swept parameters; everything else keeps the sweep's base
configuration. ``cluster`` is a table of ClusterConfig parameters. A range is ``{low, high}`` with optional
``step`` and ``log``; a set of values is ``{choices: [...]}`` or just a list::

    iterations = { low = 1, high = 5 }
    candidates = { low = 2, high = 8, step = 2 }
    temperature = [0.3, 0.7, 1.0]
    [cluster]
    min_cluster_size = { low = 2, high = 6 }
    cluster_selection_epsilon = { low = 0.0, high = 0.5 }
    metric = ["euclidean", "cosine"]

Every end of every range and every choice is checked by building the configuration it gives, so a value the
program would refuse is refused here, in one line, before a trial runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["Param", "SearchSpace", "DEFAULT_SPACE", "load_space", "default_space", "apply_params"]

TEMPERATURE_RANGE = (0.0, 2.0)

DEFAULT_SPACE: dict[str, Any] = {
    "cluster": {
        "min_cluster_size": {"low": 2, "high": 6},
        "min_samples": {"low": 1, "high": 4},
        "cluster_selection_epsilon": {"low": 0.0, "high": 0.5},
        "cluster_selection_method": {"choices": ["eom", "leaf"]},
        "metric": {"choices": ["euclidean", "cosine"]},
    },
    "iterations": {"low": 1, "high": 5},
    "candidates": {"low": 2, "high": 8, "step": 2},
    "temperature": {"choices": [0.3, 0.7, 1.0]},
}
"""The default space: HDBSCAN's settings and the distance, refinement iterations and candidates (the paper
used 5 and 8) and the explainer LM's temperature. The temperature takes a few values, not a range: the LM
work (hypotheses, decompositions) is cached per temperature, so each value is paid for once and every later
trial at that value reuses it; a continuous range would make every trial pay again."""

_REFINE_ONLY = ("iterations", "candidates", "patience", "min_delta")


def _fields(cls) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.init and f.default is not dataclasses.MISSING}


def _targets() -> dict[str, type]:
    """Every sweepable parameter name and the type of its setting."""
    from ..agents import ClusterConfig
    from ..program import ExplainConfig

    names = {name: type(default) for name, default in _fields(ExplainConfig).items()}
    names.update({f"cluster.{name}": type(default) for name, default in _fields(ClusterConfig).items()})
    names["temperature"] = float
    return names


def _number(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, int) if kind is int else isinstance(value, (int, float)) if kind is float else False


@dataclass(frozen=True)
class Param:
    """One swept setting: a range ``low..high`` (``step``, ``log``) of an int or float, or ``choices``."""

    name: str
    kind: type
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def values_to_check(self) -> list[Any]:
        return list(self.choices) if self.choices else [self.low, self.high]

    def to_dict(self) -> dict[str, Any]:
        if self.choices:
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        return out


def _param(name: str, spec: Any, kind: type, where: str) -> Param:
    bad = f"{where}: {name}"
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{bad} must be a range {{low, high}} or a list of choices, got {spec!r}")
    unknown = sorted(set(spec) - {"low", "high", "step", "log", "choices"})
    if unknown:
        raise ConfigError(f"{bad}: unknown key {unknown[0]!r}; a parameter takes low, high, step, log or choices")
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise ConfigError(f"{bad}: give either choices or a range (low, high), not both")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{bad}: choices must be a non-empty list")
        for value in choices:
            if not (_number(value, kind) or (kind in (str, bool) and type(value) is kind)):
                raise ConfigError(f"{bad}: choice {value!r} is not a {kind.__name__}")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{bad}: choices repeat a value")
        return Param(name, kind, choices=tuple(float(v) if kind is float else v for v in choices))
    if kind not in (int, float):
        raise ConfigError(f"{bad} is a {kind.__name__} setting: give choices, e.g. {name} = [...]")
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{bad}: a range needs both low and high")
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
    for label, value in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
        if not _number(value, kind) or not math.isfinite(value):
            raise ConfigError(f"{bad}: {label} must be a finite {kind.__name__}, got {value!r}")
    if not isinstance(log, bool):
        raise ConfigError(f"{bad}: log must be true or false, got {log!r}")
    if low > high:
        raise ConfigError(f"{bad}: invalid range, low {low} is above high {high}")
    if step is not None:
        if step <= 0:
            raise ConfigError(f"{bad}: step must be positive, got {step}")
        if log:
            raise ConfigError(f"{bad}: use either step or log, not both")
        ratio = (high - low) / step
        if abs(ratio - round(ratio)) > 1e-9:
            raise ConfigError(f"{bad}: high - low ({high - low:g}) must be a multiple of step {step}")
    if log and low <= 0:
        raise ConfigError(f"{bad}: a log range needs low > 0, got {low}")
    if kind is float:
        low, high, step = float(low), float(high), None if step is None else float(step)
    return Param(name, kind, low=low, high=high, step=step, log=log)


class SearchSpace:
    """The swept parameters, in a fixed order. :meth:`suggest` draws one configuration from a trial."""

    def __init__(self, params: list[Param], source: str = "default"):
        self.params, self.source = list(params), source

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def suggest(self, trial) -> dict[str, Any]:
        return {p.name: p.suggest(trial) for p in self.params}

    def to_dict(self) -> dict[str, Any]:
        """The space in the file's nested form (``cluster`` a table)."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name.startswith("cluster."):
                out.setdefault("cluster", {})[p.name.split(".", 1)[1]] = p.to_dict()
            else:
                out[p.name] = p.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "space") -> "SearchSpace":
        targets = _targets()
        flat: list[tuple[str, Any]] = []
        for key, spec in data.items():
            if key == "cluster":
                if not isinstance(spec, dict):
                    raise ConfigError(f"{where}: cluster must be a table of ClusterConfig parameters")
                flat += [(f"cluster.{name}", value) for name, value in spec.items()]
            else:
                flat.append((key, spec))
        params = []
        for name, spec in flat:
            if name not in targets or name in ("cluster", "baseline"):
                known = ", ".join(sorted(n for n in targets if n not in ("cluster", "baseline")))
                raise ConfigError(f"{where}: unknown parameter {name!r}; sweepable: {known}")
            params.append(_param(name, spec, targets[name], where))
        if not params:
            raise ConfigError(f"{where}: the space is empty: name at least one parameter to sweep")
        return cls(params, where)

    def check(self, base, temperature: float) -> None:
        """Refuse values the program would refuse, and parameters that cannot change anything given ``base``."""
        if base.baseline:
            raise ConfigError("ns-dspy sweep tunes NeuronScope's clustering and refinement; the single-pass "
                              "--baseline has neither: drop --baseline")
        if not base.refine and "refine" not in self:
            inert = [n for n in self.names if n in _REFINE_ONLY]
            if inert:
                raise ConfigError(f"{self.source}: {inert[0]} has no effect with --no-refine: remove it from the "
                                  "space or sweep with refinement")
        for p in self.params:
            for value in p.values_to_check():
                if p.name == "temperature" and not TEMPERATURE_RANGE[0] <= value <= TEMPERATURE_RANGE[1]:
                    raise ConfigError(f"{self.source}: temperature {value} is outside "
                                      f"[{TEMPERATURE_RANGE[0]:g}, {TEMPERATURE_RANGE[1]:g}]")
                try:
                    apply_params(base, temperature, {p.name: value})
                except ConfigError as err:
                    raise ConfigError(f"{self.source}: {p.name} = {value!r} is invalid ({err})") from None


def default_space(base) -> SearchSpace:
    """:data:`DEFAULT_SPACE`, less the refinement parameters when ``base`` does not refine."""
    data = {k: v for k, v in DEFAULT_SPACE.items() if base.refine or k not in _REFINE_ONLY}
    return SearchSpace.from_dict(data, "default space")


def load_space(path: str | Path | None, base) -> SearchSpace:
    """The space in ``path`` (JSON, TOML or YAML), or the default one; checked against ``base``."""
    if path is None:
        return default_space(base)
    from ..config import read_mapping

    return SearchSpace.from_dict(read_mapping(path, "space file"), f"space {path}")


def apply_params(base, temperature: float, params: dict[str, Any]):
    """``(ExplainConfig, temperature)``: ``base`` with ``params`` set; validated by the dataclasses."""
    cluster = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("cluster.")}
    explain = {k: v for k, v in params.items() if not k.startswith("cluster.") and k != "temperature"}
    config = dataclasses.replace(base, **explain, cluster=dataclasses.replace(base.cluster, **cluster))
    return config, float(params.get("temperature", temperature))
