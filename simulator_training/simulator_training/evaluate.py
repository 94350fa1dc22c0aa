"""How good is a simulator? Scores on validation units, with the correct and with a shuffled explanation.

For each validation unit (never trained on, on text never trained on) one of its explanations is simulated
over its exemplars and scored as ns-dspy scores explanations: the Pearson correlation pooled over every token
of every exemplar (:func:`ns_dspy.scoring.correlation.pooled`). The same exemplars are then simulated with the
explanation of another, randomly chosen unit: a simulator that reads explanations scores near zero there; one
that ignores them (or only learned "which tokens are often active") scores the same as with the right one.

The decoy evaluation (:func:`evaluate_decoys`) asks more: for each unit, the true explanation is simulated
together with hard decoys built from the unit's own exemplars and the other units' explanations (a list of
words around the trigger, a sibling concept, the right words without their context, an over-narrow and an
over-broad version; :func:`decoys`), and wins when it scores strictly above all of them. That is the choice a
refinement loop makes among close candidates.

The union evaluation (:func:`evaluate_union`) asks how to combine a polysemantic unit's explanations (one per
mode) into one prediction: on each two-concept unit, its two parts' single explanations are scored alone, as the
per-token maximum of their raw predictions, and as the maximum of their predictions calibrated against the truth
on a disjoint half of the exemplars (what ns-dspy's neuron-level score does, :func:`ns_dspy.scoring.polysemantic`).

Any ns_dspy simulator spec can be evaluated (``finetuned:DIR``, ``prompted:gemma-3-270m``, an endpoint), so the
trained simulator and the untrained prompted one are measured on exactly the same data.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ns_dspy.agents.evidence import word_list
from ns_dspy.agents.list_edits import parse_word_list
from ns_dspy.errors import ConfigError
from ns_dspy.scoring.correlation import pooled
from ns_dspy.types import Exemplar

from .paraphrase import reworded
from .prose import token_stats

log = logging.getLogger(__name__)

__all__ = ["STYLES", "restyle", "template_rows", "evaluate", "summarise", "markdown", "plot", "DECOY_FAMILIES",
           "Decoys", "decoys", "decoy_sets", "evaluate_decoys", "wilson", "summarise_decoys", "markdown_decoys",
           "plot_decoys", "UNION_METHODS", "components", "halves", "union_units", "evaluate_union", "summarise_union",
           "markdown_union", "plot_union"]


STYLES = ("short", "long", "paraphrase")
"""Which of a unit's explanations an evaluation reads: ``explanations``, ``long_explanations``
(``build-data --long``, :mod:`simulator_training.prose`) or ``paraphrases`` (the ``paraphrase`` command,
:mod:`simulator_training.paraphrase`)."""


def restyle(units: list[dict], style: str, data="the dataset") -> list[dict]:
    """``units`` reading the explanations of ``style``: for ``long``, each unit's ``long_explanations`` in
    place of its short ones (the units and exemplars are the same, so the two styles compare on the same
    tokens); for ``paraphrase``, each explanation's LM rewording where it has one, index for index, so an
    evaluation with the same seed reads the same units and the same explanations reworded. A dataset without
    the style's explanations is refused in one line."""
    if style not in STYLES:
        raise ConfigError(f"style must be one of {', '.join(STYLES)}, not {style!r}")
    if style == "short":
        return units
    if style == "paraphrase":
        if not any(reworded(u) for u in units):
            raise ConfigError(f"{data}: no unit has paraphrases: write them with ns-dspy-train-simulator "
                              "paraphrase --data DATA --out NEW")
        return [{**u, "explanations": [p or e for p, e in zip(u["paraphrases"], u["explanations"])]}
                if u.get("paraphrases") else u for u in units]
    lacking = [u["unit"] for u in units if not u.get("long_explanations")]
    if lacking:
        raise ConfigError(f"{data}: {len(lacking)} of {len(units)} units have no long explanations (e.g. "
                          f"{lacking[0]}): rebuild it with build-data --long N")
    return [{**u, "explanations": list(u["long_explanations"])} for u in units]


def template_rows(units: list[dict], rows: list[dict]) -> list[str]:
    """The units of ``rows`` (an evaluation of ``restyle(..., "paraphrase")`` units) whose evaluated explanation
    was read in its template wording, having no rewording."""
    kept = {u["unit"]: set(reworded(u)) for u in units}
    return [r["unit"] for r in rows if r["explanation"] not in kept.get(r["unit"], set())]


