"""A transparent baseline simulator: predicts 10 on tokens whose word appears in the explanation, else 0.

No model at all, so it is instant and its predictions are obvious, which makes it the reference for tests
of everything built on the score (agents, optimizers, sweeps) - in the role DSPy's ``DummyLM`` plays for LMs.
It is also an honest floor: an explanation that only lists words scores about this well.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ..types import Exemplar
from .base import Simulator

__all__ = ["KeywordSimulator"]

_WORD = re.compile(r"[A-Za-z0-9_]+")


class KeywordSimulator(Simulator):
    kind = "keyword"
    run_options = "ignore"

    @property
    def cache_key(self) -> str:
        return "keyword-1"

    @classmethod
    def from_spec(cls, arg: str, **options) -> "KeywordSimulator":
        cls.check_spec(arg, **options)
        return cls()

    @classmethod
    def check_spec(cls, arg: str, **options) -> None:
        cls.parse_options(options)
        if arg:
            from ..errors import ConfigError

            raise ConfigError(f"the keyword simulator takes no argument, got 'keyword:{arg}': write keyword")

    def simulate(self, explanations: Sequence[str], exemplars: Sequence[Exemplar]) -> list[list[np.ndarray]]:
        out = []
        for explanation in explanations:
            words = {w.lower() for w in _WORD.findall(explanation)}
            out.append([np.array([10.0 if tok.strip().lower() in words else 0.0 for tok in ex.tokens],
                                 dtype=np.float32) for ex in exemplars])
        return out
