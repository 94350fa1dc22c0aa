"""Recording: stream windows through the subject model and keep each unit's exemplars, resumably.

One forward pass of the model body (never the output layer) per batch; hooks hand each layer's hookpoint
tensor to that layer's trackers, and the pass stops after the deepest recorded layer. A checkpoint is
written atomically every ``checkpoint_every`` seconds to ``<out>.partial/``; rerunning the same command
resumes from it. The store itself appears only when recording is complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__
from ..atomic import atomic_write_bytes
from ..corpus import TextSource
from ..errors import CorpusError, ModelError, RecordingError, StoreError
from ..exemplars.store import LayerData, write_store
from ..models.hookpoints import Encoder, HookSpec, decoder_layers
from ..models.subject import Subject
from ..types import SPLITS
from .config import RecordConfig
from .hooks import StopForward, capture
from .trackers import BatchActs, Reservoir, Stats, TopK
from .windows import iter_windows, split_of

__all__ = ["Recorder", "record"]

log = logging.getLogger(__name__)


@dataclass
class _Layer:
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


class Recorder:
    """Records ``config``'s units of ``subject``. Use :meth:`record` (or the module-level :func:`record`)."""

    def __init__(self, subject: Subject, config: RecordConfig):
        self.subject, self.config = subject, config
        self.hook = HookSpec.parse(config.hookpoint)
        self.device = subject.device
        model = subject.model
        layers_path, layer_list = decoder_layers(model)
        self.unit_sel = config.units(len(layer_list))
        self.paths = {layer: self.hook.module_path(model, layer) for layer in self.unit_sel}
        deepest = max(self.unit_sel)
        inside = all(p.startswith(f"{layers_path}.") for p in self.paths.values())
        # Cut the pass after the deepest recorded layer when every hookpoint lives inside the layer stack.
        self.stop_after = f"{layers_path}.{deepest}" if inside else None
        self.dtype = next(model.parameters()).dtype
        self.layers = {layer: self._build_layer(layer, dim) for layer, dim in self._probe_dims().items()}

    # -- set-up -----------------------------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor) -> None:
        prefix = torch.tensor(self.subject.prefix_ids, dtype=torch.long, device=ids.device)
        full = torch.cat([prefix.expand(ids.shape[0], -1), ids], dim=1) if len(prefix) else ids
        try:
            self.subject.body(input_ids=full, use_cache=False)
        except StopForward:
            pass

    def _probe_dims(self) -> dict[int, int]:
        dims: dict[int, int] = {}
        fns = {path: (lambda x, layer=layer: dims.__setitem__(layer, x.shape[-1])) for layer, path in self.paths.items()}
        with torch.inference_mode(), capture(self.subject.model, fns, self.hook.io, self.stop_after):
            self._forward(torch.tensor([self.subject.encode("Hello world")], device=self.device))
        return dims

    def _build_layer(self, layer: int, dim: int) -> _Layer:
        c = self.config
        encoder = None
        if c.encoder:
            encoder = Encoder.load(c.encoder.replace("{layer}", str(layer))).to(self.device)
            if encoder.d_in != dim:
                raise ModelError(f"encoder for layer {layer} expects {encoder.d_in} inputs but the hookpoint "
                                 f"{self.hook} has {dim}: check --encoder and --hookpoint")
            dim = encoder.W_enc.shape[1]
        chosen = self.unit_sel[layer]
        if chosen is not None and chosen[-1] >= dim:
            raise ModelError(f"unit {layer}:{chosen[-1]} does not exist: layer {layer} has {dim} units "
                             f"(0..{dim - 1}) at hookpoint {self.hook}")
        n = dim if chosen is None else len(chosen)
        units = None if chosen is None else torch.tensor(chosen, dtype=torch.long, device=self.device)
        kw = dict(window=c.window, dtype=self.dtype, device=self.device)
        return _Layer(
            path=self.paths[layer], units=units, encoder=encoder, n_units=n,
            top=[TopK(n, k, **kw) for k in c.per_split(c.top_k)],
            rand=[Reservoir(n, k, seed=c.seed, **kw) for k in c.per_split(c.random_k)],
            neg=[TopK(n, k, **kw) for k in c.per_split(c.negative_k)],
            stats=Stats(n, device=self.device))

    def unit_indices(self, layer: int) -> np.ndarray:
        units = self.layers[layer].units
        return np.arange(self.layers[layer].n_units) if units is None else units.cpu().numpy()

    # -- the hot path -----------------------------------------------------------------------------------
    def _handler(self, layer: int, batch: dict):
        state = self.layers[layer]
        n_prefix = len(self.subject.prefix_ids)
        want_negative = any(t.k for t in state.neg)

        def handle(x: torch.Tensor) -> None:
            acts, base, skip = x[:, n_prefix:, :], x, n_prefix  # base/skip: what ``acts`` is a view of
            if state.encoder is not None:
                acts = base = state.encoder(acts)
                skip = 0
            if state.units is not None:
                acts = base = acts.index_select(2, state.units)
                skip = 0
            wmax = acts.amax(1)  # (B, U): computed once, shared by the stats and every split's tracker
            wmin = acts.amin(1)
            if not bool(torch.isfinite(state.stats.update(acts, wmax, wmin)).all()):
                raise RecordingError(f"non-finite activations at layer {layer} in windows {batch['first']}.."
                                     f"{batch['first'] + len(batch['ids']) - 1}: record with --dtype float32")
            shared = BatchActs(acts, base, skip)
            for s, (mask, outside) in enumerate(batch["splits"]):
                if not mask.any():
                    continue
                state.top[s].update(wmax.masked_fill(outside, -torch.inf), shared, batch["ids"])
                if want_negative:
                    state.neg[s].update((-wmin).masked_fill(outside, -torch.inf), shared, batch["ids"])
                state.rand[s].update(shared, batch["ids"], mask)

        return handle

    def process(self, window_ids: np.ndarray, tokens: np.ndarray) -> None:
        """Run one batch of windows (ids (B,), tokens (B, T)) through the model and every tracker."""
        split = split_of(window_ids, self.config.seed, self.config.fractions)
        ids = torch.from_numpy(window_ids.astype(np.int64)).to(self.device)
        splits = [(split == s, torch.from_numpy(split != s).to(self.device)[:, None]) for s in range(len(SPLITS))]
        batch = {"ids": ids, "splits": splits, "first": int(window_ids[0])}
        fns = {self.paths[layer]: self._handler(layer, batch) for layer in self.layers}
        with torch.inference_mode(), capture(self.subject.model, fns, self.hook.io, self.stop_after):
            self._forward(torch.from_numpy(tokens).to(self.device))

    # -- checkpoints ------------------------------------------------------------------------------------
    def fingerprint(self, source: TextSource) -> str:
        cfg = {k: v for k, v in self.config.to_dict().items() if k not in ("checkpoint_every", "device", "tokens")}
        blob = json.dumps({"config": cfg, "corpus": source.describe(), "model": self.subject.name,
                           "dtype": str(self.dtype)}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _state(self) -> dict[str, torch.Tensor]:
        out = {}
        for layer, st in self.layers.items():
            for name, tracker in st.trackers().items():
                for key, tensor in tracker.state().items():
                    out[f"{layer}.{name}.{key}"] = tensor.detach().contiguous().cpu()
        return out

    def save_checkpoint(self, directory: Path, fingerprint: str, done: int, windows: dict[int, np.ndarray]) -> None:
        from safetensors.torch import save

        tensors = self._state()
        keep = sorted(windows)
        tensors["windows.ids"] = torch.tensor(keep, dtype=torch.int64)
        tensors["windows.tokens"] = torch.from_numpy(np.stack([windows[w] for w in keep])) if keep else \
            torch.zeros((0, self.config.window), dtype=torch.int64)
        meta = {"fingerprint": fingerprint, "windows_done": str(done)}
        atomic_write_bytes(directory / "state.safetensors", save(tensors, metadata=meta))

    def load_checkpoint(self, directory: Path, fingerprint: str) -> tuple[int, dict[int, np.ndarray]]:
        from safetensors import safe_open

        file = directory / "state.safetensors"
        try:
            with safe_open(str(file), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("fingerprint") != fingerprint:
                    raise StoreError(f"{directory} holds a partial recording with other settings: delete it, or "
                                     "rerun with the options it was started with")
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except StoreError:
            raise
        except Exception as err:
            raise StoreError(f"checkpoint {file} is unreadable ({err}): delete {directory} to start over") from None
        for layer, st in self.layers.items():
            for name, tracker in st.trackers().items():
                prefix = f"{layer}.{name}."
                tracker.load({k[len(prefix):]: v.to(self.device) for k, v in tensors.items() if k.startswith(prefix)})
        windows = dict(zip(tensors["windows.ids"].tolist(), tensors["windows.tokens"].numpy()))
        return int(meta["windows_done"]), windows

    def referenced_windows(self) -> np.ndarray:
        parts = [t.windows.reshape(-1) for st in self.layers.values() for t in (*st.top, *st.rand, *st.neg)]
        ids = torch.unique(torch.cat(parts)).cpu().numpy()
        return ids[ids >= 0]

    # -- the whole run ----------------------------------------------------------------------------------
    def record(self, source: TextSource, out: str | Path, *, overwrite: bool = False, progress: bool = True) -> Path:
        c = self.config
        out = Path(out)
        if out.exists() and not overwrite:
            raise StoreError(f"{out} already exists: choose another --out or pass --overwrite")
        partial = out.with_name(out.name + ".partial")
        fingerprint = self.fingerprint(source)
        done, windows = 0, {}
        if (partial / "state.safetensors").exists():
            done, windows = self.load_checkpoint(partial, fingerprint)
            log.info("resuming from %s: %d windows already recorded", partial, done)
        partial.mkdir(parents=True, exist_ok=True)

        total = c.tokens // c.window
        stream = iter_windows(source.documents(), self.subject.encode, c.window, separator=self.subject.encode("\n\n"))
        for _ in islice(stream, done):  # skip what the checkpoint already holds (same corpus, same order)
            pass
        bar = tqdm(total=total * c.window, initial=done * c.window, unit="tok", unit_scale=True,
                   desc=f"recording {sum(st.n_units for st in self.layers.values())} units", disable=not progress)
        start, last_ckpt, batches = time.perf_counter(), time.perf_counter(), 0
        try:
            while done < total:
                chunk = list(islice(stream, min(c.batch_size, total - done)))
                if not chunk:
                    log.warning("the corpus ran out after %d windows (%d tokens)", done, done * c.window)
                    break
                ids = np.arange(done, done + len(chunk))
                tokens = np.stack(chunk)
                windows.update(zip(ids.tolist(), tokens))
                self.process(ids, tokens)
                done += len(chunk)
                batches += 1
                bar.update(len(chunk) * c.window)
                if batches % 32 == 0:
                    windows = {w: windows[w] for w in self.referenced_windows().tolist()}
                if time.perf_counter() - last_ckpt > c.checkpoint_every:
                    self.save_checkpoint(partial, fingerprint, done, windows)
                    last_ckpt = time.perf_counter()
        finally:
            bar.close()
        if done == 0:
            raise CorpusError(f"corpus {source.describe().get('location', c.corpus)} yields no full window of "
                              f"{c.window} tokens: give more text or a smaller --window")
        elapsed = time.perf_counter() - start
        path = self._write(out, source, done, windows, elapsed, overwrite)
        shutil.rmtree(partial, ignore_errors=True)
        return path

    def _write(self, out: Path, source: TextSource, done: int, windows: dict[int, np.ndarray], elapsed: float,
               overwrite: bool) -> Path:
        ref = self.referenced_windows()
        row_of = np.full(done, -1, dtype=np.int64)
        row_of[ref] = np.arange(len(ref))
        token_ids = np.stack([windows[w] for w in ref.tolist()]) if len(ref) else np.zeros((0, self.config.window), np.int64)
        vocab, table = np.unique(token_ids, return_inverse=True)
        strings = self.subject.token_strings(vocab.tolist())
        remap = lambda w: np.where(w >= 0, row_of[np.clip(w, 0, None)], -1)  # noqa: E731
        layers = {}
        for layer, st in self.layers.items():
            slots = {}
            for s, split in enumerate(SPLITS):
                windows_, acts_ = st.top[s].sorted_state()
                slots[(split, "top")] = (remap(windows_), acts_)
                rw, racts = st.rand[s].sorted_state()
                slots[(split, "random")] = (np.broadcast_to(remap(rw), (st.n_units, len(rw))).copy(), racts)
                if self.config.negative_k:
                    windows_, acts_ = st.neg[s].sorted_state()
                    slots[(split, "negative")] = (remap(windows_), acts_)
            layers[layer] = LayerData(units=self.unit_indices(layer), slots=slots, stats=st.stats.summary())
        manifest = {
            "source": "recorded", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "ns_dspy_version": __version__, "model": self.subject.describe(), "hookpoint": str(self.hook),
            "encoder": self.config.encoder or None, "corpus": source.describe(), "config": self.config.to_dict(),
            "windows_recorded": done, "tokens_recorded": done * self.config.window,
            "seconds": round(elapsed, 1), "tokens_per_second": round(done * self.config.window / max(elapsed, 1e-9)),
        }
        split = split_of(ref, self.config.seed, self.config.fractions)
        return write_store(out, manifest=manifest, strings=strings, windows=table.reshape(token_ids.shape),
                           window_split=split, layers=layers, token_ids=token_ids, overwrite=overwrite)


def record(config: RecordConfig, out: str | Path, *, overwrite: bool = False, progress: bool = True,
           subject: Subject | None = None, source: TextSource | None = None) -> Path:
    """Load the model and corpus named by ``config`` (unless given) and record into the store ``out``.

    Layers and units are checked against the model's config first (:mod:`ns_dspy.models.shape`), before the
    corpus is opened or the model is converted, downloaded or loaded."""
    from ..corpus import open_corpus
    from ..models.shape import check_units, model_shape
    from ..models.subject import load_subject

    if subject is None:
        shape = model_shape(config.model)
        if shape is not None:
            check_units(config, shape)
    source = source or open_corpus(config.corpus, text_field=config.text_field)
    subject = subject or load_subject(config.model, dtype=config.dtype, device=config.device or None)
    return Recorder(subject, config).record(source, out, overwrite=overwrite, progress=progress)
