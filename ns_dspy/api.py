"""What the commands do, as functions: ``explain``, ``score`` and ``compile``. The command line
(:mod:`ns_dspy.cli`) parses options into a :class:`~ns_dspy.config.RunConfig` and calls these; ``ns-dspy demo``
and user code call them directly. Each checks everything a user can get wrong (the store, the units, the
specs, a compiled program) before any model is loaded or any file is written. ``ns-dspy sweep`` is
:func:`ns_dspy.sweep.run_sweep`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .build import build_program
from .config import ExecutorConfig, RunConfig, SimulatorConfig
from .errors import ConfigError
from .paths import check_writable
from .types import UnitId

__all__ = ["ExplainResult", "explain", "default_run_path", "open_run", "score", "compile"]


def default_run_path(store: str | Path, config: RunConfig) -> Path:
    """``STORE.MODE.sqlite`` (MODE: explain, norefine, baseline or stats), with ``.NAME`` before the suffix for a
    compiled program ``NAME.json``: each kind of run gets its own file."""
    path = Path(str(Path(store)).rstrip("/") + f".{config.explain.mode}.sqlite")
    from .optimize.packaged import DEFAULT, NONE

    if config.program not in (None, NONE, DEFAULT):  # a packaged program is part of the default run
        path = Path(str(path)[: -len(".sqlite")] + f".{Path(config.program).stem}.sqlite")
    return path


@dataclasses.dataclass
class ExplainResult:
    """The run's records (every unit of the run file, in order) and the run file."""

    records: list
    run_path: Path

    @property
    def done(self) -> list:
        return [r for r in self.records if r.status == "done"]


def explain(config: RunConfig, store: str | Path, units: Sequence[UnitId | str], *, run: str | Path | None = None,
            concurrency: int = 1, progress: bool = True, neuron_budget_s: float | None = None,
            executor: ExecutorConfig | None = None) -> ExplainResult:
    """Explain ``units`` of the exemplar store at ``store`` with ``config`` into the run file ``run`` (default:
    :func:`default_run_path`). Finished units already in the run are kept; rerunning resumes. ``executor``:
    where the units are explained - this process (``concurrency`` threads, the default) or Ray workers
    (:mod:`ns_dspy.cluster.explain`; this process still writes the run file)."""
    from .exemplars import ExemplarStore
    from .runs.read import check_run_file
    from .runs.runner import explain_units

    executor = executor or ExecutorConfig()
    exemplars = ExemplarStore.open(store)
    units = [u if isinstance(u, UnitId) else UnitId.parse(u) for u in units]
    if not units:
        raise ConfigError("no units to explain: give at least one LAYER:INDEX")
    for unit in units:
        exemplars.stats(unit)  # an unknown unit: one line, before anything is built
    run_path = Path(run) if run is not None else default_run_path(store, config)
    check_writable(run_path, "--run")  # an unwritable run file: one line now, not after the models load
    check_run_file(run_path)  # nor a file of another kind
    if executor.executor == "ray":
        from .cluster.explain import start_workers

        workers = start_workers(config, store, executor)
        try:
            run_store = open_run(run_path, workers, store)
            try:
                records = explain_units(None, exemplars, units, run_store, None, concurrency=workers.slots,
                                        progress=progress, neuron_budget_s=neuron_budget_s, workers=workers)
            finally:
                run_store.close()
        finally:
            workers.close()
        return ExplainResult(records, run_store.path)
    built = build_program(config)  # a bad LM, simulator, embedder or program: no run file
    with built:
        run_store = open_run(run_path, built, store)
        try:
            records = explain_units(built.program, exemplars, units, run_store, built.lm, concurrency=concurrency,
                                    progress=progress, neuron_budget_s=neuron_budget_s)
        finally:
            run_store.close()  # the last connection: sqlite folds its journal back, no -wal/-shm stay beside it
    return ExplainResult(records, run_store.path)


def open_run(path: str | Path, source, store: str | Path):
    """The run file at ``path`` for what ``source`` (a :class:`~ns_dspy.build.Built`, or Ray workers) computes on
    the exemplar store ``store``: created with its provenance, or reopened if it was made with the same (also
    as an older ns-dspy recorded it)."""
    from .build import legacy_provenance, naming_forms
    from .errors import StoreError
    from .optimize.packaged import DEFAULT
    from .runs import RunStore

    where = {"store": str(Path(store).resolve())}
    current = source.provenance(**where)
    try:
        return RunStore(path, current, legacy=legacy_provenance(source.config, current, **where),
                        near=naming_forms(current))
    except StoreError as err:
        made = RunStore(path)  # no config given: nothing checked, only read
        try:
            stored = made.meta().get("config") or {}
        finally:
            made.close()
        if (source.config.program == DEFAULT and current["run"].get("program") is not None
                and stored.get("run", {}).get("program", "") is None):
            # made when no compiled program shipped for this LM (or with --program none): the default is one now
            raise StoreError(f"{err}; it was made without a compiled program and one now ships as the default for "
                             f"{source.config.lm.spec}: add --program none to resume it") from None
        raise


