"""Racing: score candidate explanations on growing shares of the valid data and drop the clear losers early.

Refinement scores every candidate on every valid exemplar, which is most of its simulation cost. A race scores
all candidates on a small share of the valid exemplars first, then only the ones that may still win on a larger
share, and only the survivors on all of them (successive stages, as in racing algorithms for model selection).

Which exemplars come first matters more than how many: the pooled Pearson r is dominated by the tokens where
the neuron fires hardest, and a share of randomly drawn windows often holds none of a unit's highest peaks, so
an explanation that catches them looks no better than one that does not (measured: on 12 tuning neurons a
random first stage of 6 of 45 windows lost 0.011 of valid score per neuron against exhaustive scoring; ordered
by peak, 0.0001). So each stage takes the windows with the highest true peaks of each kind (top, random), the
kinds interleaved in proportion (:func:`stage_order`): the share that weighs most in the full score is judged
first. A candidate is dropped at a stage when a paired, stratified bootstrap over that stage's exemplars says
it beats the stage's leader by more than ``epsilon`` with probability below ``delta``; the leader is the best
of the candidates and the reference (the incumbent best explanation, already scored on all valid data). With
``s`` stages before the full set, the explanation chosen is within ``epsilon`` of the one exhaustive scoring
would choose with probability about ``1 - s * delta`` by the bootstraps' own estimate (a Bonferroni sum over
dependent comparisons, so loose; not an exact bound: the peak-first stages are not random samples). What was
measured instead is in ``benchmarks/README.md`` (``benchmarks/refine_cost.py``).

The bootstraps resample per-exemplar moment rows (:mod:`ns_dspy.scoring.bootstrap`, which the reported intervals
share), so thousands of resamples cost a matrix product.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .bootstrap import moments, r_of as _r, stratified_weights as _weights

__all__ = ["Racing", "stage_order", "beat_probability", "moments", "informative"]


@dataclass(frozen=True)
class Racing:
    """How a race is run.

    Args:
        stages: shares of the valid exemplars scored before the full set, increasing, each in (0, 1).
        delta: a candidate is dropped when its bootstrap probability of beating the leader by more than
            ``epsilon`` is below this.
        epsilon: the indifference zone: a candidate that can beat the leader by at most this much is not worth
            scoring further (the race then picks an explanation within ``epsilon`` of the best, with probability
            about ``1 - stages * delta``).
        min_exemplars: a stage with fewer valid exemplars is skipped: on a handful of windows a bootstrap
            cannot see what it has not sampled (a cue that occurs in none of them), and is overconfident.
        resamples: bootstrap resamples per comparison.
        seed: seeds the exemplar order and the resamples (a race is deterministic).
        order: ``peaks`` (each kind's windows with the highest true peaks first) or ``random`` (a seeded random
            order within each kind: the first rule, kept to measure the difference).
    """

    stages: tuple[float, ...] = (0.125, 0.25, 0.5, 0.75)
    delta: float = 0.1
    epsilon: float = 0.005
    min_exemplars: int = 5
    resamples: int = 400
    seed: int = 0
    order: str = "peaks"

    def __post_init__(self) -> None:
        stages = tuple(float(s) for s in self.stages)
        if any(not 0.0 < s < 1.0 for s in stages) or list(stages) != sorted(set(stages)):
            raise ConfigError(f"racing stages must be increasing shares in (0, 1), got {self.stages!r}")
        if not 0.0 < self.delta < 0.5:
            raise ConfigError(f"racing delta must be in (0, 0.5), got {self.delta}")
        if not 0.0 <= self.epsilon < 1.0:
            raise ConfigError(f"racing epsilon must be in [0, 1), got {self.epsilon}")
        if self.min_exemplars < 2:
            raise ConfigError(f"racing min_exemplars must be at least 2, got {self.min_exemplars}")
        if self.order not in ("peaks", "random"):
            raise ConfigError(f"racing order must be 'peaks' or 'random', got {self.order!r}")
        if self.resamples < 50:
            raise ConfigError(f"racing needs at least 50 bootstrap resamples, got {self.resamples}")
        object.__setattr__(self, "stages", stages)

    def sizes(self, n: int) -> list[int]:
        """Exemplars scored at each stage, the last being all ``n``; stages too small to judge (under
        ``min_exemplars``) or no smaller than the next are skipped."""
        out: list[int] = []
        for share in self.stages:
            k = int(math.ceil(share * n))
            if self.min_exemplars <= k < n and (not out or k > out[-1]):
                out.append(k)
        return out + [n]


def stage_order(kinds: Sequence[str], seed: int = 0, peaks: Sequence[float] | None = None) -> list[int]:
    """A permutation of the exemplar indices such that every prefix holds each kind (top, random) in about its
    share of the whole, the kinds interleaved by their rank / count. Within a kind, exemplars come in order of
    ``peaks`` (each exemplar's largest true activation; highest first, ties in a seeded random order) when
    given, else in a seeded random order."""
    rng = np.random.default_rng(seed)
    keyed = []
    for kind in dict.fromkeys(kinds):
        members = [i for i, k in enumerate(kinds) if k == kind]
        members = [members[j] for j in rng.permutation(len(members))]
        if peaks is not None:
            members.sort(key=lambda i: -float(peaks[i]))  # stable: ties keep the seeded order
        keyed += [((r + 0.5) / len(members), kind, i) for r, i in enumerate(members)]
    return [i for _, _, i in sorted(keyed)]


def informative(m: np.ndarray) -> bool:
    """Whether predictions with these :func:`moments` vary at all over the exemplars: an explanation that predicts
    the same value on every token of a stage (its cue occurs in none of them) says nothing there and cannot be
    judged on it."""
    n, sp, _, spp, _, _ = m.sum(axis=0)
    return bool(spp - sp * sp / n > 1e-9 * n)


def beat_probability(candidate: np.ndarray, leaders: Sequence[np.ndarray], kinds: Sequence[str], *,
                     margin: float = 0.0, resamples: int = 400, seed: int = 0) -> float:
    """The bootstrap probability that ``candidate`` scores above every one of ``leaders`` by more than
    ``margin`` (each a :func:`moments` array over the same exemplars, in the same order), with the exemplars
    resampled within each kind and the same resample for all (a paired comparison). Ties count half."""
    w = _weights(kinds, resamples, np.random.default_rng(seed))
    mine = _r(w @ candidate) - margin
    best = np.max(np.stack([_r(w @ m) for m in leaders]), axis=0)
    return float(np.mean((mine > best) + 0.5 * (mine == best)))
