"""Held-out synthetic units of ``simulator_training`` as an ordinary exemplar store, with their true descriptions.

    ns-dspy-train-simulator build-data --out experiments/work/synthetic/data      # the shipped adapter's data
    python experiments/synthetic_store.py --data experiments/work/synthetic/data \
        --out experiments/work/synthetic/store [--per-family 6] [--pairs 12] [--seed 0] [--simulator-dir DIR]

Units: only the dataset's ``valid`` split (units never trained on; their windows come from documents never
trained on, ``simulator_training.text.text_split``). A family-balanced seeded choice: ``--per-family``
single-concept units of each family (``code``, ``position``, ``semantic``, ``spelling``, ``syntax``, ``word``;
fewer where a family has fewer) and ``--pairs`` two-concept units, each family's valid units shuffled with a
generator seeded by (seed, family) and the first taken. Unit ``0:N`` of the store is line ``N`` (from 0) of
``valid.jsonl``.

Exemplars: the unit's exemplars with their targets (0..10) as activations and their token ids kept (the
simulator's own tokenizer, so it reads exactly the ids it was evaluated on). Splits: ``top`` exemplars by
``ns_dspy.exemplars.interop.import_jsonl`` (ranked by peak and split 0.4 / 0.3 / 0.3 in blocks, seeded: 10
top windows -> 4 / 3 / 3); ``random`` ones in a seeded order, valid and test 0.3 of them each rounded half up,
train the rest (5 random windows -> 1 train, 2 valid, 2 test), so that valid and test always have some. A
condition unit's ``contrast`` windows (``build-data --conditions``: its cue words present, the unit quiet) are
stored and split as ``random`` ones.

Written: the store ``OUT`` (``ns-dspy`` reads it like a recorded one), ``OUT/synthetic.json`` (the sidecar
``experiments/quality.py`` looks for: per unit its synthetic name, family and true explanations, plus the
dataset's settings and the checks below) and ``OUT.records.jsonl`` (the imported ns-dspy-records file).

Checks, written to the sidecar: the dataset's build settings and unit counts equal the ones recorded in the
simulator's ``ns_dspy_simulator.json`` (``--simulator-dir``, default the shipped ``finetuned:gemma-3-270m``),
i.e. the units are held out of that adapter's training data (refused otherwise, unless ``--no-check``); and the
overlap of the chosen units' windows with the training units' windows (whole windows and 16-token runs; a
warning when there is any: the split is by document, so only the same text in two documents can overlap).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shlex
import sys
from pathlib import Path

import numpy as np

SIDECAR = "synthetic.json"
SIDECAR_FORMAT = "ns-dspy-synthetic-units"
TWO = "two-concept"
NGRAM = 16
QUIET = ("random", "contrast")  # dataset kinds stored as ``random`` windows

log = logging.getLogger("synthetic_store")


def choose_units(units: list[dict], per_family: int, pairs: int, seed: int) -> list[int]:
    """Line numbers of the chosen units: ``per_family`` of each single family, ``pairs`` two-concept ones."""
    by_family: dict[str, list[int]] = {}
    for i, unit in enumerate(units):
        by_family.setdefault(unit["family"], []).append(i)
    chosen = []
    for family in sorted(by_family):
        lines = sorted(by_family[family], key=lambda i: units[i]["unit"])
        random.Random(f"{seed}:{family}").shuffle(lines)
        chosen += lines[:pairs if family == TWO else per_family]
    return sorted(chosen)


def random_splits(n: int, rng: random.Random, held_out: float = 0.3) -> list[str]:
    """Splits of ``n`` random windows in seeded order: valid and test get ``held_out * n`` each, rounded half
    up (5 -> 2 and 2), train the rest (5 -> 1)."""
    held = min(int(np.floor(held_out * n + 0.5)), n // 2)
    splits = ["train"] * (n - 2 * held) + ["valid"] * held + ["test"] * held
    rng.shuffle(splits)
    return splits


def _ngrams(ids: list[int], n: int = NGRAM) -> set[tuple[int, ...]]:
    return {tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)}


def text_overlap(chosen: list[dict], train: list[dict]) -> dict:
    """Whole windows and ``NGRAM``-token runs of the chosen units that also occur in a training unit's windows."""
    windows = {tuple(ex["token_ids"]) for u in train for ex in u["exemplars"]}
    grams = set().union(*(_ngrams(ex["token_ids"]) for u in train for ex in u["exemplars"]))
    mine = [ex["token_ids"] for u in chosen for ex in u["exemplars"]]
    own = set().union(*(_ngrams(ids) for ids in mine))
    shared = own & grams
    return {"windows": len(mine), "windows_in_train": sum(tuple(ids) in windows for ids in mine),
            f"{NGRAM}-grams": len(own), f"{NGRAM}-grams_in_train": len(shared),
            "shared_examples": [list(g) for g in sorted(shared)[:3]]}


