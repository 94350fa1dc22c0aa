"""Concepts on real neurons: does an LM-named category of the top tokens beat the statistical word lists?

    python experiments/concepts.py --store experiments/work/quality/store --neurons 24 \
        --out experiments/results/concepts-dev

For each neuron: the statistical explainer's choice (today's defaults, the default simulator), then
:class:`ns_dspy.agents.concept.ConceptAgent` with the offline LM names ``--k`` categories of the unit's
highest-ranked train tokens, and :func:`ns_dspy.program.with_concepts` keeps the lists, or lets one concept
explanation (with examples, or alone) join or replace them when that scores higher on valid - what
``ExplainConfig.concepts`` does inside NeuronScope. Reported on test: the lists, the choice, and, for analysis
only, the concept explanation that scores best alone on valid. Development neurons unless ``--evaluation``.
Writes ``OUT/concepts.json`` (resumable: finished neurons are kept) and ``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_analysis import _pm, mean_se  # noqa: E402
from stats_styles import chosen_units, neuron_arguments  # noqa: E402

from ns_dspy.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from ns_dspy.exemplars import ExemplarStore  # noqa: E402
from ns_dspy.scoring import HeldOut, polysemantic  # noqa: E402

ROWS = ("lists", "choice", "best concept alone (on valid)")


def one(simulator, store, unit, agent, k: int) -> dict:
    from ns_dspy.agents.concept import concept_explanations
    from ns_dspy.agents.refinement import valid_scorer
    from ns_dspy.config import ExplainConfig
    from ns_dspy.program import NeuronScope, final_calibration, refinement_racing, with_concepts

    config = ExplainConfig(method="stats")
    train = store.train_exemplars(unit)
    valid, test = HeldOut.from_store(store, unit, "valid"), HeldOut.from_store(store, unit, "test")
    start = time.perf_counter()
    scorer = valid_scorer(simulator, valid, refinement_racing(config))
    stats = NeuronScope(simulator, None, config)._statistical(train, valid, scorer)
    named = agent(train, k=k)
    lm_seconds = time.perf_counter() - start
    texts = [t for c in named.concepts for t in concept_explanations(c, named.words)]
    chosen, score = with_concepts(scorer, list(stats.explanations), stats.score, texts)

    def test_of(explanations, fitted):
        calibration = final_calibration(simulator, explanations, valid, scorer, fitted, config.test_maps)
        return polysemantic(simulator, explanations, test, calibration=calibration).value

    row = {"words": named.words, "concepts": named.concepts, "failed": named.failed,
           "lists": {"explanations": list(stats.explanations), "valid": stats.polysemantic,
                     "test": test_of(list(stats.explanations), stats.score.calibration)},
           "choice": {"explanations": chosen, "valid": score.value, "test": test_of(chosen, score.calibration)},
           "texts": {t: {"valid": scorer.score_of(t).value, "test": polysemantic(simulator, [t], test).value}
                     for t in texts}}
    if texts:
        best = max(texts, key=lambda t: row["texts"][t]["valid"])
        row["best concept alone (on valid)"] = {"explanations": [best], **row["texts"][best]}
    row["seconds"] = round(time.perf_counter() - start, 1)
    row["seconds_concepts"] = round(lm_seconds, 1)
    return row


def summary(results: dict, command: str) -> str:
    units = list(results)
    lines = [f"# Concepts named by the offline LM beside the statistical word lists ({len(units)} neurons)", "",
             f"`{command}`", "", "| row | valid | test | paired test - lists | up / down |",
             "|---|---:|---:|---:|---:|"]
    for key in ROWS:
        have = [u for u in units if key in results[u]]
        valid = mean_se([results[u][key]["valid"] for u in have])
        test = mean_se([results[u][key]["test"] for u in have])
        d = [results[u][key]["test"] - results[u]["lists"]["test"] for u in have]
        paired = "-" if key == "lists" else f"{_pm(*mean_se(d))} | {sum(x > 1e-9 for x in d)} / " \
                                            f"{sum(x < -1e-9 for x in d)}"
        lines.append(f"| {key} ({len(have)}) | {_pm(*valid)} | {_pm(*test)} | {paired}" +
                     (" | - |" if key == "lists" else " |"))
    taken = [u for u in units if results[u]["choice"]["explanations"] != results[u]["lists"]["explanations"]]
    lines += ["", f"A concept was taken for {len(taken)} of {len(units)} neurons.", "",
              "| neuron | lists valid | lists test | choice valid | choice test | concepts (the LM's names) |",
              "|---|---:|---:|---:|---:|---|"]
    for u in units:
        r = results[u]
        lines.append(f"| {u} | {r['lists']['valid']:.3f} | {r['lists']['test']:.3f} | {r['choice']['valid']:.3f} | "
                     f"{r['choice']['test']:.3f} | {'; '.join(r['concepts'])} |")
    seconds = [results[u]["seconds_concepts"] for u in units]
    lines += ["", f"Seconds per neuron for the statistical explainer and the concept calls together: "
                  f"{sum(seconds) / max(1, len(seconds)):.0f}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    neuron_arguments(ap)
    ap.add_argument("--k", type=int, default=3, help="category names asked for per neuron (default 3)")
    args = ap.parse_args(argv)
    import dspy

    from ns_dspy.agents.concept import ConceptAgent
    from ns_dspy.build import build_lm, build_simulator
    from ns_dspy.config import LMConfig, SimulatorConfig

    store = ExemplarStore.open(args.store)
    units = chosen_units(ap, store, args.neurons, args.evaluation)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "concepts.json"
    results = json.loads(path.read_text())["neurons"] if path.exists() else {}
    command = "python experiments/concepts.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    simulator = build_simulator(SimulatorConfig())
    agent = ConceptAgent()
    with dspy.context(lm=build_lm(LMConfig())):
        for i, unit in enumerate(units, 1):
            if str(unit) not in results:
                results[str(unit)] = one(simulator, store, unit, agent, args.k)
                atomic_write_json(path, {"command": command, "neurons": results})
            r = results[str(unit)]
            print(f"[{i}/{len(units)}] {unit}: lists {r['lists']['test']:.3f} choice {r['choice']['test']:.3f} "
                  f"concepts {r['concepts']} ({r['seconds']} s)", flush=True)
    text = summary({u: results[u] for u in map(str, units)}, command)
    atomic_write_text(out / "summary.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
