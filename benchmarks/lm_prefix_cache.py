"""The offline LM's prompt reuse on NeuronScope's own calls: the same neurons explained two ways.

    python benchmarks/lm_prefix_cache.py --store STORE --neurons 5:1319,9:1329 [--compare cache|order]
        [--program default|none|FILE] [--iterations 2] [--candidates 2] [--patience 1] [--max-exemplars 10]

Two engines of the default LM (``local:qwen2.5-coder-1.5b-instruct``, llama.cpp in process, no response cache)
explain each neuron in turn with the real program, in alternating order so that drift of a shared machine reaches
both ways:

- ``--compare cache`` (default): one engine with ``prefix_cache=0``, one with the default
  (:class:`ns_dspy.lms.local.PrefixCache`). Both serve the same calls, so with the same seed they must give the same
  answers, which is checked.
- ``--compare order``: both with the prefix cache; the Refinement agent's inputs in today's order (the neuron's
  excerpts and statistics first, the history last: every refinement call of a neuron starts with the same
  tokens) against the order before 2026-12-06 (the history first). The prompts differ, so the answers do too:
  compare the costs per refinement call, and the valid scores as a check.

Prints per neuron and in total the seconds spent inside the LM (all agents, and the Refinement agent's calls
alone), the prompt tokens sent and those llama.cpp had to evaluate (a prompt less the prefix it reused), and the
ratios. The simulator's cache is off, so both ways simulate.
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--neurons", required=True, help="LAYER:INDEX units, e.g. 5:1319,9:1329")
    parser.add_argument("--compare", choices=("cache", "order"), default="cache")
    parser.add_argument("--program", default="default", help="compiled program: default (packaged), none or FILE")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--patience", type=int, default=1)
    parser.add_argument("--max-exemplars", type=int, default=10)
    args = parser.parse_args(argv)

    from ns_dspy.build import build_program
    from ns_dspy.config import DEFAULT_LM, ExplainConfig, RunConfig, SimulatorConfig
    from ns_dspy.exemplars import ExemplarStore
    from ns_dspy.lms import make_lm
    from ns_dspy.lms.local import PREFIX_CACHE_ENTRIES, _chat_messages
    from ns_dspy.lms.scripted import agent_of
    from ns_dspy.machine import cpu_description
    from ns_dspy.runs.runner import explain_unit
    from ns_dspy.types import parse_units

    store = ExemplarStore.open(args.store)
    units = parse_units(args.neurons)
    explain = ExplainConfig(iterations=args.iterations, candidates=args.candidates, patience=args.patience,
                            max_exemplars=args.max_exemplars, stats_modes=False, tiers=False)
    config = RunConfig(explain=explain, simulator=SimulatorConfig(cache=False), program=args.program)
    print(f"CPU: {cpu_description()['model']}; LM {DEFAULT_LM}; program: {config.program_path() or 'none'}; "
          f"{args.iterations} iterations x {args.candidates} candidates, patience {args.patience}")
    if args.compare == "cache":
        names, entries = ("off", "on"), {"off": 0, "on": PREFIX_CACHE_ENTRIES}
    else:
        names = ("history first", "history last")
        entries = dict.fromkeys(names, PREFIX_CACHE_ENTRIES)
    # one program (one simulator loaded); a way's Refinement signature is set before each of its neurons
    built = build_program(config, with_lm=False)
    predictor = built.program.refinement.refine
    signatures = dict.fromkeys(names, predictor.signature)
    if args.compare == "order":  # the Refinement agent's inputs as they were before 2026-12-06
        field = predictor.signature.input_fields["history"]
        signatures["history first"] = predictor.signature.delete("history").prepend("history", field)
    ways = {}
    for name in names:
        lm = make_lm(DEFAULT_LM, temperature=config.lm.temperature, max_tokens=config.lm.max_tokens, cache=False,
                     prefix_cache=entries[name])
        ways[name] = way = {"lm": lm, "engine": lm.engine, "calls": []}
        complete = lm.engine.complete

        def timed(request, complete=complete, way=way):
            engine, start = way["engine"], time.perf_counter()
            before = engine.prompt_evaluated
            try:
                return complete(request)
            finally:
                prompt = "\n".join(message["content"] for message in _chat_messages(request))
                way["calls"].append((agent_of(prompt), time.perf_counter() - start,
                                     engine.prompt_evaluated - before))

        lm.engine.complete = timed
    totals = {name: dict.fromkeys(("seconds", "refine_seconds", "refine_calls", "sent", "evaluated",
                                   "refine_evaluated"), 0.0)
              for name in names}
    same = True
    try:
        for i, unit in enumerate(units):
            answers = {}
            for name in (names if i % 2 == 0 else names[::-1]):
                way = ways[name]
                first = len(way["calls"])
                predictor.signature = signatures[name]
                record = explain_unit(built.program, store, unit, way["lm"])
                calls = way["calls"][first:]
                refine = [c for c in calls if c[0] == "refinement"]
                row = {"seconds": sum(c[1] for c in calls), "refine_seconds": sum(c[1] for c in refine),
                       "refine_calls": len(refine), "sent": record.typed_trace.lm_usage["prompt_tokens"],
                       "evaluated": sum(c[2] for c in calls), "refine_evaluated": sum(c[2] for c in refine)}
                for key, value in row.items():
                    totals[name][key] += value
                answers[name] = ([f.explanation for f in record.typed_trace.finals] if record.status == "done"
                                 else record.error)
                print(f"{unit} {name:>13}: LM {row['seconds']:7.1f} s ({row['refine_seconds']:6.1f} s in "
                      f"{row['refine_calls']} refinement calls); prompt tokens {row['sent']:6d} sent, "
                      f"{row['evaluated']:6d} evaluated ({row['refine_evaluated']:6d} by refinement); "
                      f"{record.status}, valid {record.score_valid}", flush=True)
            if args.compare == "cache" and answers["off"] != answers["on"]:
                same = False
                print(f"{unit}: the answers differ: {answers}")
    finally:
        built.close()
        for way in ways.values():
            way["engine"].close()
    a, b = (totals[name] for name in names)
    per_call = [t["refine_seconds"] / max(t["refine_calls"], 1) for t in (a, b)]
    tokens_per_call = [t["refine_evaluated"] / max(t["refine_calls"], 1) for t in (a, b)]
    print(f"total over {len(units)} neurons, {names[0]} / {names[1]}: LM seconds {a['seconds']:.1f} / "
          f"{b['seconds']:.1f} ({a['seconds'] / b['seconds']:.2f}x); prompt tokens sent {a['sent']:.0f} / "
          f"{b['sent']:.0f}, evaluated {a['evaluated']:.0f} / {b['evaluated']:.0f}; refinement: "
          f"{a['refine_calls']:.0f} / {b['refine_calls']:.0f} calls, {per_call[0]:.1f} / {per_call[1]:.1f} s per "
          f"call ({per_call[0] / max(per_call[1], 1e-9):.2f}x), {tokens_per_call[0]:.0f} / {tokens_per_call[1]:.0f} "
          f"prompt tokens evaluated per call"
          + (f"; same answers: {same}" if args.compare == "cache" else ""))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
