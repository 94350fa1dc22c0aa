"""Building a run's program from user specs: the simulator (cached), the embedder and, optionally, a compiled
program's state (``ns-dspy compile --out``)."""

from __future__ import annotations

from ..agents import build_embedder
from ..program import ExplainConfig, NeuronScope
from ..simulators import CachedSimulator, build_simulator

__all__ = ["build_program"]


def build_program(config: ExplainConfig, *, simulator: str, embedder: str, cache: bool = True,
                  dtype: str = "auto", device: str | None = None, program: str | None = None) -> NeuronScope:
    """``program``: a compiled program's JSON state, loaded after checking that it was compiled for this
    configuration (see :func:`ns_dspy.optimize.load_compiled`)."""
    if program is not None:
        from ..optimize import read_manifest

        read_manifest(program)  # a missing or foreign file is refused before any model is loaded
    sim = build_simulator(simulator, dtype=dtype, device=device)
    if cache:
        sim = CachedSimulator(sim)
    built = NeuronScope(sim, build_embedder(embedder), config)
    if program is not None:
        from ..optimize import load_compiled

        try:
            load_compiled(program, built)
        except BaseException:
            sim.close()
            raise
    return built
