"""The top-k trackers' update on CPU as compiled loops per layer and split (numba), instead of ~20 torch ops.

:meth:`~.trackers.TopK.update` with torch ops merges each unit's held keys with the batch's (cat, topk, scatter,
nonzero, index_put): on an AMX CPU, where the model's forward is fast, those small ops cost as much as a fifth
of the forward. Here each unit's new windows are compared with its smallest held key and, when one beats it,
written over that slot, one window at a time. Inserting windows one by one into a best-``k`` set ends with the
same set as merging them at once (keys are unique), so the selection is exactly the torch path's; only which
slot holds which window may differ, and every reader orders the slots by key (:meth:`~.trackers.TopK.sorted_state`).

The units are cut into blocks (one per thread, :data:`BLOCKS`) selected and copied in parallel (numba ``prange``):
a unit's windows are only ever compared with its own keys, so the result is the same for any number of blocks.

Keys are the same int64 :func:`~.trackers.score_keys`, computed in the loop from the float32 score's bits.
Activations are copied as raw bits (16- or 32-bit), so bfloat16 needs no conversion. numba compiles for the CPU
it runs on when first called (about a second; cached on disk), so nothing here depends on the build machine.

The per-token statistics the recorder takes before the trackers (window max and min, per-unit sums) are one
compiled loop too (:func:`batch_stats`), with the bits of the inductor kernel it replaces for bfloat16 and float32.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = ["TopKIndex", "available", "torch_ops", "topk_insert", "copy_windows", "batch_stats"]

_BITS = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}


@functools.cache
def _kernel():
    """The compiled loops (top-k selection, two ways to copy its windows, the random sample's copy), or None when
    numba is missing (then the torch ops, with one warning)."""
    try:
        import numba
        from numba import prange
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
    def select_units(keys, values, windows, heap_key, heap_slot, floor, score, score_bits, ids, u0, u1, base,
                     count, got_unit, got_slot, got_new):  # pragma: no cover - jit
        # the new windows in order (``score`` is (new windows, units)), each over units u0..u1-1: the slot it takes
        # in each unit it enters. A unit's smallest key (``floor``) is the root of its min-heap (heap_key,
        # heap_slot); the new key replaces it and sinks to its place. The pairs go to got_* from ``base`` on,
        # window by window and units ascending within a window; count[j + 1]: how many pairs window j has.
        # Returns the number of pairs.
        k = keys.shape[1]
        n = base
        for j in range(ids.shape[0]):
            low_id = low - ids[j]
            for u in range(u0, u1):
                bits = score_bits[j, u]
                if bits == -2147483648:  # -0.0 counts as +0.0
                    bits = 0
                key = (np.int64(bits ^ ((bits >> 31) & 0x7FFFFFFF)) << 32) + low_id
                if key <= floor[u] or bits == -8388608:  # -inf (0xFF800000): not eligible, never enters
                    continue
                slot = heap_slot[u, 0]
                keys[u, slot] = key
                values[u, slot] = score[j, u]
                windows[u, slot] = ids[j]
                got_unit[n], got_slot[n], got_new[n] = u, slot, j
                count[j + 1] += 1
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
                floor[u] = heap_key[u, 0]
        return n - base

    @numba.njit(cache=True, nogil=True, parallel=True)
    def select(keys, values, windows, heap_key, heap_slot, floor, score, score_bits, ids, work,
               counts):  # pragma: no cover - jit
        # the units cut into len(counts) blocks of consecutive units, selected in parallel; block b's pairs lie in
        # work[0..2] from b's first unit x new windows on (a unit takes at most one slot per new window), window by
        # window, counts[b, j + 1] of window j. Returns the pairs per block.
        n_blocks, n_units, n_new = counts.shape[0], keys.shape[0], ids.shape[0]
        got = np.zeros(n_blocks, dtype=np.int64)
        for b in prange(n_blocks):
            u0, u1 = b * n_units // n_blocks, (b + 1) * n_units // n_blocks
            got[b] = select_units(keys, values, windows, heap_key, heap_slot, floor, score, score_bits, ids, u0, u1,
                                  u0 * n_new, counts[b], work[0], work[1], work[2])
        return got

    @numba.njit(cache=True, nogil=True, parallel=True)
    def copy_strided(acts, got_unit, got_slot, counts, n_new, rows, batch):  # pragma: no cover - jit
        # each block's pairs come window by window, units ascending within a window (a later window overwrites an
        # earlier one's slot). The batch is (B, T, units) and a slot holds a unit's T tokens: token by token, each
        # of the window's rows is read along the block's units while the window's few destination slots stay in
        # cache. Blocks hold disjoint units, so they copy in parallel.
        n_blocks, n_units, n_tokens = counts.shape[0], acts.shape[0], acts.shape[2]
        for b in prange(n_blocks):
            start = (b * n_units // n_blocks) * n_new + np.cumsum(counts[b])
            for j in range(counts.shape[1] - 1):
                r = rows[j]
                for i in range(n_tokens):
                    for q in range(start[j], start[j + 1]):
                        u = got_unit[q]
                        acts[u, got_slot[q], i] = batch[r, i, u]

    @numba.njit(cache=True, nogil=True, parallel=True)
    def copy_rows(acts, got_unit, got_slot, got_new, counts, n_new, rows, by_unit):  # pragma: no cover - jit
        # from the batch transposed to (B, units, T): each copy is one contiguous row; within a block pairs come
        # window by window, so a later window overwrites an earlier one's slot
        n_blocks, n_units = counts.shape[0], acts.shape[0]
        for b in prange(n_blocks):
            first = (b * n_units // n_blocks) * n_new
            for q in range(first, first + counts[b].sum()):
                u, slot, r = got_unit[q], got_slot[q], rows[got_new[q]]
                for i in range(acts.shape[2]):
                    acts[u, slot, i] = by_unit[r, u, i]

    @numba.njit(cache=True, nogil=True, parallel=True)
    def copy_windows(acts, slots, rows, batch):  # pragma: no cover - jit
        # every unit: transposed a block of units at a time, as above; the blocks in parallel
        n_units, n_tokens = acts.shape[0], acts.shape[2]
        for t in prange((n_units + TILE - 1) // TILE):
            first = t * TILE
            width = min(TILE, n_units - first)
            tile = np.empty((TILE, n_tokens), dtype=batch.dtype)
            for p in range(slots.shape[0]):
                slot = slots[p]
                transpose_block(batch, rows[p], first, width, tile)
                for d in range(width):
                    for i in range(n_tokens):
                        acts[first + d, slot, i] = tile[d, i]

    return select, copy_strided, copy_rows, copy_windows


@functools.cache
def _stats_kernels():
    """The per-token statistics as one compiled loop per input dtype ({torch dtype: kernel}), or None without numba.

    Each block of units streams the batch row by row (one token's activations of the block's units are contiguous),
    keeping five accumulators per unit; the rows of one window are summed in order and the windows' sums added in
    window order: the order of ``trackers._one_pass`` compiled by inductor, whose sums these equal bit for bit. Two
    loops per row (max/min, then the three sums), each simple enough for the compiler's vectoriser. bfloat16 is
    widened by a shift of its bits. Compiled for the CPU it runs on at first use, like the loops above."""
    try:
        import numba
        from numba import prange, types
        from numba.extending import intrinsic
    except ImportError:
        return None
    import llvmlite.ir as ir

    @intrinsic
    def widen(typingctx, bits):  # pragma: no cover - jit; bfloat16 bits (uint16) -> float32
        def codegen(context, builder, signature, args):
            wide = builder.shl(builder.zext(args[0], ir.IntType(32)), ir.Constant(ir.IntType(32), 16))
            return builder.bitcast(wide, ir.FloatType())
        return types.float32(types.uint16), codegen

    @numba.njit(inline="always")
    def same(x):  # pragma: no cover - jit
        return x

    def make(load):
        @numba.njit(cache=True, nogil=True, parallel=True)
        def stats(flat, s0, s1, n_tokens, n_blocks, wmax, wmin, total, total_sq, positive):  # pragma: no cover - jit
            # flat: the batch's memory from its first element on; window b's token t of unit u at
            # b * s0 + t * s1 + u. Outputs: wmax, wmin (B, units), total, total_sq, positive (units,).
            n_windows, n_units = wmax.shape
            for blk in prange(n_blocks):
                lo = (blk * (n_units // 16) // n_blocks) * 16  # blocks of whole vectors but the last
                hi = n_units if blk == n_blocks - 1 else ((blk + 1) * (n_units // 16) // n_blocks) * 16
                w = hi - lo
                mx, mn = np.empty(w, np.float32), np.empty(w, np.float32)
                st, sq, ps = np.empty(w, np.float32), np.empty(w, np.float32), np.empty(w, np.float32)
                for j in range(w):
                    total[lo + j], total_sq[lo + j], positive[lo + j] = 0.0, 0.0, 0.0
                for b in range(n_windows):
                    for j in range(w):
                        mx[j], mn[j], st[j], sq[j], ps[j] = -np.inf, np.inf, 0.0, 0.0, 0.0
                    for t in range(n_tokens):
                        row = flat[b * s0 + t * s1 + lo:b * s0 + t * s1 + hi]
                        for j in range(w):
                            x = load(row[j])
                            mx[j] = x if x > mx[j] else mx[j]
                            mn[j] = x if x < mn[j] else mn[j]
                        for j in range(w):
                            x = load(row[j])
                            st[j] += x
                            sq[j] += x * x
                            ps[j] += np.float32(1.0) if x > 0 else np.float32(0.0)
                    for j in range(w):
                        wmax[b, lo + j], wmin[b, lo + j] = mx[j], mn[j]
                        total[lo + j] += st[j]
                        total_sq[lo + j] += sq[j]
                        positive[lo + j] += ps[j]
        return stats

    return {torch.bfloat16: make(widen), torch.float32: make(same)}


def batch_stats(acts: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """``trackers._one_pass(acts)`` (window max and min (B, units), per-unit sum, sum of squares and positive count,
    float32; the same bits for finite activations - the recorder refuses a batch with others) by the compiled
    loop, the units in blocks run in parallel (one per thread; a unit's sums do not depend on the blocks). None
    where it does not apply: no numba, not a CPU tensor of bfloat16 or float32, or the units not contiguous."""
    kernels = _stats_kernels()
    if kernels is None or acts.device.type != "cpu" or acts.dtype not in kernels or acts.dim() != 3 \
            or acts.stride(2) != 1 or acts.shape[2] == 0:
        return None
    n_windows, n_tokens, n_units = acts.shape
    s0, s1 = acts.stride(0), acts.stride(1)
    span = (n_windows - 1) * s0 + (n_tokens - 1) * s1 + n_units
    flat = torch.as_strided(acts, (span,), (1,))  # the batch's memory from its first element, as one vector
    flat = _np(flat).view(np.uint16) if acts.dtype == torch.bfloat16 else _np(flat)  # bfloat16 as its bits
    window, unit = torch.empty((2, n_windows, n_units)), torch.empty((3, n_units))
    blocks = max(1, min(_threads(), n_units // 16))
    kernels[acts.dtype](flat, s0, s1, n_tokens, blocks, window[0].numpy(), window[1].numpy(), unit[0].numpy(),
                        unit[1].numpy(), unit[2].numpy())
    return window[0], window[1], unit[0], unit[1], unit[2]


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
    """An int64 array (3, >= size) for :func:`topk_insert`'s pairs (unit, slot, window), reused from call to call
    (a fresh one of a few MB per call costs page faults), one per thread."""
    work = getattr(_local, "work", None)
    if work is None or work.shape[1] < size:
        work = _local.work = np.empty((3, max(size, 1 << 16)), dtype=np.int64)
    return work


ROWS_FROM = 4096
"""From this many (unit, window) pairs in one update (the first windows of a recording, where nearly every window
enters every unit), the activations are copied from the batch transposed to (B, units, T) once per layer
(:attr:`~.trackers.BatchActs.by_unit`, shared by the splits) instead of read strided from (B, T, units)."""


BLOCKS: int | None = None
"""Blocks of units the compiled update splits each tracker into (None: one per thread). The blocks are selected and
copied in parallel; the result does not depend on their number (tests vary it)."""


def _threads() -> int:
    """The compiled loops' threads: as many as torch's (a Ray worker given one CPU uses one), at most numba's.

    numba's OpenMP threading layer shares the process's OpenMP runtime with torch, and launching its pool (the
    first ``numba.get_num_threads()`` or parallel call) sets that runtime's thread count to numba's, one per core:
    torch's forward would then run on every core from the second batch of a recording on, whatever the user or Ray
    (``OMP_NUM_THREADS``) chose, oversubscribing a machine shared by workers, and on some CPUs (an AMD EPYC with
    MKL, measured) with other float32 bits than the first batch. torch's count is put back right after."""
    import numba

    want = torch.get_num_threads()
    n = max(1, min(want, numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)
    return n


def topk_insert(keys: torch.Tensor, values: torch.Tensor, windows: torch.Tensor, acts: torch.Tensor,
                index: TopKIndex, score: torch.Tensor, rows: torch.Tensor, ids: torch.Tensor, batch) -> int:
    """Insert into a tracker's state (``keys``, ``values``, ``windows`` (units, k), ``acts`` (units, k, T), updated
    in place with its ``index``) the windows ``ids`` (P,) with scores ``score`` (P, units; -inf = not eligible)
    whose activations are rows ``rows`` (P,) of ``batch`` (a :class:`~.trackers.BatchActs`). Returns how many
    (unit, window) pairs got in."""
    select, copy_strided, copy_rows, _ = _kernel()
    blocks = BLOCKS or _threads()
    score = score.float().contiguous()  # (P, units): read along the units, window by window
    counts = np.zeros((blocks, len(ids) + 1), dtype=np.int64)
    work = _scratch(score.numel())
    n = int(select(keys.numpy(), values.numpy(), windows.numpy(), index.heap_key.numpy(), index.heap_slot.numpy(),
                   index.floor.numpy(), score.numpy(), score.view(torch.int32).numpy(), ids.numpy(), work,
                   counts).sum())
    if n >= ROWS_FROM:
        copy_rows(_np(acts), work[0], work[1], work[2], counts, len(ids), rows.numpy(), _np(batch.by_unit))
    elif n:
        copy_strided(_np(acts), work[0], work[1], counts, len(ids), rows.numpy(), _np(batch.acts))
    return n


def copy_windows(acts: torch.Tensor, slots: torch.Tensor, rows: torch.Tensor, batch: torch.Tensor) -> None:
    """``acts[:, slots[p]] = batch[rows[p]]`` transposed to (units, T), for every p: a random sample's windows,
    which every unit keeps."""
    _threads()
    _kernel()[3](_np(acts), slots.numpy(), rows.numpy(), _np(batch))
