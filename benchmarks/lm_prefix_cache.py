"""The offline LM's prefix cache on NeuronScope's own calls: the same neurons explained with it off and on.

    python benchmarks/lm_prefix_cache.py --store STORE --neurons 5:1319,9:1329 [--program default|none|FILE]
        [--iterations 2] [--candidates 2] [--max-exemplars 10]

Two engines of the default LM (``local:qwen2.5-coder-1.5b-instruct``, llama.cpp in process, no response
cache), one with ``prefix_cache=0`` and one with the default (:class:`ns_dspy.lms.local.PrefixCache`), explain
each neuron in turn with the real program (in alternating order, so that drift of a shared machine reaches both);
both engines serve the same calls, so with the same seed they must give the same answers, which is checked. Prints
per neuron and in total the seconds spent inside the LM, the prompt tokens sent and those the cache let
llama.cpp skip, and the ratio of LM seconds (off / on). The simulator's cache is off, so both ways simulate.
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--neurons", required=True, help="LAYER:INDEX units, e.g. 5:1319,9:1329")
    parser.add_argument("--program", default="default", help="compiled program: default (packaged), none or FILE")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--max-exemplars", type=int, default=10)
    args = parser.parse_args(argv)

    from ns_dspy.build import build_program
    from ns_dspy.config import DEFAULT_LM, ExplainConfig, RunConfig, SimulatorConfig
    from ns_dspy.exemplars import ExemplarStore
    from ns_dspy.lms import make_lm
    from ns_dspy.lms.local import PREFIX_CACHE_ENTRIES
    from ns_dspy.machine import cpu_description
    from ns_dspy.runs.runner import explain_unit
    from ns_dspy.types import parse_units

    store = ExemplarStore.open(args.store)
    units = parse_units(args.neurons)
    explain = ExplainConfig(iterations=args.iterations, candidates=args.candidates, max_exemplars=args.max_exemplars,
                            stats_modes=False, tiers=False)
    config = RunConfig(explain=explain, simulator=SimulatorConfig(cache=False), program=args.program)
    built = build_program(config, with_lm=False)
    print(f"CPU: {cpu_description()['model']}; LM {DEFAULT_LM}; program: {config.program_path() or 'none'}")
    ways = {}
    for name, entries in (("off", 0), ("on", PREFIX_CACHE_ENTRIES)):
        lm = make_lm(DEFAULT_LM, temperature=config.lm.temperature, max_tokens=config.lm.max_tokens, cache=False,
                     prefix_cache=entries)
        engine = lm.engine
        spent = [0.0]
        complete = engine.complete

        def timed(request, complete=complete, spent=spent):
            start = time.perf_counter()
            try:
                return complete(request)
            finally:
                spent[0] += time.perf_counter() - start

        engine.complete = timed
        ways[name] = {"lm": lm, "engine": engine, "spent": spent, "rows": []}
    totals = {name: [0.0, 0, 0] for name in ways}
    same = True
    try:
        for i, unit in enumerate(units):
            order = ("off", "on") if i % 2 == 0 else ("on", "off")
            answers = {}
            for name in order:
                way = ways[name]
                before, reused_before = way["spent"][0], _reused(way["engine"])
                record = explain_unit(built.program, store, unit, way["lm"])
                trace = record.typed_trace
                seconds = way["spent"][0] - before
                reused = _reused(way["engine"]) - reused_before
                prompt = trace.lm_usage["prompt_tokens"]
                answers[name] = [f.explanation for f in trace.finals] if record.status == "done" else record.error
                totals[name][0] += seconds
                totals[name][1] += prompt
                totals[name][2] += reused
                print(f"{unit} {name:>3}: LM {seconds:7.1f} s, {prompt:6d} prompt tokens, {reused:6d} reused by the "
                      f"cache; {record.status}, valid {record.score_valid}", flush=True)
            if answers["off"] != answers["on"]:
                same = False
                print(f"{unit}: the answers differ: {answers}")
    finally:
        built.close()
        for way in ways.values():
            way["engine"].close()
    off, on = totals["off"], totals["on"]
    print(f"total over {len(units)} neurons: LM seconds off {off[0]:.1f}, on {on[0]:.1f}, ratio {off[0] / on[0]:.2f}x; "
          f"prompt tokens {off[1]} / {on[1]}, reused by the cache {on[2]} ({on[2] / max(on[1], 1):.0%}); "
          f"same answers: {same}")
    return 0 if same else 1


def _reused(engine) -> int:
    cache = getattr(engine, "_cache", None)
    return cache.reused_tokens if cache is not None else 0


if __name__ == "__main__":
    raise SystemExit(main())
