"""Stage 3: evolutionary refinement of one explanation against its score on validation data.

The loop of the paper's Section 2.4 with Appendix B's settings (5 iterations, 8 candidates): keep a history
of (explanation, valid score) ranked best first; each iteration asks the LM for ``candidates`` independent
proposals from that history, scores the new ones in one batched call and keeps the best. The score
function is injected: the program passes one that simulates on the unit's VALID split (test data is for
reporting only), e.g. ``valid_scorer(simulator, valid)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import dspy

from ..errors import ConfigError
from ..types import Exemplar
from .errors import AgentError
from .formatting import clean_output, format_exemplars, format_history
from .signatures import Refine

if TYPE_CHECKING:  # ns_dspy.simulators imports torch: keep it out of `import ns_dspy.agents`
    from ..scoring import HeldOut
    from ..simulators.base import Simulator

__all__ = ["RefinementAgent", "ScoreFn", "valid_scorer"]

log = logging.getLogger(__name__)

ScoreFn = Callable[[list[str]], Sequence[float]]
"""Scores explanations (one batched call; higher is better), e.g. pooled Pearson r on valid data."""

NO_EXEMPLARS = "(no excerpts given)"


def valid_scorer(simulator: "Simulator", valid: "HeldOut") -> ScoreFn:
    """A score function over ``valid`` data: pooled Pearson r per explanation, in the order given, one
    batched simulator call per use (:func:`ns_dspy.scoring.select` refuses test data)."""
    from ..scoring import select

    def score(explanations: list[str]) -> list[float]:
        values = {s.explanation: s.value for s in select(simulator, explanations, valid)}
        return [values[e] for e in explanations]

    return score


def _key(text: str) -> str:
    """Explanations that differ only in case, spacing or final punctuation are the same explanation."""
    return " ".join(text.casefold().split()).rstrip(" .!?")


class RefinementAgent(dspy.Module):
    """``forward(seed, score, exemplars=None) -> Prediction(explanation, score, history, trajectory, ...)``.

    Args:
        candidates: proposals asked for per iteration (independent LM calls with distinct ``rollout_id``s
            at ``temperature``, so DSPy's cache cannot hand back one answer eight times).
        iterations: most iterations.
        patience: stop after this many iterations in a row in which the best score rose by at most ``min_delta``.
        min_delta: the smallest rise that counts as an improvement.
        max_history: the best this many history entries are shown to the LM.
        max_exemplars: train exemplars shown as evidence when ``exemplars`` is given.

    The prediction holds ``explanation`` and ``score`` (the best), ``history`` (every scored
    ``(explanation, score)``, best first, the seed included), ``trajectory`` (``[0]`` the seed's score,
    ``[t]`` the best after iteration ``t``; it never decreases and has one entry per iteration that scored
    something), ``failures`` (LM calls that failed) and ``stopped`` (why the loop ended: ``iterations``,
    ``converged``, ``no_new_candidates`` or ``lm_failed``). An explanation already in the history (same text
    up to case, spacing and final punctuation) is never scored again.
    """

    def __init__(self, *, candidates: int = 8, iterations: int = 5, patience: int = 1, min_delta: float = 1e-3,
                 temperature: float = 1.0, max_history: int = 16, max_exemplars: int = 10):
        super().__init__()
        for name, value, least in (("candidates", candidates, 1), ("iterations", iterations, 0),
                                   ("patience", patience, 1), ("max_history", max_history, 1)):
            if value < least:
                raise ConfigError(f"refinement {name} must be at least {least}, got {value}")
        if min_delta < 0:
            raise ConfigError(f"refinement min_delta must be >= 0, got {min_delta}")
        self.candidates, self.iterations, self.patience, self.min_delta = candidates, iterations, patience, min_delta
        self.temperature, self.max_history, self.max_exemplars = temperature, max_history, max_exemplars
        self.refine = dspy.Predict(Refine)

    @staticmethod
    def _scores(score: ScoreFn, explanations: list[str]) -> list[float]:
        values = [float(v) for v in score(list(explanations))]
        if len(values) != len(explanations) or not all(math.isfinite(v) for v in values):
            raise ValueError(f"the score function returned {values!r} for {len(explanations)} explanations: "
                             "it must return one finite number per explanation")
        return values

    def _propose(self, history: list[tuple[str, float]], evidence: str, iteration: int) -> tuple[list[str], int]:
        """Up to ``candidates`` proposals and the number of LM calls that failed."""
        shown = format_history(history, limit=self.max_history)
        proposals, failed = [], 0
        for k in range(self.candidates):
            config = {"rollout_id": iteration * self.candidates + k, "temperature": self.temperature}
            try:
                answer = self.refine(history=shown, exemplars=evidence, config=config)
                proposals.append(clean_output(answer.explanation))
            except Exception as err:  # one bad proposal is not fatal; the caller stops if all fail
                failed += 1
                log.warning("refinement candidate %d of iteration %d failed: %s", k + 1, iteration,
                            str(err).splitlines()[0] if str(err) else type(err).__name__)
        return proposals, failed

    def forward(self, seed: str, score: ScoreFn, exemplars: Sequence[Exemplar] | None = None) -> dspy.Prediction:
        seed = clean_output(seed)
        if not seed:
            raise AgentError("no seed explanation to refine")
        if exemplars and any(ex.split == "test" for ex in exemplars):
            raise AgentError("test exemplars cannot be shown to the refinement agent: they are for reporting only")
        evidence = (format_exemplars(exemplars, max_exemplars=self.max_exemplars)
                    if exemplars and any(ex.max_activation > 0 for ex in exemplars) else NO_EXEMPLARS)
        history = [(seed, self._scores(score, [seed])[0])]
        seen = {_key(seed)}
        trajectory, failures, stale, stopped = [history[0][1]], 0, 0, "iterations"
        for iteration in range(1, self.iterations + 1):
            proposals, failed = self._propose(history, evidence, iteration)
            failures += failed
            if failed == self.candidates:
                stopped = "lm_failed"
                break
            new = []
            for text in proposals:
                if text and _key(text) not in seen:
                    seen.add(_key(text))
                    new.append(text)
            if not new:
                stopped = "no_new_candidates"
                break
            before = history[0][1]
            history = sorted(history + list(zip(new, self._scores(score, new))), key=lambda item: -item[1])
            trajectory.append(history[0][1])
            stale = 0 if history[0][1] > before + self.min_delta else stale + 1
            if stale >= self.patience:
                stopped = "converged"
                break
        best, best_score = history[0]
        return dspy.Prediction(explanation=best, score=best_score, history=history, trajectory=trajectory,
                               failures=failures, stopped=stopped)
