"""Reproduce the paper's Table 1, Figure 2a/2b and Table 3 for one setting (a config in experiments/configs/).

    python experiments/paper.py run experiments/configs/gemma-3-270m.toml [--dry-run]
    python experiments/paper.py analyze experiments/configs/gemma-3-270m.toml

``run`` does every step, each resumable, so rerunning the same command continues where it stopped:

1. **record** the subject model's units over the corpus into ``WORK/store`` (or reuse ``store =`` from the
   config, or a store already in WORK recorded with the same settings);
2. **choose** ``neurons.per_layer`` neurons per layer, the most frequently activating (the paper's choice), or
   the ``neurons.units`` listed; the list is written to ``WORK/neurons.json``;
3. **explain** them in each mode into a run file: ``refine`` (NeuronScope), ``norefine`` (the ablation) and
   ``baseline`` (single pass), ``WORK/<mode>.sqlite``; finished neurons are skipped on a rerun. The run files
   are exactly what ``ns-dspy explain`` writes (the equivalent commands are printed by ``--dry-run``), and an
   HTML report of each is written to ``WORK/reports/<mode>.html``;
4. **analyze** the run files only (experiments/paper_analysis.py) into ``RESULTS``: CSV/JSON tables, PNG plots
   and summary.md with the exact command.

The refine mode runs first: with DSPy's LM cache (on by default) the ablation then gets the same hypotheses
and decompositions, hence the same modes, as the paper's ablation does; the analysis counts where that held.
WORK defaults to ``experiments/work/NAME`` (not committed), RESULTS to ``experiments/results/NAME``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_analysis import analyze  # noqa: E402
from paper_config import MODES, ExperimentConfig, load_config  # noqa: E402

from ns_dspy.atomic import atomic_write_json  # noqa: E402
from ns_dspy.config import OUR_LOGGERS, configure_logging  # noqa: E402
from ns_dspy.errors import ConfigError, NsDspyError, StoreError  # noqa: E402
from ns_dspy.types import UnitId, parse_units  # noqa: E402

log = logging.getLogger("paper")

HERE = Path(__file__).resolve().parent
IGNORED_RECORD_KEYS = ("checkpoint_every", "device", "batch_size")
"""Record settings that do not change what a store holds."""


def _paths(cfg: ExperimentConfig, work: str | None, results: str | None) -> tuple[Path, Path]:
    return (Path(work) if work else HERE / "work" / cfg.name,
            Path(results) if results else HERE / "results" / cfg.name)


def _store_path(cfg: ExperimentConfig, work: Path) -> Path:
    return Path(cfg.store) if cfg.store else work / "store"


def _record_command(cfg: ExperimentConfig, out: Path) -> str:
    args = ["ns-dspy", "record"]
    for f in dataclasses.fields(cfg.record):
        value, default = getattr(cfg.record, f.name), f.default
        if value != default and f.name not in ("checkpoint_every",):
            args += [f"--{f.name.replace('_', '-')}", str(value)]
    return shlex.join(args + ["--out", str(out)])


def _explain_command(cfg: ExperimentConfig, mode: str, store: Path, units: list[UnitId], run: Path) -> str:
    explain = cfg.explain_config(mode)
    args = ["ns-dspy", "explain", "--store", str(store), "--neurons", ",".join(map(str, units)), "--run", str(run),
            "--lm", cfg.lm, "--temperature", str(cfg.temperature), "--simulator", cfg.simulator,
            "--embedder", cfg.embedder, "--concurrency", str(cfg.concurrency)]
    for obj in (explain, explain.cluster):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                continue
            flag = f.name.replace("_", "-")
            args += [f"--{flag}" if value else f"--no-{flag}"] if isinstance(value, bool) else [f"--{flag}", str(value)]
    return shlex.join(args)


def _check_store(cfg: ExperimentConfig, path: Path) -> None:
    """A store found in WORK must hold what the config would record."""
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    stored = {k: v for k, v in (manifest.get("config") or {}).items() if k not in IGNORED_RECORD_KEYS}
    wanted = {k: v for k, v in cfg.record.to_dict().items() if k not in IGNORED_RECORD_KEYS}
    changed = sorted(k for k in wanted if k in stored and stored[k] != wanted[k])
    if changed:
        raise StoreError(f"the store at {path} was recorded with other settings ({', '.join(changed)}): give "
                         "another --work, or set store = to reuse it on purpose")


def record_store(cfg: ExperimentConfig, work: Path, *, progress: bool):
    from ns_dspy.exemplars import ExemplarStore
    from ns_dspy.recording import record

    path = _store_path(cfg, work)
    if cfg.store:
        return ExemplarStore.open(path)
    if (path / "manifest.json").exists():
        _check_store(cfg, path)
        log.info("reusing the recording in %s", path)
    else:
        log.info("recording: %s", _record_command(cfg, path))
        record(cfg.record, path, progress=progress)
    return ExemplarStore.open(path)


def choose_neurons(cfg: ExperimentConfig, store) -> list[UnitId]:
    """The config's units, or per layer the ``per_layer`` units ranked highest by ``rank_by`` (ties: lower
    index first), as the paper chose its 200 most frequently activating neurons per layer."""
    if cfg.neurons.units:
        units = parse_units(cfg.neurons.units)
        for unit in units:
            store.stats(unit)
        return units
    layers = cfg.layers or store.layers
    missing = [layer for layer in layers if layer not in store.layers]
    if missing:
        raise StoreError(f"layer {missing[0]} is not in the store {store.path} (it holds {store.layers})")
    chosen = []
    for layer in layers:
        idx, key = store.layer_units(layer), store.layer_stats(layer)[cfg.neurons.rank_by]
        order = np.lexsort((idx, -key))[: cfg.neurons.per_layer]
        chosen += [UnitId(layer, int(idx[i])) for i in sorted(order, key=lambda i: idx[i])]
    return chosen


def explain_modes(cfg: ExperimentConfig, store, units: list[UnitId], work: Path, *, lm=None, modes=None,
                  progress: bool = True, executor=None) -> dict[str, Path]:
    """Explain ``units`` in each mode into ``WORK/<mode>.sqlite`` (resumable); one simulator for all modes.
    ``executor`` (an :class:`~ns_dspy.config.ExecutorConfig`): with ``ray``, each mode's units are explained by
    Ray workers (``ns_dspy.cluster``) built from that mode's run configuration."""
    if executor is not None and executor.executor == "ray":
        return _explain_modes_on_ray(cfg, store, units, work, modes=modes or cfg.modes, progress=progress,
                                     executor=executor)
    from ns_dspy.api import open_run
    from ns_dspy.build import build_program
    from ns_dspy.report import write_report
    from ns_dspy.runs.runner import explain_units

    modes = modes or cfg.modes
    built = build_program(cfg.run_config(modes[0]), with_lm=lm is None)  # one simulator for every mode
    lm = built.lm if lm is None else lm
    runs, open_runs = {}, {}
    try:
        for mode in modes:  # every run file is checked before any neuron is explained
            runs[mode] = work / f"{mode}.sqlite"
            mode_built = dataclasses.replace(built, config=cfg.run_config(mode))
            open_runs[mode] = open_run(runs[mode], mode_built, store.path)
        for mode in modes:
            start = time.perf_counter()
            log.info("%s: explaining %d neurons into %s", mode, len(units), runs[mode])
            program = built.program_for(cfg.explain_config(mode))
            records = explain_units(program, store, units, open_runs[mode], lm, concurrency=cfg.concurrency,
                                    progress=progress)
            done = sum(r.status == "done" for r in records)
            log.info("%s: %d done, %d failed (%.0f s)", mode, done, len(records) - done, time.perf_counter() - start)
            open_runs[mode].close()
            # every exemplar the explainer saw for a small run; 5 per neuron keeps a paper-scale page openable
            shown = 0 if len(units) <= 50 else 5
            write_report(runs[mode], work / "reports" / f"{mode}.html", exemplars=shown)
    finally:
        built.close()
    return runs


