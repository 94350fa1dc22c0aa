"""Turning a distribution over the bin tokens "0".."10" into an expected activation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["bin_token_ids", "expected_value"]


def bin_token_ids(encode: Callable[[str], list[int]]) -> tuple[list[int], list[int]]:
    """(bins, token ids) for every bin 0..10 whose label is a single token of this tokenizer.

    Tokenizers that split "10" into "1" "0" (Gemma, Llama-3 keeps it whole) read bins 0..9 only; the expected
    value is then taken over those bins, which leaves correlations unchanged.
    """
    bins, ids = [], []
    for b in range(11):
        enc = encode(str(b))
        if len(enc) == 1:
            bins.append(b)
            ids.append(enc[0])
    if len(bins) < 2:
        raise ConfigError("this tokenizer has no single-token digits: it cannot be a prompted simulator")
    return bins, ids


def expected_value(logits: torch.Tensor, bin_ids: list[int], bins: list[int]) -> np.ndarray:
    """``logits`` (..., vocab) -> expected bin (...), softmax over the bin tokens only."""
    sel = logits[..., bin_ids].float()
    probs = torch.softmax(sel, dim=-1)
    return (probs @ torch.tensor(bins, dtype=torch.float32, device=probs.device)).cpu().numpy()
