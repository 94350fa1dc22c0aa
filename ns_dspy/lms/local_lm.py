"""The ``dspy.LM`` classes of ``local:`` and ``endpoint:`` specs (:func:`ns_dspy.lms.make_lm`), apart from
:mod:`ns_dspy.lms.local` so that importing the LMs imports no backend (DSPy included) until one is built.

DSPy marks "another sample of the same request" with a ``rollout_id`` (the refinement's candidates, a retry's
fresh sample, an optimizer's rounds) and keeps it out of the request a backend sees. :class:`RolloutSeeded`
sends it as the request's ``seed``, so a backend that samples by seed (llama.cpp in process, vLLM, llama.cpp's
server) tells the samples apart and gives each again when it is asked again."""

from __future__ import annotations

import dspy

from .local import text_seed
from .retry import RetryingLM

__all__ = ["LocalLM", "SeededLM", "RolloutSeeded", "rollout_seed"]


def rollout_seed(base: int | None, rollout) -> int | None:
    """The request seed of a call with DSPy's ``rollout`` id on an LM whose own seed is ``base`` (None: none):
    ``base`` for the first sample (no rollout id), else the rollout (an int, when the LM has no seed of its own)
    or a hash of both. None when neither is set."""
    if rollout is None:
        return base
    if base is None and isinstance(rollout, int) and not isinstance(rollout, bool):
        return rollout
    return text_seed(repr(rollout) if base is None else repr((base, rollout)))


class RolloutSeeded:
    """A ``dspy.LM`` mixin: each call without a ``seed`` of its own sends :func:`rollout_seed` of the LM's
    ``seed`` option and the call's rollout id as the request's ``seed`` (nothing when both are None). A call
    that passes ``seed=`` or a whole request keeps what it says."""

    def __call__(self, prompt=None, *, messages=None, **kwargs):
        return super().__call__(prompt, messages=messages, **self._seeded(prompt, kwargs))

    async def acall(self, prompt=None, *, messages=None, **kwargs):
        return await super().acall(prompt, messages=messages, **self._seeded(prompt, kwargs))

    def _seeded(self, prompt, kwargs: dict) -> dict:
        from dspy.lm15 import Request

        if "seed" in kwargs or "request" in kwargs or isinstance(prompt, Request):  # it carries its own config
            return kwargs
        seed = rollout_seed(self.kwargs.get("seed"), kwargs.get("rollout_id", self.kwargs.get("rollout_id")))
        return kwargs if seed is None or seed == self.kwargs.get("seed") else {**kwargs, "seed": seed}


class LocalLM(RolloutSeeded, dspy.LM):
    """``dspy.LM`` over a :class:`~ns_dspy.lms.local.LlamaCppEngine`: the rollout id reaches the engine as the
    request's seed, which its per-call seed (:func:`~ns_dspy.lms.local.sample_seed`) hashes with the chat, so
    every sample is reproducible. (The engine's own ``seed`` is an engine option, not this LM's.)"""


class SeededLM(RolloutSeeded, RetryingLM):
    """A network LM whose requests carry seeds: ``endpoint:`` LMs (an OpenAI-compatible server such as vLLM)
    always, ``openai:`` LMs given a ``seed``. Retried as :class:`RetryingLM`; every request carries the LM's
    ``seed`` option (``endpoint:``'s default 0) for a first sample and a hash of it and the rollout id for the
    others, so that a server sampling by seed answers the same request the same way in every run, on every
    worker, cached or not, and another seed draws other samples."""
