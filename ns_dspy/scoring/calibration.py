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

A linear map cannot read a simulator whose values are not linear in the unit's activation: the default simulator
predicts a listed word at 9 or at 4 depending on how well it recalls it, while the unit is equally active on both,
so a straight line fitted through those values and the quiet tokens' zeros rates the 4s at half the level. With
``kind="monotone"`` each explanation's map is instead the **isotonic** (non-decreasing) least-squares fit of the
truth on its prediction (:class:`Monotone`, pool-adjacent-violators over the valid tokens; between the fitted
points it interpolates linearly and it is constant beyond them), which keeps only the order of the predictions:
more predicted never means less expected. An explanation is informative under either map only where its linear
slope is positive (its predictions rise with the truth) and the fitted map is not constant. :data:`KIND` is the
kind :func:`calibrate` fits when none is given: linear, what selection on valid scores sets with. Choosing
with monotone scores overfits valid (~45 excerpts: +0.07 on valid, -0.010 on test on 24 development neurons), while
the same choices scored on test with monotone maps refitted on all of valid gained +0.019 (16 of 24 up;
``experiments/calibration_kinds.py``): so a set's maps that test reuses are of :data:`FINAL_KIND`, "guarded":
monotone only where a 2-fold out-of-fold comparison on valid favours them over straight lines (:func:`guarded`;
unguarded, the two sharp-peaked neurons of ``ns-dspy demo`` lost 0.07 each on test).

The fitted maps are applied unchanged to other data (test). Calibrated values are expressed on the 0..10 scale with
the valid truth's maximum at 10 (a positive factor, so no correlation changes) and stay comparable with raw
predictions in feedback. A single explanation is never calibrated: Pearson r is unchanged by a positive affine
map, and its score stays exactly the raw one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import ExplainConfig

__all__ = ["Affine", "CROSS_FIT", "Calibration", "FINAL_KIND", "KIND", "KINDS", "Monotone", "calibrate",
           "cross_fit_applies", "cross_fitted", "fit_affine", "fit_monotone", "guarded", "union"]

#: the calibration kinds (:func:`calibrate`)
KINDS = ("linear", "monotone", "guarded")
#: the kind :func:`calibrate` fits by default: what selection scores sets with on valid
KIND = "linear"
#: the kind of the maps that a set's score on other data (test) reuses, fitted on all of valid
#: (``heldout.polysemantic`` with a valid :class:`HeldOut` as ``calibration``, the program's final calibration):
#: the default of ``ExplainConfig.test_maps``, written there once
FINAL_KIND = ExplainConfig.test_maps
#: whether a set scored on the data its calibration is fitted on (valid, in selection) is scored out of fold
#: (:func:`cross_fitted`) instead of in sample
CROSS_FIT = False


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
    return _fit_line(*_pooled_tokens(preds, trues))


