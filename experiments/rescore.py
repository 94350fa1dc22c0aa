"""Score the explanations of a finished quality run with another simulator: the same texts, another reader.

    python experiments/rescore.py --quality experiments/results/quality-eval-rescue/quality.json \
        --store experiments/work/quality/store --method refine [--simulator finetuned:gemma-3-270m]

For each neuron where ``--method`` finished in ``quality.json`` (``experiments/quality.py``'s output), its final
explanations are scored on the neuron's test split by ``--simulator``, as a union calibrated on valid (the same
:func:`ns_dspy.scoring.polysemantic` call as the table), and printed beside the score the run recorded, with the
paired difference (mean +- standard error). It separates a change of simulator from a change of explanations:
the explanations are fixed, only the reader differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ns_dspy.build import build_simulator
from ns_dspy.config import SimulatorConfig
from ns_dspy.exemplars import ExemplarStore
from ns_dspy.scoring import HeldOut, polysemantic
from ns_dspy.types import parse_units


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", required=True, help="quality.json of experiments/quality.py")
    ap.add_argument("--store", required=True)
    ap.add_argument("--method", default="refine")
    ap.add_argument("--simulator", default="finetuned:gemma-3-270m")
    args = ap.parse_args(argv)
    results = json.loads(Path(args.quality).read_text())["results"]
    store = ExemplarStore.open(args.store)
    simulator = build_simulator(SimulatorConfig(args.simulator))
    before, after = [], []
    try:
        for name, row in results.items():
            done = row.get(args.method, {})
            if done.get("test") is None:
                continue
            unit = parse_units(name)[0]
            valid, test = HeldOut.from_store(store, unit, "valid"), HeldOut.from_store(store, unit, "test")
            score = polysemantic(simulator, done["explanations"], test, calibration=valid).value
            before.append(done["test"])
            after.append(score)
            print(f"{name:>8}  recorded {done['test']:.3f}  {args.simulator} {score:.3f}", flush=True)
    finally:
        simulator.close()
    if not before:
        print(f"no neuron finished {args.method!r} in {args.quality}", file=sys.stderr)
        return 1
    diff = np.array(after) - np.array(before)
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    print(f"{args.method} over {len(diff)} neurons: recorded {np.mean(before):.3f}, {args.simulator} "
          f"{np.mean(after):.3f}, paired {diff.mean():+.3f} +- {se:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
