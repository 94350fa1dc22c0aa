"""How deep should the statistical explainer's tier lists go? A development experiment for issue 15, on the
development neurons of ``experiments/stats_styles.py`` only (never the evaluation neurons).

    python experiments/tier_depth.py --store experiments/work/quality/store \
        --out experiments/results/tier-depth [--neurons 12] [--depths 4,5,5/32]

For each depth ``d`` the statistical explainer (``ns-dspy explain --method stats``: single word lists, sets of
tier lists scored as unions calibrated on valid, a negative list when it helps on valid) runs with tier sets of
up to ``d`` tiers (first tier 1-4 tokens, each tier twice the one before: 4 tiers name up to 60 tokens, 5 up to
124; ``5/32``: five tiers, a tier of more than 32 tokens written as several lists of at most 32, which the
simulator reads with more recall); its choice is scored on test with the valid calibration. No simulator bounds
what the lists could reach: ``ceiling d`` is the test correlation of a token lookup table (each token's mean train
activation) restricted to the tokens the deepest set of depth ``d`` names and the 16 lowest (every other token at
one level, :func:`nameable`), as ``experiments/quality.py``'s lists-ceiling row. Results per neuron in ``OUT/depths.json`` (resumed on a rerun),
the table in ``OUT/summary.md``. Once a depth is chosen there, ``--evaluation --neurons LAYER:INDEX,...`` measures
the evaluation neurons the same way, once.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))

from paper_analysis import _pm, mean_se  # noqa: E402
from quality import lookup_score  # noqa: E402
from stats_styles import chosen_units, neuron_arguments  # noqa: E402

import ns_dspy.program as program_module  # noqa: E402
from ns_dspy.agents.evidence import (NEGATIVE_SIZES, RankedToken, ranked_tokens, tier_tokens,  # noqa: E402
                                     tiered_explanations)
from ns_dspy.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from ns_dspy.build import build_simulator  # noqa: E402
from ns_dspy.config import ExplainConfig, SimulatorConfig  # noqa: E402
from ns_dspy.exemplars import ExemplarStore  # noqa: E402
from ns_dspy.program import NeuronScope  # noqa: E402
from ns_dspy.scoring import HeldOut, polysemantic  # noqa: E402
from ns_dspy.types import UnitId  # noqa: E402


def tiers_to(depth: int) -> tuple[int, ...]:
    """The numbers of tiers a set may have at depth ``depth``: 2..``depth``."""
    return tuple(range(2, depth + 1))


def named(depth: int) -> int:
    """The most tokens a set of tier lists of at most ``depth`` tiers names."""
    return tier_tokens(tiers=tiers_to(depth))


def nameable(train, most: int) -> tuple[list[RankedToken], set[str]]:
    """The ``most`` tokens a tier set can name (ranked, train only) and the keys of those and of the negative
    list's candidates: what the ceiling's lookup keeps."""
    ranked = ranked_tokens(train, most=most)
    lows = {row.key for row in ranked_tokens(train, most=max(NEGATIVE_SIZES), lowest=True)}
    return ranked, {row.key for row in ranked} | lows


def variant(text: str) -> tuple[int, int | None]:
    """``"5"`` -> (5, None): five tiers, one list each; ``"5/32"`` -> (5, 32): no list longer than 32 tokens."""
    depth, _, longest = text.partition("/")
    return int(depth), int(longest) if longest else None


@contextlib.contextmanager
def depth_of(text: str):
    """The program's statistical explainer with tier sets of 2..``depth`` tiers, lists of at most ``longest``
    tokens (the variant ``text``; the program reads both names from its module when it runs)."""
    depth, longest = variant(text)
    saved = program_module.TIER_TOKENS, program_module.tiered_explanations
    program_module.TIER_TOKENS = named(depth)
    program_module.tiered_explanations = functools.partial(tiered_explanations, tiers=tiers_to(depth), longest=longest)
    try:
        yield
    finally:
        program_module.TIER_TOKENS, program_module.tiered_explanations = saved


def one(simulator, store, unit: UnitId, depths: list[str]) -> dict:
    train = store.train_exemplars(unit)
    valid, test = HeldOut.from_store(store, unit, "valid"), HeldOut.from_store(store, unit, "test")
    out = {}
    for depth in depths:
        start = time.perf_counter()
        with depth_of(depth):
            got = NeuronScope(simulator, None, ExplainConfig(method="stats"))(train=train, valid=valid)
        keep = nameable(train, named(variant(depth)[0]))[1]
        out[depth] = {"explanations": list(got.explanations), "valid": got.polysemantic,
                      "test": polysemantic(simulator, got.explanations, test, calibration=got.calibration).value,
                      "ceiling": lookup_score(train, test, keep=keep),
                      "seconds": round(time.perf_counter() - start, 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    neuron_arguments(ap)
    ap.add_argument("--depths", default="4,5", help="the tier depths compared, the first the reference; DEPTH/N: "
                    "no list longer than N tokens (a longer tier written as several lists)")
    ap.add_argument("--simulator", default="finetuned:gemma-3-270m")
    args = ap.parse_args(argv)
    depths = args.depths.split(",")
    try:
        parsed = [variant(d) for d in depths]
    except ValueError:
        ap.error(f"--depths: give DEPTH or DEPTH/N, comma-separated (got {args.depths!r})")
    if any(depth < 2 or (longest is not None and longest < 1) for depth, longest in parsed):
        ap.error("--depths: each depth is at least 2 and each longest list at least 1 token")
    store = ExemplarStore.open(args.store)
    units = chosen_units(ap, store, args.neurons, args.evaluation)
    out = Path(args.out)
    path = out / "depths.json"
    results = json.loads(path.read_text())["neurons"] if path.exists() else {}
    simulator = build_simulator(SimulatorConfig(args.simulator))
    command = "python experiments/tier_depth.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    for i, unit in enumerate(units, 1):
        have = results.get(str(unit), {})
        todo = [d for d in depths if d not in have]
        if todo:
            have.update(one(simulator, store, unit, todo))
            results[str(unit)] = have
            atomic_write_json(path, {"command": command, "simulator": args.simulator, "neurons": results})
        print(f"[{i}/{len(units)}] {unit}: " + ", ".join(
            f"depth {d} test {have[d]['test']:.3f} (ceiling {have[d]['ceiling']:.3f}, "
            f"{have[d]['seconds']:.0f} s)" for d in depths), flush=True)
    rows = {d: [results[str(u)][d] for u in units] for d in depths}
    kind = "evaluation" if args.evaluation else "development"
    lines = [f"# Tier depth of the statistical explainer ({len(units)} {kind} neurons)", "", f"`{command}`", "",
             f"Simulator `{args.simulator}`; the statistical explainer's choice at each depth, scored on test with "
             "its valid calibration (mean +- standard error over neurons); the ceiling is the lookup of the "
             "tokens the depth can name (no simulator); seconds: the first run of each variant, so a variant "
             "after the first finds the lists it shares with those before it in the simulation cache.", "",
             "| most tiers (/ longest list) | tokens named | valid | test | ceiling (lookup of those tokens) | "
             "seconds per neuron |", "|---:|---:|---:|---:|---:|---:|"]
    for d in depths:
        lines.append(f"| {d} | {named(variant(d)[0])} | {_pm(*mean_se([r['valid'] for r in rows[d]]))} | "
                     f"{_pm(*mean_se([r['test'] for r in rows[d]]))} | {_pm(*mean_se([r['ceiling'] for r in rows[d]]))} | "
                     f"{sum(r['seconds'] for r in rows[d]) / len(rows[d]):.0f} |")
    ref = depths[0]
    for d in depths[1:]:
        diff = [b["test"] - a["test"] for a, b in zip(rows[ref], rows[d])]
        vdiff = [b["valid"] - a["valid"] for a, b in zip(rows[ref], rows[d])]
        changed = sum(a["explanations"] != b["explanations"] for a, b in zip(rows[ref], rows[d]))
        lines += ["", f"Paired depth {d} - depth {ref}: test {_pm(*mean_se(diff))}, valid {_pm(*mean_se(vdiff))} "
                  f"over {len(diff)} neurons ({sum(x > 1e-9 for x in diff)} up, {sum(x < -1e-9 for x in diff)} down; "
                  f"another choice on {changed})."]
    lines += ["", "| neuron | " + " | ".join(f"depth {d} test (tiers chosen)" for d in depths) + " |",
              "|---|" + "---:|" * len(depths)]
    for u in units:
        r = results[str(u)]
        lines.append(f"| {u} | " + " | ".join(f"{r[d]['test']:.3f} ({len(r[d]['explanations'])})"
                                               for d in depths) + " |")
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
