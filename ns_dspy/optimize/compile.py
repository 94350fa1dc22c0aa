"""Compiling NeuronScope with DSPy's own optimizers, chosen by name from a small registry.

``compile_program(program, optimizer="mipro", trainset=..., valset=..., metric=SimulatorMetric(sim))``
returns a compiled copy; the program passed in is not changed and nothing is kept between calls.

What is optimised: the predictors of the Hypothesis and Refinement agents, and the Decomposition agent's
with ``optimize_decomposition``. The others are frozen with DSPy's own mechanism: a sub-module whose
``_compiled`` flag is set is left out of ``named_parameters()`` / ``named_predictors()``, so no optimizer
sees it. The flags are set on a private copy only; the result is a fresh copy of the input program into
which the optimised predictors' state is loaded, so frozen predictors keep exactly the state they had and
the result has the input's structure (no optimizer attributes, the caller's simulator).

Every copy an optimizer makes of the program shares one simulator, behind a lock (a simulator holds a
model or a cache file: it is a client, like the LM, and is never duplicated).
"""

from __future__ import annotations

import copy
import inspect
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy
from dspy.utils.usage_tracker import UsageTracker

from ..errors import ConfigError
from ..registry import Registry
from ..simulators.base import LockedSimulator
from ..scoring import FeedbackMetric, SimulatorMetric, polysemantic

__all__ = ["OptimizerSpec", "OPTIMIZERS", "register", "optimizer_names", "parse_options", "check_options",
           "compile_program", "evaluate_program", "Evaluation", "SharedUsage", "TRAINABLE",
           "OPTIONAL_TRAINABLE", "trainable_modules"]

log = logging.getLogger(__name__)

TRAINABLE = ("hypothesis", "refinement")
"""Agents whose predictors are always optimised."""
OPTIONAL_TRAINABLE = ("decomposition",)
"""Agents optimised on request (``optimize_decomposition``)."""

_RESERVED = ("metric", "student", "trainset", "valset", "teacher", "reflection_lm", "prompt_model", "task_model")


# --- options --------------------------------------------------------------------------------------------------
def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``["num_trials=4", "auto=none"]`` -> ``{"num_trials": 4, "auto": None}`` (int, float, bool, None or str)."""
    from ..config import parse_key_values

    return parse_key_values(items, "--opt")


# --- the registry ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OptimizerSpec:
    """How one DSPy optimizer is driven.

    ``load`` returns the DSPy class; user options go to its ``__init__`` or ``compile`` by parameter name.
    ``defaults`` fill options the user did not give; ``fixed`` may not be changed (the user is told why);
    ``adjust(options, valset)`` derives options from others. ``feedback``: the optimizer takes GEPA's
    score-plus-feedback metric and a reflection LM.
    """

    name: str
    load: Callable[[], type]
    defaults: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    adjust: Callable[[dict, list], dict] | None = None
    feedback: bool = False

    def arguments(self, options: dict[str, Any], *, valset: list, num_threads: int) -> tuple[dict, dict]:
        """``(init kwargs, compile kwargs)`` for ``options``; unknown or reserved keys are refused. The valset
        goes to ``compile`` where it takes one (BootstrapFewShot selects on its trainset alone)."""
        cls = self.load()
        init_names = set(inspect.signature(cls.__init__).parameters) - {"self"}
        compile_names = set(inspect.signature(cls.compile).parameters) - {"self"}
        accepted = sorted((init_names | compile_names) - set(_RESERVED) - set(self.fixed))
        for key, value in options.items():
            if key in self.fixed and value != self.fixed[key]:
                raise ConfigError(f"{self.name}: {key} is fixed at {self.fixed[key]!r} (a neuron example has no "
                                  f"label to show as a demo); drop --opt {key}")
            if key not in accepted and key not in self.fixed:
                raise ConfigError(f"{self.name} has no option {key!r}: use one of {', '.join(accepted)}")
        merged = dict(options)
        if self.adjust:
            merged = self.adjust(merged, valset)
        merged = {**self.defaults, **merged, **self.fixed}
        if "num_threads" in init_names:
            merged.setdefault("num_threads", num_threads)
        init = {k: v for k, v in merged.items() if k in init_names}
        compile_kw = {k: v for k, v in merged.items() if k not in init}
        if "valset" in compile_names:
            compile_kw["valset"] = valset
        return init, compile_kw


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")


def register(spec: OptimizerSpec) -> OptimizerSpec:
    """Register ``spec`` under its name (a taken name is refused) and return it."""
    return OPTIMIZERS.add(spec.name, spec)


def optimizer_names() -> list[str]:
    return OPTIMIZERS.names()


def _best_steps() -> type:
    from .best_steps import BestSteps

    return BestSteps


def _mipro(options: dict, valset: list) -> dict:
    if "auto" not in options and {"num_trials", "num_candidates"} & options.keys():
        options["auto"] = None  # MIPROv2 refuses explicit trial counts next to an auto budget
    if "auto" in options and options["auto"] is None and not {"num_trials", "num_candidates"} <= options.keys():
        raise ConfigError("mipro without auto needs both --opt num_candidates=N and --opt num_trials=N")
    # minibatches only pay off on a large valset; MIPROv2 refuses one larger than the valset
    options.setdefault("minibatch", len(valset) > options.get("minibatch_size", 35))
    return options


def _gepa(options: dict, valset: list) -> dict:
    if "auto" not in options and {"max_full_evals", "max_metric_calls"} & options.keys():
        options["auto"] = None  # GEPA takes exactly one budget
    return options


_NO_LABELS = {"max_labeled_demos": 0}
register(OptimizerSpec("bootstrap", lambda: dspy.BootstrapFewShot, fixed=_NO_LABELS))
register(OptimizerSpec("bootstrap-rs", lambda: dspy.BootstrapFewShotWithRandomSearch, fixed=_NO_LABELS))
# data_aware_proposer off: an example holds token arrays, which a dataset summary would only paste raw
register(OptimizerSpec("mipro", lambda: dspy.MIPROv2, defaults={"auto": "light", "data_aware_proposer": False},
                       fixed=_NO_LABELS, adjust=_mipro))
# one demonstration per agent: the best well-formed step of the compile-train traces (see best_steps.py)
register(OptimizerSpec("best-steps", lambda: _best_steps()))
register(OptimizerSpec("gepa", lambda: dspy.GEPA, defaults={"auto": "light"}, adjust=_gepa, feedback=True))


# --- shared clients -------------------------------------------------------------------------------------------
def _share(simulator) -> LockedSimulator:
    """One lock for every copy of a program: simulators are never copied (``copy.deepcopy`` returns them)."""
    return simulator if isinstance(simulator, LockedSimulator) else LockedSimulator(simulator)


class SharedUsage(UsageTracker):
    """A DSPy usage tracker that worker threads share instead of copying, so every LM call made inside
    ``dspy.context(usage_tracker=tracker)`` is counted once, LM copies made by optimizers included."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()

    def __deepcopy__(self, memo) -> "SharedUsage":
        return self

    def add_usage(self, lm: str, usage_entry: dict[str, Any]) -> None:
        with self._lock:
            super().add_usage(lm, usage_entry)

    def tokens(self) -> int:
        totals = self.get_total_tokens().values()
        return int(sum((t.get("prompt_tokens") or 0) + (t.get("completion_tokens") or 0) for t in totals))


