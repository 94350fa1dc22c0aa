"""Refinement that edits word lists from their errors on valid: does it carry over to test? Real neurons, no LM.

    python experiments/list_edits.py --store experiments/work/quality/store \
        --neurons experiments/results/quality-dev/neurons.json --out experiments/results/list-edits [--no-confirm]
        [--moves] [--screen N] [--tokens N]

For each neuron, the statistical explainer's chosen set (word lists written from the train exemplars, chosen on
valid: what ``ns-dspy explain --method stats`` reports) is refined by :func:`ns_dspy.agents.list_edits.edit_lists`
(the edits NeuronScope makes to its statistical modes): greedy edits proposed from the set's errors on valid, each
confirmed on the train windows (``--no-confirm``: without that check, the ablation). The set before and after is
then scored once on test, with calibrations fitted on valid, so the paired difference says whether valid-guided
edits generalise. ``--moves``: edits may also move a listed token to another tier; ``--screen 0``: every candidate
simulated (the edits as first built). Each neuron's cost is the tokens the edits simulate
in new (explanation, text) pairs: every program run has the simulation cache, so pairs the statistical explainer
or an earlier round already simulated are free.

``--quality QUALITY_JSON`` (a committed ``experiments/quality.py`` result with a ``refine`` run of the same
neurons): also NeuronScope's default as the program now makes it, from that run's LM modes and the edited lists
(:func:`ns_dspy.program.with_statistical`: the best on valid of the LM's modes, both, the lists alone; the edits do
not change the program's LM calls), paired with the same row from the unedited lists (the file's ``hybrid``).
Writes ``OUT/list_edits.json`` and ``OUT/summary.md`` with the command.
"""

from __future__ import annotations

import argparse
import json
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
from ns_dspy.program import NeuronScope, with_statistical
from ns_dspy.scoring import HeldOut, polysemantic
from ns_dspy.types import parse_units


