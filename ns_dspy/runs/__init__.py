"""Runs: the persistent, resumable record of explained neurons."""

from .store import NeuronRecord, RunStore

__all__ = ["NeuronRecord", "RunStore"]
