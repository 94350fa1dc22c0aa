"""Streaming selection of exemplar windows with memory O(units x k), whatever the corpus size.

:class:`TopK` keeps, per unit, the ``k`` windows with the largest score (max activation, or minus the min
for most-negative windows) and their per-token activations. :class:`Reservoir` keeps a uniform random sample
of windows (the same windows for every unit, chosen by hashed keys, so the sample does not depend on batch
size). Slots are kept unsorted and only evicted slots are overwritten, in place: after warm-up an update
costs a comparison per unit and a copy of the few windows that get in. :meth:`sorted_state` orders them.

Every selection is a function of the *set* of windows seen, not of the order they came in: both trackers rank
windows by an int64 key unique to each window (:func:`score_keys`: the score, equal scores by smaller window;
:func:`sample_keys`: the window's 64-bit hash), so the best ``k`` are one set. Trackers fed disjoint parts of a
corpus therefore :meth:`~TopK.merge` into exactly the tracker fed the whole corpus (distributed recording,
:mod:`ns_dspy.cluster.record`). :class:`Stats` keeps the order-dependent float sums per chunk of windows,
combined in chunk order (:meth:`Stats.fold`), so they do not depend on who computed which chunk either.
"""

from __future__ import annotations

import functools
import logging
from typing import NamedTuple

import numpy as np
import torch

from . import fastpath
from .windows import window_hashes

__all__ = ["BatchActs", "BatchStats", "TopK", "TopKGroup", "keep_best", "Reservoir", "ReservoirGroup", "Stats",
           "StatsGroup", "batch_stats", "replacement_pairs", "best_k", "score_keys", "sample_keys", "EMPTY", "VACANT",
           "STAT_FIELDS"]


