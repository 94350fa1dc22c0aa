"""Explaining many units: concurrency, per-unit failures, LM accounting, test scores, the run store.

Each unit runs the program on its train exemplars and valid data, then its final explanations are scored on
test (reporting only). A unit that fails - the LM endpoint down, garbage the agents cannot parse, no
activation, no cluster, its time budget spent - is stored as ``failed`` with a one-line reason and a kind
(``trace["failure"]``: ``lm_parse``, ``lm_error``, ``budget`` or ``other``) and the run goes on. Finished
units are skipped when the run is resumed.

**Retries.** A rerun retries failed units as attempt ``n`` (``trace["attempt"]``, counted in the run file);
the agents derive their fresh-sample rollout ids from it (``dspy.context(ns_dspy_attempt=n)``, see
:mod:`ns_dspy.agents.reliability`), so a retry never gets the cached garbage answer of an earlier attempt.

**Budget.** ``neuron_budget_s`` is a per-unit wall-clock budget, enforced cooperatively: the deadline is put
in the unit's ``dspy.context`` and every agent checks it before each LM call, so the unit fails with "over its
time budget" at the first LM call after the deadline. Nothing is interrupted midway (no abandoned thread keeps
calling the LM or the shared simulator): a unit may overrun by one LM call, which the LM timeout bounds, plus
one simulator batch; a unit that finishes past its deadline is kept.

**Several processes on one run file.** Each unit is claimed in the run store before any work on it (an atomic
lease, :meth:`~ns_dspy.runs.store.RunStore.claim`), the leases of units in progress are renewed every third
of ``lease_s`` by a heartbeat thread, and a unit's claim is dropped when its row is written. A unit claimed by
another live process is skipped and named at the end ("being explained by another process"); a killed
process's leases expire and a later run takes its units over. So every unit is explained once, and a late
``failed`` never replaces a ``done``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

import dspy
from tqdm.auto import tqdm

from .. import costs
from ..agents.reliability import ATTEMPT_KEY, BUDGET_KEY
from ..errors import ConfigError, NsDspyError
from ..exemplars import ExemplarStore
from ..lms import lm_usage
from ..program import NeuronScope
from ..scoring import HeldOut, Score, bootstrap, polysemantic, report
from ..simulators.base import LockedSimulator
from ..trace import Cost, Final, Scores, Shown, Trace
from ..types import Exemplar, UnitId
from .store import DEFAULT_LEASE_S, NeuronRecord, RunStore

__all__ = ["explain_units", "explain_unit"]

log = logging.getLogger(__name__)


def _exemplar_trace(exemplars: Sequence[Exemplar]) -> list[Shown]:
    return [Shown(list(ex.tokens), [round(float(a), 4) for a in ex.activations], ex.window) for ex in exemplars]


def _failure_kind(err: BaseException) -> str:
    """``lm_parse`` (an answer the agents could not use), ``lm_error`` (the LM call failed: down, timeout,
    refused), ``budget`` (over the unit's time budget) or ``other``."""
    from dspy.utils.exceptions import AdapterParseError, LMError

    kind = getattr(err, "kind", None)  # UnusableAnswer: lm_parse, OverBudget: budget
    if isinstance(kind, str):
        return kind
    if isinstance(err, AdapterParseError):
        return "lm_parse"
    return "lm_error" if isinstance(err, (LMError, ConnectionError, TimeoutError)) else "other"


def explain_unit(program: NeuronScope, store: ExemplarStore, unit: UnitId, lm, *, attempt: int = 0,
                 budget_s: float | None = None) -> NeuronRecord:
    """One unit's record, never an exception. ``attempt``: earlier failed runs of this unit (the agents' fresh
    samples depend on it); ``budget_s``: its wall-clock budget (see the module docstring). Its trace's ``cost``
    says what it cost: LM tokens, simulated tokens and seconds by stage (:mod:`ns_dspy.costs`)."""
    with costs.metering() as meter:
        record, trace = _explain_unit(program, store, unit, lm, attempt=attempt, budget_s=budget_s)
    metered = meter.to_dict()
    trace.cost = Cost(lm_prompt_tokens=int(trace.lm_usage.get("prompt_tokens") or 0),
                      lm_completion_tokens=int(trace.lm_usage.get("completion_tokens") or 0),
                      simulated_tokens=metered["simulated_tokens"], simulator_calls=metered["simulator_calls"],
                      seconds=metered["seconds"], seconds_total=record.seconds)
    record.trace = trace.to_dict()
    return record


def _interval(tested: Score, test: HeldOut, beside: Score | None = None) -> list[float]:
    """The 90% bootstrap interval over the test windows of ``tested``'s score, or of its lead over ``beside`` on
    the same windows (:mod:`ns_dspy.scoring.bootstrap`), as ``[low, high]``."""
    trues, kinds = [ex.activations for ex in test.exemplars], [ex.kind for ex in test.exemplars]
    if beside is None:
        return bootstrap.interval(tested.predictions, trues, kinds).to_list()
    return bootstrap.difference_interval(tested.predictions, beside.predictions, trues, kinds).to_list()


def _explain_unit(program: NeuronScope, store: ExemplarStore, unit: UnitId, lm, *, attempt: int,
                  budget_s: float | None) -> tuple[NeuronRecord, Trace]:
    """The unit's record (its ``trace`` still empty) and its :class:`~ns_dspy.trace.Trace`."""
    start = time.perf_counter()
    unit_lm = lm.copy() if hasattr(lm, "copy") else lm
    shown: list[Shown] = []
    context = {ATTEMPT_KEY: attempt}
    if budget_s is not None:
        context[BUDGET_KEY] = (time.monotonic() + budget_s, budget_s)
    try:
        top = store.exemplars(unit, "train", "top")
        train = top + store.exemplars(unit, "train", "random")  # the agents' evidence: top and quiet windows
        valid = HeldOut.from_store(store, unit, "valid")
        test = HeldOut.from_store(store, unit, "test")
        shown = _exemplar_trace(top[: program.config.max_exemplars])
        with dspy.context(lm=unit_lm, **context):
            pred = program(train=train, valid=valid)
        trace: Trace = pred.trace
        trace.unit, trace.attempt, trace.exemplars_shown = str(unit), attempt, shown
        trace.finals = [Final(e, valid_score, report(program.simulator, e, test).value)
                        for e, valid_score in zip(pred.explanations, pred.valids)]
        single = program.config.baseline or program.config.method == "stats"
        # test scores of several explanations reuse the calibration the program fitted on valid (else: fitted here)
        maps = program.config.test_maps
        tested = polysemantic(program.simulator, pred.explanations, test,
                              calibration=pred.get("calibration") or valid, final_kind=maps)
        poly_test = tested.value
        trace.polysemantic = Scores(pred.polysemantic, poly_test, test_interval=_interval(tested, test))
        if trace.statistical is not None:  # the no-LM row beside every method, on the same test data
            if program.config.method == "stats":
                trace.statistical.test = poly_test
            else:
                row = polysemantic(program.simulator, trace.statistical.explanations, test,
                                   calibration=pred.get("statistical_calibration") or valid, final_kind=maps)
                trace.statistical.test = row.value
                trace.polysemantic.lead_interval = _interval(tested, test, beside=row)
        trace.lm_usage = usage = lm_usage(unit_lm)
        tokens, cost = usage["prompt_tokens"] + usage["completion_tokens"], usage["cost"]
        return NeuronRecord(unit, "done", None, len(pred.explanations), pred.polysemantic, poly_test,
                            poly_test if single else None, tokens, cost,
                            round(time.perf_counter() - start, 2), {}), trace
    except Exception as err:  # one unit's failure never stops the run
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if not isinstance(err, NsDspyError):
            message = f"{type(err).__name__}: {message}"
            log.debug("unit %s failed", unit, exc_info=True)
        usage = lm_usage(unit_lm)
        trace = Trace(unit=str(unit), attempt=attempt, exemplars_shown=shown, lm_usage=usage,
                      failure=_failure_kind(err))
        tokens, cost = usage["prompt_tokens"] + usage["completion_tokens"], usage["cost"]
        return NeuronRecord(unit, "failed", message, None, None, None, None, tokens, cost,
                            round(time.perf_counter() - start, 2), {}), trace


class _Heartbeat:
    """Renews ``run``'s claims every third of ``lease_s`` until stopped (a daemon thread)."""

    def __init__(self, run: RunStore, lease_s: float):
        self.run, self.lease_s, self.stop = run, lease_s, threading.Event()
        self.thread = threading.Thread(target=self._beat, name="ns-dspy-claims", daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.lease_s / 3):
            try:
                self.run.renew(self.lease_s)
            except Exception as err:  # a busy or closed file: try again at the next beat
                log.warning("could not renew the run's claims: %s", err)

    def __enter__(self) -> "_Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def explain_units(program: NeuronScope | None, store: ExemplarStore, units: Sequence[UnitId], run: RunStore, lm, *,
                  concurrency: int = 1, progress: bool = True, neuron_budget_s: float | None = None,
                  lease_s: float = DEFAULT_LEASE_S, workers=None) -> list[NeuronRecord]:
    """Explain ``units`` not yet done in ``run``, up to ``concurrency`` at a time; returns all run records.

    ``neuron_budget_s``: each unit's wall-clock budget (None: unlimited). ``lease_s``: how long a claim on a
    unit lasts without renewal (renewed every third of it while the unit is worked on). Units claimed by
    another process are skipped and named in a warning at the end.

    ``workers``: explain elsewhere - an object whose ``explain(unit, attempt, budget_s)`` returns the unit's
    :class:`NeuronRecord` (e.g. :class:`ns_dspy.cluster.RayWorkers`, Ray actors that each built the program);
    ``program`` and ``lm`` are then unused. This process still claims each unit, writes its row once and
    shows the progress: the run store stays the single source of truth."""
    if neuron_budget_s is not None and not neuron_budget_s > 0:
        raise ConfigError(f"the neuron budget must be a positive number of seconds, got {neuron_budget_s}")
    if not lease_s > 0:
        raise ConfigError(f"the claim lease must be a positive number of seconds, got {lease_s}")
    for unit in units:
        store.stats(unit)  # an unrecorded unit is a user mistake: say so before any work starts
    done = run.done()
    todo = [u for u in units if u not in done]
    if len(todo) < len(units):
        log.info("resuming: %d of %d units already done", len(units) - len(todo), len(units))
    attempts = run.attempts()
    if workers is None and concurrency > 1:
        program.simulator = LockedSimulator(program.simulator)
    busy: list[UnitId] = []

    def work(unit: UnitId) -> NeuronRecord | None:
        if not run.claim(unit, lease_s):  # done meanwhile, or another process is on it
            if unit not in run.done():
                busy.append(unit)
            return None
        try:
            attempt = run.attempt(unit)
            if attempt != attempts.get(unit, 0):  # another process tried it during this run: its record stands
                return None
            if workers is not None:
                record = workers.explain(unit, attempt, neuron_budget_s)
            else:
                record = explain_unit(program, store, unit, lm, attempt=attempt, budget_s=neuron_budget_s)
            if not run.put(record):
                log.warning("unit %s failed here but another process finished it: its result is kept", unit)
                return None
            return record
        finally:
            run.release(unit)

    bar = tqdm(total=len(todo), desc="explaining", unit="neuron", disable=not progress)
    with _Heartbeat(run, lease_s), ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(work, u): u for u in todo}
        for future in as_completed(futures):
            record = future.result()
            if record is not None and record.status == "failed":
                log.warning("unit %s failed: %s", record.unit, record.error)
            bar.update(1)
    bar.close()
    if busy:
        names = ", ".join(str(u) for u in sorted(busy, key=lambda u: (u.layer, u.index)))
        log.warning("%d unit(s) skipped, being explained by another process: %s (rerun later to collect them)",
                    len(busy), names)
    return [r for r in run.records() if r.unit in set(units)]