def _exemplars(unit: dict) -> list[Exemplar]:
    return [Exemplar(tokens=list(ex["tokens"]), activations=np.asarray(ex["targets"], np.float32),
                     kind=ex.get("kind", "top"), split="valid", token_ids=list(ex["token_ids"]))
            for ex in unit["exemplars"]]


def _derangement(n: int, rng: random.Random) -> list[int]:
    if n < 2:
        return list(range(n))
    while True:
        perm = list(range(n))
        rng.shuffle(perm)
        if all(i != p for i, p in enumerate(perm)):
            return perm


def evaluate(simulator, units: list[dict], *, seed: int = 0, max_units: int | None = None,
             progress: bool = True) -> list[dict]:
    """Per unit: ``{"unit", "family", "explanation", "shuffled", "r", "r_shuffled"}``.

    ``max_units`` takes a seeded sample balanced over families (every family keeps at least a share)."""
    rng = random.Random(seed)
    if max_units is not None and len(units) > max_units:
        units = _balanced_sample(units, max_units, rng)
    perm = _derangement(len(units), rng)
    picks = [rng.randrange(len(u["explanations"])) for u in units]
    rows = []
    for i, unit in enumerate(tqdm(units, desc="evaluating", disable=not progress, unit="unit")):
        other = units[perm[i]]
        explanation = unit["explanations"][picks[i]]
        shuffled = other["explanations"][picks[perm[i]]]
        exemplars = _exemplars(unit)
        preds = simulator.simulate([explanation, shuffled], exemplars)
        trues = [ex.activations for ex in exemplars]
        rows.append({"unit": unit["unit"], "family": unit["family"], "explanation": explanation,
                     "shuffled": shuffled, "r": round(pooled(preds[0], trues).r, 4),
                     "r_shuffled": round(pooled(preds[1], trues).r, 4)})
    return rows


