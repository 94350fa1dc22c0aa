"""How far a score could move on other windows: a stratified bootstrap over a held-out split's exemplars.

A test score is the pooled Pearson r over some 45 windows of one neuron. When a few windows carry the neuron's
highest activations the number rests on them (on one evaluation neuron of gemma-3-270m two valid tokens of 13.4
and 8.0, against a train maximum of 2.4, carried a valid score of 0.6 whose test score was 0.03), and a reader of
a single score cannot tell. So a reported score comes with a percentile interval: the windows are resampled with
replacement within each kind (top, random: the split's own make-up), the pooled r recomputed per resample, and
the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles taken. Two explanations of the same neuron are compared
on the same resamples (a paired interval of their difference), which is far narrower than either interval alone:
it says whether one beats the other on this neuron beyond the luck of which windows were held out.

The windows, not the tokens, are resampled: tokens of one window are not independent draws. The interval
describes the held-out windows' sampling only - not the simulator's or the explainer's own randomness - and a
percentile interval of a correlation from ~45 clusters is approximate; ``tests/scoring/test_bootstrap.py``
measures its coverage on data of known correlation.

The pooled r is not a sum over exemplars, but its sufficient statistics are: each exemplar contributes (n, sum p,
sum t, sum p^2, sum t^2, sum p t), so a resample is a weighted sum of those rows and thousands of resamples cost
one matrix product (racing, :mod:`ns_dspy.scoring.racing`, uses the same rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Interval", "moments", "r_of", "stratified_weights", "interval", "difference_interval", "side", "sides",
           "bounds_text", "LEVEL"]

#: the level of the intervals the product reports
LEVEL = 0.9
#: resamples per interval: the quantiles' own Monte Carlo error is then about 0.005 for typical scores
RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval ``[low, high]`` at ``level``."""

    low: float
    high: float
    level: float = LEVEL

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"an interval needs low <= high, got [{self.low}, {self.high}]")

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def width(self) -> float:
        return self.high - self.low

    def to_list(self) -> list[float]:
        return [round(self.low, 4), round(self.high, 4)]

    @property
    def side(self) -> str:
        """Of a difference's interval: :func:`side`."""
        return side(self.low, self.high)

    def __str__(self) -> str:
        return f"[{self.low:.2f}, {self.high:.2f}]"


def side(low: float, high: float) -> str:
    """Where 0 lies from a difference's interval ``[low, high]``: ``above`` (the difference is above 0 beyond the
    interval), ``below``, or ``undecided`` (0 inside it)."""
    return "above" if low > 0 else "below" if high < 0 else "undecided"


def sides(pairs: Sequence[Sequence[float]]) -> dict[str, int]:
    """How many of the intervals ``[low, high]`` are above, below and undecided (:func:`side`), all three keys."""
    counts = {"above": 0, "below": 0, "undecided": 0}
    for low, high in pairs:
        counts[side(low, high)] += 1
    return counts


def bounds_text(pair: Sequence[float] | None) -> str:
    """A stored interval ``[low, high]`` as shown everywhere (``[0.21, 0.48]``); empty for none (run files from
    before intervals)."""
    return str(Interval(*pair)) if pair else ""


def moments(preds: Sequence[np.ndarray], trues: Sequence[np.ndarray]) -> np.ndarray:
    """Per exemplar ``[n, sum p, sum t, sum p^2, sum t^2, sum p t]`` (float64, shape ``(len, 6)``); predictions
    and truth are each divided by a common scale first, which leaves r unchanged."""
    scale_t = max((float(np.abs(t).max()) for t in trues if np.size(t)), default=1.0) or 1.0
    rows = []
    for p, t in zip(preds, trues):
        p = np.asarray(p, dtype=np.float64) / 10.0
        t = np.asarray(t, dtype=np.float64) / scale_t
        rows.append([p.size, p.sum(), t.sum(), p @ p, t @ t, p @ t])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def r_of(m: np.ndarray) -> np.ndarray:
    """Pearson r from summed moments (last axis of size 6); 0 where either side is constant."""
    n, sp, st, spp, stt, spt = np.moveaxis(m, -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        vp = spp - sp * sp / n
        vt = stt - st * st / n
        cov = spt - sp * st / n
        r = cov / np.sqrt(vp * vt)
    ok = (vp > 1e-12 * n) & (vt > 1e-12 * n)
    return np.where(ok, np.clip(np.nan_to_num(r), -1.0, 1.0), 0.0)


def stratified_weights(kinds: Sequence[str], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap weights ``(resamples, len(kinds))``: each kind resampled with replacement within itself."""
    w = np.zeros((resamples, len(kinds)))
    for kind in dict.fromkeys(kinds):
        idx = np.flatnonzero(np.asarray(kinds) == kind)
        w[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=resamples)
    return w


def _centred_moments(preds: Sequence[np.ndarray], trues: Sequence[np.ndarray]) -> np.ndarray:
    """:func:`moments` of predictions and truth less their pooled means (r unchanged; a calibrated prediction's
    offset cannot cost precision in the sums)."""
    if len(preds) != len(trues) or not preds:
        raise ValueError(f"{len(preds)} predictions for {len(trues)} exemplars: an interval needs both, paired")
    for j, (p, t) in enumerate(zip(preds, trues)):
        if np.size(p) != np.size(t):
            raise ValueError(f"exemplar {j}: {np.size(p)} predictions for {np.size(t)} true activations")
    mp = float(np.mean(np.concatenate([np.ravel(p) for p in preds])))
    mt = float(np.mean(np.concatenate([np.ravel(t) for t in trues])))
    return moments([np.asarray(p, dtype=np.float64) - mp for p in preds],
                   [np.asarray(t, dtype=np.float64) - mt for t in trues])


def _quantiles(values: np.ndarray, level: float) -> Interval:
    if not 0 < level < 1:
        raise ValueError(f"an interval's level is between 0 and 1, got {level}")
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(low), float(high), level)


def interval(preds: Sequence[np.ndarray], trues: Sequence[np.ndarray], kinds: Sequence[str], *,
             level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """The percentile bootstrap interval of the pooled r of ``preds`` against ``trues`` (one array per exemplar),
    the exemplars resampled within each of their ``kinds``. Deterministic for a ``seed``."""
    m = _centred_moments(preds, trues)
    if len(kinds) != len(m):
        raise ValueError(f"{len(kinds)} kinds for {len(m)} exemplars")
    w = stratified_weights(kinds, resamples, np.random.default_rng(seed))
    return _quantiles(r_of(w @ m), level)


def difference_interval(preds_a: Sequence[np.ndarray], preds_b: Sequence[np.ndarray], trues: Sequence[np.ndarray],
                        kinds: Sequence[str], *, level: float = LEVEL, resamples: int = RESAMPLES,
                        seed: int = 0) -> Interval:
    """The paired interval of ``r(a) - r(b)`` on the same exemplars: both recomputed on each resample."""
    a, b = _centred_moments(preds_a, trues), _centred_moments(preds_b, trues)
    if len(kinds) != len(a) or len(a) != len(b):
        raise ValueError(f"{len(kinds)} kinds for {len(a)} and {len(b)} exemplars")
    w = stratified_weights(kinds, resamples, np.random.default_rng(seed))
    return _quantiles(r_of(w @ a) - r_of(w @ b), level)
