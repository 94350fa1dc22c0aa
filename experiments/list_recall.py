"""How much of a word list does a simulator read? Recall of the listed tokens by list length, on real neurons.

    python experiments/list_recall.py --store experiments/work/quality/store \
        --neurons experiments/results/quality-dev/neurons.json --out experiments/results/list-recall \
        [--simulators finetuned:gemma-3-270m,finetuned:DIR] [--sizes 2,4,8,16,32]

For each neuron, the statistical explainer's ranking of its train tokens (:func:`ns_dspy.agents.evidence.
ranked_tokens`, train exemplars only) gives word lists of the first ``k`` tokens, written as the explainer writes
them (``the words "X", "Y" and "Z"``). Each list is simulated on the neuron's valid windows and compared with where
its words are: the mean prediction on the tokens the list names (and the share of them predicted above 5 of 10:
recall) against the mean on every other token (and the share above 5: false alarms). No activation is used: this
measures reading, not the neuron. A simulator that reads every listed word has recall near 1 at every length.
Recall is also split by the kind of listed token (:func:`token_class`: a lower-case word, a capitalised word, a
fragment of one or two letters, digits, a symbol, or a mixed code-like token) and by the half of the list it is in.

Writes ``OUT/list_recall.json`` and ``OUT/summary.md`` (per simulator and length: mean over neurons, with the
command). Uses valid data only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from ns_dspy.agents.evidence import ranked_tokens, token_key, word_list
from ns_dspy.atomic import atomic_write_json, atomic_write_text
from ns_dspy.build import build_simulator
from ns_dspy.config import SimulatorConfig
from ns_dspy.exemplars import ExemplarStore
from ns_dspy.scoring import HeldOut
from ns_dspy.scoring.heldout import simulate
from ns_dspy.types import parse_units


CLASSES = ("word", "Capitalised", "fragment", "digits", "symbol", "mixed")


def token_class(token: str) -> str:
    """The kind of a listed token, as :data:`CLASSES` names them (spaces around it ignored)."""
    t = token.strip()
    if t.isalpha():
        return "fragment" if len(t) <= 2 else ("Capitalised" if t[0].isupper() else "word")
    if t.isdigit():
        return "digits"
    return "symbol" if not any(c.isalnum() for c in t) else "mixed"


def reading(simulator, store, unit, sizes: list[int]) -> dict[int, dict]:
    train = store.train_exemplars(unit)
    valid = HeldOut.from_store(store, unit, "valid")
    ranked = ranked_tokens(train, most=max(sizes))
    kept = [k for k in sizes if k <= len(ranked)]
    preds = simulate(simulator, [word_list([r.token for r in ranked[:k]]) for k in kept], valid.exemplars) if kept else []
    out = {}
    for k, pred in zip(kept, preds):
        rank = {r.key: i for i, r in enumerate(ranked[:k])}
        on, off = [], []
        groups: dict[str, list[float]] = {}
        for ex, p in zip(valid.exemplars, pred):
            for tok, v in zip(ex.tokens, p):
                key = token_key(tok)
                if key in rank:
                    on.append(float(v))
                    for g in (token_class(tok), "first half" if rank[key] < k / 2 else "second half"):
                        groups.setdefault(g, []).append(float(v))
                else:
                    off.append(float(v))
        if on:
            on_a, off_a = np.array(on), np.array(off)
            out[k] = {"on_mean": float(on_a.mean()), "recall": float((on_a > 5).mean()), "off_mean": float(off_a.mean()),
                      "false_alarms": float((off_a > 5).mean()), "listed_tokens": len(on),
                      "by_group": {g: {"recall": float((np.array(v) > 5).mean()), "tokens": len(v)}
                                   for g, v in groups.items()}}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--neurons", required=True, help="a neurons.json of experiments/quality.py (groups of LAYER:INDEX)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--simulators", default="finetuned:gemma-3-270m", help="comma list of simulator specs")
    ap.add_argument("--sizes", default="2,4,8,16,32")
    args = ap.parse_args(argv)
    command = "python experiments/list_recall.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    sizes = [int(x) for x in args.sizes.split(",")]
    store = ExemplarStore.open(args.store)
    units = parse_units(",".join(u for us in json.loads(Path(args.neurons).read_text()).values() for u in us))
    results: dict[str, dict] = {}
    for spec in args.simulators.split(","):
        simulator = build_simulator(SimulatorConfig(spec))
        try:
            results[spec] = {str(u): reading(simulator, store, u, sizes) for u in units}
        finally:
            simulator.close()
        print(f"{spec}: {len(units)} neurons", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "list_recall.json", {"command": command, "neurons": [str(u) for u in units],
                                                 "results": results})
    lines = ["# Recall of the listed tokens by list length", "", f"Command: `{command}`", "",
             f"{len(units)} neurons of `{args.store}`, valid windows; lists of each neuron's highest-ranked train "
             "tokens in the statistical explainer's form. Recall: share of the listed tokens predicted above 5 "
             "(of 10); false alarms: share of the other tokens above 5. Means over neurons.", "",
             "| simulator | words listed | recall | mean on listed | false alarms | mean elsewhere | neurons |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for spec, per in results.items():
        for k in sizes:
            rows = [r[k] for r in per.values() if k in r]
            if rows:
                m = {f: np.mean([r[f] for r in rows]) for f in ("recall", "on_mean", "false_alarms", "off_mean")}
                lines.append(f"| `{spec}` | {k} | {m['recall']:.2f} | {m['on_mean']:.2f} | {m['false_alarms']:.3f} | "
                             f"{m['off_mean']:.2f} | {len(rows)} |")
    groups = list(CLASSES) + ["first half", "second half"]
    lines += ["", "Recall by the kind of listed token and by its half of the list (occurrences of listed tokens in the "
              "valid windows pooled over neurons; the count in brackets):", "",
              "| simulator | words listed | " + " | ".join(groups) + " |", "|---|---:|" + "---:|" * len(groups)]
    for spec, per in results.items():
        for k in sizes:
            cells = []
            for g in groups:
                got = [r[k]["by_group"][g] for r in per.values() if k in r and g in r[k]["by_group"]]
                n = sum(x["tokens"] for x in got)
                cells.append(f"{sum(x['recall'] * x['tokens'] for x in got) / n:.2f} ({n})" if n else "-")
            lines.append(f"| `{spec}` | {k} | " + " | ".join(cells) + " |")
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