def _copy(program, simulator):
    """A deep copy of ``program`` using ``simulator``, with empty LM call histories (a module records every LM
    call made under it; an optimizer's copy need not carry them)."""
    memo = {id(program.simulator): simulator}
    for _, module in program.named_sub_modules():
        if isinstance(getattr(module, "history", None), list):
            memo[id(module.history)] = []
    return copy.deepcopy(program, memo)


def _prepared(program, metric: SimulatorMetric):
    """A copy of ``program`` and a simulator for the metric, sharing one lock when they share a simulator."""
    shared = _share(program.simulator)
    same = metric.simulator is program.simulator or metric.simulator is shared.inner
    return _copy(program, shared), (shared if same else _share(metric.simulator))


def trainable_modules(optimize_decomposition: bool = False) -> tuple[str, ...]:
    return TRAINABLE + (OPTIONAL_TRAINABLE if optimize_decomposition else ())


# --- compile and evaluate -------------------------------------------------------------------------------------
class _DemoGate:
    """DSPy's metric convention: the score when evaluating (``trace`` is None), and when bootstrapping a bool -
    keep this trace as a demo - true for a positive valid score at least ``threshold``."""

    def __init__(self, metric: SimulatorMetric, threshold: float | None):
        self.metric, self.threshold = metric, threshold

    def __call__(self, example, prediction, trace=None):
        value = self.metric(example, prediction)
        if trace is None:
            return value
        return value > 0 and (self.threshold is None or value >= self.threshold)


def check_options(optimizer: str, options: dict[str, Any] | None = None, *, reflection_lm=None) -> None:
    """Raise the one-line :class:`ConfigError` that :func:`compile_program` would raise for this optimizer,
    these options and this reflection LM (any non-None stand-in will do) - before any model is loaded."""
    _plan(optimizer, options, reflection_lm=reflection_lm, valset=[], num_threads=1)


