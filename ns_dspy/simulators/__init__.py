"""Simulators: predict a unit's per-token activations from an explanation (the score's engine).

Backends register by kind when their module is imported, which this package does for all of them:
``prompted`` (a local HF model reading the all-at-once prompt), ``finetuned`` (base model + LoRA adapter +
bin head, Choi et al. 2024), ``endpoint`` (an OpenAI-compatible server with echo + logprobs), and ``keyword``
(a transparent baseline). Build one with ``build_simulator("KIND[:ARG]")``; wrap it in :class:`CachedSimulator`
so that no (simulator, explanation, text) is ever simulated twice.
"""

from . import endpoint, finetuned, keyword, prompted  # noqa: F401  (register the backends)
from .base import BINS, DEFAULT_SIMULATOR, LockedSimulator, Simulator, build_simulator, simulator_kinds
from .cache import CachedSimulator, SimulationCache
from .endpoint import EndpointError, EndpointSimulator
from .finetuned import FinetunedSimulator
from .keyword import KeywordSimulator
from .prompted import PromptedSimulator

__all__ = ["BINS", "DEFAULT_SIMULATOR", "CachedSimulator", "EndpointError", "EndpointSimulator",
           "FinetunedSimulator", "KeywordSimulator", "LockedSimulator", "PromptedSimulator", "SimulationCache", "Simulator",
           "build_simulator", "simulator_kinds"]
