"""The ``dspy.LM`` of ``local:`` specs (:func:`ns_dspy.lms.make_lm`), apart from :mod:`ns_dspy.lms.local` so that
importing the LMs imports no backend (DSPy included) until one is built."""

from __future__ import annotations

import dspy

from .local import text_seed

__all__ = ["LocalLM"]


class LocalLM(dspy.LM):
    """``dspy.LM`` over a :class:`~ns_dspy.lms.local.LlamaCppEngine`. DSPy marks "another sample of the same
    request" with a ``rollout_id`` (the refinement's candidates, a retry's fresh sample, an optimizer's rounds)
    and keeps it out of the request an engine sees; this LM also sends it as the request's ``seed`` (when the
    call sets none), so the engine's per-call seed (:func:`~ns_dspy.lms.local.sample_seed`) tells the samples
    apart and each stays reproducible."""

    def __call__(self, prompt=None, *, messages=None, **kwargs):
        return super().__call__(prompt, messages=messages, **self._seeded(prompt, kwargs))

    async def acall(self, prompt=None, *, messages=None, **kwargs):
        return await super().acall(prompt, messages=messages, **self._seeded(prompt, kwargs))

    def _seeded(self, prompt, kwargs: dict) -> dict:
        from dspy.lm15 import Request

        rollout = kwargs.get("rollout_id", self.kwargs.get("rollout_id"))
        if (rollout is None or "seed" in kwargs or self.kwargs.get("seed") is not None or "request" in kwargs
                or isinstance(prompt, Request)):  # an explicit Request carries its own config
            return kwargs
        return {**kwargs, "seed": rollout if isinstance(rollout, int) else text_seed(repr(rollout))}
