"""Held-out data and the score of explanations on it.

Explanations are *selected* on ``valid`` and *reported* on ``test``. :class:`HeldOut` is built only for those
two splits (train is what the explainer saw), carries its split, and every :class:`Score` says which split it
came from; :func:`select` accepts only valid data and :func:`report` only test data, so the two cannot be
swapped by accident.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import costs
from ..errors import ConfigError, ModelError
from ..simulators.base import Simulator
from ..types import Exemplar, UnitId
from . import calibration as _calibration
from .calibration import Calibration, calibrate, cross_fit_applies, cross_fitted, union
from .correlation import Correlation, pooled
from .polarity import is_negative, simulated_text

__all__ = ["HeldOut", "Score", "score", "select", "report", "polysemantic", "fit_calibration", "simulate",
           "check_explanations"]

HELD_OUT_SPLITS = ("valid", "test")


@dataclass(frozen=True, repr=False)
class HeldOut:
    """A unit's exemplars of one held-out split, top and random together. Its repr is one line (DSPy writes
    examples that carry it into logs and prompts)."""

    unit: UnitId
    split: str
    exemplars: tuple[Exemplar, ...]

    def __post_init__(self) -> None:
        if self.split not in HELD_OUT_SPLITS:
            raise ConfigError(f"explanations are scored on valid or test data, not {self.split!r}")
        if not self.exemplars:
            raise ConfigError(f"unit {self.unit} has no {self.split} exemplars to score on")

    @classmethod
    def from_store(cls, store, unit: UnitId, split: str, kinds: Sequence[str] = ("top", "random")) -> "HeldOut":
        exemplars = tuple(ex for kind in kinds for ex in store.exemplars(unit, split, kind))
        return cls(unit, split, exemplars)

    def __repr__(self) -> str:
        return f"<{len(self.exemplars)} {self.split} exemplars of {self.unit}>"

    @property
    def n_tokens(self) -> int:
        return sum(len(ex.tokens) for ex in self.exemplars)


@dataclass(frozen=True)
class Score:
    """An explanation's score on one held-out split: pooled r, with per-kind parts (top / random)."""

    explanation: str
    split: str
    correlation: Correlation
    predictions: tuple[np.ndarray, ...]
    calibration: Calibration | None = None
    """The calibration a neuron-level score used (:func:`polysemantic`; None for one explanation or the raw
    maximum): a valid score's calibration is what its test score reuses."""

    @property
    def value(self) -> float:
        return self.correlation.r

    @property
    def constant(self) -> bool:
        return self.correlation.constant

    @property
    def parts(self) -> dict[str, float]:
        return {k: c.r for k, c in self.correlation.parts.items()}


def check_explanations(explanations: Sequence[str]) -> None:
    """An empty (or blank) explanation says nothing to simulate: refused with :class:`ConfigError`; so is a
    negative marker with nothing after it (:mod:`ns_dspy.scoring.polarity`)."""
    for text in explanations:
        if isinstance(text, str) and not simulated_text(text).strip():
            what = "only the negative marker" if text.strip() else "blank" if text else "empty"
            raise ConfigError(f"the explanation to score is {what} ({text[:20]!r}): give "
                              "a text that says what the unit responds to, e.g. \"the word 'dog'\"")


def simulate(simulator: Simulator, explanations: Sequence[str], exemplars: Sequence[Exemplar]) -> list[list[np.ndarray]]:
    """``simulator.simulate`` for scoring, metered: its tokens and seconds count towards the current neuron's
    cost (:mod:`ns_dspy.costs`). A negative explanation (:mod:`ns_dspy.scoring.polarity`) is simulated without
    its marker and its prediction comes back negated."""
    start = time.perf_counter()
    preds = simulator.simulate([simulated_text(e) for e in explanations], list(exemplars))
    for i, row in enumerate(preds):
        for j, p in enumerate(row):
            if not np.all(np.isfinite(p)):
                raise ModelError(f"simulator {getattr(simulator, 'kind', type(simulator).__name__)} predicted a "
                                 f"non-finite activation (NaN or infinity) for explanation {i + 1}, exemplar "
                                 f"{j + 1}: it is broken (a simulator predicts 0..10); check its model or server")
    costs.simulated(len(explanations) * sum(len(ex.tokens) for ex in exemplars), time.perf_counter() - start)
    return [[-np.asarray(p) for p in row] if is_negative(text) else row for text, row in zip(explanations, preds)]


def score(simulator: Simulator, explanations: Sequence[str], heldout: HeldOut) -> list[Score]:
    """Score every explanation on ``heldout`` with one batched simulator call. An empty (or blank) explanation
    says nothing to simulate and is refused with :class:`ConfigError`."""
    check_explanations(explanations)
    preds = simulate(simulator, explanations, heldout.exemplars)
    trues = [ex.activations for ex in heldout.exemplars]
    kinds = [ex.kind for ex in heldout.exemplars]
    return [Score(e, heldout.split, pooled(p, trues, kinds), tuple(p)) for e, p in zip(explanations, preds)]


