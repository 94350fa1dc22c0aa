"""The agents' error: one neuron could not be explained at some stage.

An :class:`AgentError` is a per-neuron failure (no activation to explain, an LM answer that could not be
parsed twice, nothing left to cluster). The program records its one-line message for that neuron and
moves on to the next one; it is never returned as data in place of an explanation.
"""

from __future__ import annotations

from ..errors import NsDspyError

__all__ = ["AgentError"]


class AgentError(NsDspyError):
    """An agent could not produce its output for this neuron; ``str(err)`` says why in one line."""