def score(simulator: SimulatorConfig, store: str | Path, unit: UnitId | str, explanations: Sequence[str], *,
          split: str = "test", kinds: Sequence[str] = ("top", "random")):
    """Score ``explanations`` of ``unit`` on its held-out ``split``: ``(heldout, [ScoreResult])``."""
    from .build import build_simulator
    from .exemplars import ExemplarStore
    from .scoring import HeldOut
    from .scoring import score as score_all

    exemplars = ExemplarStore.open(store)
    unit = unit if isinstance(unit, UnitId) else UnitId.parse(unit)
    heldout = HeldOut.from_store(exemplars, unit, split, kinds=list(kinds))
    sim = build_simulator(simulator)
    try:
        return heldout, score_all(sim, list(explanations), heldout)
    finally:
        sim.close()


def compare(run_a: str | Path, run_b: str | Path, *, store: str | Path | None = None,
            simulator: str | None = None, html: str | Path | None = None) -> str:
    """Run files ``run_a`` and ``run_b`` compared neuron by neuron on the same test windows
    (:mod:`ns_dspy.runs.compare`): the table ``ns-dspy compare`` prints; with ``html``, also that page written
    (:mod:`ns_dspy.report.compare`). ``store`` and ``simulator`` default to what both runs used; runs that used
    different ones need them given. Everything is checked before the simulator loads."""
    from .atomic import atomic_write_text
    from .build import build_simulator
    from .config import SimulatorConfig
    from .exemplars import ExemplarStore
    from .paths import check_writable
    from .report.compare import render_compare
    from .runs.compare import compare_runs, compare_table
    from .runs.read import read_run

    if html is not None:
        check_writable(html, "--html")
    runs = [read_run(run_a), read_run(run_b)]
    for what, given in (("store", store), ("simulator", simulator)):
        used = [run.config.get(what) for run in runs]
        if given is None and (used[0] != used[1] or used[0] is None):
            why = (f"used different {what}s ({used[0]} and {used[1]})" if used[0] != used[1] else
                   f"do not record their {what}")
            raise ConfigError(f"{runs[0].path} and {runs[1].path} {why}: give --{what} to compare them on one")
    sim_config = SimulatorConfig(simulator or runs[0].config["simulator"])
    exemplars = ExemplarStore.open(store or runs[0].config["store"])
    held = {layer: set(exemplars.units(layer)) for layer in exemplars.layers}
    for run in runs:
        for record in run.done:
            if record.unit not in held.get(record.unit.layer, ()):
                raise ConfigError(f"unit {record.unit} of {run.path} is not in the store {exemplars.path}: give the "
                                  "--store the runs explained")
    sim = build_simulator(sim_config)
    try:
        pairs, skipped = compare_runs(*runs, exemplars, sim)
    finally:
        sim.close()
    names = str(runs[0].path), str(runs[1].path)
    if html is not None:
        atomic_write_text(html, render_compare(pairs, *names, skipped, sim_config.spec))
    return compare_table(pairs, *names, skipped) + f"\nsimulator {sim_config.spec}"


def compile(config: RunConfig, store: str | Path, *, optimizer: str, out: str | Path,
            units: Sequence[UnitId | str] | None = None, n_neurons: int = 12,
            fractions: Sequence[float] = (0.5, 0.25, 0.25), seed: int = 0, options: dict[str, Any] | None = None,
            reflection_lm: str | None = None, optimize_decomposition: bool = False, threads: int = 4):
    """Compile ``config``'s agents with a DSPy ``optimizer`` against the simulator score on neurons of ``store``
    and save the program to ``out`` (see :func:`ns_dspy.optimize.compile_neurons`); returns its report. LM calls
    are cached: rerunning the same compilation makes no LM call."""
    from .build import build_lm
    from .exemplars import ExemplarStore
    from .optimize import check_options, compile_neurons, neuron_sets
    from .optimize.packaged import DEFAULT

    if not str(out).endswith(".json"):
        raise ConfigError(f"--out {out}: a compiled program is saved as DSPy JSON state; name it *.json")
    check_writable(out, "--out")  # not after hours of optimisation
    if config.explain.method == "stats":
        raise ConfigError("the statistical method has no agents to compile: leave --method out")
    check_options(optimizer, options or {}, reflection_lm=reflection_lm)  # before any model is loaded
    exemplars = ExemplarStore.open(store)
    units = [u if isinstance(u, UnitId) else UnitId.parse(u) for u in units] if units else None
    sets = neuron_sets(exemplars, units, n_neurons=n_neurons, fractions=list(fractions), seed=seed,
                       max_exemplars=config.explain.max_exemplars)
    config = config.replace(lm=dict(cache=True))  # cached: a re-run makes no LM call
    if config.program == DEFAULT:  # compiling starts from the uncompiled agents unless --program names a file
        config = config.replace(program=None)
    reflection = build_lm(dataclasses.replace(config.lm, spec=reflection_lm, temperature=1.0)) \
        if reflection_lm else None
    built = build_program(config)
    provenance = {"lm": config.lm.spec, "reflection_lm": reflection_lm, "simulator": config.simulator.spec,
                  "embedder": config.embedder.spec, "store": str(Path(store).resolve()),
                  "run": built.provenance()}
    with built, contextlib.redirect_stdout(sys.stderr):  # DSPy's optimizers print their progress
        _, report = compile_neurons(built.program, sets, built.lm, optimizer=optimizer, out=out, options=options,
                                    reflection_lm=reflection, optimize_decomposition=optimize_decomposition,
                                    num_threads=threads, provenance=provenance)
    return report
