"""Simulators: predict a unit's per-token activations from an explanation (the score's engine).

Backends register by kind when their module is imported: ``prompted`` (a local HF model reading the
all-at-once prompt), ``finetuned`` (base model + LoRA adapter + bin head, Choi et al. 2024), ``endpoint`` (an
OpenAI-compatible server with echo + logprobs), and ``keyword`` (a transparent baseline). Kind ``K`` lives in
the module ``ns_dspy.simulators.K``, imported when first needed (by ``build_simulator("K:...")`` or by reading
its class from this package), so importing this package imports neither torch nor openai. Build one with
``build_simulator("KIND[:ARG]")``; wrap it in :class:`CachedSimulator` so that no (simulator, explanation, text)
is ever simulated twice.
"""

from importlib import import_module

from .base import BINS, DEFAULT_SIMULATOR, LockedSimulator, Simulator, build_simulator, simulator_kinds
from .cache import CachedSimulator, SimulationCache

__all__ = ["BINS", "DEFAULT_SIMULATOR", "CachedSimulator", "EndpointError", "EndpointSimulator",
           "FinetunedSimulator", "KeywordSimulator", "LockedSimulator", "PromptedSimulator", "SimulationCache", "Simulator",
           "build_simulator", "simulator_kinds"]

_BACKEND_NAMES = {"EndpointError": "endpoint", "EndpointSimulator": "endpoint", "FinetunedSimulator": "finetuned",
                  "KeywordSimulator": "keyword", "PromptedSimulator": "prompted"}
"""Public names defined by a backend module, imported from it on first use."""


def __getattr__(name: str):
    if name in _BACKEND_NAMES:
        return getattr(import_module(f".{_BACKEND_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
