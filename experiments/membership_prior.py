"""Does the simulator's own base model know which words a category holds? A membership prior from its log-probs.

    python experiments/membership_prior.py --data DATA --out OUT.json [--split valid] [--families wordnet]
        [--max-units N per family] [--simulator finetuned:gemma-3-270m] [--prior-model gemma-3-270m] [--dtype float32]

The default simulator reads a WordNet category ("words for kinds of chemical process") as its commonest member
or not at all, so on held-out units the single most active word outscores the true description
(``simulator_training/README.md``, decoys). Asking the offline explainer LM to *write* members did not help
(``expanded_reading.py``): it names other members as often as the corpus's. This asks the easier question of
*recognition*: for every distinct word of the text being simulated, how much more likely the base language model
(gemma-3-270m without the simulator's adapter, by default) finds it after the explanation than after a neutral
description,

    prior(word) = log p(word | 'Description: <explanation>\\nA word this description covers: "')
                - log p(word | 'Description: any English word\\nA word this description covers: "')

(the word's tokens and the closing quote), clipped at 0 and scaled so that the text's largest is 10. Nothing of
the activations enters it: like the simulator, it reads only the explanation and the text. The reading scored is
the blend ``(1 - a) * simulator + a * prior`` per token, for each ``a`` of :data:`ALPHAS` (``a = 0``: the
simulator alone; ``a = 1``: the prior alone).

For each unit of ``DATA``'s ``--split`` in ``--families`` (its decoys built as ``ns-dspy-train-simulator decoys``
builds them, seed 0), the truth and its decoys are simulated in one call and each is scored as ``decoys``
scores (pooled r over all the unit's exemplars) under every blend. Writes ``OUT.json`` (every row; a rerun resumes
from it, and refuses other settings) and ``OUT.md``: per blend the truth's mean r, paired against the simulator
alone, the share of units where the truth beats every decoy (with its 90% Wilson interval) and where it beats the
single most active word, and the same per family. Choose ``a`` on ``--split train`` units (which the simulator
was trained on) and read the held-out ``valid`` units with it.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from paper_analysis import mean_se, paired_text
from simulator_training.evaluate import _exemplars, decoy_sets, wilson
from unit_trials import trial_simulator, trial_units

from ns_dspy.atomic import atomic_write_json, atomic_write_text
from ns_dspy.scoring import pooled

ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
"""Weights of the prior in the blend, as the summary lists them."""
COND = 'Description: {e}\nA word this description covers: "'
NEUTRAL = COND.format(e="any English word")
WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")


def word_of(token: str) -> str | None:
    """The lower-cased word a token spells (at least two letters, ``'`` and ``-`` inside), or None."""
    w = token.strip()
    return w.lower() if WORD.fullmatch(w) else None


class Prior:
    """Log-probabilities of words after a prefix from a causal LM (an offline model's name or a local folder; the
    prefix run once, its cache reused for every word)."""

    def __init__(self, name: str, batch: int = 128):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ns_dspy.models.offline import offline_names, resolve_offline

        path = Path(name) if Path(name).is_dir() else resolve_offline(name)
        if path is None:
            sys.exit(f"error: --prior-model {name} is not an offline model or a folder: name one of "
                     f"{', '.join(offline_names())}")
        self.torch, self.batch = torch, batch
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self._neutral: dict[str, float] = {}

    def logps(self, prefix: str, words: list[str]) -> dict[str, float]:
        torch, tok, model = self.torch, self.tok, self.model
        pre = tok(prefix, add_special_tokens=True)["input_ids"]
        with torch.no_grad():
            o = model.model(input_ids=torch.tensor([pre]), use_cache=True)
        cache0, h_last = o.cache, o.last_hidden_state[0, -1]
        out = {}
        for i in range(0, len(words), self.batch):
            chunk = words[i:i + self.batch]
            conts = [tok(w + '"', add_special_tokens=False)["input_ids"] for w in chunk]
            ids = torch.full((len(chunk), max(map(len, conts))), tok.pad_token_id or 0)
            mask = torch.zeros_like(ids)
            for j, c in enumerate(conts):
                ids[j, :len(c)] = torch.tensor(c)
                mask[j, :len(c)] = 1
            cache = copy.deepcopy(cache0)
            cache.batch_repeat_interleave(len(chunk))
            mask = torch.cat([torch.ones(len(chunk), len(pre), dtype=mask.dtype), mask], 1)
            with torch.no_grad():
                h = model.model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True).last_hidden_state
                # the word's first token is read from the prefix's last position, each next one from the one before
                rows = torch.cat([torch.cat([h_last[None], h[j, :len(c) - 1]]) for j, c in enumerate(conts)])
                lp = torch.log_softmax(model.lm_head(rows).float(), -1)
            got = lp[torch.arange(len(rows)), torch.tensor([t for c in conts for t in c])].tolist()
            at = 0
            for w, c in zip(chunk, conts):
                out[w] = float(sum(got[at:at + len(c)]))
                at += len(c)
        return out

    def pmi(self, explanation: str, words: list[str]) -> dict[str, float]:
        missing = [w for w in words if w not in self._neutral]
        if missing:
            self._neutral.update(self.logps(NEUTRAL, missing))
        cond = self.logps(COND.format(e=explanation), words)
        return {w: cond[w] - self._neutral[w] for w in words}


