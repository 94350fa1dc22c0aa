"""Agents and an embedder in front of the sweep's :class:`~ns_dspy.sweep.cache.WorkCache`.

Each wrapper stands in for one agent of a :class:`~ns_dspy.program.NeuronScope` program and answers from the
cache when the same work was done before - by an earlier trial, another worker or another study in the same
database - and otherwise calls the agent and stores its outcome. The program itself is unchanged: the
sweep builds a normal ``NeuronScope`` and swaps these in, so a trial runs exactly what ``ns-dspy explain``
runs with that configuration.

An :class:`~ns_dspy.agents.AgentError` is an outcome too (an LM answer that could not be parsed twice): it is
cached and raised again, so a neuron whose decomposition fails at some temperature does not pay for the
failure in every trial. Any other exception (an LM server down) is not cached.

Cached entries carry the tokens they cost. :class:`Ledger` sums, per neuron, the tokens the configuration
costs (cached work counted at its original cost) apart from the tokens and LM calls actually spent now.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dspy
import numpy as np

from ..agents import AgentError, Embedder
from ..agents.embedders import normalise_rows
from ..lms import lm_usage
from .cache import WorkCache, digest

__all__ = ["Ledger", "CachedHypothesis", "CachedDecomposition", "CachedRefinement", "CachedEmbedder",
           "exemplars_digest", "lm_identity", "state_digest"]

log = logging.getLogger(__name__)


@dataclass
class Ledger:
    """LM work of one neuron in one trial."""

    cost_tokens: int = 0  # what the configuration costs: every stage at the tokens it cost when computed
    spent_tokens: int = 0  # spent in this trial (cache misses only)
    calls: int = 0  # LM calls made in this trial
    hits: int = 0  # stages answered from the cache
    misses: int = 0  # stages computed now

    def add(self, other: "Ledger") -> None:
        for name in ("cost_tokens", "spent_tokens", "calls", "hits", "misses"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def exemplars_digest(exemplars: Sequence) -> str:
    """Digest of what exemplars show: their tokens, activations (4 decimals) and kind (top or random), in order."""
    return digest([[list(ex.tokens), [round(float(a), 4) for a in ex.activations], ex.kind] for ex in exemplars or ()])


def lm_identity(spec: str, lm) -> dict[str, Any]:
    """What decides an LM's answers: the user's spec, the model id and its settings (temperature, max_tokens,
    ...; never the API key)."""
    kwargs = {k: v for k, v in (getattr(lm, "kwargs", None) or {}).items() if k != "api_key"}
    return {"spec": spec, "model": getattr(lm, "model", None), "kwargs": kwargs}


def state_digest(predictor) -> str:
    """Digest of a predictor's state: signature instructions and fields, demos (a compiled program's)."""
    return digest(predictor.dump_state())


def _tokens_and_calls(lm) -> tuple[int, int]:
    usage = lm_usage(lm)
    return usage["prompt_tokens"] + usage["completion_tokens"], usage["calls"] + usage["cached_calls"]


class _Cached:
    kind = ""

    def __init__(self, inner, cache: WorkCache, ledger: Ledger, lm_key: dict[str, Any]):
        self.inner, self.cache, self.ledger, self.lm_key = inner, cache, ledger, lm_key

    def _outcome(self, key: str, compute) -> dict[str, Any]:
        hit = self.cache.get(key)
        if hit is not None:
            self.ledger.hits += 1
            self.ledger.cost_tokens += hit.get("tokens", 0)
        else:
            lm = dspy.settings.lm
            tokens0, calls0 = _tokens_and_calls(lm)
            try:
                hit = compute()
            except AgentError as err:
                hit = {"error": str(err)}
            tokens1, calls1 = _tokens_and_calls(lm)
            hit.update(tokens=tokens1 - tokens0, calls=calls1 - calls0)
            self.cache.put(self.kind, key, hit)
            self.ledger.misses += 1
            self.ledger.cost_tokens += hit["tokens"]
            self.ledger.spent_tokens += hit["tokens"]
            self.ledger.calls += hit["calls"]
        if "error" in hit:
            raise AgentError(hit["error"])
        return hit


class CachedHypothesis(_Cached):
    """``(exemplars, config=None) -> Prediction(explanation)``, cached by the exemplars shown, the agent's
    settings and state, the LM and the per-call options."""

    kind = "hypothesis"

    def __call__(self, exemplars, *, config: dict | None = None) -> dspy.Prediction:
        agent = self.inner
        key = digest(self.kind, exemplars_digest(exemplars), agent.max_exemplars, agent.threshold, agent.max_chars,
                     agent.max_quiet, agent.statistics, agent.max_tokens, state_digest(agent.hypothesize), self.lm_key,
                     dict(config or {}))
        out = self._outcome(key, lambda: {"explanation": agent(exemplars=exemplars, config=config).explanation})
        return dspy.Prediction(explanation=out["explanation"])


class CachedDecomposition(_Cached):
    """``(explanation) -> Prediction(conditions)``, cached by the explanation, settings, state and LM."""

    kind = "decomposition"

    def __call__(self, explanation: str) -> dspy.Prediction:
        agent = self.inner
        key = digest(self.kind, explanation, agent.max_conditions, agent.max_chars, agent.retry_temperature,
                     agent.max_tokens, state_digest(agent.decompose), self.lm_key)
        out = self._outcome(key, lambda: {"conditions": list(agent(explanation=explanation).conditions)})
        return dspy.Prediction(conditions=list(out["conditions"]))


class CachedRefinement(_Cached):
    """``(seed, score, exemplars=None, seeds=(), keep=None) -> Prediction(explanation, score, history, ...)``.

    The score function is opaque, so what it scores on is part of the key: ``scored_on`` names the unit's
    valid data (a digest of it) and the simulator's ``cache_key``, bound when the wrapper is built for one
    neuron. ``keep`` (the program's :class:`~ns_dspy.program.AddsTo`, which scores with the same valid scorer)
    joins the key through its own ``key``: the word lists it asks about.
    """

    kind = "refinement"

    def __init__(self, inner, cache: WorkCache, ledger: Ledger, lm_key: dict[str, Any], scored_on: dict[str, str]):
        super().__init__(inner, cache, ledger, lm_key)
        self.scored_on = scored_on

    def __call__(self, seed: str, score, exemplars=None, seeds=(), keep=None) -> dspy.Prediction:
        agent = self.inner
        settings = [agent.candidates, agent.iterations, agent.patience, agent.min_delta, agent.temperature,
                    agent.max_history, agent.max_exemplars, agent.feedback, agent.feedback_entries, agent.statistics,
                    agent.max_tokens, repr(getattr(score, "racing", None))]
        if keep is not None:  # without it the key is what it was before keep existed
            settings.append(keep.key)
        key = digest(self.kind, seed, list(seeds), exemplars_digest(exemplars), self.scored_on, settings,
                     state_digest(agent.refine), self.lm_key)

        def compute() -> dict[str, Any]:
            pred = agent(seed=seed, score=score, exemplars=exemplars, seeds=seeds, keep=keep)
            return {"explanation": pred.explanation, "score": float(pred.score),
                    "history": [[text, float(value)] for text, value in pred.history],
                    "trajectory": [float(v) for v in pred.trajectory], "failures": int(pred.failures),
                    "stopped": pred.stopped, "raced": dict(pred.raced)}

        out = self._outcome(key, compute)
        return dspy.Prediction(explanation=out["explanation"], score=out["score"],
                               history=[tuple(h) for h in out["history"]], trajectory=list(out["trajectory"]),
                               failures=out["failures"], stopped=out["stopped"], raced=dict(out.get("raced") or {}))


class CachedEmbedder(Embedder):
    """An embedder answering from the cache text by text (vectors stored as float32 bytes); only the texts
    never embedded before reach ``inner``. Not registered as a kind: it only wraps."""

    def __init__(self, inner: Embedder, cache: WorkCache):
        self.inner, self.cache = inner, cache

    @property
    def name(self) -> str:
        return self.inner.name

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        keys = [digest("embedding", self.inner.name, text) for text in texts]
        found = self.cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        if missing:
            todo = list(dict.fromkeys(texts[i] for i in missing))
            vectors = np.asarray(self.inner.embed(todo), dtype=np.float32)
            fresh = {digest("embedding", self.inner.name, text): {"dim": int(v.shape[0]),
                                                                   "b64": base64.b64encode(v.tobytes()).decode()}
                     for text, v in zip(todo, vectors)}
            self.cache.put_many("embedding", fresh)
            found.update(fresh)
        rows = [np.frombuffer(base64.b64decode(found[key]["b64"]), dtype=np.float32) for key in keys]
        return normalise_rows(np.stack(rows)) if rows else np.zeros((0, 0), dtype=np.float32)
