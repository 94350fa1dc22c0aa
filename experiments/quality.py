"""Explanation quality on held-out real neurons, every method beside the simplest ones, on the same data.

    python experiments/quality.py --store STORE --out experiments/results/quality-gemma-3-270m \
        [--per-group 8] [--seed 0] [--exclude UNITS] [--lm-methods baseline,norefine,refine,seeded,compiled]
        [--lm-minutes M] [--program FILE]
        [--iterations 2] [--candidates 2] [--simulator finetuned:gemma-3-270m] [--truth FILE]

The same on synthetic units whose true description is known (``experiments/synthetic_store.py`` turns held-out
units of ``simulator_training`` into a store with a ``synthetic.json`` sidecar, found in the store or given with
``--truth``): every method runs unchanged, and a ``truth`` row is added (below).

Neurons: ``--per-group`` chosen by peak z-score ((max - mean) / std, the demo's choice) and as many by
activation frequency (the paper's choice), taken in turn from each layer of the store so that layers are spread;
units listed in ``--exclude`` (e.g. a compiled program's training neurons) are never chosen. The list is written
to ``OUT/neurons.json`` and reused on a rerun. On a synthetic store the groups are the sidecar's families
instead (the store is already a seeded, family-balanced choice): every unit of the store that the sidecar names,
or the first ``--per-group`` of each family (store order) when given; ``--exclude`` applies as well.

Methods, all scored by the same simulator on each neuron's test split (top and random windows pooled):

- ``stats``: the statistical explainer (``ns-dspy explain --method stats``): word lists of the tokens that
  carry the activation in the train windows, or sets of tier lists scored as a union calibrated on valid (a
  graded word list), the best on valid, with a list of the tokens where the activation is lowest added as a
  negative mode when that raises the valid score (``--negative``). No LM. ``stats-pos``: the same without the
  negative list (``--no-negative``); ``stats1``: single positive lists only (``--no-tiers --no-negative``).
- ``peak3``: ``the words "X", "Y" and "Z"``, the three commonest peak tokens of the train top windows.
- ``shuffled``: another chosen neuron's ``stats1`` explanation (a decoy: what an unrelated explanation scores).
- ``lists-ceiling``: not an explanation either: the same table restricted to the tokens the statistical
  explainer's lists can name (the 60 highest by shrunk mean, as many as its largest tier set, and the 16 lowest
  below zero, its longest negative list; 28 and 16 in runs before the four-tier sets), every other token at the
  train mean: what those lists would score if the simulator read each named token's exact mean, so the gap to
  ``stats`` is the simulator's reading and the gap to ``lookup`` what naming only those tokens leaves out.
- ``lookup``: not an explanation: each token's mean train activation used directly as the prediction (how much
  correlation token identity alone carries; no simulator involved).
- LM methods (``--lm-methods``): ``baseline`` (single pass, best of 4 on valid), ``norefine`` (NeuronScope
  without refinement), ``refine`` (NeuronScope) and ``seeded`` (NeuronScope whose refinement history starts
  with the statistical explanation too, ``--seed-stats``), through the same runner as ``ns-dspy explain``, with
  the given refinement schedule, neuron by neuron (every method on a neuron before the next); their run files
  in ``OUT/work/`` are resumed on a rerun (``--lm-minutes`` stops starting neurons after a budget), their
  per-neuron LM tokens and seconds are reported, and paired test differences over the neurons both methods
  finished. They run with ``--no-stats-modes``: the LM's own modes.
  ``compiled``: NeuronScope (as ``refine``) with a compiled program loaded (``--program``; default: the program
  packaged for ``--lm``, ``ns_dspy/programs/``); every other LM method runs uncompiled (``--program none``).
- ``hybrid`` (when ``refine`` ran): the ``refine`` run's modes with the statistical word lists (the ``stats``
  row) added when that raises the valid score (:func:`hybrid_row`); no further LM call. ``hybrid-compiled``
  (when ``compiled`` ran): the same from the ``compiled`` run's modes: NeuronScope's default with a packaged
  program.
- ``truth`` (synthetic stores only): the unit's true description, scored on test by the same simulator: the
  ceiling. When the unit has several true wordings, the best on valid is taken (never chosen on test). For
  each method the share of the ceiling reached is reported two ways, over the units where both scores exist
  and the truth's test score is > 0: the mean over units of method_test / truth_test (+- standard error; one
  unit's ratio can be large when its ceiling is small), and the ratio of the means
  (mean method_test / mean truth_test), separately for single-concept and two-concept units.

Writes ``OUT/quality.json`` (per neuron and method), ``OUT/summary.md`` (mean +- standard error per method and
per neuron group, with the exact command; on a synthetic store also per family, the shares of the ceiling and
the commands that rebuild the dataset and the store) and ``OUT/quality.png`` (every neuron's test score per method,
coloured by group, with the mean +- standard error; ``--plot-only`` redraws it from an existing
``OUT/quality.json``). Test data is only ever reported: every selection uses valid.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_analysis import _pm, mean_se  # noqa: E402

from ns_dspy.agents.evidence import NEGATIVE_SIZES, TIER_TOKENS, ranked_tokens, token_key, word_list  # noqa: E402
from ns_dspy.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from ns_dspy.config import OUR_LOGGERS, configure_logging  # noqa: E402
from ns_dspy.types import UnitId, parse_units  # noqa: E402

log = logging.getLogger("quality")

NO_LM = ("stats", "stats-pos", "stats1", "peak3", "shuffled", "lists-ceiling", "lookup")
TWO = "two-concept"  # the synthetic family of units with two concepts, reported apart from the single ones
LM_METHODS = {"baseline": dict(baseline=True, baseline_k=4), "norefine": dict(refine=False), "refine": {},
              "seeded": dict(seed_stats=True), "compiled": {}}
TITLES = {"lookup": "token lookup table (no simulator)",
          "lists-ceiling": f"lookup of the {TIER_TOKENS} highest and {max(NEGATIVE_SIZES)} lowest tokens only "
                           "(no simulator)",
          "shuffled": "another neuron's statistical explanation",
          "peak3": "three commonest peak tokens",
          "stats": "statistical explainer (no LM): a word list or tier lists, and a negative list when it helps",
          "stats-pos": "statistical explainer, positive lists only (--no-negative)",
          "stats1": "statistical explainer, one word list (--no-tiers --no-negative)",
          "baseline": "single-pass LM baseline", "norefine": "NeuronScope w/o refinement (LM modes only)",
          "refine": "NeuronScope, LM modes only (--no-stats-modes)",
          "seeded": "NeuronScope, refinement seeded with the statistical explanation (--seed-stats)",
          "hybrid": "NeuronScope with the statistical word lists as modes when they help on valid (uncompiled)",
          "compiled": "NeuronScope with the compiled program, LM modes only (--no-stats-modes)",
          "hybrid-compiled": "NeuronScope with the compiled program and the word lists when they help on valid",
          "truth": "true description (ceiling)"}


NO_LM_METHODS = ("lookup", "lists-ceiling", "shuffled", "peak3", "stats1", "stats-pos", "stats")
"""The rows every run has, in table order: the references without a simulator, the decoy, the statistical
explainers."""
METHOD_ORDER = (*NO_LM_METHODS, *LM_METHODS, "hybrid", "hybrid-compiled", "truth")
"""Rows of the chart, top to bottom: those above, the LM methods, NeuronScope's default and the ceiling."""
LABELS = {"lookup": "token lookup table (no simulator)", "lists-ceiling": "lookup of the listable tokens only",
          "shuffled": "another neuron's statistical explanation", "peak3": "three commonest peak tokens",
          "stats1": "statistical: one word list", "stats-pos": "statistical: positive lists",
          "stats": "statistical explainer (no LM)", "baseline": "single-pass LM baseline",
          "norefine": "NeuronScope w/o refinement (LM modes)", "refine": "NeuronScope, LM modes only",
          "seeded": "NeuronScope, seeded with the statistical one", "compiled": "NeuronScope, compiled, LM modes",
          "hybrid": "NeuronScope (default: + word lists)", "hybrid-compiled": "NeuronScope compiled (+ word lists)",
          "truth": "true description (ceiling)"}