def prior_reading(pmi: dict[str, float], exemplars) -> list[np.ndarray]:
    """Each token's clipped prior, scaled so that the largest over ``exemplars`` is 10 (all 0 when none is > 0)."""
    preds = [np.array([max(0.0, pmi.get(word_of(t) or "", 0.0)) for t in ex.tokens], np.float32) for ex in exemplars]
    top = max((float(p.max()) for p in preds if p.size), default=0.0)
    return [p * (10.0 / top) if top > 0 else p for p in preds]


def run(units: list[dict], simulator, pmi, out: Path, *, families: set[str], max_units: int | None = None,
        settings: dict | None = None, keep: Path | None = None, progress: bool = True) -> dict:
    """Score every selected unit under every blend; ``pmi(explanation, words) -> {word: value}`` is the prior.
    Resumes from ``out``, which records ``settings``; with ``keep``, each unit's per-token readings are saved there
    (``<unit>.npz``: ``sim`` and ``prior``, texts x tokens, and ``true``) for other combinations to be tried."""
    state = json.loads(out.read_text()) if out.exists() else {"settings": settings, "rows": []}
    done = {r["unit"] for r in state["rows"]}
    sets, taken = [], {}
    for u, d in decoy_sets(units, seed=0):
        if u["family"] in families and taken.get(u["family"], 0) < (max_units or len(units)):
            sets.append((u, d))
            taken[u["family"]] = taken.get(u["family"], 0) + 1
    for i, (unit, d) in enumerate(sets):
        if unit["unit"] in done:
            continue
        t0 = time.time()
        texts = [d.truth] + list(d.decoys.values())
        exemplars = _exemplars(unit)
        trues = [ex.activations for ex in exemplars]
        words = sorted({w for ex in exemplars for w in map(word_of, ex.tokens) if w})
        sims = simulator.simulate(texts, exemplars)
        priors = [prior_reading(pmi(text, words), exemplars) for text in texts]
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(_npz(keep, unit["unit"]),
                                sim=np.stack([np.concatenate(x) for x in sims]),
                                prior=np.stack([np.concatenate(x) for x in priors]), true=np.concatenate(trues))
        row = {"unit": unit["unit"], "family": unit["family"], "texts": texts, "decoys": list(d.decoys),
               "blends": {}}
        for a in ALPHAS:
            s = [round(pooled([(1 - a) * np.asarray(x, np.float32) + a * y for x, y in zip(sim, pri)], trues).r, 4)
                 for sim, pri in zip(sims, priors)]
            row["blends"][str(a)] = {"r": s[0], "r_decoys": dict(zip(d.decoys, s[1:])),
                                     "win": all(s[0] > x for x in s[1:]) if len(s) > 1 else None}
        state["rows"].append(row)
        atomic_write_json(out, state)
        if progress:
            b = row["blends"]
            print(f"[{i + 1}/{len(sets)}] {unit['unit']} {time.time() - t0:.0f} s: truth r "
                  + ", ".join(f"a={a} {b[str(a)]['r']:.3f}{'*' if b[str(a)]['win'] else ''}" for a in ALPHAS),
                  file=sys.stderr, flush=True)
    return state


def _npz(keep: Path, unit: str) -> Path:
    return keep / f"{unit.replace(':', '_').replace('/', '_')}.npz"


def kept_readings(rows: list[dict], keep: Path) -> list:
    """The per-token readings ``keep`` holds for ``rows``' units, each loaded once (units without any left out)."""
    return [np.load(_npz(keep, row["unit"])) for row in rows if _npz(keep, row["unit"]).exists()]


