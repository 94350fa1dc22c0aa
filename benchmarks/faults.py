"""``ns-dspy explain`` against an LM that fails a share of its calls, beside the same run fault-free (issue 18).

    python benchmarks/faults.py [--neurons 20] [--rate 0.3] [--latency 1.0] [--lm-timeout 5] [--hang 10]
                                [--concurrency 4] [--seed 0]

Both runs explain the same ``--neurons`` trigger-word neurons of a toy store with the keyword simulator and an
exact word embedder, through the command line (``ns_dspy.cli.main``), each against its own fake
OpenAI-compatible server on 127.0.0.1 (``tests/fault_lm.py``) whose valid answers take ``--latency`` seconds.
The faulty run is made twice: with hedged LM calls (the default) and with ``--no-lm-hedge``.
The faulty server fails a share ``--rate`` of calls, spread evenly over HTTP 500, HTTP 429 (``Retry-After:
1``), a connection closed without an answer, a hang of ``--hang`` seconds (longer than ``--lm-timeout``) and
garbage text no adapter can parse; which calls fail is drawn from ``--seed`` and each request's content. Each
run gets its own run file and empty DSPy and simulation caches, and is then rerun with the same command, as
the README says to do after failures.

Prints, per run: neurons done after the first run and after the rerun, wall seconds of each, LM calls, the
faults the server injected and those the summary counted; then the wall-time ratios (target: faulty <= 2x
fault-free) and how long each hung call was waited for (target: at most the timeout).
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
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from fake_chat import FakeChatServer  # noqa: E402
from fault_lm import FaultyExplainer, explain_argv, fault_store  # noqa: E402

from ns_dspy.cli import main  # noqa: E402
from ns_dspy.runs import RunStore  # noqa: E402


def _explain(argv: list[str]) -> tuple[float, str]:
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        main(argv)
    return time.perf_counter() - start, out.getvalue()


def _line(text: str, prefix: str) -> str:
    return next((line[len(prefix):].strip() for line in text.splitlines() if line.startswith(prefix)), "-")


def scenario(work: Path, args, rate: float, *extra: str) -> dict:
    """Explain ``args.neurons`` neurons against a server failing ``rate`` of its calls, then rerun."""
    work.mkdir(parents=True)
    os.environ["NS_DSPY_CACHE"] = str(work / "sim-cache")
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=str(work / "dspy-cache"))
    store = fault_store(work / "store", args.neurons)
    explainer = FaultyExplainer(rate=rate, seed=args.seed, latency_s=args.latency, hang_s=args.hang)
    result = {"rate": rate}
    with FakeChatServer(explainer) as server:
        argv = explain_argv(store.path, work / "run.sqlite", server.url, args.neurons, "--lm-timeout",
                            str(args.lm_timeout), "--concurrency", str(args.concurrency), *extra)
        for name in ("first", "rerun"):
            seconds, out = _explain(argv)
            records = RunStore(work / "run.sqlite").records()
            result[name] = {"seconds": seconds, "done": sum(r.status == "done" for r in records),
                            "failed": _line(out, "failed:"), "lm_failures": _line(out, "LM call failures:"),
                            "errors": [f"{r.unit} {r.trace.get('failure')}: {r.error}" for r in records
                                       if r.status != "done"]}
        result.update(calls=server.calls, injected=dict(explainer.injected), hangs=[h.waited_s for h in server.hangs])
    return result


def _warm_up(work: Path, args) -> None:
    """Explain one neuron, fault-free, so that neither measured run pays the first run's imports and set-up
    (litellm, HDBSCAN, the program's first build)."""
    scenario(work, argparse.Namespace(**{**vars(args), "neurons": 1, "latency": 0.0}), 0.0)


def main_(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--neurons", type=int, default=20)
    p.add_argument("--rate", type=float, default=0.3, help="share of LM calls that fail")
    p.add_argument("--latency", type=float, default=1.0, help="seconds a valid answer takes")
    p.add_argument("--lm-timeout", type=float, default=5.0)
    p.add_argument("--hang", type=float, default=10.0, help="seconds a hanging call sends nothing")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ns-dspy-faults-") as tmp:
        _warm_up(Path(tmp) / "warm-up", args)
        clean = scenario(Path(tmp) / "fault-free", args, 0.0)
        faulty = scenario(Path(tmp) / "faulty", args, args.rate)
        unhedged = scenario(Path(tmp) / "faulty-unhedged", args, args.rate, "--no-lm-hedge")
    n = args.neurons
    print(f"ns-dspy explain of {n} neurons, --concurrency {args.concurrency}, --lm-timeout {args.lm_timeout:g} s; "
          f"valid answers take {args.latency:g} s, hangs {args.hang:g} s; seed {args.seed}")
    print(f"{'run':<16} {'done':>6} {'wall s':>7} {'rerun done':>10} {'wall s':>7} {'total s':>8} {'LM calls':>9}")
    for name, r in (("fault-free", clean), (f"{args.rate:.0%} faults", faulty), ("  --no-lm-hedge", unhedged)):
        total = r["first"]["seconds"] + r["rerun"]["seconds"]
        print(f"{name:<16} {r['first']['done']:>3}/{n:<2} {r['first']['seconds']:>7.1f} {r['rerun']['done']:>7}/{n:<2} "
              f"{r['rerun']['seconds']:>7.1f} {total:>8.1f} {r['calls']:>9}")
    injected = ", ".join(f"{k} {v}" for k, v in sorted(faulty["injected"].items())) or "none"
    print(f"faults injected: {sum(faulty['injected'].values())} ({injected})")
    print(f"summary of the faulty first run: failed: {faulty['first']['failed']}; "
          f"LM call failures: {faulty['first']['lm_failures']}")
    for name, r in (("fault-free", clean), ("faulty", faulty), ("unhedged faulty", unhedged)):
        for error in r["first"]["errors"]:
            print(f"failed in the {name} first run: {error[:160]}")
    first = faulty["first"]["seconds"] / clean["first"]["seconds"]
    total = (faulty["first"]["seconds"] + faulty["rerun"]["seconds"]) / clean["first"]["seconds"]
    print(f"wall time faulty / fault-free: first run {first:.2f}x, first run + rerun {total:.2f}x (target <= 2x)")
    first = unhedged["first"]["seconds"] / clean["first"]["seconds"]
    total = (unhedged["first"]["seconds"] + unhedged["rerun"]["seconds"]) / clean["first"]["seconds"]
    print(f"  with --no-lm-hedge: first run {first:.2f}x, first run + rerun {total:.2f}x; "
          f"its LM call failures: {unhedged['first']['lm_failures']}")
    if faulty["hangs"]:
        print(f"hung calls: {len(faulty['hangs'])}, each given up by the client after "  # hedged or not
              f"{min(faulty['hangs']):.2f}-{max(faulty['hangs']):.2f} s (--lm-timeout {args.lm_timeout:g})")


if __name__ == "__main__":
    main_()
