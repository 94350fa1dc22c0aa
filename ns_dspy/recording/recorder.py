"""Recording: stream windows through the subject model and keep each unit's exemplars, resumably.

One forward pass of the model body (never the output layer) per batch; hooks hand each layer's hookpoint
tensor to that layer's trackers, and the pass stops after the deepest recorded layer. Windows are recorded chunk
by chunk (:mod:`.state`) into a :class:`~.state.RecordState`. A checkpoint is written atomically every
``checkpoint_every`` seconds to ``<out>.partial/``; rerunning the same command resumes from it (with either
executor: :func:`record` runs here or, ``executor="ray"``, on a Ray cluster, with the same store as result).
The store itself appears only when recording is complete.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..corpus import TextSource
from ..errors import ConfigError, CorpusError, ModelError, RecordingError, StoreError
from ..models.hookpoints import Encoder, HookSpec, decoder_layers
from ..models.subject import Subject
from ..paths import check_writable
from ..types import SPLITS
from .config import RecordConfig
from .hooks import StopForward, capture
from .state import LayerState, RecordState, fingerprint, iter_chunks, make_layer
from .trackers import (EMPTY, BatchActs, ReservoirGroup, StatsGroup, TopKGroup, batch_stats, sample_keys,
                       sync_free)
from .windows import iter_windows, split_of

__all__ = ["Recorder", "record", "EXECUTORS"]

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
"""Where :func:`record` runs: this process, or a Ray cluster (:mod:`ns_dspy.cluster.record`)."""


def _non_finite(layer: int, batch: dict) -> RecordingError:
    return RecordingError(f"non-finite activations at layer {layer} in windows {batch['first']}.."
                          f"{batch['first'] + len(batch['ids']) - 1}: record with --dtype float32")


class Recorder:
    """Records ``config``'s units of ``subject``. Use :meth:`record` (or the module-level :func:`record`)."""

    GROUPED = True
    """Whether sync-free devices update every layer at once (:meth:`_groups`); benchmarks/record.py compares."""

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
        self._group_cache: dict | None = None

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

    def _build_layer(self, layer: int, dim: int) -> LayerState:
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
        return make_layer(c, n, units, self.dtype, self.device, path=self.paths[layer], encoder=encoder)

    def unit_indices(self, layer: int) -> np.ndarray:
        return self.layers[layer].unit_indices()

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
            if batch["grouped"] is not None:  # every layer's statistics and trackers at once, after the forward
                batch["grouped"][layer] = acts
                return
            reduced = batch_stats(acts, self.config.fuse)
            wmax, wmin = reduced.window_max, reduced.window_min  # (B, U): shared by the stats and every tracker
            finite = torch.isfinite(reduced.total).all()  # any non-finite activation makes its unit's sum so
            if sync_free(finite.device):
                batch["finite"].append((layer, finite))  # read once, after the forward (no wait per layer)
            elif not bool(finite):
                raise _non_finite(layer, batch)
            state.stats.update(reduced)
            shared = BatchActs(acts, base, skip)
            for s, (mask, rows, ids) in enumerate(batch["splits"]):
                if not mask.any():
                    continue
                # each tracker sees only its split's windows (rows of the batch)
                state.top[s].update(wmax[rows], shared, ids, batch["span"], batch_rows=rows)
                if want_negative:
                    state.neg[s].update(-wmin[rows], shared, ids, batch["span"], batch_rows=rows)
                state.rand[s].update(shared, batch["ids"], mask, batch["np_ids"], batch["sample_keys"][s],
                                     plan=batch["sample_plans"][s])

        return handle

    def process(self, window_ids: np.ndarray, tokens: np.ndarray) -> None:
        """Run one batch of windows (ids (B,), tokens (B, T)) through the model and every tracker."""
        split = split_of(window_ids, self.config.seed, self.config.fractions)
        ids = torch.from_numpy(window_ids.astype(np.int64)).to(self.device)
        rows = [torch.from_numpy(np.flatnonzero(split == s)).to(self.device) for s in range(len(SPLITS))]
        # per split: its windows (a mask), their rows of the batch and their ids, shared by every layer's handler
        splits = [(split == s, rows[s], ids[rows[s]]) for s in range(len(SPLITS))]
        # the random sample's keys (the same for every layer), with each split's ineligible windows EMPTY
        keys = sample_keys(window_ids.astype(np.int64), self.config.seed)
        split_keys = [np.where(mask, keys, EMPTY) for mask, _, _ in splits]
        batch = {"ids": ids, "splits": splits, "first": int(window_ids[0]), "np_ids": window_ids,
                 "span": (int(window_ids.min()), int(window_ids.max())), "sample_keys": split_keys,
                 "sample_plans": [{} for _ in splits],  # every layer's random sample of a split: one plan
                 "finite": [],  # (layer, flag on the device) where the check waits until the batch is done
                 "grouped": {} if self._groups() else None}  # layer -> its activations, for _update_groups
        fns = {self.paths[layer]: self._handler(layer, batch) for layer in self.layers}
        with torch.inference_mode(), capture(self.subject.model, fns, self.hook.io, self.stop_after):
            self._forward(torch.from_numpy(tokens).to(self.device))
            if batch["grouped"] is not None:
                self._update_groups(batch)
        if batch["finite"]:
            flags = torch.stack([flag for _, flag in batch["finite"]]).cpu().tolist()
            bad = [layer for (layer, _), ok in zip(batch["finite"], flags) if not ok]
            if bad:  # the trackers took this batch; the error ends the recording before anything is saved
                raise _non_finite(bad[0], batch)

    def _groups(self) -> dict | None:
        """Where the updates take no host reads (:func:`~.trackers.sync_free`: GPUs), the statistics of every layer
        as one :class:`~.trackers.StatsGroup` and, per split, the top (and negative) trackers of every layer as one
        :class:`~.trackers.TopKGroup` and their random samples as one :class:`~.trackers.ReservoirGroup`: a GPU
        then runs a few dozen kernels per batch for all layers instead of that many per layer, and its host, which
        launches them, is what recording waits on there. None elsewhere
        (the CPU's compiled updates are per layer), or when the layers' activations differ in dtype (an encoder's)
        or there is one layer. The cost is memory: every layer's activations of the batch stay until the forward
        ends, plus one copy of them by unit and a float32 block for the statistics (at most
        :data:`~.trackers.FLOAT_BLOCK_BYTES`): for gemma-3-270m at batch 32 ~0.8 GB, for Llama-3.1-8B ~4.4 GB."""
        if not self.GROUPED or not sync_free(self.device) or len(self.layers) < 2:
            return None
        states = list(self.layers.values())
        if len({st.top[0].acts.dtype for st in states}) > 1:
            return None
        if self._group_cache is None:
            layer_of = np.repeat(np.arange(len(states)), [st.n_units for st in states])
            self._group_cache = {"stats": StatsGroup([st.stats for st in states]),
                                 "layer_of": torch.from_numpy(layer_of).to(self.device),
                                 "rand": [ReservoirGroup([st.rand[s] for st in states]) for s in range(len(SPLITS))],
                                 **{kind: [TopKGroup([getattr(st, kind)[s] for st in states])
                                           for s in range(len(SPLITS))] for kind in ("top", "neg")}}
        return self._group_cache

    def _update_groups(self, batch: dict) -> None:
        """The statistics, top-k (and negative) and random-sample updates of every layer's units at once
        (:meth:`_groups`)."""
        groups = self._groups()
        # (B, units of every layer, T): each layer's (B, T, units) transposed into one tensor by one copy
        by_unit = torch.cat([batch["grouped"][layer].transpose(1, 2) for layer in self.layers], 1)
        reduced = batch_stats(by_unit, self.config.fuse, by_unit=True)
        # a non-finite activation makes its unit's sum so; each layer's flag is read once, after the batch
        bad = torch.zeros(len(self.layers), device=self.device).index_add_(
            0, groups["layer_of"], (~torch.isfinite(reduced.total)).float())
        batch["finite"].extend(zip(self.layers, bad == 0))
        groups["stats"].update(reduced)
        shared = BatchActs.of_units(by_unit)
        negative = any(g.k for g in groups["neg"])
        for s, (mask, rows, ids) in enumerate(batch["splits"]):
            if not mask.any():
                continue
            groups["top"][s].update(reduced.window_max[rows], shared, ids, batch["span"], batch_rows=rows)
            if negative:
                groups["neg"][s].update(-reduced.window_min[rows], shared, ids, batch["span"], batch_rows=rows)
            groups["rand"][s].update(shared, batch["ids"], mask, batch["np_ids"], batch["sample_keys"][s])

    def record_chunk(self, chunk: int, first: int, tokens: np.ndarray, start: int, windows: dict[int, np.ndarray],
                     after_batch=None) -> None:
        """Record windows ``start..`` of chunk ``chunk`` (``tokens``: all its windows, the first being window
        ``first``) in batches of ``batch_size`` counted from the chunk's start, adding each batch's tokens to
        ``windows``. ``after_batch(windows_of_the_chunk_done, windows_of_the_batch)`` runs after each batch."""
        size = self.config.batch_size
        for b in range(start, len(tokens), size):
            rows = tokens[b:b + size]
            ids = np.arange(first + b, first + b + len(rows))
            windows.update(zip(ids.tolist(), rows))
            self.process(ids, rows)
            if after_batch is not None:
                after_batch(b + len(rows), len(rows))

    def chunk_parts(self) -> dict[int, dict[str, torch.Tensor]]:
        """Each layer's partial sums of the chunk just recorded; the next batch starts a new chunk."""
        return {layer: st.stats.take_part() for layer, st in self.layers.items()}

    # -- checkpoints ------------------------------------------------------------------------------------
    def fingerprint(self, source: TextSource) -> str:
        return fingerprint(self.config, source.describe(), self.subject.name, str(self.dtype))

    def referenced_windows(self) -> np.ndarray:
        return RecordState(self.config, self.layers).referenced_windows()

    # -- the whole run ----------------------------------------------------------------------------------
    def record(self, source: TextSource, out: str | Path, *, overwrite: bool = False, progress: bool = True) -> Path:
        c = self.config
        out = check_output(out, overwrite)
        partial = out.with_name(out.name + ".partial")
        fingerprint_ = self.fingerprint(source)
        state = RecordState(c, self.layers)
        if (partial / "state.safetensors").exists():
            state.load_checkpoint(partial, fingerprint_)
            log.info("resuming from %s: %d windows already recorded", partial, state.windows_done())
        partial.mkdir(parents=True, exist_ok=True)

        total = c.tokens // c.window
        stream = iter_windows(source.documents(), self.subject.encode, c.window, separator=self.subject.encode("\n\n"))
        bar = tqdm(total=total * c.window, initial=min(state.windows_done(), total) * c.window, unit="tok",
                   unit_scale=True, desc=f"recording {sum(st.n_units for st in self.layers.values())} units",
                   disable=not progress)
        start, last_ckpt, batches, done = time.perf_counter(), time.perf_counter(), 0, 0

        def after_batch(chunk: int, n: int, rows: int) -> None:
            nonlocal batches, last_ckpt
            state.current = (chunk, n)
            batches += 1
            bar.update(rows * c.window)
            if batches % 32 == 0:
                state.prune_windows()
            if time.perf_counter() - last_ckpt > c.checkpoint_every:
                state.save_checkpoint(partial, fingerprint_)
                last_ckpt = time.perf_counter()

        try:
            for chunk, first, tokens in iter_chunks(stream, total, state.chunk):
                done = first + len(tokens)
                begin = state.start_of(chunk)
                if begin is None:  # recorded before the checkpoint
                    continue
                self.record_chunk(chunk, first, tokens, begin, state.windows,
                                  lambda n, rows, chunk=chunk: after_batch(chunk, n, rows))
                state.finish(chunk, self.chunk_parts())
        finally:
            bar.close()
        if done == 0:
            raise CorpusError(f"corpus {source.describe().get('location', c.corpus)} yields no full window of "
                              f"{c.window} tokens: give more text or a smaller --window")
        if done < total:
            log.warning("the corpus ran out after %d windows (%d tokens)", done, done * c.window)
        elapsed = time.perf_counter() - start
        path = state.write(out, vocab=self.subject, model=self.subject.describe(), hookpoint=str(self.hook),
                           source=source, done=done, elapsed=elapsed, overwrite=overwrite)
        shutil.rmtree(partial, ignore_errors=True)
        return path


