"""Training data for the simulator: (explanations, exemplars with targets on the 0..10 scale) per unit.

A dataset is a folder::

    manifest.json   format, version, tokenizer fingerprint, sources, units per split and family
    train.jsonl     one unit per line: {"unit", "family", "explanations": [...],
    valid.jsonl        "exemplars": [{"tokens": [...], "token_ids": [...], "targets": [...], "kind"}]}

Splits are **by unit**: a validation unit is never trained on. Two sources write it:

* :func:`build_synthetic`: the concepts of :mod:`simulator_training.concepts` over real labelled text, train
  units on train text, validation units on text never trained on (:func:`simulator_training.text.text_split`);
  optionally WordNet categories (``wordnet`` family), whose exemplars include ``contrast`` windows: a sibling
  category's words present, the unit quiet; optionally ``condition`` units (a word only in a context, negation
  scope, quoted speech, a category but not one member, ...), whose contrast windows hold the same words where
  the condition does not hold;
* :func:`from_run_store`: an ``ns-dspy explain`` run: each explained unit's final explanations x its held-out
  (valid and test) exemplars, activations divided by the unit's maximum over the whole recording and clipped
  to 0..10, as Bills et al. (2023) normalise. ``token_ids`` are the subject's; training aligns them to the
  simulator's tokenizer (:func:`ns_dspy.simulators.align.align_to_tokenizer`), so any simulator can learn from
  any subject;
* :func:`from_exemplar_store`: real units of a recording without an explain run, from their **train** windows
  only: word lists as the statistical explainer writes them (:func:`ns_dspy.agents.evidence.ranked_tokens`),
  ranked on one half of the windows, x the other half, normalised as above; the units a caller evaluates on are
  excluded by name, and no valid or test window (the text every score is computed on) is ever trained on.

:func:`merge` concatenates datasets (e.g. synthetic + real) for one training run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import sysconfig
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from tqdm.auto import tqdm

from ns_dspy.atomic import atomic_dir, atomic_write_json
from ns_dspy.errors import ConfigError
from ns_dspy.simulators.finetuned_adapter import tokenizer_fingerprint

from .concepts import (CONDITION_FAMILY, FAMILIES, Concept, all_concepts, condition_concepts, explanations,
                       list_concepts, pair)
from .prose import long_explanations
from .text import Pool

log = logging.getLogger(__name__)

__all__ = ["DATA_FORMAT", "build_synthetic", "from_exemplar_store", "from_run_store", "merge", "read_units",
           "read_manifest", "unit_split", "load_pool"]

DATA_FORMAT = "ns-dspy-simulator-data"
DATA_VERSION = 1
SPLITS = ("train", "valid")


def unit_split(name: str, valid_share: float, seed: int = 0) -> str:
    h = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big") / 2 ** 64
    return "valid" if h < valid_share else "train"


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{folder} is not a simulator dataset (no manifest.json): make one with build-data") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON ({err}): rebuild the dataset with build-data") from None
    if manifest.get("format") != DATA_FORMAT or manifest.get("version") != DATA_VERSION:
        raise ConfigError(f"{folder} is not a version-{DATA_VERSION} {DATA_FORMAT} folder: rebuild it with build-data")
    return manifest


def read_units(folder: str | Path, split: str) -> list[dict]:
    """All units of one split (``train`` or ``valid``) of a dataset folder."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    read_manifest(folder)
    path = Path(folder) / f"{split}.jsonl"
    units = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                unit = json.loads(line)
                for ex in unit["exemplars"]:
                    if not (len(ex["tokens"]) == len(ex["targets"]) == len(ex["token_ids"])):
                        raise ValueError("tokens, token_ids and targets differ in length")
                if not unit["explanations"]:
                    raise ValueError("no explanation")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise ConfigError(f"{path}:{n} is not a unit record ({err}): rebuild the dataset") from None
            units.append(unit)
    return units


