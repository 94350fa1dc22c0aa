"""A plan for explaining every MLP neuron of Llama-3.1-8B (32 layers x 14,336 = 458,752) with the paper's
settings, from per-neuron figures measured in a run file (#19).

    python experiments/scale_plan.py --run RUN.sqlite [--gpus 8 --gpus 64] [--decode-tps 5777]
                                     [--prefill-tps 24700] [--neurons 458752] [--out experiments/results/scale-plan.md]

Measured (from ``--run``, a run of ``ns-dspy explain`` with the settings to plan for): per neuron, the LM's
prompt and completion tokens and the simulated tokens (what every run's trace records, ``ns_dspy.costs``),
and the seconds by stage on the machine that made it. Scaled by GPU throughputs that are parameters with
cited defaults, for the paper's layout (explainer and simulator both Llama-3.1-8B served by vLLM):

- ``--decode-tps`` 5,777 generated tokens/s per H100: MLPerf Inference v5.1, Llama-3.1-8B (FP8) on vLLM 0.10,
  offline scenario, one H100 (Red Hat's submission). The explainer's completions are decode-bound.
- ``--prefill-tps`` 24,700 prompt tokens/s per H100: 2 x 8.0e9 FLOP per token at 40% of the H100's 989 dense
  bf16 TFLOP/s. Prompt processing (the explainer's prompts, and simulation: the fine-tuned simulator reads
  every exemplar token once per explanation, prefill only) is compute-bound.

GPU-seconds per neuron = completion / decode + (prompt + simulated) / prefill; wall time on N GPUs = neurons x
GPU-seconds / N (perfect packing: vLLM servers kept busy by enough Ray workers; recording not included -
Transluce's exemplar pass for all these neurons took 64 h on 2 A100s). Prints the per-neuron figures, which
part bounds the run, and the wall time and GPU-hours for each ``--gpus``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from ns_dspy.atomic import atomic_write_text  # noqa: E402
from ns_dspy.costs import STAGES  # noqa: E402
from ns_dspy.runs.read import cost_row, read_run  # noqa: E402

LLAMA_31_8B_NEURONS = 32 * 14_336


def plan(run_path: str | Path, *, gpus: list[int], decode_tps: float, prefill_tps: float, neurons: int) -> str:
    run = read_run(run_path)
    rows = [c for r in run.done if (c := cost_row(r)) is not None]
    if not rows:
        raise SystemExit(f"{run_path} has no done neuron with a cost record")
    n = len(rows)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    prompt = mean([c.lm_prompt_tokens for c in rows])
    completion = mean([c.lm_completion_tokens for c in rows])
    simulated = mean([c.simulated_tokens for c in rows])
    seconds = {s: mean([c.seconds[s] for c in rows]) for s in STAGES}
    parts = {"explainer decode (completions)": completion / decode_tps,
             "explainer prefill (prompts)": prompt / prefill_tps,
             "simulator prefill (exemplar tokens)": simulated / prefill_tps}
    per_neuron = sum(parts.values())
    bound = max(parts, key=parts.get)
    explain = run.config.get("explain") or {}
    lines = [f"# Explaining all {neurons:,} MLP neurons of Llama-3.1-8B: a plan from measured per-neuron figures", "",
             f"Command: `python experiments/scale_plan.py --run {run_path} "
             + " ".join(f"--gpus {g}" for g in gpus) + f" --decode-tps {decode_tps:g} --prefill-tps {prefill_tps:g}`",
             "",
             f"Measured on {n} neuron(s) of `{run_path}` (settings: {explain.get('iterations')} iterations x "
             f"{explain.get('candidates')} candidates, LM `{run.config.get('lm')}`, simulator "
             f"`{run.config.get('simulator')}`), mean per neuron:", "",
             "| LM prompt tokens | LM completion tokens | simulated tokens | "
             + " | ".join(f"{s} s" for s in STAGES) + " |",
             "|---:|---:|---:|" + "---:|" * len(STAGES),
             f"| {prompt:,.0f} | {completion:,.0f} | {simulated:,.0f} | "
             + " | ".join(f"{seconds[s]:.1f}" for s in STAGES) + " |", "",
             f"GPU throughput assumed per H100: decode {decode_tps:,.0f} tok/s, prefill {prefill_tps:,.0f} tok/s "
             "(see the script's docstring for the sources).", "",
             "| part | GPU-seconds per neuron | share |", "|---|---:|---:|"]
    lines += [f"| {k} | {v:.3f} | {v / per_neuron:.0%} |" for k, v in parts.items()]
    lines += [f"| **total** | **{per_neuron:.3f}** | |", "",
              f"The run is bounded by the **{bound}**.", "",
              "| H100 GPUs | wall time | GPU-hours |", "|---:|---:|---:|"]
    total = neurons * per_neuron
    for g in gpus:
        hours = total / g / 3600
        lines.append(f"| {g} | {hours:,.1f} h ({hours / 24:,.1f} days) | {total / 3600:,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a run file of ns-dspy explain with the settings to plan for")
    p.add_argument("--gpus", type=int, action="append", default=None, help="GPU counts (repeatable; default 8, 64)")
    p.add_argument("--decode-tps", type=float, default=5777.0, help="generated tokens/s per GPU (default: 5777)")
    p.add_argument("--prefill-tps", type=float, default=24700.0, help="prompt tokens/s per GPU (default: 24700)")
    p.add_argument("--neurons", type=int, default=LLAMA_31_8B_NEURONS, help="neurons to plan for (default: 458752)")
    p.add_argument("--out", default=None, help="also write the plan to this markdown file")
    args = p.parse_args(argv)
    text = plan(args.run, gpus=args.gpus or [8, 64], decode_tps=args.decode_tps, prefill_tps=args.prefill_tps,
                neurons=args.neurons)
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
