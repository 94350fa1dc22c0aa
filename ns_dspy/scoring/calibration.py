"""Calibration of several explanations' predictions before they are combined into one neuron-level prediction.

A polysemantic unit gets one explanation per semantic mode, and its neuron-level prediction is the per-token
maximum of the explanations' predictions (:func:`union`; explanations of the negative side, which pull the
prediction down, :mod:`ns_dspy.scoring.polarity`). Raw simulator predictions are all on the same 0..10
scale whatever the explanation's quality, so a weak explanation's false alarms (8/10 on tokens where the unit is
quiet) beat a good explanation's correct zeros there, and the union can score below its best member.

Bills et al. (2023) calibrate a simulation linearly against the truth. :func:`calibrate` does that per
explanation: a least-squares fit ``truth ~ slope * prediction + intercept`` over all tokens of the held-out
exemplars (pooled, top and random together, as the score pools them), fitted on **valid** data only. The
calibrated prediction estimates the unit's activation given what that explanation predicts, so an explanation
that predicts 8 where the unit averages 2 is shrunk to 2, and the maximum then compares like with like. An
explanation whose predictions do not rise with the truth on valid (slope <= 0, or constant predictions) says
nothing the unit confirms: it is left out of the maximum, so it cannot add false alarms (:attr:`Affine.informative`).

The fitted maps are applied unchanged to other data (test). Calibrated values are expressed on the 0..10 scale with
the valid truth's maximum at 10 (a positive factor, so no correlation changes) and stay comparable with raw
predictions in feedback. A single explanation is never calibrated: Pearson r is unchanged by a positive affine
map, and its score stays exactly the raw one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Affine", "Calibration", "calibrate", "fit_affine", "union"]


@dataclass(frozen=True)
class Affine:
    """``slope * prediction + intercept``; ``informative`` when the slope is positive."""

    slope: float
    intercept: float

    @property
    def informative(self) -> bool:
        return self.slope > 0

    def __call__(self, pred: np.ndarray) -> np.ndarray:
        return self.slope * np.asarray(pred, dtype=np.float64) + self.intercept


def fit_affine(preds: Sequence[np.ndarray], trues: Sequence[np.ndarray]) -> Affine:
    """Least squares ``true ~ slope * pred + intercept`` over all tokens of all exemplars (pooled).

    Constant predictions (no variance) or a slope <= 0 give ``Affine(0, mean truth)``: not informative."""
    if len(preds) != len(trues):
        raise ValueError(f"{len(preds)} predictions for {len(trues)} exemplars")
    x = np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in preds]) if preds else np.zeros(0)
    y = np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in trues]) if trues else np.zeros(0)
    if x.shape != y.shape:
        raise ValueError(f"{x.size} predictions for {y.size} true activations")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("calibration is defined on finite predictions and activations only")
    if x.size == 0:
        return Affine(0.0, 0.0)
    dx = x - x.mean()
    var = float(dx @ dx)
    scale = max(float(np.abs(x).max()), 1e-300)
    if var <= (1e-12 * scale) ** 2 * x.size:  # constant predictions (the tolerance of pearson)
        return Affine(0.0, float(y.mean()))
    slope = float(dx @ (y - y.mean())) / var
    if slope <= 0:
        return Affine(0.0, float(y.mean()))
    return Affine(slope, float(y.mean() - slope * x.mean()))


@dataclass(frozen=True)
class Calibration:
    """One :class:`Affine` per explanation (in order), fitted on ``split`` (valid) over ``n`` tokens; ``scale``
    expresses calibrated values on 0..10 (the fitted truth's maximum at 10)."""

    explanations: tuple[str, ...]
    maps: tuple[Affine, ...]
    split: str
    n: int
    scale: float = 1.0

    def __post_init__(self) -> None:
        if len(self.explanations) != len(self.maps):
            raise ValueError(f"{len(self.maps)} calibration maps for {len(self.explanations)} explanations")

    @property
    def informative(self) -> tuple[bool, ...]:
        return tuple(m.informative for m in self.maps)

    def to_dict(self) -> dict:
        return {"split": self.split, "n": self.n, "scale": self.scale,
                "maps": [{"explanation": e, "slope": m.slope, "intercept": m.intercept}
                         for e, m in zip(self.explanations, self.maps)]}


def calibrate(explanations: Sequence[str], preds: Sequence[Sequence[np.ndarray]], trues: Sequence[np.ndarray],
              split: str = "valid") -> Calibration:
    """Fit one :class:`Affine` per explanation: ``preds[i][j]`` is explanation ``i``'s prediction for exemplar
    ``j`` and ``trues[j]`` its true activations. The caller guarantees ``trues`` are fit data (valid), never
    the data the score is reported on."""
    if len(preds) != len(explanations):
        raise ValueError(f"predictions for {len(preds)} explanations, {len(explanations)} explanations")
    maps = tuple(fit_affine(p, trues) for p in preds)
    top = max((float(np.max(t)) for t in trues if np.size(t)), default=0.0)
    scale = 10.0 / top if top > 0 else 1.0
    return Calibration(tuple(explanations), maps, split, int(sum(np.size(t) for t in trues)), scale)


def union(preds: Sequence[Sequence[np.ndarray]], calibration: Calibration | None = None,
          negative: Sequence[bool] | None = None) -> list[np.ndarray]:
    """The neuron-level prediction of several explanations: ``preds[i][j]`` is explanation ``i``'s prediction
    for exemplar ``j``; one array per exemplar comes back.

    Positive explanations combine by the per-token maximum (the unit fires when any of its modes applies).
    ``negative[i]`` marks explanation ``i`` as one of the negative side (:mod:`ns_dspy.scoring.polarity`; its
    prediction is already negated, <= 0 where it applies, 0 elsewhere): the negative ones combine by the
    per-token minimum and are added, so they pull the prediction down where they apply and leave it alone
    elsewhere. Without ``negative`` every explanation is positive, or, with a calibration, as its explanations'
    texts say.

    Without ``calibration`` (or with a single explanation) the raw predictions; with it, the calibrated
    predictions of the informative explanations, a negative one's less its intercept (its calibrated deviation
    from the level where it does not apply; all zeros, a constant, when none is informative)."""
    from .polarity import is_negative

    if not preds:
        raise ValueError("no predictions to combine")
    n = len(preds[0])
    if negative is None:
        negative = [is_negative(e) for e in calibration.explanations] if calibration is not None else \
            [False] * len(preds)
    if len(negative) != len(preds):
        raise ValueError(f"{len(negative)} polarities for {len(preds)} predictions")
    raw = calibration is None or len(preds) == 1
    if raw and not any(negative):  # the raw maximum, in the predictions' own dtype
        return [np.max(np.stack([np.asarray(p[j]) for p in preds]), axis=0) for j in range(n)]
    if raw:
        maps, scale = [None] * len(preds), 1.0
    else:
        if len(calibration.maps) != len(preds):
            raise ValueError(f"a calibration of {len(calibration.maps)} explanations for {len(preds)} predictions")
        maps, scale = list(calibration.maps), calibration.scale

    def level(m: Affine | None, p: np.ndarray, negative: bool) -> np.ndarray:
        if m is None:
            return np.asarray(p, np.float64)
        return m(p) - m.intercept if negative else m(p)

    kept = [(m, p, neg) for m, p, neg in zip(maps, preds, negative) if m is None or m.informative]
    out = []
    for j in range(n):
        ups = [level(m, p[j], False) for m, p, neg in kept if not neg]
        downs = [level(m, p[j], True) for m, p, neg in kept if neg]
        combined = np.max(np.stack(ups), axis=0) if ups else np.zeros(np.shape(preds[0][j]), dtype=np.float64)
        if downs:
            combined = combined + np.min(np.stack(downs), axis=0)
        out.append(scale * combined)
    return out
