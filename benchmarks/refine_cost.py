"""Simulation cost of refinement (or of the statistical explainer) with racing on and off, on the same neurons
and the same candidates.

    python benchmarks/refine_cost.py --store STORE [--neurons 12] [--simulator finetuned:gemma-3-270m]
        [--iterations 5] [--candidates 8] [--out benchmarks/results/refine_cost.json]
    python benchmarks/refine_cost.py --what stats --store STORE [--neurons 12] [--out benchmarks/results/stats_cost.json]

Runs the Refinement agent on ``--neurons`` real neurons of an exemplar store twice, exhaustive scoring
(``--no-racing``) and racing (the default), interleaved neuron by neuron so that drift of the machine affects
both. The LM is scripted so that only simulation differs: for each neuron it proposes, in a fixed order, a pool
of word-list explanations made from the neuron's train exemplars (its strongest tokens in random subsets, the
statistical explainer's lists, and decoys from its quiet windows), whatever the history says; so the two runs
see the same candidates, and differ only where racing dropped a candidate that exhaustive scoring would have
kept. The seed is the statistical explainer's three-word list.

``--what stats`` runs the statistical explainer instead (``ns-dspy explain --method stats``: its word lists and
tier sets scored as calibrated unions, then the negative lists), which needs no LM: the candidates are its own,
the same in both runs, and racing drops the clear losers among them.

Prints per neuron and on average: simulated tokens, seconds, the selected explanation's valid and test scores,
and the ratios. Neurons are chosen like ``experiments/quality.py`` chooses them (half by peak z-score, half by
frequency, over the store's layers) but never among that experiment's evaluation neurons. Results are written
per neuron to ``--out`` as they finish; a rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import dspy
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))

from quality import choose  # noqa: E402

from ns_dspy.agents import RefinementAgent, valid_scorer  # noqa: E402
from ns_dspy.agents.evidence import statistical_explanations, token_evidence, word_list  # noqa: E402
from ns_dspy.atomic import atomic_write_json  # noqa: E402
from ns_dspy.exemplars import ExemplarStore  # noqa: E402
from ns_dspy.lms.scripted import scripted_lm  # noqa: E402
from ns_dspy.program import NeuronScope, refinement_racing, statistical_racing  # noqa: E402
from ns_dspy.scoring import HeldOut, polysemantic, report  # noqa: E402
from ns_dspy.scoring.racing import Racing  # noqa: E402
from ns_dspy.build import build_simulator  # noqa: E402
from ns_dspy.config import ExplainConfig, SimulatorConfig  # noqa: E402
from ns_dspy.types import UnitId, parse_units  # noqa: E402

EVALUATION = ROOT / "experiments/results/quality-gemma-3-270m/neurons.json"


def candidate_pool(train, unit: UnitId, size: int) -> tuple[str, list[str]]:
    """(seed, ``size`` proposals) for a unit, from its train exemplars only; deterministic per unit."""
    top = [ex for ex in train if ex.kind != "random"]
    evidence = token_evidence(top, [ex for ex in train if ex.kind == "random"], limit=16)
    stats = statistical_explanations(evidence)
    carriers = [row.token for row in evidence.carriers if row.token.strip()]
    quiet = [t for t, _, _ in evidence.quiet if t.strip()] or ["the", "of", "and"]
    seed = stats[min(2, len(stats) - 1)]
    rng = np.random.default_rng(unit.layer * 100_003 + unit.index)
    pool = [s for s in stats if s != seed]
    while len(pool) < size:
        roll = rng.random()
        if roll < 0.6 and carriers:  # a subset of the strong tokens, best first or shuffled
            k = int(rng.integers(1, min(6, len(carriers)) + 1))
            picks = list(rng.choice(carriers, size=k, replace=False))
        elif roll < 0.85 and carriers:  # strong tokens diluted with quiet ones
            picks = list(rng.choice(carriers, size=1)) + list(rng.choice(quiet, size=min(2, len(quiet)),
                                                                         replace=False))
        else:  # a decoy: quiet tokens only
            picks = list(rng.choice(quiet, size=min(int(rng.integers(1, 4)), len(quiet)), replace=False))
        text = word_list(picks)
        if text not in pool and text != seed:
            pool.append(text)
        elif rng.random() < 0.05:  # a small unit may not have enough distinct lists: repeat is allowed then
            pool.append(text)
    return seed, pool[:size]


def refine_once(simulator, store, unit: UnitId, racing: bool, iterations: int, candidates: int) -> dict:
    train = store.train_exemplars(unit)
    valid = HeldOut.from_store(store, unit, "valid")
    test = HeldOut.from_store(store, unit, "test")
    seed, pool = candidate_pool(train, unit, iterations * candidates)
    lm, _ = scripted_lm([{"explanation": text} for text in pool])
    scorer = valid_scorer(simulator, valid, Racing() if racing else None)
    start = time.perf_counter()
    with dspy.context(lm=lm):
        result = RefinementAgent(candidates=candidates, iterations=iterations)(seed=seed, score=scorer,
                                                                              exemplars=train)
    seconds = time.perf_counter() - start
    return {"explanation": result.explanation, "valid": result.score,
            "test": report(simulator, result.explanation, test).value, "simulated_tokens": scorer.simulated_tokens,
            "seconds": round(seconds, 2), "scored": len(result.history), "raced_out": len(result.raced),
            "iterations": len(result.trajectory) - 1, "stopped": result.stopped}


class Counting:
    """A simulator that counts the exemplar tokens it simulates (explanations x tokens), else the one it wraps."""

    def __init__(self, simulator):
        self._inner, self.tokens = simulator, 0

    def simulate(self, explanations, exemplars):
        self.tokens += len(explanations) * sum(len(ex.tokens) for ex in exemplars)
        return self._inner.simulate(explanations, exemplars)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def stats_once(simulator, store, unit: UnitId, racing: bool) -> dict:
    """The statistical explainer on one unit; its valid scoring counted (the test score is not)."""
    train = store.train_exemplars(unit)
    valid = HeldOut.from_store(store, unit, "valid")
    test = HeldOut.from_store(store, unit, "test")
    counting = Counting(simulator)
    start = time.perf_counter()
    pred = NeuronScope(counting, None, ExplainConfig(method="stats", racing=racing))(train=train, valid=valid)
    seconds = time.perf_counter() - start
    on_test = polysemantic(simulator, pred.explanations, test, calibration=pred.calibration).value
    return {"explanation": " | ".join(pred.explanations), "valid": pred.polysemantic, "test": on_test,
            "simulated_tokens": counting.tokens, "seconds": round(seconds, 2),
            "scored": len(pred.trace.stats_candidates), "raced_out": len(pred.trace.stats_raced)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--neurons", default="12", help="a count (chosen as described) or LAYER:INDEX units")
    ap.add_argument("--simulator", default="finetuned:gemma-3-270m")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--what", choices=("refinement", "stats"), default="refinement",
                    help="refinement (a scripted LM's candidates) or stats (the statistical explainer's own)")
    ap.add_argument("--out", help="results JSON (default: benchmarks/results/refine_cost.json, or stats_cost.json "
                                  "with --what stats)")
    args = ap.parse_args(argv)
    args.out = args.out or str(ROOT / f"benchmarks/results/{'stats' if args.what == 'stats' else 'refine'}_cost.json")

    store = ExemplarStore.open(args.store)
    if args.neurons.isdigit():
        exclude = set()
        if EVALUATION.exists():
            exclude = {u for units in json.loads(EVALUATION.read_text()).values() for u in parse_units(",".join(units))}
        chosen = choose(store, (int(args.neurons) + 1) // 2, exclude)
        units = [u for group in chosen.values() for u in group][: int(args.neurons)]
    else:
        units = parse_units(args.neurons)
    out = Path(args.out)
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/refine_cost.py", *(argv or sys.argv[1:])])
    rule = (statistical_racing if args.what == "stats" else refinement_racing)(ExplainConfig())
    settings = {"store": str(Path(args.store).resolve()), "simulator": args.simulator, "iterations": args.iterations,
                "candidates": args.candidates, "racing": vars(rule) | {"stages": list(rule.stages)}}
    if args.what == "stats":
        settings = {k: v for k, v in settings.items() if k not in ("iterations", "candidates")} | {"what": "stats"}
    results = json.loads(out.read_text()) if out.exists() else {}
    old = results.get("settings") or {}
    if {k: v for k, v in old.items() if k != "racing"} != {k: v for k, v in settings.items() if k != "racing"}:
        results = {"settings": settings, "neurons": {}}
    elif old.get("racing") != settings["racing"]:  # another rule: the exhaustive runs stand, the races are rerun
        results["neurons"] = {k: {"exhaustive": row["exhaustive"]} for k, row in results["neurons"].items()}
        results["settings"] = settings
    results["command"] = command
    simulator = build_simulator(SimulatorConfig(args.simulator, dtype=args.dtype, cache=False))
    for n, unit in enumerate(units, 1):
        key = str(unit)
        if "racing" not in results["neurons"].get(key, {}):
            row = dict(results["neurons"].get(key, {}))
            for mode, racing in (("exhaustive", False), ("racing", True)):
                if mode in row:
                    continue
                row[mode] = (stats_once(simulator, store, unit, racing) if args.what == "stats" else
                             refine_once(simulator, store, unit, racing, args.iterations, args.candidates))
            results["neurons"][key] = row
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(out, results)
        row = results["neurons"][key]
        e, r = row["exhaustive"], row["racing"]
        print(f"[{n}/{len(units)}] {key}: simulated {e['simulated_tokens']} -> {r['simulated_tokens']} tokens, "
              f"{e['seconds']:.0f} -> {r['seconds']:.0f} s, test {e['test']:.3f} -> {r['test']:.3f}"
              f"{'' if e['explanation'] == r['explanation'] else ' (another choice)'}", flush=True)
    rows = [results["neurons"][str(u)] for u in units]
    mean = lambda mode, k: float(np.mean([row[mode][k] for row in rows]))  # noqa: E731
    diffs = np.array([row["racing"]["test"] - row["exhaustive"]["test"] for row in rows])
    what = ("the statistical explainer's candidates" if args.what == "stats" else
            f"{args.iterations} iterations x {args.candidates} candidates")
    print(f"\n{len(rows)} neurons, {args.simulator}, {what}")
    print(f"{'':<12}{'simulated tok':>14}{'seconds':>9}{'valid':>8}{'test':>8}")
    for mode in ("exhaustive", "racing"):
        print(f"{mode:<12}{mean(mode, 'simulated_tokens'):>14.0f}{mean(mode, 'seconds'):>9.1f}"
              f"{mean(mode, 'valid'):>8.3f}{mean(mode, 'test'):>8.3f}")
    target = "" if args.what == "stats" else " (target >= 3x)"
    print(f"simulated tokens: {mean('exhaustive', 'simulated_tokens') / mean('racing', 'simulated_tokens'):.2f}x "
          f"fewer with racing{target}; seconds {mean('exhaustive', 'seconds') / mean('racing', 'seconds'):.2f}x")
    print(f"test score, racing - exhaustive: {diffs.mean():+.4f} (SE {diffs.std(ddof=1) / np.sqrt(len(diffs)) if len(diffs) > 1 else 0:.4f}; "
          f"target within 0.01); the same explanation chosen for "
          f"{sum(row['racing']['explanation'] == row['exhaustive']['explanation'] for row in rows)} of {len(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