def held_out_check(manifest: dict, simulator_dir: Path) -> dict:
    """Compare the dataset with the training data recorded in a finetuned simulator's folder."""
    meta = json.loads((simulator_dir / "ns_dspy_simulator.json").read_text())
    trained = (meta.get("training") or {}).get("data") or {}
    keys = ("source", "seed", "tokenizer_name", "units", "exemplars")
    diffs = {k: {"dataset": manifest.get(k), "simulator": trained.get(k)} for k in keys
             if manifest.get(k) != trained.get(k)}
    if manifest.get("tokenizer", {}).get("fingerprint") != meta.get("tokenizer", {}).get("fingerprint"):
        diffs["tokenizer"] = "fingerprints differ"
    return {"simulator_dir": str(simulator_dir), "compared": list(keys) + ["tokenizer"], "same": not diffs,
            "differences": diffs, "valid_share": manifest.get("valid_share"),
            "note": "the simulator records the data's seed, counts and tokenizer, not valid_share (default 0.2)"}


def build(data: str | Path, out: str | Path, *, per_family: int = 6, pairs: int = 12, seed: int = 0,
          simulator_dir: str | Path | None = None, check: bool = True, overwrite: bool = False,
          command: str | None = None) -> Path:
    from ns_dspy.exemplars import ExemplarStore
    from ns_dspy.exemplars.interop import import_jsonl
    from ns_dspy.errors import ConfigError

    from simulator_training.data import read_manifest, read_units, unit_split

    data, out = Path(data), Path(out)
    manifest = read_manifest(data)
    valid = read_units(data, "valid")
    lines = choose_units(valid, per_family, pairs, seed)
    if not lines:
        raise ConfigError(f"{data} has no validation units to choose from")
    for i in lines:  # held out by construction: the split is by unit name (pairs: both of their parts)
        parts = valid[i]["unit"].removeprefix("pair:").rstrip("~").split("+") if valid[i]["family"] == TWO \
            else [valid[i]["unit"]]
        if manifest.get("source") == "synthetic" and any(
                unit_split(p, manifest["valid_share"], manifest["seed"]) != "valid" for p in parts):
            raise ConfigError(f"{valid[i]['unit']} is not a held-out concept of {data}")
    checks = {"text_overlap": text_overlap([valid[i] for i in lines], read_units(data, "train"))}
    if simulator_dir is None:
        import ns_dspy

        simulator_dir = Path(ns_dspy.__file__).parent / "simulators" / "trained" / "gemma-3-270m"
    checks["held_out_of"] = held_out_check(manifest, Path(simulator_dir))
    if check and not checks["held_out_of"]["same"]:
        raise ConfigError(f"{data} is not the data {simulator_dir} was trained on "
                          f"({checks['held_out_of']['differences']}): rebuild it with the same build-data "
                          "settings, or pass --no-check")
    if checks["text_overlap"]["windows_in_train"] or checks["text_overlap"][f"{NGRAM}-grams_in_train"]:
        log.warning("%d windows and %d %d-token runs of the chosen units also occur in training windows "
                    "(the same text in two documents)", checks["text_overlap"]["windows_in_train"],
                    checks["text_overlap"][f"{NGRAM}-grams_in_train"], NGRAM)
    rng = random.Random(f"{seed}:random-splits")
    records = out.with_name(out.name + ".records.jsonl")
    records.parent.mkdir(parents=True, exist_ok=True)
    ids: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    sidecar_units = {}
    with records.open("w", encoding="utf-8") as f:
        for i in lines:
            unit = valid[i]
            # a condition unit's contrast windows (its cue words present, the unit quiet) go with the random ones
            rand = [ex for ex in unit["exemplars"] if ex["kind"] in QUIET]
            split_of = dict(zip(map(id, rand), random_splits(len(rand), rng)))
            exemplars = []
            for ex in unit["exemplars"]:
                item = {"kind": "random" if ex["kind"] in QUIET else ex["kind"], "tokens": ex["tokens"],
                        "activations": ex["targets"]}
                if ex["kind"] in QUIET:
                    item["split"] = split_of[id(ex)]
                exemplars.append(item)
                ids[(f"0:{i}", tuple(ex["tokens"]))] = ex["token_ids"]
            f.write(json.dumps({"format": "ns-dspy-records", "version": 1, "unit": f"0:{i}",
                                "exemplars": exemplars}, ensure_ascii=False) + "\n")
            sidecar_units[f"0:{i}"] = {"name": unit["unit"], "family": unit["family"],
                                       "explanations": unit["explanations"], "line": i}
    model = f"synthetic:{manifest.get('tokenizer_name', 'unknown')}"
    path = import_jsonl(records, out, overwrite=overwrite, seed=seed, model=model,
                        hookpoint="simulator_training synthetic targets (0..10)")
    store = ExemplarStore.open(path)
    strings = json.loads((path / "strings.json").read_text(encoding="utf-8"))
    windows = np.load(path / "windows.npy")
    token_ids = np.full(windows.shape, -1, dtype=np.int64)
    owner = {}
    for unit in store.units():
        for split in ("train", "valid", "test"):
            for kind in ("top", "random"):
                for ex in store.exemplars(unit, split, kind):
                    owner[ex.window] = (str(unit), tuple(ex.tokens))
    for w in range(windows.shape[0]):
        tokens = tuple(strings[t] for t in windows[w] if t >= 0)
        key = owner[w]
        if key[1] != tokens or len(ids[key]) != len(tokens):
            raise RuntimeError(f"window {w} of {path} does not match its unit's exemplar")
        token_ids[w, :len(tokens)] = ids[key]
    np.save(path / "token_ids.npy", token_ids)  # the store format's optional ids (ExemplarStore.token_ids)
    families = sorted({u["family"] for u in sidecar_units.values()}, key=lambda f: (f == TWO, f))
    sidecar = {"format": SIDECAR_FORMAT, "version": 1, "command": command, "dataset": str(data),
               "dataset_resolved": str(data.resolve()), "split": "valid",
               "dataset_settings": {k: manifest.get(k) for k in ("source", "seed", "valid_share", "tokenizer_name",
                                                                 "units", "exemplars", "max_r")},
               "selection": {"per_family": per_family, "pairs": pairs, "seed": seed, "families": families},
               "checks": checks, "units": sidecar_units}
    (path / SIDECAR).write_text(json.dumps(sidecar, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_sidecar(path: str | Path) -> dict:
    """A sidecar (``STORE/synthetic.json`` or the given file): ``{"units": {"L:I": {name, family,
    explanations}}, ...}``."""
    sidecar = json.loads(Path(path).read_text(encoding="utf-8"))
    if sidecar.get("format") != SIDECAR_FORMAT or not isinstance(sidecar.get("units"), dict):
        raise ValueError(f"{path} is not an {SIDECAR_FORMAT} file (experiments/synthetic_store.py writes one)")
    return sidecar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a simulator_training dataset folder (build-data)")
    parser.add_argument("--out", required=True, help="the exemplar store to write")
    parser.add_argument("--per-family", type=int, default=6, help="single-concept units per family (default 6)")
    parser.add_argument("--pairs", type=int, default=12, help="two-concept units (default 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--simulator-dir", help="finetuned simulator folder whose training data must be --data "
                                                "(default: the shipped gemma-3-270m)")
    parser.add_argument("--no-check", action="store_true", help="build even when the checks fail")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    command = "python experiments/synthetic_store.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    path = build(args.data, args.out, per_family=args.per_family, pairs=args.pairs, seed=args.seed,
                 simulator_dir=args.simulator_dir, check=not args.no_check, overwrite=args.overwrite, command=command)
    sidecar = read_sidecar(path / SIDECAR)
    counts: dict[str, int] = {}
    for u in sidecar["units"].values():
        counts[u["family"]] = counts.get(u["family"], 0) + 1
    print(f"wrote {path}: {len(sidecar['units'])} units {counts}; checks {json.dumps(sidecar['checks'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
