"""What explaining one neuron cost: seconds per stage and simulated tokens, metered where the work happens.

The runner opens a :class:`Meter` around one neuron (:func:`metering`); the program marks its stages
(``with stage("hypothesis"): ...``) and every simulator call made to score explanations adds its tokens and
seconds (:func:`simulated`). The meter lives in a context variable, so neurons explained in parallel threads
each meter their own work, and code outside a meter pays nothing.

Seconds are exclusive: a stage's figure leaves out the simulator calls made inside it, which are counted under
``scoring`` (so refinement's figure is the LM's proposals, scoring its candidates is ``scoring``).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["Meter", "metering", "stage", "simulated", "STAGES"]

STAGES = ("hypothesis", "decomposition", "clustering", "refinement", "scoring")
"""The stages a neuron's seconds are split into (``scoring``: every simulator call, valid and test)."""


@dataclass
class Meter:
    seconds: dict[str, float] = field(default_factory=dict)
    simulated_tokens: int = 0
    simulator_calls: int = 0
    _stack: list[str] = field(default_factory=list, repr=False)
    _nested: dict[str, float] = field(default_factory=dict, repr=False)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def to_dict(self) -> dict:
        """``{"seconds": {stage: exclusive seconds}, "simulated_tokens": n, "simulator_calls": n}``."""
        secs = {name: round(max(0.0, s - self._nested.get(name, 0.0)), 3) for name, s in self.seconds.items()}
        return {"seconds": {k: secs[k] for k in sorted(secs, key=_order)}, "simulated_tokens": self.simulated_tokens,
                "simulator_calls": self.simulator_calls}


def _order(name: str) -> tuple[int, str]:
    return (STAGES.index(name) if name in STAGES else len(STAGES), name)


_CURRENT: contextvars.ContextVar[Meter | None] = contextvars.ContextVar("ns_dspy_meter", default=None)


@contextmanager
def metering() -> Iterator[Meter]:
    """A fresh meter for the work done inside the block (in this thread / context)."""
    meter = Meter()
    token = _CURRENT.set(meter)
    try:
        yield meter
    finally:
        _CURRENT.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Count the block's wall time under ``name`` (no-op outside a meter)."""
    meter = _CURRENT.get()
    if meter is None:
        yield
        return
    meter._stack.append(name)
    start = time.perf_counter()
    try:
        yield
    finally:
        meter._stack.pop()
        meter.add(name, time.perf_counter() - start)


def simulated(tokens: int, seconds: float) -> None:
    """Record one simulator call: ``tokens`` simulated (explanations x exemplar tokens) in ``seconds``."""
    meter = _CURRENT.get()
    if meter is None:
        return
    meter.simulated_tokens += int(tokens)
    meter.simulator_calls += 1
    meter.add("scoring", seconds)
    for name in set(meter._stack):  # the enclosing stages' figures leave this out
        meter._nested[name] = meter._nested.get(name, 0.0) + seconds
