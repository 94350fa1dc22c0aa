"""Streaming selection of exemplar windows with memory O(units x k), whatever the corpus size.

:class:`TopK` keeps, per unit, the ``k`` windows with the largest score (max activation, or minus the min
for most-negative windows) and their per-token activations. :class:`Reservoir` keeps a uniform random sample
of windows (the same windows for every unit, chosen by hashed keys, so the sample does not depend on batch
size). Slots are kept unsorted and only evicted slots are overwritten, in place: after warm-up an update
costs a comparison per unit and a copy of the few windows that get in. :meth:`sorted_state` orders them.
"""

from __future__ import annotations

import numpy as np
import torch

from .windows import uniform_keys

__all__ = ["BatchActs", "TopK", "Reservoir", "Stats", "replacement_pairs"]


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


def replacement_pairs(old: torch.Tensor, new: torch.Tensor, k: int, largest: bool):
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


class TopK:
    """Per-unit best ``k`` windows by ``score``. Empty slots have window -1 and value -inf.

    State: ``values`` (units, k) float32, ``windows`` (units, k) int64, ``acts`` (units, k, T).
    """

    def __init__(self, n_units: int, k: int, window: int, *, dtype=torch.float32, device="cpu"):
        self.k = k
        self.values = torch.full((n_units, k), -torch.inf, dtype=torch.float32, device=device)
        self.windows = torch.full((n_units, k), -1, dtype=torch.int64, device=device)
        self.acts = torch.zeros((n_units, k, window), dtype=dtype, device=device)

    def update(self, score: torch.Tensor, acts: BatchActs, window_ids: torch.Tensor) -> None:
        """``score`` (B, units) per window (-inf = not eligible), the batch's activations, ids (B,)."""
        if self.k == 0:
            return
        units = (score > self.values.min(1).values).any(0).nonzero().squeeze(1)
        if units.numel() == 0:
            return
        rows, slot, col = replacement_pairs(self.values[units], score[:, units].T.float(), self.k, largest=True)
        unit = units[rows]
        self.values[unit, slot] = score[col, unit].float()
        self.windows[unit, slot] = window_ids[col]
        self.acts[unit, slot] = acts.unit_rows(col, unit).to(self.acts.dtype)

    def sorted_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(windows (units, k), acts (units, k, T) float32), best first, empty slots last; equal scores in
        window order (not in the order they arrived, which depends on the batch size)."""
        by_window = self.windows.argsort(dim=1, stable=True)
        order = by_window.gather(1, self.values.gather(1, by_window).argsort(dim=1, descending=True, stable=True))
        windows = self.windows.gather(1, order)
        acts = self.acts.gather(1, order.unsqueeze(2).expand_as(self.acts))
        return windows.cpu().numpy(), acts.float().cpu().numpy()

    def state(self) -> dict[str, torch.Tensor]:
        return {"values": self.values, "windows": self.windows, "acts": self.acts}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for name, tensor in state.items():
            getattr(self, name).copy_(tensor)


class Reservoir:
    """A uniform sample of ``k`` windows shared by all units: the ``k`` smallest hashed keys seen so far.

    State: ``keys`` (k,) float64 (+inf when empty), ``windows`` (k,) int64, ``acts`` (units, k, T).
    """

    def __init__(self, n_units: int, k: int, window: int, *, seed: int, dtype=torch.float32, device="cpu"):
        self.k, self.seed = k, seed
        self.keys = torch.full((k,), torch.inf, dtype=torch.float64, device=device)
        self.windows = torch.full((k,), -1, dtype=torch.int64, device=device)
        self.acts = torch.zeros((n_units, k, window), dtype=dtype, device=device)

    def update(self, acts: BatchActs, window_ids: torch.Tensor, eligible: np.ndarray) -> None:
        """The batch's activations for windows ``window_ids`` (B,); only rows where ``eligible`` count."""
        if self.k == 0 or not eligible.any():
            return
        keys = uniform_keys(window_ids.cpu().numpy(), self.seed, stream=2)
        keys[~eligible] = np.inf
        keys = torch.from_numpy(keys).to(self.keys.device)
        if not bool((keys < self.keys.max()).any()):
            return
        _, slot, col = replacement_pairs(self.keys[None], keys[None], self.k, largest=False)
        self.keys[slot] = keys[col]
        self.windows[slot] = window_ids[col]
        self.acts[:, slot] = acts.window_rows(col).to(self.acts.dtype)

    def sorted_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(windows (k,), acts (units, k, T) float32) in key order, empty slots last."""
        order = self.keys.argsort(stable=True)
        return self.windows[order].cpu().numpy(), self.acts[:, order].float().cpu().numpy()

    def state(self) -> dict[str, torch.Tensor]:
        return {"keys": self.keys, "windows": self.windows, "acts": self.acts}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for name, tensor in state.items():
            getattr(self, name).copy_(tensor)


class Stats:
    """Running per-unit statistics over every recorded token: count, mean, std, max, min and the fraction
    of tokens with a positive activation (the paper picks the most frequently activating neurons)."""

    def __init__(self, n_units: int, device="cpu"):
        z = lambda: torch.zeros(n_units, dtype=torch.float64, device=device)  # noqa: E731
        self.count, self.total, self.total_sq, self.positive = z(), z(), z(), z()
        self.max = torch.full((n_units,), -torch.inf, dtype=torch.float64, device=device)
        self.min = torch.full((n_units,), torch.inf, dtype=torch.float64, device=device)

    def update(self, acts: torch.Tensor, window_max: torch.Tensor, window_min: torch.Tensor) -> torch.Tensor:
        """Add ``acts`` (B, T, units) with their per-window max/min (B, units); returns this batch's
        per-unit sum, which is non-finite if any activation is."""
        flat = acts.reshape(-1, acts.shape[-1])
        batch_sum = flat.sum(0, dtype=torch.float32)
        self.count += flat.shape[0]
        self.total += batch_sum
        self.total_sq += flat.square().sum(0, dtype=torch.float32)
        self.positive += flat.sign().clamp_(min=0).sum(0, dtype=torch.float32)  # faster than a bool sum
        self.max = torch.maximum(self.max, window_max.amax(0).double())
        self.min = torch.minimum(self.min, window_min.amin(0).double())
        return batch_sum

    def state(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k) for k in ("count", "total", "total_sq", "positive", "max", "min")}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for name, tensor in state.items():
            getattr(self, name).copy_(tensor)

    def summary(self) -> dict[str, np.ndarray]:
        n = self.count.clamp(min=1)
        mean = self.total / n
        var = (self.total_sq / n - mean * mean).clamp(min=0)
        return {"mean": mean.cpu().numpy(), "std": var.sqrt().cpu().numpy(), "max": self.max.cpu().numpy(),
                "min": self.min.cpu().numpy(), "frequency": (self.positive / n).cpu().numpy()}
