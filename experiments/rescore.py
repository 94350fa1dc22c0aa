"""Score the explanations of a finished quality run with other simulators: the same texts, another reader.

``experiments/quality.py`` writes each method's final explanations per neuron. This scores them again as the
pipeline scores a neuron (each method's explanations as one calibrated union, calibration fitted on valid, the
score taken on valid and on test) with every simulator given, so a change of simulator is measured on fixed
explanations: does it credit what the LM wrote (long prose) as it credits the statistical explainer's word
lists? Per method and simulator: mean valid and test score +- standard error beside the test score the run
recorded, and paired differences between methods (``--method`` and ``--simulator`` name one of each, as before).

    python experiments/rescore.py --quality experiments/results/quality-dev/quality.json \\
        --methods refine,stats1 --simulators finetuned:gemma-3-270m,finetuned:RUN/adapter \\
        --out experiments/results/rescore-dev
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_analysis import fmt, mean_se  # experiments/paper_analysis.py, beside this script  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", required=True, help="a quality.json written by experiments/quality.py")
    parser.add_argument("--store", help="its exemplar store (default: the one its command names)")
    parser.add_argument("--methods", "--method", default="refine,stats1", help="comma-separated methods of that run")
    parser.add_argument("--simulators", "--simulator", default="finetuned:gemma-3-270m", help="comma-separated specs")
    parser.add_argument("--out", help="folder for rescore.json and rescore.md")
    args = parser.parse_args(argv)

    from ns_dspy.build import build_simulator
    from ns_dspy.config import SimulatorConfig
    from ns_dspy.exemplars import ExemplarStore
    from ns_dspy.scoring import HeldOut, polysemantic
    from ns_dspy.types import parse_units

    quality = json.loads(Path(args.quality).read_text())
    store_path = args.store
    if store_path is None:
        words = shlex.split(quality["command"])
        store_path = words[words.index("--store") + 1]
    store = ExemplarStore.open(store_path)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    texts, recorded = {}, {}
    for unit, row in quality["results"].items():
        if all(isinstance(row.get(m), dict) and row[m].get("explanations") for m in methods):
            texts[unit] = {m: list(row[m]["explanations"]) for m in methods}
            recorded[unit] = {m: row[m].get("test") for m in methods}
    if not texts:
        print(f"no neuron finished {', '.join(methods)} in {args.quality}: nothing to rescore", file=sys.stderr)
        return 1
    specs = [s.strip() for s in args.simulators.split(",") if s.strip()]
    held = {u: tuple(HeldOut.from_store(store, parse_units(u)[0], split) for split in ("valid", "test"))
            for u in texts}
    results: dict[str, dict] = {}
    for spec in specs:
        simulator = build_simulator(SimulatorConfig(spec))
        start, rows = time.perf_counter(), {}
        for unit, by_method in texts.items():
            valid, test = held[unit]
            rows[unit] = {}
            for method, explanations in by_method.items():
                v = polysemantic(simulator, explanations, valid, calibration=valid)
                t = polysemantic(simulator, explanations, test, calibration=v.calibration)
                rows[unit][method] = {"valid": float(v.value), "test": float(t.value),
                                      "recorded_test": recorded[unit][method]}
            print(spec, unit, " ".join(f"{m} {r['test']:.3f}" for m, r in rows[unit].items()), flush=True)
        summary = {m: {split: mean_se([rows[u][m][split] for u in rows]) for split in ("valid", "test")}
                   for m in methods}
        for m in methods:
            known = [u for u in rows if rows[u][m]["recorded_test"] is not None]
            if known:
                summary[m]["recorded_test"] = mean_se([rows[u][m]["recorded_test"] for u in known])
                summary[m]["test_minus_recorded"] = mean_se([rows[u][m]["test"] - rows[u][m]["recorded_test"]
                                                             for u in known])
        paired = {f"{a} - {b}": mean_se([rows[u][a]["test"] - rows[u][b]["test"] for u in rows])
                  for i, a in enumerate(methods) for b in methods[i + 1:]}
        for m in methods:
            if "recorded_test" in summary[m]:
                rec, (d, se) = summary[m]["recorded_test"][0], summary[m]["test_minus_recorded"]
                print(f"{m} over {len(rows)} neurons: recorded {rec:.3f}, {spec} {summary[m]['test'][0]:.3f}, "
                      f"paired {d:+.3f} +- {fmt(se)}")
        results[spec] = {"units": rows, "summary": summary, "paired_test": paired,
                         "seconds": round(time.perf_counter() - start, 1)}
        simulator.close()
    lines = [f"| simulator ({len(texts)} neurons) | " + " | ".join(f"{m}: valid | {m}: test" for m in methods)
             + " | " + " | ".join(results[specs[0]]["paired_test"]) + " (test) |",
             "|---|" + "---:|---:|" * len(methods) + "---:|" * len(results[specs[0]]["paired_test"])]
    recorded_row = [f"- | {results[specs[0]]['summary'][m]['recorded_test'][0]:.3f}"
                    if "recorded_test" in results[specs[0]]["summary"][m] else "- | -" for m in methods]
    lines.append("| recorded by the run | " + " | ".join(recorded_row) + " |" + " - |" * len(results[specs[0]]["paired_test"]))
    for spec, res in results.items():
        cells = [f"{res['summary'][m]['valid'][0]:.3f} | {res['summary'][m]['test'][0]:.3f} +- "
                 f"{fmt(res['summary'][m]['test'][1])}" for m in methods]
        cells += [f"{d[0]:+.3f} +- {fmt(d[1])}" for d in res["paired_test"].values()]
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        from ns_dspy.atomic import atomic_write_json, atomic_write_text

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        command = "python experiments/rescore.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        atomic_write_json(out / "rescore.json", {"command": command, "quality": args.quality,
                                                  "store": str(Path(store_path).resolve()), "methods": methods,
                                                  "texts": texts, "results": results})
        atomic_write_text(out / "rescore.md", f"Command: `{command}`\n\n" + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
