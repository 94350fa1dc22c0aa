"""Stage 2b: group atomic conditions into semantic modes with HDBSCAN over sentence embeddings.

As in the paper (Appendix B): embed each condition, run HDBSCAN with ``min_cluster_size=2``, and represent
each cluster by the member closest to its centroid. ``min_samples=1`` is the default here because HDBSCAN's
own default (``min_samples = min_cluster_size``) marked every point of a 10-sentence set as noise
(measured, notes/offline-stack.md).

Noise points - conditions HDBSCAN puts in no cluster - need a policy, and so does a set with no cluster:

* ``nearest`` (the default): a noise condition joins the cluster whose centroid is most similar. It does
  not move that centroid or become the representative: those come from the members HDBSCAN chose, so the
  representatives and the number of modes are exactly HDBSCAN's, and every condition still belongs to one
  mode. With no cluster at all, every condition forms one cluster: the neuron reads as monosemantic.
  Why the default: the hypothesis is deliberately recall-oriented, so a cue only one condition supports is
  more often a stray guess than a mode. A mode needs two supporting conditions (the paper's
  ``min_cluster_size=2``); promoting each stray cue to its own mode would inflate the number of modes and
  add explanations that predict activation where there is none, which lowers the neuron-level score
  (the per-token maximum over modes).
* ``singleton``: every noise condition is a mode of its own (no cluster at all: every condition is one).
  Maximum recall, at the cost above.
* ``drop``: noise conditions are discarded (label -1), HDBSCAN's literal output. With no cluster at all,
  every condition forms one cluster, as for ``nearest``, so a neuron always keeps an explanation.

Small sets: HDBSCAN cannot form a cluster other than the whole set from ``n <= min_cluster_size`` points
(nor from ``n <= min_samples``), so such sets skip HDBSCAN and count as "no cluster found": one cluster of
all conditions (``nearest`` / ``drop``), or one cluster each (``singleton``). One condition is always one
cluster; two conditions are one cluster unless the policy is ``singleton``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import dspy
import numpy as np

from ..config import METRICS, NOISE_POLICIES, ClusterConfig
from .embedders import DEFAULT_EMBEDDER, Embedder, MiniLMEmbedder, OpenAIEmbedder, build_embedder, normalise_rows
from .errors import AgentError

__all__ = ["ClusterConfig", "Cluster", "ClusteringAgent", "cluster_embeddings", "hdbscan_labels", "build_clusters",
           "Embedder", "MiniLMEmbedder", "OpenAIEmbedder", "build_embedder", "DEFAULT_EMBEDDER",
           "NOISE_POLICIES", "METRICS"]


@dataclass
class Cluster:
    """One semantic mode: its conditions (in input order) and the representative closest to the centroid.

    ``joined`` lists the indices of members attached by the noise policy; the centroid and the
    representative are computed from the other members (those HDBSCAN put here).
    """

    members: list[str]
    indices: list[int]
    representative: str
    representative_index: int
    joined: list[int] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.indices)


def hdbscan_labels(embeddings: np.ndarray, config: ClusterConfig) -> np.ndarray:
    """HDBSCAN's own labels (``-1`` = noise) for unit-norm rows; all noise when the set is too small."""
    x = np.asarray(embeddings, dtype=np.float64)
    n = len(x)
    if n <= config.min_cluster_size or n <= config.min_samples:
        return np.full(n, -1, dtype=int)
    import hdbscan

    params = dict(min_cluster_size=config.min_cluster_size, min_samples=config.min_samples,
                  cluster_selection_epsilon=config.cluster_selection_epsilon,
                  cluster_selection_method=config.cluster_selection_method, approx_min_span_tree=False)
    if config.metric == "cosine":
        x = np.clip(1.0 - x @ x.T, 0.0, 2.0)
        x = (x + x.T) / 2
        np.fill_diagonal(x, 0.0)
        params["metric"] = "precomputed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(hdbscan.HDBSCAN(**params).fit_predict(x), dtype=int)


def _centroids(x: np.ndarray, raw: np.ndarray, ids: list[int]) -> np.ndarray:
    return normalise_rows(np.stack([x[raw == c].mean(axis=0) for c in ids]))


