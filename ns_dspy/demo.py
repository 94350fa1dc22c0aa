"""``ns-dspy demo``: the whole path on the offline defaults, in one command on a fresh machine.

1. Record every MLP neuron of a few layers of gemma-3-270m over the default corpus.
2. Pick the units with the sharpest peaks (highest (max - mean) / std): they have a recognisable trigger.
3. Explain them with NeuronScope on the offline stack (Qwen2.5-Coder-1.5B-Instruct in process, the MiniLM
   embedder, the default simulator) with small settings, print the summary table and write the run's HTML report
   (``report.html`` in the output directory).

Finished work in the output directory (the recording, each explained neuron) is reused, so a second run
starts where the first stopped.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .exemplars import ExemplarStore
from .recording import RecordConfig, record
from .show import render_exemplar
from .types import UnitId

__all__ = ["run_demo", "peaked_units", "conclude"]

log = logging.getLogger(__name__)


def peaked_units(store: ExemplarStore, n: int) -> list[UnitId]:
    """The ``n`` units with the highest peak z-score, (max - mean) / std, over all layers."""
    scored = []
    for layer in store.layers:
        st, idx = store.layer_stats(layer, require=("max", "mean", "std")), store.layer_units(layer)
        z = (st["max"] - st["mean"]) / np.maximum(st["std"], 1e-6)
        scored += [(float(z[i]), UnitId(layer, int(idx[i]))) for i in range(len(idx))]
    return [u for _, u in sorted(scored, key=lambda t: (-t[0], t[1]))[:n]]


def run_demo(out: Path, *, tokens: int, layers: str, units: int = 2, iterations: int = 2, candidates: int = 2,
             explain: bool = True, progress: bool = True) -> int:
    from .config import ExplainConfig, RunConfig

    if units < 1:
        raise ConfigError(f"--units must be at least 1, got {units}")
    # every option is checked before anything is recorded or written
    config = RunConfig(explain=ExplainConfig(iterations=iterations, candidates=candidates, max_exemplars=10))
    record_config = RecordConfig(layers=layers, tokens=tokens)
    store_path = out / "store"
    if (store_path / "manifest.json").exists():
        log.info("reusing the recording in %s", store_path)
    else:
        record(record_config, store_path, progress=progress)
    store = ExemplarStore.open(store_path)
    m = store.manifest
    print(f"{store.describe()}\nrecorded {m['tokens_recorded']:,} tokens at {m['tokens_per_second']:,} tok/s; corpus: "
          + ", ".join(s["name"] for s in m["corpus"].get("sources", [])))
    chosen = peaked_units(store, units)
    color = sys.stdout.isatty()
    for unit in chosen:
        stats = store.stats(unit, require=("max", "frequency"))
        top = store.exemplars(unit, "train", "top")[:1]
        print(f"\nneuron {unit}: max {stats['max']:.3g}, active on {stats['frequency']:.1%} of tokens")
        if top:
            print("  " + render_exemplar(top[0], stats["max"], color=color))
    if not explain:
        return 0
    from .api import explain as explain_units

    print(f"\nexplaining {len(chosen)} neurons ({iterations} refinement iterations x {candidates} candidates)")
    return conclude(explain_units(config, store_path, chosen, run=out / "run.sqlite", progress=progress), out)


def conclude(result, out: Path) -> int:
    """Print the summary table of the demo's run (an :class:`~ns_dspy.api.ExplainResult`) and write its HTML
    report to ``out/report.html``; 0 if a neuron was explained."""
    from .report import write_report
    from .runs.read import summary_table

    print(summary_table(result.records))
    print(f"run stored in {result.run_path}")
    if result.records:
        page = write_report(result.run_path, out / "report.html")
        print(f"report (exemplars as heat maps, each mode's refinement and candidates): {page}")
    return 0 if result.done else 1
