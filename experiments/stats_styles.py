"""Does the default simulator read a graded word list better than a flat one? A development experiment for the
statistical explainer (issue 15), on development neurons only (never the evaluation neurons).

    python experiments/stats_styles.py --store experiments/work/quality/store \
        --out experiments/results/stats-styles [--neurons 12] [--simulator finetuned:gemma-3-270m]

For each neuron, from its train windows only (:func:`ns_dspy.agents.evidence.token_evidence`):

- ``flat``: today's statistical candidates (word lists of the top carriers, 1/2/3/5/8 of them, and the commonest
  peak tokens), the best on valid;
- ``graded``: two-tier lists in the wording the simulator was trained on for graded units ("Strongest on the words
  "A" and "B"; weaker on the words "C", "D" and "E"."), strong/weak splits 1+2, 1+4, 2+3, 2+6, 3+5;
- ``corr``: word lists ranked for correlation (:func:`ns_dspy.agents.evidence.ranked_tokens`: tokens seen at
  least twice in train, by their shrunk mean train activation); prefixes of 1, 2, 3, 5, 8, 12 and 16 tokens and
  the prefix whose indicator (1 on a listed token, 0 elsewhere) correlates best with the train activations, the
  best on valid;
- ``flat+corr``: the best on valid among flat and corr together;
- ``tiers``: the statistical explainer as shipped (``ns-dspy explain --method stats``): flat lists and sets of
  tier lists of the ranked tokens (:func:`~ns_dspy.agents.evidence.tiered_explanations`), a set scored as a
  union calibrated on valid, the best on valid; its test score uses the valid calibration.

Two rows need no simulator and bound what a word list can reach: ``indicator`` is the test correlation of that
best train prefix's indicator (a word list read perfectly, as a yes/no per token) and ``lookup`` the test
correlation of each token's mean train activation (a graded reading of every token, as in ``quality.py``).

Each style's choice is scored on test. Neurons: chosen as ``experiments/quality.py`` chooses, excluding its
evaluation neurons (today's 8 and the 16 that ``--per-group 8`` would choose on this store) and the racing
benchmark's (``benchmarks/refine_cost.py``), so the next ones in each ranking. Results per neuron in ``OUT/styles.json`` (resumed on a rerun), the table in ``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))

from paper_analysis import _pm, mean_se  # noqa: E402
from quality import choose, lookup_score  # noqa: E402

from ns_dspy.agents import valid_scorer  # noqa: E402
from ns_dspy.agents.evidence import ranked_tokens, statistical_explanations, token_evidence, token_key, word_list  # noqa: E402
from ns_dspy.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from ns_dspy.exemplars import ExemplarStore  # noqa: E402
from ns_dspy.program import NeuronScope  # noqa: E402
from ns_dspy.scoring import HeldOut, polysemantic, report  # noqa: E402
from ns_dspy.build import build_simulator  # noqa: E402
from ns_dspy.config import ExplainConfig, SimulatorConfig  # noqa: E402
from ns_dspy.types import UnitId, parse_units  # noqa: E402

EVALUATION = ROOT / "experiments/results/quality-gemma-3-270m/neurons.json"
SPLITS = ((1, 2), (1, 4), (2, 3), (2, 6), (3, 5))
STYLES = ("flat", "graded", "corr", "flat+corr", "tiers")


def graded(carriers: list[str]) -> list[str]:
    out = []
    for strong, weak in SPLITS:
        if strong + weak <= len(carriers):
            text = (f"Strongest on {word_list(carriers[:strong])}; "
                    f"weaker on {word_list(carriers[strong:strong + weak])}.")
            if text not in out:
                out.append(text)
    return out


def indicator_r(exemplars, keys: set[str]) -> float | None:
    acts = np.concatenate([ex.activations for ex in exemplars]).astype(np.float64)
    x = np.array([token_key(t) in keys for ex in exemplars for t in ex.tokens], np.float64)
    return None if x.std() == 0 or acts.std() == 0 else float(np.corrcoef(x, acts)[0, 1])


def excluded(store) -> set[UnitId]:
    """The evaluation neurons (today's, and the 16 a fresh ``experiments/quality.py --per-group 8`` would choose)
    and the racing benchmark's: never development neurons."""
    units = {u for group in choose(store, 8, set()).values() for u in group}
    if EVALUATION.exists():
        data = json.loads(EVALUATION.read_text())
        units |= {UnitId.parse(u) for group in data.values() for u in group} if isinstance(data, dict) else set()
    bench = ROOT / "benchmarks/results/refine_cost.json"
    if bench.exists():
        units |= {UnitId.parse(u) for u in json.loads(bench.read_text()).get("neurons", {})}
    return units


def neuron_arguments(ap) -> None:
    """``--store``, ``--out``, ``--neurons`` and ``--evaluation``, as the scripts that call :func:`chosen_units` read
    them."""
    ap.add_argument("--store", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--neurons", default="12", help="a count (chosen as stats_styles.py does) or LAYER:INDEX units")
    ap.add_argument("--evaluation", action="store_true",
                    help="measure the named evaluation neurons (LAYER:INDEX units), once a choice was made on the "
                         "development neurons")


def valid_test_table(results: dict, units, keys, labels) -> list[str]:
    """Markdown rows, one per neuron of ``units``: ``results[unit][key]``'s valid and test scores for each key, the
    columns headed by ``labels``."""
    lines = ["| neuron | " + " | ".join(f"{label} valid | {label} test" for label in labels) + " |",
             "|---|" + "---:|" * (2 * len(keys))]
    for u in units:
        lines.append(f"| {u} | " + " | ".join(f"{results[u][k]['valid']:.3f} | {results[u][k]['test']:.3f}"
                                             for k in keys) + " |")
    return lines


def chosen_units(ap, store, neurons: str, evaluation: bool) -> list[UnitId]:
    """:func:`development_units`, or with ``evaluation`` the named evaluation neurons; a count with
    ``evaluation``, or development neurons among :func:`excluded`, is one usage error of ``ap``."""
    if evaluation and neurons.isdigit():
        ap.error("--evaluation measures named neurons: give --neurons LAYER:INDEX,...")
    units = development_units(store, neurons)
    if not evaluation and set(units) & excluded(store):
        ap.error("development neurons must not overlap the evaluation/benchmark neurons (--evaluation measures them)")
    return units


def development_units(store, neurons: str) -> list[UnitId]:
    """``neurons``: a count (half by peak z-score, half by frequency, as ``quality.py`` chooses, none of
    :func:`excluded`) or ``LAYER:INDEX`` units as given."""
    if neurons.isdigit():
        return [u for group in choose(store, int(neurons) // 2, excluded(store)).values() for u in group]
    return parse_units(neurons)


def one(simulator, store, unit: UnitId) -> dict:
    train = store.train_exemplars(unit)
    valid, test = HeldOut.from_store(store, unit, "valid"), HeldOut.from_store(store, unit, "test")
    top = [ex for ex in train if ex.kind != "random"]
    evidence = token_evidence(top, [ex for ex in train if ex.kind == "random"], limit=16)
    carriers = [row.token for row in evidence.carriers if row.token.strip()]
    ranked = ranked_tokens(train)
    best_k = int(np.argmax([row.r for row in ranked])) + 1 if ranked else 0
    sizes = sorted({k for k in (1, 2, 3, 5, 8, 12, 16, best_k) if 0 < k <= len(ranked)})
    pools = {"flat": statistical_explanations(evidence), "graded": graded(carriers),
             "corr": list(dict.fromkeys(word_list([row.token for row in ranked[:k]]) for k in sizes))}
    scorer = valid_scorer(simulator, valid)
    scored = {style: dict(zip(texts, scorer(texts))) for style, texts in pools.items() if texts}
    out = {"carriers": carriers[:8], "valid": scored, "corr_best_k": best_k,
           "indicator": {"test": indicator_r(test.exemplars, {row.key for row in ranked[:best_k]}) if ranked else None},
           "lookup": {"test": lookup_score(train, test)}}
    tested: dict[str, float] = {}
    shipped = NeuronScope(simulator, None, ExplainConfig(method="stats"))(train=train, valid=valid)
    out["tiers"] = {"explanations": list(shipped.explanations), "valid": shipped.polysemantic,
                    "test": polysemantic(simulator, shipped.explanations, test,
                                         calibration=shipped.calibration).value}
    for style in ("flat", "graded", "corr", "flat+corr"):
        pool = ({**scored.get("flat", {}), **scored.get("corr", {})} if style == "flat+corr" else scored.get(style, {}))
        if not pool:
            continue
        best = max(pool, key=lambda t: pool[t])
        if best not in tested:
            tested[best] = report(simulator, best, test).value
        out[style] = {"explanation": best, "valid": pool[best], "test": tested[best]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--neurons", default="12", help="a count (chosen as described) or LAYER:INDEX units")
    ap.add_argument("--simulator", default="finetuned:gemma-3-270m")
    args = ap.parse_args(argv)
    store = ExemplarStore.open(args.store)
    units = development_units(store, args.neurons)
    assert not set(units) & excluded(store), "development neurons must not overlap the evaluation/benchmark neurons"
    out = Path(args.out)
    path = out / "styles.json"
    results = json.loads(path.read_text())["neurons"] if path.exists() else {}
    simulator = build_simulator(SimulatorConfig(args.simulator, cache=False))
    command = "python experiments/stats_styles.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    for i, unit in enumerate(units, 1):
        if str(unit) in results and all(style in results[str(unit)] for style in STYLES):
            continue
        start = time.perf_counter()
        results[str(unit)] = one(simulator, store, unit)
        r = results[str(unit)]
        print(f"[{i}/{len(units)}] {unit}: " + ", ".join(f"{s} {r[s]['test']:.3f}" for s in STYLES
                                                       if s in r) + f" ({time.perf_counter() - start:.0f} s)",
              flush=True)
        atomic_write_json(path, {"command": command, "simulator": args.simulator, "neurons": results})
    lines = [f"# Statistical word-list styles ({len(results)} development neurons)", "",
             f"`{command}`", "", f"Simulator `{args.simulator}`; each style's best-on-valid explanation, scored on "
             "test (mean +- standard error over neurons).", "", "| style | valid | test |", "|---|---:|---:|"]
    for style in (*STYLES, "indicator", "lookup"):
        rows = [r[style] for r in results.values() if r.get(style, {}).get("test") is not None]
        if rows:
            valid = _pm(*mean_se([x["valid"] for x in rows])) if "valid" in rows[0] else "- (no simulator)"
            lines.append(f"| {style} | {valid} | {_pm(*mean_se([x['test'] for x in rows]))} |")
    for style in ("graded", "corr", "flat+corr", "tiers"):
        paired = [r[style]["test"] - r["flat"]["test"] for r in results.values() if style in r and "flat" in r]
        if paired:
            changed = sum(r[style].get("explanations", [r[style].get("explanation")]) != [r["flat"]["explanation"]]
                          for r in results.values() if style in r)
            lines += ["", f"Paired test difference {style} - flat: {_pm(*mean_se(paired))} over {len(paired)} "
                      f"neurons; a different explanation chosen on {changed}."]
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
