"""Explaining many units: concurrency, per-unit failures, LM accounting, test scores, the run store.

Each unit runs the program on its train exemplars and valid data, then its final explanations are scored on
test (reporting only). A unit that fails - the LM endpoint down, garbage the agents cannot parse, no
activation, no cluster - is stored as ``failed`` with a one-line reason and the run goes on. Finished units
are skipped when the run is resumed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

import dspy
from tqdm.auto import tqdm

from ..errors import NsDspyError
from ..exemplars import ExemplarStore
from ..lms import lm_usage
from ..program import NeuronScope
from ..scoring import HeldOut, polysemantic, report
from ..simulators.base import LockedSimulator
from ..types import Exemplar, UnitId
from .store import NeuronRecord, RunStore

__all__ = ["explain_units", "explain_unit"]

log = logging.getLogger(__name__)


def _exemplar_trace(exemplars: Sequence[Exemplar]) -> list[dict]:
    return [{"window": ex.window, "tokens": list(ex.tokens), "activations": [round(float(a), 4) for a in ex.activations]}
            for ex in exemplars]


def explain_unit(program: NeuronScope, store: ExemplarStore, unit: UnitId, lm) -> NeuronRecord:
    start = time.perf_counter()
    unit_lm = lm.copy() if hasattr(lm, "copy") else lm
    trace: dict = {"unit": str(unit)}
    try:
        top = store.exemplars(unit, "train", "top")
        train = top + store.exemplars(unit, "train", "random")  # the agents' evidence: top and quiet windows
        valid = HeldOut.from_store(store, unit, "valid")
        test = HeldOut.from_store(store, unit, "test")
        trace["exemplars_shown"] = _exemplar_trace(top[: program.config.max_exemplars])
        with dspy.context(lm=unit_lm):
            pred = program(train=train, valid=valid)
        trace.update(pred.trace)
        finals = [{"explanation": e, "valid": None, "test": report(program.simulator, e, test).value}
                  for e in pred.explanations]
        for entry, cluster in zip(finals, pred.trace.get("clusters", [])):
            entry["valid"] = cluster.get("valid")
        single = program.config.baseline or program.config.method == "stats"
        if single:
            finals[0]["valid"] = pred.polysemantic
        statistical = trace.get("statistical")
        if statistical:  # the no-LM row beside every method, on the same test data
            statistical["test"] = (finals[0]["test"] if program.config.method == "stats"
                                   else report(program.simulator, statistical["explanation"], test).value)
        poly_test = polysemantic(program.simulator, pred.explanations, test).value
        trace.update(finals=finals, polysemantic={"valid": pred.polysemantic, "test": poly_test})
        usage = lm_usage(unit_lm)
        trace["lm_usage"] = usage
        tokens, cost = usage["prompt_tokens"] + usage["completion_tokens"], usage["cost"]
        return NeuronRecord(unit, "done", None, len(pred.explanations), pred.polysemantic, poly_test,
                            poly_test if single else None, tokens, cost,
                            round(time.perf_counter() - start, 2), trace)
    except Exception as err:  # one unit's failure never stops the run
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if not isinstance(err, NsDspyError):
            message = f"{type(err).__name__}: {message}"
            log.debug("unit %s failed", unit, exc_info=True)
        usage = lm_usage(unit_lm)
        trace["lm_usage"] = usage
        tokens, cost = usage["prompt_tokens"] + usage["completion_tokens"], usage["cost"]
        return NeuronRecord(unit, "failed", message, None, None, None, None, tokens, cost,
                            round(time.perf_counter() - start, 2), trace)


def explain_units(program: NeuronScope, store: ExemplarStore, units: Sequence[UnitId], run: RunStore, lm, *,
                  concurrency: int = 1, progress: bool = True) -> list[NeuronRecord]:
    """Explain ``units`` not yet done in ``run``, up to ``concurrency`` at a time; returns all run records."""
    for unit in units:
        store.stats(unit)  # an unrecorded unit is a user mistake: say so before any work starts
    done = run.done()
    todo = [u for u in units if u not in done]
    if len(todo) < len(units):
        log.info("resuming: %d of %d units already done", len(units) - len(todo), len(units))
    if concurrency > 1:
        program.simulator = LockedSimulator(program.simulator)
    bar = tqdm(total=len(todo), desc="explaining", unit="neuron", disable=not progress)
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(explain_unit, program, store, u, lm): u for u in todo}
        for future in as_completed(futures):
            record = future.result()
            run.put(record)
            if record.status == "failed":
                log.warning("unit %s failed: %s", record.unit, record.error)
            bar.update(1)
    bar.close()
    return [r for r in run.records() if r.unit in set(units)]
