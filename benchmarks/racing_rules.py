"""How racing rules trade simulated tokens against the valid score lost, on tuning neurons (how the default was chosen).

    python benchmarks/racing_rules.py --store STORE [--neurons 12] [--simulator finetuned:gemma-3-270m]
        [--work experiments/work/racing-rules] [--out benchmarks/results/racing_rules.json]
    python benchmarks/racing_rules.py --what stats --store STORE [--neurons 8] [--out benchmarks/results/racing_rules_stats.json]

The neurons are NOT the ones ``benchmarks/refine_cost.py`` reports on, nor ``experiments/quality.py``'s evaluation
neurons: the next ``--neurons`` that the same choice gives after excluding both (half by peak z-score, half by
frequency, over the store's layers). Each neuron's scripted candidate pool (``refine_cost.candidate_pool``: the
same kind of word lists, proposed in a fixed order) is simulated once on all of its valid exemplars with the real
simulator (kept in ``--work`` as .npz, resumed on a rerun). Every rule is then run through the real
``RefinementAgent`` and ``ValidScorer`` with a simulator that hands back those recorded predictions, so each rule
sees the same candidates and exactly the predictions a live run would get; tokens are counted as a live run
counts them. The explanation each rule chooses is then scored on test with the real simulator.

``--what stats`` compares rules for the statistical explainer's race (its own candidates: word lists, tier sets
scored as calibrated unions, negative lists; ``STATS_RULES``) on the same tuning neurons, through the real program
(``ns-dspy explain --method stats``) with the simulator's own cache (``SimulatorConfig(cache=True)``): the first
(exhaustive) run of a neuron simulates every candidate on all of valid, the other rules read the same predictions
back, and tokens are counted as a live run counts them (before the cache).

Prints per rule: how many times fewer tokens than exhaustive scoring, the valid score lost against the
exhaustive choice (mean, and the neurons losing more than 0.01) and the test difference.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shlex
import sys
from pathlib import Path

import dspy
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import choose  # noqa: E402
from refine_cost import EVALUATION, candidate_pool  # noqa: E402

from ns_dspy.agents import RefinementAgent, valid_scorer  # noqa: E402
from ns_dspy.atomic import atomic_write_bytes, atomic_write_json  # noqa: E402
from ns_dspy.build import build_simulator  # noqa: E402
from ns_dspy.config import SimulatorConfig  # noqa: E402
from ns_dspy.exemplars import ExemplarStore  # noqa: E402
from ns_dspy.lms.scripted import scripted_lm  # noqa: E402
from ns_dspy.scoring import HeldOut, pooled, report  # noqa: E402
from ns_dspy.scoring.racing import Racing  # noqa: E402
from ns_dspy.types import parse_units  # noqa: E402

RULES = {
    "exhaustive (--no-racing)": None,
    "random order, stages 1/8 1/4 1/2 of >= 10, delta 0.05 (the first rule)":
        Racing(stages=(0.125, 0.25, 0.5), min_exemplars=10, delta=0.05, epsilon=0.0, order="random"),
    "random order, first stage 6 windows, delta 0.05":
        Racing(stages=(0.125, 0.25, 0.5), delta=0.05, epsilon=0.0, order="random"),
    "random order, 6 windows, delta 0.1, margin 0.005, 4 stages": Racing(order="random"),
    "peak-first, 6 windows, delta 0.05": Racing(stages=(0.125, 0.25, 0.5, 0.75), delta=0.05, epsilon=0.0),
    "peak-first, 6 windows, delta 0.1, margin 0.005, 4 stages (default)": Racing(),
    "peak-first, 6 windows, delta 0.1, margin 0.01, 4 stages": Racing(epsilon=0.01),
}


STATS_RULES = {
    "exhaustive (--no-racing)": None,
    "peak-first, 6 windows, delta 0.1, margin 0.005, 4 stages (refinement's)": Racing(),
    "peak-first, 6 windows, delta 0.05, margin 0": Racing(delta=0.05, epsilon=0.0),
    "peak-first, stages 1/4 1/2 3/4, delta 0.1, margin 0.005": Racing(stages=(0.25, 0.5, 0.75)),
    "peak-first, stages 1/2 3/4, delta 0.1, margin 0.005": Racing(stages=(0.5, 0.75)),
    "random order, 6 windows, delta 0.1, margin 0.005, 4 stages": Racing(order="random"),
}


def stats_rule(simulator, valid: HeldOut, test: HeldOut, train, racing: Racing | None) -> dict:
    """The statistical explainer under one racing rule: its choice, valid and test scores, tokens counted."""
    from refine_cost import Counting

    from ns_dspy.config import ExplainConfig
    from ns_dspy.program import NeuronScope
    from ns_dspy.scoring import polysemantic

    counting = Counting(simulator)
    program = NeuronScope(counting, None, ExplainConfig(method="stats", racing=racing is not None))
    program._stats_racing = lambda: racing  # the rule under test in place of the statistical explainer's own
    pred = program(train=train, valid=valid)
    return {"explanation": " | ".join(pred.explanations), "simulated_tokens": counting.tokens,
            "valid": pred.polysemantic,
            "test": polysemantic(simulator, pred.explanations, test, calibration=pred.calibration).value}


class Recorded:
    """A simulator that hands back predictions recorded for (explanation, exemplar) pairs; anything not recorded
    is an error (the rules can only propose from the recorded pool)."""

    kind = "recorded"

    def __init__(self, exemplars, texts: list[str], preds: list[list[np.ndarray]]):
        self._index = {id(ex): j for j, ex in enumerate(exemplars)}
        self._preds = dict(zip(texts, preds))

    def simulate(self, explanations, exemplars):
        return [[self._preds[text][self._index[id(ex)]] for ex in exemplars] for text in explanations]


def record(simulator, valid: HeldOut, texts: list[str], path: Path) -> list[list[np.ndarray]]:
    """Every text simulated on all of ``valid``, cached in ``path`` (npz of flat predictions + lengths)."""
    digest = hashlib.sha256(json.dumps([texts, simulator.cache_key]).encode()).hexdigest()[:16]
    lengths = [len(ex.tokens) for ex in valid.exemplars]
    if path.is_file():
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["digest"]) == digest:
                flat = saved["preds"]
                cuts = np.cumsum(lengths)[:-1]
                return [list(np.split(row, cuts)) for row in flat]
    preds = simulator.simulate(texts, list(valid.exemplars))
    flat = np.stack([np.concatenate(row) for row in preds]).astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, preds=flat, digest=np.array(digest))
    atomic_write_bytes(path, buffer.getvalue())
    return [[np.asarray(p, np.float32) for p in row] for row in preds]


def run_rule(simulator, valid: HeldOut, train, seed: str, pool: list[str], racing: Racing | None,
             iterations: int, candidates: int) -> dict:
    lm, _ = scripted_lm([{"explanation": text} for text in pool])
    scorer = valid_scorer(simulator, valid, racing)
    with dspy.context(lm=lm):
        result = RefinementAgent(candidates=candidates, iterations=iterations)(seed=seed, score=scorer,
                                                                              exemplars=train)
    return {"explanation": result.explanation, "simulated_tokens": scorer.simulated_tokens}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--neurons", type=int, default=12)
    ap.add_argument("--simulator", default="finetuned:gemma-3-270m")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--work", default=str(ROOT / "experiments/work/racing-rules"))
    ap.add_argument("--what", choices=("refinement", "stats"), default="refinement")
    ap.add_argument("--out", help="default: benchmarks/results/racing_rules.json (racing_rules_stats.json for stats)")
    args = ap.parse_args(argv)
    stats = args.what == "stats"
    args.out = args.out or str(ROOT / f"benchmarks/results/racing_rules{'_stats' if stats else ''}.json")
    rules = STATS_RULES if stats else RULES

    store = ExemplarStore.open(args.store)
    evaluation = set()
    if EVALUATION.exists():
        evaluation = {u for us in json.loads(EVALUATION.read_text()).values() for u in parse_units(",".join(us))}
    benchmark = choose(store, 6, evaluation)  # the neurons refine_cost.py reports on
    taken = evaluation | {u for us in benchmark.values() for u in us}
    units = [u for us in choose(store, (args.neurons + 1) // 2, taken).values() for u in us][: args.neurons]
    simulator = build_simulator(SimulatorConfig(args.simulator, dtype=args.dtype, cache=stats))
    rows = {}
    for n, unit in enumerate(units, 1):
        train = store.train_exemplars(unit)
        valid = HeldOut.from_store(store, unit, "valid")
        test = HeldOut.from_store(store, unit, "test")
        if stats:
            rows[str(unit)] = row = {name: stats_rule(simulator, valid, test, train, rule)
                                     for name, rule in rules.items()}
            print(f"[{n}/{len(units)}] {unit}: " + ", ".join(f"{c['simulated_tokens']}" for c in row.values()),
                  flush=True)
            continue
        seed, pool = candidate_pool(train, unit, args.iterations * args.candidates)
        texts = list(dict.fromkeys([seed, *pool]))
        preds = record(simulator, valid, texts, Path(args.work) / f"{unit.layer}_{unit.index}.npz")
        full = {t: pooled(p, [ex.activations for ex in valid.exemplars], [ex.kind for ex in valid.exemplars]).r
                for t, p in zip(texts, preds)}
        replay = Recorded(valid.exemplars, texts, preds)
        row = {name: run_rule(replay, valid, train, seed, pool, rule, args.iterations, args.candidates)
               for name, rule in RULES.items()}
        tests = {}
        for cell in row.values():
            text = cell["explanation"]
            if text not in tests:
                tests[text] = report(simulator, text, test).value
            cell["valid"], cell["test"] = full[text], tests[text]
        rows[str(unit)] = row
        print(f"[{n}/{len(units)}] {unit}: " + ", ".join(f"{c['simulated_tokens']}" for c in row.values()),
              flush=True)
    base = "exhaustive (--no-racing)"
    summary = {}
    what = "the statistical explainer" if stats else f"{args.iterations} iterations x {args.candidates} candidates"
    print(f"\n{len(units)} tuning neurons, {args.simulator}, {what}\n{'rule':<72}{'fewer tok':>10}{'valid lost':>11}{'> 0.01':>7}{'test diff':>10}")
    for name in rules:
        tokens = np.mean([r[base]["simulated_tokens"] for r in rows.values()]) / \
            np.mean([r[name]["simulated_tokens"] for r in rows.values()])
        lost = np.array([r[base]["valid"] - r[name]["valid"] for r in rows.values()])
        diff = np.array([r[name]["test"] - r[base]["test"] for r in rows.values()])
        summary[name] = {"fewer_tokens": float(tokens), "valid_lost": float(lost.mean()),
                         "neurons_losing_over_0.01": int((lost > 0.01).sum()), "test_diff": float(diff.mean())}
        print(f"{name:<72}{tokens:>9.2f}x{lost.mean():>11.4f}{int((lost > 0.01).sum()):>7}{diff.mean():>+10.4f}")
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/racing_rules.py", *(argv or sys.argv[1:])])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, {"command": command, "simulator": args.simulator, "units": [str(u) for u in units],
                            "summary": summary, "neurons": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