def select(simulator: Simulator, explanations: Sequence[str], valid: HeldOut) -> list[Score]:
    """Scores on validation data, best first: what refinement and optimizers select with."""
    if valid.split != "valid":
        raise ConfigError(f"selection uses valid data, got {valid.split!r}: test data is only for reporting")
    return sorted(score(simulator, explanations, valid), key=lambda s: -s.value)


def report(simulator: Simulator, explanation: str, test: HeldOut) -> Score:
    """The score to report for a chosen explanation, on test data only."""
    if test.split != "test":
        raise ConfigError(f"reported scores use test data, got {test.split!r}")
    return score(simulator, [explanation], test)[0]


def fit_calibration(simulator: Simulator, explanations: Sequence[str], valid: HeldOut,
                    preds: Sequence[Sequence[np.ndarray]] | None = None, kind: str | None = None) -> Calibration:
    """Each explanation's calibration (by default linear: ``truth ~ slope * prediction + intercept``, least
    squares over the pooled tokens of ``valid``; ``kind``: :func:`~ns_dspy.scoring.calibration.calibrate`'s),
    fitted on valid data only: test data is only for reporting. ``preds`` are the explanations' predictions on
    ``valid`` when already simulated."""
    if valid.split != "valid":
        raise ConfigError(f"calibration is fitted on valid data, got {valid.split!r}: test data is only for "
                          "reporting")
    check_explanations(explanations)
    if preds is None:
        preds = simulate(simulator, explanations, valid.exemplars)
    return calibrate(explanations, preds, [ex.activations for ex in valid.exemplars], valid.split, kind)


def polysemantic(simulator: Simulator, explanations: Sequence[str], heldout: HeldOut,
                 calibration: Calibration | HeldOut | None = None,
                 preds: Sequence[Sequence[np.ndarray]] | None = None, final_kind: str | None = None) -> Score:
    """The neuron-level score of several explanations (one per semantic mode): simulate each, take the
    per-token maximum (less the negative modes' deviations, :func:`~ns_dspy.scoring.calibration.union`),
    correlate with the truth. One number, comparable with a single explanation's score.

    ``calibration``: each explanation's predictions are first calibrated against the truth
    (:func:`fit_calibration`), so a weak explanation's false alarms do not outweigh a good one's correct
    zeros; give the unit's **valid** :class:`HeldOut` (fitted here: when it is ``heldout`` itself, with the
    same simulation and linear maps, as selection scores; for other data, maps of ``final_kind``, by default
    ``calibration.FINAL_KIND``: ``ExplainConfig.test_maps``)
    or a :class:`Calibration` fitted on it. ``None``: the raw maximum. A single explanation
    is never calibrated: its score is its own score either way. ``preds``: the explanations' predictions on
    ``heldout`` when the caller has them (e.g. from :func:`score`), instead of simulating them again."""
    if not explanations:
        raise ConfigError(f"no explanations to score for unit {heldout.unit}")
    if preds is None:
        preds = simulate(simulator, explanations, heldout.exemplars)
    elif len(preds) != len(explanations) or any(len(p) != len(heldout.exemplars) for p in preds):
        raise ValueError(f"predictions for {len(preds)} explanations on other exemplars given for "
                         f"{len(explanations)} explanations on {len(heldout.exemplars)} exemplars")
    in_sample = calibration is heldout
    if len(explanations) == 1:
        calibration = None
    elif isinstance(calibration, HeldOut):
        if calibration.unit != heldout.unit:
            raise ConfigError(f"calibration data of unit {calibration.unit} for unit {heldout.unit}")
        # in sample (selection on valid): the default kind; maps fitted on valid for other data: the final kind
        calibration = fit_calibration(simulator, explanations, calibration, preds if in_sample else None,
                                      kind=None if in_sample else (final_kind or _calibration.FINAL_KIND))
    elif calibration is not None:
        if calibration.split != "valid":
            raise ConfigError(f"a calibration fitted on {calibration.split!r} data: fit it on valid data")
        if tuple(calibration.explanations) != tuple(explanations):
            raise ConfigError("the calibration was fitted for other explanations: fit it for these")
    trues = [ex.activations for ex in heldout.exemplars]
    negative = [is_negative(e) for e in explanations]
    if in_sample and calibration is not None and cross_fit_applies(len(trues)):
        combined = cross_fitted(explanations, preds, trues, negative)
    else:
        combined = union(preds, calibration, negative=negative)
    label = " | ".join(explanations)
    return Score(label, heldout.split, pooled(combined, trues, [ex.kind for ex in heldout.exemplars]),
                 tuple(combined), calibration)
