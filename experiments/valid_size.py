"""Does choosing on more valid windows carry more of the valid gain over to test? Real neurons, no LM.

    python experiments/valid_size.py --store STORE --neurons 1:2010,3:1545,... --out OUT \
        [--train 40,20] [--small 30,15] [--test-small 30,15] [--simulator SPEC]

Refinement's valid gain reaches test only in part (issue 15: +0.050 on valid, +0.023 on test over 16 evaluation
neurons), and the default recording keeps 30 top and 15 random windows per unit in valid: every choice among
close candidates is made on those 45 windows (2,880 tokens). Here a store recorded with more windows per split
(e.g. ``ns-dspy record ... --top-k 300 --random-k 150``: 90 top and 45 random in valid and in test) is read two
ways that differ only in the valid windows the choices see:

- ``small``: the valid split as the default recording keeps it, the ``--small`` highest-peak top windows and
  the first random windows (the same windows a ``--top-k 100 --random-k 50`` recording of the same text keeps);
- ``large``: every valid window of the store.

Both read the same train windows (``--train``: again those a default recording shows the explainer) and are scored on the same test windows, all of the store's
(``test``) and the default's share of them (``test_small``, ``--test-small``). Per arm: the statistical explainer's
choice on valid (what ``ns-dspy explain --method stats`` reports) and that set after NeuronScope's list edits
(:func:`ns_dspy.agents.list_edits.edit_lists`, its defaults, each edit confirmed on train), each set scored on
test with maps fitted on the arm's own valid windows. Writes ``OUT/valid_size.json`` and ``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from ns_dspy.agents.list_edits import edit_lists
from ns_dspy.atomic import atomic_write_json, atomic_write_text
from ns_dspy.build import build_simulator
from ns_dspy.config import ExplainConfig, SimulatorConfig
from ns_dspy.exemplars import ExemplarStore
from ns_dspy.program import NeuronScope
from ns_dspy.scoring import HeldOut, polysemantic
from ns_dspy.types import Exemplar, UnitId, parse_units

ARMS = ("small", "large")


def counts(text: str, flag: str) -> tuple[int, int]:
    try:
        top, rand = (int(x) for x in text.split(","))
    except ValueError:
        raise SystemExit(f"valid_size.py: {flag} takes TOP,RANDOM window counts, e.g. 30,15; got {text!r}") from None
    if top < 1 or rand < 0:
        raise SystemExit(f"valid_size.py: {flag} needs at least one top window and no negative count, got {text!r}")
    return top, rand


def subset(store: ExemplarStore, unit: UnitId, split: str, top: int | None, rand: int | None) -> list[Exemplar]:
    """The unit's first ``top`` top windows of ``split`` (highest peaks first) and first ``rand`` random windows (the
    sample's smallest hash keys): exactly the windows a recording of the same text with smaller ``--top-k`` and
    ``--random-k`` keeps, up to ties (None: all of them). Fewer in the store than asked is an error: the arms
    would not differ."""
    tops, rands = store.exemplars(unit, split, "top"), store.exemplars(unit, split, "random")
    if top is not None and top > len(tops) or rand is not None and rand > len(rands):
        raise SystemExit(f"valid_size.py: {unit} has {len(tops)} top and {len(rands)} random {split} windows, fewer "
                         f"than {top},{rand}: record the store with larger --top-k and --random-k")
    return tops[:top] + rands[:rand]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="a store recorded with more windows than the default")
    parser.add_argument("--neurons", required=True, help="LAYER:INDEX,... (development neurons)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--train", default="40,20", help="train windows the explainer reads: TOP,RANDOM")
    parser.add_argument("--small", default="30,15", help="the small arm's valid windows: TOP,RANDOM")
    parser.add_argument("--test-small", default="30,15", help="the default recording's share of test: TOP,RANDOM")
    parser.add_argument("--simulator", default="finetuned:gemma-3-270m")
    args = parser.parse_args(argv)
    command = "python experiments/valid_size.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    train_n, small_n, test_n = counts(args.train, "--train"), counts(args.small, "--small"), \
        counts(args.test_small, "--test-small")
    store = ExemplarStore.open(args.store)
    units = parse_units(args.neurons)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    simulator = build_simulator(SimulatorConfig(args.simulator))
    stats = NeuronScope(simulator, None, ExplainConfig(method="stats"))
    rows, t0 = [], time.time()
    for unit in units:
        train = subset(store, unit, "train", *train_n)
        valids = {"small": HeldOut(unit, "valid", tuple(subset(store, unit, "valid", *small_n))),
                  "large": HeldOut(unit, "valid", tuple(subset(store, unit, "valid", None, None)))}
        tests = {"test": HeldOut(unit, "test", tuple(subset(store, unit, "test", None, None))),
                 "test_small": HeldOut(unit, "test", tuple(subset(store, unit, "test", *test_n)))}
        row = {"unit": str(unit), "windows": {"train": len(train), **{f"valid_{a}": len(v.exemplars)
                                                                     for a, v in valids.items()},
                                              **{k: len(v.exemplars) for k, v in tests.items()}}}
        for arm, valid in valids.items():
            before = stats(train=train, valid=valid)
            edited = edit_lists(simulator, before.explanations, valid, train)
            row[arm] = {"valid_before": before.polysemantic, "valid_after": edited.score.value,
                        "before": before.explanations, "after": edited.explanations,
                        "edits": [list(e) for e in edited.edits]}
            for name, test in tests.items():
                for when, texts in (("before", before.explanations), ("after", edited.explanations)):
                    row[arm][f"{name}_{when}"] = polysemantic(simulator, texts, test, calibration=valid).value
        rows.append(row)
        print(f"{unit}: " + "; ".join(
            f"{a} valid {row[a]['valid_before']:.3f} -> {row[a]['valid_after']:.3f}, test {row[a]['test_before']:.3f}"
            f" -> {row[a]['test_after']:.3f}" for a in ARMS) + f" ({time.time() - t0:.0f} s)", flush=True)
        atomic_write_json(out / "valid_size.json", {"command": command, "simulator": args.simulator,
                                                    "neurons": rows, "summary": summarise(rows)})
    summary = summarise(rows)  # valid_size.json holds it already: the loop writes the file after every neuron
    atomic_write_text(out / "summary.md", render(command, args.simulator, rows, summary))
    print(render(command, args.simulator, rows, summary))
    return 0


def _mean_se(values) -> dict:
    v = np.asarray(list(values), np.float64)
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "se": se, "up": int((v > 0).sum()), "down": int((v < 0).sum())}


def summarise(rows: list[dict]) -> dict:
    """Per arm and test set: the mean test score of the statistical choice and of the edited set, the edits' paired
    gain on valid and on test; and the paired large - small differences."""
    out = {"neurons": len(rows)}
    for arm in ARMS:
        a = {"valid_gain": _mean_se(r[arm]["valid_after"] - r[arm]["valid_before"] for r in rows)}
        for name in ("test", "test_small"):
            a[name] = {when: _mean_se(r[arm][f"{name}_{when}"] for r in rows) for when in ("before", "after")}
            a[name]["gain"] = _mean_se(r[arm][f"{name}_after"] - r[arm][f"{name}_before"] for r in rows)
        out[arm] = a
    out["large_minus_small"] = {f"{name}_{when}": _mean_se(r["large"][f"{name}_{when}"] - r["small"][f"{name}_{when}"]
                                                           for r in rows)
                                for name in ("test", "test_small") for when in ("before", "after")}
    return out


def render(command: str, simulator: str, rows: list[dict], s: dict) -> str:
    def f(m: dict, sign: str = "") -> str:
        return f"{m['mean']:{sign}.3f} ± {m['se']:.3f}"

    w = rows[0]["windows"] if rows else {}
    lines = [f"# Choosing on more valid windows ({s['neurons']} neurons)", "",
             f"Command: `{command}`; simulator `{simulator}`; no LM. Windows per unit: train {w.get('train')}, "
             f"valid {w.get('valid_small')} (small) or {w.get('valid_large')} (large), test {w.get('test')} "
             f"(`test_small`: {w.get('test_small')} of them).", "",
             "| arm | valid gain of the edits | test: statistical | test: edited | test gain | test_small: statistical "
             "| test_small: edited | test_small gain |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for arm in ARMS:
        a = s[arm]
        lines.append(f"| {arm} | {f(a['valid_gain'], '+')} | {f(a['test']['before'])} | {f(a['test']['after'])} | "
                     f"{f(a['test']['gain'], '+')} ({a['test']['gain']['up']} up, {a['test']['gain']['down']} down) | "
                     f"{f(a['test_small']['before'])} | {f(a['test_small']['after'])} | "
                     f"{f(a['test_small']['gain'], '+')} |")
    d = s["large_minus_small"]
    lines += ["", "Paired large - small: " + ", ".join(
        f"{k} {f(v, '+')} ({v['up']} up, {v['down']} down)" for k, v in d.items()) + ".", "",
        "| neuron | small: valid before -> after | small: test before -> after | large: valid before -> after | "
        "large: test before -> after |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['unit']} | " + " | ".join(
        f"{r[a]['valid_before']:.3f} -> {r[a]['valid_after']:.3f} | {r[a]['test_before']:.3f} -> "
        f"{r[a]['test_after']:.3f}" for a in ARMS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
