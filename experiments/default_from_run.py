"""NeuronScope's default row (word lists as modes when they help on valid) from an LM-modes-only run file, next to
an earlier quality experiment's rows on the same neurons.

    python experiments/default_from_run.py --run RUN.sqlite --store STORE --before DIR/quality.json [--out DIR]

``RUN`` holds ``ns-dspy explain --no-stats-modes`` records of some of ``DIR``'s neurons; its modes and ``DIR``'s
statistical word lists go through :func:`quality.hybrid_row` (the function the program calls), and the LM-modes
and default rows are compared, paired, with ``DIR``'s ``refine`` and ``hybrid`` rows. Prints a Markdown table
and writes ``OUT/summary.md`` and ``OUT/rows.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_analysis import _pm, mean_se  # noqa: E402
from quality import hybrid_row  # noqa: E402

from ns_dspy.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from ns_dspy.exemplars import ExemplarStore  # noqa: E402
from ns_dspy.runs.store import RunStore  # noqa: E402
from ns_dspy.simulators import build_simulator  # noqa: E402


def pm(values: list[float]) -> str:
    return _pm(*mean_se(values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--before", required=True, help="an earlier experiments/quality.py quality.json")
    ap.add_argument("--simulator", default="finetuned:gemma-3-270m")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    before = json.loads(Path(args.before).read_text())["results"]
    store, simulator = ExemplarStore.open(args.store), build_simulator(args.simulator)
    rows = {}
    for rec in RunStore(args.run).records():
        unit = str(rec.unit)
        if rec.status != "done" or unit not in before:
            continue
        refine = {"explanations": [f.explanation for f in rec.typed_trace.finals], "valid": rec.score_valid,
                  "test": rec.score_test}
        rows[unit] = {"refine": refine, "hybrid": hybrid_row(simulator, store, rec.unit, refine, before[unit]["stats"]),
                      "before": {k: before[unit][k] for k in ("refine", "hybrid", "stats")}}
    units = sorted(rows, key=lambda u: tuple(map(int, u.split(":"))))
    col = lambda key, when: [rows[u][key]["test"] if when == "after" else rows[u]["before"][key]["test"]  # noqa: E731
                             for u in units]
    lines = [f"| row ({len(units)} neurons, test) | before | after | after - before (paired) |", "|---|---:|---:|---:|"]
    for key, label in (("refine", "NeuronScope, LM modes only (--no-stats-modes)"),
                       ("hybrid", "NeuronScope, default (word lists as modes when they help on valid)")):
        a, b = col(key, "after"), col(key, "before")
        lines.append(f"| {label} | {pm(b)} | {pm(a)} | {pm([x - y for x, y in zip(a, b)])} |")
    stats = [rows[u]["before"]["stats"]["test"] for u in units]
    lines.append(f"| statistical explainer (no LM), unchanged | {pm(stats)} | {pm(stats)} | - |")
    lines += ["", "| neuron | LM modes before | after | default before | after | LM modes kept in the default |",
              "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {u} | {rows[u]['before']['refine']['test']:.3f} | {rows[u]['refine']['test']:.3f} | "
              f"{rows[u]['before']['hybrid']['test']:.3f} | {rows[u]['hybrid']['test']:.3f} | "
              f"{rows[u]['hybrid']['lm_modes']} |" for u in units]
    table = "\n".join(lines)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "rows.json", rows)
        atomic_write_text(out / "summary.md", f"Command: `python {' '.join(sys.argv)}`\n\n{table}\n")


if __name__ == "__main__":
    main()
