"""The chosen explanations of a finished ``experiments/list_edits.py`` run scored on test with their final
calibration fitted linearly (as before), monotone (isotonic) or guarded (what ships), all on valid only.

    python experiments/final_calibration.py --list-edits experiments/results/list-edits-eval-tiers5/list_edits.json \
        --store experiments/work/quality/store --out experiments/results/final-calibration-eval

The choice (which explanations, which set) is the run's, made with linear calibrations; only the maps that the
test score reuses are refitted, on the same valid data: monotone, and "guarded" (monotone only where they score
better out of fold on valid, what ships). (``experiments/calibration_kinds.py`` measured on the development
neurons that choosing with monotone scores themselves overfits valid, and this does not.) Rows:
NeuronScope's default (LM modes and the edited lists, the best set on valid; ``default_after``), the same before
the list edits (``default_before``) and the edited word lists alone (``explanations``). A single explanation is
never calibrated: its score is the same under both. Writes ``OUT/final.json`` and ``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_analysis import _pm, mean_se  # noqa: E402

from ns_dspy.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from ns_dspy.build import build_simulator  # noqa: E402
from ns_dspy.config import SimulatorConfig  # noqa: E402
from ns_dspy.exemplars import ExemplarStore  # noqa: E402
from ns_dspy.scoring import HeldOut, fit_calibration, polysemantic  # noqa: E402
from ns_dspy.types import UnitId  # noqa: E402

KINDS = ("linear", "monotone", "guarded")
ROWS = {"default_after": "NeuronScope (default: LM modes and the edited lists, the best set on valid)",
        "default_before": "NeuronScope before the list edits",
        "explanations": "the edited word lists alone"}


def texts_of(row: dict, key: str) -> list[str]:
    value = row[key]
    return list(value["explanations"] if isinstance(value, dict) else value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list-edits", required=True, help="list_edits.json of experiments/list_edits.py")
    ap.add_argument("--store", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--simulator", default="finetuned:gemma-3-270m")
    args = ap.parse_args(argv)
    run = json.loads(Path(args.list_edits).read_text())
    store = ExemplarStore.open(args.store)
    simulator = build_simulator(SimulatorConfig(args.simulator))
    command = "python experiments/final_calibration.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    out = {}
    for row in run["neurons"]:
        unit = UnitId.parse(row["unit"])
        valid, test = HeldOut.from_store(store, unit, "valid"), HeldOut.from_store(store, unit, "test")
        got = {}
        for key in [k for k in ROWS if k in row]:  # a run without the LM's modes has the lists only
            texts = texts_of(row, key)
            scores = {}
            for kind in KINDS:
                maps = fit_calibration(simulator, texts, valid, kind=kind) if len(texts) > 1 else None
                scores[kind] = polysemantic(simulator, texts, test, calibration=maps).value
            got[key] = {"explanations": len(texts), **scores}
        out[row["unit"]] = got
        print(row["unit"], " ".join(f"{k}: " + " / ".join(f"{v[kind]:.3f}" for kind in KINDS)
                                    for k, v in got.items()), flush=True)
    units = list(out)
    lines = [f"# Final calibration linear or monotone, the same choices ({len(units)} neurons, test)", "",
             f"`{command}`", "", f"Choices of `{run.get('command', args.list_edits)}`; simulator `{args.simulator}`.",
             "", "| explanations | linear (before) | monotone | paired | up / down | guarded (now) | paired "
             "| up / down |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, label in ROWS.items():
        if any(key not in out[u] for u in units):
            continue
        lin = [out[u][key]["linear"] for u in units]
        cells = [_pm(*mean_se(lin))]
        for kind in KINDS[1:]:
            other = [out[u][key][kind] for u in units]
            diff = [b - a for a, b in zip(lin, other)]
            cells += [_pm(*mean_se(other)), _pm(*mean_se(diff)),
                      f"{sum(d > 1e-9 for d in diff)} / {sum(d < -1e-9 for d in diff)}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    atomic_write_json(Path(args.out) / "final.json", {"command": command, "simulator": args.simulator, "neurons": out})
    atomic_write_text(Path(args.out) / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
