"""``ns-dspy``: the command line. Each option's help comes from the config dataclass field it sets."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from pathlib import Path

from . import __version__
from .config import add_options, from_options
from .errors import NsDspyError

__all__ = ["main", "build_parser"]

log = logging.getLogger("ns_dspy")


def _positive_int(text: str) -> int:
    """argparse ``type=`` of counts that must be at least 1 (argparse turns the error into a usage line, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: give a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive: give an integer of at least 1")
    return value


def _cmd_record(args: argparse.Namespace) -> int:
    from .exemplars import ExemplarStore
    from .recording import RecordConfig, record

    config = from_options(RecordConfig, args)
    path = record(config, args.out, overwrite=args.overwrite, progress=not args.quiet)
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
    from .exemplars import ExemplarStore
    from .scoring import HeldOut, score
    from .simulators import CachedSimulator, build_simulator
    from .types import UnitId

    store = ExemplarStore.open(args.store)
    unit = UnitId.parse(args.unit)
    heldout = HeldOut.from_store(store, unit, args.split, kinds=args.kinds.split(","))
    simulator = build_simulator(args.simulator, dtype=args.dtype, device=args.device)
    if not args.no_cache:
        simulator = CachedSimulator(simulator)
    try:
        result = score(simulator, [args.explanation], heldout)[0]
    finally:
        simulator.close()
    parts = ", ".join(f"{k} {v:.3f}" for k, v in result.parts.items())
    flag = "  [constant predictions: no correlation]" if result.constant else ""
    print(f"unit {unit}, {args.split}: score {result.value:.3f}{flag}\n"
          f"pooled Pearson r over {result.correlation.n} tokens of {len(heldout.exemplars)} exemplars ({parts}); "
          f"simulator {args.simulator}")
    for n, (ex, pred) in enumerate(zip(heldout.exemplars[: args.table], result.predictions), 1):
        print(f"\nexemplar {n} ({ex.kind}, window {ex.window}): true max {ex.max_activation:.3g}")
        print(f"  {'token':<20} {'true':>8} {'predicted':>10}")
        for tok, true, p in zip(ex.tokens, ex.activations, pred):
            print(f"  {tok!r:<20} {true:>8.3f} {p:>10.2f}")
    return 0


def _summary_table(records) -> str:
    from .runs.read import statistical_rows

    lines = [f"{'unit':>9} {'status':<7} {'Number':>6} {'valid':>7} {'test':>7} {'LM tok':>8} {'sec':>6}  explanation"]
    for r in records:
        if r.status == "done":
            best = r.typed_trace.best_final()
            text = best.explanation if best else ""
            lines.append(f"{str(r.unit):>9} {r.status:<7} {r.number:>6} {r.score_valid:>7.3f} {r.score_test:>7.3f} "
                         f"{r.lm_tokens or 0:>8} {r.seconds or 0:>6.0f}  {text[:90]}")
        else:
            lines.append(f"{str(r.unit):>9} {r.status:<7} {'':>6} {'':>7} {'':>7} {r.lm_tokens or 0:>8} "
                         f"{r.seconds or 0:>6.0f}  {r.error}")
    kinds = Counter(r.typed_trace.failure or "other" for r in records if r.status != "done")
    if kinds:
        lines.append(f"failed: {sum(kinds.values())} ({', '.join(f'{k} {n}' for k, n in kinds.most_common())})")
    faults = Counter()  # transient LM failures met while explaining (each retried, up to the retry limit), by kind
    for r in records:
        faults.update(r.typed_trace.faults)
    if faults:
        lines.append(f"LM call failures: {sum(faults.values())} "
                     f"({', '.join(f'{k} {n}' for k, n in sorted(faults.items(), key=lambda kv: (-kv[1], kv[0])))})")
    done = [r for r in records if r.status == "done"]
    if done:
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        lines.append(f"mean over {len(done)} units: Number {mean([r.number for r in done]):.2f}, "
                     f"score valid {mean([r.score_valid for r in done]):.3f}, test {mean([r.score_test for r in done]):.3f}")
        stats = statistical_rows(done)
        if stats and any(r.typed_trace.method != "stats" for r in done):
            lines.append(f"statistical explainer (no LM) on the same {len(done)} units: "
                         f"valid {mean([s.valid for s in stats]):.3f}, test {mean([s.test for s in stats]):.3f}")
    lines += _cost_table(records)
    return "\n".join(lines)


def _cost_table(records) -> list[str]:
    """Per neuron: LM prompt / completion tokens, simulated tokens and seconds by stage (and their means)."""
    from .costs import STAGES
    from .runs.read import cost_row
    from .trace import Cost

    rows = [(r, c) for r in records if (c := cost_row(r)) is not None]
    if not rows:
        return []
    short = {"hypothesis": "hyp s", "decomposition": "dec s", "clustering": "clu s", "refinement": "ref s",
             "scoring": "score s"}
    head = f"{'cost':>9} {'LM in':>8} {'LM out':>7} {'simulated':>10} " + " ".join(f"{short[s]:>7}" for s in STAGES)

    def line(label, c):
        return (f"{label:>9} {c.lm_prompt_tokens:>8.0f} {c.lm_completion_tokens:>7.0f} "
                f"{c.simulated_tokens:>10.0f} " + " ".join(f"{c.seconds[s]:>7.1f}" for s in STAGES))

    out = ["", head] + [line(str(r.unit), c) for r, c in rows]
    if len(rows) > 1:
        n = len(rows)
        mean = Cost(**{k: sum(getattr(c, k) for _, c in rows) / n for k in ("lm_prompt_tokens", "lm_completion_tokens",
                                                                            "simulated_tokens")},
                    seconds={s: sum(c.seconds[s] for _, c in rows) / n for s in STAGES})
        out.append(line("mean", mean))
    return out


def default_run_path(store: str, config) -> Path:
    if config.method == "stats":
        mode = "stats"
    else:
        mode = "baseline" if config.baseline else ("explain" if config.refine else "norefine")
    return Path(str(Path(store)).rstrip("/") + f".{mode}.sqlite")


def _cmd_explain(args: argparse.Namespace) -> int:
    from .exemplars import ExemplarStore
    from .lms import check_endpoint, make_lm
    from .runs import RunStore
    from .runs.build import build_program
    from .runs.config_file import program_config
    from .runs.runner import explain_units
    from .types import parse_units

    config, temperature = program_config(args)  # --config FILE, overridden by options given on the command line
    store = ExemplarStore.open(args.store)
    units = parse_units(args.neurons)
    for unit in units:
        store.stats(unit)
    check_endpoint(args.lm)
    run_config = {"explain": config.to_dict(), "lm": args.lm, "temperature": temperature,
                  "simulator": args.simulator, "embedder": args.embedder, "store": str(Path(args.store).resolve())}
    run_path = args.run or default_run_path(args.store, config)
    if args.program:  # a compiled program makes another run (by default another run file)
        from .optimize import read_manifest

        run_config["program"] = {"path": str(Path(args.program).resolve()),
                                 "state_sha256": read_manifest(args.program)["state_sha256"]}
        run_path = args.run or Path(str(run_path)[: -len(".sqlite")] + f".{Path(args.program).stem}.sqlite")
    lm = (None if config.method == "stats"  # checked before the run
          else make_lm(args.lm, temperature=temperature, timeout=args.lm_timeout, hedge=not args.no_lm_hedge))
    program = build_program(config, simulator=args.simulator, embedder=args.embedder, dtype=args.dtype,
                            device=args.device, program=args.program)  # a bad simulator or embedder: no run file
    try:
        run = RunStore(run_path, run_config)
    except BaseException:
        program.simulator.close()
        raise
    try:
        records = explain_units(program, store, units, run, lm, concurrency=args.concurrency,
                                progress=not args.quiet, neuron_budget_s=args.neuron_budget)
    finally:
        program.simulator.close()
    print(_summary_table(records))
    print(f"run stored in {run.path}")
    return 0 if any(r.status == "done" for r in records) else 1


def _cmd_compile(args: argparse.Namespace) -> int:
    import contextlib

    from .agents import ClusterConfig
    from .errors import ConfigError
    from .exemplars import ExemplarStore
    from .lms import check_endpoint, make_lm
    from .optimize import check_options, compile_neurons, neuron_sets, parse_options
    from .program import ExplainConfig
    from .runs.build import build_program
    from .types import parse_units

    config = from_options(ExplainConfig, args, cluster=from_options(ClusterConfig, args))
    options = parse_options(args.opt)
    try:
        fractions = [float(x) for x in args.split.split(",")]
    except ValueError:
        raise ConfigError(f"bad --split {args.split!r}: write three shares TRAIN,VAL,TEST, "
                          "e.g. 0.5,0.25,0.25") from None
    if not args.out.endswith(".json"):
        raise ConfigError(f"--out {args.out}: a compiled program is saved as DSPy JSON state; name it *.json")
    check_options(args.optimizer, options, reflection_lm=args.reflection_lm)  # before any model is loaded
    store = ExemplarStore.open(args.store)
    units = parse_units(args.neurons) if args.neurons else None
    sets = neuron_sets(store, units, n_neurons=args.n_neurons or 12, fractions=fractions, seed=args.seed,
                       max_exemplars=config.max_exemplars)
    for spec in filter(None, (args.lm, args.reflection_lm)):
        check_endpoint(spec)
    lm = make_lm(args.lm, temperature=args.temperature, cache=True)  # cached: a re-run makes no LM call
    reflection = make_lm(args.reflection_lm, temperature=1.0, cache=True) if args.reflection_lm else None
    program = build_program(config, simulator=args.simulator, embedder=args.embedder, dtype=args.dtype,
                            device=args.device)
    provenance = {"lm": args.lm, "reflection_lm": args.reflection_lm, "simulator": args.simulator,
                  "embedder": args.embedder, "store": str(Path(args.store).resolve())}
    try:
        with contextlib.redirect_stdout(sys.stderr):  # DSPy's optimizers print their progress
            _, report = compile_neurons(program, sets, lm, optimizer=args.optimizer, out=args.out, options=options,
                                        reflection_lm=reflection, optimize_decomposition=args.optimize_decomposition,
                                        num_threads=args.threads, provenance=provenance)
    finally:
        program.simulator.close()
    print(report.table())
    print(f"compiled program saved to {report.path} (manifest {report.manifest_path.name}); "
          f"use it with ns-dspy explain --program {report.path}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    out = write_report(args.run, args.out, neurons=args.neurons, exemplars=args.exemplars)
    print(f"report of {args.run} written to {out} ({out.stat().st_size:,} bytes)")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep.command import run_sweep

    return run_sweep(args)


def _add_config_option(p: argparse.ArgumentParser) -> None:
    """``--config FILE`` (an explain configuration, e.g. a sweep's best.json); options given on the command line
    override it. Call after every option is added: it makes them all remember whether they were given."""
    from .config import track_explicit

    p.add_argument("--config", default=None, help="explain configuration file (.json/.toml/.yaml, e.g. the best.json "
                                                  "of ns-dspy sweep); options given on the command line override it")
    track_explicit(p)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), tokens=args.tokens, layers=args.layers, units=args.units,
                    iterations=args.iterations, candidates=args.candidates, explain=not args.record_only,
                    progress=not args.quiet)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import format_checks, run_checks

    checks = run_checks(lm=args.lm, simulator=args.simulator,
                        progress=None if args.quiet else lambda name: print(f"checking {name} ...", file=sys.stderr))
    print(format_checks(checks))
    return 1 if any(c.status == "fail" for c in checks) else 0


