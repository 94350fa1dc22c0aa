"""Where recording's time goes beyond the forward, per batch, on CPU: the hooks' parts timed in place.

    python benchmarks/record_parts.py [--warm 60] [--batches 20] [--model gemma-3-270m] [--dtype auto]

Records every MLP unit of every layer (the default exemplar counts) over ``--warm`` batches of 32 windows of 64
tokens from the default corpus (the first batches fill every unit's top-k and random samples and cost the most;
``--warm 1`` times them, skipping only the first batch, which loads the compiled loops), then times ``--batches``
more: a plain body forward of each batch and its recording, one after the other, and inside the recording's hooks
the per-token statistics (``batch_stats``), the top-k trackers (``TopK.update``), the random samples
(``Reservoir.update``), the running statistics (``Stats.update``) and the hooks in all, in ms per batch. CPU only
(the timers do not wait for a device); ``benchmarks/record.py`` gives the ratio that counts, interleaved batch by
batch.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from itertools import islice

import numpy as np
import torch

from ns_dspy.corpus import open_corpus
from ns_dspy.models import load_subject
from ns_dspy.recording import RecordConfig, Recorder, trackers
from ns_dspy.recording import recorder as recorder_module
from ns_dspy.recording.windows import iter_windows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--warm", type=int, default=60, help="batches recorded before the timing (default: 60)")
    ap.add_argument("--batches", type=int, default=20, help="batches timed (default: 20)")
    args = ap.parse_args()
    if args.warm < 1 or args.batches < 1:
        ap.error("--warm and --batches must be at least 1")
    subject = load_subject(args.model, dtype=args.dtype, device="cpu")
    config = RecordConfig(model=args.model, layers="all", batch_size=32, window=64, dtype=args.dtype)
    stream = iter_windows(open_corpus("default").documents(), subject.encode, 64)
    windows = np.stack(list(islice(stream, (args.warm + args.batches) * 32)))
    batches = [windows[i:i + 32] for i in range(0, len(windows), 32)]
    prefix = torch.tensor(subject.prefix_ids, dtype=torch.long)

    def plain(b: np.ndarray) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            subject.body(input_ids=torch.cat([prefix.expand(len(b), -1), torch.from_numpy(b)], 1), use_cache=False)
        return time.perf_counter() - start

    recorder = Recorder(subject, config)
    for i, b in enumerate(batches[:args.warm]):
        recorder.process(np.arange(i * 32, (i + 1) * 32), b)
    spent: dict[str, float] = defaultdict(float)

    def timed(name, fn):
        def run(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - start
        return run

    recorder_module.batch_stats = timed("statistics (batch_stats)", recorder_module.batch_stats)
    for cls in (trackers.TopK, trackers.Reservoir, trackers.Stats):
        setattr(cls, "update", timed(f"{cls.__name__}.update", cls.update))
    handler = recorder._handler
    recorder._handler = lambda layer, batch: timed("hooks in all", handler(layer, batch))
    plain_s = record_s = 0.0
    for i, b in enumerate(batches[args.warm:], start=args.warm):
        plain_s += plain(b)
        start = time.perf_counter()
        recorder.process(np.arange(i * 32, (i + 1) * 32), b)
        record_s += time.perf_counter() - start
    n = args.batches
    print(f"{args.model} {str(next(subject.model.parameters()).dtype).removeprefix('torch.')}, batches "
          f"{args.warm}..{args.warm + n - 1}: plain {plain_s / n * 1e3:.1f} ms, recording {record_s / n * 1e3:.1f} ms "
          f"per batch (ratio {plain_s / record_s:.3f})")
    for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {name:26s} {seconds / n * 1e3:7.1f} ms per batch")


if __name__ == "__main__":
    main()