def _assign(x: np.ndarray, raw: np.ndarray, policy: str) -> np.ndarray:
    """Labels after the noise policy, before renumbering (``-1`` only for dropped points)."""
    n = len(raw)
    ids = sorted(set(raw[raw >= 0].tolist()))
    if not ids:
        return np.arange(n) if policy == "singleton" else np.zeros(n, dtype=int)
    labels = raw.copy()
    noise = np.flatnonzero(raw < 0)
    if policy == "nearest" and len(noise):
        labels[noise] = np.asarray(ids)[np.argmax(x[noise] @ _centroids(x, raw, ids).T, axis=1)]
    elif policy == "singleton":
        labels[noise] = max(ids) + 1 + np.arange(len(noise))
    return labels


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Clusters numbered 0.. by size (largest first), then by first member; ``-1`` stays."""
    ids = sorted(set(labels[labels >= 0].tolist()),
                 key=lambda c: (-int((labels == c).sum()), int(np.argmax(labels == c))))
    mapping = {c: k for k, c in enumerate(ids)}
    return np.array([mapping.get(int(c), -1) for c in labels], dtype=int)


def _group(embeddings: np.ndarray, config: ClusterConfig) -> tuple[np.ndarray, np.ndarray]:
    x = normalise_rows(embeddings)
    raw = hdbscan_labels(x, config)
    labels = _renumber(_assign(x, raw, config.noise))
    core = raw >= 0  # members HDBSCAN chose; a cluster made by the policy alone is all core
    for c in set(labels[labels >= 0].tolist()):
        if not core[labels == c].any():
            core[labels == c] = True
    return labels, core


def cluster_embeddings(embeddings: np.ndarray, config: ClusterConfig | None = None) -> np.ndarray:
    """Final cluster labels for unit-norm embeddings: ``0..k-1`` by decreasing size, ``-1`` only for points
    dropped by ``noise="drop"``. Pure and cheap: sweeps call it once per setting on cached embeddings."""
    return _group(embeddings, config or ClusterConfig())[0]


def build_clusters(texts: list[str], embeddings: np.ndarray, labels: np.ndarray, core: np.ndarray) -> list[Cluster]:
    """One :class:`Cluster` per label ``>= 0``; the representative is the core member nearest the centroid of
    the core members (every cluster needs at least one core member)."""
    x = normalise_rows(embeddings)
    clusters = []
    for c in range(int(labels.max(initial=-1)) + 1):
        idx = np.flatnonzero(labels == c)
        core_idx = idx[core[idx]]
        centroid = normalise_rows(x[core_idx].mean(axis=0, keepdims=True))[0]
        rep = int(core_idx[int(np.argmax(x[core_idx] @ centroid))])
        clusters.append(Cluster(members=[texts[i] for i in idx], indices=idx.tolist(), representative=texts[rep],
                                representative_index=rep, joined=[int(i) for i in idx if not core[i]]))
    return clusters


class ClusteringAgent(dspy.Module):
    """``forward(conditions) -> Prediction(clusters, embeddings, cluster_labels)``: semantic modes of one neuron.

    ``embedder`` is injected (see :mod:`ns_dspy.agents.embedders`); ``cluster_labels[i]`` is the cluster of
    ``conditions[i]`` (``-1`` when dropped), and ``clusters`` are ordered largest first. (Not ``labels``:
    ``Prediction.labels`` is a DSPy method, so a field of that name could not be read as an attribute.)
    """

    def __init__(self, embedder: Embedder, config: ClusterConfig | None = None):
        super().__init__()
        self.embedder = embedder
        self.config = config or ClusterConfig()

    def forward(self, conditions: list[str]) -> dspy.Prediction:
        conditions = list(conditions)
        if not conditions:
            raise AgentError("no conditions to cluster: the decomposition produced none")
        embeddings = np.asarray(self.embedder.embed(conditions), dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) != len(conditions):
            raise ValueError(f"embedder {self.embedder.name} returned shape {embeddings.shape} for "
                             f"{len(conditions)} texts")
        embeddings = normalise_rows(embeddings)
        labels, core = _group(embeddings, self.config)
        return dspy.Prediction(clusters=build_clusters(conditions, embeddings, labels, core), embeddings=embeddings,
                               cluster_labels=labels.tolist())
