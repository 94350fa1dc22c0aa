"""Recording on a Ray cluster: the window stream's chunks are recorded by Ray workers and merged by the driver.

The driver reads and tokenizes the corpus (with the subject's own tokenizer, fetched from a worker), cuts the
window stream into the same chunks as a single-process recording (:func:`~ns_dspy.recording.state.chunk_windows`
windows, batches never crossing a chunk) and groups the chunks still to do into *shards* of consecutive chunks.
A worker (:class:`RecordWorker`, a Ray actor that loads the model once) records one shard at a time
(:func:`record_shard`) with fresh trackers, and returns each chunk's partial statistics, the shard's top / random /
negative selections and the tokens of the windows they hold. The driver merges results as they arrive into one
:class:`~ns_dspy.recording.state.RecordState`, the same object the single-process recorder fills:

- selections are functions of the set of windows seen (equal scores ordered by window, random windows by their
  hashed keys), so merging shards gives exactly the selection of one tracker fed every window;
- each chunk's partial sums are folded into the totals in chunk order, as the single-process recorder does;
- a chunk's windows are recorded in the same batches as in a single process.

So the store is the same, byte for byte, as ``record(..., executor="local")`` whatever the number of workers,
provided every worker computes the same activations for the same batch as the single process does (same kind
of device, dtype and library versions). The checkpoint in ``OUT.partial/`` is the single-process recorder's:
shards merged so far, written every ``checkpoint_every`` seconds and when a worker fails or the driver is
interrupted. A rerun (with either executor) records only the chunks not yet done. Workers are Ray actors that
live as long as the recording: a worker whose process dies is restarted by Ray and its shard run again
(:data:`RESTARTS` times); a shard that raises stops the run after the other running shards are merged.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..corpus import TextSource, open_corpus
from ..errors import ConfigError, CorpusError, NsDspyError, RecordingError
from ..models.subject import Subject, load_subject, prefix_ids
from ..recording.config import RecordConfig
from ..recording.recorder import Recorder
from ..recording.state import RecordState, fingerprint, iter_chunks, make_layer
from ..recording.windows import iter_windows

__all__ = ["record_on_ray", "record_shard", "RecordWorker"]

log = logging.getLogger(__name__)

SHARDS_PER_WORKER = 4
"""Default shard size: about this many shards per worker (balances load; bounds the work a failure loses)."""
RESTARTS = 2
"""How often Ray restarts a worker whose process died, retrying its shard."""


# --- the worker side -------------------------------------------------------------------------------------------
class RecordWorker:
    """A Ray actor (``ray.remote(RecordWorker)``): loads the subject once and records shards with ``shard_fn``
    (:func:`record_shard`). Its process, and the model's memory, end with the recording."""

    def __init__(self, config: dict, shard_fn):
        try:  # no weight-loading bars in the workers' logs (Ray forwards them to the driver)
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
        self.config, self.shard_fn = RecordConfig(**config), shard_fn
        self._subject: Subject | None = None

    @property
    def subject(self) -> Subject:
        """Loaded by the first call (so a model that cannot load is a task's one-line error, not a dead actor)."""
        if self._subject is None:
            c = self.config
            self._subject = load_subject(c.model, dtype=c.dtype, device=c.device or None)
        return self._subject

    def ready(self) -> int:
        """Load the model; returns the worker's process id."""
        self.subject  # noqa: B018 - loads it
        return os.getpid()

    def describe(self) -> dict:
        """What recording this worker makes: the model's ``describe()``, its dtype, the hookpoint, each layer's
        units, and the tokenizer itself (the driver tokenizes the corpus with it)."""
        rec = Recorder(self.subject, self.config)
        return {"model": self.subject.describe(), "name": self.subject.name, "dtype": str(rec.dtype),
                "hookpoint": str(rec.hook), "tokenizer": self.subject.tokenizer,
                "layers": {layer: (st.n_units, None if st.units is None else st.unit_indices())
                           for layer, st in rec.layers.items()}}

    def record(self, items: list[tuple]) -> dict:
        return self.shard_fn(self.config, self.subject, items)