def truth_only_wins(readings: list, a: float) -> tuple[int, int]:
    """A diagnostic, not a reading: of the units whose ``readings`` are given, those where the truth read with the
    blend ``a`` beats every decoy read by the simulator alone (how far the prior lifts the truth before it lifts
    the decoys too)."""
    wins = 0
    for z in readings:
        true = z["true"]
        truth = pooled([(1 - a) * z["sim"][0] + a * z["prior"][0]], [true]).r
        wins += all(truth > pooled([z["sim"][k]], [true]).r for k in range(1, len(z["sim"])))
    return wins, len(readings)


def summary(state: dict, title: str, keep: Path | None = None) -> str:
    rows = state["rows"]
    readings = kept_readings(rows, keep) if keep is not None else []
    diag = bool(readings)
    lines = [f"# {title}", "",
             "| blend a (0: simulator alone; 1: prior alone) | units | truth r (mean ± SE) | paired - simulator | "
             "truth first (90% interval) | truth beats the single most active word |"
             + (" diagnostic: truth first with the blend on the truth only |" if diag else ""),
             "|---|---:|---:|---:|---:|---:|" + ("---:|" if diag else "")]
    for a in map(str, ALPHAS):
        r = [row["blends"][a]["r"] for row in rows]
        m, se = mean_se(r)
        paired = "" if a == "0.0" else paired_text([row["blends"][a]["r"] - row["blends"]["0.0"]["r"] for row in rows],
                                                   tol=1e-3)
        wins = [row["blends"][a]["win"] for row in rows if row["blends"][a]["win"] is not None]
        lo, hi = wilson(sum(wins), len(wins))
        narrow = [row["blends"][a]["r"] > row["blends"][a]["r_decoys"]["over_narrow"]
                  for row in rows if "over_narrow" in row["blends"][a]["r_decoys"]]
        extra = " {}/{} |".format(*truth_only_wins(readings, float(a))) if diag else ""
        lines.append(f"| {a} | {len(rows)} | {m:.3f} ± {se or 0:.3f} | {paired} | {sum(wins)}/{len(wins)} "
                     f"({lo:.0%}-{hi:.0%}) | {sum(narrow)}/{len(narrow)} |" + extra)
    families = sorted({row["family"] for row in rows})
    if len(families) > 1:
        lines += ["", "| family | units | " + " | ".join(f"a={a}: r / first" for a in ALPHAS) + " |",
                  "|---|---:|" + "---:|" * len(ALPHAS)]
        for family in families:
            sub = [row for row in rows if row["family"] == family]
            cells = []
            for a in map(str, ALPHAS):
                wins = [row["blends"][a]["win"] for row in sub if row["blends"][a]["win"] is not None]
                cells.append(f"{mean_se([row['blends'][a]['r'] for row in sub])[0]:.3f} / {sum(wins)}/{len(wins)}")
            lines.append(f"| {family} | {len(sub)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a build-data folder")
    ap.add_argument("--out", type=Path, required=True, help="OUT.json (resumed when it exists); OUT.md beside it")
    ap.add_argument("--split", default="valid", choices=("train", "valid"))
    ap.add_argument("--families", default="wordnet", help="comma-separated unit families (default: wordnet)")
    ap.add_argument("--max-units", type=int, default=None, help="at most this many units per family")
    ap.add_argument("--simulator", default="finetuned:gemma-3-270m")
    ap.add_argument("--prior-model", default="gemma-3-270m", help="an offline causal LM (default gemma-3-270m)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--keep", type=Path, default=None, help="a folder for each unit's per-token readings (.npz)")
    args = ap.parse_args(argv)
    settings = {"data": str(args.data), "split": args.split, "families": args.families, "max_units": args.max_units,
                "simulator": args.simulator, "prior_model": args.prior_model, "dtype": args.dtype}
    units, families = trial_units(args.data, args.split, args.out, args.families, settings)
    prior = Prior(args.prior_model)
    simulator = trial_simulator(args.simulator, args.dtype)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = run(units, simulator, prior.pmi, args.out, families=families, max_units=args.max_units,
                settings=settings, keep=args.keep)
    text = summary(state, f"A membership prior from {args.prior_model} blended into {args.simulator} "
                          f"({args.data.name}, {args.split}, families {args.families})", keep=args.keep)
    atomic_write_text(args.out.with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
