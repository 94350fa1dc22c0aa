"""``ns-dspy-train-simulator`` (or ``python -m simulator_training``): build-data | paraphrase | train | eval |
decoys | union | export."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from ns_dspy.config import OneLineParser, add_options, configure_logging, from_options
from ns_dspy.errors import NsDspyError

from .evaluate import STYLES
from .train import TrainConfig

log = logging.getLogger("simulator_training")


def _load_tokenizer(name: str):
    from transformers import AutoTokenizer

    from ns_dspy.errors import ModelError
    from ns_dspy.models.offline import resolve_offline

    source = resolve_offline(name)
    source = str(source) if source else name
    if not Path(source).exists() and "/" not in name:
        raise ModelError(f"unknown tokenizer {name!r}: give an offline model name, a folder or a hub id")
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load the tokenizer of {name!r}: {str(err).splitlines()[0]}") from None


def _excluded(items: list[str] | None) -> set[str]:
    """Unit names from ``--exclude`` values: comma-separated names (``9:1397,11:815``) or JSON files holding
    names in lists, at any depth (``experiments/results/*/neurons.json``)."""
    from ns_dspy.errors import ConfigError
    from ns_dspy.types import parse_units

    def names(value) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            return [n for v in value for n in names(v)]
        return []

    out: set[str] = set()
    for item in items or []:
        if item.endswith(".json"):
            try:
                found = names(json.loads(Path(item).read_text()))
            except (OSError, json.JSONDecodeError) as err:
                raise ConfigError(f"--exclude {item}: cannot read it as JSON ({err}): give a neurons JSON file or "
                                  "comma-separated unit names") from None
        else:
            found = item.split(",")
        out.update(str(u) for u in parse_units(",".join(found)))
    return out


COUNTED_OPTIONS = ("lists", "spelling", "syntax", "long", "whitespace", "narrow", "neighbour", "word_classes",
                   "context")
"""build-data's opt-in additions that take a count (``--lists N``, ...), each a keyword of ``build_synthetic``."""


def cmd_build_data(args) -> int:
    from ns_dspy.errors import ConfigError

    from .data import build_synthetic, from_exemplar_store, from_run_store, load_pool

    if args.from_run and args.from_store:
        raise ConfigError("--from-run and --from-store are two sources: build one dataset from each and merge them")
    source = "--from-run" if args.from_run else "--from-store" if args.from_store else None
    if source and args.wordnet is not None:
        raise ConfigError(f"--wordnet adds synthetic units: it does not combine with {source}")
    if source and args.conditions:
        raise ConfigError(f"--conditions adds synthetic units: it does not combine with {source}")
    for name in COUNTED_OPTIONS:
        flag, n = f"--{name.replace('_', '-')}", getattr(args, name)
        if source and n:
            raise ConfigError(f"{flag} adds synthetic units: it does not combine with {source}")
        if n < 0:
            raise ConfigError(f"{flag} must be 0 (off) or more, not {n}")
    if args.from_run:
        path = from_run_store(args.out, args.from_run, store_path=args.store, valid_share=args.valid_share,
                              seed=args.seed, overwrite=args.overwrite)
    elif args.from_store:
        path = from_exemplar_store(args.out, args.from_store, n_units=args.units, exclude=_excluded(args.exclude),
                                   valid_share=args.valid_share, seed=args.seed, overwrite=args.overwrite)
    else:
        wordnet = None
        if args.wordnet is not None:  # a missing or malformed database fails before anything is written
            from .wordnet import load_wordnet

            if args.wordnet_units < 1:
                raise ConfigError(f"--wordnet-units must be at least 1, not {args.wordnet_units}")
            wordnet = load_wordnet(args.wordnet)
        tokenizer = _load_tokenizer(args.tokenizer)
        from ns_dspy.paths import cache_dir

        pool = load_pool(tokenizer, cache_dir("simulator-text"), progress=not args.quiet)
        extra = {} if wordnet is None else {"wordnet": wordnet, "wordnet_units": args.wordnet_units}
        if args.conditions:
            extra["conditions"] = True
        for name in COUNTED_OPTIONS:
            if getattr(args, name):
                extra[name] = getattr(args, name)
        path = build_synthetic(args.out, tokenizer, tokenizer_name=args.tokenizer, pool=pool,
                               valid_share=args.valid_share, pairs_train=args.pairs_train,
                               pairs_valid=args.pairs_valid, seed=args.seed, progress=not args.quiet,
                               overwrite=args.overwrite, **extra)
    manifest = json.loads((path / "manifest.json").read_text())
    print(f"wrote {path}: units {manifest['units']}, exemplars {manifest['exemplars']}")
    return 0


def cmd_train(args) -> int:
    from .train import train

    config = from_options(TrainConfig, args)
    out = train(config, args.data, args.out, device=args.device, progress=not args.quiet,
                max_minutes=args.max_minutes)
    print(f"{'adapter' if out.name == 'adapter' else 'checkpoint'}: {out}")
    return 0


def _simulators(args, *, cache: bool):
    """``(label, SimulatorConfig)`` of ``--simulator`` (with its ``--simulator-opt`` options, which its label
    names: ``finetuned:A quantize=int8``) and of each ``--baseline`` (defaults), all with ``--dtype``/``--device``."""
    from ns_dspy.config import SimulatorConfig, parse_key_values

    options = parse_key_values(args.simulator_opt or [], "--simulator-opt")
    label = " ".join([args.simulator] + [f"{k}={v}" for k, v in options.items()])
    yield label, SimulatorConfig(args.simulator, dtype=args.dtype, device=args.device, options=options, cache=cache)
    for spec in args.baseline or []:
        yield spec, SimulatorConfig(spec, dtype=args.dtype, device=args.device, cache=cache)


def _warn_template_wording(args, units: list[dict], rows: dict) -> None:
    """With ``--style paraphrase``, one line when some evaluated explanations had no rewording (they were read
    in their template wording, so the figures mix the two)."""
    if args.style != "paraphrase" or not rows:
        return
    from .evaluate import template_rows

    first = next(iter(rows.values()))
    plain = template_rows(units, first)
    if plain:
        log.warning("%d of %d evaluated units were read in their template wording (no paraphrase of the "
                    "explanation evaluated, e.g. %s): paraphrase these units to compare the styles on the same "
                    "units", len(plain), len(first), plain[0])


def cmd_paraphrase(args) -> int:
    from ns_dspy.build import build_lm
    from ns_dspy.config import LMConfig
    from ns_dspy.errors import ConfigError
    from ns_dspy.lms.assets import LMError
    from ns_dspy.urls import public_url

    from .data import read_manifest, read_units, write_units
    from .paraphrase import paraphrase_units, select_units

    for name in ("max_units", "per_unit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    manifest = read_manifest(args.data)
    splits = {s: read_units(args.data, s) for s in ("train", "valid")}
    chosen = select_units(splits[args.split], max_units=args.max_units, seed=args.seed,
                          families=args.families.split(",") if args.families else None)
    if not chosen:
        raise ConfigError(f"no {args.split} units to paraphrase in {args.data}")
    lm = build_lm(LMConfig(spec=args.lm, temperature=args.temperature, max_tokens=160, cache=False, seed=args.seed))
    journal = Path(args.journal) if args.journal else Path(f"{Path(args.out)}.paraphrases.jsonl")

    def ask(prompt: str, draw: int) -> str:
        try:
            answers = lm(prompt, rollout_id=draw) if draw else lm(prompt)
        except Exception as err:  # the LM's own failure (a server gone mid-run): one line, the journal kept
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise LMError(f"the LM {public_url(args.lm)} failed ({reason}); the answers so far are kept in "
                          f"{journal}: rerun the same command to go on") from None
        return answers[0] if answers else ""

    found, summary = paraphrase_units(chosen, ask, lm_name=args.lm, journal=journal, per_unit=args.per_unit,
                                      seed=args.seed, progress=not args.quiet)
    for unit in splits[args.split]:
        if unit["unit"] in found:
            old = unit.get("paraphrases") or [None] * len(unit["explanations"])
            unit["paraphrases"] = [new or prev for new, prev in zip(found[unit["unit"]], old)]
    runs = list(manifest.get("paraphrased", [])) + [{**summary, "split": args.split, "per_unit": args.per_unit,
                                                    "max_units": args.max_units, "families": args.families}]
    write_units(args.out, splits, {**manifest, "paraphrased": runs}, overwrite=args.overwrite)
    print(f"{summary['kept']} of {summary['texts']} explanations of {summary['units']} {args.split} units "
          f"reworded ({summary['asked_now']} asked now); wrote {args.out}")
    return 0


def cmd_eval(args) -> int:
    from ns_dspy.atomic import atomic_write_json, atomic_write_text
    from ns_dspy.build import build_simulator

    from .data import read_units
    from .evaluate import evaluate, markdown, plot, summarise, restyle

    units = restyle(read_units(args.data, args.split), args.style, args.data)
    results, rows = {}, {}
    for spec, config in _simulators(args, cache=False):
        simulator = build_simulator(config)
        rows[spec] = evaluate(simulator, units, seed=args.seed, max_units=args.max_units, progress=not args.quiet)
        results[spec] = summarise(rows[spec])
    _warn_template_wording(args, units, rows)
    table = markdown(results)
    print(table)
    if args.out:
        out = Path(args.out)
        atomic_write_json(out.with_suffix(".json"), {"data": str(Path(args.data).resolve()), "split": args.split,
                                                      "style": args.style, "seed": args.seed, "summary": results,
                                                      "units": rows})
        atomic_write_text(out.with_suffix(".md"), table)
        if plot(results, out.with_suffix(".png")):
            print(f"wrote {out.with_suffix('.json')}, .md and .png")
    return 0


def cmd_decoys(args) -> int:
    from ns_dspy.atomic import atomic_write_json, atomic_write_text
    from ns_dspy.build import build_simulator

    from .data import read_units
    from .evaluate import evaluate_decoys, markdown_decoys, plot_decoys, summarise_decoys, restyle

    units = restyle(read_units(args.data, args.split), args.style, args.data)
    results, rows = {}, {}
    for spec, config in _simulators(args, cache=False):  # the same units and decoys for every spec
        simulator = build_simulator(config)
        rows[spec] = evaluate_decoys(simulator, units, seed=args.seed, max_units=args.max_units,
                                     progress=not args.quiet)
        results[spec] = summarise_decoys(rows[spec])
    _warn_template_wording(args, units, rows)
    table = markdown_decoys(results)
    print(table)
    if args.out:
        out = Path(args.out)
        atomic_write_json(out.with_suffix(".json"), {"data": str(Path(args.data).resolve()), "split": args.split,
                                                      "style": args.style, "seed": args.seed,
                                                      "max_units": args.max_units, "summary": results,
                                                      "units": rows})
        atomic_write_text(out.with_suffix(".md"), table)
        if plot_decoys(results, out.with_suffix(".png")):
            print(f"wrote {out.with_suffix('.json')}, .md and .png")
    return 0


def cmd_union(args) -> int:
    from ns_dspy.atomic import atomic_write_json, atomic_write_text
    from ns_dspy.build import build_simulator
    from ns_dspy.errors import ConfigError

    from .data import read_units
    from .evaluate import evaluate_union, markdown_union, plot_union, summarise_union, restyle

    units = restyle(read_units(args.data, args.split), args.style, args.data)
    if not any(u["family"] == "two-concept" for u in units):
        raise ConfigError(f"{args.data} has no two-concept {args.split} units: the union evaluation needs "
                          "synthetic data from build-data")
    results, rows = {}, {}
    for spec, config in _simulators(args, cache=args.cache):  # the same units and explanations for every spec
        simulator = build_simulator(config)
        rows[spec] = evaluate_union(simulator, units, seed=args.seed, max_units=args.max_units,
                                    progress=not args.quiet)
        if not rows[spec]:
            raise ConfigError(f"no two-concept unit of {args.data} has both of its parts among the "
                              f"{args.split} units")
        results[spec] = summarise_union(rows[spec])
    table = markdown_union(results)
    print(table)
    if args.out:
        out = Path(args.out)
        command = "ns-dspy-train-simulator " + shlex.join(getattr(args, "argv", None) or [])
        atomic_write_json(out.with_suffix(".json"), {"command": command, "data": str(Path(args.data).resolve()),
                                                      "split": args.split, "style": args.style,
                                                      "seed": args.seed, "max_units": args.max_units,
                                                      "summary": results,
                                                      "units": rows})
        atomic_write_text(out.with_suffix(".md"), table + "\n" + UNION_NOTE.format(command=command))
        if plot_union(results, rows, out.with_suffix(".png")):
            print(f"wrote {out.with_suffix('.json')}, .md and .png")
    return 0


UNION_NOTE = """Command: `{command}`

Each two-concept unit `pair:A+B` (`~`: B at 60 % strength) is scored with one explanation of its part A alone,
one of its part B alone (each chosen by the seed), and with both combined per token: `raw_max`, the maximum of
the raw 0..10 predictions; `calibrated_max`, the maximum after each explanation's least-squares linear
calibration against the truth (an explanation with slope <= 0 is left out), what ns-dspy's neuron-level score
uses on valid to choose; `calibrated_sum`, the sum of the calibrated predictions; `final_max`, the maximum through
the maps ns-dspy's test score reuses (`ExplainConfig.test_maps`, by default guarded: monotone where a 2-fold
out-of-fold score on the fitting half favours them, else the straight lines). The exemplars are cut in two halves
(alternating within top and random); calibrations are fitted on one half and every score is taken on the other,
then the other way round, and a unit's score is the mean over the two halves. "beats best" is the share of units where
the combination scores strictly above the better single explanation on the same tokens.
"""


def cmd_export(args) -> int:
    from .export import export

    path = export(args.adapter, args.to, dtype=args.dtype, evaluation=args.eval, overwrite=args.overwrite,
                  verify=not args.no_verify)
    size = sum(p.stat().st_size for p in path.iterdir()) / 1e6
    print(f"exported {path} ({size:.1f} MB)")
    return 0


def _config_defaults(argv: list[str]) -> dict:
    """``--config FILE`` (JSON with TrainConfig fields) supplies defaults that the command line overrides."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if not known.config:
        return {}
    try:
        values = json.loads(Path(known.config).read_text())
    except FileNotFoundError:
        raise NsDspyError(f"config file {known.config} does not exist") from None
    except json.JSONDecodeError as err:
        raise NsDspyError(f"{known.config} is not valid JSON ({err})") from None
    fields = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(values) - fields - {"comment"})
    if unknown:
        raise NsDspyError(f"{known.config}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    return {k: v for k, v in values.items() if k in fields}


def build_parser(defaults: dict | None = None) -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ns-dspy-train-simulator", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build-data", help="write a training dataset (synthetic units, or from an explain run)")
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--tokenizer", default="gemma-3-270m", help="tokenizer of the simulator to train (synthetic data)")
    p.add_argument("--from-run", help="an ns-dspy explain run (RUN.sqlite): its explanations x held-out exemplars")
    p.add_argument("--store", help="the run's exemplar store (default: the one recorded in the run)")
    p.add_argument("--from-store", metavar="STORE",
                   help="an exemplar store (ns-dspy record): real units' statistical word lists, ranked on half of "
                        "their train windows, x the other half (family 'recorded'; valid and test windows unused)")
    p.add_argument("--units", type=int, default=300, metavar="N", help="units drawn with --from-store (default 300)")
    p.add_argument("--exclude", action="append", metavar="UNITS",
                   help="with --from-store, units never drawn: comma-separated names or a JSON file of them "
                        "(repeatable); name every unit you evaluate on")
    p.add_argument("--valid-share", type=float, default=0.2, help="share of units held out for validation")
    p.add_argument("--pairs-train", type=int, default=400, help="two-concept training units")
    p.add_argument("--pairs-valid", type=int, default=60, help="two-concept validation units")
    p.add_argument("--wordnet", metavar="DIR", help="add the wordnet family: semantic categories from a WordNet 3.0 "
                                                   "database folder (apt-get install wordnet-base: "
                                                   "/usr/share/wordnet); default: off")
    p.add_argument("--wordnet-units", type=int, default=300, metavar="N",
                   help="WordNet categories to draw (split by unit like the others; default 300)")
    p.add_argument("--conditions", action="store_true",
                   help="add the condition family: units that depend on a condition, not on a word alone (a word "
                        "only after another, negation scope, quoted speech, a category but not one member, the "
                        "word after a number or name, ...); default: off")
    p.add_argument("--lists", type=int, default=0, metavar="N",
                   help="add N units of the lists family: arbitrary sets of 4 to 32 words described by listing "
                        "them all, as the statistical explainer writes (default 0: off)")
    p.add_argument("--spelling", type=int, default=0, metavar="N",
                   help="add N generated spelling units: words ending, beginning with or containing a letter "
                        "sequence, words of one length, drawn from the text's own words (default 0: off)")
    p.add_argument("--syntax", type=int, default=0, metavar="N",
                   help="add N generated syntax units: one part of speech right after another, as the Brown "
                        "tags say (default 0: off)")
    p.add_argument("--long", type=int, default=0, metavar="N",
                   help="add N long explanations per unit, written as an explainer LM writes them (preamble, "
                        "hedges, quoted examples the unit is active on, words near them it is quiet on, closing "
                        "sentences), stored beside the short ones; training draws from both (default 0: off)")
    p.add_argument("--whitespace", type=int, default=0, metavar="N",
                   help="add N training units per whitespace class (line breaks, blank lines, indentation, "
                        "spaces; targets set per token), each from other windows (default 0: off)")
    p.add_argument("--narrow", type=int, default=0, metavar="N",
                   help="add up to N training units that fire on one to three words of a WordNet or semantic "
                        "category and on nothing else, described by listing them, with windows where the "
                        "category's other words occur and the unit is quiet (default 0: off)")
    p.add_argument("--neighbour", type=int, default=0, metavar="N",
                   help="add up to N training units that fire on a unit's concept and on the words right beside "
                        "it, described as the concept '; also' those words (default 0: off)")
    p.add_argument("--word-classes", type=int, default=0, metavar="N",
                   help="add N training units per word class the statistical explainer names (plural nouns, forms "
                        "of be, ...; ns-dspy's lexicon, on prose and code; the held-out parts of speech left out), "
                        "each from other windows (default 0: off)")
    p.add_argument("--context", type=int, default=0, metavar="N",
                   help="add up to N training units that fire on one word only right after one other word, "
                        "described as the statistical explainer writes it (the word \"to\" only right after "
                        "\"up\"), with windows where the word follows another word and the unit is quiet "
                        "(default 0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_build_data)

    p = sub.add_parser("paraphrase", help="a copy of a dataset with units' explanations reworded by an LM "
                                          "(eval/decoys --style paraphrase read them; train draws from them)")
    p.add_argument("--data", required=True, help="dataset folder from build-data")
    p.add_argument("--out", required=True, help="dataset folder to write (the same units, with paraphrases)")
    p.add_argument("--lm", default="local:qwen2.5-coder-1.5b-instruct",
                   help="an ns-dspy LM spec (default: the offline LM, local:qwen2.5-coder-1.5b-instruct)")
    p.add_argument("--split", default="valid", choices=("train", "valid"), help="which split's units to reword")
    p.add_argument("--max-units", type=int, help="reword a seeded, family-balanced sample of units (the units "
                                                 "eval --max-units N --seed S reads)")
    p.add_argument("--families", help="only these unit families (comma-separated)")
    p.add_argument("--per-unit", type=int, metavar="K",
                   help="reword K of each unit's explanations (a seeded choice; default: all of them)")
    p.add_argument("--temperature", type=float, default=0.5, help="the LM's sampling temperature (default 0.5)")
    p.add_argument("--journal", help="where answers are kept as they come, so a rerun resumes (default: "
                                     "OUT.paraphrases.jsonl)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample of units and of the LM's sampling")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_paraphrase)

    p = sub.add_parser("train", help="LoRA fine-tuning; rerun the same command to resume from the checkpoint")
    p.add_argument("--data", required=True, help="dataset folder from build-data")
    p.add_argument("--out", required=True, help="run folder (checkpoint/, adapter/, train_log.jsonl)")
    p.add_argument("--config", help="JSON file of training settings (e.g. configs/gemma-3-270m-cpu.json)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--max-minutes", type=float, help="stop cleanly after this long (rerun to continue)")
    add_options(p, TrainConfig)
    if defaults:
        p.set_defaults(**defaults)
    p.set_defaults(func=cmd_train)

    def eval_options(p):
        p.add_argument("--simulator", required=True, help="a simulator spec, e.g. finetuned:RUN/adapter")
        p.add_argument("--simulator-opt", action="append", default=[], metavar="KEY=VALUE",
                       help="an option of --simulator's backend, e.g. quantize=int8 (finetuned; repeatable)")
        p.add_argument("--baseline", action="append", help="another spec to compare on the same data (repeatable)")
        p.add_argument("--data", required=True, help="dataset folder from build-data")
        p.add_argument("--split", default="valid", choices=("train", "valid"))
        p.add_argument("--max-units", type=int, help="evaluate a seeded, family-balanced sample of units")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--dtype", default="bfloat16")
        p.add_argument("--device")
        p.add_argument("--out", help="write OUT.json (per unit), OUT.md (table) and OUT.png (chart)")
        p.add_argument("--style", default="short", choices=STYLES,
                       help="which explanations to read: the short ones, the long ones of build-data --long, or the "
                            "paraphrase command's LM rewordings")

    p = sub.add_parser("eval", help="score a simulator on validation units: correct vs shuffled explanations")
    eval_options(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("decoys", help="does the simulator rank a unit's explanation above hard decoys built "
                                      "from the unit's data (win rate and mean rank per family)?")
    eval_options(p)
    p.set_defaults(func=cmd_decoys)

    p = sub.add_parser("union", help="two-concept units: do their parts' explanations, combined per token (raw "
                                     "maximum, calibrated maximum, calibrated sum), beat the best one alone?")
    eval_options(p)
    p.add_argument("--cache", action="store_true", help="read and write ns-dspy's simulation cache (a rerun "
                                                        "only combines)")
    p.set_defaults(func=cmd_union)

    p = sub.add_parser("export", help="write a trained adapter where ns-dspy loads it (checked by loading it)")
    p.add_argument("adapter", help="RUN/adapter")
    p.add_argument("--to", required=True, help="destination folder")
    p.add_argument("--dtype", default="bfloat16", help="dtype of the exported LoRA weights")
    p.add_argument("--eval", help="an eval OUT.json whose summary is stored in the manifest")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-verify", action="store_true", help="skip loading the export onto its base model")
    p.set_defaults(func=cmd_export)
    return parser


def check_outputs(args) -> None:
    """What a command will write, refused in one line before any work (a dataset built, an adapter trained, an
    evaluation run) when it could not be written or, without ``--overwrite``, already exists."""
    from ns_dspy.errors import ConfigError
    from ns_dspy.paths import check_writable

    folder = {"build-data": "--out", "paraphrase": "--out", "train": "--out", "export": "--to"}.get(args.command)
    if folder is not None:
        path = Path(getattr(args, folder.removeprefix("--")))
        if hasattr(args, "overwrite") and path.exists() and not args.overwrite:
            raise ConfigError(f"{path} already exists: choose another folder or pass --overwrite")
        check_writable(path, folder, directory=True)  # train resumes into its --out: it may exist
    elif getattr(args, "out", None):  # eval, decoys, union: OUT.json, .md and .png
        check_writable(Path(args.out).with_suffix(".json"), "--out")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    try:
        args = build_parser(_config_defaults(argv)).parse_args(argv)
        args.argv = argv
        if args.quiet:  # also transformers' weight-loading bars (read when it is first imported)
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        check_outputs(args)
        return args.func(args)
    except NsDspyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