def _explain_modes_on_ray(cfg: ExperimentConfig, store, units: list[UnitId], work: Path, *, modes, progress: bool,
                          executor) -> dict[str, Path]:
    """Each mode through :func:`ns_dspy.api.explain` on the cluster (its workers built from that mode's run
    configuration), then its report."""
    from ns_dspy.api import explain
    from ns_dspy.report import write_report

    runs = {}
    for mode in modes:
        runs[mode] = explain(cfg.run_config(mode), store.path, units, run=work / f"{mode}.sqlite",
                             progress=progress, executor=executor).run_path
        write_report(runs[mode], work / "reports" / f"{mode}.html", exemplars=0 if len(units) <= 50 else 5)
    return runs


def run_analysis(cfg: ExperimentConfig, work: Path, results: Path, command: str, embedder=None) -> dict:
    runs = {mode: work / f"{mode}.sqlite" for mode in cfg.modes}
    missing = [str(p) for p in runs.values() if not p.is_file()]
    if missing:
        raise StoreError(f"no run file at {missing[0]}: run `python experiments/paper.py run {cfg.path}` first")
    return analyze(runs, results, model=cfg.record.model, command=command, config_text=cfg.text,
                   figure2a_neurons=cfg.analysis.figure2a_neurons, figure2b_neuron=cfg.analysis.figure2b_neuron,
                   table3_rows=cfg.analysis.table3_rows, seed=cfg.analysis.seed, embedder=embedder,
                   title=f"{cfg.name} ({cfg.record.model})")


