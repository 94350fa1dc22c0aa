"""``ns-dspy``: the command line. Each option's help comes from the config dataclass field it sets."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .config import (ExecutorConfig, OneLineParser, add_options, add_run_options, configure_logging, explicit,
                     from_options, load_run_config, parse_key_values)
from .errors import NsDspyError

__all__ = ["main", "build_parser"]

log = logging.getLogger("ns_dspy")


def _int_at_least(minimum: int):
    """argparse ``type=`` of whole numbers of at least ``minimum`` (the parser turns the error into one line)."""
    wanted = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: give {wanted}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is {'not positive' if minimum == 1 else 'too small'}: "
                                             f"give {wanted}")
        return value

    return parse


_positive_int = _int_at_least(1)  # counts that must be at least 1
_count = _int_at_least(0)  # counts that may be 0


def _cmd_record(args: argparse.Namespace) -> int:
    from .exemplars import ExemplarStore
    from .recording import RecordConfig, record

    config = from_options(RecordConfig, args)
    executor = from_options(ExecutorConfig, args)
    if executor.executor == "ray":
        from .cluster.record import record_on_ray

        options = (None if executor.worker_gpus is None
                   else {"num_cpus": executor.worker_cpus, "num_gpus": executor.worker_gpus})
        path = record_on_ray(config, args.out, overwrite=args.overwrite, progress=not args.quiet,
                             ray_address=executor.ray_address, workers=executor.workers, worker_options=options)
    else:
        path = record(config, args.out, overwrite=args.overwrite, progress=not args.quiet,
                      ray_address=executor.ray_address, workers=executor.workers)
    store = ExemplarStore.open(path)
    m = store.manifest
    print(f"{store.describe()}\nrecorded {m['tokens_recorded']:,} tokens in {m['seconds']} s "
          f"({m['tokens_per_second']:,} tok/s)")
    return 0


def _use_color(mode: str) -> bool:
    if mode == "auto":
        return sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    return mode == "always"


def _cmd_show(args: argparse.Namespace) -> int:
    from .exemplars import ExemplarStore
    from .show import render_exemplar
    from .types import UnitId

    store = ExemplarStore.open(args.store)
    unit = UnitId.parse(args.unit)
    stats = store.stats(unit, require=("max", "min", "mean", "frequency"))
    exemplars = store.exemplars(unit, args.split, args.kind)[: args.n]
    scale = stats["max"] if args.kind != "negative" else -stats["min"]
    if args.kind == "negative":
        for ex in exemplars:
            ex.activations = -ex.activations
    color = _use_color(args.color)
    print(f"unit {unit} of {store.manifest.get('model', {}).get('name', '?')} ({store.manifest.get('hookpoint')}): "
          f"max {stats['max']:.3g}, mean {stats['mean']:.3g}, active on {stats['frequency']:.1%} of tokens")
    print(f"{len(exemplars)} {args.kind} exemplars from {args.split}; highlighted: >= 25% of max"
          + ("" if color else " as \u00abtoken\u00bb"))
    for i, ex in enumerate(exemplars, 1):
        peak = ex.activations.max() if len(ex.activations) else 0.0
        print(f"\n#{i} window {ex.window}  max {peak * (-1 if args.kind == 'negative' else 1):.3g}")
        print(render_exemplar(ex, scale, color=color))
    return 0


def _cmd_units(args: argparse.Namespace) -> int:
    from .exemplars import ExemplarStore

    store = ExemplarStore.open(args.store)
    print(store.describe())
    layers = store.layers if args.layer is None else [args.layer]
    print(f"{'unit':>9} {'frequency':>9} {'max':>8} {'mean':>8} {'std':>8}")
    for layer in layers:
        units, stats = store.layer_units(layer), store.layer_stats(layer, require=("frequency", "max", "mean", "std"))
        order = sorted(range(len(units)), key=lambda i: -stats[args.sort][i])[: args.n]
        for i in order:
            print(f"{layer:>4}:{units[i]:<4} {stats['frequency'][i]:>9.3f} {stats['max'][i]:>8.3g} "
                  f"{stats['mean'][i]:>8.3g} {stats['std'][i]:>8.3g}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .exemplars import ExemplarStore
    from .exemplars.interop import export_jsonl
    from .types import parse_units

    store = ExemplarStore.open(args.store)
    units = parse_units(args.units) if args.units else None
    n = export_jsonl(store, args.out, units)
    print(f"wrote {n} units to {args.out}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from .exemplars import ExemplarStore
    from .exemplars.interop import import_jsonl, import_neuron_records

    fn = import_jsonl if args.format == "jsonl" else import_neuron_records
    path = fn(Path(args.source), args.out, overwrite=args.overwrite, model=args.model, hookpoint=args.hookpoint)
    print(ExemplarStore.open(path).describe())
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from . import api

    config = load_run_config(args)
    heldout, results = api.score(config.simulator, args.store, args.unit, [args.explanation], split=args.split,
                                 kinds=args.kinds.split(","))
    result = results[0]
    parts = ", ".join(f"{k} {v:.3f}" for k, v in result.parts.items())
    flag = "  [constant predictions: no correlation]" if result.constant else ""
    print(f"unit {heldout.unit}, {args.split}: score {result.value:.3f}{flag}\n"
          f"pooled Pearson r over {result.correlation.n} tokens of {len(heldout.exemplars)} exemplars ({parts}); "
          f"simulator {config.simulator.spec}")
    for n, (ex, pred) in enumerate(zip(heldout.exemplars[: args.table], result.predictions), 1):
        print(f"\nexemplar {n} ({ex.kind}, window {ex.window}): true max {ex.max_activation:.3g}")
        print(f"  {'token':<20} {'true':>8} {'predicted':>10}")
        for tok, true, p in zip(ex.tokens, ex.activations, pred):
            print(f"  {tok!r:<20} {true:>8.3f} {p:>10.2f}")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from . import api
    from .runs.read import summary_table
    from .types import parse_units

    config = load_run_config(args)  # --config FILE, overridden by options given on the command line
    result = api.explain(config, args.store, parse_units(args.neurons), run=args.run, concurrency=args.concurrency,
                         progress=not args.quiet, neuron_budget_s=args.neuron_budget,
                         executor=from_options(ExecutorConfig, args))
    print(summary_table(result.records))
    print(f"run stored in {result.run_path}")
    return 0 if result.done else 1


def _cmd_compile(args: argparse.Namespace) -> int:
    from . import api
    from .errors import ConfigError
    from .types import parse_units

    config = load_run_config(args)
    try:
        fractions = [float(x) for x in args.split.split(",")]
    except ValueError:
        raise ConfigError(f"bad --split {args.split!r}: write three shares TRAIN,VAL,TEST, "
                          "e.g. 0.5,0.25,0.25") from None
    report = api.compile(config, args.store, optimizer=args.optimizer, out=args.out,
                         units=parse_units(args.neurons) if args.neurons else None, n_neurons=args.n_neurons or 12,
                         fractions=fractions, seed=args.seed, options=parse_key_values(args.opt, "--opt"),
                         reflection_lm=args.reflection_lm, optimize_decomposition=args.optimize_decomposition,
                         threads=args.threads)
    print(report.table())
    print(f"compiled program saved to {report.path} (manifest {report.manifest_path.name}); "
          f"use it with ns-dspy explain --program {report.path}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    out = write_report(args.run, args.out, neurons=args.neurons, exemplars=args.exemplars)
    print(f"report of {args.run} written to {out} ({out.stat().st_size:,} bytes)")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from . import api

    print(api.compare(args.run_a, args.run_b, store=args.store, simulator=args.simulator, html=args.html))
    if args.html:
        print(f"comparison written to {args.html}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import SweepConfig, run_sweep

    return run_sweep(load_run_config(args), from_options(SweepConfig, args), given=explicit(args),
                     progress=not args.quiet)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), tokens=args.tokens, layers=args.layers, units=args.units,
                    iterations=args.iterations, candidates=args.candidates, explain=not args.record_only,
                    progress=not args.quiet)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import format_checks, run_checks

    config = load_run_config(args)  # the LM and simulator to check, from the options or a configuration file
    checks = run_checks(lm=config.lm.spec, simulator=config.simulator.spec,
                        progress=None if args.quiet else lambda name: print(f"checking {name} ...", file=sys.stderr))
    print(format_checks(checks))
    return 1 if any(c.status == "fail" for c in checks) else 0


def build_parser() -> argparse.ArgumentParser:
    from .recording import RecordConfig

    parser = OneLineParser(prog="ns-dspy", description="NeuronScope: explain language-model neurons. Record a model's "
                           "activations, explain neurons (resumable), report, compare, compile the agent programs "
                           "and sweep their settings.")
    parser.add_argument("--version", action="version", version=f"ns-dspy {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("record", help="record unit activations over a corpus into an exemplar store",
                       description="Stream a corpus through the subject model and keep each unit's top, random "
                                   "and negative windows, split into train/valid/test. Rerun to resume.")
    add_options(p, RecordConfig)
    p.add_argument("--out", required=True, help="exemplar store directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_options(p.add_argument_group("where the work runs"), ExecutorConfig)
    p.set_defaults(func=_cmd_record)

    p = sub.add_parser("show", help="print a unit's exemplars with activating tokens highlighted")
    p.add_argument("store", help="exemplar store directory")
    p.add_argument("unit", help="LAYER:INDEX, e.g. 5:123")
    p.add_argument("--split", default="train", choices=["train", "valid", "test"], help="which split (default: train)")
    p.add_argument("--kind", default="top", choices=["top", "random", "negative"], help="exemplar kind (default: top)")
    p.add_argument("-n", type=_positive_int, default=5, help="how many exemplars (default: 5)")
    p.add_argument("--color", default="auto", choices=["auto", "always", "never"], help="ANSI colour (default: auto)")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("units", help="list a store's units with their activation statistics")
    p.add_argument("store", help="exemplar store directory")
    p.add_argument("--layer", type=int, default=None, help="only this layer")
    p.add_argument("--sort", default="frequency", choices=["frequency", "max", "mean", "std"],
                   help="sort key (default: frequency, the paper's choice)")
    p.add_argument("-n", type=_positive_int, default=10, help="units per layer (default: 10)")
    p.set_defaults(func=_cmd_units)

    p = sub.add_parser("export", help="export a store's units as JSONL activation records")
    p.add_argument("store", help="exemplar store directory")
    p.add_argument("out", help="JSONL file to write")
    p.add_argument("--units", default="", help="LAYER:INDEX list (default: all units)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("import", help="build a store from JSONL records or OpenAI NeuronRecord JSON")
    p.add_argument("source", help="a .jsonl file, or NeuronRecord .json file/folder")
    p.add_argument("out", help="exemplar store directory to create")
    p.add_argument("--format", default="jsonl", choices=["jsonl", "neuron-records"], help="input format")
    p.add_argument("--model", default="unknown", help="name of the model the records came from")
    p.add_argument("--hookpoint", default="unknown", help="what the units are (e.g. mlp, an SAE name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at OUT")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("score", help="score an explanation of a unit with a simulator",
                       description="Simulate the unit's held-out exemplars from the explanation and print the "
                                   "pooled Pearson correlation with the true activations, and a per-token table.")
    p.add_argument("store", help="exemplar store directory")
    p.add_argument("unit", help="LAYER:INDEX, e.g. 5:123")
    p.add_argument("explanation", help="the explanation to score")
    p.add_argument("--split", default="test", choices=["valid", "test"], help="held-out split (default: test)")
    p.add_argument("--kinds", default="top,random", help="exemplar kinds pooled (default: top,random)")
    p.add_argument("--table", type=_count, default=2, help="exemplars shown token by token (default: 2)")
    add_run_options(p, ("simulator",))
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("explain", help="explain units with NeuronScope (hypothesis, decomposition, clustering, "
                                       "refinement) and store every trace",
                       description="Explain units of an exemplar store. Finished units are stored as they "
                                   "complete; rerun the same command to resume.")
    p.add_argument("--store", required=True, help="exemplar store directory")
    p.add_argument("--neurons", required=True, help="LAYER:INDEX units, e.g. 5:123,9:77")
    p.add_argument("--run", default=None, help="run file (default: STORE.explain.sqlite, .norefine or .baseline)")
    p.add_argument("--concurrency", type=_positive_int, default=1, help="units explained at once (default: 1)")
    p.add_argument("--neuron-budget", type=float, default=None, metavar="SECONDS",
                   help="wall-clock budget per neuron, checked before each LM call; a neuron over it is stored "
                        "as failed and retried by a rerun (default: none)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_options(p.add_argument_group("where the work runs"), ExecutorConfig)
    add_run_options(p)
    p.set_defaults(func=_cmd_explain)

    from .optimize.compile import optimizer_names

    p = sub.add_parser("compile", help="optimise the agents' prompts with a DSPy optimizer against the simulator "
                                       "score",
                       description="Split neurons into compile-train, compile-val and test sets, optimise the "
                                   "Hypothesis and Refinement predictors (and Decomposition on request) with a "
                                   "DSPy optimizer, and save the program as DSPy JSON state plus a manifest. "
                                   "Prints the test neurons' scores before and after. LM calls are cached: "
                                   "rerunning the same command costs no LM call.")
    p.add_argument("--store", required=True, help="exemplar store directory")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--neurons", default=None, help="LAYER:INDEX units to split, e.g. 5:123,9:77,...")
    which.add_argument("--n-neurons", type=int, default=None, help="units drawn (seeded) from the store (default: 12)")
    p.add_argument("--split", default="0.5,0.25,0.25", help="shares of the neurons for compile-train, compile-val "
                                                          "and test (default: 0.5,0.25,0.25)")
    p.add_argument("--seed", type=int, default=0, help="seed of the neuron draw and split (default: 0)")
    p.add_argument("--optimizer", required=True, help=f"one of {', '.join(optimizer_names())}")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the DSPy optimizer, repeatable, e.g. --opt num_trials=8 (int, float, bool, "
                        "none or text)")
    p.add_argument("--reflection-lm", default=None, help="GEPA's reflection LM spec (required with gepa)")
    p.add_argument("--threads", type=int, default=4, help="threads of dspy.Evaluate and the optimizer (default: 4)")
    p.add_argument("--optimize-decomposition", action="store_true", help="optimise the Decomposition predictor too")
    p.add_argument("--out", required=True, help="the compiled program to write (NAME.json, and NAME.manifest.json)")
    add_run_options(p)
    p.set_defaults(func=_cmd_compile)

    p = sub.add_parser("report", help="write a self-contained HTML report of a run file",
                       description="One HTML page (no network needed) for a run file written by ns-dspy explain: "
                                   "config, summary, and per neuron the exemplars as a heat map, conditions by "
                                   "mode, refinement trajectories, final explanations and scores.")
    p.add_argument("run", help="run file written by ns-dspy explain (e.g. STORE.explain.sqlite)")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--neurons", default=None, help="only these LAYER:INDEX units (default: all)")
    p.add_argument("--exemplars", type=int, default=0, help="exemplars shown per neuron (default: 0 = all)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("compare", help="compare two run files neuron by neuron, with the interval of each difference",
                       description="Score both runs' final explanations of every neuron done in both on the same "
                                   "test windows and print, per neuron, the difference A - B with its 90% bootstrap "
                                   "interval over the windows, then the mean difference and on how many neurons A "
                                   "is above B beyond the interval, below it or undecided.")
    p.add_argument("run_a", help="run file A (written by ns-dspy explain)")
    p.add_argument("run_b", help="run file B, of the same neurons (another method, option or seed)")
    p.add_argument("--store", default=None, help="the exemplar store (default: the one both runs explained)")
    p.add_argument("--simulator", default=None, help="simulator spec (default: the one both runs used)")
    p.add_argument("--html", default=None, help="also write the comparison as a self-contained HTML page here")
    p.set_defaults(func=_cmd_compare)

    from .sweep import SweepConfig

    p = sub.add_parser("sweep", help="tune HDBSCAN and refinement settings with optuna on a fixed set of neurons",
                       description="Optuna searches clustering (HDBSCAN, distance) and refinement settings and the LM "
                                   "temperature for the best mean valid score over the sweep neurons; LM work is "
                                   "cached in the study's database, so clustering-only trials cost no LM call. "
                                   "Workers sharing --storage and --study join one study; rerun to resume. Writes "
                                   "the best configuration (for ns-dspy explain --config) and the top trials.")
    add_options(p, SweepConfig)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_run_options(p)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("demo", help="run the whole path on the offline default model and corpus",
                       description="Record gemma-3-270m on the default corpus, pick the units with the sharpest "
                                   "peaks and explain them on the offline stack. Reuses finished work in --out.")
    p.add_argument("--out", default="ns-dspy-demo", help="working directory (default: ./ns-dspy-demo)")
    p.add_argument("--tokens", type=int, default=32_768, help="tokens to record (default: 32768)")
    p.add_argument("--layers", default="6,12", help="layers to record (default: 6,12)")
    p.add_argument("--units", type=int, default=2, help="units to explain (default: 2)")
    p.add_argument("--iterations", type=int, default=2, help="refinement iterations (default: 2)")
    p.add_argument("--candidates", type=int, default=2, help="refinement candidates per iteration (default: 2)")
    p.add_argument("--record-only", action="store_true", help="stop after recording")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("doctor", help="check this machine before a long run: CPU, llama.cpp, torch, caches, endpoints",
                       description="Report what a run needs, each item with its fix: the CPU's features, whether "
                                   "the llama.cpp library decodes on this CPU (checked in a child process), torch's "
                                   "device and bf16 support, the offline model, LM, simulator, embedder and corpus "
                                   "caches, and the endpoints in --lm / --simulator. Builds nothing. Exits 1 when "
                                   "something needed is broken.")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    add_run_options(p, ("lm", "simulator"))
    p.set_defaults(func=_cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    args = build_parser().parse_args(argv)
    if getattr(args, "quiet", False):  # also transformers' weight-loading bars (read when it is first imported)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    configure_logging(args.verbose)
    try:
        return args.func(args)
    except NsDspyError as err:
        print(f"ns-dspy: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("ns-dspy: interrupted; finished work is kept - rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
