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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dspy
from dspy.utils.exceptions import AdapterParseError

from ..errors import ConfigError
from ..types import Exemplar
from .errors import AgentError
from .evidence import token_evidence
from .formatting import clean_output, drop_task_talk, format_exemplars, format_history, leaked_instructions
from .reliability import bounded_answer, check_budget, fresh_rollout
from .signatures import Refine

if TYPE_CHECKING:  # ns_dspy.simulators imports torch: keep it out of `import ns_dspy.agents`
    import numpy as np

    from ..scoring import HeldOut, Score
    from ..scoring.racing import Racing
    from ..simulators.base import Simulator

__all__ = ["RefinementAgent", "ScoreFn", "SetResult", "ValidScorer", "valid_scorer"]

log = logging.getLogger(__name__)

ScoreFn = Callable[[list[str]], Sequence[float]]
"""Scores explanations (one batched call; higher is better), e.g. pooled Pearson r on valid data."""

NO_EXEMPLARS = "(no excerpts given)"
NO_STATISTICS = "(no statistics given)"


def _shorten(text: str, limit: int = 160) -> str:
    """One line of at most ``limit`` characters, for a log message."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


@dataclass
class SetResult:
    """What :meth:`ValidScorer.race_sets` made of one set of explanations: scored in full (``score``, the valid
    score of its ``kept`` members as a calibrated union; ``exemplars`` all valid ones) or dropped by the race
    (``score`` None, ``kept`` empty, ``estimate`` its score on the ``exemplars`` it was judged on)."""

    members: list[str]
    kept: list[str]
    score: "Score | None"
    estimate: float
    exemplars: int

    @property
    def raced(self) -> bool:
        return self.score is None


class ValidScorer:
    """A score function over ``valid`` data: pooled Pearson r per explanation, in the order given, one batched
    simulator call per use. It keeps each explanation's per-exemplar predictions, so nothing is simulated twice,
    :meth:`feedback` can name the tokens an explanation missed and its false alarms, and :meth:`race` can score
    candidates on a share of the valid exemplars first (:mod:`ns_dspy.scoring.racing`) when ``racing`` is given.
    ``simulated_tokens`` counts the tokens it had simulated (explanations x exemplar tokens)."""

    def __init__(self, simulator: "Simulator", valid: "HeldOut", racing: "Racing | None" = None):
        from ..errors import ConfigError
        from ..scoring.racing import stage_order

        if valid.split != "valid":
            raise ConfigError(f"selection uses valid data, got {valid.split!r}: test data is only for reporting")
        self.simulator, self.valid, self.racing = simulator, valid, racing
        self._kinds = [ex.kind for ex in valid.exemplars]
        self._trues = [ex.activations for ex in valid.exemplars]
        self._preds: dict[str, dict[int, "np.ndarray"]] = {}
        self._scores: dict = {}
        peaks = [float(ex.max_activation) for ex in valid.exemplars] if racing and racing.order == "peaks" else None
        self._order = stage_order(self._kinds, racing.seed, peaks) if racing else list(range(len(self._kinds)))
        self.simulated_tokens = 0

    @property
    def size(self) -> int:
        """The number of valid exemplars (a full score uses them all)."""
        return len(self._trues)

    def _simulate(self, explanations: Sequence[str], indices: Sequence[int]) -> None:
        """Simulate what is missing of ``explanations`` x ``indices``: one call per distinct missing set."""
        from ..scoring.heldout import simulate

        groups: dict[tuple[int, ...], list[str]] = {}
        for text in dict.fromkeys(explanations):
            have = self._preds.setdefault(text, {})
            missing = tuple(i for i in indices if i not in have)
            if missing:
                groups.setdefault(missing, []).append(text)
        for missing, texts in groups.items():
            exemplars = [self.valid.exemplars[i] for i in missing]
            preds = simulate(self.simulator, texts, exemplars)
            self.simulated_tokens += len(texts) * sum(len(ex.tokens) for ex in exemplars)
            for text, per in zip(texts, preds):
                self._preds[text].update(zip(missing, per))

    def __call__(self, explanations: list[str]) -> list[float]:
        from ..scoring import Score, pooled
        from ..scoring.heldout import check_explanations

        check_explanations(explanations)
        everything = range(len(self._trues))
        self._simulate(explanations, everything)
        for text in explanations:
            if text not in self._scores:
                preds = tuple(self._preds[text][i] for i in everything)
                self._scores[text] = Score(text, "valid", pooled(preds, self._trues, self._kinds), preds)
        return [self._scores[e].value for e in explanations]

    def race(self, explanations: list[str], reference: str | None = None) -> list[tuple[float, int]]:
        """Each explanation's ``(score, valid exemplars it was scored on)``: the full count for those that
        survived the race (their score is the full valid score), fewer for those dropped early (their score is
        the estimate on that share). ``reference``: the best explanation so far (scored on all valid data), which
        every candidate must be able to beat. Without ``racing`` every explanation is scored in full."""
        from ..scoring.heldout import check_explanations

        check_explanations(explanations)
        results = self.race_sets([[e] for e in explanations], [reference] if reference is not None else None)
        return [(r.estimate, r.exemplars) for r in results]

    def score_of(self, explanation: str) -> "Score":
        """The full valid :class:`~ns_dspy.scoring.Score` of an explanation (simulated now if it is not yet)."""
        self([explanation])
        return self._scores[explanation]

    def union(self, members: list[str]) -> tuple[list[str], "Score"]:
        """A set of explanations scored as one, on all valid exemplars: their union calibrated on valid
        (:func:`~ns_dspy.scoring.polysemantic`) with the members whose predictions do not rise with the truth
        left out (a set names only the others), and ``(kept members, score)``; a single member: its own score.
        No member kept: ``([], the whole set's score)``."""
        from ..scoring import polysemantic

        members = list(members)
        alone = {t: self.score_of(t) for t in members}
        if len(members) == 1:
            return members, alone[members[0]]

        def whole_of(texts: list[str]) -> "Score":
            return polysemantic(self.simulator, texts, self.valid, calibration=self.valid,
                                preds=[alone[t].predictions for t in texts])

        whole = whole_of(members)
        kept = [t for t, ok in zip(members, whole.calibration.informative) if ok]
        if kept and kept != members:
            whole = alone[kept[0]] if len(kept) == 1 else whole_of(kept)
        return kept, whole

    def _stage_moments(self, members: list[str], idx: Sequence[int]) -> "np.ndarray":
        """:func:`~ns_dspy.scoring.racing.moments` of a set's prediction on the valid exemplars ``idx`` as
        :meth:`union` makes it, with the calibration fitted on those exemplars only (what a stage can judge)."""
        from ..scoring.calibration import calibrate, cross_fit_applies, cross_fitted, union
        from ..scoring.polarity import is_negative
        from ..scoring.racing import moments

        trues = [self._trues[i] for i in idx]
        preds = [[self._preds[t][i] for i in idx] for t in members]
        texts = list(members)
        if len(texts) > 1:
            informative = calibrate(texts, preds, trues).informative
            keep = [j for j, ok in enumerate(informative) if ok]
            if keep and len(keep) < len(texts):
                texts, preds = [texts[j] for j in keep], [preds[j] for j in keep]
        negative = [is_negative(t) for t in texts]
        if len(texts) > 1 and cross_fit_applies(len(trues)):
            return moments(cross_fitted(texts, preds, trues, negative), trues)
        calibration = calibrate(texts, preds, trues) if len(texts) > 1 else None
        return moments(union(preds, calibration, negative=negative), trues)

    def race_sets(self, sets: list[list[str]], reference: list[str] | None = None,
                  rule: "Racing | None" = None) -> list["SetResult"]:
        """:meth:`race` for sets of explanations each scored as one (:meth:`union`; a set of one is an
        explanation): at each stage every surviving set's union is calibrated and scored on that share of the
        valid exemplars, the clear losers are dropped, and the survivors are scored in full. ``reference``: a set
        already chosen, which every set must be able to beat. ``rule``: this race's rule instead of the scorer's
        ``racing`` (a scorer without racing scores every set in full whatever the rule). One
        :class:`SetResult` per set, in order."""
        from ..scoring.racing import _r, beat_probability, informative, stage_order

        sets = [list(s) for s in sets]
        for members in sets + ([list(reference)] if reference else []):
            if not members:
                raise ValueError("an empty set of explanations cannot be scored")
        n = len(self._trues)
        keys = list(dict.fromkeys(tuple(s) for s in sets))
        ref = tuple(reference) if reference else None
        partial: dict[tuple[str, ...], tuple[float, int]] = {}
        alive = list(keys)
        racing = (rule or self.racing) if self.racing else None
        order = self._order
        if racing is not None and (racing.order, racing.seed) != (self.racing.order, self.racing.seed):
            peaks = [float(ex.max_activation) for ex in self.valid.exemplars] if racing.order == "peaks" else None
            order = stage_order(self._kinds, racing.seed, peaks)
        sizes = racing.sizes(n) if racing else [n]
        for step, k in enumerate(sizes[:-1]):
            rivals = alive + ([ref] if ref is not None and ref not in alive else [])
            if len(rivals) < 2:
                break
            idx = order[:k]
            self._simulate([t for s in rivals for t in s], idx)
            kinds = [self._kinds[i] for i in idx]
            m = {s: self._stage_moments(list(s), idx) for s in rivals}
            point = {s: float(_r(m[s].sum(axis=0))) for s in rivals}
            leader = max(rivals, key=lambda s: point[s])
            survivors = []
            for s in alive:
                if s == leader or not informative(m[s]) or beat_probability(
                        m[s], [m[leader]], kinds, margin=racing.epsilon, resamples=racing.resamples,
                        seed=racing.seed + step) >= racing.delta:
                    survivors.append(s)
                else:
                    partial[s] = (point[s], k)
            alive = survivors
        self._simulate([t for s in alive for t in s], range(n))  # the survivors' texts in one call
        full = {s: self.union(list(s)) for s in alive}
        out = []
        for s in (tuple(s) for s in sets):
            if s in full:
                kept, whole = full[s]
                out.append(SetResult(list(s), kept, whole, whole.value, n))
            else:
                value, k = partial[s]
                out.append(SetResult(list(s), [], None, value, k))
        return out

    def feedback(self, explanation: str, n: int = 3) -> tuple[list[str], list[str]] | None:
        """(missed, false alarms): up to ``n`` valid tokens of each, in context; None if not scored in full."""
        from ..scoring.metric import error_tokens

        result = self._scores.get(explanation)
        return None if result is None else error_tokens(result, self.valid.exemplars, n)


def valid_scorer(simulator: "Simulator", valid: "HeldOut", racing: "Racing | None" = None) -> ValidScorer:
    """:class:`ValidScorer` of ``simulator`` on ``valid`` (racing its candidates when ``racing`` is given)."""
    return ValidScorer(simulator, valid, racing)


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
        max_tokens: the most tokens one proposal may take (an explanation is a sentence or two; a small LM that
            rambles on costs seconds per token on a CPU).

    The prediction holds ``explanation`` and ``score`` (the best), ``history`` (every scored
    ``(explanation, score)``, best first, the seed included), ``trajectory`` (``[0]`` the seed's score,
    ``[t]`` the best after iteration ``t``; it never decreases and has one entry per iteration that scored
    something), ``failures`` (LM calls that failed) and ``stopped`` (why the loop ended: ``iterations``,
    ``converged``, ``no_new_candidates``, ``lm_failed`` or ``no_contribution``). An explanation already in the
    history (same text up to case, spacing and final punctuation) is never scored again. ``seeds`` given to
    :meth:`forward` join the history before the first iteration (e.g. the statistical explanation), so the result
    never scores below any of them on valid. ``keep`` given to :meth:`forward` is asked after every iteration but
    the last whether the best explanation so far is worth refining further (e.g. whether it adds anything to the
    statistical word lists on valid: :func:`ns_dspy.program.adds_to`); when it says no, the loop stops there
    (``no_contribution``), so at least one iteration always runs.
    """

    def __init__(self, *, candidates: int = 8, iterations: int = 5, patience: int = 1, min_delta: float = 1e-3,
                 temperature: float = 1.0, max_history: int = 16, max_exemplars: int = 10, feedback: bool = True,
                 feedback_entries: int = 3, statistics: bool = True, max_tokens: int = 192):
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
        self.max_tokens = max_tokens
        self.refine = dspy.Predict(Refine)

    @staticmethod
    def _scores(score: ScoreFn, explanations: list[str]) -> list[float]:
        values = [float(v) for v in score(list(explanations))]
        if len(values) != len(explanations) or not all(math.isfinite(v) for v in values):
            raise ValueError(f"the score function returned {values!r} for {len(explanations)} explanations: "
                             "it must return one finite number per explanation")
        return values

    def _score_new(self, score: ScoreFn, new: list[str], reference: str,
                   raced: dict[str, int]) -> list[tuple[str, float]]:
        """``(text, score)`` of new candidates; with a racing score function the clear losers are scored on a
        share of the valid data only, and recorded in ``raced``."""
        race = getattr(score, "race", None)
        if race is None or getattr(score, "racing", None) is None:
            return list(zip(new, self._scores(score, new)))
        results = race(list(new), reference)
        values = self._scores(lambda _: [v for v, _ in results], new)  # the same checks as full scores
        for text, (_, k) in zip(new, results):
            if k < score.size:
                raced[text] = k
        return list(zip(new, values))

    def _shown_history(self, history: list[tuple[str, float]], score: ScoreFn,
                       raced: dict[str, int] | None = None) -> str:
        errors = getattr(score, "feedback", None) if self.feedback else None
        raced = raced or {}

        def notes(rank: int, text: str) -> list[str]:
            if text in raced:
                return [f"(estimated on {raced[text]} of {score.size} valid excerpts: clearly below the best, "
                        "so not scored further)"]
            found = errors(text) if errors is not None and rank <= self.feedback_entries else None
            if not found:
                return []
            missed, false = found
            return ([f"missed: {'; '.join(missed)}"] if missed else []) + \
                ([f"false alarms: {'; '.join(false)}"] if false else [])

        return format_history(history, limit=self.max_history, notes=notes)

    def _propose(self, history: list[tuple[str, float]], evidence: str, statistics: str, iteration: int,
                 score: ScoreFn, raced: dict[str, int]) -> tuple[list[str], int]:
        """Up to ``candidates`` proposals and the number of LM calls that failed."""
        shown = self._shown_history(history, score, raced)
        proposals, failed, unparsed = [], 0, 0
        calls = [(k, iteration * self.candidates + k, self.temperature) for k in range(self.candidates)]
        for k, rollout, temperature in calls:
            check_budget("refinement")
            try:
                with bounded_answer("refinement", self.max_tokens):
                    answer = self.refine(history=shown, exemplars=evidence, statistics=statistics,
                                         config={"rollout_id": rollout, "temperature": temperature,
                                                 "max_tokens": self.max_tokens})
                raw = clean_output(answer.explanation)
                instructions = self.refine.signature.instructions  # what the LM read (a compiled program's own)
                text = drop_task_talk(raw, instructions)
                if text != raw:
                    log.info("refinement candidate %d of iteration %d: task talk dropped from %r", k + 1, iteration,
                             _shorten(raw))
                if leaked := leaked_instructions(text, instructions):
                    raise AdapterParseError(adapter_name="refinement", signature=Refine, lm_response=text,
                                            message=f"the answer talks about the task ({leaked!r}), not the neuron: "
                                                   f"{_shorten(text)!r}")
                proposals.append(text)
            except Exception as err:  # one bad proposal is not fatal; the caller stops if all fail
                failed += 1
                unparsed += isinstance(err, AdapterParseError)
                log.warning("refinement candidate %d of iteration %d failed: %s", k + 1, iteration,
                            str(err).splitlines()[0] if str(err) else type(err).__name__)
            if k == self.candidates - 1 and not proposals and unparsed:  # all failed: one fresh sample
                calls.append((self.candidates, fresh_rollout(iteration * self.candidates), self.temperature or 1.0))
        return proposals, failed

    def forward(self, seed: str, score: ScoreFn, exemplars: Sequence[Exemplar] | None = None,
                seeds: Sequence[str] = (), keep: Callable[[str], bool] | None = None) -> dspy.Prediction:
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
        raced: dict[str, int] = {}  # candidates dropped by a race: the valid exemplars they were scored on

        def best(entries: list[tuple[str, float]]) -> tuple[str, float]:
            return next(item for item in entries if item[0] not in raced)

        trajectory, failures, stale, stopped = [history[0][1]], 0, 0, "iterations"
        for iteration in range(1, self.iterations + 1):
            proposals, failed = self._propose(history, evidence, statistics, iteration, score, raced)
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
            before = best(history)[1]
            history = sorted(history + self._score_new(score, new, best(history)[0], raced),
                             key=lambda item: -item[1])
            trajectory.append(best(history)[1])
            stale = 0 if trajectory[-1] > before + self.min_delta else stale + 1
            if stale >= self.patience:
                stopped = "converged"
                break
            if keep is not None and iteration < self.iterations and not keep(best(history)[0]):
                stopped = "no_contribution"
                break
        chosen, chosen_score = best(history)
        return dspy.Prediction(explanation=chosen, score=chosen_score, history=history, trajectory=trajectory,
                               failures=failures, stopped=stopped, raced=raced)