"""Short row names for the chart (the table's are :data:`TITLES`)."""


def plot_quality(data: dict, path: Path, title: str = "") -> dict[str, tuple[float | None, float | None]]:
    """``quality.png`` from a ``quality.json``: one row per method (:data:`METHOD_ORDER`), each neuron's test score
    as a dot coloured by its group, the mean +- standard error as a black bar. Returns the rows drawn, top to
    bottom: method -> (mean, standard error)."""
    from paper_analysis import PALETTE, _plt, _save_png

    results, group_of = data["results"], data.get("group_of", {})
    methods = [m for m in METHOD_ORDER if any(row.get(m, {}).get("test") is not None for row in results.values())]
    groups = list(dict.fromkeys(group_of.get(u, "all") for u in results)) or ["all"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(methods) + 1.4))
    rng = np.random.default_rng(0)  # the vertical jitter of the dots only
    drawn: dict[str, tuple[float | None, float | None]] = {}
    for y, m in enumerate(reversed(methods)):
        for k, g in enumerate(groups):
            xs = [row[m]["test"] for u, row in results.items() if row.get(m, {}).get("test") is not None
                  and group_of.get(u, "all") == g]
            ax.scatter(xs, y + rng.uniform(-0.18, 0.18, len(xs)), s=14, alpha=0.7, color=PALETTE[k % len(PALETTE)],
                       label=g if y == 0 else None, zorder=2)
        mean, se = mean_se([row.get(m, {}).get("test") for row in results.values()])
        ax.errorbar([mean], [y], xerr=[[se or 0.0], [se or 0.0]], fmt="|", color="black", markersize=16, capsize=4,
                    zorder=3)
        drawn[m] = (mean, se)
    ax.set_yticks(range(len(methods)))
    ax.set_yticklabels([LABELS.get(m, m) for m in reversed(methods)], fontsize=8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("test score (Pearson r); bar: mean ± standard error over the neurons")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    if len(groups) > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="neurons", title_fontsize=7)
    _save_png(fig, path)
    return dict(reversed(drawn.items()))