def write_units(out: str | Path, units: dict[str, list[dict]], manifest: dict, overwrite: bool) -> Path:
    counts = {s: dict(sorted(Counter(u["family"] for u in units[s]).items())) for s in SPLITS}
    manifest = {"format": DATA_FORMAT, "version": DATA_VERSION, **manifest, "units": counts,
                "exemplars": {s: sum(len(u["exemplars"]) for u in units[s]) for s in SPLITS}}
    try:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            for split in SPLITS:
                with (tmp / f"{split}.jsonl").open("w", encoding="utf-8") as f:
                    for unit in units[split]:
                        f.write(json.dumps(unit, ensure_ascii=False) + "\n")
            atomic_write_json(tmp / "manifest.json", manifest)
    except FileExistsError:
        raise ConfigError(f"{out} already exists: choose another folder or pass --overwrite") from None
    return Path(out)


# ----------------------------------------------------------------------------------------- synthetic

def load_pool(tokenizer, cache: Path | None = None, *, window: int = 64, progress: bool = True,
              max_code_chars: int = 12_000) -> Pool:
    """The labelled text pool for ``tokenizer``: Brown with its tags and the interpreter's standard-library
    code (the default corpus's sources), cached in ``cache`` when given (it takes ~1 min to build)."""
    from ns_dspy.corpus.brown import fetch_brown
    from ns_dspy.corpus.default import DEFAULT_VERSION
    from ns_dspy.corpus.stdlib import stdlib_files

    from .text import build_pool, code_documents, prose_documents

    key = f"{tokenizer_fingerprint(tokenizer)['fingerprint'][:16]}-w{window}-{DEFAULT_VERSION}"  # the text's version
    if cache is not None and (cache / key / "pool.json").is_file():
        return Pool.load(cache / key)
    docs = prose_documents(fetch_brown())
    root = Path(sysconfig.get_paths()["stdlib"])
    sources = []
    for path in stdlib_files(root):
        text = path.read_text(encoding="utf-8", errors="replace")[:max_code_chars]
        sources.append((path.relative_to(root).as_posix(), text[: text.rfind("\n") + 1]))
    docs += code_documents(sources)
    pool = build_pool(docs, tokenizer, window=window, progress=progress)
    if cache is not None:
        with atomic_dir(cache / key, overwrite=True) as tmp:
            pool.save(tmp)
    return pool