def check_output(out: str | Path, overwrite: bool) -> Path:
    """The store folder ``out``: refused in one line, before anything is loaded, when it exists (without
    ``overwrite``) or could not be written (:func:`~ns_dspy.paths.check_writable`)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise StoreError(f"{out} already exists: choose another --out or pass --overwrite")
    check_writable(out, "--out", directory=True)
    return out


def record(config: RecordConfig, out: str | Path, *, overwrite: bool = False, progress: bool = True,
           subject: Subject | None = None, source: TextSource | None = None, executor: str = "local",
           ray_address: str | None = None, workers: int | None = None) -> Path:
    """Load the model and corpus named by ``config`` (unless given) and record into the store ``out``.

    Layers and units are checked against the model's config first (:mod:`ns_dspy.models.shape`), before the
    corpus is opened or the model is converted, downloaded or loaded.

    ``executor="ray"`` records on a Ray cluster (:func:`ns_dspy.cluster.record.record_on_ray`): ``ray_address``
    is the cluster (None: the one this process is connected to, else ``RAY_ADDRESS``, else a new local one),
    ``workers`` how many Ray workers record at once, each loading the model once (default: as many as the cluster
    has room for). The store is the same, byte for byte, as ``"local"``'s."""
    from ..corpus import open_corpus
    from ..models.shape import check_units, model_shape
    from ..models.subject import load_subject

    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}: use {' or '.join(EXECUTORS)}")
    if executor == "local" and (ray_address is not None or workers is not None):
        raise ConfigError("--ray-address and --workers need --executor ray")
    if executor == "ray" and subject is not None:
        raise ConfigError("a loaded subject cannot be sent to Ray workers: they load config.model themselves")
    if subject is None:
        shape = model_shape(config.model)
        if shape is not None:
            check_units(config, shape)
    check_output(out, overwrite)
    if executor == "ray":
        from ..cluster.record import record_on_ray

        return record_on_ray(config, out, overwrite=overwrite, progress=progress, ray_address=ray_address,
                             workers=workers, source=source)
    source = source or open_corpus(config.corpus, text_field=config.text_field)
    subject = subject or load_subject(config.model, dtype=config.dtype, device=config.device or None)
    return Recorder(subject, config).record(source, out, overwrite=overwrite, progress=progress)