def _plot_title(store: Path) -> str:
    return f"test score per neuron and method, store {store}"


def read_truth(store_path: str | Path, given: str | None) -> dict | None:
    """The synthetic sidecar: ``--truth FILE``, else ``STORE/synthetic.json`` when the store has one."""
    from synthetic_store import SIDECAR, read_sidecar

    path = Path(given) if given else Path(store_path) / SIDECAR
    if given and not path.is_file():
        raise SystemExit(f"--truth {given}: no such file")
    return read_sidecar(path) if path.is_file() else None


def group_order(truth: dict | None) -> list[str]:
    """The groups in report order: z-score then frequency, or the sidecar's families (two-concept last)."""
    if not truth:
        return ["z-score", "frequency"]
    return truth.get("selection", {}).get("families") or sorted({v["family"] for v in truth["units"].values()},
                                                                key=lambda f: (f == TWO, f))


def hybrid_row(simulator, store, unit, refine: dict, stats: dict) -> dict:
    """NeuronScope's default (``stats_modes``) from the ``refine`` run's modes and the ``stats`` run's word lists
    of the same neuron, by the function the program calls (:func:`ns_dspy.program.with_statistical`): the best
    on valid of the LM's modes, both together and the word lists alone, scored on test with its valid
    calibration. The same as running the program with ``stats_modes`` on, whose LM calls would be the same."""
    from ns_dspy.program import with_statistical
    from ns_dspy.scoring import HeldOut, polysemantic

    valid, test = HeldOut.from_store(store, unit, "valid"), HeldOut.from_store(store, unit, "test")
    lm, lists = refine["explanations"], stats["explanations"]
    lm_score = polysemantic(simulator, lm, valid, calibration=valid)
    stats_score = polysemantic(simulator, lists, valid, calibration=valid)
    chosen, best = with_statistical(simulator, valid, lm, lm_score, lists, stats_score)
    return {"explanations": chosen, "valid": best.value,  # test: the chosen set's final maps, fitted on valid
            "test": polysemantic(simulator, chosen, test, calibration=valid).value,
            "number": len(chosen), "lm_modes": sum(e in lm for e in chosen), "lists": sum(e not in lm for e in chosen),
            "lm_tokens": refine.get("lm_tokens"), "seconds": (refine.get("seconds") or 0) + (stats.get("seconds") or 0)}


def choose_synthetic(store, truth: dict, per_group: int | None, exclude: set[UnitId]) -> dict[str, list[UnitId]]:
    """The store's units that the sidecar names, grouped by family (single families first, then two-concept), in
    store order; the first ``per_group`` of each when given."""
    info = {UnitId.parse(k): v for k, v in truth["units"].items()}
    order = group_order(truth)
    groups: dict[str, list[UnitId]] = {f: [] for f in order}
    for unit in store.units():
        if unit in info and unit not in exclude:
            family = groups.setdefault(info[unit]["family"], [])
            if per_group is None or len(family) < per_group:
                family.append(unit)
    return {f: us for f, us in groups.items() if us}


def truth_score(simulator, explanations: list[str], valid, test) -> dict:
    """The true description's test score; among several true wordings the best on valid."""
    from ns_dspy.scoring import report, select

    texts = list(dict.fromkeys(e for e in explanations if e and e.strip()))
    best = select(simulator, texts, valid)[0]
    return {"explanation": best.explanation, "valid": best.value,
            "test": report(simulator, best.explanation, test).value, "candidates": len(texts)}