def plan(cfg: ExperimentConfig, work: Path, results: Path) -> str:
    """What ``run`` would do, and what is already done; reads files, loads no model."""
    from ns_dspy.agents import embedder_kinds
    from ns_dspy.lms import lm_kinds
    from ns_dspy.simulators import simulator_kinds

    for what, spec, kinds in (("explain.lm", cfg.lm, lm_kinds()), ("explain.simulator", cfg.simulator,
                              simulator_kinds()), ("explain.embedder", cfg.embedder, embedder_kinds())):
        if spec.partition(":")[0] not in kinds:
            raise ConfigError(f"{what} {spec!r}: unknown kind, use one of {', '.join(kinds)}")
    lines = [f"experiment {cfg.name}: {cfg.description}".rstrip(": "), f"config  {cfg.path}"]
    path = _store_path(cfg, work)
    units: list[UnitId] | None = None
    if (path / "manifest.json").exists():
        from ns_dspy.exemplars import ExemplarStore

        if not cfg.store:
            _check_store(cfg, path)
        store = ExemplarStore.open(path)
        units = choose_neurons(cfg, store)
        lines.append(f"store   {path}: exists, reused ({store.describe()})")
    elif cfg.store:
        raise StoreError(f"store = {cfg.store} in {cfg.path}: no exemplar store there")
    else:
        lines.append(f"store   {path}: missing, would record\n        {_record_command(cfg, path)}")
    rule = cfg.neurons.units or f"{cfg.neurons.per_layer} per layer ranked by {cfg.neurons.rank_by}"
    layers = ",".join(map(str, cfg.layers)) or "all recorded"
    lines.append(f"neurons {rule} over layers {layers}"
                 + (f": {len(units)} units, {','.join(map(str, units[:12]))}{',...' if len(units) > 12 else ''}"
                    if units else " (chosen after recording)"))
    e = cfg.explain
    lines.append(f"LM calls per neuron at most: refine 2 + modes x {e.iterations} x {e.candidates}, norefine 2 "
                 f"(cached after refine), baseline {e.baseline_k}; simulator {cfg.simulator}, embedder {cfg.embedder}")
    for mode in cfg.modes:
        run = work / f"{mode}.sqlite"
        state = "new"
        if run.is_file():
            from ns_dspy.runs.read import read_run

            data = read_run(run)
            state = f"{len(data.done)} done, {len(data.failed)} failed"
        command = _explain_command(cfg, mode, path, units or [UnitId(0, 0)], run)
        if not units:
            command = command.replace("--neurons 0:0", "--neurons CHOSEN")
        lines.append(f"{mode:<9} {run} ({state})\n          = {command}")
    lines.append(f"results {results}/ (table1, figure2a, figure2b, table3, summary.md); reports {work}/reports/")
    return "\n".join(lines)


def _command(argv: list[str]) -> str:
    return shlex.join(["python", "experiments/paper.py", *argv])


def main(argv: list[str] | None = None, *, lm=None, embedder=None) -> int:
    """``lm`` / ``embedder``: injected clients (tests use a scripted LM); by default built from the config."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name, text in (("run", "record, choose neurons, explain in each mode, analyze (resumable)"),
                       ("analyze", "tables, plots and summary from the run files only")):
        p = sub.add_parser(name, help=text)
        p.add_argument("config", help="experiment config, e.g. experiments/configs/gemma-3-270m.toml")
        p.add_argument("--work", default=None, help="folder for the store, neurons.json, run files and reports "
                                                   "(default: experiments/work/NAME)")
        p.add_argument("--results", default=None, help="folder for the results (default: experiments/results/NAME)")
        if name == "run":
            p.add_argument("--dry-run", action="store_true", help="print the plan and what is done; load nothing")
            p.add_argument("--modes", default=None, help="only these modes, e.g. refine (default: the config's)")
            p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
            from ns_dspy.config import ExecutorConfig, add_options

            add_options(p.add_argument_group("where the units are explained"), ExecutorConfig)
    args = ap.parse_args(argv)
    configure_logging(ours=(*OUR_LOGGERS, "paper", "paper_analysis"), timestamps=True)
    try:
        cfg = load_config(args.config)
        work, results = _paths(cfg, args.work, args.results)
        if args.command == "analyze":
            run_analysis(cfg, work, results, _command(argv), embedder=embedder)
            print(f"results in {results} (summary.md)")
            return 0
        if args.dry_run:
            print(plan(cfg, work, results))
            return 0
        modes = cfg.modes
        if args.modes:
            modes = [m.strip() for m in args.modes.split(",") if m.strip()]
            if not modes or any(m not in MODES for m in modes):
                raise ConfigError(f"--modes {args.modes!r}: use modes of {', '.join(MODES)}")
        store = record_store(cfg, work, progress=not args.quiet)
        units = choose_neurons(cfg, store)
        atomic_write_json(work / "neurons.json", {"rule": dataclasses.asdict(cfg.neurons),
                                                  "units": [str(u) for u in units]})
        log.info("%d neurons: %s", len(units), ",".join(map(str, units)))
        from ns_dspy.config import ExecutorConfig, from_options

        explain_modes(cfg, store, units, work, lm=lm, modes=modes, progress=not args.quiet,
                      executor=from_options(ExecutorConfig, args))
        if set(cfg.modes) <= {p.stem for p in work.glob("*.sqlite")}:
            run_analysis(cfg, work, results, _command(argv), embedder=embedder)
            print(f"results in {results} (summary.md); reports in {work / 'reports'}")
        else:
            print(f"runs in {work}; analyze when every mode has run")
        return 0
    except NsDspyError as err:
        print(f"paper: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("paper: interrupted; finished work is kept - rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
