"""Small records passed between pipeline stages."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError

__all__ = ["SPLITS", "KINDS", "UNIT_LIMIT", "UnitId", "Exemplar", "parse_units", "unit_range_problem"]

SPLITS: tuple[str, ...] = ("train", "valid", "test")
"""``train`` is shown to the explainer, ``valid`` selects explanations, ``test`` is only for reporting."""

KINDS: tuple[str, ...] = ("top", "random", "negative")
"""Exemplar kinds: top-activating windows, a uniform random sample of windows, most negative windows."""

UNIT_LIMIT = 2**32
"""Layers and unit indices are below this: a unit is packed into one 64-bit key (``layer << 32 | index``)."""

_UNIT_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def unit_range_problem(layer: int, index: int) -> str | None:
    """What is wrong with a unit's ``layer`` / ``index`` integers (one line), or None when both are in range."""
    for name, value in (("layer", layer), ("index", index)):
        if not 0 <= value < UNIT_LIMIT:
            shown = str(value) if abs(value) < 2**100 else f"{'-' if value < 0 else ''}2^{abs(value).bit_length() - 1}+"
            return f"{name} {shown} is out of range: layers and indices are 0 .. {UNIT_LIMIT - 1} (2^32 - 1)"
    return None


@dataclass(frozen=True, order=True)
class UnitId:
    """One unit: channel ``index`` of the hookpoint at ``layer`` (for MLP neurons, neuron ``index``)."""

    layer: int
    index: int

    def __str__(self) -> str:
        return f"{self.layer}:{self.index}"

    @classmethod
    def parse(cls, text: str) -> "UnitId":
        """Parse ``"L:N"``, e.g. ``"5:123"``."""
        m = _UNIT_RE.match(text)
        if not m:
            raise ConfigError(f"bad unit {_short(text)!r}: write LAYER:INDEX, e.g. 5:123")
        for name, digits in zip(("layer", "index"), m.groups()):
            # more digits than 2^32 has is out of range (and int() refuses over 4300 digits): test the length first
            if len(digits.lstrip("0")) > 10 or int(digits) >= UNIT_LIMIT:
                raise ConfigError(f"bad unit {_short(text)!r}: the {name} is out of range; layers and indices are "
                                  f"0 .. {UNIT_LIMIT - 1} (2^32 - 1)")
        return cls(int(m.group(1)), int(m.group(2)))


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def parse_units(text: str) -> list[UnitId]:
    """Parse a comma-separated unit list ``"5:123,9:77"``."""
    units = [UnitId.parse(part) for part in text.split(",") if part.strip()]
    if not units:
        raise ConfigError("no units given: write LAYER:INDEX[,LAYER:INDEX...], e.g. 5:123,9:77")
    return units


@dataclass
class Exemplar:
    """One text window and the unit's activation at each of its tokens.

    Attributes:
        tokens: the window's tokens as text, in order; concatenated they give the window's text.
        activations: float32 array, one activation per token (same length as ``tokens``).
        window: the window's id in its store (``-1`` when not from a store).
        kind: one of :data:`KINDS`.
        split: one of :data:`SPLITS`.
        token_ids: the subject tokenizer's ids when the exemplar was recorded with that tokenizer, else None.
    """

    tokens: list[str]
    activations: np.ndarray
    window: int = -1
    kind: str = "top"
    split: str = "train"
    token_ids: list[int] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.activations = np.asarray(self.activations, dtype=np.float32)
        if self.activations.shape != (len(self.tokens),):
            raise ValueError(f"{len(self.tokens)} tokens but activations of shape {self.activations.shape}")

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def max_activation(self) -> float:
        return float(self.activations.max()) if len(self.activations) else 0.0