def shares(results: dict[str, dict], units: list[UnitId], method: str) -> dict:
    """Share of the ceiling reached by ``method`` on ``units`` (those with both scores and truth test > 0): the
    mean over units of method / truth (+- standard error) and the ratio of the means."""
    pairs = [(r[method]["test"], r["truth"]["test"]) for r in (results[str(u)] for u in units)
             if r.get(method, {}).get("test") is not None and r.get("truth", {}).get("test") is not None
             and r["truth"]["test"] > 0]
    mean, se = mean_se([m / t for m, t in pairs])
    of_means = sum(m for m, _ in pairs) / sum(t for _, t in pairs) if pairs else None
    return {"mean_ratio": mean, "mean_ratio_se": se, "ratio_of_means": of_means, "units": len(pairs)}


def synthetic_notes(truth: dict) -> list[str]:
    """Where a synthetic store came from and how to rebuild it, from its sidecar."""
    settings, checks = truth.get("dataset_settings") or {}, truth.get("checks") or {}
    lines = ["Synthetic units: the held-out (`valid`) units of the simulator_training dataset "
             f"`{truth.get('dataset', '?')}` (seed {settings.get('seed')}, valid share {settings.get('valid_share')}), "
             f"a family-balanced seeded choice ({truth.get('selection', {})}). Rebuilt by:", "",
             f"    ns-dspy-train-simulator build-data --out {truth.get('dataset', 'DATA')} "
             f"--seed {settings.get('seed')} --valid-share {settings.get('valid_share')}",
             f"    {truth.get('command') or '(store command not recorded)'}",
             ""]
    held = checks.get("held_out_of")
    if held:
        lines.append(f"Held out of the simulator's training data: the dataset's seed, unit and exemplar counts and "
                     f"tokenizer {'equal' if held.get('same') else 'DIFFER from'} those recorded in "
                     f"`{held.get('simulator_dir')}` (`ns_dspy_simulator.json`)"
                     f"{'' if held.get('same') else ': ' + json.dumps(held.get('differences'))}.")
    overlap = checks.get("text_overlap")
    if overlap:
        grams = [k for k in overlap if k.endswith("-grams")]
        lines.append(f"Text overlap with the training units' windows: {overlap['windows_in_train']} of "
                     f"{overlap['windows']} windows" + "".join(f", {overlap[k + '_in_train']} of {overlap[k]} "
                                                                f"{k.split('-')[0]}-token runs" for k in grams) + ".")
    return lines + [""]


def _share_cell(share: dict) -> str:
    if not share["units"]:
        return "-"
    return f"{_pm(share['mean_ratio'], share['mean_ratio_se'], 2)} / {share['ratio_of_means']:.2f} ({share['units']})"


def round_robin(groups: list[list]) -> list:
    """The groups' items taking turns: the first of each group, then the second of each, ..."""
    return [g[i] for i in range(max(map(len, groups), default=0)) for g in groups if i < len(g)]


def choose(store, per_group: int, exclude: set[UnitId]) -> dict[str, list[UnitId]]:
    """``per_group`` units by peak z-score and as many by frequency, round-robin over the store's layers."""
    ranked: dict[str, dict[int, list[UnitId]]] = {"z-score": {}, "frequency": {}}
    for layer in store.layers:
        st, idx = store.layer_stats(layer), store.layer_units(layer)
        ones = np.ones(len(idx))
        z = (st["max"] - st.get("mean", 0 * ones)) / np.maximum(st.get("std", ones), 1e-6)
        for group, key in (("z-score", z), ("frequency", st.get("frequency", 0 * ones))):
            order = np.lexsort((idx, -key))
            ranked[group][layer] = [UnitId(layer, int(idx[i])) for i in order]
    chosen: dict[str, list[UnitId]] = {}
    taken = set(exclude)
    for group, by_layer in ranked.items():
        picks, pos = [], {layer: 0 for layer in by_layer}
        while len(picks) < per_group and any(pos[layer] < len(by_layer[layer]) for layer in by_layer):
            for layer in sorted(by_layer):
                if len(picks) == per_group:
                    break
                units = by_layer[layer]
                while pos[layer] < len(units) and units[pos[layer]] in taken:
                    pos[layer] += 1
                if pos[layer] < len(units):
                    picks.append(units[pos[layer]])
                    taken.add(units[pos[layer]])
                    pos[layer] += 1
        chosen[group] = picks
    return chosen


