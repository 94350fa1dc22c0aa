"""What one forward of k tokens costs the offline LM, against k forwards of one token (llama.cpp in process).

    python benchmarks/lm_batch_cost.py [--lm qwen2.5-coder-1.5b-instruct] [--sizes 1,2,3,4,6,9] [--threads 2]

Speculative decoding (a guess of the next tokens checked in one batched forward, e.g. prompt lookup) pays only
where a forward of k tokens costs much less than k forwards of one, as on a GPU or a memory-bound CPU. This
script evaluates a 500-token prefix once, then times decoding k more tokens after it (the median of 6, the KV
cache trimmed back each time), with llama.cpp's logits at the last position only and at every position (which
checking a guess needs), and prints each time and its ratio to k one-token forwards.
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", default="qwen2.5-coder-1.5b-instruct", help="a registered offline LM asset")
    parser.add_argument("--sizes", default="1,2,3,4,6,9")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from ns_dspy.lms import LMAsset
    from ns_dspy.lms.guard import load_kwargs
    from ns_dspy.lms.local import _import_llama
    from ns_dspy.machine import cpu_description

    Llama = _import_llama()
    llm = Llama(model_path=str(LMAsset.registry[args.lm].path()), **load_kwargs(2048, args.threads, 0, 0, None))
    tokens = llm.tokenize(("The quick brown fox jumps over the lazy dog. " * 60).encode())[:520]
    llm.eval(tokens[:500])
    base = llm.n_tokens
    print(f"CPU: {cpu_description()['model']}; LM {args.lm}; {args.threads} threads; after a 500-token prefix")
    one = None
    for k in (int(s) for s in args.sizes.split(",")):
        row = []
        for every in (False, True):
            times = []
            for _ in range(6):
                llm._ctx.kv_cache_seq_rm(-1, base, -1)
                start = time.perf_counter()
                llm._batch.set_batch(batch=tokens[500:500 + k], n_past=base, logits_all=every)
                llm._ctx.decode(llm._batch)
                times.append(time.perf_counter() - start)
            row.append(sorted(times)[len(times) // 2])
        one = one or row[0]
        print(f"k={k}: last position {1000 * row[0]:6.1f} ms ({row[0] / (k * one):.2f} of k one-token forwards), "
              f"every position {1000 * row[1]:6.1f} ms ({row[1] / (k * one):.2f})", flush=True)
    llm.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
