"""Fixed-length token windows from a document stream, and their deterministic train/valid/test split.

Documents are tokenized one at a time and packed into windows of ``window`` tokens (a document's tail is
continued by the next document after a blank line), so memory does not depend on corpus size.
Each window's split is a hash of (seed, window index): the same window is in the same split for every unit
and every layer, so text shown to the explainer (train) is never used to select (valid) or report (test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

__all__ = ["iter_windows", "split_of", "uniform_keys", "window_hashes"]

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
        return x ^ (x >> np.uint64(31))


def window_hashes(window_ids: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """A uint64 per window id, fixed by (seed, stream, id): a bijection of the id, so no two windows share one."""
    ids = np.asarray(window_ids, dtype=np.uint64)
    salt = _splitmix64(np.array([seed * 1_000_003 + stream], dtype=np.uint64))
    return _splitmix64(ids ^ salt)


def uniform_keys(window_ids: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """A float64 in [0, 1) per window id, fixed by (seed, stream, id) and independent of batching: the top 53
    bits of :func:`window_hashes`."""
    return (window_hashes(window_ids, seed, stream) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def split_of(window_ids: np.ndarray, seed: int, fractions: tuple[float, ...]) -> np.ndarray:
    """Split index (0=train, 1=valid, 2=test) of each window id."""
    edges = np.cumsum(fractions)[:-1]
    return np.searchsorted(edges, uniform_keys(window_ids, seed, stream=1), side="right").astype(np.int8)


def iter_windows(documents: Iterable[str], encode: Callable[[str], list[int]], window: int,
                 separator: list[int] | None = None) -> Iterator[np.ndarray]:
    """Yield int64 arrays of exactly ``window`` token ids, in corpus order."""
    separator = separator or []
    buf: list[int] = []
    for doc in documents:
        if buf:
            buf.extend(separator)
        buf.extend(encode(doc))
        start = 0
        while len(buf) - start >= window:
            yield np.asarray(buf[start:start + window], dtype=np.int64)
            start += window
        del buf[:start]