def record_shard(config: RecordConfig, subject: Subject, items: list[tuple]) -> dict:
    """Record one shard with fresh trackers: ``items`` are ``(chunk, first_window, start, tokens, part)``, chunks
    in increasing order, ``tokens`` all windows of the chunk, ``start`` the first window still to record (``part``:
    the partial sums of the windows before it, else None). Returns each chunk's partial sums, the selections and
    the tokens of the windows they hold, and the model's ``describe()``."""
    rec = Recorder(subject, config)
    windows: dict[int, np.ndarray] = {}
    chunks = {}
    for chunk, first, start, tokens, part in items:
        tokens = np.array(tokens)  # Ray hands arrays over read-only
        if part is not None:
            for layer, st in rec.layers.items():
                st.stats.part = {k: v.to(rec.device).clone() for k, v in part[layer].items()}
        rec.record_chunk(chunk, first, tokens, start, windows)
        chunks[chunk] = {layer: {k: v.cpu() for k, v in p.items()} for layer, p in rec.chunk_parts().items()}
    state = RecordState(config, rec.layers)
    state.windows = windows
    state.prune_windows()
    return {"chunks": chunks, "selections": {layer: st.selections() for layer, st in rec.layers.items()},
            "windows": state.windows, "model": subject.describe()}


# --- the driver ------------------------------------------------------------------------------------------------
def _worker_options(ray, config: RecordConfig, given: dict | None) -> dict:
    if given is not None:
        return dict(given)
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus >= 1 and not config.device.startswith("cpu"):
        return {"num_cpus": 1, "num_gpus": 1}
    return {"num_cpus": 1}