class Pairs:
    """The simulator, noting each (explanation, text) pair it is asked for: with the simulation cache every
    program run has, a pair asked for again costs nothing, so new pairs are what the edits cost."""

    def __init__(self, inner):
        self.inner, self.seen = inner, {}

    @property
    def cache_key(self) -> str:
        return self.inner.cache_key

    def simulate(self, explanations, exemplars):
        for e in explanations:
            for ex in exemplars:
                self.seen[(e, tuple(ex.tokens))] = len(ex.tokens)
        return self.inner.simulate(explanations, exemplars)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--neurons", required=True, help="JSON of {group: [LAYER:INDEX, ...]} (e.g. quality-dev's)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-confirm", dest="confirm", action="store_false",
                        help="take the best edit on valid without checking it on the train windows")
    parser.add_argument("--tokens", type=int, default=3,
                        help="missed tokens, false alarms (and misplaced tokens) considered per round")
    parser.add_argument("--moves", action="store_true",
                        help="also move a listed token to the list whose valid level is nearest its own")
    parser.add_argument("--screen", type=int, default=0,
                        help="simulate the round's N candidates ranked best by the screen first "
                             "(default 0: every candidate)")
    parser.add_argument("--simulator", default="finetuned:gemma-3-270m")
    parser.add_argument("--quality", help="quality.json with a refine run of these neurons: NeuronScope's default too")
    args = parser.parse_args(argv)
    command = "python experiments/list_edits.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    store = ExemplarStore.open(args.store)
    units = parse_units(",".join(u for us in json.loads(Path(args.neurons).read_text()).values() for u in us))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    simulator = Pairs(build_simulator(SimulatorConfig(args.simulator)))
    stats = NeuronScope(simulator, None, ExplainConfig(method="stats"))
    quality = json.loads(Path(args.quality).read_text())["results"] if args.quality else {}
    rows, t0 = [], time.time()
    for unit in units:
        valid, test = HeldOut.from_store(store, unit, "valid"), HeldOut.from_store(store, unit, "test")
        train = store.train_exemplars(unit)
        simulator.seen = {}
        before = stats(train=train, valid=valid)
        known = set(simulator.seen)
        edited = edit_lists(simulator, before.explanations, valid, train, rounds=args.rounds,
                            confirm=args.confirm, moves=args.moves, screen=args.screen,
                            tokens=args.tokens)
        cost = sum(n for pair, n in simulator.seen.items() if pair not in known)

        def on_test(texts, calibration):
            return polysemantic(simulator, texts, test, calibration=calibration).value

        row = {"unit": str(unit), "valid_before": before.polysemantic, "valid_after": edited.score.value,
               "test_before": on_test(before.explanations, before.calibration),
               "test_after": on_test(edited.explanations, edited.score.calibration),
               "edits": [list(e) for e in edited.edits], "explanations": edited.explanations,
               "edit_simulated_tokens": cost}
        lm = quality.get(str(unit), {}).get("refine", {}).get("explanations")
        if quality and not lm:
            raise SystemExit(f"list_edits.py: {args.quality} has no refine run of {unit}")
        if lm:
            def default(lists, lists_score):
                lm_score = polysemantic(simulator, lm, valid, calibration=valid)
                chosen, best = with_statistical(simulator, valid, lm, lm_score, lists, lists_score)
                return {"explanations": chosen, "valid": best.value, "test": on_test(chosen, best.calibration)}

            row["default_before"] = default(before.explanations, before.score)
            row["default_after"] = default(edited.explanations, edited.score)
            row["committed_default_test"] = quality[str(unit)]["hybrid"]["test"]
        rows.append(row)
        print(f"{unit}: valid {row['valid_before']:.3f} -> {row['valid_after']:.3f}, test {row['test_before']:.3f} -> "
              f"{row['test_after']:.3f} ({len(row['edits'])} edits, {cost} new tokens simulated, "
              f"{time.time() - t0:.0f} s)", flush=True)
    d = np.array([[r["valid_after"] - r["valid_before"], r["test_after"] - r["test_before"]] for r in rows])
    se = d.std(axis=0, ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.zeros(2)
    summary = {"neurons": len(rows), "confirm": args.confirm, "valid_gain": float(d[:, 0].mean()),
               "valid_gain_se": float(se[0]), "test_gain": float(d[:, 1].mean()), "test_gain_se": float(se[1]),
               "test_up": int((d[:, 1] > 0).sum()), "test_down": int((d[:, 1] < 0).sum()),
               "test_before": float(np.mean([r["test_before"] for r in rows])),
               "test_after": float(np.mean([r["test_after"] for r in rows])),
               "edit_simulated_tokens": float(np.mean([r["edit_simulated_tokens"] for r in rows]))}
    if quality:
        e = np.array([r["default_after"]["test"] - r["default_before"]["test"] for r in rows])
        summary.update(default_before=float(np.mean([r["default_before"]["test"] for r in rows])),
                       default_after=float(np.mean([r["default_after"]["test"] for r in rows])),
                       default_gain=float(e.mean()), default_gain_se=float(e.std(ddof=1) / np.sqrt(len(e))),
                       default_up=int((e > 0).sum()), default_down=int((e < 0).sum()),
                       committed_default=float(np.mean([r["committed_default_test"] for r in rows])))
    atomic_write_json(out / "list_edits.json", {"command": command, "simulator": args.simulator,
                                                "summary": summary, "neurons": rows})
    lines = [f"# Word lists edited from their valid errors ({summary['neurons']} neurons)", "",
             f"Command: `{command}`; simulator `{args.simulator}`; edits "
             f"{'confirmed on the train windows' if args.confirm else 'not checked on train (ablation)'}.", "",
             "| neuron | valid before | valid after | test before | test after | edits |", "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {r['unit']} | {r['valid_before']:.3f} | {r['valid_after']:.3f} | {r['test_before']:.3f} | "
              f"{r['test_after']:.3f} | {', '.join(e[0] for e in r['edits']) or '-'} |" for r in rows]
    lines += ["", f"Paired gain, mean ± SE: valid {summary['valid_gain']:+.3f} ± {summary['valid_gain_se']:.3f}, "
              f"test {summary['test_gain']:+.3f} ± {summary['test_gain_se']:.3f} ({summary['test_up']} up, "
              f"{summary['test_down']} down); test {summary['test_before']:.3f} before, {summary['test_after']:.3f} after; "
              f"the edits simulated {summary['edit_simulated_tokens']:,.0f} tokens per neuron beyond the statistical "
              "explainer's (new explanation-text pairs)."]
    if quality:
        lines += [f"NeuronScope's default (the `refine` run's LM modes in `{args.quality}` with the lists): test "
                  f"{summary['default_before']:.3f} with the unedited lists (the file's own row: "
                  f"{summary['committed_default']:.3f}), {summary['default_after']:.3f} with the edited ones; paired "
                  f"{summary['default_gain']:+.3f} ± {summary['default_gain_se']:.3f} ({summary['default_up']} up, "
                  f"{summary['default_down']} down)."]
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print(lines[-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
