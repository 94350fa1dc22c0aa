"""Per-neuron bootstrap intervals for a run file written before the runner stored them, and paired ablations.

    python experiments/intervals.py experiments/results/ns-eval-1205/run.sqlite \
        --store experiments/work/quality/store --out experiments/results/ns-eval-1205 \
        --ablation "without refinement=experiments/results/ns-eval-1205/norefine.sqlite"

Since 2026-12-06 ``ns-dspy explain`` stores beside each test score its 90% interval over the test windows and the
paired interval of its lead over the statistical row (:mod:`ns_dspy.scoring.bootstrap`). This recomputes both for
a run file's finished neurons as the runner computes them (the finals' and the statistical row's test predictions
with maps fitted on valid, of the run's ``test_maps`` kind; the run's own simulator, so its simulation cache
answers), checks that the recomputed test scores are the stored ones, and, with ``--ablation NAME=RUN`` (the same
neurons with one step off), the paired interval of the run minus the ablation on each neuron's test windows.
Writes ``OUT/intervals.md`` and ``OUT/intervals.json``. Test data is only read, never chosen on.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ns_dspy.atomic import atomic_write_json, atomic_write_text
from ns_dspy.build import build_simulator
from ns_dspy.config import SimulatorConfig
from ns_dspy.exemplars import ExemplarStore
from ns_dspy.runs.compare import compare_runs
from ns_dspy.runs.read import read_run
from ns_dspy.scoring import HeldOut, bootstrap, polysemantic


def finals(trace: dict) -> list[str]:
    return [f["explanation"] for f in trace.get("finals", [])]


def statistical(trace: dict) -> list[str]:
    row = trace.get("statistical") or {}
    return list(row.get("explanations") or [row.get("explanation", "")])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="run file written by ns-dspy explain")
    ap.add_argument("--store", required=True, help="the exemplar store the run explained")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ablation", action="append", default=[], metavar="NAME=RUN")
    args = ap.parse_args(argv)
    run = read_run(args.run)
    store = ExemplarStore.open(args.store)
    simulator = build_simulator(SimulatorConfig(run.config["simulator"]))
    ablations = {}  # each neuron done in both: the run minus the ablation, as ns-dspy compare scores it
    for spec in args.ablation:
        name, _, path = spec.rpartition("=")
        pairs, _ = compare_runs(run, read_run(path), store, simulator)
        ablations[name or "ablation"] = {p.unit: p for p in pairs}
    maps = (run.config.get("explain") or {}).get("test_maps")
    rows = []
    for record in run.done:
        unit, trace = record.unit, record.trace
        test, valid = HeldOut.from_store(store, unit, "test"), HeldOut.from_store(store, unit, "valid")
        trues, kinds = [ex.activations for ex in test.exemplars], [ex.kind for ex in test.exemplars]

        def scored(texts: list[str]):
            return polysemantic(simulator, texts, test, calibration=valid, final_kind=maps)

        mine, theirs = scored(finals(trace)), scored(statistical(trace))
        row = {"unit": str(unit), "test": mine.value, "stored_test": record.score_test, "statistical": theirs.value,
               "test_interval": bootstrap.interval(mine.predictions, trues, kinds).to_list(),
               "lead_interval": bootstrap.difference_interval(mine.predictions, theirs.predictions, trues,
                                                              kinds).to_list(), "ablations": {}}
        for name, by in ablations.items():
            if unit in by:
                row["ablations"][name] = {"test": by[unit].b, "interval": by[unit].interval.to_list()}
        rows.append(row)
        print(f"{unit}: test {mine.value:.3f} {row['test_interval']}, lead {row['lead_interval']}", flush=True)
    command = "python experiments/intervals.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    lines = [f"# Per-neuron 90% bootstrap intervals over the test windows ({len(rows)} neurons)", "",
             f"`{command}`", "",
             "Recomputed test scores differ from the stored ones by at most "
             f"{max((abs(r['test'] - r['stored_test']) for r in rows), default=0):.4f} (the runner reuses the maps "
             "the program fitted from selection's own predictions; this refits them on valid).", ""]
    head = "| neuron | test | 90% interval | statistical | lead over it | 90% interval |"
    sep = "|---|---:|---|---:|---:|---|"
    for name in ablations:
        head += f" minus {name} | 90% interval |"
        sep += "---:|---|"
    lines += [head, sep]
    for r in rows:
        line = (f"| {r['unit']} | {r['test']:.3f} | [{r['test_interval'][0]:.2f}, {r['test_interval'][1]:.2f}] | "
                f"{r['statistical']:.3f} | {r['test'] - r['statistical']:+.3f} | "
                f"[{r['lead_interval'][0]:+.2f}, {r['lead_interval'][1]:+.2f}] |")
        for name in ablations:
            a = r["ablations"].get(name)
            line += (f" {r['test'] - a['test']:+.3f} | [{a['interval'][0]:+.2f}, {a['interval'][1]:+.2f}] |" if a
                     else " | |")
        lines.append(line)
    widths = [r["test_interval"][1] - r["test_interval"][0] for r in rows]
    lines += ["", f"Mean width of a neuron's test interval: {sum(widths) / max(len(widths), 1):.3f}."]
    for label, pairs in [("lead over the statistical row", [r["lead_interval"] for r in rows])] + [
            (f"minus {name}", [r["ablations"][name]["interval"] for r in rows if name in r["ablations"]])
            for name in ablations]:
        counts = bootstrap.sides(pairs)
        lines.append(f"- {label}: above 0 on {counts['above']}, below 0 on {counts['below']}, 0 inside the "
                     f"interval on {counts['undecided']} of {len(pairs)} neurons.")
    out = Path(args.out)
    atomic_write_json(out / "intervals.json", {"command": command, "neurons": rows})
    atomic_write_text(out / "intervals.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