def _room(ray, options: dict) -> int:
    """How many workers with ``options``' resources the cluster's alive nodes hold at once."""
    need = {"CPU": options.get("num_cpus", 1), "GPU": options.get("num_gpus", 0), **options.get("resources", {})}
    need = {k: v for k, v in need.items() if v}
    room = 0
    for node in ray.nodes():
        if node.get("Alive"):
            have = node.get("Resources", {})
            room += int(min((have.get(k, 0) // v for k, v in need.items()), default=1))
    return room


def _check_workers(ray, options: dict, workers: int | None) -> int:
    """``workers``, by default as many as the cluster holds; a one-line error when it holds none."""
    room = _room(ray, options)
    if room == 0:
        raise ConfigError(f"no node of the Ray cluster has the resources of a recording worker ({options}): add "
                          "nodes, or give --device cpu on a cluster without GPUs")
    if workers is None:
        return room
    if workers > room:
        log.warning("the Ray cluster holds %d of the %d workers asked for: the others start when there is room",
                    room, workers)
    return workers


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines() or [type(err).__name__])[-1][:300] if text else type(err).__name__


def merge_result(state: RecordState, result: dict) -> None:
    """Add one shard's result to ``state``: selections, window tokens, and its chunks' partial sums."""
    state.merge(result["selections"], result["windows"])
    for chunk, parts in sorted(result["chunks"].items()):
        if state.current and state.current[0] == chunk:  # the partial sums sent with it are in ``parts`` now
            for st in state.layers.values():
                st.stats.part = st.stats.empty()
        state.finish(chunk, parts)
    state.prune_windows()


def record_on_ray(config: RecordConfig, out: str | Path, *, overwrite: bool = False, progress: bool = True,
                  ray_address: str | None = None, workers: int | None = None, source: TextSource | None = None,
                  shard_chunks: int | None = None, worker_options: dict | None = None) -> Path:
    """Record ``config`` into the store ``out`` on a Ray cluster; the store equals a single-process recording's.

    ``ray_address``: see :func:`ns_dspy.cluster.connect` (a process already connected stays on its cluster; a
    connection made here is closed at the end). ``workers``: how many Ray actors record shards at once, each
    loading the model once (default: as many as the cluster has room for). ``shard_chunks``: chunks per shard
    (default: about :data:`SHARDS_PER_WORKER` shards per worker). ``worker_options``: each worker's Ray resources
    (default ``{"num_cpus": 1}``, plus ``"num_gpus": 1`` on a cluster with GPUs unless ``config.device`` is
    ``cpu``; e.g. ``{"num_cpus": 8}`` gives a CPU worker 8 threads)."""
    from . import connect, ray_module

    from ..recording.recorder import check_output

    out = check_output(out, overwrite)
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be positive, got {workers}")
    if shard_chunks is not None and shard_chunks < 1:
        raise ConfigError(f"shard_chunks must be positive, got {shard_chunks}")
    ray = ray_module()
    own_connection = not ray.is_initialized()
    connect(ray_address)
    try:
        return _record(ray, config, out, overwrite=overwrite, progress=progress, workers=workers,
                       source=source or open_corpus(config.corpus, text_field=config.text_field),
                       shard_chunks=shard_chunks, worker_options=worker_options)
    finally:
        if own_connection:
            ray.shutdown()


def _get(ray, ref):
    """``ray.get`` with a worker's one-line error raised as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, NsDspyError):
            raise err.cause from None
        raise


def _record(ray, config: RecordConfig, out: Path, *, overwrite: bool, progress: bool, workers: int | None,
            source: TextSource, shard_chunks: int | None, worker_options: dict | None) -> Path:
    options = _worker_options(ray, config, worker_options)
    workers = _check_workers(ray, options, workers)
    actor = ray.remote(RecordWorker).options(**options, max_restarts=RESTARTS, max_task_retries=RESTARTS)
    # ``record_shard`` is looked up now, so a test may stand another function in
    actors = [actor.remote(config.to_dict(), record_shard) for _ in range(workers)]
    try:
        # every worker loads the model now; a worker gets shards once it has (one the cluster has no room for
        # yet waits). The recording is described by the first worker that is ready: Ray places actors in no
        # fixed order, and one left without room starts only when a running worker ends, which none does before
        # the recording has been described
        starting = {worker.ready.remote(): worker for worker in actors}
        [first], _ = ray.wait(list(starting), num_returns=1)
        info = _get(ray, starting[first].describe.remote())
        return _Driver(ray, config, info, source, out, progress).run(starting, shard_chunks, overwrite)
    finally:
        for a in actors:  # the workers' processes, and their models' memory, end with the recording
            ray.kill(a)


class _Driver:
    """The driver's side of one recording: the state, the checkpoint, the shards still to do, the results."""

    def __init__(self, ray, config: RecordConfig, info: dict, source: TextSource, out: Path, progress: bool):
        self.ray, self.config, self.info, self.source, self.out = ray, config, info, source, out
        tok = info["tokenizer"]
        self.vocab = Subject(name=info["name"], model=None, tokenizer=tok, prefix_ids=prefix_ids(tok))
        dtype = getattr(torch, info["dtype"].removeprefix("torch."))
        layers = {layer: make_layer(config, n, None if units is None else torch.as_tensor(units), dtype, "cpu")
                  for layer, (n, units) in info["layers"].items()}
        self.state = RecordState(config, layers)
        self.fingerprint = fingerprint(config, source.describe(), info["name"], info["dtype"])
        self.partial = out.with_name(out.name + ".partial")
        if (self.partial / "state.safetensors").exists():
            self.state.load_checkpoint(self.partial, self.fingerprint)
            log.info("resuming from %s: %d windows already recorded", self.partial, self.state.windows_done())
        self.partial.mkdir(parents=True, exist_ok=True)
        self.total = config.tokens // config.window
        self.done = 0  # windows in the stream so far
        self.progress = progress

    def shards(self, per_shard: int):
        """Lists of work items ``(chunk, first, start, tokens, part)`` for the chunks not yet done, in order."""
        c, state = self.config, self.state
        stream = iter_windows(self.source.documents(), self.vocab.encode, c.window,
                              separator=self.vocab.encode("\n\n"))
        items = []
        for chunk, first, tokens in iter_chunks(stream, self.total, state.chunk):
            self.done = first + len(tokens)
            begin = state.start_of(chunk)
            if begin is None:
                continue
            part = None
            if begin:  # recorded in part by a single-process run: its partial sums go along
                part = {layer: {k: v.clone() for k, v in st.stats.part.items()} for layer, st in state.layers.items()}
            items.append((chunk, first, begin, tokens, part))
            if len(items) == per_shard:
                yield items
                items = []
        if items:
            yield items

    def run(self, starting: dict, shard_chunks: int | None, overwrite: bool) -> Path:
        """Record with the workers ``starting`` (their ``ready()`` call -> the worker) into the store."""
        ray, c, state = self.ray, self.config, self.state
        starting = dict(starting)
        per_shard = shard_chunks or max(1, math.ceil(math.ceil(self.total / state.chunk) /
                                                     (SHARDS_PER_WORKER * len(starting))))
        bar = tqdm(total=self.total * c.window, initial=min(state.windows_done(), self.total) * c.window,
                   unit="tok", unit_scale=True, disable=not self.progress,
                   desc=f"recording {sum(st.n_units for st in state.layers.values())} units on {len(starting)} workers")
        pending, idle, running = self.shards(per_shard), [], {}  # running: ref -> (actor, items)
        failure: tuple[list, BaseException] | None = None
        consistent = True  # False while a result is half merged: no checkpoint of that
        start = last_ckpt = time.perf_counter()
        items = next(pending, None)
        try:
            while True:
                while failure is None and idle and items is not None:
                    worker = idle.pop(0)
                    running[worker.record.remote(items)] = (worker, items)
                    items = next(pending, None)
                if not running and (failure is not None or items is None or not starting):
                    break
                [ready], _ = ray.wait([*running, *starting], num_returns=1)
                if ready in starting:
                    worker = starting.pop(ready)
                    try:
                        _get(ray, ready)
                    except Exception as err:
                        failure = failure or ([], err)
                    else:
                        idle.append(worker)
                    continue
                worker, items_done = running.pop(ready)
                try:
                    result = _get(ray, ready)
                except Exception as err:  # keep what the other running shards finish, then stop
                    cause = getattr(err, "cause", None) if isinstance(err, ray.exceptions.RayTaskError) else None
                    failure = failure or (items_done, cause if isinstance(cause, BaseException) else err)
                    continue
                idle.append(worker)
                if result["model"] != self.info["model"]:
                    failure = failure or (items_done, RecordingError(
                        f"Ray workers load the model differently ({result['model']} vs {self.info['model']}): give "
                        "--dtype and --device explicitly"))
                    continue
                consistent = False
                merge_result(state, result)
                consistent = True
                bar.update(sum(len(i[3]) - i[2] for i in items_done) * c.window)
                if failure is None and time.perf_counter() - last_ckpt > c.checkpoint_every:
                    state.save_checkpoint(self.partial, self.fingerprint)
                    last_ckpt = time.perf_counter()
        except BaseException:
            if consistent:
                state.save_checkpoint(self.partial, self.fingerprint)
            raise
        finally:
            bar.close()
        if failure is None and items is not None:
            failure = ([], RuntimeError("no worker is left"))
        if failure is not None:
            state.save_checkpoint(self.partial, self.fingerprint)
            items, err = failure
            if isinstance(err, NsDspyError):
                raise err
            chunks = [i[0] for i in items]
            where = f"on chunks {chunks[0]}-{chunks[-1]}" if chunks else "to start"
            raise RecordingError(f"a Ray worker failed {where} ({type(err).__name__}: {_one_line(err)}); the "
                                 f"finished chunks are saved in {self.partial}: rerun the same command to record "
                                 "the rest") from None
        return self._write(time.perf_counter() - start, overwrite)

    def _write(self, elapsed: float, overwrite: bool) -> Path:
        c, done = self.config, self.done
        if done == 0:
            raise CorpusError(f"corpus {self.source.describe().get('location', c.corpus)} yields no full window of "
                              f"{c.window} tokens: give more text or a smaller --window")
        if done < self.total:
            log.warning("the corpus ran out after %d windows (%d tokens)", done, done * c.window)
        path = self.state.write(self.out, vocab=self.vocab, model=self.info["model"], hookpoint=self.info["hookpoint"],
                                source=self.source, done=done, elapsed=elapsed, overwrite=overwrite)
        shutil.rmtree(self.partial, ignore_errors=True)
        return path
