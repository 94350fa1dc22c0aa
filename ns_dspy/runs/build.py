"""Building a run's program from user specs: the simulator (cached) and the embedder."""

from __future__ import annotations

from ..agents import build_embedder
from ..program import ExplainConfig, NeuronScope
from ..simulators import CachedSimulator, build_simulator

__all__ = ["build_program"]


def build_program(config: ExplainConfig, *, simulator: str, embedder: str, cache: bool = True,
                  dtype: str = "bfloat16", device: str | None = None) -> NeuronScope:
    sim = build_simulator(simulator, dtype=dtype, device=device)
    if cache:
        sim = CachedSimulator(sim)
    return NeuronScope(sim, build_embedder(embedder), config)
