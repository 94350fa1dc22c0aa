"""What limits the statistical word lists' score? A ladder from the data to the simulator, on the test split.

    python experiments/limits.py --store experiments/work/quality/store \
        --depths experiments/results/tier-longest/depths.json --variant 5 --out experiments/results/limits-dev

Issue 15 asks, where a target is unmet, to show with numbers what limits it: the explainer, the simulator or the
data. For each neuron of an ``experiments/tier_depth.py`` run, the statistical explainer's chosen explanations at
``--variant`` are taken as they are and five test correlations are computed, each asking less of the reader than
the one below it:

- **previous token and token**: a lookup table of every (previous token, token) pair's mean train activation,
  the token's own where the pair occurs fewer than twice in train (what the nearest context adds to token
  identity: the most an explanation of the form "X after Y" could add to word lists);
- **all tokens**: a lookup table of every token's mean train activation (what token identity alone carries, the
  most any word list could reach);
- **named tokens**: the same lookup restricted to the tokens the variant's deepest tier set can name and the
  negative list's candidates, every other token at one level (``tier_depth.py``'s ceiling);
- **tier levels**: the chosen set read perfectly: each listed token at its list's mean train activation (a token
  in two lists: the first), every other token at the mean of the rest;
- **simulator**: the chosen set as the simulator reads it (the run's own test score).

previous token and token - all tokens is what the nearest context adds, all tokens - named tokens what naming at
most that many tokens costs, named tokens - tier levels what the chosen grading (a few levels instead of one per
token) costs, tier levels - simulator what the simulator's reading costs. The naming cost is split in turn: the
lookup of every token the ranking could name at any depth (seen twice or more in train), then with the whitespace
tokens (line breaks, indentation: no quoted list names them), and the rest is what the tokens seen once in train
add (the all-tokens rung). Also, per kind of token (``list_recall.token_class``), what leaving that kind out of the
named tokens would cost: the most a better reading of that kind could gain. No simulator is loaded; train data
builds every table and test data scores it. Writes ``OUT/limits.json`` and ``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from list_recall import CLASSES, token_class  # noqa: E402
from paper_analysis import _pm, mean_se  # noqa: E402
from quality import lookup_score  # noqa: E402
from tier_depth import nameable, named, variant  # noqa: E402

from ns_dspy.agents.evidence import token_key  # noqa: E402
from ns_dspy.agents.list_edits import parse_word_list  # noqa: E402
from ns_dspy.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from ns_dspy.exemplars import ExemplarStore  # noqa: E402
from ns_dspy.scoring import HeldOut  # noqa: E402
from ns_dspy.scoring.correlation import pooled  # noqa: E402
from ns_dspy.types import parse_units  # noqa: E402

RUNGS = ("previous token and token", "all tokens", "named tokens", "tier levels", "simulator")


def context_lookup(train, test, min_count: int = 2) -> float:
    """Test r of a lookup of each (previous token, token) pair's mean train activation, backing off to the
    token's mean (then the global mean) where the pair was seen fewer than ``min_count`` times in train."""
    sums: Counter = Counter()
    counts: Counter = Counter()
    for ex in train:
        keys = [token_key(t) for t in ex.tokens]
        for i, (key, act) in enumerate(zip(keys, ex.activations)):
            for k in (key, (keys[i - 1] if i else None, key)):
                sums[k] += float(act)
                counts[k] += 1
    default = sum(v for k, v in sums.items() if isinstance(k, str)) / max(
        sum(v for k, v in counts.items() if isinstance(k, str)), 1)

    def level(keys, i):
        pair = (keys[i - 1] if i else None, keys[i])
        if counts[pair] >= min_count:
            return sums[pair] / counts[pair]
        return sums[keys[i]] / counts[keys[i]] if counts[keys[i]] else default

    preds = []
    for ex in test.exemplars:
        keys = [token_key(t) for t in ex.tokens]
        preds.append(np.array([level(keys, i) for i in range(len(keys))], np.float32))
    return float(pooled(preds, [ex.activations for ex in test.exemplars], [ex.kind for ex in test.exemplars]).r)


def list_groups(explanations: list[str]) -> dict[str, int]:
    """Each token key a word list among ``explanations`` names -> the index of the first list naming it."""
    group: dict[str, int] = {}
    for i, parsed in enumerate(parse_word_list(e) for e in explanations):
        for tok in parsed[1] if parsed else []:
            group.setdefault(token_key(tok), i)
    return group


def tier_levels(explanations: list[str], train, test, classes=frozenset(), words: dict[str, str] | None = None,
                pairs=()) -> float:
    """Test r of the explanations read perfectly: each listed token at its list's mean train activation. With
    ``classes`` (word-class names) and ``words`` (a lexicon ``{token key: class}``), an unlisted token of one of
    those classes at its class's mean train activation (``experiments/word_classes.py``). With ``pairs``
    ((previous token key, token key) tuples), a token right after its pair's first token at the pair's mean train
    activation, whatever else it is (``experiments/context_pairs.py``)."""
    group = list_groups(explanations)
    pairs = set(pairs)

    def labels(ex) -> list:
        keys = [token_key(t) for t in ex.tokens]
        out = []
        for i, key in enumerate(keys):
            pair = (keys[i - 1] if i else None, key)
            if pair in pairs:
                out.append(("pair", pair))
            elif key in group:
                out.append(group[key])
            else:
                name = (words or {}).get(key)
                out.append(name if name in classes else -1)
        return out

    sums: dict = {}
    counts: dict = {}
    for ex in train:
        for g, act in zip(labels(ex), ex.activations):
            sums[g], counts[g] = sums.get(g, 0.0) + float(act), counts.get(g, 0) + 1
    level = {g: sums[g] / counts[g] for g in sums}
    rest = level.get(-1, 0.0)
    preds = [np.array([level.get(g, rest) for g in labels(ex)], np.float32) for ex in test.exemplars]
    return float(pooled(preds, [ex.activations for ex in test.exemplars], [ex.kind for ex in test.exemplars]).r)


