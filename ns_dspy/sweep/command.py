"""``ns-dspy sweep``: its options and the command, in the order that lets every mistake surface first.

Everything a user can get wrong - the configuration file, the space, the pruner and objectives, the store and
neurons, the LM endpoint, the storage URL, a study made with other settings - is checked before the
simulator is loaded and before any trial runs.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from ..errors import ConfigError

__all__ = ["add_sweep_options", "run_sweep"]

log = logging.getLogger(__name__)

PRUNERS = ("median", "hyperband", "none")
SAMPLERS = ("tpe", "random")


def add_sweep_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="exemplar store directory")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--neurons", default=None, help="the sweep neurons, LAYER:INDEX list (default: --n-neurons "
                                                      "drawn from the store)")
    which.add_argument("--n-neurons", type=int, default=8, help="sweep neurons drawn, seeded, from the store "
                                                               "(default: 8)")
    p.add_argument("--neuron-seed", type=int, default=0, help="seed of that draw; the same in every worker "
                                                            "(default: 0)")
    p.add_argument("--space", default=None, help="search space file (.json, .toml or .yaml); default: HDBSCAN "
                                                 "settings and distance, iterations, candidates, temperature")
    p.add_argument("--storage", default=None, help="study storage: a SQLite file or an optuna RDB URL "
                                                   "(postgresql://..., mysql+pymysql://...) that several workers "
                                                   "share (default: STORE.sweep.sqlite)")
    p.add_argument("--study", default="sweep", help="study name; workers with the same name and storage join one "
                                                   "study (default: sweep)")
    p.add_argument("--n-trials", type=int, default=20, help="finished trials the study should have, counted over "
                                                          "all workers and earlier runs (default: 20)")
    p.add_argument("--timeout", type=float, default=None, help="this worker starts no new trial once so many seconds "
                                                               "have passed (checked after each trial)")
    p.add_argument("--tokens-objective", action="store_true", help="also minimise the LM tokens a configuration "
                                                                  "costs: a Pareto front (no pruning then)")
    p.add_argument("--sampler", default="tpe", choices=SAMPLERS, help="optuna sampler (default: tpe)")
    p.add_argument("--seed", type=int, default=None, help="sampler seed (give each worker its own)")
    p.add_argument("--pruner", default=None, choices=PRUNERS,
                   help="stop bad trials after some neurons: median (default), hyperband or none; optuna "
                        "cannot prune with --tokens-objective")
    p.add_argument("--prune-after", type=int, default=5, help="complete trials before the median pruner prunes "
                                                             "(default: 5)")
    p.add_argument("--program", default=None, help="a compiled program (ns-dspy compile --out) for the agents")
    p.add_argument("--out", default=None, help="output directory: best.json, trials.csv, trials.md, space.json "
                                               "(default: STORE.sweep.STUDY/)")
    p.add_argument("--top", type=int, default=10, help="trials in the printed table (default: 10)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _pruner(args, n_neurons: int):
    import optuna

    if args.pruner in (None, "median"):
        return optuna.pruners.MedianPruner(n_startup_trials=args.prune_after, n_warmup_steps=0)
    if args.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, n_neurons))
    return optuna.pruners.NopPruner()


def _sampler(args):
    import optuna

    if args.sampler == "random":
        return optuna.samplers.RandomSampler(seed=args.seed)
    return optuna.samplers.TPESampler(seed=args.seed, constant_liar=True)


def _check(args, base, temperature, space) -> None:
    from ..config import explicit

    if args.n_trials < 1:
        raise ConfigError(f"--n-trials must be at least 1, got {args.n_trials}")
    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, got {args.top}")
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigError(f"--timeout must be positive, got {args.timeout}")
    if args.prune_after < 0:
        raise ConfigError(f"--prune-after must be >= 0, got {args.prune_after}")
    if args.tokens_objective and args.pruner not in (None, "none"):
        raise ConfigError(f"optuna cannot prune a multi-objective study: drop --pruner {args.pruner} or "
                          "--tokens-objective")
    given = explicit(args)
    for name in space.names:
        option = name.split(".", 1)[-1]
        if option in given:
            raise ConfigError(f"--{option.replace('_', '-')} is swept by the search space ({name}): drop the option "
                              "or remove the parameter from the space")
    space.check(base, temperature)


def _settings(args, base, temperature, space, neurons) -> dict:
    """What must match for a worker to join a study (see :func:`ns_dspy.sweep.study.open_study`)."""
    from .cache import digest
    from .objective import config_record

    program_state = None
    if args.program:
        from ..optimize import read_manifest

        program_state = read_manifest(args.program)["state_sha256"]  # a missing program: one line, no model loaded
    base_record = config_record(base, temperature)
    for name in space.names:  # swept settings are not part of the base
        if name == "temperature":
            base_record.pop("temperature")
        elif name.startswith("cluster."):
            base_record["explain"]["cluster"].pop(name.split(".", 1)[1])
        else:
            base_record["explain"].pop(name)
    return {"version": 1, "space": space.to_dict(), "neurons": [str(n.unit) for n in neurons],
            "data": digest([n.key for n in neurons]), "base": base_record,
            "objectives": ["valid"] + (["lm_tokens"] if args.tokens_objective else []), "lm": args.lm,
            "simulator": args.simulator, "embedder": args.embedder, "program": program_state}


def _out_dir(args) -> Path:
    if args.out:
        return Path(args.out)
    return Path(f"{str(args.store).rstrip('/')}.sweep.{re.sub(r'[^A-Za-z0-9_.-]+', '_', args.study)}")


def run_sweep(args: argparse.Namespace) -> int:
    from ..exemplars import ExemplarStore
    from ..lms import check_endpoint, make_lm
    from ..runs.build import build_program
    from ..runs.config_file import program_config
    from ..types import parse_units
    from .cache import WorkCache
    from .objective import Evaluator, Objective, sweep_neurons
    from .space import load_space
    from .storage import open_storage, public_url
    from .study import open_study, run_worker

    base, temperature = program_config(args)
    space = load_space(args.space, base)
    _check(args, base, temperature, space)
    store = ExemplarStore.open(args.store)
    neurons = sweep_neurons(store, parse_units(args.neurons) if args.neurons else None, n_neurons=args.n_neurons,
                            seed=args.neuron_seed)
    settings = _settings(args, base, temperature, space, neurons)
    check_endpoint(args.lm)
    storage = open_storage(args.storage or str(args.store).rstrip("/") + ".sweep.sqlite")
    directions = ["maximize"] + (["minimize"] if args.tokens_objective else [])
    pruner = None if args.tokens_objective else _pruner(args, len(neurons))
    study = open_study(storage, args.study, settings, sampler=_sampler(args), pruner=pruner, directions=directions)
    log.info("study %r in %s: %d sweep neurons, %d parameters (%s)", args.study, public_url(storage.url),
             len(neurons), len(space.names), ", ".join(space.names))

    lm = make_lm(args.lm, temperature=temperature, cache=False)  # the work cache is the reuse layer
    program = build_program(base, simulator=args.simulator, embedder=args.embedder, dtype=args.dtype,
                            device=args.device, program=args.program)
    try:
        objective = Objective(Evaluator(program, WorkCache(storage.engine), lm, args.lm), space, base, temperature,
                              neurons, tokens=args.tokens_objective, prune=args.pruner != "none",
                              n_trials=args.n_trials)
        summary = run_worker(study, objective, args.n_trials, timeout=args.timeout, progress=not args.quiet)
        return _finish(args, study, summary, store, program.simulator, neurons, space, settings,
                       public_url(storage.url))
    finally:
        program.simulator.close()


def _finish(args, study, summary, store, simulator, neurons, space, settings, shown: str) -> int:
    """Print the table; when the study is complete and idle, score the chosen trial on test (once) and export."""
    from ..agents import ClusterConfig
    from ..atomic import atomic_write_json
    from ..program import ExplainConfig
    from ..runs.config_file import write_config_file
    from .report import format_table, trial_rows, write_outputs
    from .study import choose, counts, looks_at_test, score_on_test

    c = counts(study)
    rows = trial_rows(study)
    print(format_table(rows[: args.top]))
    state = ", ".join(f"{n} {s}" for s, n in sorted(c.items())) or "no trial yet"
    print(f"study {args.study!r} in {shown}: {state}; this worker ran {summary.ran} trial(s) in {summary.seconds:.0f} s")
    finished = c.get("complete", 0) + c.get("pruned", 0)
    if finished < args.n_trials:
        print(f"{finished} of {args.n_trials} trials finished: rerun the same command to go on")
        return 0
    if c.get("running", 0):
        print("other workers are still running trials; the last one to finish reports the chosen configuration")
        return 0
    best = choose(study)
    if best is None:
        print("no trial completed: nothing to export")
        return 1
    report = score_on_test(study, best, store, simulator, neurons)
    record = best.user_attrs["config"]
    explain = dict(record["explain"])
    config = ExplainConfig(**{**explain, "cluster": ClusterConfig(**explain["cluster"])})
    tuned = {"study": args.study, "storage": shown, "trial": best.number, "valid": report["valid"],
             "test": report["test"], "objectives": settings["objectives"], "lm_tokens": best.user_attrs.get("lm_tokens"),
             "neurons": settings["neurons"], "lm": args.lm, "simulator": args.simulator, "embedder": args.embedder,
             "program": str(Path(args.program).resolve()) if args.program else None, "params": best.params}
    out = _out_dir(args)
    best_path = write_config_file(out / "best.json", config, record["temperature"], tuned)
    atomic_write_json(out / "space.json", space.to_dict())
    how = "scored on test now" if report["scored_now"] else "its test score was computed once, earlier"
    line = (f"chosen: trial {best.number}, mean valid {report['valid']:.3f} -> test {report['test']:.3f} over "
            f"{len(neurons)} neurons ({how}; {len(looks_at_test(study))} chosen configuration(s) of this study "
            "looked at test)")
    paths = write_outputs(out, rows, f"ns-dspy sweep {args.study!r}", line)
    print(line)
    print(f"best configuration: {best_path}  (ns-dspy explain --store {args.store} --neurons ... --config {best_path})")
    print(f"table: {paths['csv']} and {paths['md']}")
    print(f"dashboard: optuna-dashboard {shown}")
    return 0
