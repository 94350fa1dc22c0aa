"""Neurons that fire on whitespace: how much activation line breaks and indentation carry, and whether the
simulator reads an explanation that names them.

    python experiments/whitespace.py --store experiments/work/quality/store --out experiments/results/whitespace \
        [--sample 400] [--units 6] [--simulator finetuned:gemma-3-270m] [--seed 1]

The statistical explainer names tokens in quoted word lists and leaves whitespace tokens out (a list cannot
quote a line break); the limits ladder (``experiments/limits.py``) puts what whitespace adds to a lookup of the
named tokens at +0.008 (12 development neurons) and +0.027 (16 evaluation neurons) on test. This asks the
two questions behind it on units that no experiment evaluates or develops on (``--exclude``, by default the
126 units of ``simulator_training/results/gemma-3-270m-recorded-trial/excluded.json``):

1. Over ``--sample`` random units, the share of the positive activation of their top *train* windows that
   falls on whitespace tokens (any, and each class the statistical explainer can name).
2. For the ``--units`` units with the largest share: on their *valid* windows, the pooled r of each class read
   exactly (an indicator: 1 on the class's tokens, 0 elsewhere; no simulator), and the simulator's r for each of
   :data:`PHRASINGS`, with one word list of ordinary words as the reference.

Nothing here is tuned or chosen: it measures a gap. Output: ``OUT/whitespace.json`` and ``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from ns_dspy.agents.evidence import WHITESPACE
from ns_dspy.atomic import atomic_write_json, atomic_write_text
from ns_dspy.build import build_simulator
from ns_dspy.config import SimulatorConfig
from ns_dspy.exemplars import ExemplarStore
from ns_dspy.scoring import HeldOut
from ns_dspy.scoring.correlation import pooled
from ns_dspy.types import UnitId

EXCLUDED = Path("simulator_training/results/gemma-3-270m-recorded-trial/excluded.json")

#: whitespace token classes, by the token's text: the classes the statistical explainer can name
#: (``ns_dspy.agents.evidence.WHITESPACE``; the last, any whitespace token)
CLASSES = {name.replace("_", " "): holds for name, (holds, _) in WHITESPACE.items()}

#: explanations that name whitespace: the statistical explainer's (``--whitespace``), then other wordings
PHRASINGS = (*(text for _, text in WHITESPACE.values()), 'the token "\\n"', "spaces")
REFERENCE = 'the words "the", "of" and "and"'


def shares(store: ExemplarStore, unit: UnitId) -> dict[str, float]:
    """Per class, the share of the positive activation of the unit's top train windows on that class's tokens."""
    total, on = 0.0, dict.fromkeys(CLASSES, 0.0)
    for ex in store.exemplars(unit, "train", "top"):
        acts = np.clip(np.asarray(ex.activations, np.float64), 0, None)
        total += float(acts.sum())
        for tok, a in zip(ex.tokens, acts):
            for name, member in CLASSES.items():
                if member(tok):
                    on[name] += float(a)
    return {name: (v / total if total > 0 else 0.0) for name, v in on.items()}


def excluded_units(path: Path) -> set[str]:
    data = json.loads(path.read_text())
    return {u for names in data.values() for u in names}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--sample", type=int, default=400)
    ap.add_argument("--units", type=int, default=6)
    ap.add_argument("--simulator", default="finetuned:gemma-3-270m")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--exclude", type=Path, default=EXCLUDED, help="JSON of unit lists never to draw")
    args = ap.parse_args(argv)
    if not args.exclude.exists():
        ap.error(f"--exclude {args.exclude} does not exist")
    store = ExemplarStore.open(args.store)
    skip = excluded_units(args.exclude)
    units = [u for u in store.units() if str(u) not in skip]
    random.Random(args.seed).shuffle(units)
    units = units[:args.sample]
    by_unit = {str(u): shares(store, u) for u in units}
    share = {name: np.array([s[name] for s in by_unit.values()]) for name in CLASSES}
    top = sorted(by_unit, key=lambda u: -by_unit[u]["any whitespace"])[:args.units]

    simulator = build_simulator(SimulatorConfig(spec=args.simulator))
    texts = [*PHRASINGS, REFERENCE]
    rows = {}
    for i, name in enumerate(top, 1):
        start = time.perf_counter()
        held = HeldOut.from_store(store, UnitId.parse(name), "valid")
        trues = [ex.activations for ex in held.exemplars]
        kinds = [ex.kind for ex in held.exemplars]
        exact = {c: pooled([np.array([float(member(t)) for t in ex.tokens]) for ex in held.exemplars],
                           trues, kinds).r for c, member in CLASSES.items()}
        preds = simulator.simulate(texts, list(held.exemplars))
        read = {t: pooled(p, trues, kinds).r for t, p in zip(texts, preds)}
        rows[name] = {"share": by_unit[name], "exact": exact, "simulator": read}
        print(f"[{i}/{len(top)}] {name}: share {by_unit[name]['any whitespace']:.2f}, exact "
              f"{max(exact.values()):.3f}, best phrasing {max(read[t] for t in PHRASINGS):.3f} "
              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)

    out = Path(args.out)
    command = "python experiments/whitespace.py " + " ".join(argv if argv is not None else sys.argv[1:])
    atomic_write_json(out / "whitespace.json", {"command": command, "simulator": args.simulator,
                                                "sample": {u: by_unit[u] for u in by_unit}, "units": rows})
    lines = [f"# Whitespace: the activation it carries, and whether `{args.simulator}` reads it", "",
             f"`{command}`", "",
             f"Share of the positive activation of the top train windows on whitespace tokens, {len(units)} random "
             "units that no experiment evaluates or develops on:", "",
             "| class | mean share | units > 30% | units > 50% |", "|---|---:|---:|---:|"]
    for name in CLASSES:
        lines.append(f"| {name} | {share[name].mean():.3f} | {(share[name] > 0.3).sum()} | "
                     f"{(share[name] > 0.5).sum()} |")
    lines += ["", f"The {len(top)} units with the largest share, valid windows, pooled r: each class read exactly "
              "(an indicator, no simulator) and the simulator's reading of each explanation:", "",
              "| explanation | " + " | ".join(top) + " | mean |", "|---|" + "---:|" * (len(top) + 1)]
    lines.append("| share on whitespace (train) | " + " | ".join(f"{rows[u]['share']['any whitespace']:.2f}"
                                                          for u in top) + " | |")
    for c in CLASSES:
        vals = [rows[u]["exact"][c] for u in top]
        lines.append(f"| exact: {c} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {np.mean(vals):.3f} |")
    for t in texts:
        vals = [rows[u]["simulator"][t] for u in top]
        label = t.replace("|", "\\|").replace("\\n", "\\\\n")
        lines.append(f"| `{label}` | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {np.mean(vals):.3f} |")
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print(f"wrote {out / 'summary.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
