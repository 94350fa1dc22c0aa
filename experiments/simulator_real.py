"""Simulators compared on real neurons: the statistical explainer run as shipped with each simulator, on the same
neurons, its chosen set scored on test with each simulator's own valid calibration.

    python experiments/simulator_real.py --store experiments/work/quality/store --neurons 12 \
        --simulators finetuned:gemma-3-270m,finetuned:experiments/work/recorded-run/adapter \
        --out experiments/results/simulator-real-dev

A simulator is the metric every optimiser climbs; what the product shows users is the score of what its explainer
chose with it. So each simulator runs the whole statistical explainer (candidates, race, choice on valid, the
final maps the test score reuses) and the figure is that choice's test score under the same simulator: a
simulator that reads real neurons' word lists better raises it. The first simulator is the reference of the
paired differences. A spec ending in ``+whitespace`` runs the explainer with ``--whitespace`` (it may add an
explanation of line breaks or indentation) with the simulator before it, ``+classes`` with ``--word-classes`` (an
explanation of a word class: plural nouns, forms of be), both with ``+whitespace+classes``; ``+context`` with
``--context`` (a token right after another), ``+spelling`` with ``--spelling`` (a spelling class); ``+int8`` runs
the simulator with ``quantize=int8`` (fine-tuned simulators on CPU). Development
neurons unless ``--evaluation`` (named neurons, measured once a choice was made on development ones). Writes
``OUT/simulators.json`` (resumable: finished pairs are kept) and ``OUT/summary.md``.
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
from stats_styles import chosen_units, neuron_arguments, valid_test_table  # noqa: E402

from ns_dspy.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from ns_dspy.build import build_simulator  # noqa: E402
from ns_dspy.config import ExplainConfig, SimulatorConfig  # noqa: E402
from ns_dspy.exemplars import ExemplarStore  # noqa: E402
from ns_dspy.program import NeuronScope  # noqa: E402
from ns_dspy.scoring import HeldOut, polysemantic  # noqa: E402


#: options a spec may add after ``+``: the ``ExplainConfig`` field each turns on (all off otherwise)
OPTIONS = {"whitespace": "whitespace", "classes": "word_classes", "context": "context", "spelling": "spelling"}
#: ... and the simulator options: ``+int8`` runs a fine-tuned simulator with ``quantize=int8`` (CPU, float32)
SIMULATOR_OPTIONS = {"int8": {"quantize": "int8"}}


def simulator_config(spec: str, suffixes: set[str]) -> SimulatorConfig:
    """The configuration of simulator ``spec`` with the :data:`SIMULATOR_OPTIONS` named in ``suffixes``."""
    options: dict = {}
    for name in sorted(suffixes & set(SIMULATOR_OPTIONS)):
        options.update(SIMULATOR_OPTIONS[name])
    return SimulatorConfig(spec, options=options)


def one(simulator, store, unit, **options: bool) -> dict:
    """The statistical explainer's choice with ``simulator`` and its valid and test scores."""
    train = store.train_exemplars(unit)
    valid, test = HeldOut.from_store(store, unit, "valid"), HeldOut.from_store(store, unit, "test")
    start = time.perf_counter()
    config = ExplainConfig(method="stats", **{field: options.get(field, False) for field in OPTIONS.values()})
    got = NeuronScope(simulator, None, config)(train=train, valid=valid)
    scored = polysemantic(simulator, got.explanations, test, calibration=got.calibration)
    return {"explanations": list(got.explanations), "valid": got.polysemantic, "test": scored.value,
            "seconds": round(time.perf_counter() - start, 1)}


def summary(results: dict, specs: list[str], command: str) -> str:
    units = [u for u in results if all(s in results[u] for s in specs)]
    lines = [f"# Simulators on real neurons: the statistical explainer's choice with each ({len(units)} neurons)",
             "", f"`{command}`", "", "Mean ± standard error over neurons; each simulator chooses and scores with "
             "its own simulations and calibrations.", "",
             "| simulator | valid | test | s / neuron | paired test - first | up / down |",
             "|---|---:|---:|---:|---:|---:|"]
    for spec in specs:
        valid = mean_se([results[u][spec]["valid"] for u in units])
        test = mean_se([results[u][spec]["test"] for u in units])
        seconds = sum(results[u][spec]["seconds"] for u in units) / max(1, len(units))
        diff = [results[u][spec]["test"] - results[u][specs[0]]["test"] for u in units]
        paired = "-" if spec == specs[0] else _pm(*mean_se(diff))
        updown = "-" if spec == specs[0] else f"{sum(d > 1e-9 for d in diff)} / {sum(d < -1e-9 for d in diff)}"
        lines.append(f"| `{spec}` | {_pm(*valid)} | {_pm(*test)} | {seconds:.0f} | {paired} | {updown} |")
    lines += [""] + valid_test_table(results, units, specs, [f"{i + 1}:" for i in range(len(specs))])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    neuron_arguments(ap)
    ap.add_argument("--simulators", required=True, help="comma list of simulator specs; the first is the reference")
    args = ap.parse_args(argv)
    store = ExemplarStore.open(args.store)
    units = chosen_units(ap, store, args.neurons, args.evaluation)
    specs = [s.strip() for s in args.simulators.split(",") if s.strip()]
    out = Path(args.out)
    path = out / "simulators.json"
    results = json.loads(path.read_text())["neurons"] if path.exists() else {}
    command = "python experiments/simulator_real.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    parsed = [(spec, spec.split("+")[0], set(spec.split("+")[1:])) for spec in specs]  # (spec, simulator, options)
    for spec, _, options in parsed:
        if options - set(OPTIONS) - set(SIMULATOR_OPTIONS):
            ap.error(f"--simulators {spec}: the options after + are {', '.join([*OPTIONS, *SIMULATOR_OPTIONS])}")
    for spec, simulator_spec, options in parsed:  # one simulator loaded at a time
        simulator = build_simulator(simulator_config(simulator_spec, options))
        explainer = {OPTIONS[o]: True for o in options & set(OPTIONS)}
        for i, unit in enumerate(units, 1):
            have = results.setdefault(str(unit), {})
            if spec not in have:
                have[spec] = one(simulator, store, unit, **explainer)
                atomic_write_json(path, {"command": command, "simulators": specs, "neurons": results})
            print(f"[{spec} {i}/{len(units)}] {unit}: valid {have[spec]['valid']:.3f} test {have[spec]['test']:.3f} "
                  f"({have[spec]['seconds']} s)", flush=True)
        del simulator
    text = summary(results, specs, command)
    atomic_write_text(out / "summary.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
