"""Recording throughput against a plain forward pass of the model body, on the same batches, in one run.

    python benchmarks/record.py [--tokens 204800] [--batch-size 32] [--dtype auto] [--ways default,inductor,...]

Records every MLP neuron of every layer of the offline default model (gemma-3-270m: 18 x 2048 units) with the
default exemplar counts (top 100, random 50, split 40/30/30), and prints tokens/s for the plain body forward and
for recording, and their ratio (target >= 0.9), for each of ``--ways``: ``default`` (the per-token statistics in
one compiled numba loop on CPU, the top-k trackers updated by compiled loops), ``inductor`` (the statistics by
inductor's compiled kernel instead), ``torch-ops`` (the top-k update by torch ops that read values on the host:
GPUs before 2026-12-04), ``sync-free`` (the updates that read nothing on the host, every layer's statistics and
trackers at once after the forward: the default off the CPU), ``per-layer`` (the same updates layer by layer in the
forward's hooks) and, when asked, ``no-fuse`` (the statistics by plain torch ops). Each way also prints the host
waits per batch (ops that make the host wait for a device: scalar reads, ``nonzero``, ``equal``) it adds to a plain
forward, counted with a dispatch mode on two batches outside the timing (on a GPU each such wait holds back the
forward's next kernels), and on CUDA the synchronisations CUDA itself reports (torch's sync debug mode) on the same
batches. ``--profile N`` then profiles N batches of the first way and of the plain forward (torch.profiler: the ops
with the most device time, the device's busy share of the wall time, and on CUDA where recording synchronises).
The stream is as long as a typical recording (the first windows of a recording are the costly ones: every window
enters every unit's empty slots, so a short stream would mostly time that warm-up).

Each way is measured in a pass of its own, **interleaved batch by batch** with a plain forward of the same batch
(the order alternating from batch to batch), so a shared machine's drift - minutes of a slow or fast phase -
reaches the recording and its plain forward alike; its ratio is recording time over plain time summed over the
pass. One recorder exists at a time. A warm-up batch of each way runs first (and compiles).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
import warnings
from itertools import islice

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ns_dspy.corpus import open_corpus
from ns_dspy.models import load_subject
from ns_dspy.recording import RecordConfig, Recorder, fastpath, trackers
from ns_dspy.recording.windows import iter_windows

WAYS = {  # label; settings: fuse, compiled top-k update, numba's statistics loop, trackers.SYNC_FREE
    "default": ("statistics by numba's loop (CPU), compiled top-k update (CPU), sync-free updates elsewhere",
                dict(fuse=True, topk=True, loop=True, free=None)),
    "inductor": ("statistics by inductor's kernel, compiled top-k update",
                 dict(fuse=True, topk=True, loop=False, free=None)),
    "no-fuse": ("statistics by plain torch ops", dict(fuse=False, topk=True, loop=True, free=None)),
    "torch-ops": ("fused statistics; the top-k update by torch ops that read values on the host (GPUs before "
                  "2026-12-04)", dict(fuse=True, topk=False, loop=True, free=False)),
    "sync-free": ("the updates that read nothing on the host, every layer's at once after the forward (the default "
                  "off the CPU)", dict(fuse=True, topk=False, loop=True, free=True)),
    "per-layer": ("the updates that read nothing on the host, layer by layer in the forward's hooks (GPUs before "
                  "the grouped update)", dict(fuse=True, topk=False, loop=True, free=True, grouped=False)),
}
WAITS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default, torch.ops.aten.equal.default,
         torch.ops.aten.is_nonzero.default}
"""The ops that make the host wait for the device (a scalar read, ``nonzero``, ``equal``), counted per batch."""


def cuda_syncs(fn) -> int:
    """How many synchronisations CUDA reports while ``fn`` runs (torch's sync debug mode warns at each)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in seen)


class CountWaits(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += func in WAITS
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def recording_as(config: RecordConfig, fuse: bool, topk: bool, loop: bool, free: bool | None, grouped: bool = True):
    """Recording as one of :data:`WAYS` (its settings as keywords): the trackers' switches set for the block and
    restored after, the top-k update by torch ops when ``topk`` is False (as on other devices or without numba);
    yields the recording's configuration."""
    before = trackers.STATS_LOOP, trackers.SYNC_FREE, Recorder.GROUPED
    trackers.STATS_LOOP, trackers.SYNC_FREE, Recorder.GROUPED = loop, free, grouped
    try:
        with contextlib.nullcontext() if topk else fastpath.torch_ops():
            yield dataclasses.replace(config, fuse=fuse)
    finally:
        trackers.STATS_LOOP, trackers.SYNC_FREE, Recorder.GROUPED = before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--tokens", type=int, default=204_800, help="as many as a default recording (~200k)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--dtype", default="auto", help="as recording's default: bfloat16 where it is fast, else float32")
    ap.add_argument("--device", default=None)
    ap.add_argument("--ways", default="default,inductor,torch-ops", help=f"comma-separated, from {', '.join(WAYS)}")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after the timing, profile N batches of the first way (torch.profiler) and print the ops "
                         "that take the most device (else CPU) time, and the device's busy share of the wall time")
    ap.add_argument("--trace", default=None, help="with --profile: also write a Chrome trace there")
    args = ap.parse_args()
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    unknown = [w for w in ways if w not in WAYS]
    if unknown or not ways:
        ap.error(f"unknown --ways {', '.join(unknown) or '(none)'}: choose from {', '.join(WAYS)}")

    subject = load_subject(args.model, dtype=args.dtype, device=args.device)
    config = RecordConfig(model=args.model, layers="all", batch_size=args.batch_size, window=args.window,
                          dtype=args.dtype)
    stream = iter_windows(open_corpus("default").documents(), subject.encode, args.window)
    windows = np.stack(list(islice(stream, args.tokens // args.window)))
    batches = [windows[i:i + args.batch_size] for i in range(0, len(windows), args.batch_size)]
    n_tokens = windows.size
    prefix = torch.tensor(subject.prefix_ids, dtype=torch.long)
    device = subject.device

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def plain(b: np.ndarray) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            ids = torch.cat([prefix.expand(len(b), -1), torch.from_numpy(b)], 1).to(device)
            subject.body(input_ids=ids, use_cache=False)
        sync()
        return time.perf_counter() - start

    def interleaved(settings: dict):
        """Per batch: (plain seconds, recording seconds), the two in alternating order; and the host waits and
        (on CUDA, else None) CUDA synchronisations per batch that recording adds to a plain forward (counted on two
        batches outside the timing)."""
        with recording_as(config, **settings) as way_config:
            warm = Recorder(subject, way_config)
            warm.process(np.arange(len(batches[0])), batches[0])  # compiles; this recorder is then dropped
            plain(batches[0])
            del warm
            recorder = Recorder(subject, way_config)
            times = np.zeros((len(batches), 2))
            for i, b in enumerate(batches):
                for way in ((0, 1) if i % 2 == 0 else (1, 0)):
                    if way == 0:
                        times[i, 0] = plain(b)
                    else:
                        start = time.perf_counter()
                        recorder.process(np.arange(i * len(b), (i + 1) * len(b)), b)
                        sync()
                        times[i, 1] = time.perf_counter() - start
            waits, syncs = [], []
            for run in (plain, recorder.process):  # two more batches (new window ids), outside the timing
                def two(run=run):
                    for j, b in enumerate(batches[:2]):
                        first = (len(batches) + j) * len(batches[0])
                        run(b) if run is plain else run(np.arange(first, first + len(b)), b)
                with CountWaits() as mode:
                    two()
                waits.append(mode.n / 2)
                syncs.append(cuda_syncs(two) / 2 if device.type == "cuda" else None)
        return times[:, 0], times[:, 1], waits[1] - waits[0], syncs[1] - syncs[0] if syncs[0] is not None else None

    n_units = sum(st.n_units for st in Recorder(subject, config).layers.values())
    dtype = str(next(subject.model.parameters()).dtype).removeprefix("torch.")
    print(f"model {args.model}  dtype {dtype} (--dtype {args.dtype})  device {device}  "
          f"threads {torch.get_num_threads()}")
    print(f"{len(batches)} batches x {args.batch_size} windows x {args.window} tokens = {n_tokens} tokens; "
          f"{n_units} units tracked (top {config.top_k}, random {config.random_k}); each way interleaved batch by "
          f"batch with a plain forward")
    half = len(batches) // 2
    ratios = {}
    for way in ways:
        label, settings = WAYS[way]
        tp, tr, waits, syncs = interleaved(settings)
        ratios[way] = tp.sum() / tr.sum()
        parts = f"first {half} batches {tp[:half].sum() / tr[:half].sum():.3f}, last {len(batches) - half} " \
                f"{tp[half:].sum() / tr[half:].sum():.3f}" if half else ""
        print(f"{way:9s}: plain {n_tokens / tp.sum():6.0f} tok/s, recording {n_tokens / tr.sum():6.0f} tok/s, "
              f"ratio {ratios[way]:.3f} ({parts}); host waits per batch beyond the forward's {waits:.0f}"
              + (f", CUDA synchronisations {syncs:.0f}" if syncs is not None else "") + f"  [{label}]", flush=True)
    shown = "; ".join(f"{w} {r:.3f}" for w, r in ratios.items())
    print(f"ratio recording/plain: {shown}  (target >= 0.9 for the default)")
    if args.profile:
        profile(subject, config, batches, ways[0], args.profile, plain, sync, args.trace)


def profile(subject, config, batches, way, n, plain, sync, trace) -> None:
    """Profile ``n`` batches of recording in ``way`` (after a warm-up batch) and, for comparison, of the plain
    forward: the ops with the most self time on the device (CPU time where there is no device), and how much of
    the wall time the device was busy. Where recording's device time is close to the plain forward's but its wall
    time is not, the host is what recording waits on (launches, Python, reads)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = subject.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    key = "self_cpu_time_total"
    with recording_as(config, **WAYS[way][1]) as way_config:
        recorder = Recorder(subject, way_config)
        recorder.process(np.arange(len(batches[0])), batches[0])
        sync()
        for name, step in (("plain forward", lambda i, b: plain(b)),
                           (f"recording ({way})", lambda i, b: recorder.process(
                               np.arange((i + 1) * len(b), (i + 2) * len(b)), b))):
            chosen = (batches[1:] or batches)[:n]
            with torch_profile(activities=activities) as prof:
                start = time.perf_counter()
                for i, b in enumerate(chosen):
                    step(i, b)
                sync()
                wall = time.perf_counter() - start
            events = prof.key_averages()
            if cuda:  # torch >= 2.4 names it self_device_time_total
                key = next(k for k in ("self_device_time_total", "self_cuda_time_total") if hasattr(events[0], k))
            # the device's busy time: its kernels' self times (an op's row repeats its kernels' time on a GPU)
            rows = [e for e in events if e.device_type.name == "CUDA"] if cuda else events
            busy = sum(getattr(e, key) for e in (rows or events)) / 1e6
            print(f"\n== profile: {name}, {len(chosen)} batches: wall {wall * 1e3 / len(chosen):.1f} ms/batch, "
                  f"{'device' if cuda else 'CPU'} self time {busy * 1e3 / len(chosen):.1f} ms/batch "
                  f"(busy {busy / wall:.0%} of the wall time); kernels/ops per batch "
                  f"{sum(e.count for e in events if (e.device_type.name == 'CUDA') == cuda) / len(chosen):.0f}")
            print(events.table(sort_by=key, row_limit=18, max_name_column_width=60))
            if trace and name != "plain forward":
                prof.export_chrome_trace(trace)
        if cuda:  # where recording synchronises: the innermost ns_dspy line of each CUDA sync warning
            import collections
            import traceback
            where = collections.Counter()
            shown = warnings.showwarning

            def note(message, category, filename, lineno, file=None, line=None):
                if "synchroniz" in str(message):
                    frames = [f for f in traceback.extract_stack() if "ns_dspy" in f.filename]
                    where[f"{frames[-1].filename.split('ns_dspy')[-1]}:{frames[-1].lineno} {frames[-1].line}"
                          if frames else "(outside ns_dspy)"] += 1
            b = batches[-1]
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.showwarning = note
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    recorder.process(np.arange(len(batches) * len(b), (len(batches) + 1) * len(b)), b)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
                    warnings.showwarning = shown
            print("\nCUDA synchronisations in one recorded batch, by the innermost ns_dspy line:")
            for line, count in where.most_common():
                print(f"  {count:4d}  {line}")


if __name__ == "__main__":
    main()
