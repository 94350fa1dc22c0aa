"""The NeuronScope agents: hypothesis -> decomposition -> clustering -> refinement.

Each agent is a ``dspy.Module`` over a class Signature (``signatures.py``; the prompt is the docstring) and
uses the LM in ``dspy.settings``; the clustering agent takes an injected :class:`Embedder`, the refinement
agent an injected score function. A per-neuron failure raises :class:`AgentError`.
"""

from .clustering import (Cluster, ClusterConfig, ClusteringAgent, build_clusters, cluster_embeddings,
                         hdbscan_labels)
from .decomposition import DecompositionAgent, normalise_condition, parse_conditions
from .embedders import DEFAULT_EMBEDDER, Embedder, MiniLMEmbedder, OpenAIEmbedder, build_embedder, embedder_kinds
from .errors import AgentError
from .formatting import clean_output, format_exemplars, format_history
from .hypothesis import HypothesisAgent
from .refinement import RefinementAgent, ScoreFn, SetResult, ValidScorer, valid_scorer
from .signatures import Decompose, Hypothesize, Refine

__all__ = [
    "AgentError",
    "Cluster",
    "ClusterConfig",
    "ClusteringAgent",
    "DEFAULT_EMBEDDER",
    "Decompose",
    "DecompositionAgent",
    "Embedder",
    "Hypothesize",
    "HypothesisAgent",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "Refine",
    "RefinementAgent",
    "ScoreFn",
    "SetResult",
    "build_clusters",
    "build_embedder",
    "clean_output",
    "cluster_embeddings",
    "embedder_kinds",
    "format_exemplars",
    "format_history",
    "hdbscan_labels",
    "normalise_condition",
    "parse_conditions",
    "ValidScorer",
    "valid_scorer",
]
