"""How good is a simulator? Scores on validation units, with the correct and with a shuffled explanation.

For each validation unit (never trained on, on text never trained on) one of its explanations is simulated
over its exemplars and scored as ns-dspy scores explanations: the Pearson correlation pooled over every token
of every exemplar (:func:`ns_dspy.scoring.correlation.pooled`). The same exemplars are then simulated with the
explanation of another, randomly chosen unit: a simulator that reads explanations scores near zero there; one
that ignores them (or only learned "which tokens are often active") scores the same as with the right one.

Any ns_dspy simulator spec can be evaluated (``finetuned:DIR``, ``prompted:gemma-3-270m``, an endpoint), so the
trained simulator and the untrained prompted one are measured on exactly the same data.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict

import numpy as np
from tqdm.auto import tqdm

from ns_dspy.scoring.correlation import pooled
from ns_dspy.types import Exemplar

log = logging.getLogger(__name__)

__all__ = ["evaluate", "summarise", "markdown"]


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
                "r_shuffled": round(float(s.mean()), 4) if len(sub) else None,
                "r_min": round(float(r.min()), 4) if len(sub) else None}
    families = sorted({x["family"] for x in rows})
    out = {"families": {f: stats([x for x in rows if x["family"] == f]) for f in families}}
    out["single"] = stats([x for x in rows if x["family"] != "two-concept"])
    singles = [v for f, v in out["families"].items() if f != "two-concept"]
    out["balanced"] = {"units": sum(v["units"] for v in singles),  # one vote per single-concept family
                       "r": round(float(np.mean([v["r"] for v in singles])), 4) if singles else None,
                       "r_shuffled": round(float(np.mean([v["r_shuffled"] for v in singles])), 4) if singles else None,
                       "r_min": min((v["r_min"] for v in singles), default=None)}
    out["two-concept"] = stats([x for x in rows if x["family"] == "two-concept"])
    out["all"] = stats(rows)
    return out


def markdown(results: dict[str, dict]) -> str:
    """A table: one column pair (correct / shuffled) per evaluated simulator, one row per family."""
    names = list(results)
    rows = sorted({f for r in results.values() for f in r["families"]})
    head = "| family | units | " + " | ".join(f"{n}: r | {n}: shuffled" for n in names) + " |"
    sep = "|---|---:|" + "---:|---:|" * len(names)
    lines = [head, sep]

    def cell(s):
        return f"{s['r']:.3f} | {s['r_shuffled']:.3f}" if s and s.get("r") is not None else "- | -"
    for f in rows:
        first = results[names[0]]["families"].get(f, {})
        lines.append(f"| {f} | {first.get('units', 0)} | " + " | ".join(cell(results[n]["families"].get(f)) for n in names) + " |")
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
