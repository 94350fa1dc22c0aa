"""``NeuronScope``: the four agents composed into one DSPy program, scored by an injected simulator.

For one unit: the Hypothesis agent writes a raw explanation from the train exemplars, the Decomposition agent
splits it into atomic conditions, the Clustering agent groups them into semantic modes, and the Refinement
agent improves each mode's representative against its valid score. The program sees only train exemplars and
valid data; test scores are computed by the caller (``ns_dspy.runs.runner``) after the program has chosen.

Flags run the paper's ablation (``refine=False``: the cluster representatives are final) and a single-pass
baseline (``baseline=True``: one explanation, the best of ``baseline_k`` hypotheses on valid) through the
same agents.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import dspy

from .agents import (ClusterConfig, ClusteringAgent, DecompositionAgent, Embedder, HypothesisAgent,
                     RefinementAgent, valid_scorer)
from .config import opt
from .errors import ConfigError
from .scoring import HeldOut, polysemantic
from .simulators.base import Simulator
from .types import Exemplar

__all__ = ["ExplainConfig", "NeuronScope"]

log = logging.getLogger(__name__)


@dataclass
class ExplainConfig:
    max_exemplars: int = opt(20, "top train exemplars shown to the Hypothesis agent")
    refine: bool = opt(True, "run the Refinement agent (--no-refine: the paper's ablation)")
    baseline: bool = opt(False, "single-pass baseline instead: one explanation, best of --baseline-k on valid")
    baseline_k: int = opt(8, "hypotheses drawn for the single-pass baseline")
    candidates: int = opt(8, "refinement candidates proposed per iteration")
    iterations: int = opt(5, "refinement iterations at most")
    patience: int = opt(1, "iterations without improvement before refinement stops")
    min_delta: float = opt(1e-3, "improvement of the valid score that counts")
    cluster: ClusterConfig = field(default_factory=ClusterConfig, metadata={"help": "HDBSCAN settings"})

    def __post_init__(self) -> None:
        for name in ("max_exemplars", "baseline_k", "candidates", "iterations", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)


class NeuronScope(dspy.Module):
    """The program. ``forward(train, valid)`` -> ``dspy.Prediction`` with ``explanations`` (one per semantic
    mode, or one for the baseline), ``polysemantic`` (their max-combined valid score) and ``trace``."""

    def __init__(self, simulator: Simulator, embedder: Embedder, config: ExplainConfig | None = None):
        super().__init__()
        self.config = config or ExplainConfig()
        self.simulator = simulator
        self.hypothesis = HypothesisAgent(max_exemplars=self.config.max_exemplars)
        self.decomposition = DecompositionAgent()
        self.clustering = ClusteringAgent(embedder, self.config.cluster)
        self.refinement = RefinementAgent(candidates=self.config.candidates, iterations=self.config.iterations,
                                          patience=self.config.patience, min_delta=self.config.min_delta)

    def forward(self, train: list[Exemplar], valid: HeldOut) -> dspy.Prediction:
        if valid.split != "valid":
            raise ConfigError(f"NeuronScope selects on valid data, got {valid.split!r}")
        if self.config.baseline:
            return self._baseline(train, valid)
        raw = self.hypothesis(exemplars=train).explanation
        log.info("%s: raw explanation of %d words", valid.unit, len(raw.split()))
        conditions = self.decomposition(explanation=raw).conditions
        clustered = self.clustering(conditions=conditions)
        log.info("%s: %d atomic conditions in %d clusters", valid.unit, len(conditions), len(clustered.clusters))
        scorer = valid_scorer(self.simulator, valid)
        clusters = []
        for k, cluster in enumerate(clustered.clusters, 1):
            entry = {"members": list(cluster.members), "representative": cluster.representative}
            if self.config.refine:
                refined = self.refinement(seed=cluster.representative, score=scorer, exemplars=train)
                entry.update(explanation=refined.explanation, valid=refined.score,
                             history=[list(h) for h in refined.history], trajectory=list(refined.trajectory))
                log.info("%s: cluster %d/%d refined, valid %s (%s)", valid.unit, k, len(clustered.clusters),
                         " -> ".join(f"{v:.3f}" for v in refined.trajectory), refined.stopped)
            else:
                entry.update(explanation=cluster.representative, valid=scorer([cluster.representative])[0])
            clusters.append(entry)
        explanations = [c["explanation"] for c in clusters]
        combined = polysemantic(self.simulator, explanations, valid)
        trace = {"raw_explanation": raw, "conditions": list(conditions), "labels": list(clustered.cluster_labels),
                 "clusters": clusters}
        return dspy.Prediction(explanations=explanations, polysemantic=combined.value, trace=trace)

    def _baseline(self, train: list[Exemplar], valid: HeldOut) -> dspy.Prediction:
        drafts = []
        for k in range(self.config.baseline_k):
            text = self.hypothesis(exemplars=train, config={"rollout_id": k}).explanation
            if text not in drafts:
                drafts.append(text)
        scores = valid_scorer(self.simulator, valid)(drafts)
        best = max(range(len(drafts)), key=lambda i: scores[i])
        trace = {"baseline_candidates": [[d, s] for d, s in zip(drafts, scores)]}
        return dspy.Prediction(explanations=[drafts[best]], polysemantic=scores[best], trace=trace)