def lookup_score(train, test, keep: set[str] | None = None) -> float:
    """Pooled Pearson r of a per-token lookup table (mean train activation of each token, the global train mean
    for unseen tokens) against the test activations; with ``keep`` (token keys), every other token at the
    mean of the train tokens not kept."""
    from ns_dspy.scoring.correlation import pooled

    sums, counts = Counter(), Counter()
    for ex in train:
        for tok, act in zip(ex.tokens, ex.activations):
            sums[token_key(tok)] += float(act)
            counts[token_key(tok)] += 1
    default = sum(sums.values()) / max(sum(counts.values()), 1)
    if keep is not None:  # every other token at the mean over the train tokens not kept
        rest = [k for k in counts if k not in keep]
        default = sum(sums[k] for k in rest) / max(sum(counts[k] for k in rest), 1)
    preds = [np.array([sums[token_key(t)] / counts[token_key(t)]
                       if counts[token_key(t)] and (keep is None or token_key(t) in keep) else default
                       for t in ex.tokens], np.float32) for ex in test.exemplars]
    return pooled(preds, [ex.activations for ex in test.exemplars], [ex.kind for ex in test.exemplars]).r


def peak_tokens(top, n: int = 3) -> list[str]:
    counts, first = Counter(), {}
    for ex in top:
        if ex.max_activation > 0:
            tok = ex.tokens[int(np.argmax(ex.activations))]
            key = token_key(tok)
            counts[key] += 1
            first.setdefault(key, (tok.strip() or tok).replace('"', "'"))
    return [first[k] for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], list(first).index(kv[0])))[:n]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="an exemplar store (e.g. ns-dspy record --out ...)")
    parser.add_argument("--out", required=True, help="results folder (OUT/work holds the run files, not committed)")
    parser.add_argument("--per-group", type=int, default=None, help="neurons by z-score and by frequency (default 8); "
                        "on a synthetic store, units per family (default: all)")
    parser.add_argument("--exclude", default="", help="LAYER:INDEX units never chosen (e.g. compile's neurons)")
    parser.add_argument("--lm-methods", default="", help="comma list of baseline, norefine, refine, seeded, compiled "
                                                         "(default: none)")
    parser.add_argument("--program", default="default", help="the compiled program of the compiled method (default: "
                                                            "the one packaged for --lm)")
    parser.add_argument("--lm", default="local:qwen2.5-coder-1.5b-instruct", help="explainer LM")
    parser.add_argument("--simulator", default="finetuned:gemma-3-270m", help="simulator spec")
    parser.add_argument("--iterations", type=int, default=2, help="refinement iterations (default 2)")
    parser.add_argument("--candidates", type=int, default=2, help="refinement candidates (default 2)")
    parser.add_argument("--max-exemplars", type=int, default=10, help="top exemplars shown (default 10)")
    parser.add_argument("--lm-minutes", type=float, default=None,
                        help="start no new neuron's LM methods after this many minutes (a rerun resumes)")
    parser.add_argument("--truth", help="synthetic sidecar with each unit's true explanations (default: "
                        "STORE/synthetic.json when present; experiments/synthetic_store.py writes it)")
    parser.add_argument("--plot-only", action="store_true", help="only redraw OUT/quality.png from OUT/quality.json")
    args = parser.parse_args(argv)
    if args.plot_only:
        made = Path(args.out) / "quality.json"
        if not made.is_file():
            raise SystemExit(f"quality.py: {made} does not exist: run without --plot-only first")
        plot_quality(json.loads(made.read_text()), made.with_name("quality.png"), _plot_title(Path(args.store)))
        return 0
    configure_logging(ours=(*OUR_LOGGERS, "quality"))
    command = "python experiments/quality.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))

    from ns_dspy.build import build_program
    from ns_dspy.config import ExplainConfig, LMConfig, RunConfig, SimulatorConfig
    from ns_dspy.exemplars import ExemplarStore
    from ns_dspy.runs import RunStore
    from ns_dspy.runs.runner import explain_units
    from ns_dspy.scoring import HeldOut, report, select

    lm_methods = [m for m in args.lm_methods.split(",") if m]
    compiled_program = None
    if "compiled" in lm_methods:  # checked before anything is written
        compiled_program = RunConfig(explain=ExplainConfig(), lm=LMConfig(args.lm), program=args.program).program_path()
        if compiled_program is None:
            raise SystemExit(f"quality.py: no compiled program for --lm {args.lm}: pass --program FILE")
    unknown = [m for m in lm_methods if m not in LM_METHODS]
    if unknown:
        parser.error(f"unknown LM method {unknown[0]!r}: use {', '.join(LM_METHODS)}")
    out = Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    store = ExemplarStore.open(args.store)
    truth = read_truth(args.store, args.truth)
    listed = out / "neurons.json"
    if listed.is_file():
        groups = {g: parse_units(",".join(us)) if us else [] for g, us in json.loads(listed.read_text()).items()}
        order = group_order(truth)  # the file's keys are sorted: restore the order (it fixes the decoys)
        groups = dict(sorted(groups.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    else:
        exclude = set(parse_units(args.exclude)) if args.exclude else set()
        groups = choose_synthetic(store, truth, args.per_group, exclude) if truth else \
            choose(store, 8 if args.per_group is None else args.per_group, exclude)
        atomic_write_json(listed, {g: [str(u) for u in us] for g, us in groups.items()})
    units = [u for us in groups.values() for u in us]
    group_of = {u: g for g, us in groups.items() for u in us}
    settings = dict(max_exemplars=args.max_exemplars, iterations=args.iterations, candidates=args.candidates)
    first = ExplainConfig(**settings, **LM_METHODS[lm_methods[0]]) if lm_methods else ExplainConfig(method="stats")
    # one simulator (and LM, embedder) for every method; uncompiled but for the compiled method
    built = build_program(RunConfig(explain=first, lm=LMConfig(args.lm), simulator=SimulatorConfig(args.simulator),
                                    program="none"))
    simulator = built.simulator
    results: dict[str, dict[str, dict]] = {str(u): {} for u in units}
    try:
        start = time.perf_counter()
        where = {"store": str(Path(args.store).resolve()), "simulator": args.simulator, "method": "stats"}
        records, stats_text = {}, {}
        # the single-list file is older than the tiers, the tiers' older than the negative lists
        for name, tiers, negative, file, identity in (
                ("stats1", False, False, "stats.sqlite", where),
                ("stats-pos", True, False, "stats-tiers.sqlite", {**where, "tiers": True}),
                ("stats", True, True, "stats-negative.sqlite", {**where, "tiers": True, "negative": True})):
            run = RunStore(work / file, identity)
            program = built.program_for(ExplainConfig(method="stats", tiers=tiers, negative=negative, **settings))
            records[name] = {r.unit: r for r in explain_units(program, store, units, run, None, progress=True)}
        log.info("statistical explainers: %d neurons in %.0f s", len(units), time.perf_counter() - start)
        # the decoy row: another neuron's single word list (as before tiers)
        stats_text = {u: records["stats1"][u].typed_trace.finals[0].explanation for u in units
                      if records["stats1"][u].status == "done" and records["stats1"][u].typed_trace.finals}
        for i, unit in enumerate(units):
            row = results[str(unit)]
            test = HeldOut.from_store(store, unit, "test")
            valid = HeldOut.from_store(store, unit, "valid")
            top = store.exemplars(unit, "train", "top")
            train = top + store.exemplars(unit, "train", "random")
            row["lookup"] = {"test": lookup_score(train, test)}
            nameable = {r.key for r in ranked_tokens(train, most=TIER_TOKENS)
                        + ranked_tokens(train, most=max(NEGATIVE_SIZES), lowest=True)}
            row["lists-ceiling"] = {"test": lookup_score(train, test, nameable)}
            for name in ("stats1", "stats-pos", "stats"):
                rec = records[name][unit]
                if rec.status == "done":
                    row[name] = {"explanations": [f.explanation for f in rec.typed_trace.finals],
                                 "valid": rec.score_valid, "test": rec.score_test, "number": rec.number,
                                 "lm_tokens": 0, "seconds": rec.seconds}
            peaks = peak_tokens(top)
            if peaks:
                text = word_list(peaks)
                row["peak3"] = {"explanation": text, "valid": select(simulator, [text], valid)[0].value,
                                "test": report(simulator, text, test).value}
            if truth and str(unit) in truth["units"]:
                row["truth"] = truth_score(simulator, truth["units"][str(unit)]["explanations"], valid, test)
            others = [u for u in units[i + 1:] + units[:i] if u in stats_text and stats_text[u] != stats_text.get(unit)]
            if others:
                decoy = stats_text[others[0]]
                row["shuffled"] = {"explanation": decoy, "from": str(others[0]),
                                   "test": report(simulator, decoy, test).value}
        if lm_methods:
            runs, programs = {}, {}
            for mode in lm_methods:
                # --no-tiers: the seeds (seeded) and each trace's statistical row are the single word list, as when
                # these runs began; the statistical rows of the table are their own runs above
                # --no-stats-modes: these rows are the LM's own modes; ``hybrid`` adds the word lists below
                config = ExplainConfig(**settings, **{"tiers": False, "stats_modes": False, "negative": False,
                                                      **LM_METHODS[mode]})
                provenance = {"explain": config.to_dict(), "lm": args.lm, "simulator": args.simulator,
                              "store": str(Path(args.store).resolve())}
                source = built
                if mode == "compiled":
                    from ns_dspy.optimize import read_manifest

                    provenance["program_state"] = read_manifest(compiled_program)["state_sha256"]
                    source = dataclasses.replace(built, config=built.config.replace(program=str(compiled_program)))
                older = [{**provenance, "explain": {k: v for k, v in config.to_dict().items() if k not in drop}}
                         for drop in (("negative",), ("stats_modes", "negative"),
                                      ("stats_modes", "tiers", "negative"))]  # files made before those options
                runs[mode] = RunStore(work / f"{mode}.sqlite", provenance, legacy=older)
                programs[mode] = source.program_for(config)
            # neuron by neuron, every method on it before the next: a run stopped part way has paired rows.
            # --lm-minutes: no new neuron is started after that long; the table then shows what is done. The groups
            # take turns (the first of each, then the second, ...), so a run stopped part way covers every group
            lm_start = time.perf_counter()
            for i, unit in enumerate(round_robin(list(groups.values())), 1):
                if args.lm_minutes is not None and time.perf_counter() - lm_start > 60 * args.lm_minutes:
                    log.info("--lm-minutes %s reached: the table shows the neurons done so far", args.lm_minutes)
                    break
                for mode in lm_methods:
                    if unit not in runs[mode].done():
                        log.info("[%d/%d] %s: %s", i, len(units), unit, mode)
                        explain_units(programs[mode], store, [unit], runs[mode], built.lm, progress=False)
            wanted = set(units)
            for mode in lm_methods:
                for rec in runs[mode].records():
                    if rec.unit not in wanted:
                        continue
                    if rec.status == "done":
                        results[str(rec.unit)][mode] = {
                            "explanations": [f.explanation for f in rec.typed_trace.finals],
                            "valid": rec.score_valid, "test": rec.score_test, "number": rec.number,
                            "lm_tokens": rec.lm_tokens, "seconds": rec.seconds}
                    else:
                        results[str(rec.unit)][mode] = {"error": rec.error, "lm_tokens": rec.lm_tokens,
                                                        "seconds": rec.seconds}
        for lm_mode, name in (("refine", "hybrid"), ("compiled", "hybrid-compiled")):
            if lm_mode not in lm_methods:
                continue
            for unit in units:
                row = results[str(unit)]
                if row.get(lm_mode, {}).get("test") is not None and row.get("stats", {}).get("test") is not None:
                    row[name] = hybrid_row(simulator, store, unit, row[lm_mode], row["stats"])
    finally:
        built.close()
    hybrid = [h for h in ("hybrid", "hybrid-compiled") if any(h in r for r in results.values())]
    methods = [*NO_LM_METHODS, *lm_methods, *hybrid] + (["truth"] if truth else [])
    if truth:
        family_of = {u: truth["units"][str(u)]["family"] for u in units if str(u) in truth["units"]}
        columns = {"single": [u for u in units if family_of.get(u) != TWO],
                   TWO: [u for u in units if family_of.get(u) == TWO]}
        what = f"held-out synthetic units ({store.manifest.get('model', {}).get('name', '?')} tokens)"
    else:
        columns = {"z-score group": groups.get("z-score", []), "frequency group": groups.get("frequency", [])}
        what = f"held-out neurons of {store.manifest.get('model', {}).get('name', '?')}"
    lines = [f"# Explanation quality on {len(units)} {what}",
             "", f"Command: `{command}`", "", f"Store: `{args.store}` ({store.describe().splitlines()[0]}); "
             f"simulator `{args.simulator}`; scores are pooled Pearson r on each neuron's test split.", "",
             *(synthetic_notes(truth) if truth else []),
             *(["Windows per unit (top + random, mean): " + ", ".join(
                 f"{sp} {np.mean([sum(len(store.exemplars(u, sp, k)) for k in ('top', 'random')) for u in units]):.1f}"
                 for sp in ("train", "valid", "test")) + ".", ""] if truth else []),
             f"| method | all: test | {' | '.join(f'{c}: test' if truth else c for c in columns)} | Number | "
             "LM tokens / neuron | s / neuron | done |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    summary = {}
    for m in methods:
        cells = [results[str(u)].get(m, {}) for u in units]
        done = [c for c in cells if c.get("test") is not None]
        by_group = {g: mean_se([results[str(u)].get(m, {}).get("test") for u in us]) for g, us in groups.items()}
        by_column = {c: mean_se([results[str(u)].get(m, {}).get("test") for u in us]) for c, us in columns.items()}
        everyone = mean_se([c["test"] for c in done])
        number, _ = mean_se([c.get("number") for c in done])
        tokens, _ = mean_se([c.get("lm_tokens") for c in cells if "lm_tokens" in c])
        seconds, _ = mean_se([c.get("seconds") for c in cells if "seconds" in c])
        summary[m] = {"test": everyone[0], "test_se": everyone[1], "groups": by_group, "columns": by_column,
                      "done": len(done)}
        if truth:
            summary[m]["share_of_truth"] = {c: shares(results, us, m) for c, us in
                                            (("all", units), *columns.items())}
        lines.append(f"| {TITLES[m]} | {_pm(*everyone)} | "
                     f"{' | '.join(_pm(*by_column[c]) for c in columns)} | "
                     f"{'-' if number is None else f'{number:.2f}'} | {'-' if tokens is None else f'{tokens:,.0f}'} | "
                     f"{'-' if seconds is None else f'{seconds:.0f}'} | {len(done)} of {len(units)} |")
    pairs = [(a, b) for a, b in (("stats", "stats-pos"), ("stats-pos", "stats1"), ("refine", "norefine"), ("refine", "stats"), ("norefine", "stats"),
                                 ("seeded", "refine"), ("seeded", "stats"), ("baseline", "stats"), ("hybrid", "stats"),
                                 ("hybrid", "refine"), ("compiled", "refine"), ("hybrid-compiled", "hybrid"),
                                 ("hybrid-compiled", "stats")) if a in methods and b in methods]
    paired_rows = []
    for a, b in pairs:
        both = [u for u in units if results[str(u)].get(a, {}).get("test") is not None
                and results[str(u)].get(b, {}).get("test") is not None]
        if both:
            diff = mean_se([results[str(u)][a]["test"] - results[str(u)][b]["test"] for u in both])
            summary.setdefault("paired", {})[f"{a}-{b}"] = {"test": diff[0], "test_se": diff[1], "neurons": len(both)}
            paired_rows.append(f"| {TITLES[a]} - {TITLES[b]} | {_pm(*diff)} | {len(both)} |")
    rows = [results[str(u)]["hybrid"] for u in units if "hybrid" in results[str(u)]]
    if rows:
        kept = sum(r["lm_modes"] > 0 for r in rows)
        added = sum(r["lists"] > 0 for r in rows)
        summary["hybrid_makeup"] = {"neurons": len(rows), "with_lm_modes": kept, "with_word_lists": added,
                                    "lm_modes_only": sum(r["lists"] == 0 for r in rows),
                                    "word_lists_only": sum(r["lm_modes"] == 0 for r in rows)}
        lines += ["", f"The default's explanation sets: the LM's modes alone in "
                  f"{summary['hybrid_makeup']['lm_modes_only']}, the word lists alone in "
                  f"{summary['hybrid_makeup']['word_lists_only']}, both in {kept + added - len(rows)} of "
                  f"{len(rows)} neurons (chosen on valid)."]
    if paired_rows:
        lines += ["", "Paired test differences, over the neurons where both methods finished:", "",
                  "| difference | test | neurons |", "|---|---:|---:|", *paired_rows]
    if truth:
        lines += ["", "Share of the ceiling (the true description's test score), over the units where both scores "
                  "exist and the truth scores > 0: mean over units of method / truth ± standard error / ratio of the "
                  "means (mean method / mean truth) (units):", "",
                  "| method | all | single | two-concept |", "|---|---:|---:|---:|"]
        for m in methods:
            share = summary[m]["share_of_truth"]
            lines.append(f"| {TITLES[m]} | {_share_cell(share['all'])} | {_share_cell(share['single'])} | "
                         f"{_share_cell(share[TWO])} |")
        lines += ["", "Mean test score per family (± standard error):", "",
                  "| method | " + " | ".join(f"{g} ({len(us)})" for g, us in groups.items()) + " |",
                  "|---|" + "---:|" * len(groups)]
        for m in methods:
            lines.append(f"| {TITLES[m]} | " + " | ".join(_pm(*summary[m]["groups"][g]) for g in groups) + " |")
        lines += ["", "| unit | family | synthetic unit | true description (best of its wordings on valid) | "
                  "truth: valid | truth: test |", "|---|---|---|---|---:|---:|"]
        for u in units:
            info, row = truth["units"].get(str(u), {}), results[str(u)].get("truth", {})
            lines.append(f"| {u} | {info.get('family', '?')} | `{info.get('name', '?')}` | "
                         f"{row.get('explanation', '-')} ({row.get('candidates', 0)} wordings) | "
                         f"{_pm(row.get('valid'), None)} | {_pm(row.get('test'), None)} |")
    lines += ["", "Neurons: " + "; ".join(f"{g}: {', '.join(map(str, us))}" for g, us in groups.items())]
    made = {"command": command, "neurons": {g: [str(u) for u in us] for g, us in groups.items()},
            "group_of": {str(u): g for u, g in group_of.items()},
            "truth": None if truth is None else {k: v for k, v in truth.items() if k != "units"},
            "summary": summary, "results": results}
    atomic_write_json(out / "quality.json", made)
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    plot_quality(made, out / "quality.png", _plot_title(Path(args.store)))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
