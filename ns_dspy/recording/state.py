"""What a recording holds, whoever computed it: the chunks of the window stream, each layer's trackers, the
checkpoint and the store writer.

The window stream is cut into *chunks* of :func:`chunk_windows` windows (``CHUNK_BATCHES`` batches: a setting of
the recording, not of the machine), and batches never cross a chunk. :class:`RecordState` holds every layer's
trackers (top-k, random and negative selections are functions of the set of windows seen, see
:mod:`.trackers`), each layer's :class:`~.trackers.Stats` folded chunk by chunk in chunk order, and which chunks
are done. The single-process :class:`~.recorder.Recorder` and the distributed recorder
(:mod:`ns_dspy.cluster.record`: chunks recorded by Ray workers, merged by the driver) both fill a ``RecordState``,
so they write the same store, byte for byte, and either resumes the other's checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..atomic import atomic_write_bytes
from ..corpus import TextSource
from ..errors import StoreError
from ..exemplars.store import LayerData, write_store
from ..models.hookpoints import Encoder
from ..models.subject import Subject
from ..types import SPLITS
from .config import RecordConfig
from .trackers import STAT_FIELDS, Reservoir, Stats, TopK
from .windows import split_of

__all__ = ["CHUNK_BATCHES", "TIMING_FIELDS", "LayerState", "RecordState", "chunk_windows", "iter_chunks",
           "fingerprint", "make_layer"]

CHUNK_BATCHES = 16
"""Batches per chunk: a chunk is ``CHUNK_BATCHES * batch_size`` consecutive windows (512 by default)."""


def chunk_windows(config: RecordConfig) -> int:
    """Windows per chunk, a multiple of the batch size: batches are the same whether chunks are recorded in one
    process or spread over workers."""
    return CHUNK_BATCHES * config.batch_size


def iter_chunks(stream, total: int, size: int):
    """Yield ``(chunk, first_window, tokens (n, T))`` for consecutive chunks of ``size`` windows of ``stream``,
    up to ``total`` windows or the end of the stream."""
    chunk = 0
    while chunk * size < total:
        want = min(size, total - chunk * size)
        rows = list(islice(stream, want))
        if not rows:
            return
        yield chunk, chunk * size, np.stack(rows)
        if len(rows) < want:
            return
        chunk += 1


def fingerprint(config: RecordConfig, corpus: dict, model_name: str, dtype: str) -> str:
    """What a checkpoint must match to be resumed: the settings that change what is recorded."""
    cfg = {k: v for k, v in config.to_dict().items() if k not in ("checkpoint_every", "device", "tokens")}
    blob = json.dumps({"config": cfg, "corpus": corpus, "model": model_name, "dtype": dtype},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class LayerState:
    """One layer's units and trackers (``path``/``encoder``: where the recorder reads them; unused elsewhere)."""

    path: str
    units: torch.Tensor | None  # channel indices, None = all
    encoder: Encoder | None
    n_units: int
    top: list[TopK]
    rand: list[Reservoir]
    neg: list[TopK]
    stats: Stats

    def trackers(self) -> dict[str, object]:
        named = {"stats": self.stats}
        for s, split in enumerate(SPLITS):
            named.update({f"{split}.top": self.top[s], f"{split}.random": self.rand[s],
                          f"{split}.negative": self.neg[s]})
        return named

    def unit_indices(self) -> np.ndarray:
        return np.arange(self.n_units) if self.units is None else self.units.cpu().numpy()

    def selections(self) -> dict[str, list[tuple[torch.Tensor, ...]]]:
        """The top / random / negative trackers' states per split, on the CPU (for :meth:`RecordState.merge`)."""
        cpu = lambda t: tuple(x.detach().cpu() for x in t.state().values())  # noqa: E731
        return {"top": [cpu(t) for t in self.top], "random": [cpu(t) for t in self.rand],
                "negative": [cpu(t) for t in self.neg]}


def make_layer(config: RecordConfig, n_units: int, units: torch.Tensor | None, dtype, device, *, path: str = "",
               encoder: Encoder | None = None) -> LayerState:
    """Empty trackers for one layer of ``n_units`` units."""
    c = config
    kw = dict(window=c.window, dtype=dtype, device=device)
    return LayerState(
        path=path, units=units, encoder=encoder, n_units=n_units,
        top=[TopK(n_units, k, **kw) for k in c.per_split(c.top_k)],
        rand=[Reservoir(n_units, k, seed=c.seed, **kw) for k in c.per_split(c.random_k)],
        neg=[TopK(n_units, k, **kw) for k in c.per_split(c.negative_k)],
        stats=Stats(n_units, device=device))


