"""What stopping LM modes that add nothing to the word lists (``--mode-stop``) saves and costs, from two run files.

    ns-dspy explain --store S --neurons N... --run STOP/run.sqlite                   # the default: --mode-stop
    ns-dspy explain --store S --neurons N... --no-mode-stop --run FULL/run.sqlite    # the same neurons, every call
    python experiments/mode_stop.py STOP/run.sqlite FULL/run.sqlite --out experiments/results/NAME

Run the second after the first with the same LM cache: every call the stopped run made is answered by the cache
(same prompts, same rollout ids), so both runs start from the same raw explanations and share every answer up to
where a mode stopped, and the second run pays only for the iterations the first skipped. Per neuron finished in
both (read-only, :func:`ns_dspy.runs.read.read_run`): the LM calls each method made (calls paid plus calls answered
by the cache, :func:`ns_dspy.lms.lm_usage`), the LM modes the stop ended (``"stopped": "no_contribution"``), the
refinement seconds (the full method's: both runs' refinement seconds added, as the cached calls cost the second
run about nothing), the neuron-level valid and test scores; then the means, the paired differences and the share
of LM calls saved. Writes ``OUT/summary.md``.
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


def neuron_rows(path: Path) -> dict[str, dict]:
    """Per finished neuron of a run file: LM calls made (paid and cached), LM modes stopped for adding nothing,
    refinement seconds, valid and test scores."""
    out = {}
    for r in read_run(path).done:
        trace = r.typed_trace
        usage = trace.lm_usage
        out[str(r.unit)] = {
            "calls": int(usage.get("calls", 0)) + int(usage.get("cached_calls", 0)),
            "stopped": sum(m.source == "lm" and m.stopped == "no_contribution" for m in trace.modes),
            "lm_modes": sum(m.source == "lm" for m in trace.modes),
            "refine_s": float((trace.cost.seconds if trace.cost else {}).get("refinement", 0.0)),
            "valid": r.score_valid, "test": r.score_test}
    return out


def summary(stop: dict[str, dict], full: dict[str, dict], command: str) -> str:
    """Markdown: per neuron in both runs, then means, paired differences (stop - full) and the calls saved."""
    units = [u for u in stop if u in full]
    if not units:
        raise SystemExit("error: the two run files have no finished neuron in common: run both on the same neurons")
    lines = [f"# LM modes stopped when they add nothing to the word lists ({len(units)} neurons)", "",
             f"`{command}`", "",
             "| neuron | LM modes | stopped | LM calls stop / full | refinement s stop / full | valid stop / full | "
             "test stop / full |", "|---|---:|---:|---:|---:|---:|---:|"]
    for u in units:
        s, f = stop[u], full[u]
        lines.append(f"| {u} | {s['lm_modes']} | {s['stopped']} | {s['calls']} / {f['calls']} | "
                     f"{s['refine_s']:.0f} / {s['refine_s'] + f['refine_s']:.0f} | "
                     f"{s['valid']:.3f} / {f['valid']:.3f} | {s['test']:.3f} / {f['test']:.3f} |")
    calls_stop, calls_full = sum(stop[u]["calls"] for u in units), sum(full[u]["calls"] for u in units)
    sec_stop = [stop[u]["refine_s"] for u in units]
    sec_full = [stop[u]["refine_s"] + full[u]["refine_s"] for u in units]
    lines += ["", f"- LM calls: {calls_stop} with the stop, {calls_full} without ({1 - calls_stop / calls_full:.0%} "
                  f"fewer); modes stopped: {sum(stop[u]['stopped'] for u in units)} of "
                  f"{sum(stop[u]['lm_modes'] for u in units)} LM modes, in "
                  f"{sum(stop[u]['stopped'] > 0 for u in units)} of {len(units)} neurons",
              "- refinement seconds per neuron: {:.0f} ± {:.0f} with the stop, {:.0f} ± {:.0f} without".format(
                  *mean_se(sec_stop), *mean_se(sec_full)),
              f"- valid: {_pm(*mean_se([stop[u]['valid'] for u in units]))} with the stop, "
              f"{_pm(*mean_se([full[u]['valid'] for u in units]))} without; paired stop - full "
              f"{paired_text([stop[u]['valid'] - full[u]['valid'] for u in units], tol=1e-3)}",
              f"- test: {_pm(*mean_se([stop[u]['test'] for u in units]))} with the stop, "
              f"{_pm(*mean_se([full[u]['test'] for u in units]))} without; paired stop - full "
              f"{paired_text([stop[u]['test'] - full[u]['test'] for u in units], tol=1e-3)}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stop", type=Path, help="run file made with --mode-stop (the default)")
    parser.add_argument("full", type=Path, help="run file of the same neurons made after it with --no-mode-stop")
    parser.add_argument("--out", type=Path, required=True, help="folder for summary.md")
    args = parser.parse_args(argv)
    for path in (args.stop, args.full):
        if not path.is_file():
            raise SystemExit(f"error: no run file at {path}: give the run files ns-dspy explain --run wrote")
    command = "python experiments/mode_stop.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = summary(neuron_rows(args.stop), neuron_rows(args.full), command)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "summary.md", text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
