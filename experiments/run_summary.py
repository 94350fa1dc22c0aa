"""A run file's NeuronScope rows beside its own statistical rows, per neuron and paired.

    python experiments/run_summary.py experiments/work/ns-eval-1205/run.sqlite --out experiments/results/ns-eval-1205

Reads a run file written by ``ns-dspy explain`` (read-only) and writes ``OUT/summary.md``: per finished neuron its
Number, NeuronScope's valid and test scores, the statistical explainer's valid and test scores inside the same run
(``trace.statistical``: its own choice and calibration), how many of the final modes the LM wrote, LM tokens and
seconds; then the means ± standard errors and the paired difference NeuronScope - statistical on test. With
``--ablation [NAME=]RUN`` (the same neurons explained with one step off, e.g. ``--no-refine``, the default name
"without refinement"), also each neuron's score in that run, whether both runs started from the same raw
explanation, and the paired gain on valid and test; repeatable.

    python experiments/run_summary.py experiments/results/ns-eval-1205/run.sqlite \
        --out experiments/results/ns-eval-1205 --ablation experiments/results/ns-eval-1205/norefine.sqlite
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_analysis import _pm, mean_se, paired_text  # noqa: E402

from ns_dspy.atomic import atomic_write_text  # noqa: E402
from ns_dspy.runs.read import read_run  # noqa: E402
from ns_dspy.scoring.bootstrap import sides  # noqa: E402


def lm_finals(trace: dict) -> list[str]:
    """The final explanations of a stored trace that the LM wrote (its modes; the others are statistical lists)."""
    lm = {m.get("explanation") for m in trace.get("clusters", []) if (m.get("source") or "lm") == "lm"}
    return [f["explanation"] for f in trace.get("finals", []) if f["explanation"] in lm]


def rows(path: Path) -> list[dict]:
    """Per finished neuron of the run file (:func:`ns_dspy.runs.read.read_run`, by unit): its scores, its
    statistical row's, how many final modes the LM wrote, LM tokens, seconds and the raw explanation."""
    out = []
    for r in read_run(path).done:
        stats = r.trace.get("statistical") or {}
        poly = r.trace.get("polysemantic") or {}
        out.append({"unit": str(r.unit), "number": r.number, "valid": r.score_valid, "test": r.score_test,
                    "stats_valid": stats.get("valid"), "stats_test": stats.get("test"),
                    "lm_modes": len(lm_finals(r.trace)), "lm_tokens": r.lm_tokens, "seconds": r.seconds,
                    "raw": r.trace.get("raw_explanation"), "lead_interval": poly.get("lead_interval")})
    return out


def ablation_gain(done: list[dict], ablation: dict[str, dict], name: str = "without refinement") -> list[str]:
    """Markdown lines: per neuron finished in both runs, its score in the run and in the ablation run (``name``: what
    that run went without), whether both started from the same raw explanation (the LM's hypothesis: then only the
    ablated step differs), and the paired gain NeuronScope - ablation on valid and on test."""
    pairs = [(r, ablation[r["unit"]]) for r in done if r["unit"] in ablation]
    lines = ["", f"## NeuronScope minus the same neurons {name} ({len(pairs)} paired)", "",
             f"| neuron | {name} valid | {name} test | NeuronScope valid | NeuronScope test | same raw explanation |",
             "|---|---:|---:|---:|---:|---|"]
    for r, a in pairs:
        lines.append(f"| {r['unit']} | {a['valid']:.3f} | {a['test']:.3f} | {r['valid']:.3f} | {r['test']:.3f} | "
                     f"{'yes' if r['raw'] == a['raw'] else 'no'} |")
    if pairs:
        dv = [r["valid"] - a["valid"] for r, a in pairs]
        dt = [r["test"] - a["test"] for r, a in pairs]
        lines += ["", f"{name[:1].upper() + name[1:]}: test {_pm(*mean_se([a['test'] for _, a in pairs]))}; paired "
                      f"gain valid {_pm(*mean_se(dv))}, test {paired_text(dt)}; same raw explanation in "
                      f"{sum(r['raw'] == a['raw'] for r, a in pairs)} of {len(pairs)}."]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="run file written by ns-dspy explain")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ablation", action="append", default=[], metavar="[NAME=]RUN",
                    help="run file of the same neurons explained with one step off, named by what it went without "
                         "(default name: without refinement, for --no-refine); adds the paired gain; repeatable")
    args = ap.parse_args(argv)
    path = Path(args.run)
    ablations = [(name, Path(run)) if sep else ("without refinement", Path(name))
                 for name, sep, run in (a.partition("=") for a in args.ablation)]
    for p in [path] + [run for _, run in ablations]:
        if not p.is_file():
            ap.error(f"no such run file {p}: give the file ns-dspy explain --run wrote")
    done = rows(path)
    command = "python experiments/run_summary.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    lines = [f"# NeuronScope beside its own statistical rows ({len(done)} finished neurons)", "", f"`{command}`", "",
             "| neuron | Number | NeuronScope valid | NeuronScope test | statistical valid | statistical test | "
             "LM modes kept | LM tokens | seconds |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in done:
        lines.append(f"| {r['unit']} | {r['number']} | {r['valid']:.3f} | {r['test']:.3f} | {r['stats_valid']:.3f} | "
                     f"{r['stats_test']:.3f} | {r['lm_modes']} | {r['lm_tokens']} | {r['seconds']:.0f} |")
    if done:
        d = [r["test"] - r["stats_test"] for r in done]
        lines += ["", f"NeuronScope test {_pm(*mean_se([r['test'] for r in done]))}, statistical test "
                      f"{_pm(*mean_se([r['stats_test'] for r in done]))}; paired NeuronScope - statistical "
                      f"{paired_text(d)}; "
                      f"LM modes kept in {sum(r['lm_modes'] > 0 for r in done)} of {len(done)}; "
                      f"{sum(r['lm_tokens'] for r in done) / len(done):,.0f} LM tokens and "
                      f"{sum(r['seconds'] for r in done) / len(done):.0f} s per neuron."]
        leads = [r["lead_interval"] for r in done if r["lead_interval"]]
        if leads:  # run files written since the runner stores intervals
            counts = sides(leads)
            lines.append(f"NeuronScope - statistical beyond its 90% interval over the neuron's test windows: above 0 "
                         f"on {counts['above']}, below 0 on {counts['below']}, undecided on {counts['undecided']} of "
                         f"{len(leads)} neurons.")
    for name, run in ablations:
        lines += ablation_gain(done, {r["unit"]: r for r in rows(run)}, name)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
