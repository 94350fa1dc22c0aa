"""Exemplar stores: the split, on-disk record of each unit's top, random and negative windows."""

from .store import FORMAT, VERSION, ExemplarStore, LayerData, write_store

__all__ = ["FORMAT", "VERSION", "ExemplarStore", "LayerData", "write_store"]
