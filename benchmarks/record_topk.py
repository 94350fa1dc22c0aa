"""The recorder's top-k update, compiled loops against torch ops, interleaved batch by batch in one process.

    python benchmarks/record_topk.py [--tokens 204800] [--batch-size 32] [--dtype auto]

Two recorders of every MLP neuron of every layer of the offline default model (as ``benchmarks/record.py``) take
the same batches: one with the compiled top-k update (``ns_dspy/recording/fastpath.py``, the CPU default), one
with the torch ops (as on other devices), in alternating order, each batch followed by a plain body forward. A
shared machine's drift then reaches the three alike, which separate runs of ``record.py`` cannot promise. Two
recorders' state share the caches, so both ratios read lower than one recorder's alone; their quotient is the
figure this script is for.
"""

from __future__ import annotations

import argparse
import contextlib
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
    ap.add_argument("--tokens", type=int, default=204_800)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args()

    subject = load_subject(args.model, dtype=args.dtype)
    config = RecordConfig(model=args.model, layers="all", batch_size=args.batch_size, window=args.window,
                          dtype=args.dtype)
    stream = iter_windows(open_corpus("default").documents(), subject.encode, args.window)
    windows = np.stack(list(islice(stream, args.tokens // args.window)))
    batches = [windows[i:i + args.batch_size] for i in range(0, len(windows), args.batch_size)]
    prefix = torch.tensor(subject.prefix_ids, dtype=torch.long)

    def plain(b: np.ndarray) -> None:
        with torch.inference_mode():
            subject.body(input_ids=torch.cat([prefix.expand(len(b), -1), torch.from_numpy(b)], 1), use_cache=False)

    def process(recorder: Recorder, way: str, i: int, b: np.ndarray) -> float:
        with contextlib.nullcontext() if way == "compiled" else fastpath.torch_ops():
            start = time.perf_counter()
            recorder.process(np.arange(i * len(b), (i + 1) * len(b)), b)
            return time.perf_counter() - start

    warm = Recorder(subject, config)  # compiles the statistics kernel and the loops
    process(warm, "compiled", 0, batches[0]), process(warm, "torch", 1, batches[1]), plain(batches[0])
    del warm
    recorders = {"compiled": Recorder(subject, config), "torch": Recorder(subject, config)}
    seconds = {"compiled": 0.0, "torch": 0.0, "plain": 0.0}
    for i, b in enumerate(batches):
        for way in ("compiled", "torch") if i % 2 == 0 else ("torch", "compiled"):
            seconds[way] += process(recorders[way], way, i, b)
        start = time.perf_counter()
        plain(b)
        seconds["plain"] += time.perf_counter() - start
    n_tokens = windows.size
    dtype = str(next(subject.model.parameters()).dtype).removeprefix("torch.")
    print(f"model {args.model}  dtype {dtype} (--dtype {args.dtype})  threads {torch.get_num_threads()}; "
          f"{len(batches)} batches x {args.batch_size} windows x {args.window} tokens, interleaved batch by batch")
    print(f"plain body forward      : {n_tokens / seconds['plain']:8.0f} tok/s")
    for way, label in (("compiled", "compiled top-k update"), ("torch", "top-k by torch ops   ")):
        print(f"recording, {label}: {n_tokens / seconds[way]:8.0f} tok/s  ratio to plain "
              f"{seconds['plain'] / seconds[way]:.3f}")
    print(f"compiled / torch ops: {seconds['torch'] / seconds['compiled']:.3f}x")


if __name__ == "__main__":
    main()