def _add_simulator_options(p: argparse.ArgumentParser) -> None:
    from .simulators.base import DEFAULT_SIMULATOR

    p.add_argument("--simulator", default=DEFAULT_SIMULATOR,
                   help=f"KIND[:ARG]: prompted:MODEL, finetuned:ADAPTER_DIR, endpoint:URL@MODEL, keyword "
                        f"(default: {DEFAULT_SIMULATOR})")
    p.add_argument("--dtype", default="auto", help="dtype of a local simulator model: auto (bfloat16 where the device "
                                               "runs it natively, else float32), bfloat16, float16 or float32 "
                                               "(default: auto)")
    p.add_argument("--device", default=None, help="device of a local simulator model (default: cuda if any)")


def _add_program_options(p: argparse.ArgumentParser) -> None:
    """What builds a NeuronScope program: LM, simulator, embedder, ExplainConfig and ClusterConfig."""
    from .agents import ClusterConfig
    from .lms.factory import DEFAULT_LM
    from .program import ExplainConfig

    p.add_argument("--lm", default=DEFAULT_LM, help=f"LM: local:NAME|PATH.gguf, openai:MODEL, endpoint:URL@MODEL "
                                                  f"(default: {DEFAULT_LM})")
    p.add_argument("--temperature", type=float, default=0.7, help="LM temperature (default: 0.7)")
    _add_simulator_options(p)
    p.add_argument("--embedder", default="minilm", help="minilm (offline) or openai[:MODEL] (default: minilm)")
    add_options(p, ExplainConfig, skip=("cluster",))
    add_options(p, ClusterConfig)