def _balanced_sample(units: list[dict], n: int, rng: random.Random) -> list[dict]:
    by_family: dict[str, list[dict]] = defaultdict(list)
    for u in units:
        by_family[u["family"]].append(u)
    share = max(1, n // len(by_family))
    chosen = []
    for family in sorted(by_family):
        members = by_family[family][:]
        rng.shuffle(members)
        chosen.extend(members[:share])
    rest = [u for u in units if u not in chosen]
    rng.shuffle(rest)
    chosen.extend(rest[: max(0, n - len(chosen))])
    return chosen


def summarise(rows: list[dict]) -> dict:
    """Means per family and overall: ``single`` (all one-concept units), ``balanced`` (the mean of the
    single-concept families' means, so no family outweighs the others by its number of units),
    ``two-concept``, ``all``."""
    def stats(sub):
        r = np.array([x["r"] for x in sub], dtype=float)
        s = np.array([x["r_shuffled"] for x in sub], dtype=float)
        return {"units": len(sub), "r": round(float(r.mean()), 4) if len(sub) else None,
                "r_se": round(float(r.std(ddof=1) / np.sqrt(len(r))), 4) if len(sub) > 1 else None,
                "r_shuffled": round(float(s.mean()), 4) if len(sub) else None,
                "r_min": round(float(r.min()), 4) if len(sub) else None}
    families = sorted({x["family"] for x in rows})
    out = {"families": {f: stats([x for x in rows if x["family"] == f]) for f in families}}
    out["single"] = stats([x for x in rows if x["family"] != "two-concept"])
    singles = [v for f, v in out["families"].items() if f != "two-concept"]
    # the mean of k family means: its standard error is sqrt(sum of the families' squared errors) / k
    se = [v["r_se"] for v in singles]
    out["balanced"] = {"units": sum(v["units"] for v in singles),  # one vote per single-concept family
                       "r": round(float(np.mean([v["r"] for v in singles])), 4) if singles else None,
                       "r_se": round(float(np.sqrt(np.sum(np.square(se))) / len(se)), 4)
                       if singles and None not in se else None,
                       "r_shuffled": round(float(np.mean([v["r_shuffled"] for v in singles])), 4) if singles else None,
                       "r_min": min((v["r_min"] for v in singles), default=None)}
    out["two-concept"] = stats([x for x in rows if x["family"] == "two-concept"])
    out["all"] = stats(rows)
    return out


def markdown(results: dict[str, dict]) -> str:
    """A table: one column pair (correct ± its standard error over units / shuffled) per evaluated simulator,
    one row per family."""
    names = list(results)
    rows = sorted({f for r in results.values() for f in r["families"]})
    head = "| family | units | " + " | ".join(f"{n}: r | {n}: shuffled" for n in names) + " |"
    sep = "|---|---:|" + "---:|---:|" * len(names)
    lines = [head, sep]

    def cell(s):
        if not s or s.get("r") is None:
            return "- | -"
        se = f" ± {s['r_se']:.3f}" if s.get("r_se") is not None else ""
        return f"{s['r']:.3f}{se} | {s['r_shuffled']:.3f}"
    for f in rows:
        first = results[names[0]]["families"].get(f, {})
        cells = " | ".join(cell(results[n]["families"].get(f)) for n in names)
        lines.append(f"| {f} | {first.get('units', 0)} | {cells} |")
    for key in ("single", "balanced", "two-concept", "all"):
        first = results[names[0]][key]
        lines.append(f"| **{key}** | {first['units']} | " + " | ".join(cell(results[n][key]) for n in names) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict], path) -> bool:
    """A bar chart (per family: correct vs shuffled explanation, per simulator) as PNG; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(results)
    families = sorted({f for r in results.values() for f in r["families"]})
    x = np.arange(len(families))
    width = 0.8 / (2 * len(names))
    fig, ax = plt.subplots(figsize=(1.3 * len(families) + 2, 3.8))
    for k, name in enumerate(names):
        fam = results[name]["families"]
        ax.bar(x + (2 * k) * width, [fam.get(f, {}).get("r") or 0 for f in families], width, label=f"{name}: correct")
        ax.bar(x + (2 * k + 1) * width, [fam.get(f, {}).get("r_shuffled") or 0 for f in families], width,
               label=f"{name}: shuffled", alpha=0.6)
    ax.set_xticks(x + width * (len(names) - 0.5), families, rotation=20)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel("mean score (pooled Pearson r)")
    ax.set_title("Simulator on held-out units and unseen text")
    ax.legend(fontsize=7, ncol=len(names))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- decoys: does the simulator prefer a unit's explanation to a close, wrong one? -------------------------

DECOY_FAMILIES = ("cooccurring", "sibling", "context_free", "over_narrow", "over_broad")
"""The kinds of hard decoy, in the order they are built (see :func:`decoys`)."""


@dataclass(frozen=True)
class Decoys:
    """A unit's true explanation and the decoys built for it.

    ``decoys`` maps a decoy family to its text, in :data:`DECOY_FAMILIES` order; ``skipped`` maps each family
    that was not built for this unit to the reason (its construction condition failed)."""

    truth: str
    decoys: dict[str, str]
    skipped: dict[str, str]


def decoys(unit: dict, units: list[dict], rng: random.Random, *, explanation: str | None = None,
           quiet: float = 1.0, window: int = 3, n_words: int = 3, context_share: float = 0.3,
           narrow_share: float = 0.5) -> Decoys:
    """Hard decoys for one unit, built from its own exemplars and the other units' explanations only.

    The true explanation is ``explanation``, else one of the unit's, chosen with ``rng``. A token counts as
    quiet where its target is below ``quiet`` (targets are 0..10). Token types are tokens stripped and
    lower-cased; a word list shows each type's commonest surface form (:func:`ns_dspy.agents.evidence.word_list`).

    * ``cooccurring``: up to ``n_words`` token types whose mean target over all their occurrences is below
      ``quiet`` but which occur (at least twice) within ``window`` tokens of an active token, ranked by
      near^2 / occurrences (often near the trigger and rarely elsewhere: "States" for "United", not "the");
    * ``sibling``: an explanation of another unit of the same family, chosen with ``rng``;
    * ``context_free``: the ``n_words`` token types with the most activation mass, only if at least
      ``context_share`` of their occurrences are quiet (the unit depends on context, so the list is wrong);
    * ``over_narrow``: the single token type with the most activation mass, only if it carries less than
      ``narrow_share`` of the unit's activation mass (the unit fires on several types);
    * ``over_broad``: ``"<truth>; also <cooccurring words>"``, a superset that predicts false positives.

    A family whose condition fails, or whose text repeats the truth or an earlier decoy, is left out and its
    reason recorded in ``skipped``. Deterministic for a given ``rng`` state."""
    truth = explanation if explanation is not None else unit["explanations"][rng.randrange(len(unit["explanations"]))]
    forms, count, quiet_n, mass, near = token_stats(_exemplars(unit), quiet, window)

    def words(keys):
        return word_list([forms[k].most_common(1)[0][0] for k in keys])

    built: dict[str, str | None] = {}
    skipped: dict[str, str] = {}
    # near an active token often, and rarely elsewhere (near^2 / count): "States" for "United", not "the"
    cooc = sorted((k for k in near if near[k] >= 2 and mass[k] / count[k] < quiet),
                  key=lambda k: (-near[k] ** 2 / count[k], k))[:n_words]
    if cooc:
        built["cooccurring"] = words(cooc)
    else:
        skipped["cooccurring"] = "no quiet token near an active one"
    siblings = sorted({e for u in units if u["family"] == unit["family"] and u["unit"] != unit["unit"]
                       for e in u["explanations"]} - set(unit["explanations"]))
    if siblings:
        built["sibling"] = rng.choice(siblings)
    else:
        skipped["sibling"] = f"no other {unit['family']} unit"
    ranked = sorted((k for k in mass if mass[k] > 0), key=lambda k: (-mass[k], k))
    top = ranked[:n_words]
    quiet_top = sum(quiet_n[k] for k in top) / max(1, sum(count[k] for k in top))
    if not top:
        skipped["context_free"] = "no active token"
    elif quiet_top < context_share:
        skipped["context_free"] = f"the most active tokens are quiet in only {quiet_top:.0%} of their occurrences"
    else:
        built["context_free"] = words(top)
    total = sum(mass[k] for k in ranked)
    top_share = mass[ranked[0]] / total if ranked else 1.0
    if not ranked:
        skipped["over_narrow"] = "no active token"
    elif top_share >= narrow_share:
        skipped["over_narrow"] = f"the most active token carries {top_share:.0%} of the activation"
    else:
        built["over_narrow"] = words(ranked[:1])
    if cooc:
        built["over_broad"] = f"{truth.strip().removesuffix('.')}; also {words(cooc)}"
    else:
        skipped["over_broad"] = "no co-occurring words to add"
    out: dict[str, str] = {}
    for family in DECOY_FAMILIES:
        text = built.get(family)
        if text is None:
            continue
        if text.strip().lower() in {truth.strip().lower(), *(t.strip().lower() for t in out.values())}:
            skipped[family] = "same text as the truth or an earlier decoy"
        else:
            out[family] = text
    return Decoys(truth, out, {f: skipped[f] for f in DECOY_FAMILIES if f in skipped})


def decoy_sets(units: list[dict], *, seed: int = 0, max_units: int | None = None,
               **options) -> list[tuple[dict, Decoys]]:
    """The evaluated units (the seeded, family-balanced sample :func:`evaluate` takes) and their decoys.

    Each unit's decoys come from a generator seeded by ``seed`` and the unit's name, so they do not depend on
    which other units are sampled; siblings are drawn from all of ``units``."""
    sample = units
    if max_units is not None and len(units) > max_units:
        sample = _balanced_sample(units, max_units, random.Random(seed))
    return [(u, decoys(u, units, random.Random(f"{seed}:{u['unit']}"), **options)) for u in sample]


def exact_reading(text: str, exemplars: list[Exemplar]) -> float | None:
    """What a word list scores read exactly, without a simulator: the pooled r of the indicator of its words
    (tokens stripped and lower-cased, as the decoys group them) against the activations; None for a text that
    is not a word list as :func:`~ns_dspy.agents.evidence.word_list` writes it, or a constant indicator. A
    simulated score far above it means the simulator credits the list with more than its words."""
    parsed = parse_word_list(text)
    if parsed is None or parsed[0]:
        return None
    words = {w.strip().lower() for w in parsed[1]}
    preds = [np.array([float(t.strip().lower() in words) for t in ex.tokens], np.float32) for ex in exemplars]
    flat = np.concatenate(preds) if preds else np.zeros(0)
    if flat.size == 0 or flat.min() == flat.max():
        return None
    return round(pooled(preds, [ex.activations for ex in exemplars]).r, 4)


def evaluate_decoys(simulator, units: list[dict], *, seed: int = 0, max_units: int | None = None,
                    progress: bool = True, **options) -> list[dict]:
    """Per unit: ``{"unit", "family", "explanation", "r", "decoys": {family: text}, "r_decoys": {family: r},
    "exact_decoys": {family: r or None}, "skipped": {family: reason}, "rank", "win"}``.

    The truth and all decoys are simulated in one call and scored like :func:`evaluate` (pooled Pearson r
    over all the unit's exemplars). ``rank`` is 1 + the number of decoys scoring at least as high as the truth;
    ``win`` is rank 1 (the truth strictly above every decoy), ``None`` for a unit without decoys.
    ``exact_decoys`` is each word-list decoy's :func:`exact_reading` (no simulator)."""
    rows = []
    for unit, d in tqdm(decoy_sets(units, seed=seed, max_units=max_units, **options), desc="decoys",
                        disable=not progress, unit="unit"):
        exemplars = _exemplars(unit)
        trues = [ex.activations for ex in exemplars]
        families = list(d.decoys)
        preds = simulator.simulate([d.truth] + [d.decoys[f] for f in families], exemplars)
        scores = [round(pooled(p, trues).r, 4) for p in preds]
        rank = 1 + sum(s >= scores[0] for s in scores[1:])
        rows.append({"unit": unit["unit"], "family": unit["family"], "explanation": d.truth, "r": scores[0],
                     "decoys": d.decoys, "r_decoys": dict(zip(families, scores[1:])),
                     "exact_decoys": {f: exact_reading(d.decoys[f], exemplars) for f in families}, "skipped": d.skipped,
                     "rank": rank, "win": (rank == 1) if families else None})
    return rows


def wilson(wins: int, n: int, z: float = 1.645) -> tuple[float, float]:
    """The Wilson score interval of a share ``wins / n`` (``z`` 1.645: 90%); (0, 1) for ``n`` = 0. Unlike the
    normal approximation it stays inside [0, 1] and is not empty at 0 or n wins, which small families reach."""
    if n <= 0:
        return 0.0, 1.0
    p = wins / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def summarise_decoys(rows: list[dict]) -> dict:
    """Win rate (truth ranked first) and mean rank of the truth, per unit family, over the single-concept
    units, the family-balanced mean and all units; and per decoy family the share of units where the truth
    beats that decoy. Units without decoys are left out of the rates (counted as ``no_decoys``)."""
    def stats(sub):
        sub = [x for x in sub if x["win"] is not None]
        if not sub:
            return {"units": 0, "win": None, "win_low": None, "win_high": None, "rank": None, "candidates": None,
                    "r": None}
        low, high = wilson(sum(bool(x["win"]) for x in sub), len(sub))
        return {"units": len(sub), "win": round(float(np.mean([x["win"] for x in sub])), 4),
                "win_low": round(low, 4), "win_high": round(high, 4),
                "rank": round(float(np.mean([x["rank"] for x in sub])), 3),
                "candidates": round(float(np.mean([1 + len(x["decoys"]) for x in sub])), 2),
                "r": round(float(np.mean([x["r"] for x in sub])), 4)}
    families = sorted({x["family"] for x in rows})
    out = {"families": {f: stats([x for x in rows if x["family"] == f]) for f in families}}
    out["single"] = stats([x for x in rows if x["family"] != "two-concept"])
    singles = [v for f, v in out["families"].items() if f != "two-concept" and v["units"]]
    out["balanced"] = {"units": sum(v["units"] for v in singles),  # one vote per single-concept family
                       **{k: round(float(np.mean([v[k] for v in singles])), 4) if singles else None
                          for k in ("win", "rank", "candidates", "r")}}
    out["all"] = stats(rows)
    out["no_decoys"] = sum(x["win"] is None for x in rows)
    decoy = {}
    for f in DECOY_FAMILIES:
        with_f = [x for x in rows if f in x["r_decoys"]]
        exact = [(x["r_decoys"][f], x["exact_decoys"][f]) for x in with_f
                 if x.get("exact_decoys", {}).get(f) is not None]
        decoy[f] = {"units": len(with_f), "skipped": sum(f in x["skipped"] for x in rows),
                    "beats": round(float(np.mean([x["r"] > x["r_decoys"][f] for x in with_f])), 4) if with_f else None,
                    "r_decoy": round(float(np.mean([x["r_decoys"][f] for x in with_f])), 4) if with_f else None,
                    # word-list decoys: simulated minus read exactly (> 0: credited beyond their words)
                    "lists": len(exact),
                    "over_exact": round(float(np.mean([r - e for r, e in exact])), 4) if exact else None}
    out["decoys"] = decoy
    return out


def markdown_decoys(results: dict[str, dict]) -> str:
    """Two tables: win rate (with its 90% Wilson interval, :func:`wilson`) and mean rank of the truth per unit
    family, and per decoy family the share of units where the truth beats it, the decoy's mean score and, over
    its word-list decoys, how far the simulated score lies above the list read exactly (:func:`exact_reading`),
    one column group per simulator."""
    names = list(results)

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    def interval(s):
        return "-" if s.get("win_low") is None else f"{100 * s['win_low']:.0f}-{100 * s['win_high']:.0f}%"
    columns = " | ".join(f"{n}: win | {n}: 90% interval | {n}: rank" for n in names)
    lines = ["| family | units | candidates | " + columns + " |",
             "|---|---:|---:|" + "---:|---:|---:|" * len(names)]
    for key in sorted({f for r in results.values() for f in r["families"]}) + ["single", "balanced", "all"]:
        overall = key in ("single", "balanced", "all")
        first = results[names[0]][key] if overall else results[names[0]]["families"].get(key)
        label = f"**{key}**" if overall else key
        cells = []
        for n in names:
            s = results[n][key] if overall else results[n]["families"].get(key, {})
            cells.append(f"{fmt(s.get('win'), '.0%')} | {interval(s)} | {fmt(s.get('rank'), '.2f')}")
        lines.append(f"| {label} | {first['units']} | {fmt(first['candidates'], '.1f')} | " + " | ".join(cells) + " |")
    lines += ["", "| decoy | units | skipped | " + " | ".join(
        f"{n}: truth beats | {n}: decoy r | {n}: lists above exact" for n in names) + " |",
        "|---|---:|---:|" + "---:|---:|---:|" * len(names)]
    for f in DECOY_FAMILIES:
        first = results[names[0]]["decoys"][f]
        cells = []
        for n in names:
            d = results[n]["decoys"][f]
            above = "-" if d.get("over_exact") is None else f"{d['over_exact']:+.3f} ({d['lists']})"
            cells.append(f"{fmt(d['beats'], '.0%')} | {fmt(d['r_decoy'], '.3f')} | {above}")
        lines.append(f"| {f} | {first['units']} | {first['skipped']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_decoys(results: dict[str, dict], path) -> bool:
    """Two bar charts as PNG: win rate per unit family, and how often the truth beats each decoy family, per
    simulator; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(results)
    families = sorted({f for r in results.values() for f in r["families"]}) + ["all"]
    width = 0.8 / len(names)
    fig, (left, right) = plt.subplots(1, 2, figsize=(1.0 * (len(families) + len(DECOY_FAMILIES)) + 3, 3.8),
                                      gridspec_kw={"width_ratios": [len(families), len(DECOY_FAMILIES)]})
    for k, name in enumerate(names):
        res = results[name]
        wins = [(res["all"] if f == "all" else res["families"].get(f, {})).get("win") or 0 for f in families]
        left.bar(np.arange(len(families)) + k * width, wins, width, label=name)
        right.bar(np.arange(len(DECOY_FAMILIES)) + k * width,
                  [res["decoys"][f]["beats"] or 0 for f in DECOY_FAMILIES], width, label=name)
    left.set_xticks(np.arange(len(families)) + width * (len(names) - 1) / 2, families, rotation=20)
    right.set_xticks(np.arange(len(DECOY_FAMILIES)) + width * (len(names) - 1) / 2, DECOY_FAMILIES, rotation=20)
    left.set_ylabel("truth ranked first (share of units)")
    right.set_ylabel("truth beats this decoy (share of units)")
    for ax in (left, right):
        ax.set_ylim(0, 1)
    left.set_title("Truth against all its decoys, per unit family")
    right.set_title("Truth against one decoy family")
    left.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- union: several explanations of a polysemantic unit, combined per token ----------------------------------

UNION_METHODS = ("raw_max", "calibrated_max", "calibrated_sum", "final_max")
"""How the single explanations are combined (see :func:`evaluate_union`); ``calibrated_max`` is what ns-dspy's
neuron-level score uses on valid, where selection scores sets (:func:`ns_dspy.scoring.polysemantic` with
``calibration``), ``final_max`` what its test score uses (the maps of ``ExplainConfig.test_maps``)."""


def components(unit: dict, names: set[str]) -> tuple[str, str] | None:
    """The two single-concept units a synthetic two-concept unit pairs (``pair:A+B``, ``~`` when B is weak),
    found among ``names``; None for any other unit, or when either part is missing."""
    if unit.get("family") != "two-concept" or not unit["unit"].startswith("pair:"):
        return None
    body = unit["unit"][len("pair:"):].removesuffix("~")
    splits = [(body[:k], body[k + 1:]) for k, c in enumerate(body) if c == "+"
              and body[:k] in names and body[k + 1:] in names]
    return splits[0] if len(splits) == 1 else None


def halves(exemplars: list[Exemplar]) -> tuple[list[int], list[int]]:
    """Two disjoint halves of a unit's exemplars (indices), alternating within each kind (top, random), so each
    half holds both kinds and, in a two-concept unit (whose top exemplars come part by part), both modes."""
    first: list[int] = []
    second: list[int] = []
    for kind in dict.fromkeys(ex.kind for ex in exemplars):
        idx = [j for j, ex in enumerate(exemplars) if ex.kind == kind]
        first += idx[0::2]
        second += idx[1::2]
    return first, second


def _calibrated_sum(preds, calibration) -> list[np.ndarray]:
    """The alternative measured beside the maximum: the sum of the informative explanations' calibrated
    predictions (their intercepts add a constant, which no correlation sees)."""
    keep = [(m, p) for m, p in zip(calibration.maps, preds) if m.informative]
    if not keep:
        return [np.zeros(np.shape(x)) for x in preds[0]]
    return [np.sum([m.slope * np.asarray(p[j], dtype=np.float64) for m, p in keep], axis=0)
            for j in range(len(preds[0]))]


def union_units(units: list[dict], *, seed: int = 0,
                max_units: int | None = None) -> list[tuple[dict, tuple[str, str], list[str]]]:
    """The evaluated two-concept units (those whose two parts are among ``units``), each with its parts' names
    and one explanation of each part (chosen with a generator seeded by ``seed`` and the unit's name); a seeded
    sample of ``max_units`` of them, in dataset order, when given."""
    by_name = {u["unit"]: u for u in units}
    names = {u["unit"] for u in units if u["family"] != "two-concept"}
    pairs = [(u, parts) for u in units if (parts := components(u, names)) is not None]
    if max_units is not None and len(pairs) > max_units:
        keep = set(random.Random(seed).sample(range(len(pairs)), max_units))
        pairs = [x for i, x in enumerate(pairs) if i in keep]
    out = []
    for unit, parts in pairs:
        rng = random.Random(f"{seed}:{unit['unit']}")
        out.append((unit, parts, [rng.choice(by_name[p]["explanations"]) for p in parts]))
    return out


def evaluate_union(simulator, units: list[dict], *, seed: int = 0, max_units: int | None = None,
                   progress: bool = True) -> list[dict]:
    """Per two-concept unit: its two parts' single explanations scored alone and combined per token.

    Each part's explanation (one of that single-concept unit's) is simulated over the two-concept unit's
    exemplars, in one call. The exemplars are cut in two disjoint halves (:func:`halves`); the calibration
    (:func:`ns_dspy.scoring.calibration.calibrate`) is fitted on one half and everything is scored on the other,
    then the other way round, so no score is taken on tokens it was fitted on. A score is the mean over the
    two halves of the pooled Pearson r (as :func:`evaluate`). Methods (:data:`UNION_METHODS`): ``raw_max``,
    the per-token maximum of the raw predictions; ``calibrated_max``, the maximum of the linearly calibrated ones;
    ``calibrated_sum``, their sum; ``final_max``, the maximum through the maps a test score reuses
    (:data:`ns_dspy.scoring.calibration.FINAL_KIND`, fitted on the same half). ``beats`` tells per method whether
    it scores strictly above the best single explanation (the better of the two on the same tokens).

    Row: ``{"unit", "weak", "parts", "explanations", "r_single": [a, b], "best_single", "r": {method: r},
    "beats": {method: bool}, "calibration": [per half: maps]}``."""
    from ns_dspy.scoring.calibration import FINAL_KIND, calibrate, union

    rows = []
    for unit, parts, texts in tqdm(union_units(units, seed=seed, max_units=max_units), desc="union",
                                   disable=not progress, unit="unit"):
        exemplars = _exemplars(unit)
        preds = simulator.simulate(texts, exemplars)
        first, second = halves(exemplars)
        singles: list[list[float]] = [[] for _ in texts]
        scores: dict[str, list[float]] = {m: [] for m in UNION_METHODS}
        fitted = []
        for fit, scored in ((first, second), (second, first)):
            trues = [exemplars[j].activations for j in scored]
            on_fit = [[p[j] for j in fit] for p in preds]
            on_scored = [[p[j] for j in scored] for p in preds]
            fit_trues = [exemplars[j].activations for j in fit]
            calibration = calibrate(texts, on_fit, fit_trues)
            fitted.append([{"slope": round(m.slope, 4), "intercept": round(m.intercept, 4)} for m in calibration.maps])
            for i, p in enumerate(on_scored):
                singles[i].append(pooled(p, trues).r)
            scores["raw_max"].append(pooled(union(on_scored), trues).r)
            scores["calibrated_max"].append(pooled(union(on_scored, calibration), trues).r)
            scores["calibrated_sum"].append(pooled(_calibrated_sum(on_scored, calibration), trues).r)
            final = calibrate(texts, on_fit, fit_trues, kind=FINAL_KIND)
            scores["final_max"].append(pooled(union(on_scored, final), trues).r)
        r_single = [round(float(np.mean(s)), 4) for s in singles]
        best = max(r_single)
        r = {m: round(float(np.mean(v)), 4) for m, v in scores.items()}
        rows.append({"unit": unit["unit"], "weak": unit["unit"].endswith("~"),
                     "parts": list(parts),
                     "explanations": texts, "r_single": r_single, "best_single": best, "r": r,
                     "beats": {m: r[m] > best for m in UNION_METHODS}, "calibration": fitted})
    return rows


def summarise_union(rows: list[dict]) -> dict:
    """Per group (``all``; ``equal``: both parts at full strength; ``weak``: the second at 60 %): units, the mean
    score of each part's explanation alone, of the best single one, and of each method, and the share of units
    where each method beats the best single explanation."""
    def stats(sub):
        if not sub:
            return {"units": 0}
        return {"units": len(sub),
                "single_a": round(float(np.mean([x["r_single"][0] for x in sub])), 4),
                "single_b": round(float(np.mean([x["r_single"][1] for x in sub])), 4),
                "best_single": round(float(np.mean([x["best_single"] for x in sub])), 4),
                "r": {m: round(float(np.mean([x["r"][m] for x in sub])), 4) for m in UNION_METHODS},
                "beats": {m: round(float(np.mean([x["beats"][m] for x in sub])), 4) for m in UNION_METHODS}}
    return {"all": stats(rows), "equal": stats([x for x in rows if not x["weak"]]),
            "weak": stats([x for x in rows if x["weak"]])}


def markdown_union(results: dict[str, dict]) -> str:
    """One row per simulator and group: mean scores of the single explanations and of each combination, and
    the share of units where each combination beats the best single explanation."""
    def fmt(v, spec):
        return "-" if v is None else format(v, spec)
    head = ("| simulator | units | part A alone | part B alone | best single | "
            + " | ".join(f"{m}: r | {m}: beats best" for m in UNION_METHODS) + " |")
    lines = [head, "|---|---:|---:|---:|---:|" + "---:|---:|" * len(UNION_METHODS)]
    for name, summary in results.items():
        for group in ("all", "equal", "weak"):
            s = summary[group]
            label = f"{name} ({group})" if group != "all" else f"**{name} (all)**"
            if not s["units"]:
                lines.append(f"| {label} | 0 |" + " - |" * (3 + 2 * len(UNION_METHODS)))
                continue
            cells = " | ".join(f"{fmt(s['r'][m], '.3f')} | {fmt(s['beats'][m], '.0%')}" for m in UNION_METHODS)
            lines.append(f"| {label} | {s['units']} | {s['single_a']:.3f} | {s['single_b']:.3f} | "
                         f"{s['best_single']:.3f} | {cells} |")
    return "\n".join(lines) + "\n"


def plot_union(results: dict[str, dict], rows: dict[str, list[dict]], path) -> bool:
    """Two charts as PNG: the share of units where each combination beats the best single explanation, and
    per unit the best single score against each combination's; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(results)
    groups = ("all", "equal", "weak")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / (len(UNION_METHODS) * len(names))
    for k, name in enumerate(names):
        for m, method in enumerate(UNION_METHODS):
            values = [results[name][g].get("beats", {}).get(method) or 0 for g in groups]
            left.bar(np.arange(len(groups)) + (k * len(UNION_METHODS) + m) * width, values, width,
                     label=f"{name}: {method}" if len(names) > 1 else method)
        for method, marker in zip(UNION_METHODS, "o^sD"):
            right.scatter([x["best_single"] for x in rows[name]], [x["r"][method] for x in rows[name]], s=14,
                          marker=marker, alpha=0.7, label=f"{name}: {method}" if len(names) > 1 else method)
    left.axhline(0.75, color="grey", ls="--", lw=0.8)
    left.set_xticks(np.arange(len(groups)) + width * (len(UNION_METHODS) * len(names) - 1) / 2, groups)
    left.set_ylim(0, 1)
    left.set_ylabel("share of units: union beats the best single explanation")
    left.set_title("Union against its best member")
    left.legend(fontsize=7)
    right.plot([-0.2, 1], [-0.2, 1], color="black", lw=0.6)
    right.set_xlabel("best single explanation (r)")
    right.set_ylabel("union (r)")
    right.set_title("Per two-concept unit (above the line: union wins)")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
