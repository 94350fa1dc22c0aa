"""Stage 3: evolutionary refinement of one explanation against its score on validation data.

The loop of the paper's Section 2.4 with Appendix B's settings (5 iterations, 8 candidates): keep a history
of (explanation, valid score) ranked best first; each iteration asks the LM for ``candidates`` independent
proposals from that history, scores the new ones in one batched call and keeps the best. When no proposal
of an iteration can be used because the answers could not be parsed, one fresh sample is drawn (a rollout id
of this attempt of the neuron, never a cached answer; see :mod:`ns_dspy.agents.reliability`) before the
iteration counts as failed. The score function is injected: the program passes one that simulates on the
unit's VALID split (test data is for reporting only), e.g. ``valid_scorer(simulator, valid)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import dspy
from dspy.utils.exceptions import AdapterParseError

from ..errors import ConfigError
from ..types import Exemplar
from .errors import AgentError
from .evidence import token_evidence
from .formatting import clean_output, format_exemplars, format_history
from .reliability import check_budget, fresh_rollout
from .signatures import Refine

if TYPE_CHECKING:  # ns_dspy.simulators imports torch: keep it out of `import ns_dspy.agents`
    from ..scoring import HeldOut
    from ..simulators.base import Simulator

__all__ = ["RefinementAgent", "ScoreFn", "ValidScorer", "valid_scorer"]

log = logging.getLogger(__name__)

ScoreFn = Callable[[list[str]], Sequence[float]]
"""Scores explanations (one batched call; higher is better), e.g. pooled Pearson r on valid data."""

NO_EXEMPLARS = "(no excerpts given)"
NO_STATISTICS = "(no statistics given)"


class ValidScorer:
    """A score function over ``valid`` data: pooled Pearson r per explanation, in the order given, one batched
    simulator call per use (:func:`ns_dspy.scoring.select` refuses test data). It keeps each explanation's
    per-token predictions, so :meth:`feedback` can name the tokens it missed and its false alarms."""

    def __init__(self, simulator: "Simulator", valid: "HeldOut"):
        self.simulator, self.valid = simulator, valid
        self._scores: dict = {}

    def __call__(self, explanations: list[str]) -> list[float]:
        from ..scoring import select

        for s in select(self.simulator, explanations, self.valid):
            self._scores[s.explanation] = s
        return [self._scores[e].value for e in explanations]

    def feedback(self, explanation: str, n: int = 3) -> tuple[list[str], list[str]] | None:
        """(missed, false alarms): up to ``n`` valid tokens of each, in context; None if not scored here."""
        from ..scoring.metric import error_tokens

        result = self._scores.get(explanation)
        return None if result is None else error_tokens(result, self.valid.exemplars, n)


def valid_scorer(simulator: "Simulator", valid: "HeldOut") -> ValidScorer:
    """:class:`ValidScorer` of ``simulator`` on ``valid``."""
    return ValidScorer(simulator, valid)


def _key(text: str) -> str:
    """Explanations that differ only in case, spacing or final punctuation are the same explanation."""
    return " ".join(text.casefold().split()).rstrip(" .!?")


class RefinementAgent(dspy.Module):
    """``forward(seed, score, exemplars=None) -> Prediction(explanation, score, history, trajectory, ...)``.

    Args:
        candidates: proposals asked for per iteration (independent LM calls with distinct ``rollout_id``s
            at ``temperature``, so DSPy's cache cannot hand back one answer eight times). They are already
            independent samples, so one unparsable candidate costs no retry; when every candidate of an
            iteration failed and some could not be parsed, one fresh sample is drawn.
        iterations: most iterations.
        patience: stop after this many iterations in a row in which the best score rose by at most ``min_delta``.
        min_delta: the smallest rise that counts as an improvement.
        max_history: the best this many history entries are shown to the LM.
        max_exemplars: train exemplars shown as evidence when ``exemplars`` is given.
        feedback: under the best ``feedback_entries`` history entries, show the valid tokens each missed and
            its false alarms (from the score function's ``feedback``, when it has one); False is the paper's
            refinement, which sees scores only.
        statistics: show the token statistics of the train exemplars (when ``exemplars`` is given).

    The prediction holds ``explanation`` and ``score`` (the best), ``history`` (every scored
    ``(explanation, score)``, best first, the seed included), ``trajectory`` (``[0]`` the seed's score,
    ``[t]`` the best after iteration ``t``; it never decreases and has one entry per iteration that scored
    something), ``failures`` (LM calls that failed) and ``stopped`` (why the loop ended: ``iterations``,
    ``converged``, ``no_new_candidates`` or ``lm_failed``). An explanation already in the history (same text
    up to case, spacing and final punctuation) is never scored again. ``seeds`` given to :meth:`forward` join
    the history before the first iteration (e.g. the statistical explanation), so the result never scores
    below any of them on valid.
    """

    def __init__(self, *, candidates: int = 8, iterations: int = 5, patience: int = 1, min_delta: float = 1e-3,
                 temperature: float = 1.0, max_history: int = 16, max_exemplars: int = 10, feedback: bool = True,
                 feedback_entries: int = 3, statistics: bool = True):
        super().__init__()
        for name, value, least in (("candidates", candidates, 1), ("iterations", iterations, 0),
                                   ("patience", patience, 1), ("max_history", max_history, 1)):
            if value < least:
                raise ConfigError(f"refinement {name} must be at least {least}, got {value}")
        if min_delta < 0:
            raise ConfigError(f"refinement min_delta must be >= 0, got {min_delta}")
        self.candidates, self.iterations, self.patience, self.min_delta = candidates, iterations, patience, min_delta
        self.temperature, self.max_history, self.max_exemplars = temperature, max_history, max_exemplars
        self.feedback, self.feedback_entries, self.statistics = feedback, feedback_entries, statistics
        self.refine = dspy.Predict(Refine)

    @staticmethod
    def _scores(score: ScoreFn, explanations: list[str]) -> list[float]:
        values = [float(v) for v in score(list(explanations))]
        if len(values) != len(explanations) or not all(math.isfinite(v) for v in values):
            raise ValueError(f"the score function returned {values!r} for {len(explanations)} explanations: "
                             "it must return one finite number per explanation")
        return values

    def _shown_history(self, history: list[tuple[str, float]], score: ScoreFn) -> str:
        errors = getattr(score, "feedback", None) if self.feedback else None

        def notes(rank: int, text: str) -> list[str]:
            found = errors(text) if errors is not None and rank <= self.feedback_entries else None
            if not found:
                return []
            missed, false = found
            return ([f"missed: {'; '.join(missed)}"] if missed else []) + \
                ([f"false alarms: {'; '.join(false)}"] if false else [])

        return format_history(history, limit=self.max_history, notes=notes)

    def _propose(self, history: list[tuple[str, float]], evidence: str, statistics: str, iteration: int,
                 score: ScoreFn) -> tuple[list[str], int]:
        """Up to ``candidates`` proposals and the number of LM calls that failed."""
        shown = self._shown_history(history, score)
        proposals, failed, unparsed = [], 0, 0
        calls = [(k, iteration * self.candidates + k, self.temperature) for k in range(self.candidates)]
        for k, rollout, temperature in calls:
            check_budget("refinement")
            try:
                answer = self.refine(history=shown, exemplars=evidence, statistics=statistics,
                                     config={"rollout_id": rollout, "temperature": temperature})
                proposals.append(clean_output(answer.explanation))
            except Exception as err:  # one bad proposal is not fatal; the caller stops if all fail
                failed += 1
                unparsed += isinstance(err, AdapterParseError)
                log.warning("refinement candidate %d of iteration %d failed: %s", k + 1, iteration,
                            str(err).splitlines()[0] if str(err) else type(err).__name__)
            if k == self.candidates - 1 and not proposals and unparsed:  # all failed: one fresh sample
                calls.append((self.candidates, fresh_rollout(iteration * self.candidates), self.temperature or 1.0))
        return proposals, failed

    def forward(self, seed: str, score: ScoreFn, exemplars: Sequence[Exemplar] | None = None,
                seeds: Sequence[str] = ()) -> dspy.Prediction:
        seed = clean_output(seed)
        if not seed:
            raise AgentError("no seed explanation to refine")
        if exemplars and any(ex.split != "train" for ex in exemplars):
            raise AgentError("only train exemplars can be shown to the refinement agent: valid data selects and "
                             "test data is for reporting only")
        top = [ex for ex in exemplars or () if ex.kind != "random"]
        evidence = (format_exemplars(top, max_exemplars=self.max_exemplars)
                    if any(ex.max_activation > 0 for ex in top) else NO_EXEMPLARS)
        statistics = (token_evidence(top, [ex for ex in exemplars or () if ex.kind == "random"]).table()
                      if self.statistics and evidence != NO_EXEMPLARS else NO_STATISTICS)
        start = [seed]
        seen = {_key(seed)}
        for extra in (clean_output(e) for e in seeds):
            if extra and _key(extra) not in seen:
                seen.add(_key(extra))
                start.append(extra)
        history = sorted(zip(start, self._scores(score, start)), key=lambda item: -item[1])
        trajectory, failures, stale, stopped = [history[0][1]], 0, 0, "iterations"
        for iteration in range(1, self.iterations + 1):
            proposals, failed = self._propose(history, evidence, statistics, iteration, score)
            failures += failed
            if not proposals:
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
