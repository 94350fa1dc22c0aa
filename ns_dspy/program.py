"""``NeuronScope``: the four agents composed into one DSPy program, scored by an injected simulator.

For one unit: the Hypothesis agent writes a raw explanation from the train exemplars, the Decomposition agent
splits it into atomic conditions, the Clustering agent groups them into semantic modes, and the Refinement
agent improves each mode's representative against its valid score. The program sees only train exemplars and
valid data; test scores are computed by the caller (``ns_dspy.runs.runner``) after the program has chosen.

Flags run the paper's ablation (``refine=False``: the cluster representatives are final) and a single-pass
baseline (``baseline=True``: one explanation, the best of ``baseline_k`` hypotheses on valid) through the
same agents. ``method="stats"`` is the statistical explainer: no LM, an explanation written from the train
exemplars' token statistics alone (:mod:`ns_dspy.agents.evidence`), the best of its candidates on valid: a
single word list, or (``tiers``) a set of tier lists scored as a union calibrated on valid, and (``negative``) a
list of the tokens where the activation is lowest as a negative mode when that helps on valid
(:mod:`ns_dspy.scoring.polarity`).

``train`` holds the unit's train top exemplars and, optionally, its train random ones (``kind == "random"``):
the agents see the top ones as marked excerpts, a few random ones as quiet text, and the token statistics of
both. Beyond the paper, by default the agents read that statistics table, the Refinement agent sees each of the
best history entries' missed tokens and false alarms on valid (``feedback``); optionally each mode's history
starts with the statistical explanation too (``seed_stats``): refinement then never ends below it on valid,
but a whole-neuron word list can then win every mode. With refinement the statistical word lists that join the
modes (``stats_modes``) are first edited from their own errors on valid, each edit confirmed on the train windows
(``list_edits``, :mod:`ns_dspy.agents.list_edits`); the lists are made before the LM's modes are refined, and a
mode whose best explanation adds nothing to them on valid stops refining there (``mode_stop``, :func:`adds_to`).
Every method's trace carries the statistical explanation and its valid score (``trace.statistical``; the runner
adds its test score, with the calibration the prediction carries as ``statistical_calibration``), so each run
compares itself with the no-LM row on the same data. Every prediction gives each explanation's own valid score
(``valids``) and, for several explanations, the calibration of their union on valid (``calibration``), which the
test score reuses.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import dspy

from .agents import (ClusteringAgent, DecompositionAgent, Embedder, HypothesisAgent,
                     RefinementAgent, ValidScorer, valid_scorer)
from .agents.concept import ConceptAgent, concept_explanations
from .agents.list_edits import edit_lists
from .agents.evidence import (NEGATIVE_SIZES, TIER_TOKENS, context_explanations, negative_explanations,
                              ranked_tokens, statistical_explanations, tiered_explanations, token_evidence,
                              spelling_explanations, whitespace_explanations, word_class_explanations)
from .config import ExplainConfig
from .costs import stage
from .errors import ConfigError
from .scoring import Calibration, HeldOut, Score, fit_calibration, polysemantic
from .scoring import calibration as _calibration
from .scoring.racing import Racing
from .simulators.base import Simulator
from .trace import Candidate, Mode, Statistical, Trace
from .types import Exemplar

__all__ = ["AddsTo", "ExplainConfig", "NeuronScope", "adds_to", "final_calibration", "refinement_racing",
           "statistical_racing", "with_statistical"]

log = logging.getLogger(__name__)


def with_statistical(simulator: Simulator, valid: HeldOut, lm: list[str], lm_score: Score, stats: list[str],
                     stats_score: Score, scorer: "ValidScorer | None" = None) -> tuple[list[str], Score]:
    """The neuron's explanations with the statistical explainer's word lists as extra modes, when they help.

    Three candidate sets compete on ``valid``: the LM's modes ``lm`` (scored ``lm_score``), the LM's modes and
    the statistical explanations ``stats`` together, scored as one union calibrated on valid with the members
    whose predictions do not rise with the truth left out, and ``stats`` alone (``stats_score``, as the
    statistical explainer scored them). The best valid score wins; within rounding (1e-9) the earlier, so the
    LM's modes win a tie. Returns the chosen explanations and their valid score (``.value``, ``.calibration``:
    what the test score reuses). ``scorer``: a :class:`ValidScorer` of ``simulator`` on ``valid`` holding
    predictions already made (what it lacks it simulates; without one, a new one)."""
    candidates: list[tuple[list[str], Score]] = [(list(lm), lm_score)]
    extra = [text for text in stats if text not in lm]
    if extra:
        both = list(lm) + extra
        kept, whole = (scorer or valid_scorer(simulator, valid)).union(both)
        if kept:
            candidates.append((kept, whole))
    candidates.append((list(stats), stats_score))
    top = max(score.value for _, score in candidates)
    return next(c for c in candidates if c[1].value >= top - 1e-9)


def with_concepts(scorer: "ValidScorer", lists: list[str], lists_score: Score, texts: list[str]
                  ) -> tuple[list[str], Score]:
    """The statistical set ``lists`` (scored ``lists_score``) or, when it scores higher on valid, one concept
    explanation of ``texts`` (:func:`~ns_dspy.agents.concept.concept_explanations`) joined to it - the union
    calibrated on valid with the members whose predictions do not rise with the truth left out - or in its place:
    the best valid score, the set as it was within rounding (1e-9), then the candidates in order."""
    best: tuple[list[str], Score] = (list(lists), lists_score)
    for text in texts:
        if text in lists:
            continue
        kept, whole = scorer.union(list(lists) + [text])
        for candidate in ((kept, whole), ([text], scorer.score_of(text))):
            if candidate[0] and candidate[1].value > best[1].value + 1e-9:
                best = candidate
    return best


def adds_to(scorer: "ValidScorer", lists: Sequence[str], lists_score: Score, text: str,
            min_delta: float = 1e-3) -> bool:
    """Whether ``text`` adds to the statistical set ``lists`` (scored ``lists_score``) on valid: kept in their
    union (:meth:`~ns_dspy.agents.ValidScorer.union`: its predictions rise with the truth beside the lists') and
    that union scoring more than ``min_delta`` above the lists alone. A mode that does not would not be kept beside
    the lists (:func:`with_statistical`), so refining it further spends LM calls on nothing the neuron reports
    (``ExplainConfig.mode_stop``)."""
    if text in lists:
        return False
    kept, whole = scorer.union(list(lists) + [text])
    return text in kept and whole.value > lists_score.value + min_delta


@dataclasses.dataclass(frozen=True)
class AddsTo:
    """:func:`adds_to` bound to one neuron's word lists: the ``keep`` its modes' refinement asks after each iteration
    (``ExplainConfig.mode_stop``). ``key``: what its answers depend on besides the valid data and simulator of
    ``scorer`` (the lists, their score, ``min_delta``), for a cache of refinement results (``ns_dspy.sweep``)."""

    scorer: "ValidScorer"
    lists: tuple[str, ...]
    lists_score: Score
    min_delta: float = 1e-3

    def __call__(self, text: str) -> bool:
        return adds_to(self.scorer, self.lists, self.lists_score, text, self.min_delta)

    @property
    def key(self) -> list:
        return ["adds_to", list(self.lists), float(self.lists_score.value), float(self.min_delta)]


def final_calibration(simulator: Simulator, explanations: list[str], valid: HeldOut, scorer: "ValidScorer",
                      fitted: "Calibration | None", kind: str = _calibration.FINAL_KIND) -> "Calibration | None":
    """The calibration a chosen set's test score reuses: its maps refitted on all of ``valid`` as ``kind``
    (``ExplainConfig.test_maps``; "guarded": monotone where a 2-fold out-of-fold score on valid favours them over
    the linear maps selection uses), from the predictions ``scorer`` holds; ``fitted`` (the maps selection scored
    the set with) when they are of that kind already, and for a single explanation (never calibrated)."""
    if len(explanations) < 2 or fitted is None or kind == _calibration.KIND:
        return fitted
    return fit_calibration(simulator, explanations, valid, preds=[scorer.score_of(e).predictions for e in explanations],
                           kind=kind)


def refinement_racing(config: ExplainConfig) -> "Racing | None":
    """Refinement's racing rule under ``config`` (None without racing): ``Racing`` with ``config.racing_delta``,
    the bound on the chance of dropping the best candidate, and its default indifference zone."""
    return Racing(delta=config.racing_delta) if config.racing else None


def statistical_racing(config: ExplainConfig) -> "Racing | None":
    """The statistical explainer's racing rule under ``config`` (None without racing): twice as strict as
    refinement's and without its indifference zone. Its candidates are many and close (tier sets a few thousandths
    apart on valid) and differ most on the weaker tokens, which the highest-peak windows of the first stages show
    least; refinement's own rule lost more valid score on them (``benchmarks/racing_rules.py --what stats``)."""
    return Racing(delta=config.racing_delta / 2, epsilon=0.0) if config.racing else None


