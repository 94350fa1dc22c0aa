"""``ns-dspy demo``: the whole path on the offline defaults, in one command on a fresh machine.

It records every MLP neuron of a few layers of gemma-3-270m over the default corpus, then shows the
most frequently active neurons (the paper explains those) with their top train exemplars. Finished work in
the output directory is reused, so a second run starts where the first stopped.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from .exemplars import ExemplarStore
from .recording import RecordConfig, record
from .show import render_exemplar
from .types import UnitId

__all__ = ["run_demo"]

log = logging.getLogger(__name__)


def run_demo(out: Path, *, tokens: int, layers: str, progress: bool = True, per_layer: int = 3) -> int:
    store_path = out / "store"
    if (store_path / "manifest.json").exists():
        log.info("reusing the recording in %s", store_path)
    else:
        config = RecordConfig(layers=layers, tokens=tokens)
        record(config, store_path, progress=progress)
    store = ExemplarStore.open(store_path)
    print(store.describe())
    m = store.manifest
    print(f"recorded {m['tokens_recorded']:,} tokens at {m['tokens_per_second']:,} tok/s; corpus: "
          + ", ".join(s["name"] for s in m["corpus"].get("sources", [])))
    color = sys.stdout.isatty()
    for layer in store.layers:
        units, stats = store.layer_units(layer), store.layer_stats(layer)
        order = sorted(range(len(units)), key=lambda i: -stats["frequency"][i])[:per_layer]
        for i in order:
            unit = UnitId(layer, int(units[i]))
            top = store.exemplars(unit, "train", "top")[:1]
            print(f"\nneuron {unit}: active on {stats['frequency'][i]:.1%} of tokens, max {stats['max'][i]:.3g}")
            if top:
                print("  " + render_exemplar(top[0], float(stats["max"][i]), color=color))
    print(f"\nNext: ns-dspy show {store_path} {store.units()[0]}  |  ns-dspy units {store_path}")
    return 0