def _pooled_tokens(preds: Sequence[np.ndarray], trues: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All tokens' predictions and true activations, pooled over the exemplars (float64), checked: as many of
    each, finite."""
    if len(preds) != len(trues):
        raise ValueError(f"{len(preds)} predictions for {len(trues)} exemplars")
    x = np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in preds]) if preds else np.zeros(0)
    y = np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in trues]) if trues else np.zeros(0)
    if x.shape != y.shape:
        raise ValueError(f"{x.size} predictions for {y.size} true activations")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("calibration is defined on finite predictions and activations only")
    return x, y


def _fit_line(x: np.ndarray, y: np.ndarray) -> Affine:
    """:func:`fit_affine` on pooled tokens."""
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
class Monotone:
    """A non-decreasing map of a prediction, through the points ``(xs[i], ys[i])`` (``xs`` increasing): linear
    between them, ``ys[0]`` below ``xs[0]`` and ``ys[-1]`` above ``xs[-1]``. ``informative`` as set by
    :func:`fit_monotone`; ``intercept`` is the value at a prediction of 0 (where a negative explanation does not
    apply, as an :class:`Affine`'s intercept is)."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]
    informative: bool = True

    def __post_init__(self) -> None:
        if len(self.xs) != len(self.ys) or not self.xs:
            raise ValueError(f"a monotone map needs as many values as points, at least one: {len(self.xs)} points, "
                             f"{len(self.ys)} values")
        if any(b < a for a, b in zip(self.xs, self.xs[1:])) or any(b < a for a, b in zip(self.ys, self.ys[1:])):
            raise ValueError("a monotone map's points and values must be non-decreasing")

    def __call__(self, pred: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(pred, dtype=np.float64), self.xs, self.ys)

    @property
    def intercept(self) -> float:
        return float(self(np.zeros(1))[0])


def fit_monotone(preds: Sequence[np.ndarray], trues: Sequence[np.ndarray]) -> Monotone:
    """The isotonic least-squares fit ``true ~ m(pred)``, ``m`` non-decreasing, over all tokens of all exemplars
    (pooled; equal predictions pooled first). Informative when :func:`fit_affine`'s slope is positive and the fit
    is not constant; otherwise the constant mean truth, not informative."""
    x, y = _pooled_tokens(preds, trues)
    if not _fit_line(x, y).informative:
        return Monotone((0.0,), (float(y.mean()) if y.size else 0.0,), informative=False)
    from sklearn.isotonic import IsotonicRegression

    fit = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(x, y)
    xs, ys = np.asarray(fit.X_thresholds_, np.float64), np.maximum.accumulate(np.asarray(fit.y_thresholds_, np.float64))
    if ys[-1] - ys[0] <= 1e-12 * max(1.0, float(np.abs(ys).max())):
        return Monotone((0.0,), (float(y.mean()),), informative=False)
    return Monotone(tuple(float(v) for v in xs), tuple(float(v) for v in ys))


@dataclass(frozen=True)
class Calibration:
    """One map per explanation (in order: :class:`Affine` or :class:`Monotone`), fitted on ``split`` (valid) over
    ``n`` tokens; ``scale`` expresses calibrated values on 0..10 (the fitted truth's maximum at 10)."""

    explanations: tuple[str, ...]
    maps: tuple["Affine | Monotone", ...]
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
                "maps": [{"explanation": e, "slope": m.slope, "intercept": m.intercept} if isinstance(m, Affine) else
                         {"explanation": e, "points": list(m.xs), "values": list(m.ys), "informative": m.informative}
                         for e, m in zip(self.explanations, self.maps)]}


def calibrate(explanations: Sequence[str], preds: Sequence[Sequence[np.ndarray]], trues: Sequence[np.ndarray],
              split: str = "valid", kind: str | None = None) -> Calibration:
    """Fit one map per explanation: ``preds[i][j]`` is explanation ``i``'s prediction for exemplar ``j`` and
    ``trues[j]`` its true activations; ``kind`` "linear" (:class:`Affine`), "monotone" (:class:`Monotone`) or
    "guarded" (:func:`guarded`: the monotone maps where they score better out of fold, else the linear ones), by
    default :data:`KIND`. The caller guarantees ``trues`` are fit data (valid), never the data the score is
    reported on."""
    if len(preds) != len(explanations):
        raise ValueError(f"predictions for {len(preds)} explanations, {len(explanations)} explanations")
    kind = KIND if kind is None else kind
    if kind not in KINDS:
        raise ValueError(f"unknown calibration kind {kind!r}: one of {', '.join(KINDS)}")
    if kind == "guarded":
        return guarded(explanations, preds, trues, split)
    fit = fit_affine if kind == "linear" else fit_monotone
    maps = tuple(fit(p, trues) for p in preds)
    return Calibration(tuple(explanations), maps, split, int(sum(np.size(t) for t in trues)), _scale(trues))


def _scale(trues: Sequence[np.ndarray]) -> float:
    """The factor that puts calibrated values on 0..10: the truth's maximum at 10 (1 without a positive one)."""
    top = max((float(np.max(t)) for t in trues if np.size(t)), default=0.0)
    return 10.0 / top if top > 0 else 1.0


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

    def level(m: "Affine | Monotone | None", p: np.ndarray, negative: bool) -> np.ndarray:
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


def cross_fit_applies(n: int) -> bool:
    """Whether a set scored in sample on ``n`` exemplars is scored out of fold (:data:`CROSS_FIT`, 4+ exemplars)."""
    return CROSS_FIT and n >= 4


def guarded(explanations: Sequence[str], preds: Sequence[Sequence[np.ndarray]], trues: Sequence[np.ndarray],
            split: str = "valid", folds: int = 2) -> Calibration:
    """The monotone maps of a set (:func:`calibrate` ``kind="monotone"``) where they generalise better than the
    linear ones on the fit data itself, else the linear maps: each kind's :func:`cross_fitted` union (``folds``
    folds of the exemplars) is correlated with the truth, and monotone maps are taken only when theirs is strictly
    higher. An isotonic map follows the fit data's rarest, highest tokens (a neuron with a sharp peak: its top few
    valid tokens set the top step), which new data need not repeat; the out-of-fold comparison keeps the straight
    line there. A single explanation, or fewer exemplars than twice the folds: the linear maps."""
    from .correlation import pooled
    from .polarity import is_negative

    linear = calibrate(explanations, preds, trues, split, kind="linear")
    if len(explanations) < 2 or len(trues) < 2 * folds:
        return linear
    negative = [is_negative(e) for e in explanations]
    scores = {kind: pooled(cross_fitted(explanations, preds, trues, negative, folds, kind=kind), trues).r
              for kind in ("linear", "monotone")}
    if scores["monotone"] > scores["linear"]:
        return calibrate(explanations, preds, trues, split, kind="monotone")
    return linear


def cross_fitted(explanations: Sequence[str], preds: Sequence[Sequence[np.ndarray]], trues: Sequence[np.ndarray],
                 negative: Sequence[bool] | None = None, folds: int = 2, kind: str | None = None) -> list[np.ndarray]:
    """:func:`union` of calibrated predictions, each exemplar's calibrated by maps fitted on the other folds only
    (exemplar ``j`` in fold ``j % folds``; ``kind``: :func:`calibrate`'s): an out-of-sample estimate of how the
    set scores once its calibration is fitted, for scoring a set on the data that calibration would be fitted on.
    A flexible map (a monotone one) fits its own data better than new data, which would favour sets of many
    members over single explanations (never calibrated) and over each other by their number of fitted values."""
    n = len(trues)
    if n < folds:
        raise ValueError(f"{n} exemplars cannot be split into {folds} folds")
    out: list[np.ndarray | None] = [None] * n
    scale = _scale(trues)  # of the whole data, so that every fold's values are on one 0..10 scale
    for f in range(folds):
        fit = [j for j in range(n) if j % folds != f]
        held = [j for j in range(n) if j % folds == f]
        maps = calibrate(explanations, [[p[j] for j in fit] for p in preds], [trues[j] for j in fit], kind=kind)
        maps = Calibration(maps.explanations, maps.maps, maps.split, maps.n, scale)
        for j, value in zip(held, union([[p[j] for j in held] for p in preds], maps, negative)):
            out[j] = value
    return out  # type: ignore[return-value]