class NeuronScope(dspy.Module):
    """The program. ``forward(train, valid)`` -> ``dspy.Prediction`` with ``explanations`` (one per semantic
    mode, or one for the baseline), ``polysemantic`` (their max-combined valid score) and ``trace``."""

    def __init__(self, simulator: Simulator, embedder: Embedder, config: ExplainConfig | None = None):
        super().__init__()
        self.config = config or ExplainConfig()
        self.simulator = simulator
        c = self.config
        self.hypothesis = HypothesisAgent(max_exemplars=c.max_exemplars, statistics=c.statistics)
        self.decomposition = DecompositionAgent()
        self.clustering = ClusteringAgent(embedder, c.cluster)
        self.refinement = RefinementAgent(candidates=c.candidates, iterations=c.iterations, patience=c.patience,
                                          min_delta=c.min_delta, feedback=c.feedback, statistics=c.statistics)
        # built only when on, so that a program without it keeps the predictors (and state digest) it had before
        self.concept = ConceptAgent() if c.concepts else None

    def forward(self, train: list[Exemplar], valid: HeldOut) -> dspy.Prediction:
        if valid.split != "valid":
            raise ConfigError(f"NeuronScope selects on valid data, got {valid.split!r}")
        # one scorer on valid for the whole neuron: what one stage simulated, the next reuses
        scorer = valid_scorer(self.simulator, valid, self._racing())
        stats = self._statistical(train, valid, scorer)  # no LM: the row every method is compared with
        if self.config.method == "stats":
            return stats
        statistical = Statistical(list(stats.explanations), stats.polysemantic)
        if self.config.baseline:
            pred = self._baseline(train, valid)
            pred.trace.statistical = statistical
            pred.statistical_calibration = stats.calibration
            return pred
        seeds = stats.explanations if self.config.refine and self.config.seed_stats else ()
        with stage("hypothesis"):
            raw = self.hypothesis(exemplars=train).explanation
        log.info("%s: raw explanation of %d words", valid.unit, len(raw.split()))
        with stage("decomposition"):
            conditions = self.decomposition(explanation=raw).conditions
        with stage("clustering"):
            clustered = self.clustering(conditions=conditions)
        log.info("%s: %d atomic conditions in %d clusters", valid.unit, len(conditions), len(clustered.clusters))
        valids: dict[str, float] = {}
        if self.config.stats_modes:
            # the statistical word lists that join the modes when that raises the neuron's valid score; with
            # refinement first edited from their own errors on valid, each edit confirmed on the train windows
            lists, lists_score, edits, named_texts = self._lists(train, valid, scorer, stats, valids)
        # an LM mode is refined on while it adds to the lists: one that does not would not be kept beside them
        keep = (AddsTo(scorer, tuple(lists), lists_score, self.config.min_delta)
                if self.config.stats_modes and self.config.refine and self.config.mode_stop else None)
        modes = []
        for k, cluster in enumerate(clustered.clusters, 1):
            mode = Mode(members=list(cluster.members), representative=cluster.representative)
            if self.config.refine:
                with stage("refinement"):
                    refined = self.refinement(seed=cluster.representative, score=scorer, exemplars=train,
                                              seeds=seeds, keep=keep)
                mode.explanation, mode.valid = refined.explanation, refined.score
                mode.history = [Candidate(text, score) for text, score in refined.history]
                mode.trajectory, mode.raced = list(refined.trajectory), dict(refined.raced or {})
                mode.stopped = refined.stopped
                log.info("%s: cluster %d/%d refined, valid %s (%s)", valid.unit, k, len(clustered.clusters),
                         " -> ".join(f"{v:.3f}" for v in refined.trajectory), refined.stopped)
            else:
                mode.explanation, mode.valid = cluster.representative, scorer([cluster.representative])[0]
            modes.append(mode)
        explanations = [m.explanation for m in modes]
        combined = polysemantic(self.simulator, explanations, valid, calibration=valid,
                                preds=[scorer.score_of(e).predictions for e in explanations])
        valids.update((m.explanation, m.valid) for m in modes)
        if self.config.stats_modes:
            explanations, combined = with_statistical(self.simulator, valid, explanations, combined, lists,
                                                      lists_score, scorer)
            lm_texts = {m.explanation for m in modes}
            modes += [Mode(explanation=text, valid=valids[text], source="lm" if text in named_texts else "stats",
                           trajectory=list(edits) if text not in {*stats.explanations, *named_texts} else [])
                      for text in explanations if text not in lm_texts]
        trace = Trace(raw_explanation=raw, conditions=list(conditions), labels=list(clustered.cluster_labels),
                      modes=modes, statistical=statistical)
        return dspy.Prediction(explanations=explanations, polysemantic=combined.value, trace=trace,
                               valids=[valids[e] for e in explanations],
                               calibration=final_calibration(self.simulator, explanations, valid, scorer,
                                                             combined.calibration, self.config.test_maps),
                               statistical_calibration=stats.calibration)

    def _lists(self, train: list[Exemplar], valid: HeldOut, scorer: ValidScorer, stats: dspy.Prediction,
               valids: dict[str, float]) -> tuple[list[str], Score, list[float], set[str]]:
        """The statistical word lists as they join the modes: ``(lists, their valid score, the set's valid score
        before and after each edit, the concept texts the LM named)``, each list's valid score added to ``valids``.
        With the concept step the LM names what the listed tokens share, and a concept joins or replaces the lists
        when that scores higher on valid; with refinement and ``list_edits`` the lists are then edited from their
        own errors on valid, each edit confirmed on the train windows."""
        lists, lists_score, edits = list(stats.explanations), stats.score, []
        valids.update(zip(stats.explanations, stats.valids))
        named_texts: set[str] = set()  # a concept the LM named, as a mode: written by the LM
        if self.concept is not None:
            with stage("hypothesis"):
                named = self.concept(train, k=self.config.concepts_k)
            texts = [t for c in named.concepts for t in concept_explanations(c, named.words)]
            if named.failed:
                log.info("%s: %d of %d concept answers were not a short category name", valid.unit,
                         named.failed, self.config.concepts_k)
            lists, lists_score = with_concepts(scorer, lists, lists_score, texts)
            named_texts = set(texts)
            if lists != list(stats.explanations):
                log.info("%s: concept %s, valid %.3f -> %.3f", valid.unit, lists[-1][:60], stats.polysemantic,
                         lists_score.value)
            valids.update((t, scorer.score_of(t).value) for t in lists)
        if self.config.refine and self.config.list_edits:
            with stage("refinement"):
                edited = edit_lists(self.simulator, lists, valid, train)
            if edited.edits:
                log.info("%s: word lists edited (%s), valid %.3f -> %.3f", valid.unit,
                         ", ".join(e for e, _ in edited.edits), stats.polysemantic, edited.score.value)
                lists, lists_score = edited.explanations, edited.score
                edits = [stats.polysemantic] + [v for _, v in edited.edits]  # the set's valid score per edit
                valids.update(zip(lists, edited.valids))
        return lists, lists_score, edits, named_texts

    def _racing(self) -> "Racing | None":
        """Refinement's rule (:func:`refinement_racing`)."""
        return refinement_racing(self.config)

    def _stats_racing(self) -> "Racing | None":
        """The statistical explainer's rule (:func:`statistical_racing`)."""
        return statistical_racing(self.config)

    def _statistical(self, train: list[Exemplar], valid: HeldOut,
                     scorer: "ValidScorer | None" = None) -> dspy.Prediction:
        """The statistical explainer: candidates from the token statistics of ``train``, the best on valid.

        With racing (``ExplainConfig.racing``) the candidates race as refinement's do (:meth:`ValidScorer.race_sets`,
        under :meth:`_stats_racing`'s stricter rule): scored on growing shares of the valid exemplars, highest peaks
        first, the clear losers dropped early and only the others scored on all of them."""
        from .agents.errors import AgentError

        top = [ex for ex in train if ex.kind != "random"]
        evidence = token_evidence(top, [ex for ex in train if ex.kind == "random"])
        singles = statistical_explanations(evidence)
        if not singles:
            raise AgentError("unit has no activation in its train exemplars: nothing to explain")
        # sets of tier lists, each scored as a union calibrated on valid (a graded word list); a single list and
        # a set compete on the same number, the valid score of what would be reported
        sets = tiered_explanations(ranked_tokens(train, most=TIER_TOKENS)) if self.config.tiers else []
        scorer = scorer or valid_scorer(self.simulator, valid, self._racing())
        rule = self._stats_racing()
        results = scorer.race_sets([[text] for text in singles] + sets, rule=rule)
        seen = list(results)
        candidates, scored = [], []
        for result in results:
            if result.kept and result.kept not in candidates:
                candidates.append(result.kept)
                scored.append(result.score)
        if not candidates:  # the race's survivors were sets of which no member rises with the truth on valid
            candidates, scored = [[text] for text in singles], [scorer.score_of(text) for text in singles]
        # the best on valid; within rounding of it (1e-9), the first - a single list before any set
        top_value = max(s.value for s in scored)
        best = next(i for i, s in enumerate(scored) if s.value >= top_value - 1e-9)
        # a list of the tokens where the activation is lowest, as a negative mode, then an explanation of a
        # whitespace class (which no quoted list names), of a word class (plural nouns, forms of be: too many words
        # to list), of a spelling class (all capitals, -ing), then of a token right after another (what the token
        # before carries), each join the chosen set when the set's calibrated union then scores higher on valid
        # (the first of several within rounding)
        for on, extra in ((self.config.negative, lambda: negative_explanations(
                              ranked_tokens(train, most=max(NEGATIVE_SIZES), lowest=True))),
                          (self.config.whitespace, lambda: whitespace_explanations(train)),
                          (self.config.word_classes, lambda: word_class_explanations(train)),
                          (self.config.spelling, lambda: spelling_explanations(train)),
                          (self.config.context, lambda: context_explanations(train, candidates[best]))):
            added = extra() if on else []
            base = candidates[best]
            tried = scorer.race_sets([base + [more] for more in added], reference=base, rule=rule) if added else []
            seen += tried
            for more, result in zip(added, tried):
                if more in result.kept and result.score.value > scored[best].value + 1e-9:
                    candidates.append(result.kept)
                    scored.append(result.score)
                    best = len(scored) - 1
        chosen = candidates[best]
        listed = [Candidate(" | ".join(c), s.value) for c, s in zip(candidates, scored)]
        full = {c.text for c in listed}  # a set raced out whose members another set was pruned to is listed once
        raced = {label: r for r in seen if r.raced and (label := " | ".join(r.members)) not in full}
        trace = Trace(method="stats", statistics=evidence.table(),
                      stats_candidates=listed + [Candidate(label, r.estimate) for label, r in raced.items()],
                      stats_raced={label: r.exemplars for label, r in raced.items()},
                      statistical=Statistical(list(chosen), scored[best].value))
        return dspy.Prediction(explanations=list(chosen), polysemantic=scored[best].value, trace=trace,
                               valids=[scorer.score_of(t).value for t in chosen],
                               calibration=final_calibration(self.simulator, list(chosen), valid, scorer,
                                                             scored[best].calibration, self.config.test_maps),
                               score=scored[best])

    def _baseline(self, train: list[Exemplar], valid: HeldOut) -> dspy.Prediction:
        drafts = []
        with stage("hypothesis"):
            for k in range(self.config.baseline_k):
                text = self.hypothesis(exemplars=train, config={"rollout_id": k}).explanation
                if text not in drafts:
                    drafts.append(text)
        scores = valid_scorer(self.simulator, valid)(drafts)
        best = max(range(len(drafts)), key=lambda i: scores[i])
        trace = Trace(baseline_candidates=[Candidate(d, s) for d, s in zip(drafts, scores)])
        return dspy.Prediction(explanations=[drafts[best]], polysemantic=scores[best], trace=trace,
                               valids=[scores[best]])
