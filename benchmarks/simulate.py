"""Prompted simulation throughput against a plain forward pass of the model body, and against a naive loop.

    python benchmarks/simulate.py [--explanations 4] [--exemplars 16] [--window 64] [--batch-size 16]
                                  [--naive-pairs 6] [--dtype bfloat16]

Simulates E explanations x N exemplars (windows of the default corpus, as token strings) with
``PromptedSimulator`` on the offline default model (gemma-3-270m) and prints, measured in the same run:

1. prompt tokens/s of ``simulate`` (each explanation's prefix counted once, plus every pair's body tokens;
   padding not counted) against a plain body forward over as many tokens in equal-shape batches
   (batch-size x mean body length, ids taken from the prompts), and their ratio (target >= 0.8). The plain
   pass runs before and after simulation and their mean is compared, so drift of the machine affects both;
2. pairs/s of ``simulate`` against the naive loop - one full-model forward (full-vocabulary logits) per
   (explanation, exemplar) pair over the whole prompt, reading the same slots - timed on the first
   ``--naive-pairs`` pairs, and the speed-up; plus the largest difference between the two predictions.

A warm-up call of each runs first. On a shared 2-core CPU the numbers are noisy.
"""

from __future__ import annotations

import argparse
import time
from itertools import islice

import numpy as np
import torch

from ns_dspy.corpus import open_corpus
from ns_dspy.models import load_subject
from ns_dspy.recording.windows import iter_windows
from ns_dspy.simulators.bins import expected_value
from ns_dspy.simulators.prompt import encode_pieces, prompt_pieces
from ns_dspy.simulators.prompted import PromptedSimulator
from ns_dspy.types import Exemplar

EXPLANATIONS = [
    "words for colours, such as red, blue and green",
    "numbers, dates and amounts of money",
    "the word \"the\" and other articles at the start of a noun phrase",
    "punctuation that ends a sentence or a line of code",
    "names of people and places",
    "verbs in the past tense",
    "keywords of the Python language (def, return, import)",
    "words about the weather and the seasons",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--explanations", type=int, default=4, help=f"at most {len(EXPLANATIONS)}")
    ap.add_argument("--exemplars", type=int, default=16)
    ap.add_argument("--window", type=int, default=64, help="tokens per exemplar")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--naive-pairs", type=int, default=6, help="pairs timed with the naive loop (it is slow)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    subject = load_subject(args.model, dtype=args.dtype, device=args.device)
    device = subject.device
    windows = islice(iter_windows(open_corpus("default").documents(), subject.encode, args.window), args.exemplars)
    exemplars = [Exemplar(tokens=subject.token_strings(w.tolist()), activations=np.zeros(len(w)), token_ids=None)
                 for w in windows]
    explanations = EXPLANATIONS[:args.explanations]
    sim = PromptedSimulator(subject, batch_size=args.batch_size)
    n_prefix, n_body = sim.prompt_tokens(explanations, exemplars)
    n_tokens, n_pairs = n_prefix + n_body, len(explanations) * len(exemplars)

    bodies = [encode_pieces(prompt_pieces("", ex.tokens), subject.encode)[1] for ex in exemplars]
    width = round(n_body / n_pairs)
    pool = np.concatenate([np.asarray(b) for b in bodies])
    n_batches = max(1, round(n_tokens / (args.batch_size * width)))
    flat = np.resize(pool, n_batches * args.batch_size * width)
    batches = [torch.from_numpy(b.reshape(args.batch_size, width)) for b in np.split(flat, n_batches)]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def plain(batches=batches) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for b in batches:
                subject.body(input_ids=b.to(device), use_cache=False)
        sync()
        return time.perf_counter() - start

    def simulate(explanations=explanations, exemplars=exemplars) -> tuple[float, list]:
        start = time.perf_counter()
        preds = sim.simulate(explanations, exemplars)
        sync()
        return time.perf_counter() - start, preds

    pairs = [(i, j) for i in range(len(explanations)) for j in range(len(exemplars))][:args.naive_pairs]

    def naive(pairs=pairs) -> tuple[float, list]:
        start, out = time.perf_counter(), []
        with torch.inference_mode():
            for i, j in pairs:
                prefix, body, slots = encode_pieces(prompt_pieces(explanations[i], exemplars[j].tokens),
                                                    subject.encode)
                ids = torch.tensor([subject.prefix_ids + prefix + body], device=device)
                logits = subject.model(input_ids=ids, use_cache=False).logits[0]
                first = len(subject.prefix_ids) + len(prefix)
                out.append(expected_value(logits[[first + s for s in slots]], sim.bin_ids, sim.bins))
        sync()
        return time.perf_counter() - start, out

    plain(batches[:1]), simulate(explanations[:1], exemplars[:2]), naive(pairs[:1])  # warm-up
    before, (t_sim, preds), after = plain(), simulate(), plain()
    t_naive, naive_preds = naive()
    tp, ts = 2 * n_tokens / (before + after), n_tokens / t_sim
    diff = max(float(np.abs(preds[i][j] - ref).max()) for (i, j), ref in zip(pairs, naive_preds))
    print(f"model {args.model}  dtype {args.dtype}  device {device}  threads {torch.get_num_threads()}  "
          f"bins {sim.bins[0]}..{sim.bins[-1]}")
    print(f"{len(explanations)} explanations x {len(exemplars)} exemplars of {args.window} tokens = {n_pairs} pairs; "
          f"prompt tokens {n_tokens} (prefix {n_prefix // len(explanations)} per explanation, "
          f"body {n_body // n_pairs} per pair); batch {args.batch_size}")
    print(f"plain body forward : {tp:8.0f} tok/s  ({n_batches} batches of {args.batch_size} x {width}; "
          f"before {n_tokens / before:.0f}, after {n_tokens / after:.0f})")
    print(f"simulate           : {ts:8.0f} tok/s  ({t_sim:.1f} s)")
    print(f"ratio simulate/plain = {ts / tp:.3f}  (target >= 0.8)")
    print(f"pairs/s: simulate {n_pairs / t_sim:.2f}, naive loop {len(pairs) / t_naive:.3f} "
          f"(full-logit forward per pair, {len(pairs)} pairs in {t_naive:.1f} s); "
          f"speed-up {(n_pairs / t_sim) / (len(pairs) / t_naive):.1f}x")
    print(f"max |simulate - naive| over those pairs = {diff:.3f} (0..10 scale; {args.dtype} rounding)")


if __name__ == "__main__":
    main()