class BatchActs:
    """One layer's activations for a batch, ``acts`` (B, T, units), with a lazily built (B, units, T) copy.

    ``acts`` may be a view that drops ``skip`` leading positions (the tokenizer's prefix) of a contiguous
    tensor ``base`` (B, skip + T, units). Trackers copy whole windows of one unit, i.e. rows of the
    (B, units, T) layout. On CPU that transpose is done as a batched matmul of ``base`` with the identity's
    last T columns - exact for finite values (x * 1 + 0), dropping the prefix in the same step, and several
    times faster than a strided copy; elsewhere by ``contiguous()``. Recording rejects non-finite batches
    before tracking.
    """

    def __init__(self, acts: torch.Tensor, base: torch.Tensor | None = None, skip: int = 0):
        self.acts, self.skip = acts, skip
        self.base = acts if base is None else base
        self._by_unit: torch.Tensor | None = None

    @classmethod
    def of_units(cls, by_unit: torch.Tensor) -> "BatchActs":
        """The activations given in the (B, units, T) layout."""
        acts = cls(by_unit.transpose(1, 2))
        acts._by_unit = by_unit
        return acts

    def unit_rows(self, window: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
        """``acts[window[i], :, unit[i]]`` for each i, shape (P, T)."""
        if self._by_unit is None and 8 * len(window) < self.acts.shape[0] * self.acts.shape[2]:
            return self.acts[window, :, unit]  # few rows: a strided gather beats building the transpose
        return self.by_unit[window, unit]

    def window_rows(self, window: torch.Tensor) -> torch.Tensor:
        """All units' activations on the given windows, shape (units, P, T)."""
        if self._by_unit is None and 8 * len(window) < self.acts.shape[0]:
            return self.acts[window].permute(2, 0, 1)
        return self.by_unit[window].transpose(0, 1)

    @property
    def by_unit(self) -> torch.Tensor:
        if self._by_unit is None:
            a = self.base.transpose(1, 2)
            if a.device.type == "cpu" and self.base.is_contiguous():
                select = torch.eye(a.shape[2], dtype=a.dtype, device=a.device)[:, self.skip:]
                self._by_unit = torch.matmul(a, select)
            else:
                self._by_unit = a[:, :, self.skip:].contiguous()
        return self._by_unit


SYNC_FREE: bool | None = None
"""Whether the top-k trackers' updates read no device value on the host. None (the default): on every device but
the CPU. Then each update finds every unit's best ``k`` of its slots and the batch's windows with fixed-shape ops
(:func:`keep_best`: one ``topk``, sorts, gathers and scatters of ``min(k, batch)`` windows per unit) instead of
finding the few units and slots that change (``nonzero``: the host waits for the device), and a recorder updates
every layer's trackers of a split as one (:class:`TopKGroup`). On a GPU each such wait also holds back the
forward's next kernels; an H200 spent ~75 ms a batch on them (benchmarks/README.md, GPU figures). On the CPU a
read costs nothing and the compiled loops (:mod:`.fastpath`) are faster. The selection is the same either way
(tests/recording/test_trackers.py). The random sample's choices are always worked out on the host
(:class:`Reservoir` keeps a host copy of its keys)."""


def sync_free(device: torch.device) -> bool:
    """Whether trackers on ``device`` take the updates that never wait for it (:data:`SYNC_FREE`)."""
    return SYNC_FREE if SYNC_FREE is not None else device.type != "cpu"


EMPTY = torch.iinfo(torch.int64).min
"""The key of a window that may not enter (another split's, a -inf score): below every other key."""
VACANT = EMPTY + 1
"""The key of an empty slot: above :data:`EMPTY`, so an ineligible window never takes an empty slot."""
_LOW = (1 << 32) - 1


def score_keys(score: torch.Tensor, window_ids: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered as (score descending, window ascending): the float32 score's bits mapped to an
    order-preserving int32 in the high half, ``2^32 - 1 - window`` in the low half (window ids below 2^32).
    -inf scores get :data:`EMPTY`."""
    score = score.float() + 0.0  # -0.0 -> +0.0: equal scores must get the same high half
    bits = score.view(torch.int32)
    keys = bits.bitwise_xor((bits >> 31).bitwise_and_(0x7FFFFFFF)).to(torch.int64).bitwise_left_shift_(32)
    keys += _LOW - window_ids
    return keys.masked_fill_(score == -torch.inf, EMPTY)


def sample_keys(window_ids: np.ndarray, seed: int) -> np.ndarray:
    """int64 keys of the random sample, larger first: the window's 64-bit hash (:func:`window_hashes`, a
    bijection of the id), reversed, so the sample is the windows with the smallest :func:`uniform_keys`."""
    hashes = window_hashes(window_ids, seed, stream=2)
    keys = (hashes ^ np.uint64(0x7FFFFFFFFFFFFFFF)).view(np.int64)  # uint64 order reversed, as int64
    return np.maximum(keys, VACANT + 1)  # the two sentinels stay apart (2 hashes in 2^64 are clamped)


def replacement_pairs(old: torch.Tensor, new: torch.Tensor, k: int, largest: bool = True):
    """Which old slots the best ``k`` of ``old`` (rows, k) and ``new`` (rows, B) evict, and by which new
    column. Returns (row, slot, column) index tensors of equal length, paired within each row."""
    merged = torch.cat([old, new], dim=1)
    keep = torch.zeros_like(merged, dtype=torch.bool)
    keep.scatter_(1, merged.topk(k, dim=1, largest=largest, sorted=False).indices, True)
    row_out, slot = (~keep[:, :k]).nonzero(as_tuple=True)
    row_in, col = keep[:, k:].nonzero(as_tuple=True)
    # nonzero() is row-major and each row evicts as many slots as it admits, so the i-th pairs match
    assert torch.equal(row_out, row_in)
    return row_out, slot, col


def _host_replacement(old: np.ndarray, new: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`replacement_pairs` for one row on the host (NumPy): which of the ``k`` slots of ``old`` the best
    ``k`` of ``old`` and ``new`` evict (ascending), and by which columns of ``new`` (ascending), paired."""
    merged = np.concatenate([old, new])
    keep = np.zeros(len(merged), dtype=bool)
    keep[np.argsort(merged, kind="stable")[len(merged) - k:]] = True
    return np.flatnonzero(~keep[:k]), np.flatnonzero(keep[k:])


def best_k(keys: torch.Tensor, ids: torch.Tensor, k: int) -> torch.Tensor:
    """Column indices (rows, k) of the ``k`` largest ``keys`` of each row, best first, skipping duplicates: an
    entry with the same id as the one before it (the same window held twice; negative ids are empty slots)."""
    order = keys.argsort(dim=1, descending=True, stable=True)
    sorted_ids = ids.gather(1, order)
    dup = torch.zeros_like(sorted_ids, dtype=torch.bool)
    dup[:, 1:] = (sorted_ids[:, 1:] == sorted_ids[:, :-1]) & (sorted_ids[:, 1:] >= 0)
    if bool(dup.any()):
        order = order.gather(1, dup.to(torch.uint8).argsort(dim=1, stable=True))
    return order[:, :k]


class TopK:
    """Per-unit best ``k`` windows by ``score``; equal scores by smaller window. Empty slots have window -1 and
    value -inf.

    State: ``values`` (units, k) float32, ``windows`` (units, k) int64, ``acts`` (units, k, T); ``keys`` (units, k)
    int64 (:func:`score_keys`) follow from values and windows.
    """

    def __init__(self, n_units: int, k: int, window: int, *, dtype=torch.float32, device="cpu"):
        self.k = k
        self.values = torch.full((n_units, k), -torch.inf, dtype=torch.float32, device=device)
        self.windows = torch.full((n_units, k), -1, dtype=torch.int64, device=device)
        self.keys = torch.full((n_units, k), VACANT, dtype=torch.int64, device=device)
        self.acts = torch.zeros((n_units, k, window), dtype=dtype, device=device)
        self.last = -1  # no window held is above this one
        self._index: fastpath.TopKIndex | None = None  # kept by the compiled path; None: rebuild from the keys

    def update(self, score: torch.Tensor, acts: BatchActs, window_ids: torch.Tensor,
               span: tuple[int, int] | None = None, batch_rows: torch.Tensor | None = None) -> None:
        """``score`` (B, units) per window (-inf = not eligible), the batch's activations, ids (B,); ``span``:
        their smallest and largest id, or the whole batch's, when the caller knows them (saves a device sync);
        ``batch_rows``: which rows of the batch ``score`` and ``window_ids`` are (default: all, in order)."""
        if self.k == 0:
            return
        if sync_free(self.acts.device):
            self._update_all(score, acts, window_ids, batch_rows)
            self.last = max(self.last, span[1] if span is not None else int(window_ids.max()))
            return
        if fastpath.available(self.acts, acts.acts):
            if self._index is None:
                self._index = fastpath.TopKIndex(self.keys)
            rows = torch.arange(len(window_ids)) if batch_rows is None else batch_rows
            fastpath.topk_insert(self.keys, self.values, self.windows, self.acts, self._index, score, rows,
                                 window_ids, acts)
            self.last = max(self.last, span[1] if span is not None else int(window_ids.max()))
            return
        lo, hi = span if span is not None else (int(window_ids.min()), int(window_ids.max()))
        # units where a window may get in: one scoring above the k-th best, or equal to it (-inf never) when
        # it may be a smaller window than one held; windows coming in order lose every tie
        floor = self.values.min(1).values
        if lo > self.last:
            candidates = score > floor
        else:
            candidates = score >= floor.clamp(min=torch.finfo(torch.float32).min)
        self.last = max(self.last, hi)
        units = candidates.any(0).nonzero().squeeze(1)
        if units.numel() == 0:
            return
        new = score_keys(score[:, units], window_ids[:, None])  # (B, candidate units)
        rows, slot, col = replacement_pairs(self.keys[units], new.T, self.k)
        unit = units[rows]
        self.keys[unit, slot] = new[col, rows]
        self.values[unit, slot] = score[col, unit].float()
        self.windows[unit, slot] = window_ids[col]
        at = col if batch_rows is None else batch_rows[col]
        self.acts[unit, slot] = acts.unit_rows(at, unit).to(self.acts.dtype)
        self._index = None

    def _update_all(self, score: torch.Tensor, acts: BatchActs, window_ids: torch.Tensor,
                    batch_rows: torch.Tensor | None) -> None:
        """The update without host reads (:data:`SYNC_FREE`; :func:`keep_best`)."""
        rows = acts.by_unit if batch_rows is None else acts.by_unit[batch_rows]
        keep_best((self.keys, self.values, self.windows, self.acts), score, rows, window_ids, self.k)
        self._index = None

    def merge(self, values: torch.Tensor, windows: torch.Tensor, acts: torch.Tensor) -> None:
        """Add another tracker's :meth:`state` (its windows may overlap this one's): afterwards this holds the
        best ``k`` of both, the same as one tracker fed every window of the two."""
        if self.k == 0:
            return
        values, windows = values.to(self.values), windows.to(self.windows)
        keys = torch.cat([self.keys, self._keys(values, windows)], 1)
        values, windows = torch.cat([self.values, values], 1), torch.cat([self.windows, windows], 1)
        take = best_k(keys, windows, self.k)
        all_acts = torch.cat([self.acts, acts.to(self.acts)], 1)
        self.values, self.windows, self.keys = values.gather(1, take), windows.gather(1, take), keys.gather(1, take)
        self.acts = all_acts.gather(1, take[:, :, None].expand(-1, -1, all_acts.shape[2])).contiguous()
        self.last = max(self.last, int(self.windows.max()))
        self._index = None

    @staticmethod
    def _keys(values: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        return score_keys(values, windows).masked_fill_(windows < 0, VACANT)

    def sorted_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(windows (units, k), acts (units, k, T) float32), best first, empty slots last; equal scores in
        window order (not in the order they arrived, which depends on the batch size)."""
        order = self.keys.argsort(dim=1, descending=True, stable=True)
        windows = self.windows.gather(1, order)
        acts = self.acts.gather(1, order.unsqueeze(2).expand_as(self.acts))
        return windows.cpu().numpy(), acts.float().cpu().numpy()

    def state(self) -> dict[str, torch.Tensor]:
        return {"values": self.values, "windows": self.windows, "acts": self.acts}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for name, tensor in state.items():
            getattr(self, name).copy_(tensor)
        self.keys = self._keys(self.values, self.windows)
        self.last = int(self.windows.max()) if self.windows.numel() else -1
        self._index = None


def keep_best(state: tuple[torch.Tensor, ...], score: torch.Tensor, rows: torch.Tensor, window_ids: torch.Tensor,
              k: int) -> None:
    """The top-k update that reads nothing on the host (:data:`SYNC_FREE`), in place: each unit keeps the best
    ``k`` of its slots and the batch's windows by key; the windows that get in take the evicted slots (the i-th
    evicted slot, in slot order, the i-th window in, in batch order), every other slot keeps what it holds.
    ``state``: (keys, values, windows, acts) of shapes (units, k) x 3 and (units, k, T); ``score`` (B, units),
    ``rows`` (B, units, T) the batch's activations by unit, ``window_ids`` (B,). Empty slots (key :data:`VACANT`)
    tie with each other only, and a -inf score (key :data:`EMPTY`) ranks below them, as in the other paths.
    Every step has a fixed shape (at most ``min(k, B)`` windows get into a unit), so nothing waits for the device;
    it reads and writes ``min(k, B)`` windows of activations per unit, not all ``k``."""
    keys, values, windows, acts = state
    n, b = keys.shape[0], score.shape[0]
    new_keys = score_keys(score, window_ids[:, None]).T  # (units, B)
    keep = torch.zeros((n, k + b), dtype=torch.bool, device=keys.device)
    keep.scatter_(1, torch.cat([keys, new_keys], 1).topk(k, dim=1, sorted=False).indices, True)
    j = min(k, b)
    # per unit: the evicted slots first (in slot order) and the windows that get in first (in batch order); as
    # many of each, paired; beyond that, slots that stay, which are written back unchanged (the targets of a
    # row are distinct: a permutation's first j)
    slot = (~keep[:, :k]).to(torch.uint8).argsort(dim=1, descending=True, stable=True)[:, :j]
    col = keep[:, k:].to(torch.uint8).argsort(dim=1, descending=True, stable=True)[:, :j]
    enter = torch.arange(j, device=keys.device) < keep[:, k:].sum(1, keepdim=True)  # (units, j)
    keys.scatter_(1, slot, torch.where(enter, new_keys.gather(1, col), keys.gather(1, slot)))
    values.scatter_(1, slot, torch.where(enter, score.T.float().gather(1, col), values.gather(1, slot)))
    windows.scatter_(1, slot, torch.where(enter, window_ids[col], windows.gather(1, slot)))
    at = slot[:, :, None].expand(-1, -1, acts.shape[2])
    new = rows.transpose(0, 1).gather(1, col[:, :, None].expand(-1, -1, acts.shape[2])).to(acts.dtype)
    acts.scatter_(1, at, torch.where(enter[:, :, None], new, acts.gather(1, at)))


def _still_held(held: list[tuple], views: list[tuple]) -> bool:
    """Whether each tracker of a group still holds the very objects the group gave it (``views``, per tracker):
    anything replaced since (a checkpoint loaded, a merge, a chunk's sums taken) makes the group read them again."""
    return len(held) == len(views) and all(a is b for h, v in zip(held, views) for a, b in zip(h, v))


class TopKGroup:
    """Top-k trackers of the same ``k`` (one split of every recorded layer) updated as one tracker over all their
    units, by :func:`keep_best`: a GPU then runs one update per batch instead of one per layer, and its host,
    which launches the kernels, is what recording waits on there (benchmarks/README.md, GPU figures). The trackers
    hold views of the group's tensors, updated in place; a tracker whose tensors were replaced since (a merge) is read
    again. The selection is the same as updating each tracker alone: a unit's best ``k`` depend on its own slots
    and scores only."""

    FIELDS = ("keys", "values", "windows", "acts")

    def __init__(self, trackers: list[TopK]):
        self.trackers = trackers
        self.k = trackers[0].k
        self.sizes = [t.keys.shape[0] for t in trackers]
        self._held: list[tuple[torch.Tensor, ...]] = []
        self._state: tuple[torch.Tensor, ...] = ()

    def state(self) -> tuple[torch.Tensor, ...]:
        """(keys, values, windows, acts) of every unit of the group, in tracker order; the trackers hold views."""
        held = [tuple(getattr(t, f) for f in self.FIELDS) for t in self.trackers]
        if not _still_held(held, self._held):
            self._state = tuple(torch.cat([h[i] for h in held]) for i in range(len(self.FIELDS)))
            parts = [t.split(self.sizes) for t in self._state]
            self._held = [tuple(p[i] for p in parts) for i in range(len(self.trackers))]
            for tracker, views in zip(self.trackers, self._held):
                for field, view in zip(self.FIELDS, views):
                    setattr(tracker, field, view)
        return self._state

    def update(self, score: torch.Tensor, acts: BatchActs, window_ids: torch.Tensor, span: tuple[int, int],
               batch_rows: torch.Tensor | None = None) -> None:
        """As :meth:`TopK.update` with ``score`` (B, units of every tracker, in order) and ``acts`` likewise."""
        if self.k == 0:
            return
        rows = acts.by_unit if batch_rows is None else acts.by_unit[batch_rows]
        keep_best(self.state(), score, rows, window_ids, self.k)
        for tracker in self.trackers:
            tracker.last, tracker._index = max(tracker.last, span[1]), None


class Reservoir:
    """A uniform sample of ``k`` windows shared by all units: those with the ``k`` smallest hashes so far
    (:func:`sample_keys`).

    State: ``windows`` (k,) int64 (-1 when empty), ``acts`` (units, k, T); ``keys`` (k,) int64 follow from the
    windows and the seed, and are kept on the host (:attr:`keys` gives them on the device).
    """

    def __init__(self, n_units: int, k: int, window: int, *, seed: int, dtype=torch.float32, device="cpu"):
        self.k, self.seed = k, seed
        self.windows = torch.full((k,), -1, dtype=torch.int64, device=device)
        self.acts = torch.zeros((n_units, k, window), dtype=dtype, device=device)
        self._host = np.full(k, VACANT, dtype=np.int64)  # the keys, on the host: choices never wait for a device

    @property
    def keys(self) -> torch.Tensor:
        """The slots' keys (k,) int64 on the tracker's device, from the host copy the choices are made on."""
        return torch.from_numpy(self._host.copy()).to(self.windows.device)

    def update(self, acts: BatchActs, window_ids: torch.Tensor, eligible: np.ndarray,
               ids: np.ndarray | None = None, keys: np.ndarray | None = None, plan: dict | None = None) -> None:
        """The batch's activations for windows ``window_ids`` (B,); only rows where ``eligible`` count.
        ``ids``: the same ids as a NumPy array, when the caller has them; ``keys``: their :func:`sample_keys` under
        this reservoir's seed, :data:`EMPTY` where not eligible, when the caller has computed them (every layer's
        reservoir of a split sees the same windows, so a recorder computes them once per batch). ``plan``: a dict
        the caller passes to every reservoir offered this batch's windows (one per split): which slots take which
        windows is worked out by the first and reused by every other whose keys were the same before the batch."""
        if self.k == 0 or not eligible.any():
            return
        chosen = self.choose(window_ids, eligible, ids, keys, plan)
        if chosen is None:
            return
        slot, col = chosen
        if fastpath.available(self.acts, acts.acts):
            fastpath.copy_windows(self.acts, slot, col, acts.acts)
        else:
            self.acts[:, slot] = acts.window_rows(col).to(self.acts.dtype)

    def choose(self, window_ids: torch.Tensor, eligible: np.ndarray, ids: np.ndarray | None = None,
               keys: np.ndarray | None = None, plan: dict | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """:meth:`update`'s choice, worked out on the host: which slots take which of the batch's windows, as
        device index tensors (slot, column of the batch), with the keys and windows updated; None when no window
        gets in. The caller copies the activations."""
        if keys is None:
            keys = sample_keys(window_ids.cpu().numpy() if ids is None else ids, self.seed)
            keys[~eligible] = EMPTY
        if int(keys.max()) <= int(self._host.min()):  # after the first windows, the usual case: nothing gets in
            return None
        if plan is not None and "before" in plan and np.array_equal(plan["before"], self._host):
            slot, col, host_slot, host_col = plan["slot"], plan["col"], plan["host_slot"], plan["host_col"]
        else:
            before = self._host.copy()
            host_slot, host_col = _host_replacement(before, keys, self.k)
            slot, col = (torch.from_numpy(a).to(self.windows.device, non_blocking=True) for a in (host_slot, host_col))
            if plan is not None:
                plan.update(before=before, slot=slot, col=col, host_slot=host_slot, host_col=host_col)
        self._host[host_slot] = keys[host_col]
        self.windows[slot] = window_ids[col]
        return slot, col

    def _keys(self, windows: torch.Tensor) -> torch.Tensor:
        keys = torch.from_numpy(sample_keys(windows.clamp(min=0).cpu().numpy(), self.seed)).to(windows.device)
        return keys.masked_fill_(windows < 0, VACANT)

    def merge(self, keys: torch.Tensor, windows: torch.Tensor, acts: torch.Tensor) -> None:
        """Add another reservoir's :meth:`state` (same seed; windows may overlap): see :meth:`TopK.merge`."""
        if self.k == 0:
            return
        windows = torch.cat([self.windows, windows.to(self.windows)])
        keys = torch.cat([self.keys, self._keys(windows[self.k:])])
        take = best_k(keys[None], windows[None], self.k)[0]
        self._host, self.windows = keys[take].cpu().numpy(), windows[take]
        self.acts = torch.cat([self.acts, acts.to(self.acts)], 1)[:, take].contiguous()

    def sorted_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(windows (k,), acts (units, k, T) float32) in sample order (smallest hash first), empty slots last."""
        order = self.keys.argsort(descending=True, stable=True)
        return self.windows[order].cpu().numpy(), self.acts[:, order].float().cpu().numpy()

    def state(self) -> dict[str, torch.Tensor]:
        return {"keys": self.keys, "windows": self.windows, "acts": self.acts}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("windows", "acts"):  # keys follow from the windows (older checkpoints stored floats)
            getattr(self, name).copy_(state[name])
        self._host = self._keys(self.windows).cpu().numpy()


class ReservoirGroup:
    """The random samples of one split of every recorded layer updated as one (a recorder on a GPU, with
    :class:`TopKGroup`). They see the same windows under the same seed, so they hold the same windows: the group
    works out the choice once and copies the windows that get in for every layer's units in one copy. The
    reservoirs share their host keys and hold views of the group's windows (one row each) and activations; a
    reservoir whose tensors were replaced since (a checkpoint loaded, a merge) is read again."""

    def __init__(self, reservoirs: list[Reservoir]):
        self.reservoirs = reservoirs
        self.k = reservoirs[0].k
        self.sizes = [r.acts.shape[0] for r in reservoirs]
        self._held: list[tuple] = []
        self._acts = self._windows = torch.empty(0)

    def _sync(self) -> None:
        if _still_held([(r.windows, r.acts, r._host) for r in self.reservoirs], self._held):
            return
        lead = self.reservoirs[0]
        self._acts = torch.cat([r.acts for r in self.reservoirs])
        self._windows = torch.stack([r.windows for r in self.reservoirs])
        for r, acts, windows in zip(self.reservoirs, self._acts.split(self.sizes), self._windows):
            r.windows, r._host, r.acts = windows, lead._host, acts
        self._held = [(r.windows, r.acts, r._host) for r in self.reservoirs]

    def update(self, acts: BatchActs, window_ids: torch.Tensor, eligible: np.ndarray, ids: np.ndarray | None = None,
               keys: np.ndarray | None = None) -> None:
        """As :meth:`Reservoir.update` with ``acts`` over every unit of the group, in order."""
        if self.k == 0 or not eligible.any():
            return
        self._sync()
        chosen = self.reservoirs[0].choose(window_ids, eligible, ids, keys)  # the first reservoir's windows too
        if chosen is not None:
            slot, col = chosen
            self._windows[:, slot] = window_ids[col]
            self._acts[:, slot] = acts.window_rows(col).to(self._acts.dtype)


STAT_FIELDS = ("count", "total", "total_sq", "positive", "max", "min")

STATS_LOOP = True
"""Whether fused statistics take numba's loop where it applies (False: inductor's kernel; benchmarks compare the
two). The loop streams the batch token by token along the units; inductor's kernel reads each block of units
down the tokens, rows 4 KB apart."""

FUSE_MIN_ELEMENTS = 1 << 20
"""Batches smaller than this many activations (per layer) take plain torch ops even with ``fuse``: a fused kernel
saves little there, and which path a batch takes depends on its shape only, never on the machine."""

FLOAT_BLOCK_BYTES = 1 << 29
"""The largest float32 copy of activations the statistics of every layer at once (``batch_stats(by_unit=True)``)
make: 512 MB, so a large model's batch is reduced in blocks of units."""

log = logging.getLogger(__name__)


class BatchStats(NamedTuple):
    """One layer's reductions of one batch (B, T, units): per window max and min (B, units), and per unit the
    sum, the sum of squares and the count of positive activations over the batch's tokens (float32)."""

    window_max: torch.Tensor
    window_min: torch.Tensor
    total: torch.Tensor
    total_sq: torch.Tensor
    positive: torch.Tensor
    count: int


def _plain(acts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    flat = acts.reshape(-1, acts.shape[-1])
    return (acts.amax(1), acts.amin(1), flat.sum(0, dtype=torch.float32),
            flat.square().sum(0, dtype=torch.float32),
            flat.sign().clamp_(min=0).sum(0, dtype=torch.float32))  # faster than a bool sum


def _one_pass(acts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The same reductions written for one fused kernel (torch.compile reads the batch once). The sums run over
    each window's tokens first, like the max and min, so all five reduce along one axis in one loop (a sum over
    both axes at once compiled to a second pass, ~40% slower)."""
    a = acts.float()
    return a.amax(1), a.amin(1), a.sum(1).sum(0), (a * a).sum(1).sum(0), (a > 0).float().sum(1).sum(0)


@functools.cache
def _fused_kernel():
    """``_one_pass`` compiled (dynamic shapes: one kernel for every batch shape), or None when torch.compile
    cannot build it here (no C++ compiler, an unsupported platform): then plain ops, with one warning. Built
    once per process."""
    try:
        kernel = torch.compile(_one_pass, dynamic=True)
        kernel(torch.zeros((2, 3, 4), dtype=torch.float32))  # compiles now: a failure surfaces here, not mid-recording
        return kernel
    except Exception as err:  # noqa: BLE001 - any failure to compile means: use the plain ops
        log.warning("recording uses plain torch ops for the per-token statistics (the fused kernel did not "
                    "compile: %s); --no-fuse silences this", str(err).strip().splitlines()[0] if str(err).strip()
                    else type(err).__name__)
        return None


def batch_stats(acts: torch.Tensor, fuse: bool = False, *, by_unit: bool = False) -> BatchStats:
    """:class:`BatchStats` of ``acts`` (B, T, units). ``fuse``: on CPU, for batches of at least
    :data:`FUSE_MIN_ELEMENTS` activations, one compiled loop reads the batch once instead of five passes
    (several times faster; the sums differ from the plain ops' in float32 rounding only, and the window max and
    min are exact either way): numba's (:func:`.fastpath.batch_stats`, bfloat16 and float32 with contiguous
    units; :data:`STATS_LOOP`), else inductor's (:func:`_one_pass` compiled). The two give the same bits (both
    sum each window's tokens in order, then the windows in order), so the path is a function of the batch's shape
    and the setting only, and processes that record chunks of one corpus sum alike. ``by_unit``: ``acts`` is laid out
    (B, units, T) (a recorder's every layer at once, :class:`StatsGroup`), reduced by plain ops, each window's tokens
    summed first, in blocks of units of at most :data:`FLOAT_BLOCK_BYTES` as float32."""
    if by_unit:
        b, n, t = acts.shape
        step = max(1, FLOAT_BLOCK_BYTES // (4 * b * t))
        parts = []
        for lo in range(0, n, step):
            x = acts[:, lo:lo + step]
            a = x.float()
            parts.append((x.amax(2), x.amin(2), a.sum(2).sum(0), a.square().sum(2).sum(0),
                          (x > 0).sum(2, dtype=torch.float32).sum(0)))
        joined = parts[0] if len(parts) == 1 else [torch.cat(p, dim=p[0].dim() - 1) for p in zip(*parts)]
        return BatchStats(*joined, count=b * t)
    parts = None
    if fuse and acts.device.type == "cpu" and acts.numel() >= FUSE_MIN_ELEMENTS:
        parts = fastpath.batch_stats(acts) if STATS_LOOP else None
        if parts is None:
            kernel = _fused_kernel()
            parts = kernel(acts) if kernel is not None else None
    if parts is None:
        parts = _plain(acts)
    return BatchStats(*parts, count=acts.shape[0] * acts.shape[1])


class Stats:
    """Running per-unit statistics over every recorded token: count, mean, std, max, min and the fraction
    of tokens with a positive activation (the paper picks the most frequently activating neurons).

    Batches are added to the current chunk's partial sums (:attr:`part`); :meth:`fold` adds a chunk's partial
    to the totals. Float sums depend on the order of the additions: folding whole chunks in chunk order makes
    the totals the same whichever process summed which chunk."""

    def __init__(self, n_units: int, device="cpu"):
        self.n_units, self.device = n_units, device
        for name, value in self.empty().items():
            setattr(self, name, value)
        self.part = self.empty()

    def empty(self) -> dict[str, torch.Tensor]:
        z = lambda: torch.zeros(self.n_units, dtype=torch.float64, device=self.device)  # noqa: E731
        return {"count": z(), "total": z(), "total_sq": z(), "positive": z(),
                "max": torch.full((self.n_units,), -torch.inf, dtype=torch.float64, device=self.device),
                "min": torch.full((self.n_units,), torch.inf, dtype=torch.float64, device=self.device)}

    def update(self, batch: BatchStats) -> None:
        """Add one batch's reductions (:func:`batch_stats`) to the current chunk."""
        p = self.part
        p["count"] += batch.count
        p["total"] += batch.total
        p["total_sq"] += batch.total_sq
        p["positive"] += batch.positive
        torch.maximum(p["max"], batch.window_max.amax(0).double(), out=p["max"])
        torch.minimum(p["min"], batch.window_min.amin(0).double(), out=p["min"])

    def take_part(self) -> dict[str, torch.Tensor]:
        """The current chunk's partial sums; the next batch starts a new chunk."""
        part, self.part = self.part, self.empty()
        return part

    def fold(self, part: dict[str, torch.Tensor]) -> None:
        """Add one chunk's partial sums (from :meth:`take_part`, here or in another process) to the totals."""
        for name in ("count", "total", "total_sq", "positive"):
            getattr(self, name).add_(part[name].to(self.device))
        torch.maximum(self.max, part["max"].to(self.device), out=self.max)
        torch.minimum(self.min, part["min"].to(self.device), out=self.min)

    def state(self) -> dict[str, torch.Tensor]:
        return {**{k: getattr(self, k) for k in STAT_FIELDS}, **{f"part.{k}": v for k, v in self.part.items()}}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for name, tensor in state.items():
            target = self.part[name[5:]] if name.startswith("part.") else getattr(self, name)
            target.copy_(tensor)

    def summary(self) -> dict[str, np.ndarray]:
        """Totals over every folded chunk and the current one."""
        count, total = self.count + self.part["count"], self.total + self.part["total"]
        total_sq, positive = self.total_sq + self.part["total_sq"], self.positive + self.part["positive"]
        n = count.clamp(min=1)
        mean = total / n
        var = (total_sq / n - mean * mean).clamp(min=0)
        return {"mean": mean.cpu().numpy(), "std": var.sqrt().cpu().numpy(),
                "max": torch.maximum(self.max, self.part["max"]).cpu().numpy(),
                "min": torch.minimum(self.min, self.part["min"]).cpu().numpy(),
                "frequency": (positive / n).cpu().numpy()}


class StatsGroup:
    """Several layers' :class:`Stats` updated as one over all their units (a recorder on a GPU, with
    :class:`TopKGroup`): the current chunk's partial sums of each are views of the group's tensors, updated in
    place; a chunk taken (:meth:`Stats.take_part`) or a checkpoint loaded starts new ones, which are read again."""

    def __init__(self, stats: list[Stats]):
        self.stats = stats
        self.sizes = [st.n_units for st in stats]
        self._held: list[tuple[torch.Tensor, ...]] = []
        self._all = Stats(0, device=stats[0].device)

    def update(self, batch: BatchStats) -> None:
        """As :meth:`Stats.update` with ``batch`` over every unit of the group, in order."""
        held = [tuple(st.part[f] for f in STAT_FIELDS) for st in self.stats]
        if not _still_held(held, self._held):
            self._all.part = {f: torch.cat([h[i] for h in held]) for i, f in enumerate(STAT_FIELDS)}
            views = [t.split(self.sizes) for t in self._all.part.values()]
            self._held = [tuple(v[i] for v in views) for i in range(len(self.stats))]
            for st, part in zip(self.stats, self._held):
                st.part = dict(zip(STAT_FIELDS, part))
        self._all.update(batch)
