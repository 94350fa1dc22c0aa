"""The same explanations read in two wordings: a unit's template description and its LM rewording.

    python experiments/reworded.py --data DATA --paraphrase P.json --short S.json [--simulator SPEC] [--out OUT.md]

``P.json`` and ``S.json`` are ``ns-dspy-train-simulator eval`` (or ``decoys``) outputs of one simulator on the
same dataset folder with the same ``--seed`` and ``--max-units``, read with ``--style paraphrase`` and ``--style
short``: the same units and, unit for unit, the same explanation (``restyle`` replaces explanations index for
index). Only units whose evaluated explanation was reworded (``DATA``'s ``paraphrases``) are compared; a unit
whose rewording was refused was read in its template wording in both files. Prints the paired difference of the
truth's r (mean, standard error, units up and down), per family, and for decoy files the wins in each wording
and the units whose win changed, with both wordings, so the reader can see whether a loss is the simulator's
reading or the rewording's meaning.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from simulator_training.data import SPLITS, read_units
from simulator_training.paraphrase import reworded


def _rows(path: Path, simulator: str | None = None) -> tuple[dict, list[dict]]:
    data = json.loads(path.read_text())
    specs = list(data["units"])
    if simulator is not None:
        specs = [s for s in specs if s == simulator]
    if len(specs) != 1:
        sys.exit(f"error: {path} holds the simulators {', '.join(data['units'])}: name one with --simulator")
    return data, data["units"][specs[0]]


def _reworded(data_dir: Path) -> dict[str, set[str]]:
    return {unit["unit"]: set(reworded(unit)) for split in SPLITS if (data_dir / f"{split}.jsonl").exists()
            for unit in read_units(data_dir, split)}


def compare(data_dir: Path, para: Path, short: Path, simulator: str | None = None) -> str:
    pmeta, prows = _rows(para, simulator)
    smeta, srows = _rows(short, simulator)
    if pmeta.get("style") != "paraphrase" or smeta.get("style", "short") != "short":
        sys.exit("error: give the --style paraphrase file as --paraphrase and the --style short one as --short")
    if pmeta.get("seed") != smeta.get("seed"):
        sys.exit(f"error: the two files used seeds {pmeta.get('seed')} and {smeta.get('seed')}: evaluate both with one")
    reworded = _reworded(data_dir)
    by_unit = {r["unit"]: r for r in srows}
    if {r["unit"] for r in prows} != set(by_unit):
        sys.exit("error: the two files evaluated different units: use the same --max-units and --seed")
    pairs = [(p, by_unit[p["unit"]]) for p in prows if p["explanation"] in reworded.get(p["unit"], set())]
    if not pairs:
        sys.exit(f"error: no evaluated explanation of {para} is a rewording in {data_dir}")
    d = np.array([p["r"] - s["r"] for p, s in pairs])
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    lines = [f"# The same explanations, template wording against the LM's rewording ({para.name} / {short.name})", "",
             f"{len(pairs)} of {len(prows)} evaluated units read a rewording (the rest had none kept).", "",
             "| | units | template r | reworded r | paired difference | down / up | within 0.05 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    fams = defaultdict(list)
    for p, s in pairs:
        fams[p["family"]].append((p, s))
    for name, group in [*sorted(fams.items()), ("**all**", pairs)]:
        g = np.array([p["r"] - s["r"] for p, s in group])
        lines.append(f"| {name} | {len(group)} | {np.mean([s['r'] for _, s in group]):.3f} | "
                     f"{np.mean([p['r'] for p, _ in group]):.3f} | {g.mean():+.3f}"
                     + (f" ± {g.std(ddof=1) / np.sqrt(len(g)):.3f}" if len(g) > 1 else "")
                     + f" | {(g < 0).sum()} / {(g > 0).sum()} | {(abs(g) < 0.05).sum()} |")
    lines += ["", f"Paired over all: {d.mean():+.3f} ± {se:.3f}."]
    if "win" in prows[0]:
        wins_p = sum(bool(p["win"]) for p, _ in pairs)
        wins_s = sum(bool(s["win"]) for _, s in pairs)
        lines += ["", f"Truth ranked first: **{wins_s} of {len(pairs)}** in template wording, **{wins_p}** reworded.",
                  "", "| unit | template r | reworded r | win: template / reworded | decoys at or above the reworded "
                  "truth | template wording | rewording |", "|---|---:|---:|---|---|---|---|"]
        for p, s in pairs:
            if bool(p["win"]) != bool(s["win"]):
                above = ", ".join(f for f, r in p["r_decoys"].items() if r >= p["r"]) or "-"
                lines.append(f"| {p['unit']} | {s['r']:.3f} | {p['r']:.3f} | {bool(s['win'])} / {bool(p['win'])} | "
                             f"{above} | {_cell(s['explanation'])} | {_cell(p['explanation'])} |")
    else:
        lines += ["", "| unit | template r | reworded r | template wording | rewording |", "|---|---:|---:|---|---|"]
        for p, s in sorted(pairs, key=lambda ps: ps[0]["r"] - ps[1]["r"]):
            if abs(p["r"] - s["r"]) >= 0.1:
                lines.append(f"| {p['unit']} | {s['r']:.3f} | {p['r']:.3f} | {_cell(s['explanation'])} | "
                             f"{_cell(p['explanation'])} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="the dataset folder both files evaluated")
    parser.add_argument("--paraphrase", required=True, type=Path, help="eval/decoys JSON read with --style paraphrase")
    parser.add_argument("--short", required=True, type=Path, help="the same evaluation with --style short")
    parser.add_argument("--simulator", help="the simulator spec to read, where a file holds several (--baseline)")
    parser.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    args = parser.parse_args(argv)
    for path in (args.paraphrase, args.short, args.data / "valid.jsonl"):
        if not path.exists():
            sys.exit(f"error: {path} does not exist")
    text = compare(args.data, args.paraphrase, args.short, args.simulator)
    print(text, end="")
    if args.out:
        from ns_dspy.atomic import atomic_write_text

        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
