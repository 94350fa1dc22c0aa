"""A sweep worker (``ns-dspy sweep``): its own settings (:class:`SweepConfig`) and :func:`run_sweep`, which
checks in the order that lets every mistake surface first.

Everything a user can get wrong - the configuration file, the space, the pruner and objectives, the store and
neurons, the LM endpoint, the storage URL, a study made with other settings - is checked before the
simulator is loaded and before any trial runs.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

from ..config import RunConfig, opt
from ..errors import ConfigError

__all__ = ["SweepConfig", "run_sweep", "PRUNERS", "SAMPLERS"]

log = logging.getLogger(__name__)

PRUNERS = ("median", "hyperband", "none")
SAMPLERS = ("tpe", "random")


@dataclasses.dataclass
class SweepConfig:
    """What a sweep searches, on which neurons, where its study lives and what it writes (``ns-dspy sweep``'s own
    options; the program's settings are the run configuration's)."""

    store: str | None = opt(None, "exemplar store directory", metavar="DIR", required=True)
    neurons: str | None = opt(None, "the sweep neurons, LAYER:INDEX list (default: --n-neurons drawn from the store)")
    n_neurons: int | None = opt(None, "sweep neurons drawn, seeded, from the store (none: 8)")
    neuron_seed: int = opt(0, "seed of that draw; the same in every worker")
    space: str | None = opt(None, "search space file (.json, .toml or .yaml); none: HDBSCAN settings and distance, "
                                  "iterations, candidates, temperature", metavar="FILE")
    storage: str | None = opt(None, "study storage: a SQLite file or an optuna RDB URL (postgresql://..., "
                                    "mysql+pymysql://...) that several workers share (none: STORE.sweep.sqlite)",
                              metavar="URL")
    study: str = opt("sweep", "study name; workers with the same name and storage join one study")
    n_trials: int = opt(20, "finished trials the study should have, counted over all workers and earlier runs")
    timeout: float | None = opt(None, "this worker starts no new trial once so many seconds have passed (checked "
                                      "after each trial)", metavar="SECONDS")
    tokens_objective: bool = opt(False, "also minimise the LM tokens a configuration costs: a Pareto front (no "
                                        "pruning then)")
    sampler: str = opt("tpe", "optuna sampler: tpe or random")
    seed: int | None = opt(None, "sampler seed (give each worker its own)")
    pruner: str | None = opt(None, "stop bad trials after some neurons: median (none: median), hyperband or none; "
                                   "optuna cannot prune with --tokens-objective")
    prune_after: int = opt(5, "complete trials before the median pruner prunes")
    out: str | None = opt(None, "output directory: best.json, trials.csv, trials.md, space.json (none: "
                                "STORE.sweep.STUDY/)", metavar="DIR")
    top: int = opt(10, "trials in the printed table")

    def __post_init__(self) -> None:
        if not self.store:
            raise ConfigError("ns-dspy sweep needs --store: the exemplar store directory")
        if self.neurons and self.n_neurons is not None:
            raise ConfigError("give --neurons or --n-neurons, not both")
        if self.n_neurons is not None and self.n_neurons < 1:
            raise ConfigError(f"--n-neurons must be at least 1, got {self.n_neurons}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.pruner is not None and self.pruner not in PRUNERS:
            raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
        if self.n_trials < 1:
            raise ConfigError(f"--n-trials must be at least 1, got {self.n_trials}")
        if self.top < 1:
            raise ConfigError(f"--top must be at least 1, got {self.top}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout must be positive, got {self.timeout}")
        if self.prune_after < 0:
            raise ConfigError(f"--prune-after must be >= 0, got {self.prune_after}")
        if self.tokens_objective and self.pruner not in (None, "none"):
            raise ConfigError(f"optuna cannot prune a multi-objective study: drop --pruner {self.pruner} or "
                              "--tokens-objective")


def _pruner(sweep: SweepConfig, n_neurons: int):
    import optuna

    if sweep.pruner in (None, "median"):
        return optuna.pruners.MedianPruner(n_startup_trials=sweep.prune_after, n_warmup_steps=0)
    if sweep.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, n_neurons))
    return optuna.pruners.NopPruner()


def _sampler(sweep: SweepConfig):
    import optuna

    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=sweep.seed)
    return optuna.samplers.TPESampler(seed=sweep.seed, constant_liar=True)


def _option_of(param: str) -> str:
    """The run option (its ``dest``) that a search-space parameter sets."""
    if param == "temperature":
        return "lm.temperature"
    return f"explain.{param}"


def _check(config: RunConfig, space, given: set[str]) -> None:
    for name in space.names:
        if _option_of(name) in given:
            option = name.split(".", 1)[-1]
            raise ConfigError(f"--{option.replace('_', '-')} is swept by the search space ({name}): drop the option "
                              "or remove the parameter from the space")
    space.check(config.explain, config.lm.temperature)


def _settings(config: RunConfig, sweep: SweepConfig, space, neurons) -> dict:
    """What must match for a worker to join a study (see :func:`ns_dspy.sweep.study.open_study`)."""
    from .cache import digest
    from .objective import config_record

    program_state = None
    program = config.program_path()
    if program is not None:
        from ..optimize import read_manifest

        program_state = read_manifest(program)["state_sha256"]  # a missing program: one line, no model loaded
    base_record = config_record(config.explain, config.lm.temperature)
    # how the chosen trial's test score reads a set changes no trial (valid scores): not part of the study's settings,
    # so a study resumes under any --test-maps (the test score is stored per kind) and studies made before it existed
    base_record["explain"].pop("test_maps")
    for name in space.names:  # swept settings are not part of the base
        if name == "temperature":
            base_record.pop("temperature")
        elif name.startswith("cluster."):
            base_record["explain"]["cluster"].pop(name.split(".", 1)[1])
        else:
            base_record["explain"].pop(name)
    return {"version": 1, "space": space.to_dict(), "neurons": [str(n.unit) for n in neurons],
            "data": digest([n.key for n in neurons]), "base": base_record,
            "objectives": ["valid"] + (["lm_tokens"] if sweep.tokens_objective else []), "lm": config.lm.spec,
            "simulator": config.simulator.spec, "embedder": config.embedder.spec, "program": program_state}


def _out_dir(sweep: SweepConfig) -> Path:
    if sweep.out:
        return Path(sweep.out)
    return Path(f"{str(sweep.store).rstrip('/')}.sweep.{re.sub(r'[^A-Za-z0-9_.-]+', '_', sweep.study)}")


def run_sweep(config: RunConfig, sweep: SweepConfig, *, given: set[str] = frozenset(), progress: bool = True) -> int:
    """Run one sweep worker: create or join the study, run trials until it has ``sweep.n_trials``, and when it is
    complete and idle, score the chosen configuration on test once and write ``best.json`` (a whole run
    configuration) and the tables. ``given``: the run options given on the command line (a swept parameter may
    not be one of them). Returns the exit code."""
    from ..build import build_program
    from ..exemplars import ExemplarStore
    from ..types import parse_units
    from .cache import WorkCache
    from .objective import Evaluator, Objective, sweep_neurons
    from .space import load_space
    from .storage import open_storage, masked_storage_url
    from .study import open_study, run_worker

    space = load_space(sweep.space, config.explain)
    _check(config, space, set(given))
    store = ExemplarStore.open(sweep.store)
    neurons = sweep_neurons(store, parse_units(sweep.neurons) if sweep.neurons else None,
                            n_neurons=sweep.n_neurons if sweep.n_neurons is not None else 8, seed=sweep.neuron_seed)
    settings = _settings(config, sweep, space, neurons)
    from ..lms import check_endpoint

    check_endpoint(config.lm.spec)
    from ..paths import check_writable

    check_writable(_out_dir(sweep), "--out", directory=True)  # the tables are written at the end: check now
    storage = open_storage(sweep.storage or str(sweep.store).rstrip("/") + ".sweep.sqlite")
    directions = ["maximize"] + (["minimize"] if sweep.tokens_objective else [])
    pruner = None if sweep.tokens_objective else _pruner(sweep, len(neurons))
    study = open_study(storage, sweep.study, settings, sampler=_sampler(sweep), pruner=pruner, directions=directions)
    log.info("study %r in %s: %d sweep neurons, %d parameters (%s)", sweep.study, masked_storage_url(storage.url),
             len(neurons), len(space.names), ", ".join(space.names))

    built = build_program(config.replace(lm=dict(cache=False)))  # the work cache is the reuse layer
    with built:
        objective = Objective(Evaluator(built.program, WorkCache(storage.engine), built.lm, config.lm.spec), space,
                              config.explain, config.lm.temperature, neurons, tokens=sweep.tokens_objective,
                              prune=sweep.pruner != "none", n_trials=sweep.n_trials)
        summary = run_worker(study, objective, sweep.n_trials, timeout=sweep.timeout, progress=progress)
        return _finish(config, sweep, study, summary, store, built.simulator, neurons, space, settings,
                       masked_storage_url(storage.url))


def _finish(config: RunConfig, sweep: SweepConfig, study, summary, store, simulator, neurons, space, settings,
            shown: str) -> int:
    """Print the table; when the study is complete and idle, score the chosen trial on test (once) and export."""
    from ..atomic import atomic_write_json
    from ..config import ExplainConfig, write_config_file
    from .report import format_table, trial_rows, write_outputs
    from .study import choose, counts, looks_at_test, score_on_test

    c = counts(study)
    rows = trial_rows(study)
    print(format_table(rows[: sweep.top]))
    state = ", ".join(f"{n} {s}" for s, n in sorted(c.items())) or "no trial yet"
    print(f"study {sweep.study!r} in {shown}: {state}; this worker ran {summary.ran} trial(s) in "
          f"{summary.seconds:.0f} s")
    finished = c.get("complete", 0) + c.get("pruned", 0)
    if finished < sweep.n_trials:
        print(f"{finished} of {sweep.n_trials} trials finished: rerun the same command to go on")
        return 0
    if c.get("running", 0):
        print("other workers are still running trials; the last one to finish reports the chosen configuration")
        return 0
    best = choose(study)
    if best is None:
        print("no trial completed: nothing to export")
        return 1
    report = score_on_test(study, best, store, simulator, neurons, test_maps=config.explain.test_maps)
    record = best.user_attrs["config"]
    chosen = config.replace(explain=ExplainConfig.from_dict(record["explain"], "explain"),
                            lm=dict(temperature=record["temperature"]))
    program = config.program_path()
    tuned = {"study": sweep.study, "storage": shown, "trial": best.number, "valid": report["valid"],
             "test": report["test"], "objectives": settings["objectives"], "lm_tokens": best.user_attrs.get("lm_tokens"),
             "neurons": settings["neurons"], "lm": config.lm.spec, "simulator": config.simulator.spec,
             "embedder": config.embedder.spec,
             "program": str(program.resolve()) if program else None, "params": best.params}
    out = _out_dir(sweep)
    best_path = write_config_file(out / "best.json", chosen, tuned)
    atomic_write_json(out / "space.json", space.to_dict())
    how = "scored on test now" if report["scored_now"] else "its test score was computed once, earlier"
    line = (f"chosen: trial {best.number}, mean valid {report['valid']:.3f} -> test {report['test']:.3f} over "
            f"{len(neurons)} neurons ({how}; {len(looks_at_test(study))} chosen configuration(s) of this study "
            "looked at test)")
    paths = write_outputs(out, rows, f"ns-dspy sweep {sweep.study!r}", line)
    print(line)
    print(f"best configuration: {best_path}  (ns-dspy explain --store {sweep.store} --neurons ... --config "
          f"{best_path})")
    print(f"table: {paths['csv']} and {paths['md']}")
    print(f"dashboard: optuna-dashboard {shown}")
    return 0
