"""What the LM's own modes add to NeuronScope's final sets: each set scored on test without them.

    python experiments/lm_share.py experiments/results/ns-eval-1205/run.sqlite \
        --store experiments/work/quality/store --out experiments/results/ns-eval-1205

Reads a finished ``ns-dspy explain`` run (read-only). A NeuronScope set holds the modes the LM wrote (refined) and the
statistical word lists that joined them, edited from their own errors on valid (``trace.clusters``' ``source``).
Per neuron: the statistical row of the same run, the final set without its LM modes (scored on test as the runner
scores a set: a union calibrated on valid with the run's test maps; where the LM's modes replaced every list, the
statistical row stands in), and the final set. So NeuronScope minus the statistical row splits into what the
simulator-checked list edits reach and what the LM's modes add. Writes ``OUT/lm_share.md``; loads the run's simulator.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_analysis import paired_text  # noqa: E402
from run_summary import lm_finals  # noqa: E402

from ns_dspy.atomic import atomic_write_text  # noqa: E402
from ns_dspy.build import build_simulator  # noqa: E402
from ns_dspy.config import SimulatorConfig  # noqa: E402
from ns_dspy.exemplars import ExemplarStore  # noqa: E402
from ns_dspy.runs.read import read_run, run_mode  # noqa: E402
from ns_dspy.scoring import HeldOut, polysemantic  # noqa: E402
from ns_dspy.types import parse_units  # noqa: E402


def neurons(path: Path) -> tuple[dict, list[dict]]:
    """The run's configuration (:func:`ns_dspy.runs.read.flat_config`'s shape) and, per finished neuron, its final set,
    the members the LM wrote and its scores (:func:`ns_dspy.runs.read.read_run`, by unit)."""
    run = read_run(path)
    return run.config, [{"unit": str(r.unit), "test": r.score_test,
                         "stats_test": (r.trace.get("statistical") or {}).get("test"),
                         "finals": [f["explanation"] for f in r.trace.get("finals", [])], "lm": lm_finals(r.trace)}
                        for r in run.done]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="run file written by ns-dspy explain (method neuronscope)")
    ap.add_argument("--store", required=True, help="the exemplar store the run explained")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    path = Path(args.run)
    if not path.is_file():
        ap.error(f"no such run file {path}: give the file ns-dspy explain --run wrote")
    config, rows = neurons(path)
    if run_mode(config) not in ("refine", "norefine"):
        ap.error(f"{path} is not a NeuronScope run: its sets have no LM modes to leave out")
    store = ExemplarStore.open(args.store)
    # run files since provenance version 2 keep the simulator's dtype and options; older ones its spec only
    stored = (config.get("run") or {}).get("simulator") or {"spec": config["simulator"], "dtype": "auto"}
    simulator = build_simulator(SimulatorConfig.from_dict(stored, "simulator"))
    maps = config["explain"]["test_maps"]
    for r in rows:
        kept = [e for e in r["finals"] if e not in r["lm"]]
        if not r["lm"]:
            r["without_lm"] = r["test"]
        elif not kept:
            r["without_lm"] = r["stats_test"]
        else:
            unit = parse_units(r["unit"])[0]
            valid, test = HeldOut.from_store(store, unit, "valid"), HeldOut.from_store(store, unit, "test")
            r["without_lm"] = polysemantic(simulator, kept, test, calibration=valid, final_kind=maps).value
        r["replaced"] = bool(r["lm"]) and not kept
        print(f"{r['unit']}: statistical {r['stats_test']:.3f}, without LM modes {r['without_lm']:.3f}, "
              f"NeuronScope {r['test']:.3f} ({len(r['lm'])} of {len(r['finals'])} LM)", flush=True)
    command = "python experiments/lm_share.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    lines = [f"# What the LM's own modes add to NeuronScope's sets ({len(rows)} neurons, test)", "", f"`{command}`", "",
             "| neuron | statistical | final set without LM modes | NeuronScope | LM modes in the set |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['unit']} | {r['stats_test']:.3f} | {r['without_lm']:.3f}{' *' if r['replaced'] else ''} | "
                     f"{r['test']:.3f} | {len(r['lm'])} of {len(r['finals'])} |")
    if rows:
        edits = [r["without_lm"] - r["stats_test"] for r in rows]
        lm = [r["test"] - r["without_lm"] for r in rows]
        lines += ["", f"NeuronScope - statistical splits into the list edits {paired_text(edits)} and the LM's "
                      f"modes {paired_text(lm)}; * the LM's modes replaced every list: the statistical row stands in "
                      f"({sum(r['replaced'] for r in rows)} neurons)."]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "lm_share.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
