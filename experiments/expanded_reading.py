"""Can the explainer LM's knowledge help the simulator read a category? Each explanation expanded into member words.

    python experiments/expanded_reading.py --data DATA --out OUT.json [--families wordnet] [--max-units N]
        [--simulator finetuned:gemma-3-270m] [--lm local:qwen2.5-coder-1.5b-instruct] [--dtype float32]

The default simulator (268M parameters) reads a WordNet category ("words for kinds of chemical process") as its
commonest member or not at all, so on held-out units the single most active word outscores the true description
(``simulator_training/README.md``, decoys). A larger offline model knows more members. This experiment asks the
offline LM, once per explanation, for 12 words the explanation covers and appends them to it as examples
(``<explanation>, for example "a", "b" ... or "l".``), the style of quoted examples the simulator was trained on;
word-list explanations (the decoys ``the words "A", "B" and "C"``) are read as they are.

For each unit of ``DATA``'s validation split in ``--families`` (its decoys built as ``ns-dspy-train-simulator
decoys`` builds them, seed 0), the truth and its decoys are simulated in one call in three readings: ``plain``
(as written), and expanded with each of :data:`PROMPTS`; each is scored as ``decoys`` scores (pooled r over all
the unit's exemplars). Writes ``OUT.json`` (every expansion, every row; a rerun resumes from it and asks the LM
nothing it already answered) and ``OUT.md``: per reading the truth's mean r, paired against ``plain``, the share
of units where the truth beats every decoy (with its 90% Wilson interval) and where it beats the single most
active word.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from paper_analysis import mean_se, paired_text
from simulator_training.evaluate import _exemplars, decoy_sets, wilson
from unit_trials import trial_simulator, trial_units

from ns_dspy.agents.list_edits import parse_word_list
from ns_dspy.atomic import atomic_write_json, atomic_write_text
from ns_dspy.scoring import pooled

PROMPTS = {
    "neuron": ("A neuron in a language model is described as follows:\n\n{e}\n\nList 12 different English words "
               "(as they appear in ordinary text) on which this neuron activates most strongly, the most typical "
               "first. Answer with the words only, separated by commas."),
    "words": ("Description: {e}\n\nWrite 12 common English words that this description covers, the most typical "
              "first. Answer with the words only, separated by commas."),
}
"""Prompt name -> prompt (``{e}``: the explanation). ``neuron`` was written first; ``words`` after reading some of
its answers, which spoke of language models ("Assetses of any kind" -> "language", "text", "model"). Neither was
changed after that."""

N_WORDS = 12


def is_word_list(text: str) -> bool:
    parsed = parse_word_list(text)
    return parsed is not None and not parsed[0]


def parse_words(answer: str, n: int = N_WORDS) -> list[str]:
    """The LM's comma- or line-separated answer as at most ``n`` distinct words (quotes and dots stripped; items of
    more than two words or 30 characters dropped)."""
    items = (w.strip().strip("\"'.*-").strip() for w in re.split(r"[,\n]", answer))
    return list(dict.fromkeys(w for w in items if w and len(w) < 30 and len(w.split()) <= 2))[:n]


def expanded(text: str, words: list[str]) -> str:
    """``text`` with ``words`` appended as quoted examples; ``text`` itself when there are none."""
    if not words:
        return text
    quoted = [f'"{w}"' for w in words]
    tail = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"
    return f"{text.strip().rstrip('.')}, for example {tail}."


def run(units: list[dict], simulator, ask, out: Path, *, families: set[str], max_units: int | None = None,
        settings: dict | None = None, progress: bool = True) -> dict:
    """Simulate every selected unit in the three readings; ``ask(prompt) -> str`` is the LM. Resumes from ``out``,
    which records ``settings`` (what made it: a resume under others is refused by :func:`main`)."""
    fresh = {"settings": settings, "expansions": {p: {} for p in PROMPTS}, "rows": []}
    state = json.loads(out.read_text()) if out.exists() else fresh
    done = {r["unit"] for r in state["rows"]}
    sets = [(u, d) for u, d in decoy_sets(units, seed=0) if u["family"] in families][:max_units]
    for i, (unit, d) in enumerate(sets):
        if unit["unit"] in done:
            continue
        t0 = time.time()
        texts = [d.truth] + list(d.decoys.values())
        readings = {"plain": texts}
        for name, prompt in PROMPTS.items():
            cache = state["expansions"][name]
            for text in texts:
                if not is_word_list(text) and text not in cache:
                    cache[text] = parse_words(ask(prompt.format(e=text)))
            readings[name] = [text if is_word_list(text) else expanded(text, cache[text]) for text in texts]
        exemplars = _exemplars(unit)
        trues = [ex.activations for ex in exemplars]
        flat = [t for reading in readings.values() for t in reading]
        preds = simulator.simulate(flat, exemplars)
        scores = [round(pooled(p, trues).r, 4) for p in preds]
        row = {"unit": unit["unit"], "family": unit["family"], "decoys": list(d.decoys), "readings": {}}
        for k, name in enumerate(readings):
            s = scores[k * len(texts):(k + 1) * len(texts)]
            row["readings"][name] = {"texts": readings[name], "r": s[0], "r_decoys": dict(zip(d.decoys, s[1:])),
                                     "win": all(s[0] > x for x in s[1:]) if len(s) > 1 else None}
        state["rows"].append(row)
        atomic_write_json(out, state)
        if progress:
            print(f"[{i + 1}/{len(sets)}] {unit['unit']} {time.time() - t0:.0f} s: "
                  + ", ".join(f"{n} {v['r']:.3f}" for n, v in row["readings"].items()), file=sys.stderr, flush=True)
    return state


def summary(state: dict, title: str) -> str:
    rows = state["rows"]
    names = ["plain", *PROMPTS] if rows else []
    lines = [f"# {title}", "",
             "| reading | units | truth r (mean ± SE) | paired - plain | truth first (90% interval) | "
             "truth beats the single most active word |", "|---|---:|---:|---:|---:|---:|"]
    for name in names:
        r = [row["readings"][name]["r"] for row in rows]
        m, se = mean_se(r)
        paired = "" if name == "plain" else paired_text([row["readings"][name]["r"] - row["readings"]["plain"]["r"]
                                                         for row in rows], tol=1e-3)
        wins = [row["readings"][name]["win"] for row in rows if row["readings"][name]["win"] is not None]
        lo, hi = wilson(sum(wins), len(wins))
        narrow = [row["readings"][name]["r"] > row["readings"][name]["r_decoys"]["over_narrow"]
                  for row in rows if "over_narrow" in row["readings"][name]["r_decoys"]]
        lines.append(f"| {name} | {len(rows)} | {m:.3f} ± {se or 0:.3f} | {paired} | {sum(wins)}/{len(wins)} "
                     f"({lo:.0%}-{hi:.0%}) | {sum(narrow)}/{len(narrow)} |")
    families = sorted({row["family"] for row in rows})
    if len(families) > 1:
        lines += ["", "| family | units | " + " | ".join(f"{n}: r" for n in names) + " | "
                  + " | ".join(f"{n}: truth first" for n in names) + " |",
                  "|---|---:|" + "---:|" * (2 * len(names))]
        for family in families:
            sub = [row for row in rows if row["family"] == family]
            r = [f"{mean_se([row['readings'][n]['r'] for row in sub])[0]:.3f}" for n in names]
            wins = [[row["readings"][n]["win"] for row in sub if row["readings"][n]["win"] is not None] for n in names]
            lines.append(f"| {family} | {len(sub)} | " + " | ".join(r) + " | "
                         + " | ".join(f"{sum(w)}/{len(w)}" for w in wins) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a build-data folder")
    ap.add_argument("--out", type=Path, required=True, help="OUT.json (resumed when it exists); OUT.md beside it")
    ap.add_argument("--families", default="wordnet", help="comma-separated unit families (default: wordnet)")
    ap.add_argument("--max-units", type=int, default=None)
    ap.add_argument("--simulator", default="finetuned:gemma-3-270m")
    ap.add_argument("--lm", default="local:qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args(argv)
    settings = {"data": str(args.data), "families": args.families, "max_units": args.max_units,
                "simulator": args.simulator, "lm": args.lm, "dtype": args.dtype}
    units, families = trial_units(args.data, "valid", args.out, args.families, settings)
    from ns_dspy.lms.factory import make_lm

    lm = make_lm(args.lm, temperature=0.0, max_tokens=90)
    simulator = trial_simulator(args.simulator, args.dtype)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = run(units, simulator, lambda p: lm(messages=[{"role": "user", "content": p}])[0], args.out,
                families=families, max_units=args.max_units, settings=settings)
    text = summary(state, f"Explanations expanded by {args.lm} into member words, read by {args.simulator} "
                          f"({args.data.name}, valid, families {args.families})")
    atomic_write_text(args.out.with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
