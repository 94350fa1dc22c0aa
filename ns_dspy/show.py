"""Terminal rendering of exemplars: activating tokens highlighted (ANSI colour, or brackets without it)."""

from __future__ import annotations

from .types import Exemplar

__all__ = ["render_exemplar"]

# 256-colour backgrounds from pale to strong orange.
_SHADES = (230, 223, 216, 209, 202)


def _visible(token: str) -> str:
    return token.replace("\n", "\u21b5").replace("\t", "\u21e5")


def render_exemplar(ex: Exemplar, scale: float, *, color: bool, threshold: float = 0.25) -> str:
    """One line per exemplar; tokens at >= ``threshold`` x ``scale`` are highlighted, stronger is darker."""
    parts = []
    for tok, act in zip(ex.tokens, ex.activations):
        level = act / scale if scale > 0 else 0.0
        text = _visible(tok)
        if level < threshold:
            parts.append(text)
        elif color:
            shade = _SHADES[min(len(_SHADES) - 1, int((level - threshold) / (1 - threshold) * len(_SHADES)))]
            parts.append(f"\x1b[48;5;{shade}m\x1b[30m{text}\x1b[0m")
        else:
            parts.append(f"\u00ab{text}\u00bb")
    return "".join(parts)
