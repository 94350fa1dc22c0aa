"""Context on real neurons: how much "the word Y right after X" adds to the statistical word lists if read exactly.

    python experiments/context_pairs.py --store experiments/work/quality/store \
        --depths experiments/results/tier-longest/depths.json,experiments/results/tier-depth-dev2/depths.json \
        --out experiments/results/context-pairs-ceiling

No simulator. For each neuron of ``experiments/tier_depth.py`` runs (the statistical explainer's choice at variant
5), on test: the chosen lists read perfectly (``limits.tier_levels``: each listed token at its list's mean train
activation) against the same plus up to ``--pairs`` (previous token, token) pairs, each read as "the token right
after that previous token": its occurrences there at the pair's mean train activation, every other occurrence as
the lists read it. Candidate pairs come from train only: seen at least ``--min-count`` times, ranked by how far
their summed train activation lies above what the lists give those occurrences; the best ``--candidates`` are
tried greedily on valid (each must raise valid r by 0.005). ``limits.py``'s top rung (every pair, read exactly)
is the most any number of pairs could add. Development neurons only. Writes ``OUT/context_pairs.json`` and
``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from limits import list_groups, tier_levels  # noqa: E402
from paper_analysis import paired_rows  # noqa: E402

from ns_dspy.agents.evidence import token_key  # noqa: E402
from ns_dspy.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from ns_dspy.exemplars import ExemplarStore  # noqa: E402
from ns_dspy.scoring import HeldOut  # noqa: E402
from ns_dspy.types import parse_units  # noqa: E402


def candidates(explanations: list[str], train, min_count: int, most: int) -> list[tuple]:
    """Pairs whose train occurrences sit furthest above what the lists read there (summed), seen >= min_count."""
    group = list_groups(explanations)
    sums: Counter = Counter()
    counts: Counter = Counter()
    pair_sum: Counter = Counter()
    pair_count: Counter = Counter()
    pair_group: dict = {}
    for ex in train:
        keys = [token_key(t) for t in ex.tokens]
        for i, (k, act) in enumerate(zip(keys, ex.activations)):
            g = group.get(k, -1)
            sums[g] += float(act)
            counts[g] += 1
            if i and k.strip():
                p = (keys[i - 1], k)
                pair_sum[p] += float(act)
                pair_count[p] += 1
                pair_group[p] = g
    level = {g: sums[g] / counts[g] for g in counts}
    gain = {p: pair_sum[p] - pair_count[p] * level[pair_group[p]] for p in pair_count if pair_count[p] >= min_count}
    return [p for p in sorted(gain, key=lambda p: (-gain[p], p)) if gain[p] > 0][:most]


def ceiling(store, unit, explanations: list[str], most: int, min_count: int, n_candidates: int) -> dict:
    train = store.train_exemplars(unit)
    valid, test = HeldOut.from_store(store, unit, "valid"), HeldOut.from_store(store, unit, "test")
    pool = candidates(explanations, train, min_count, n_candidates)
    chosen: list[tuple] = []
    best = tier_levels(explanations, train, valid)
    for _ in range(most):
        tried = [(tier_levels(explanations, train, valid, pairs=[*chosen, p]), p) for p in pool if p not in chosen]
        if not tried:
            break
        value, pair = max(tried, key=lambda x: x[0])
        if value < best + 0.005:
            break
        chosen.append(pair)
        best = value
    return {"lists": tier_levels(explanations, train, test), "pairs": [list(p) for p in chosen],
            "lists + pairs": tier_levels(explanations, train, test, pairs=chosen),
            "lists + first pair": tier_levels(explanations, train, test, pairs=chosen[:1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--depths", required=True, help="comma list of depths.json files of experiments/tier_depth.py runs")
    ap.add_argument("--pairs", type=int, default=3, help="at most this many pairs per neuron (default 3)")
    ap.add_argument("--min-count", type=int, default=3, help="a pair seen this often in train at least (default 3)")
    ap.add_argument("--candidates", type=int, default=10, help="candidate pairs tried on valid (default 10)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    store = ExemplarStore.open(args.store)
    command = "python experiments/context_pairs.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    per = {}
    for path in args.depths.split(","):
        run = json.loads(Path(path).read_text())
        for u, row in run["neurons"].items():
            if "5" in row:
                per[u] = ceiling(store, parse_units(u)[0], row["5"]["explanations"], args.pairs, args.min_count,
                                 args.candidates)
                print(u, {k: v for k, v in per[u].items()}, flush=True)
    keys = ("lists", "lists + first pair", "lists + pairs")
    lines = [f"# Context pairs read exactly ({len(per)} neurons, test split)", "", f"`{command}`", "",
             "| lookup | test r | paired - lists | up / down |", "|---|---:|---:|---:|"]
    lines += paired_rows(per, keys, "lists")
    lines += ["", "| neuron | lists | + pairs | pairs (previous, token) |", "|---|---:|---:|---|"]
    lines += [f"| {u} | {p['lists']:.3f} | {p['lists + pairs']:.3f} | "
              f"{', '.join(repr(tuple(x)) for x in p['pairs'])} |" for u, p in per.items()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "context_pairs.json", {"command": command, "neurons": per})
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
