"""Neurons per minute on Ray workers against the single-process runner, on the same neurons, in one run (#19).

    python benchmarks/scale.py [--store STORE | --tokens 8192 --layers 6] [--neurons 8] [--lm-delay 1.0]
                               [--simulator finetuned:gemma-3-270m] [--iterations 2 --candidates 2]

Explains the same ``--neurons`` neurons (the sharpest peaks of a gemma-3-270m recording, made first when no
``--store`` is given) four ways, each into its own run file with empty simulation caches and no LM cache:

- ``local x1``: ``ns-dspy explain`` in this process, one unit at a time (the baseline of every ratio);
- ``local x2``: the same with ``--concurrency 2`` (threads; the simulator is shared behind a lock);
- ``ray x1`` and ``ray x2``: ``--executor ray`` with 1 and 2 workers (each reserving one CPU) on a local
  single-machine Ray cluster this script starts; every worker loads its own simulator.

The explainer LM is a local OpenAI-compatible server answering like ``tests/sweep/sweep_world.py``'s toy
explainer after ``--lm-delay`` seconds per call - a stand-in for a remote vLLM explainer, whose calls cost
latency, not this machine's CPU (``--lm SPEC`` uses a real one). The simulator is real and runs here. Prints
neurons per minute, the ratios to ``local x1``, the mean seconds per neuron in each stage (what bounds the
run) and, against ``local x1``, on how many neurons each way chose the same explanations and the largest
difference of their scores (the simulator batches differently per process: float rounding).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "sweep"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from sweep_world import ToyServer  # noqa: E402

from ns_dspy.cli import main  # noqa: E402
from ns_dspy.costs import STAGES  # noqa: E402
from ns_dspy.runs import RunStore  # noqa: E402
from ns_dspy.runs.read import cost_row  # noqa: E402

WAYS = {"local x1": [], "local x2": ["--concurrency", "2"],
        "ray x1": ["--executor", "ray", "--workers", "1"], "ray x2": ["--executor", "ray", "--workers", "2"]}


def _store(args, work: Path) -> Path:
    if args.store:
        return Path(args.store)
    from ns_dspy.recording import RecordConfig, record

    return record(RecordConfig(layers=args.layers, tokens=args.tokens), work / "store", progress=False)


def _explain(argv: list[str]) -> float:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    if code != 0:
        raise SystemExit(f"explain failed ({code}): {' '.join(argv)}")
    return time.perf_counter() - start


def main_(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None, help="an exemplar store (default: record one)")
    p.add_argument("--tokens", type=int, default=8192, help="tokens recorded when no --store (default: 8192)")
    p.add_argument("--layers", default="6", help="layers recorded when no --store (default: 6)")
    p.add_argument("--neurons", type=int, default=8, help="neurons explained (default: 8)")
    p.add_argument("--lm", default=None, help="a real explainer LM spec (default: the toy server)")
    p.add_argument("--lm-delay", type=float, default=1.0, help="seconds per toy LM answer (default: 1.0)")
    p.add_argument("--simulator", default="finetuned:gemma-3-270m", help="simulator (default: the offline one)")
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--candidates", type=int, default=2)
    p.add_argument("--ways", default=",".join(WAYS), help=f"which runs (default: {','.join(WAYS)})")
    args = p.parse_args(argv)

    from ns_dspy.cluster import connect
    from ns_dspy.demo import peaked_units
    from ns_dspy.exemplars import ExemplarStore

    ways = [w.strip() for w in args.ways.split(",")]
    with tempfile.TemporaryDirectory(prefix="ns-dspy-scale-") as tmp, ToyServer(delay=args.lm_delay) as server:
        work = Path(tmp)
        store = _store(args, work)
        units = ",".join(map(str, peaked_units(ExemplarStore.open(store), args.neurons)))
        if any(w.startswith("ray") for w in ways):
            connect(None, num_cpus=os.cpu_count())  # a local cluster for the ray ways
        rows = {}
        for way in ways:
            os.environ["NS_DSPY_CACHE"] = str(work / way.replace(" ", "-") / "cache")  # simulate everything again
            run = work / f"{way.replace(' ', '-')}.sqlite"
            base = ["explain", "--store", str(store), "--neurons", units, "--lm", args.lm or server.lm,
                    "--simulator", args.simulator, "--iterations", str(args.iterations), "--candidates",
                    str(args.candidates), "--run", str(run), "-q", "--no-lm-cache"]
            seconds = _explain(base + WAYS[way])
            records = RunStore(run).records()
            costs = [c for r in records if (c := cost_row(r)) is not None]
            rows[way] = {"seconds": seconds, "done": sum(r.status == "done" for r in records),
                         "per_min": 60 * len(records) / seconds,
                         "stages": {s: sum(c.seconds[s] for c in costs) / max(1, len(costs)) for s in STAGES},
                         "chosen": {str(r.unit): (tuple(f.explanation for f in r.typed_trace.finals),
                                                  r.score_valid, r.score_test)
                                    for r in records if r.status == "done"}}
            print(f"{way:>9}: {rows[way]['done']}/{len(records)} done in {seconds:7.1f} s "
                  f"({rows[way]['per_min']:.2f} neurons/min)", flush=True)
    base = rows[ways[0]]
    print(f"\n{args.neurons} neurons, {args.iterations} iterations x {args.candidates} candidates, simulator "
          f"{args.simulator}, LM {'toy server, %.1f s per call' % args.lm_delay if not args.lm else args.lm}; "
          f"{os.cpu_count()} CPUs")
    print(f"{'way':>9} {'neurons/min':>12} {'ratio':>6} " + " ".join(f"{s[:7]:>8}" for s in STAGES)
          + "  (mean s per neuron by stage)")
    for way in ways:
        r = rows[way]
        print(f"{way:>9} {r['per_min']:>12.2f} {r['per_min'] / base['per_min']:>6.2f} "
              + " ".join(f"{r['stages'][s]:>8.1f}" for s in STAGES))
    for way in ways[1:]:
        units = sorted(set(base["chosen"]) & set(rows[way]["chosen"]))
        same = sum(base["chosen"][u][0] == rows[way]["chosen"][u][0] for u in units)
        diff = max((abs(a - b) for u in units if base["chosen"][u][0] == rows[way]["chosen"][u][0]
                    for a, b in zip(base["chosen"][u][1:], rows[way]["chosen"][u][1:])), default=0.0)
        print(f"{way} against {ways[0]}: same explanations for {same} of {len(units)} neurons done by both; "
              f"largest score difference where the same: {diff:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main_())
