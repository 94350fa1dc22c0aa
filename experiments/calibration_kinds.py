"""Linear against monotone calibration of the union score, in sample or out of fold: the statistical explainer run
with each, on the same neurons, the same simulator and the same simulations.

    python experiments/calibration_kinds.py --store experiments/work/quality/store --neurons 12 \
        --out experiments/results/calibration-kinds-dev
    python experiments/calibration_kinds.py --store experiments/work/quality/store --evaluation \
        --neurons 1:1650,... --out experiments/results/calibration-kinds-eval

A neuron-level score of several explanations (the statistical explainer's tier lists and negative list, a
polysemantic neuron's modes) calibrates each explanation's predictions on valid data and takes their per-token
maximum (``ns_dspy.scoring.calibration``). Issue 16 asks for a principled combination; the shipped one fitted a
straight line per explanation (Bills et al.). The default simulator reads listed words unevenly (a word it
recalls well at 9, another at 4, the unit equally active on both), which a straight line cannot undo, while a
non-decreasing (isotonic) fit can. Each kind runs the whole statistical explainer (its candidates race, are chosen
on valid with that kind's scores, and the chosen set is scored once on test with its valid calibration), so the
comparison includes what the kind changes in the choice. Also, for the linear run's choice, its test
score with the final calibration (fitted on all of valid, what test reuses) refitted monotone: the choice made as
shipped. "-cross": a set's valid score (what the choice and the race read) is its out-of-fold score
(``ns_dspy.scoring.calibration.cross_fitted``, two folds of the valid exemplars), its test score uses the
calibration fitted on all of valid as before. Singles are never calibrated: a set of one scores as
before under both kinds. Paired differences are over neurons. Writes ``OUT/kinds.json`` (resumable: neurons done
are kept) and ``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_analysis import _pm, mean_se, paired_text  # noqa: E402
from stats_styles import chosen_units, neuron_arguments, valid_test_table  # noqa: E402

from ns_dspy.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from ns_dspy.build import build_simulator  # noqa: E402
from ns_dspy.config import ExplainConfig, SimulatorConfig  # noqa: E402
from ns_dspy.exemplars import ExemplarStore  # noqa: E402
from ns_dspy.program import NeuronScope  # noqa: E402
from ns_dspy.scoring import HeldOut, calibration, fit_calibration, polysemantic  # noqa: E402

#: the variants compared: the calibration kind, and "-cross" where a set's valid score is out of fold
KINDS = ("linear", "monotone", "linear-cross", "monotone-cross")


def one(simulator, store, unit, kind: str) -> dict:
    train = store.train_exemplars(unit)
    valid, test = HeldOut.from_store(store, unit, "valid"), HeldOut.from_store(store, unit, "test")
    start = time.perf_counter()
    saved = calibration.KIND, calibration.FINAL_KIND, calibration.CROSS_FIT
    # one kind to choose and for the maps test reuses (the final kind's own gain is measured apart, below)
    fitted = kind.removesuffix("-cross")
    calibration.KIND, calibration.FINAL_KIND, calibration.CROSS_FIT = fitted, fitted, kind.endswith("-cross")
    try:
        got = NeuronScope(simulator, None, ExplainConfig(method="stats"))(train=train, valid=valid)
        scored = polysemantic(simulator, got.explanations, test, calibration=got.calibration)
    finally:
        calibration.KIND, calibration.FINAL_KIND, calibration.CROSS_FIT = saved
    out = {"explanations": list(got.explanations), "valid": got.polysemantic, "test": scored.value,
           "seconds": round(time.perf_counter() - start, 1)}
    if kind == "linear" and len(got.explanations) > 1:
        # the same choice, its final calibration refitted on valid (what test reuses) monotone, and monotone only
        # where that scores better out of fold on valid ("guarded", what ships)
        for final_kind in ("monotone", "guarded"):
            final = fit_calibration(simulator, got.explanations, valid, kind=final_kind)
            out[f"test_{final_kind}_final"] = polysemantic(simulator, got.explanations, test, calibration=final).value
            out[f"{final_kind}_final_maps"] = type(final.maps[0]).__name__
    return out


def summary(results: dict, command: str, simulator: str) -> str:
    units = [u for u in results if all(k in results[u] for k in KINDS)]
    lines = [f"# Calibration variants: the statistical explainer ({len(units)} neurons)", "",
             f"`{command}`", "", f"Simulator `{simulator}`; mean ± standard error over neurons.", "",
             "| calibration | valid | test | sets of more than one list |", "|---|---:|---:|---:|"]
    for kind in KINDS:
        valid = mean_se([results[u][kind]["valid"] for u in units])
        test = mean_se([results[u][kind]["test"] for u in units])
        sets = sum(len(results[u][kind]["explanations"]) > 1 for u in units)
        lines.append(f"| {kind} | {_pm(*valid)} | {_pm(*test)} | {sets} of {len(units)} |")
    lines.append("")
    for kind in KINDS[1:]:
        diff = [results[u][kind]["test"] - results[u]["linear"]["test"] for u in units]
        dvalid = [results[u][kind]["valid"] - results[u]["linear"]["valid"] for u in units]
        same = sum(results[u][kind]["explanations"] == results[u]["linear"]["explanations"] for u in units)
        lines.append(f"- paired, {kind} - linear: test {paired_text(diff)}, valid {_pm(*mean_se(dvalid))}; the same "
                     f"explanations chosen for {same} of {len(units)}")
    for final_kind, how in (("monotone", "monotone"), ("guarded", "monotone where it scores better out of fold "
                                                        "on valid (what ships)")):
        final = [results[u]["linear"].get(f"test_{final_kind}_final", results[u]["linear"]["test"])
                 - results[u]["linear"]["test"] for u in units]
        taken = sum(results[u]["linear"].get(f"{final_kind}_final_maps") == "Monotone" for u in units)
        up, down = sum(d > 1e-9 for d in final), sum(d < -1e-9 for d in final)
        lines.append(f"- paired, the linear choice with its final calibration {how} - linear: test "
                     f"{_pm(*mean_se(final))} ({up} up, {down} down; monotone maps for {taken} of {len(units)}; a "
                     "single list is not calibrated)")
    lines += [""] + valid_test_table(results, units, KINDS, KINDS)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    neuron_arguments(ap)
    ap.add_argument("--simulator", default="finetuned:gemma-3-270m")
    args = ap.parse_args(argv)
    store = ExemplarStore.open(args.store)
    units = chosen_units(ap, store, args.neurons, args.evaluation)
    out = Path(args.out)
    path = out / "kinds.json"
    results = json.loads(path.read_text())["neurons"] if path.exists() else {}
    simulator = build_simulator(SimulatorConfig(args.simulator))
    command = "python experiments/calibration_kinds.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    for i, unit in enumerate(units, 1):
        have = results.get(str(unit), {})
        for kind in KINDS:
            if kind not in have:
                have[kind] = one(simulator, store, unit, kind)
                results[str(unit)] = have
                atomic_write_json(path, {"command": command, "simulator": args.simulator, "neurons": results})
        print(f"[{i}/{len(units)}] {unit}: " + ", ".join(
            f"{k} valid {have[k]['valid']:.3f} test {have[k]['test']:.3f}" for k in KINDS), flush=True)
    atomic_write_text(out / "summary.md", summary(results, command, args.simulator))
    print(summary(results, command, args.simulator))
    return 0


if __name__ == "__main__":
    sys.exit(main())
