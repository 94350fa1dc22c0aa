"""How simulators read `the word "X" only right after "Y"` on real neurons: at X after Y, at X elsewhere, elsewhere.

    python experiments/context_reading.py --store experiments/work/quality/store \
        --depths experiments/results/tier-longest/depths.json,experiments/results/tier-depth-dev2/depths.json \
        --simulators finetuned:gemma-3-270m,finetuned:experiments/work/ctx-run/adapter \
        --out experiments/results/context-reading

For each development neuron of ``experiments/tier_depth.py`` runs (the statistical explainer's choice at variant 5),
the pairs :func:`ns_dspy.agents.evidence.context_pairs` ranks on train against those lists (what ``--context``
tries), each written as the product writes it. Each is simulated alone on the neuron's valid windows (top and
random) that hold its token. Per simulator, the mean prediction (0..10) at the token right after its word before
("in context"), at the token elsewhere ("out of context") and at every other token of those windows, the gap in -
out, and the selectivity (in - out) / (in - other) of the means: 1 reads the condition, 0 reads the explanation as
the token alone. The neuron's own activations at the same places (x 10 / their max over those windows) show what
an exact reading of the neuron would give. Only explanations whose token occurs both in and out of context on
valid are counted.
Writes ``OUT/context_reading.json`` and ``OUT/summary.md``; reruns reuse what a simulator already measured.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_analysis import _pm, mean_se  # noqa: E402

from ns_dspy.agents.evidence import context_pairs, token_key  # noqa: E402
from ns_dspy.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from ns_dspy.build import build_simulator  # noqa: E402
from ns_dspy.config import SimulatorConfig  # noqa: E402
from ns_dspy.exemplars import ExemplarStore  # noqa: E402
from ns_dspy.scoring import HeldOut  # noqa: E402
from ns_dspy.types import parse_units  # noqa: E402

PLACES = ("in", "out", "other")


def places(exemplars, before: str, token: str) -> list[np.ndarray]:
    """Per exemplar, each token's place: 0 the token right after ``before``, 1 the token elsewhere, 2 any other."""
    out = []
    for ex in exemplars:
        keys = [token_key(t) for t in ex.tokens]
        out.append(np.array([2 if k != token else (0 if i and keys[i - 1] == before else 1)
                             for i, k in enumerate(keys)], dtype=np.int8))
    return out


def means(values: list[np.ndarray], where: list[np.ndarray]) -> dict[str, float]:
    v, w = np.concatenate(values), np.concatenate(where)
    return {name: float(v[w == k].mean()) for k, name in enumerate(PLACES)}


def selectivity(rows: list[dict[str, float]]) -> float | None:
    """(in - out) / (in - other) of the mean places over ``rows`` (per explanation, the ratio is unstable)."""
    m = {p: float(np.mean([r[p] for r in rows])) for p in PLACES}
    span = m["in"] - m["other"]
    return (m["in"] - m["out"]) / span if span > 1e-6 else None


def cases(store, units) -> list[dict]:
    """Each (neuron, pair) to read: the explanation and the valid windows that hold both kinds of occurrence."""
    out = []
    for unit, explanations in units:
        train = store.train_exemplars(unit)
        valid = HeldOut.from_store(store, unit, "valid").exemplars
        for pair in context_pairs(train, explanations):
            kept = [(ex, w) for ex, w in zip(valid, places(valid, pair.before, pair.token)) if (w < 2).any()]
            where = [w for _, w in kept]
            if not kept or not any((w == 0).any() for w in where) or not any((w == 1).any() for w in where):
                continue
            acts = [np.asarray(ex.activations, np.float64) for ex, _ in kept]
            top = max(float(np.max(a)) for a in acts)
            truth = means([a * 10.0 / top for a in acts], where) if top > 0 else None
            out.append({"unit": str(unit), "explanation": pair.text, "exemplars": [ex for ex, _ in kept],
                        "where": where, "truth": truth})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--depths", required=True, help="comma list of depths.json files of experiments/tier_depth.py runs")
    ap.add_argument("--simulators", required=True, help="comma list of simulator specs; the first is the reference")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    store = ExemplarStore.open(args.store)
    specs = [s.strip() for s in args.simulators.split(",") if s.strip()]
    units = []
    for path in args.depths.split(","):
        if not Path(path).is_file():
            ap.error(f"no such depths file {path}: give depths.json files written by experiments/tier_depth.py")
        for u, row in json.loads(Path(path).read_text())["neurons"].items():
            if "5" in row:
                units.append((parse_units(u)[0], row["5"]["explanations"]))
    command = "python experiments/context_reading.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "context_reading.json"
    done = json.loads(path.read_text())["rows"] if path.exists() else {}
    todo = cases(store, units)
    for spec in specs:
        if all(spec in done.get(f"{c['unit']} {c['explanation']}", {}) for c in todo):
            continue
        simulator = build_simulator(SimulatorConfig(spec))
        for i, c in enumerate(todo, 1):
            row = done.setdefault(f"{c['unit']} {c['explanation']}", {"truth": c["truth"]})
            if spec not in row:
                preds = simulator.simulate([c["explanation"]], c["exemplars"])[0]
                row[spec] = means([np.asarray(p, np.float64) for p in preds], c["where"])
                atomic_write_json(path, {"command": command, "simulators": specs, "rows": done})
            print(f"[{spec} {i}/{len(todo)}] {c['unit']} {c['explanation']}: " +
                  ", ".join(f"{k} {row[spec][k]:.2f}" for k in PLACES), flush=True)
        simulator.close()
    keys = [f"{c['unit']} {c['explanation']}" for c in todo]
    lines = [f"# How simulators read a token in the context of the token before it ({len(keys)} explanations, "
             f"{len({c['unit'] for c in todo})} neurons, valid windows holding the token)", "", f"`{command}`", "",
             "Mean prediction (0..10) per explanation, then mean ± standard error over explanations; gap: in - out; "
             "selectivity: (in - out) / (in - other) of the means, 1 reads the condition, 0 reads the token alone.", "",
             "| reader | in context | out of context | other tokens | gap | paired gap - first | selectivity |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    truth_rows = [done[k]["truth"] for k in keys if done[k]["truth"]]
    readers = [("the neuron (x 10 / max)", truth_rows)] + [(f"`{s}`", [done[k][s] for k in keys]) for s in specs]
    first = [done[k][specs[0]]["in"] - done[k][specs[0]]["out"] for k in keys]
    for label, rows in readers:
        gap = [r["in"] - r["out"] for r in rows]
        paired = "-" if label in (readers[0][0], readers[1][0]) else _pm(*mean_se([g - f for g, f in zip(gap, first)]))
        sel = selectivity(rows)
        lines.append(f"| {label} | " + " | ".join(_pm(*mean_se([r[p] for r in rows])) for p in PLACES)
                     + f" | {_pm(*mean_se(gap))} | {paired} | {'-' if sel is None else f'{sel:.2f}'} |")
    lines += ["", "| neuron | explanation | neuron in / out / other | " + " | ".join(f"`{s}` in / out / other"
                                                                            for s in specs) + " |",
              "|---|---|---|" + "---|" * len(specs)]
    for k in keys:
        unit, text = k.split(" ", 1)
        t = done[k]["truth"]
        cells = [" / ".join(f"{done[k][s][p]:.2f}" for p in PLACES) for s in specs]
        lines.append(f"| {unit} | {text} | " + (" / ".join(f"{t[p]:.2f}" for p in PLACES) if t else "-") + " | "
                     + " | ".join(cells) + " |")
    atomic_write_json(path, {"command": command, "simulators": specs, "rows": done})
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
