"""Does a simulator credit the same words less when they come wrapped in an explainer's prose?

For each neuron, the (up to) three tokens that are most often the peak of its train top exemplars (as the
quality benchmark's ``peak3`` row) are written five ways: as the bare list the statistical explainer writes
(``the words "a", "b" and "c"``), in the shortest style of the training data (``Fires on "a", "b" and "c".``),
and in three longer forms an explainer LM writes: a hedged sentence, a sentence with a "but not" clause, and
three sentences. Every form names the same words, so a simulator that reads explanations (and not their
length) gives them about the same score; each form's valid score is reported per simulator, with its mean
difference to the bare list (paired over neurons, +- standard error).

The five forms were written on 2026-12-04 before ``build-data --long``'s templates, to measure the shipped
default; they are not the training templates (:mod:`simulator_training.prose`).

    python experiments/long_prose.py --store experiments/work/quality/store \\
        --neurons experiments/results/quality-dev/neurons.json \\
        --simulators finetuned:gemma-3-270m,finetuned:RUN/adapter --out experiments/results/long-prose
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_analysis import fmt, mean_se  # noqa: E402
from quality import peak_tokens  # experiments/quality.py, beside this script  # noqa: E402

FORMS = {
    "list": '{list}',
    "fires-on": 'Fires on {q}.',
    "hedged": 'This neuron appears to respond mainly to the tokens {q}, which often occur in running text.',
    "but-not": 'Tokens such as {q} activate this neuron, but not other common words such as "the" or "of".',
    "three-sentences": ('The neuron seems to be associated with a particular pattern in the text. It is most '
                        'active on words like {q}. Other tokens in the surrounding context show little or no '
                        'activation.'),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--neurons", required=True, help="JSON: a list of LAYER:INDEX, or groups of them")
    parser.add_argument("--simulators", default="finetuned:gemma-3-270m", help="comma-separated specs")
    parser.add_argument("--split", default="valid", choices=("valid", "test"))
    parser.add_argument("--out", help="folder for long_prose.json and long_prose.md")
    args = parser.parse_args(argv)

    from ns_dspy.agents.evidence import quoted, word_list
    from ns_dspy.build import build_simulator
    from ns_dspy.config import SimulatorConfig
    from ns_dspy.exemplars import ExemplarStore
    from ns_dspy.scoring import HeldOut, score
    from ns_dspy.types import parse_units

    store = ExemplarStore.open(args.store)
    listed = json.loads(Path(args.neurons).read_text())
    if isinstance(listed, dict):
        listed = [u for group in listed.values() for u in group]
    units = parse_units(",".join(listed))
    specs = [s.strip() for s in args.simulators.split(",") if s.strip()]
    texts, held = {}, {}  # units whose train top exemplars have peaks
    for unit in units:
        words = peak_tokens(store.exemplars(unit, "train", "top"))
        if words:
            texts[unit] = {name: form.format(q=quoted(words), list=word_list(words)) for name, form in FORMS.items()}
            held[unit] = HeldOut.from_store(store, unit, args.split)
    if not texts:
        print(f"no neuron of {args.neurons} has a peak in its train top exemplars", file=sys.stderr)
        return 1
    results: dict[str, dict] = {}
    for spec in specs:
        simulator = build_simulator(SimulatorConfig(spec))
        start, rows = time.perf_counter(), {}
        for unit, forms in texts.items():
            values = [s.value for s in score(simulator, list(forms.values()), held[unit])]
            rows[str(unit)] = dict(zip(forms, values))
            print(spec, unit, " ".join(f"{k} {v:.3f}" for k, v in rows[str(unit)].items()), flush=True)
        table = np.array([[row[name] for name in FORMS] for row in rows.values()])
        diffs = table - table[:, :1]
        results[spec] = {"units": rows, "seconds": round(time.perf_counter() - start, 1),
                         "mean": {name: round(float(table[:, k].mean()), 4) for k, name in enumerate(FORMS)},
                         "minus_list": {name: [None if v is None else round(v, 4) for v in mean_se(diffs[:, k])]
                                        for k, name in enumerate(FORMS)}}
    lines = [f"| simulator ({len(texts)} neurons, {args.split}) | " + " | ".join(FORMS) + " |",
             "|---|" + "---:|" * len(FORMS)]
    for spec, res in results.items():
        lines.append(f"| {spec} | " + " | ".join(f"{res['mean'][n]:.3f}" for n in FORMS) + " |")
        lines.append(f"| {spec}: minus the list | " + " | ".join(
            f"{res['minus_list'][n][0]:+.3f} +- {fmt(res['minus_list'][n][1])}" for n in FORMS) + " |")
    table_md = "\n".join(lines) + "\n"
    print(table_md)
    if args.out:
        from ns_dspy.atomic import atomic_write_json, atomic_write_text

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        command = "python experiments/long_prose.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        atomic_write_json(out / "long_prose.json", {"command": command, "store": str(Path(args.store).resolve()),
                                                     "split": args.split, "forms": FORMS,
                                                     "texts": {str(u): t for u, t in texts.items()},
                                                     "results": results})
        atomic_write_text(out / "long_prose.md", f"Command: `{command}`\n\n" + table_md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