def build_parser() -> argparse.ArgumentParser:
    from .recording import RecordConfig

    parser = argparse.ArgumentParser(prog="ns-dspy", description=__doc__.splitlines()[0].split(": ", 1)[-1]
                                     + " NeuronScope: explain language-model neurons.")
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
    _add_simulator_options(p)
    p.add_argument("--split", default="test", choices=["valid", "test"], help="held-out split (default: test)")
    p.add_argument("--kinds", default="top,random", help="exemplar kinds pooled (default: top,random)")
    p.add_argument("--table", type=int, default=2, help="exemplars shown token by token (default: 2)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the simulation cache")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("explain", help="explain units with NeuronScope (hypothesis, decomposition, clustering, "
                                       "refinement) and store every trace",
                       description="Explain units of an exemplar store. Finished units are stored as they "
                                   "complete; rerun the same command to resume.")
    p.add_argument("--store", required=True, help="exemplar store directory")
    p.add_argument("--neurons", required=True, help="LAYER:INDEX units, e.g. 5:123,9:77")
    p.add_argument("--run", default=None, help="run file (default: STORE.explain.sqlite, .norefine or .baseline)")
    p.add_argument("--concurrency", type=_positive_int, default=1, help="units explained at once (default: 1)")
    p.add_argument("--lm-timeout", type=float, default=None, metavar="SECONDS",
                   help="per-call timeout of openai: and endpoint: LMs; a call that times out or fails "
                        "transiently (429, 5xx, a dropped connection) is retried 3 times, waiting at most 4 s "
                        "before a retry (default: 120)")
    p.add_argument("--no-lm-hedge", action="store_true",
                   help="do not hedge slow openai:/endpoint: LM calls (by default a call without an answer "
                        "for 2x the 90th percentile of recent answer times, at least 1 s, is sent once more "
                        "and the first answer wins; at most 10%% of calls)")
    p.add_argument("--neuron-budget", type=float, default=None, metavar="SECONDS",
                   help="wall-clock budget per neuron, checked before each LM call; a neuron over it is stored "
                        "as failed and retried by a rerun (default: none)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--program", default=None, help="a compiled program (ns-dspy compile --out) for the agents; "
                                                   "the run file then defaults to STORE.explain.NAME.sqlite")
    _add_program_options(p)
    _add_config_option(p)
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
    _add_program_options(p)
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

    from .sweep.command import add_sweep_options

    p = sub.add_parser("sweep", help="tune HDBSCAN and refinement settings with optuna on a fixed set of neurons",
                       description="Optuna searches clustering (HDBSCAN, distance) and refinement settings and the LM "
                                   "temperature for the best mean valid score over the sweep neurons; LM work is "
                                   "cached in the study's database, so clustering-only trials cost no LM call. "
                                   "Workers sharing --storage and --study join one study; rerun to resume. Writes "
                                   "the best configuration (for ns-dspy explain --config) and the top trials.")
    add_sweep_options(p)
    _add_program_options(p)
    _add_config_option(p)
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
    p.add_argument("--lm", default=None, help="the explainer LM to check (default: the offline default)")
    p.add_argument("--simulator", default=None, help="the simulator to check (default: the offline default)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "filelock", "LiteLLM"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
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
