"""Recording throughput against a plain forward pass of the model body, on the same batches, in one run.

    python benchmarks/record.py [--tokens 204800] [--batch-size 32] [--dtype auto]

Records every MLP neuron of every layer of the offline default model (gemma-3-270m: 18 x 2048 units) with
the default exemplar counts (top 100, random 50, split 40/30/30), and prints tokens/s for the plain body
forward and for recording, and their ratio (target >= 0.9): recording as by default (``--fuse``: the per-token
statistics in one compiled kernel on CPU; the top-k trackers updated by compiled loops), with ``--no-fuse``
(plain torch ops for the statistics) and with the top-k update by torch ops (as on other devices), side by
side. The stream is as long as a typical recording (the first windows of a recording are the costly ones:
every window enters every unit's empty slots, so a short stream would mostly time that warm-up); the plain
pass and the three recordings run interleaved for ``--rounds`` rounds and the best time of each counts, so drift
of a shared machine's speed affects all alike. A warm-up batch of each runs first.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
from itertools import islice

import numpy as np
import torch

from ns_dspy.corpus import open_corpus
from ns_dspy.models import load_subject
from ns_dspy.recording import RecordConfig, Recorder, fastpath
from ns_dspy.recording.windows import iter_windows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--tokens", type=int, default=204_800, help="as many as a default recording (~200k)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--dtype", default="auto", help="as recording's default: bfloat16 where it is fast, else float32")
    ap.add_argument("--device", default=None)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best time of each way counts")
    args = ap.parse_args()

    subject = load_subject(args.model, dtype=args.dtype, device=args.device)
    config = RecordConfig(model=args.model, layers="all", batch_size=args.batch_size, window=args.window,
                          dtype=args.dtype)
    stream = iter_windows(open_corpus("default").documents(), subject.encode, args.window)
    windows = np.stack(list(islice(stream, args.tokens // args.window)))
    batches = [windows[i:i + args.batch_size] for i in range(0, len(windows), args.batch_size)]
    n_tokens = windows.size
    prefix = torch.tensor(subject.prefix_ids, dtype=torch.long)
    device = subject.device

    def plain(batches=batches) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for b in batches:
                ids = torch.cat([prefix.expand(len(b), -1), torch.from_numpy(b)], 1).to(device)
                subject.body(input_ids=ids, use_cache=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def recording(batches=batches, fuse=True, compiled_topk=True) -> float:
        recorder = Recorder(subject, dataclasses.replace(config, fuse=fuse))
        # compiled_topk=False: the top-k trackers by torch ops, as on other devices or without numba
        with contextlib.nullcontext() if compiled_topk else fastpath.torch_ops():
            start = time.perf_counter()
            for i, b in enumerate(batches):
                recorder.process(np.arange(i * len(b), (i + 1) * len(b)), b)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start

    n_units = sum(st.n_units for st in Recorder(subject, config).layers.values())
    plain(batches[:1]), recording(batches[:1]), recording(batches[:1], fuse=False)  # warm-up (and compile)
    recording(batches[:1], compiled_topk=False)
    runs: dict[str, list[float]] = {"plain": [], "rec": [], "unfused": [], "ops": []}
    for _ in range(args.rounds):  # interleaved, so the machine's drift reaches every way alike; the best counts
        runs["plain"].append(plain())
        runs["rec"].append(recording())
        runs["unfused"].append(recording(fuse=False))
        runs["ops"].append(recording(compiled_topk=False))
    tp, tr, tu, to = (n_tokens / min(runs[k]) for k in ("plain", "rec", "unfused", "ops"))
    dtype = str(next(subject.model.parameters()).dtype).removeprefix("torch.")
    print(f"model {args.model}  dtype {dtype} (--dtype {args.dtype})  device {device}  "
          f"threads {torch.get_num_threads()}")
    print(f"{len(batches)} batches x {args.batch_size} windows x {args.window} tokens = {n_tokens} tokens; "
          f"{n_units} units tracked (top {config.top_k}, random {config.random_k})")
    print(f"best of {args.rounds} interleaved rounds; every round in tok/s: "
          + "; ".join(f"{k} {', '.join(f'{n_tokens / t:.0f}' for t in v)}" for k, v in runs.items()))
    print(f"plain body forward : {tp:8.0f} tok/s")
    print(f"recording          : {tr:8.0f} tok/s  (default: fused statistics, compiled top-k update)")
    print(f"recording --no-fuse: {tu:8.0f} tok/s  (statistics by plain torch ops)")
    print(f"top-k by torch ops : {to:8.0f} tok/s  (fused statistics; the top-k update as on other devices)")
    print(f"ratio recording/plain = {tr / tp:.3f}  (target >= 0.9); --no-fuse {tu / tp:.3f}; top-k by torch ops "
          f"{to / tp:.3f}")


if __name__ == "__main__":
    main()