class RecordState:
    """What a recording has accumulated, whoever computed it: every layer's trackers, which chunks are done, and
    the tokens of the windows the trackers hold.

    Chunks ``[0, folded)`` are complete and folded into every layer's ``Stats`` totals; ``complete`` holds the
    per-layer partial sums of later complete chunks (a distributed recording finishes chunks out of order) until
    every chunk before them is folded; ``current = (chunk, n)``: the first ``n`` windows of that chunk are
    recorded, their partial sums in each layer's ``Stats.part``.
    """

    def __init__(self, config: RecordConfig, layers: dict[int, LayerState]):
        self.config, self.layers = config, layers
        self.chunk = chunk_windows(config)
        self.folded = 0
        self.complete: dict[int, dict[int, dict[str, torch.Tensor]]] = {}
        self.current: tuple[int, int] | None = None
        self.windows: dict[int, np.ndarray] = {}

    # -- chunks -----------------------------------------------------------------------------------------
    def start_of(self, chunk: int) -> int | None:
        """Where recording chunk ``chunk`` resumes (0 = from its start); None when it is done."""
        if chunk < self.folded or chunk in self.complete:
            return None
        return self.current[1] if self.current and self.current[0] == chunk else 0

    def finish(self, chunk: int, parts: dict[int, dict[str, torch.Tensor]]) -> None:
        """Chunk ``chunk`` is complete with these per-layer partial sums: fold every chunk that can be, in order."""
        self.complete[chunk] = parts
        if self.current and self.current[0] == chunk:
            self.current = None
        self.fold_ready()

    def fold_ready(self) -> None:
        while self.folded in self.complete:
            parts = self.complete.pop(self.folded)
            for layer, st in self.layers.items():
                st.stats.fold(parts[layer])
            self.folded += 1

    def windows_done(self) -> int:
        """Windows recorded so far (counting whole chunks; the corpus' last chunk may be shorter)."""
        return (self.folded + len(self.complete)) * self.chunk + (self.current[1] if self.current else 0)

    # -- trackers ---------------------------------------------------------------------------------------
    def merge(self, selections: dict[int, dict[str, list[tuple[torch.Tensor, ...]]]],
              windows: dict[int, np.ndarray]) -> None:
        """Add trackers recorded elsewhere (:meth:`LayerState.selections`) and the tokens of their windows."""
        for layer, sel in selections.items():
            st = self.layers[layer]
            for kind, trackers in (("top", st.top), ("random", st.rand), ("negative", st.neg)):
                for tracker, state in zip(trackers, sel[kind]):
                    tracker.merge(*state)
        self.windows.update(windows)

    def referenced_windows(self) -> np.ndarray:
        parts = [t.windows.reshape(-1) for st in self.layers.values() for t in (*st.top, *st.rand, *st.neg)]
        ids = torch.unique(torch.cat(parts)).cpu().numpy()
        return ids[ids >= 0]

    def prune_windows(self) -> None:
        """Forget the tokens of windows no tracker holds any more (in place: a recorder may be adding to it)."""
        keep = set(self.referenced_windows().tolist())
        for w in [w for w in self.windows if w not in keep]:
            del self.windows[w]

    # -- checkpoints ------------------------------------------------------------------------------------
    def save_checkpoint(self, directory: Path, fingerprint: str) -> None:
        from safetensors.torch import save

        tensors = {}
        for layer, st in self.layers.items():
            for name, tracker in st.trackers().items():
                for key, tensor in tracker.state().items():
                    tensors[f"{layer}.{name}.{key}"] = tensor.detach().contiguous().cpu()
        for chunk, parts in self.complete.items():
            for layer, part in parts.items():
                for key, tensor in part.items():
                    tensors[f"chunk.{chunk}.{layer}.{key}"] = tensor.detach().contiguous().cpu()
        keep = sorted(self.windows)
        tensors["windows.ids"] = torch.tensor(keep, dtype=torch.int64)
        tensors["windows.tokens"] = torch.from_numpy(np.stack([self.windows[w] for w in keep])) if keep else \
            torch.zeros((0, self.config.window), dtype=torch.int64)
        progress = {"chunk": self.chunk, "folded": self.folded, "complete": sorted(self.complete),
                    "current": list(self.current) if self.current else None}
        meta = {"fingerprint": fingerprint, "progress": json.dumps(progress)}
        atomic_write_bytes(directory / "state.safetensors", save(tensors, metadata=meta))

    def load_checkpoint(self, directory: Path, fingerprint: str) -> None:
        from safetensors import safe_open

        file = directory / "state.safetensors"
        try:
            with safe_open(str(file), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("fingerprint") != fingerprint:
                    raise StoreError(f"{directory} holds a partial recording with other settings: delete it, or "
                                     "rerun with the options it was started with")
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            if "progress" in meta:
                progress = json.loads(meta["progress"])
                if progress["chunk"] != self.chunk:
                    raise ValueError(f"chunks of {progress['chunk']} windows, not {self.chunk}")
            else:  # written before chunks: everything recorded is in the totals
                done = int(meta["windows_done"])
                progress = {"folded": done // self.chunk, "complete": [],
                            "current": [done // self.chunk, done % self.chunk] if done % self.chunk else None}
            for layer, st in self.layers.items():
                device = st.stats.count.device
                for name, tracker in st.trackers().items():
                    prefix = f"{layer}.{name}."
                    tracker.load({k[len(prefix):]: v.to(device) for k, v in tensors.items() if k.startswith(prefix)})
            complete = {int(chunk): {layer: {key: tensors[f"chunk.{chunk}.{layer}.{key}"] for key in STAT_FIELDS}
                                     for layer in self.layers} for chunk in progress["complete"]}
            windows = dict(zip(tensors["windows.ids"].tolist(), tensors["windows.tokens"].numpy()))
        except StoreError:
            raise
        except Exception as err:
            raise StoreError(f"checkpoint {file} is unreadable ({err}): delete {directory} to start over") from None
        self.folded = int(progress["folded"])
        self.current = tuple(progress["current"]) if progress["current"] else None
        self.complete, self.windows = complete, windows
        self.fold_ready()

    # -- the store --------------------------------------------------------------------------------------
    def write(self, out: Path, *, vocab: Subject, model: dict, hookpoint: str, source: TextSource, done: int,
              elapsed: float, overwrite: bool) -> Path:
        """Write the store: ``vocab`` decodes token ids, ``model`` is the subject's ``describe()``."""
        config = self.config
        ref = self.referenced_windows()
        row_of = np.full(done, -1, dtype=np.int64)
        row_of[ref] = np.arange(len(ref))
        token_ids = np.stack([self.windows[w] for w in ref.tolist()]) if len(ref) else \
            np.zeros((0, config.window), np.int64)
        vocab_ids, table = np.unique(token_ids, return_inverse=True)
        strings = vocab.token_strings(vocab_ids.tolist())
        remap = lambda w: np.where(w >= 0, row_of[np.clip(w, 0, None)], -1)  # noqa: E731
        layers = {}
        for layer, st in self.layers.items():
            slots = {}
            for s, split in enumerate(SPLITS):
                windows_, acts_ = st.top[s].sorted_state()
                slots[(split, "top")] = (remap(windows_), acts_)
                rw, racts = st.rand[s].sorted_state()
                slots[(split, "random")] = (np.broadcast_to(remap(rw), (st.n_units, len(rw))).copy(), racts)
                if config.negative_k:
                    windows_, acts_ = st.neg[s].sorted_state()
                    slots[(split, "negative")] = (remap(windows_), acts_)
            layers[layer] = LayerData(units=st.unit_indices(), slots=slots, stats=st.stats.summary())
        manifest = {
            "source": "recorded", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "ns_dspy_version": __version__, "model": model, "hookpoint": hookpoint,
            "encoder": config.encoder or None, "corpus": source.describe(), "config": config.to_dict(),
            "windows_recorded": done, "tokens_recorded": done * config.window, "chunk_windows": self.chunk,
            "seconds": round(elapsed, 1), "tokens_per_second": round(done * config.window / max(elapsed, 1e-9)),
        }
        split = split_of(ref, config.seed, config.fractions)
        return write_store(out, manifest=manifest, strings=strings, windows=table.reshape(token_ids.shape),
                           window_split=split, layers=layers, token_ids=token_ids, overwrite=overwrite)


TIMING_FIELDS = ("created", "seconds", "tokens_per_second")
"""The fields of a recorded store's manifest that depend on when and how fast it was recorded (the only ones
that differ between two recordings of the same corpus and settings, whatever the executor)."""
