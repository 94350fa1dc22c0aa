"""Word classes on real neurons: how much a part of speech adds to the statistical word lists if read exactly, and
how a simulator reads each class's explanation on real text.

    python experiments/word_classes.py ceiling --store experiments/work/quality/store \
        --depths experiments/results/tier-longest/depths.json,experiments/results/tier-depth-dev2/depths.json \
        --out experiments/results/word-classes-ceiling
    python experiments/word_classes.py reading --store experiments/work/quality/store --neurons 3:567,1:1633 \
        --simulators finetuned:gemma-3-270m --out experiments/results/word-classes-reading

``ceiling`` (no simulator): for each neuron of ``experiments/tier_depth.py`` runs (the statistical explainer's
choice at variant 5), on test, the chosen lists read perfectly (``limits.py``'s "tier levels": each listed token at
its list's mean train activation, ``limits.tier_levels``) against the same plus up to ``--classes`` word classes
(:data:`ns_dspy.agents.word_classes.WORD_CLASSES`; each unlisted token of a chosen class at the class's mean train
activation, either direction), the classes chosen greedily on valid (each must raise valid r by 0.005). What the
statistical explainer's ``--word-classes`` could add if the simulator read a class as the lexicon does.

``reading``: each class's explanation (its first description) simulated on the first 20 valid windows of each
``--neurons`` unit; per class, the r of the prediction with the lexicon's indicator of the class, and the mean
prediction on and off the class. Which classes a simulator reads, whatever the neuron does. Classes whose
``simulator_training`` syntax unit is held out (never trained on) are marked.

Development neurons only (``--neurons``, ``--depths`` of development runs). Writes ``OUT/word_classes.json`` and
``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from limits import tier_levels  # noqa: E402
from paper_analysis import paired_rows  # noqa: E402

from ns_dspy.agents.evidence import token_key  # noqa: E402
from ns_dspy.agents.word_classes import WORD_CLASSES, lexicon  # noqa: E402
from ns_dspy.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from ns_dspy.exemplars import ExemplarStore  # noqa: E402
from ns_dspy.scoring import HeldOut  # noqa: E402
from ns_dspy.types import parse_units  # noqa: E402


def ceiling(store, unit, explanations: list[str], words: dict[str, str], most: int = 3) -> dict:
    train = store.train_exemplars(unit)
    valid, test = HeldOut.from_store(store, unit, "valid"), HeldOut.from_store(store, unit, "test")

    def r(classes, held):
        return tier_levels(explanations, train, held, classes=set(classes), words=words)

    chosen: list[str] = []
    best = r((), valid)
    for _ in range(most):
        value, name = max((r([*chosen, c], valid), c) for c in WORD_CLASSES if c not in chosen)
        if value < best + 0.005:
            break
        chosen.append(name)
        best = value
    return {"lists": r((), test), "classes": chosen, "lists + classes": r(chosen, test),
            "lists + first class": r(chosen[:1], test)}


def reading(simulator, store, units, words: dict[str, str], per_unit: int = 20) -> dict:
    from simulator_training.data import unit_split

    exemplars = [ex for u in units for ex in list(HeldOut.from_store(store, u, "valid").exemplars)[:per_unit]]
    names = list(WORD_CLASSES)
    preds = simulator.simulate([WORD_CLASSES[n][1][0] for n in names], exemplars)
    out = {}
    for name, pred in zip(names, preds):
        member = np.concatenate([[words.get(token_key(t)) == name for t in ex.tokens] for ex in exemplars])
        p = np.concatenate(pred).astype(np.float64)
        r = float(np.corrcoef(member, p)[0, 1]) if member.any() and not member.all() and p.std() > 0 else None
        out[name] = {"tokens": int(member.sum()), "r": r, "on": float(p[member].mean()) if member.any() else None,
                     "off": float(p[~member].mean()), "trained": unit_split(f"syntax:{name}", 0.2) == "train"}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("ceiling")
    c.add_argument("--depths", required=True, help="comma list of depths.json files of experiments/tier_depth.py runs")
    c.add_argument("--classes", type=int, default=3, help="at most this many classes per neuron (default 3)")
    r = sub.add_parser("reading")
    r.add_argument("--neurons", required=True, help="LAYER:INDEX units whose valid windows are read")
    r.add_argument("--simulators", required=True, help="comma list of simulator specs")
    for p in (c, r):
        p.add_argument("--store", required=True)
        p.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    store = ExemplarStore.open(args.store)
    words = lexicon()
    command = "python experiments/word_classes.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.what == "ceiling":
        per = {}
        for path in args.depths.split(","):
            run = json.loads(Path(path).read_text())
            for u, row in run["neurons"].items():
                if "5" in row:
                    per[u] = ceiling(store, parse_units(u)[0], row["5"]["explanations"], words, args.classes)
        keys = ("lists", "lists + first class", "lists + classes")
        lines = [f"# Word classes read exactly ({len(per)} neurons, test split)", "", f"`{command}`", "",
                 "| lookup | test r | paired - lists | up / down |", "|---|---:|---:|---:|"]
        lines += paired_rows(per, keys, "lists")
        lines += ["", "| neuron | lists | + classes | classes |", "|---|---:|---:|---|"]
        lines += [f"| {u} | {p['lists']:.3f} | {p['lists + classes']:.3f} | {', '.join(p['classes'])} |"
                  for u, p in per.items()]
        result = {"command": command, "neurons": per}
    else:
        from ns_dspy.build import build_simulator
        from ns_dspy.config import SimulatorConfig

        units = parse_units(args.neurons)
        result = {"command": command, "neurons": args.neurons, "simulators": {}}
        specs = [s.strip() for s in args.simulators.split(",") if s.strip()]
        for spec in specs:
            simulator = build_simulator(SimulatorConfig(spec))
            result["simulators"][spec] = reading(simulator, store, units, words)
            del simulator
        lines = [f"# How simulators read word classes on real text ({args.neurons}, valid windows)", "",
                 f"`{command}`", "", "r: the prediction against the lexicon's indicator of the class; on / off: "
                 "the mean prediction on the class's tokens and elsewhere.", "",
                 "| class | trained | tokens | " + " | ".join(f"{i + 1}: r | {i + 1}: on / off"
                                                           for i in range(len(specs))) + " |",
                 "|---|---|---:|" + "---:|---:|" * len(specs)]
        first = result["simulators"][specs[0]]
        for name in WORD_CLASSES:
            cells = []
            for spec in specs:
                row = result["simulators"][spec][name]
                cells.append("-" if row["r"] is None else f"{row['r']:+.3f}")
                cells.append("-" if row["on"] is None else f"{row['on']:.2f} / {row['off']:.2f}")
            lines.append(f"| {name} | {'yes' if first[name]['trained'] else 'held out'} | {first[name]['tokens']} | "
                         + " | ".join(cells) + " |")
        for i, spec in enumerate(specs):
            rs = [row["r"] for row in result["simulators"][spec].values() if row["r"] is not None]
            mean = f"{np.mean(rs):.3f}" if rs else "- (no class has an r: constant predictions, or no token in/out)"
            lines.append(f"\n{i + 1}: `{spec}`: mean r over {len(rs)} classes {mean}")
    atomic_write_json(out / "word_classes.json", result)
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
