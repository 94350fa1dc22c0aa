"""The offline LM's loop guard on NeuronScope's own calls: each captured call answered with it off and on.

    python benchmarks/lm_loops.py capture --store STORE --neurons 1:2010,9:1397 --out REQUESTS.jsonl
    python benchmarks/lm_loops.py replay REQUESTS.jsonl [--span 32]

``capture`` explains the neurons with the real program (the default LM, no response cache, the demo's small
settings: 2 iterations x 2 candidates, 10 exemplars) and writes every request the in-process LM received (chat
messages and sampling options) in order. ``replay`` loads two engines of the default LM
(``local:qwen2.5-coder-1.5b-instruct``, the default prefix cache), one with ``loop_span=0`` (no guard) and one
with ``--span``, and has both answer every request in the captured order (which engine first alternates), each
request with its own sampling seed (its index), so that both draw the same tokens until the guard stops one:
an answer that never repeats a span of that many tokens is the same text both ways, which is checked. Prints per
request the completion tokens and seconds both ways, then the totals and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def capture(args) -> int:
    os.environ["DSPY_CACHEDIR"] = tempfile.mkdtemp(prefix="lm-loops-dspy-")  # no cached answer: every call runs
    from ns_dspy.build import build_program
    from ns_dspy.config import ExplainConfig, LMConfig, RunConfig
    from ns_dspy.exemplars import ExemplarStore
    from ns_dspy.lms import local
    from ns_dspy.runs.runner import explain_unit
    from ns_dspy.types import parse_units

    out = Path(args.out)
    if out.exists():
        sys.exit(f"{out} exists: give a new --out")
    store = ExemplarStore.open(args.store)
    units = parse_units(args.neurons)
    config = RunConfig(explain=ExplainConfig(iterations=2, candidates=2, max_exemplars=10), lm=LMConfig(cache=False))
    complete = local.LlamaCppEngine.complete
    rows = []

    def recording(engine, request):
        rows.append({"messages": local._chat_messages(request), "options": local._options(request)})
        return complete(engine, request)

    local.LlamaCppEngine.complete = recording
    built = build_program(config)
    try:
        for unit in units:
            record = explain_unit(built.program, store, unit, built.lm)
            print(f"{unit}: {record.status}, {len(rows)} requests so far", flush=True)
    finally:
        built.close()
        local.LlamaCppEngine.complete = complete
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(out)
    print(f"wrote {len(rows)} requests to {out}")
    return 0


def replay(args) -> int:
    from ns_dspy.config import DEFAULT_LM
    from ns_dspy.lms import make_lm
    from ns_dspy.machine import cpu_description

    requests = [json.loads(line) for line in Path(args.requests).read_text().splitlines() if line.strip()]
    print(f"CPU: {cpu_description()['model']}; LM {DEFAULT_LM}; {len(requests)} requests from {args.requests}")
    spans = (0, args.span)
    engines = {s: make_lm(DEFAULT_LM, cache=False, loop_span=s).engine for s in spans}
    seconds = {s: 0.0 for s in spans}
    tokens = {s: 0 for s in spans}
    differ = []
    try:
        for i, req in enumerate(requests):
            texts, counts = {}, {}
            for s in (spans if i % 2 == 0 else spans[::-1]):
                engine = engines[s]
                with engine._lock:  # the engine's own answer (guard and trim), with this request's seed
                    llama = engine._load()
                    start = time.perf_counter()
                    out = engine._answer(llama, req["messages"], {**req["options"], "seed": i})
                    seconds[s] += time.perf_counter() - start
                texts[s] = out["choices"][0]["message"]["content"]
                counts[s] = out["usage"]["completion_tokens"]
                tokens[s] += counts[s]
            fired = counts[args.span] < counts[0]
            if not fired and texts[0] != texts[args.span]:
                differ.append(i)
            print(f"request {i + 1}/{len(requests)}: off {counts[0]} tokens, on {counts[args.span]} tokens"
                  + (" (stopped a loop)" if fired else ""), flush=True)
    finally:
        for engine in engines.values():
            engine.close()
    off, on = seconds[0], seconds[args.span]
    print(f"\nguard off: {tokens[0]} completion tokens, {off:.1f} s; guard on (span {args.span}): {tokens[args.span]} "
          f"tokens, {on:.1f} s; {engines[args.span].loops_stopped} loops stopped; LM time ratio off / on "
          f"{off / on:.2f}x; answers that differ without a stop: {differ or 'none'}")
    return 0 if not differ else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("capture", help="explain neurons, writing every LM request")
    cap.add_argument("--store", required=True)
    cap.add_argument("--neurons", required=True, help="LAYER:INDEX units, e.g. 1:2010,9:1397")
    cap.add_argument("--out", required=True)
    rep = sub.add_parser("replay", help="answer captured requests with the loop guard off and on")
    rep.add_argument("requests")
    rep.add_argument("--span", type=int, default=32, help="the guard's span in tokens (default 32)")
    args = parser.parse_args(argv)
    return capture(args) if args.command == "capture" else replay(args)


if __name__ == "__main__":
    raise SystemExit(main())
