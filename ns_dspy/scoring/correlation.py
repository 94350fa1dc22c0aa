"""The score's numeric core: pooled Pearson correlation, as pure functions of arrays.

The score of an explanation is the Pearson correlation between simulated and true activations pooled over
every token of every held-out exemplar (top and random together), not an average of per-exemplar
correlations. Constant predictions (or constant truth) have no correlation: the score is 0 with a flag,
never NaN. Non-finite input (NaN or infinity, in predictions or truth) has no correlation either and is refused
with a ValueError: it is a bug upstream (stores refuse non-finite activations, simulators predict 0..10).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Correlation", "pearson", "pooled"]


@dataclass(frozen=True)
class Correlation:
    """``r`` in [-1, 1]; ``constant`` is True when either side had no variance (then ``r`` is 0)."""

    r: float
    n: int
    constant: bool = False
    parts: dict[str, "Correlation"] = field(default_factory=dict, compare=False)

    def __float__(self) -> float:
        return self.r


def _finite(values: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"{what} {bad[0]} of {values.size} is {values[bad[0]]} ({bad.size} non-finite): "
                         "the correlation is defined on finite numbers only")


def pearson(pred: np.ndarray, true: np.ndarray) -> Correlation:
    """Pearson r of two equal-length 1-d arrays; 0 with ``constant=True`` when either is constant.

    Raises ValueError for arrays of different lengths or with a NaN or infinite value."""
    x = np.asarray(pred, dtype=np.float64).ravel()
    y = np.asarray(true, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"{x.size} predictions for {y.size} true activations")
    _finite(x, "prediction")
    _finite(y, "true activation")
    n = x.size
    if n < 2:
        return Correlation(0.0, n, constant=True)
    # both sides divided by one common scale: r is unchanged, and squares of huge values cannot overflow
    scale = max(np.abs(x).max(), np.abs(y).max(), 1e-300)
    x, y = x / scale, y / scale
    dx, dy = x - x.mean(), y - y.mean()
    sx, sy = np.sqrt(dx @ dx), np.sqrt(dy @ dy)
    if sx <= 1e-12 * np.sqrt(n) or sy <= 1e-12 * np.sqrt(n):
        return Correlation(0.0, n, constant=True)
    return Correlation(float(np.clip((dx @ dy) / (sx * sy), -1.0, 1.0)), n)


def pooled(preds: Sequence[np.ndarray], trues: Sequence[np.ndarray], groups: Sequence[str] | None = None) -> Correlation:
    """Correlation over all tokens of all pairs; with ``groups`` (one label per pair), also per group.

    Raises ValueError like :func:`pearson` (a pair of different lengths, a NaN or infinite value)."""
    if len(preds) != len(trues):
        raise ValueError(f"{len(preds)} predictions for {len(trues)} exemplars")
    if not preds:
        return Correlation(0.0, 0, constant=True)
    for j, (p, t) in enumerate(zip(preds, trues)):
        if np.size(p) != np.size(t):
            raise ValueError(f"exemplar {j}: {np.size(p)} predictions for {np.size(t)} true activations")
    total = pearson(np.concatenate(preds), np.concatenate(trues))
    if groups is None:
        return total
    parts = {g: pearson(np.concatenate([p for p, gg in zip(preds, groups) if gg == g]),
                        np.concatenate([t for t, gg in zip(trues, groups) if gg == g]))
             for g in dict.fromkeys(groups)}
    return Correlation(total.r, total.n, total.constant, parts)
