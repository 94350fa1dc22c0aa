"""Does a simulator respond to the explanation? Matched vs mismatched explanations on real neurons.

    python experiments/simulator_sensitivity.py STORE [--units 6:1,12:5,...] [--n 6] [--simulators keyword,...]
        [--split valid]

For each unit, a plain explanation is written from its *train* exemplars only (the tokens at which its top
train windows peak: 'the words "a", "b" and "c"', quoted as the statistical explainer quotes them), then scored
on held-out data (``--split``: *valid* by default, or *test*) with that unit's own explanation and with another
unit's (a rotation). A simulator that reads explanations scores matched well above mismatched; one that ignores
them scores both alike. The keyword simulator is the transparent reference.

Beside the simulators, two exact readings of each unit's own explanation, with no simulator: an indicator (1 on
the listed words, 0 elsewhere) and the listed words' mean activations over the unit's train exemplars (top and
random), every other token at the mean of the others: the quality benchmark's lookup restricted to those words.
A reader that predicts activity on the listed words only does best with their mean activations (the second
reading estimates them on train), so it shows how much of a small matched score is the data's limit rather than
the simulator's; a simulator can pass it only by also predicting words the list does not name.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from ns_dspy.exemplars import ExemplarStore
from ns_dspy.agents.evidence import token_key, word_list
from ns_dspy.scoring import HeldOut, score
from ns_dspy.scoring.correlation import pooled
from ns_dspy.build import build_simulator
from ns_dspy.types import UnitId, parse_units
from quality import lookup_score  # experiments/quality.py, beside this script
from simulator_real import SIMULATOR_OPTIONS, simulator_config  # the same SPEC+int8 as there


def peak_words(store: ExemplarStore, unit: UnitId, n: int = 3) -> list[str]:
    """The ``n`` tokens (stripped) at which the unit's top train windows peak most often."""
    peaks = Counter()
    for ex in store.exemplars(unit, "train", "top"):
        tok = ex.tokens[int(np.argmax(ex.activations))].strip()
        if tok:
            peaks[tok] += 1
    return [w for w, _ in peaks.most_common(n)]


def exact_readings(store: ExemplarStore, unit: UnitId, words: list[str], held: HeldOut) -> tuple[float, float]:
    """Pooled r on ``held`` of the listed words read exactly: as an indicator, and as the quality benchmark's
    lookup restricted to them (:func:`quality.lookup_score`: each at its mean train activation, every other token
    at the mean of the others)."""
    indicator = [np.array([float(t.strip() in words) for t in ex.tokens]) for ex in held.exemplars]
    r = pooled(indicator, [ex.activations for ex in held.exemplars], [ex.kind for ex in held.exemplars])
    train = store.train_exemplars(unit)
    return float(r), lookup_score(train, held, {token_key(w) for w in words})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--units", default="")
    ap.add_argument("--n", type=int, default=6, help="units picked by peak z-score when --units is not given")
    ap.add_argument("--simulators", default="keyword,prompted:gemma-3-270m",
                    help="comma list of specs; SPEC+int8 runs a fine-tuned one with quantize=int8")
    ap.add_argument("--split", default="valid", choices=("valid", "test"), help="held-out split scored")
    args = ap.parse_args()
    store = ExemplarStore.open(args.store)
    if args.units:
        units = parse_units(args.units)
    else:  # sparse, strongly peaked units: the ones with a recognisable trigger
        cands = []
        for layer in store.layers:
            st, idx = store.layer_stats(layer), store.layer_units(layer)
            z = (st["max"] - st["mean"]) / np.maximum(st["std"], 1e-6)
            cands += [(z[i], UnitId(layer, int(idx[i]))) for i in range(len(idx))]
        units = [u for _, u in sorted(cands, reverse=True)[: args.n]]
    words = {u: peak_words(store, u) for u in units}
    explanations = {u: word_list(words[u]) for u in units}
    rotated = {u: explanations[units[(i + 1) % len(units)]] for i, u in enumerate(units)}
    held = {u: HeldOut.from_store(store, u, args.split) for u in units}
    print(f"{'unit':>8}  {'simulator':<24} {'matched':>8} {'mismatched':>10}  explanation")
    summary = {}
    for spec in args.simulators.split(","):
        name, *suffixes = spec.split("+")  # finetuned:A+int8: with quantize=int8
        if set(suffixes) - set(SIMULATOR_OPTIONS):
            ap.error(f"--simulators {spec}: the options after + are {', '.join(SIMULATOR_OPTIONS)}")
        sim = build_simulator(simulator_config(name, set(suffixes)))
        diffs = []
        for u in units:
            by = {s.explanation: s.value for s in score(sim, [explanations[u], rotated[u]], held[u])}
            diffs.append((by[explanations[u]], by[rotated[u]]))
            print(f"{str(u):>8}  {spec:<24} {diffs[-1][0]:>8.3f} {diffs[-1][1]:>10.3f}  {explanations[u]}")
        summary[spec] = np.mean(diffs, axis=0)
    readings = [exact_readings(store, u, words[u], held[u]) for u in units]
    for u, (indicator, lookup) in zip(units, readings):
        print(f"{str(u):>8}  {'own list read exactly':<24} {indicator:>8.3f} {lookup:>10.3f}  (indicator, mean "
              "train activations)")
    exact = np.mean(readings, axis=0)
    print()
    for spec, (m, mm) in summary.items():
        print(f"mean over {len(units)} units ({args.split})  {spec:<24} matched {m:.3f}  mismatched {mm:.3f}  "
              f"gap {m - mm:+.3f}")
    print(f"mean over {len(units)} units ({args.split})  own list read exactly (no simulator): as an indicator "
          f"{exact[0]:.3f}, at the words' mean train activations {exact[1]:.3f}")


if __name__ == "__main__":
    main()