def _select(pool: Pool, parts: list[np.ndarray], candidates: np.ndarray, n_top: int, n_random: int,
            rng: np.random.Generator) -> list[tuple[int, str]]:
    """Windows for one unit: ``n_top`` among those where it fires most (split evenly between its parts, so
    both modes of a two-concept unit are shown), then ``n_random`` from all candidates."""
    chosen: list[tuple[int, str]] = []
    taken: set[int] = set()
    per = [n_top // len(parts) + (1 if k < n_top % len(parts) else 0) for k in range(len(parts))]
    for values, n in zip(parts, per):
        act = pool.token_values(values, candidates)
        hits = (act > 0).sum(1)
        strength = act.max(1) * np.sqrt(hits)
        firing = np.flatnonzero(strength > 0)
        if len(firing) < max(2, n // 2):
            return []
        pool_size = min(len(firing), 4 * n)
        best = firing[np.argsort(-strength[firing], kind="stable")[:pool_size]]
        for i in rng.permutation(best):
            w = int(candidates[i])
            if w not in taken and n > 0:
                chosen.append((w, "top"))
                taken.add(w)
                n -= 1
    for i in rng.permutation(len(candidates)):
        if sum(1 for _, k in chosen if k == "random") >= n_random:
            break
        w = int(candidates[i])
        if w not in taken:
            chosen.append((w, "random"))
            taken.add(w)
    return chosen


class _Overlap:
    """Pearson r between a concept's word activations and each validation concept's, on a fixed sample of
    words (exact enough to find near-duplicates; all words would take gigabytes)."""

    def __init__(self, pool: Pool, valid: list[Concept], seed: int, sample: int = 200_000):
        n = len(pool.lower_id)
        self.idx = np.sort(np.random.default_rng([seed, 7]).choice(n, size=min(sample, n), replace=False))
        rows = [self._unit(c.word_values(pool)) for c in valid]
        keep = [i for i, r in enumerate(rows) if r is not None]
        self.names = [valid[i].name for i in keep]
        self.matrix = np.stack([rows[i] for i in keep]) if keep else np.zeros((0, len(self.idx)), np.float32)

    def _unit(self, values: np.ndarray) -> np.ndarray | None:
        x = values[self.idx].astype(np.float64)
        x = x - x.mean()
        norm = np.linalg.norm(x)
        return (x / norm).astype(np.float32) if norm > 0 else None

    def twin(self, values: np.ndarray, max_r: float) -> str | None:
        x = self._unit(values)
        if x is None or not self.names:
            return None
        r = self.matrix @ x
        best = int(np.argmax(r))
        return self.names[best] if r[best] > max_r else None


def _contrast(pool: Pool, decoy: np.ndarray, values: np.ndarray, candidates: np.ndarray, taken: set[int], n: int,
              rng: np.random.Generator) -> list[tuple[int, str]]:
    """``n`` windows where the unit's decoy words occur while it is quiet on them (contrastive exemplars),
    drawn from the 4n windows with the most such words."""
    quiet = decoy & (values < 1.0)
    hits = (pool.token_values(quiet.astype(np.float32), candidates) > 0).sum(1)
    free = np.asarray([int(w) not in taken for w in candidates], dtype=bool)
    firing = np.flatnonzero((hits > 0) & free)
    best = firing[np.argsort(-hits[firing], kind="stable")[:4 * n]]
    return [(int(candidates[i]), "contrast") for i in rng.permutation(best)[:n]]


def _unit_record(pool: Pool, concept: Concept, parts: list[np.ndarray], text: str, n_top: int, n_random: int,
                 n_explanations: int, rng: np.random.Generator, prng: random.Random,
                 n_contrast: int = 0, n_long: int = 0, seed: int = 0) -> dict | None:
    candidates = pool.windows(text, concept.source)
    picked = _select(pool, parts, candidates, n_top, n_random, rng)
    if not picked:
        return None
    if concept.decoy is not None and n_contrast > 0:
        values = np.maximum.reduce(parts) if len(parts) > 1 else parts[0]
        picked += _contrast(pool, concept.decoy(pool), values, candidates, {w for w, _ in picked}, n_contrast, rng)
    values = np.maximum.reduce(parts) if len(parts) > 1 else parts[0]
    exemplars = []
    for w, kind in picked:
        ids, tokens = pool.tokens(w)
        targets = pool.token_values(values, np.asarray([w]))[0, :len(ids)]
        exemplars.append({"tokens": tokens, "token_ids": ids, "targets": [round(float(t), 2) for t in targets],
                          "kind": kind})
    record = {"unit": concept.name, "family": concept.family,
              "explanations": explanations(concept, prng, n_explanations), "exemplars": exemplars}
    if n_long:  # from a generator of their own: the rest of the dataset is the same with or without them
        seen = [SimpleNamespace(tokens=ex["tokens"], activations=ex["targets"]) for ex in exemplars]
        record["long_explanations"] = long_explanations(concept.descriptions, seen,
                                                        random.Random(f"{seed}:{concept.name}:long"), n_long,
                                                        weak=concept.weak)
    return record


def build_synthetic(out: str | Path, tokenizer, *, tokenizer_name: str, pool: Pool | None = None,
                    valid_share: float = 0.2, n_top: int = 8, n_random: int = 4, valid_top: int = 10,
                    valid_random: int = 5, pairs_train: int = 400, pairs_valid: int = 60, n_explanations: int = 6,
                    max_r: float = 0.8, seed: int = 0, families: tuple[str, ...] = FAMILIES, progress: bool = True,
                    overwrite: bool = False, wordnet=None, wordnet_units: int = 300, n_contrast: int = 3,
                    wordnet_options: dict | None = None, conditions: bool = False,
                    condition_options: dict | None = None, lists: int = 0, spelling: int = 0,
                    syntax: int = 0, long: int = 0, whitespace: int = 0, narrow: int = 0,
                    narrow_options: dict | None = None, neighbour: int = 0,
                    neighbour_options: dict | None = None, word_classes: int = 0, context: int = 0,
                    context_options: dict | None = None) -> Path:
    """Write a synthetic dataset for ``tokenizer`` (see the module docstring). Train units draw their
    windows from train text, validation units from eval text; two-concept units pair units of the same split.
    A training unit whose activations over the text correlate above ``max_r`` with a validation unit's (the
    same concept under another name, e.g. "semicolons" next to "colons and semicolons") is left out, so
    validation measures concepts never trained on; the manifest lists what was left out and why.

    ``wordnet`` (a :class:`~simulator_training.wordnet.WordNet` or its folder; default: none) adds the
    ``wordnet`` family: ``wordnet_units`` categories (:func:`simulator_training.wordnet.categories`), split by
    unit like the others (a validation category is never a training one), each with ``n_contrast`` extra
    ``contrast`` windows where a sibling category's words occur and the unit is quiet on them;
    ``wordnet_options`` are further keyword arguments of ``categories`` (thresholds, for tiny test texts).

    ``conditions`` (or ``"condition"`` in ``families``; default: off) adds the ``condition`` family
    (:func:`simulator_training.concepts.condition_concepts`, ``condition_options`` its keyword arguments), each
    unit with ``n_contrast`` ``contrast`` windows where its decoy (the same words where the condition does not
    hold) occurs and it is quiet. Without it the dataset is what it was: no other unit, draw or record changes.

    ``lists`` (default 0: off) adds that many units of the ``lists`` family
    (:func:`simulator_training.concepts.list_concepts`): arbitrary sets of 4 to 32 words, described by listing
    them.

    ``spelling`` and ``syntax`` (default 0: off) add that many generated units to those families
    (:mod:`simulator_training.generated`): letter sequences and word lengths, and one part of speech right after
    another, drawn from the pool's own words.

    ``long`` (default 0: off) adds that many long explanations per unit, written as an explainer LM writes them
    (:mod:`simulator_training.prose`), as ``long_explanations``; the rest of the dataset is unchanged.

    ``whitespace`` (default 0: off) adds that many training units per class of the ``whitespace`` family
    (:mod:`simulator_training.whitespace`: line breaks, blank lines, indentation, spaces; values set per token),
    from generators of their own: the rest of the dataset is unchanged.

    ``narrow`` (default 0: off) adds up to that many training units of the ``narrow`` family
    (:func:`simulator_training.concepts.narrow_concepts`): one to three words of a training ``wordnet`` or
    ``semantic`` unit's category, described by listing them, each with ``n_top // 2`` contrast windows where the
    category's other members occur and the unit is quiet; from generators of their own, after every other unit,
    so the rest of the dataset is unchanged, and left out like any training unit when it is a validation unit's
    twin over the text; ``narrow_options`` are further keyword arguments of ``narrow_concepts`` (for tiny texts).

    ``neighbour`` (default 0: off) adds up to that many training units of the ``neighbour`` family
    (:func:`simulator_training.concepts.neighbour_concepts`): a training unit's concept and the words beside its
    active words, described as the concept "; also" those words; from generators of their own, after the narrow
    units (``neighbour_options``: further keyword arguments of ``neighbour_concepts``).

    ``word_classes`` (default 0: off) adds that many training units per word class of the ``word_class`` family
    (:func:`simulator_training.whitespace.word_class_units`: the parts of speech the statistical explainer names,
    read from ns-dspy's lexicon on prose and code; a class whose ``syntax`` unit is a validation unit is left
    out), from generators of their own after the whitespace units: the rest of the dataset is unchanged.

    ``context`` (default 0: off) adds up to that many training units of the ``context`` family
    (:func:`simulator_training.concepts.context_concepts`): one word only right after one other word, described as
    ns-dspy's statistical explainer writes it, each with ``n_top // 2`` contrast windows where the word occurs
    after another word and the unit is quiet; from generators of their own, after the neighbour units, and left
    out like any training unit when it is a validation unit's twin (``context_options``: further keyword
    arguments of ``context_concepts``)."""
    if long < 0:
        raise ConfigError(f"--long must be 0 or more, got {long}")
    if whitespace < 0:
        raise ConfigError(f"--whitespace must be 0 or more, got {whitespace}")
    if narrow < 0:
        raise ConfigError(f"--narrow must be 0 or more, got {narrow}")
    if neighbour < 0:
        raise ConfigError(f"--neighbour must be 0 or more, got {neighbour}")
    if context < 0:
        raise ConfigError(f"--context must be 0 or more, got {context}")
    if wordnet is not None and not hasattr(wordnet, "synsets"):
        from .wordnet import load_wordnet

        wordnet = load_wordnet(wordnet)  # a bad folder fails here, before anything is read or written
    pool = pool or load_pool(tokenizer, progress=progress)
    concepts = [c for c in all_concepts(pool) if c.family in families]
    wordnet_info = None
    if wordnet is not None:
        from .concepts import wordnet_concepts
        from .wordnet import categories

        cats = categories(wordnet, pool, wordnet_units, seed=seed, **(wordnet_options or {}))
        concepts += wordnet_concepts(cats, seed)
        wordnet_info = {"folder": str(Path(wordnet.folder).resolve()), "categories": len(cats),
                        "requested": wordnet_units, "contrast_windows": n_contrast}
    condition_info = None
    if conditions or CONDITION_FAMILY in families:
        made = condition_concepts(pool, **(condition_options or {}))
        concepts += made
        condition_info = {"units": len(made), "contrast_windows": n_contrast, "options": condition_options or {}}
    list_info = None
    if lists:
        made = list_concepts(pool, lists, seed)
        concepts += made
        list_info = {"units": len(made), "requested": lists}
    generated_info = {}
    if spelling or syntax:
        from .generated import spelling_concepts, syntax_concepts

        for family, n, make in (("spelling", spelling, spelling_concepts), ("syntax", syntax, syntax_concepts)):
            if n:
                made = make(pool, n, seed)
                concepts += made
                generated_info[family] = {"units": len(made), "requested": n}
    rng, prng = np.random.default_rng(seed), random.Random(seed)
    units: dict[str, list[dict]] = {s: [] for s in SPLITS}
    kept: dict[str, list[tuple[Concept, np.ndarray]]] = {s: [] for s in SPLITS}
    overlap = _Overlap(pool, [c for c in concepts if unit_split(c.name, valid_share, seed) == "valid"], seed)
    dropped: dict[str, str] = {}
    for concept in tqdm(concepts, desc="synthetic units", disable=not progress, unit="unit"):
        split = unit_split(concept.name, valid_share, seed)
        values = concept.word_values(pool)
        if split == "train" and (twin := overlap.twin(values, max_r)) is not None:
            log.info("%s: r > %.2f with validation unit %s over the text, not trained on", concept.name, max_r, twin)
            dropped[concept.name] = twin
            continue
        text = "eval" if split == "valid" else "train"
        top, rand = (valid_top, valid_random) if split == "valid" else (n_top, n_random)
        record = _unit_record(pool, concept, [values], text, top, rand, n_explanations, rng, prng, n_contrast,
                              long, seed)
        if record is None:
            log.info("%s: too rare in %s text, skipped", concept.name, text)
            continue
        units[split].append(record)
        kept[split].append((concept, values))
    for split, n_pairs in (("train", pairs_train), ("valid", pairs_valid)):
        pool_split = kept[split]
        text = "eval" if split == "valid" else "train"
        top, rand = (valid_top, valid_random) if split == "valid" else (n_top, n_random)
        made, tries = 0, 0
        while made < n_pairs and tries < n_pairs * 5 and len(pool_split) > 1:
            tries += 1
            (a, va), (b, vb) = prng.sample(pool_split, 2)
            if a.family == b.family == "word" and prng.random() < 0.7:
                continue  # keep pairs varied: mostly across families
            weak = prng.random() < 0.3
            concept = pair(a, b, weak)
            record = _unit_record(pool, concept, [va, vb * (0.6 if weak else 1.0)], text, top, rand,
                                  n_explanations, rng, prng, n_long=long, seed=seed)
            if record is not None:
                units[split].append(record)
                made += 1
    def add_training_units(concepts: list[Concept], key: int, name: str, n_contrast: int) -> int:
        """Training units of ``concepts`` (an opt-in family built after all others), drawn with generators of
        their own (seeded by ``key`` and ``name``) so the rest of the dataset is unchanged; a validation unit's
        twin is left out. Returns how many were added."""
        frng, fprng, added = np.random.default_rng([seed, key]), random.Random(f"{seed}:{name}-text"), 0
        for concept in concepts:
            values = concept.word_values(pool)
            if (twin := overlap.twin(values, max_r)) is not None:
                dropped[concept.name] = twin
                continue
            record = _unit_record(pool, concept, [values], "train", n_top, n_random, n_explanations, frng, fprng,
                                  n_contrast, long, seed)
            if record is not None:
                units["train"].append(record)
                added += 1
        return added

    narrow_info = None
    if narrow:
        from .concepts import NARROW_FAMILY, narrow_concepts

        sources = [c for c, _ in kept["train"] if c.family in ("wordnet", "semantic")]
        made = add_training_units(narrow_concepts(sources, pool, narrow, seed, **(narrow_options or {})), 7,
                                  "narrow", max(1, n_top // 2))
        narrow_info = {"units": made, "requested": narrow, "family": NARROW_FAMILY,
                       "contrast_windows": max(1, n_top // 2)}
    neighbour_info = None
    if neighbour:
        from .concepts import LIST_FAMILY, NEIGHBOUR_FAMILY, neighbour_concepts

        sources = [c for c, _ in kept["train"] if c.family != LIST_FAMILY]
        made = add_training_units(neighbour_concepts(sources, pool, neighbour, seed, **(neighbour_options or {})),
                                  11, "neighbour", 0)
        neighbour_info = {"units": made, "requested": neighbour, "family": NEIGHBOUR_FAMILY}
    context_info = None
    if context:
        from .concepts import CONTEXT_FAMILY, context_concepts

        made = add_training_units(context_concepts(pool, context, seed, **(context_options or {})), 13, "context",
                                  max(1, n_top // 2))
        context_info = {"units": made, "requested": context, "family": CONTEXT_FAMILY,
                        "contrast_windows": max(1, n_top // 2)}
    if whitespace:
        from .whitespace import whitespace_units

        spaces = whitespace_units(pool, replicas=whitespace, n_top=n_top, n_random=n_random,
                                  n_explanations=n_explanations, seed=seed)
        units["train"] += spaces
    if word_classes:
        from .whitespace import word_class_units

        classes = word_class_units(pool, replicas=word_classes, n_top=n_top, n_random=n_random,
                                   n_explanations=n_explanations, seed=seed, valid_share=valid_share, split_seed=seed)
        units["train"] += classes
    manifest = {"source": "synthetic", "tokenizer_name": tokenizer_name,
                "tokenizer": tokenizer_fingerprint(tokenizer), "seed": seed, "valid_share": valid_share,
                "max_r": max_r, "left_out_near_valid": dropped, "text": pool.meta}
    if wordnet_info is not None:
        manifest["wordnet"] = wordnet_info
    if condition_info is not None:
        manifest["conditions"] = condition_info
    if list_info is not None:
        manifest["lists"] = list_info
    if generated_info:
        manifest["generated"] = generated_info
    if long:
        manifest["long_explanations"] = long
    if whitespace:
        manifest["whitespace"] = {"units": len(spaces), "replicas": whitespace}
    if word_classes:
        manifest["word_classes"] = {"units": len(classes), "replicas": word_classes}
    if narrow_info is not None:
        manifest["narrow"] = narrow_info
    if neighbour_info is not None:
        manifest["neighbour"] = neighbour_info
    if context_info is not None:
        manifest["context"] = context_info
    return write_units(out, units, manifest, overwrite)


# ----------------------------------------------------------------------------------------- real runs

def from_run_store(out: str | Path, run_path: str | Path, *, store_path: str | Path | None = None,
                   valid_share: float = 0.2, seed: int = 0, overwrite: bool = False) -> Path:
    """A dataset from an ``ns-dspy explain`` run (see the module docstring). ``store_path`` defaults to the
    exemplar store recorded in the run's configuration."""
    from ns_dspy.errors import StoreError
    from ns_dspy.exemplars import ExemplarStore
    from ns_dspy.runs.read import read_run

    if not Path(run_path).is_file():
        raise ConfigError(f"run store {run_path} does not exist: give the RUN.sqlite that ns-dspy explain wrote")
    try:
        run = read_run(run_path)  # read only: the run file is neither written nor locked
    except StoreError as err:
        raise StoreError(f"{err}: choose another --from-run") from None
    meta = run.meta
    store_path = store_path or (meta.get("config") or {}).get("store") or meta.get("store")
    if not store_path:
        raise ConfigError(f"{run_path} does not name its exemplar store: pass --store")
    store = ExemplarStore.open(store_path)
    units: dict[str, list[dict]] = {s: [] for s in SPLITS}
    tokenizer_name = _model_name(store)
    for rec in run.records:
        if rec.status != "done":
            continue
        finals = [f.explanation for f in rec.typed_trace.finals if f.explanation]
        if not finals:
            continue
        peak = store.stats(rec.unit).get("max", 0.0)
        if not peak or peak <= 0:
            continue
        exemplars = [_targets(ex, peak, store_path) for split in ("valid", "test") for kind in ("top", "random")
                     for ex in store.exemplars(rec.unit, split, kind)]
        split = unit_split(str(rec.unit), valid_share, seed)
        units[split].append({"unit": str(rec.unit), "family": "recorded", "explanations": finals,
                             "exemplars": exemplars})
    if not units["train"] and not units["valid"]:
        raise ConfigError(f"{run_path} has no finished unit with explanations: run ns-dspy explain first")
    manifest = {"source": "run", "run": str(Path(run_path).resolve()), "store": str(Path(store_path).resolve()),
                "tokenizer_name": tokenizer_name, "seed": seed, "valid_share": valid_share}
    return write_units(out, units, manifest, overwrite)


def _model_name(store) -> str | None:
    """The subject model's name as the store's manifest gives it (a dict with ``name`` or a plain string)."""
    model = store.manifest.get("model")
    return (model or {}).get("name") if isinstance(model, dict) else model


def _targets(ex, peak: float, store_path) -> dict:
    """One exemplar as training data: its tokens and ids, targets ``activation / peak * 10`` clipped to 0..10."""
    if ex.token_ids is None:
        raise ConfigError(f"{store_path} keeps no token ids: re-record it with this ns_dspy")
    targets = np.clip(ex.activations / peak * 10.0, 0.0, 10.0)
    return {"tokens": list(ex.tokens), "token_ids": [int(i) for i in ex.token_ids],
            "targets": [round(float(t), 2) for t in targets], "kind": ex.kind}


#: the list lengths :func:`from_exemplar_store` writes per unit: a first tier and longer prefixes of the ranking,
#: as the statistical explainer's lists run (one to 16 words)
STORE_LIST_SIZES = (1, 3, 8, 16)


def from_exemplar_store(out: str | Path, store_path: str | Path, *, n_units: int = 300,
                        exclude: set[str] | frozenset[str] = frozenset(), sizes=STORE_LIST_SIZES,
                        valid_share: float = 0.2, seed: int = 0, overwrite: bool = False) -> Path:
    """A dataset of ``n_units`` real units drawn at random (``seed``) from a recording's exemplar store, none of
    them in ``exclude`` (unit names such as ``"9:1397"``: the units anything is evaluated on). Only the units'
    **train** windows (top and random) are read, split in two halves by alternating rank (every other top window,
    every other random one): each unit's explanations are word lists of its ``k`` best tokens for each ``k`` in
    ``sizes``, ranked on the first half as the statistical explainer ranks them
    (:func:`ns_dspy.agents.evidence.ranked_tokens`), and its exemplars are the second half, targets as
    :func:`from_run_store` normalises them: a list is read on windows it was not written from, as in the product,
    and the valid and test windows of the recording, on which every score is computed, are never trained on.
    Family ``recorded``; a unit with no positive peak or no ranked token is skipped."""
    from ns_dspy.agents.evidence import ranked_tokens, word_list
    from ns_dspy.exemplars import ExemplarStore

    if n_units < 1:
        raise ConfigError(f"--units must be at least 1, not {n_units}")
    if not Path(store_path).is_dir():
        raise ConfigError(f"exemplar store {store_path} does not exist: give the folder ns-dspy record wrote")
    store = ExemplarStore.open(store_path)
    pool = [u for u in store.units() if str(u) not in exclude]
    random.Random(seed).shuffle(pool)
    units: dict[str, list[dict]] = {s: [] for s in SPLITS}
    skipped, taken = 0, 0
    for unit in pool:
        if taken >= n_units:
            break
        peak = store.stats(unit).get("max", 0.0)
        halves = [[], []]
        for kind in ("top", "random"):
            for i, ex in enumerate(store.exemplars(unit, "train", kind)):
                halves[i % 2].append(ex)
        ranked = ranked_tokens(halves[0], most=max(sizes)) if peak and peak > 0 else []
        finals = list(dict.fromkeys(word_list([r.token for r in ranked[:k]]) for k in sizes if k <= len(ranked)))
        if not finals or not halves[1]:
            skipped += 1
            continue
        exemplars = [_targets(ex, peak, store_path) for ex in halves[1]]
        split = unit_split(str(unit), valid_share, seed)
        units[split].append({"unit": str(unit), "family": "recorded", "explanations": finals,
                             "exemplars": exemplars})
        taken += 1
    if taken < n_units:
        raise ConfigError(f"{store_path} has only {taken} usable units outside the excluded ones, not {n_units}: "
                          f"ask for fewer with --units")
    tokenizer_name = _model_name(store)
    manifest = {"source": "store", "store": str(Path(store_path).resolve()), "tokenizer_name": tokenizer_name,
                "seed": seed, "valid_share": valid_share, "list_sizes": list(sizes), "skipped": skipped,
                "excluded": sorted(exclude)}
    return write_units(out, units, manifest, overwrite)


def merge(out: str | Path, folders: list[str | Path], *, overwrite: bool = False) -> Path:
    """One dataset from several (unit names are prefixed with the source folder's name when they clash)."""
    units: dict[str, list[dict]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    sources = []
    for folder in folders:
        sources.append(read_manifest(folder))
        for split in SPLITS:
            for unit in read_units(folder, split):
                if unit["unit"] in seen:
                    unit = {**unit, "unit": f"{Path(folder).name}/{unit['unit']}"}
                seen.add(unit["unit"])
                units[split].append(unit)
    return write_units(out, units, {"source": "merged", "parts": sources}, overwrite)

