"""The top-k trackers' update on CPU as one compiled loop per layer and split (numba), instead of ~20 torch ops.

:meth:`~.trackers.TopK.update` with torch ops merges each unit's held keys with the batch's (cat, topk, scatter,
nonzero, index_put): on an AMX CPU, where the model's forward is fast, those small ops cost as much as a fifth
of the forward. Here each unit's new windows are compared with its smallest held key and, when one beats it,
written over that slot, one window at a time. Inserting windows one by one into a best-``k`` set ends with the
same set as merging them at once (keys are unique), so the selection is exactly the torch path's; only which
slot holds which window may differ, and every reader orders the slots by key (:meth:`~.trackers.TopK.sorted_state`).

Keys are the same int64 :func:`~.trackers.score_keys`, computed in the loop from the float32 score's bits.
Activations are copied as raw bits (16- or 32-bit), so bfloat16 needs no conversion. numba compiles for the CPU
it runs on when first called (about a second; cached on disk), so nothing here depends on the build machine.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = ["TopKIndex", "available", "torch_ops", "topk_insert", "copy_windows"]

_BITS = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}


@functools.cache
def _kernel():
    """The compiled loops (top-k selection, two ways to copy its windows, the random sample's copy), or None when
    numba is missing (then the torch ops, with one warning)."""
    try:
        import numba
    except ImportError as err:  # a declared dependency; an install without it still records, more slowly
        log.warning("recording uses torch ops for the top-k trackers (numba is not importable: %s)", err)
        return None

    low = np.int64((1 << 32) - 1)
    TILE = 64  # units per transposed block (the random sample's copy)

    @numba.njit(cache=True, nogil=True)
    def transpose_block(batch, r, first, width, tile):  # pragma: no cover - jit
        # tile[d, :] = batch[r, :, first + d] for d < width: T rows of the batch read along the units
        for i in range(batch.shape[1]):
            for d in range(width):
                tile[d, i] = batch[r, i, first + d]

    @numba.njit(cache=True, nogil=True)
    def select(keys, values, windows, heap_key, heap_slot, floor, score, score_bits, ids, work):  # pragma: no cover
        n_units, k = keys.shape
        n_new = ids.shape[0]
        # unit by unit (``score`` is (units, new windows)), the slot each new window takes, in window order: the
        # unit's smallest key is the root of its min-heap (heap_key, heap_slot); the new key replaces it and sinks
        # to its place. The pairs are returned window by window, units ascending within a window.
        unit_of, slot_of, new_of = work[0], work[1], work[2]  # (6, >= units x new windows): reused scratch
        per_new = np.zeros(n_new + 1, dtype=np.int64)
        n = 0
        for u in range(n_units):
            f = floor[u]
            for j in range(n_new):
                bits = score_bits[u, j]
                if bits == -8388608:  # -inf (0xFF800000): not eligible, never enters
                    continue
                if bits == -2147483648:  # -0.0 counts as +0.0
                    bits = 0
                key = (np.int64(bits ^ ((bits >> 31) & 0x7FFFFFFF)) << 32) + (low - ids[j])
                if key <= f:
                    continue
                slot = heap_slot[u, 0]
                keys[u, slot] = key
                values[u, slot] = score[u, j]
                windows[u, slot] = ids[j]
                unit_of[n], slot_of[n], new_of[n] = u, slot, j
                per_new[j + 1] += 1
                n += 1
                pos = 0
                while True:
                    child = 2 * pos + 1
                    if child >= k:
                        break
                    if child + 1 < k and heap_key[u, child + 1] < heap_key[u, child]:
                        child += 1
                    if heap_key[u, child] >= key:
                        break
                    heap_key[u, pos], heap_slot[u, pos] = heap_key[u, child], heap_slot[u, child]
                    pos = child
                heap_key[u, pos], heap_slot[u, pos] = key, slot
                f = heap_key[u, 0]
            floor[u] = f
        # a stable counting sort by window: within a window, units stay ascending
        fill = np.cumsum(per_new)[:-1].copy()
        got_unit, got_slot, got_new = work[3], work[4], work[5]
        for q in range(n):
            p = fill[new_of[q]]
            got_unit[p], got_slot[p], got_new[p] = unit_of[q], slot_of[q], new_of[q]
            fill[new_of[q]] += 1
        return n, got_unit, got_slot, got_new, per_new

    @numba.njit(cache=True, nogil=True)
    def copy_strided(acts, got_unit, got_slot, per_new, rows, batch):  # pragma: no cover - jit
        # the pairs come window by window, units ascending within a window (a later window overwrites an earlier
        # one's slot). The batch is (B, T, units) and a slot holds a unit's T tokens: token by token, each of the
        # window's rows is read along the units while the window's few destination slots stay in cache
        n_tokens = acts.shape[2]
        start = np.cumsum(per_new)
        for j in range(per_new.shape[0] - 1):
            r = rows[j]
            for i in range(n_tokens):
                for q in range(start[j], start[j + 1]):
                    u = got_unit[q]
                    acts[u, got_slot[q], i] = batch[r, i, u]

    @numba.njit(cache=True, nogil=True)
    def copy_rows(acts, n, got_unit, got_slot, got_new, rows, by_unit):  # pragma: no cover - jit
        # from the batch transposed to (B, units, T): each copy is one contiguous row; pairs come window by window,
        # so a later window overwrites an earlier one's slot
        for q in range(n):
            u, slot, r = got_unit[q], got_slot[q], rows[got_new[q]]
            for i in range(acts.shape[2]):
                acts[u, slot, i] = by_unit[r, u, i]

    @numba.njit(cache=True, nogil=True)
    def copy_windows(acts, slots, rows, batch):  # pragma: no cover - jit
        n_units, n_tokens = acts.shape[0], acts.shape[2]
        tile = np.empty((TILE, n_tokens), dtype=batch.dtype)
        for p in range(slots.shape[0]):
            slot, r = slots[p], rows[p]
            for first in range(0, n_units, TILE):  # every unit: transposed a block at a time, as above
                width = min(TILE, n_units - first)
                transpose_block(batch, r, first, width, tile)
                for d in range(width):
                    for i in range(n_tokens):
                        acts[first + d, slot, i] = tile[d, i]

    return select, copy_strided, copy_rows, copy_windows


def available(tracker_acts: torch.Tensor, batch_acts: torch.Tensor) -> bool:
    """Whether the fast path applies: CPU tensors of one 16/32-bit float dtype, and numba importable."""
    return (tracker_acts.device.type == "cpu" and batch_acts.device.type == "cpu"
            and tracker_acts.dtype == batch_acts.dtype and tracker_acts.dtype in _BITS
            and _kernel() is not None)


@contextlib.contextmanager
def torch_ops():
    """Within it the trackers use the torch ops even on CPU, as on other devices: for benchmarks that compare the
    two updates in one process."""
    global available
    compiled = available
    available = lambda *_: False  # noqa: E731
    try:
        yield
    finally:
        available = compiled


def _np(t: torch.Tensor) -> np.ndarray:
    return t.view(_BITS[t.dtype]).numpy() if t.dtype in (torch.bfloat16, torch.float16) else t.numpy()


class TopKIndex:
    """A min-heap over each unit's slots, by key (``heap_key``, ``heap_slot``: (units, k)), and each unit's
    smallest key (``floor``, the heaps' roots kept contiguous: every new window of every unit is compared with
    it, and reading it from ``heap_key`` would touch one cache line per unit): what the compiled insertion keeps
    beside a tracker's state. Built from the keys (ascending order is a heap), so a tracker rebuilds it after
    anything else changed its keys."""

    def __init__(self, keys: torch.Tensor):
        heap_key, heap_slot = keys.sort(dim=1, stable=True)
        self.heap_key, self.heap_slot = heap_key.contiguous(), heap_slot.contiguous()
        self.floor = self.heap_key[:, 0].contiguous()


_local = threading.local()


def _scratch(size: int) -> np.ndarray:
    """An int64 array (6, >= size) that :func:`topk_insert`'s selection reuses from call to call (a fresh one of a
    few MB per call costs page faults), one per thread."""
    work = getattr(_local, "work", None)
    if work is None or work.shape[1] < size:
        work = _local.work = np.empty((6, max(size, 1 << 16)), dtype=np.int64)
    return work


ROWS_FROM = 4096
"""From this many (unit, window) pairs in one update (the first windows of a recording, where nearly every window
enters every unit), the activations are copied from the batch transposed to (B, units, T) once per layer
(:attr:`~.trackers.BatchActs.by_unit`, shared by the splits) instead of read strided from (B, T, units)."""


def topk_insert(keys: torch.Tensor, values: torch.Tensor, windows: torch.Tensor, acts: torch.Tensor,
                index: TopKIndex, score: torch.Tensor, rows: torch.Tensor, ids: torch.Tensor, batch) -> int:
    """Insert into a tracker's state (``keys``, ``values``, ``windows`` (units, k), ``acts`` (units, k, T), updated
    in place with its ``index``) the windows ``ids`` (P,) with scores ``score`` (P, units; -inf = not eligible)
    whose activations are rows ``rows`` (P,) of ``batch`` (a :class:`~.trackers.BatchActs`). Returns how many
    (unit, window) pairs got in."""
    select, copy_strided, copy_rows, _ = _kernel()
    score = score.float().T.contiguous()  # (units, P): each unit's new scores side by side
    n, got_unit, got_slot, got_new, per_new = select(
        keys.numpy(), values.numpy(), windows.numpy(), index.heap_key.numpy(), index.heap_slot.numpy(),
        index.floor.numpy(), score.numpy(), score.view(torch.int32).numpy(), ids.numpy(), _scratch(score.numel()))
    if n >= ROWS_FROM:
        copy_rows(_np(acts), n, got_unit, got_slot, got_new, rows.numpy(), _np(batch.by_unit))
    elif n:
        copy_strided(_np(acts), got_unit, got_slot, per_new, rows.numpy(), _np(batch.acts))
    return int(n)


def copy_windows(acts: torch.Tensor, slots: torch.Tensor, rows: torch.Tensor, batch: torch.Tensor) -> None:
    """``acts[:, slots[p]] = batch[rows[p]]`` transposed to (units, T), for every p: a random sample's windows,
    which every unit keeps."""
    _kernel()[3](_np(acts), slots.numpy(), rows.numpy(), _np(batch))