def ladder(store, unit, explanations: list[str], simulator_test: float, depth: int) -> dict:
    train = store.train_exemplars(unit)
    test = HeldOut.from_store(store, unit, "test")
    ranked, keep = nameable(train, named(depth))
    rungs = {"previous token and token": context_lookup(train, test), "all tokens": lookup_score(train, test),
             "named tokens": lookup_score(train, test, keep=keep),
             "tier levels": tier_levels(explanations, train, test), "simulator": simulator_test}
    seen = Counter(token_key(t) for ex in train for t in ex.tokens)
    deep = nameable(train, len(seen))[1]
    space = {k for k in seen if not k.strip()}
    naming = {"any depth": lookup_score(train, test, keep=deep),
              "any depth + whitespace": lookup_score(train, test, keep=deep | space)}
    kinds = {}
    for kind in CLASSES:
        mine = {row.key for row in ranked if token_class(row.token) == kind}
        if mine:
            kinds[kind] = {"share": len(mine) / len(ranked),
                           "loss": rungs["named tokens"] - lookup_score(train, test, keep=keep - mine)}
    return {"rungs": {k: float(v) for k, v in rungs.items()}, "naming": {k: float(v) for k, v in naming.items()},
            "kinds": kinds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--depths", required=True, help="depths.json of an experiments/tier_depth.py run")
    ap.add_argument("--variant", default="5", help="the run's variant whose choice is examined (default 5)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    path = Path(args.depths)
    if not path.is_file():
        ap.error(f"--depths: no such file {path}: give the depths.json an experiments/tier_depth.py run wrote")
    run = json.loads(path.read_text())
    neurons = {u: r[args.variant] for u, r in run["neurons"].items() if args.variant in r}
    if not neurons:
        ap.error(f"--variant {args.variant!r}: {path} has no neuron with it")
    depth = variant(args.variant)[0]
    store = ExemplarStore.open(args.store)
    command = "python experiments/limits.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    per = {u: ladder(store, parse_units(u)[0], r["explanations"], r["test"], depth) for u, r in neurons.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "limits.json", {"command": command, "depths": run.get("command"), "variant": args.variant,
                                            "simulator": run.get("simulator"), "neurons": per})
    col = {k: [p["rungs"][k] for p in per.values()] for k in RUNGS}
    lines = [f"# What limits the statistical word lists ({len(per)} neurons, test split)", "", f"`{command}`", "",
             f"Explanations: the statistical explainer's choice at variant {args.variant} of `{run.get('command')}` "
             f"(simulator `{run.get('simulator')}`). Each rung asks less of the reader than the one below it "
             "(mean +- standard error over neurons):", "",
             "| rung | test r | cost against the rung above |", "|---|---:|---:|"]
    for i, k in enumerate(RUNGS):
        cost = "" if i == 0 else _pm(*mean_se([a - b for a, b in zip(col[RUNGS[i - 1]], col[k])]))
        lines.append(f"| {k} | {_pm(*mean_se(col[k]))} | {cost} |")
    lines += ["", f"The naming cost split: the lookup of more tokens than the {named(depth)} the variant can name "
              "(mean +- standard error):", "", "| tokens in the lookup | test r |", "|---|---:|",
              f"| named by the variant ({named(depth)} and the negative candidates) | {_pm(*mean_se(col['named tokens']))} |"]
    for k in next(iter(per.values()))["naming"]:
        lines.append(f"| {k} | {_pm(*mean_se([p['naming'][k] for p in per.values()]))} |")
    lines.append(f"| every token (+ those seen once in train) | {_pm(*mean_se(col['all tokens']))} |")
    lines += ["", "Naming loss by kind of token: the named-token lookup without that kind's tokens (the most a better "
              "reading of that kind could add); share: of the tokens named.", "",
              "| kind | neurons | share named | loss |", "|---|---:|---:|---:|"]
    for kind in CLASSES:
        got = [p["kinds"][kind] for p in per.values() if kind in p["kinds"]]
        if got:
            lines.append(f"| {kind} | {len(got)} | {np.mean([g['share'] for g in got]):.2f} | "
                         f"{_pm(*mean_se([g['loss'] for g in got]))} |")
    lines += ["", "| neuron | " + " | ".join(RUNGS) + " |", "|---|" + "---:|" * len(RUNGS)]
    lines += [f"| {u} | " + " | ".join(f"{p['rungs'][k]:.3f}" for k in RUNGS) + " |" for u, p in per.items()]
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