def _plan(optimizer, options, *, reflection_lm, valset, num_threads):
    """The optimizer's spec, its ``__init__`` and ``compile`` arguments and the demo threshold."""
    spec = OPTIMIZERS.lookup(optimizer)
    options = dict(options or {})
    threshold = None if spec.feedback else options.pop("metric_threshold", None)
    init, compile_kw = spec.arguments(options, valset=valset, num_threads=num_threads)
    if spec.feedback:
        if reflection_lm is None:
            raise ConfigError(f"{spec.name} needs a reflection LM: pass --reflection-lm SPEC (e.g. the --lm spec)")
        init.update(reflection_lm=reflection_lm)
    return spec, init, compile_kw, threshold


def compile_program(program, *, optimizer: str, trainset: list, valset: list, metric: SimulatorMetric,
                    options: dict[str, Any] | None = None, reflection_lm=None, optimize_decomposition: bool = False,
                    num_threads: int = 1):
    """A compiled copy of ``program`` (a ``NeuronScope``), optimised on ``trainset``/``valset`` with the LM in
    ``dspy.settings``. ``metric`` is a :class:`SimulatorMetric`; GEPA gets a :class:`FeedbackMetric` on the
    same simulator and needs ``reflection_lm``. ``options`` go to the optimizer (see :class:`OptimizerSpec`);
    ``metric_threshold`` sets the valid score a bootstrapped trace needs to become a demo (default: any
    positive score)."""
    if not trainset or not valset:
        raise ConfigError("compiling needs at least one compile-train and one compile-val neuron")
    spec, init, compile_kw, threshold = _plan(optimizer, options, reflection_lm=reflection_lm, valset=valset,
                                              num_threads=num_threads)
    student, sim = _prepared(program, metric)
    if spec.feedback:
        scorer = FeedbackMetric(sim, getattr(metric, "n_tokens", 5))
    else:
        scorer = _DemoGate(SimulatorMetric(sim), threshold)

    trainable = trainable_modules(optimize_decomposition)
    frozen = [name for name, value in vars(student).items() if isinstance(value, dspy.Module) and name not in trainable]
    for name in frozen:
        getattr(student, name)._compiled = True  # DSPy leaves pre-compiled sub-modules out of named_predictors()
    names = [name for name, _ in student.named_predictors()]
    log.info("compiling with %s: optimising %s; frozen: %s", spec.name, ", ".join(names), ", ".join(frozen) or "-")
    try:
        teleprompter = spec.load()(metric=scorer, **init)
    except (ValueError, AssertionError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{spec.name} refused its options: {first}") from err
    optimized = teleprompter.compile(student, trainset=trainset, **compile_kw)
    state = optimized.dump_state()  # the optimised predictors only: frozen modules are still flagged
    result = _copy(program, program.simulator)
    params = dict(result.named_parameters())
    for name in names:
        params[name].load_state(state[name])
    return result


@dataclass
class Evaluation:
    """Scores per unit of one ``dspy.Evaluate`` run: ``scores`` the metric's (valid data), ``test_scores`` the
    same predictions scored on the test split where the example carries ``test``; a failed unit scores 0.0
    (DSPy's failure score) and is listed in ``failed``."""

    scores: dict[str, float]
    test_scores: dict[str, float]
    failed: list[str]

    @property
    def mean(self) -> float:
        return _mean(self.scores)

    @property
    def test_mean(self) -> float | None:
        return _mean(self.test_scores) if self.test_scores else None

    def to_dict(self) -> dict:
        return {"mean": self.mean, "scores": self.scores, "test_mean": self.test_mean,
                "test_scores": self.test_scores, "failed": self.failed}


def _mean(scores: dict[str, float]) -> float:
    return sum(scores.values()) / len(scores) if scores else 0.0


def evaluate_program(program, devset: list, metric: SimulatorMetric, *, num_threads: int = 1) -> Evaluation:
    """``dspy.Evaluate`` of ``program`` on ``devset`` with ``num_threads`` threads and the LM in ``dspy.settings``.
    Examples that carry a ``test`` HeldOut also get their predictions scored on it (no further LM call)."""
    student, sim = _prepared(program, metric)
    result = dspy.Evaluate(devset=devset, metric=SimulatorMetric(sim), num_threads=num_threads,
                           display_progress=False, display_table=False, max_errors=len(devset) + 1)(student)
    scores, test_scores, failed = {}, {}, []
    for example, prediction, score in result.results:
        scores[example.unit] = float(score)
        explanations = getattr(prediction, "explanations", None)
        if not explanations:
            failed.append(example.unit)
        if example.get("test") is not None:
            # the calibration the program fitted on valid, when it carries one; else fitted here on valid
            calibration = getattr(prediction, "calibration", None) or example.get("valid")
            test_scores[example.unit] = (polysemantic(sim, list(explanations), example.test,
                                                      calibration=calibration,
                                                      final_kind=program.config.test_maps).value
                                         if explanations else 0.0)
    return Evaluation(scores, test_scores, failed)
