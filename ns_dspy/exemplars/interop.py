"""Exemplars in and out of a store: a JSON-lines activation-record format, and OpenAI NeuronRecord files.

JSONL format (``format: ns-dspy-records``, ``version: 1``): UTF-8 text, one JSON object per line, one line
per unit, e.g.::

    {"format": "ns-dspy-records", "version": 1, "unit": "5:123", "model": "gemma-3-270m", "hookpoint": "...",
     "exemplars": [{"split": "train", "kind": "top", "tokens": ["The", " cat"], "activations": [0.1, 2.3]}]}

Fields of a line:
    format       ``"ns-dspy-records"``. Optional on import; any other value is refused as a foreign file.
    version      ``1``. Optional on import; any other value is refused.
    unit         ``"LAYER:INDEX"``, e.g. ``"5:123"`` (channel/neuron ``INDEX`` of the hookpoint at ``LAYER``).
                 Files from other tools may give ``"layer"`` and ``"index"`` (or ``"neuron"``) integers instead.
    model        name of the subject model (a string). Optional; used when the importer is given no ``model``.
    hookpoint    the hookpoint the activations were read at. Optional; used when the importer is given none.
    exemplars    non-empty list of exemplar objects, each:
        tokens       non-empty list of token strings, in order; joined they give the window's text.
        activations  list of finite numbers, one per token. Export writes 6 significant digits (relative
                     error below 1e-5; a float16 store round-trips exactly).
        kind         ``"top"`` | ``"random"`` | ``"negative"`` (see :data:`ns_dspy.types.KINDS`); default ``"top"``.
        split        ``"train"`` | ``"valid"`` | ``"test"``; when missing, the importer assigns one (below).

Blank lines are skipped. A unit on several lines gets the exemplars of all of them. Export writes the units in
store order and each unit's exemplars grouped by split, then kind, best first within a group (random ones in
sample order). Other keys are ignored on import.

Splits of exemplars that have none (every exemplar of a NeuronRecord) are fixed by ``seed`` and ``split``:

* ``top`` (``negative``) exemplars are ranked by max (min) activation, best first, and the ranks taken in
  blocks of B, the smallest size (up to 100) in which the fractions are whole counts (10 for 0.4/0.3/0.3).
  Each block holds exactly those counts, in an order permuted per (seed, unit, block) with
  :func:`~ns_dspy.recording.windows.uniform_keys`, so every split sees the whole activation range. A short
  last block gets the counts nearest the fractions.
* ``random`` exemplars get a split from a hash of (seed, unit, record index), like recorded windows.

The imported store has every exemplar as its own window row (padded with -1 to the longest), no
``token_ids``, and per-unit stats computed from the imported activations: max and min over all of them; mean,
std and frequency (fraction > 0) over the random exemplars when the unit has any, else over all.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import ConfigError, StoreError
from ..recording.windows import uniform_keys
from ..types import KINDS, SPLITS, Exemplar, UnitId, unit_range_problem
from .store import ExemplarStore, LayerData, write_store

__all__ = ["FORMAT", "VERSION", "export_jsonl", "import_jsonl", "import_neuron_records", "write_exemplars"]

log = logging.getLogger(__name__)

FORMAT = "ns-dspy-records"
VERSION = 1
_STREAMS = {"random": 1, "top": 2, "negative": 3}
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass
class _Record:
    """One parsed exemplar whose split may still be unknown."""

    tokens: list[str]
    acts: np.ndarray
    kind: str
    split: str | None


# -- export -----------------------------------------------------------------------------------------------
def _name(value) -> str | None:
    if isinstance(value, dict):
        value = value.get("name")
    return value if isinstance(value, str) else None


def export_jsonl(store: ExemplarStore, path: str | Path, units: list[UnitId] | None = None) -> int:
    """Write ``units`` (default: all) of ``store`` to ``path`` as ns-dspy-records JSONL; returns units written."""
    path = Path(path)
    units = store.units() if units is None else [UnitId.parse(u) if isinstance(u, str) else u for u in units]
    head = {"format": FORMAT, "version": VERSION}
    model, hookpoint = _name(store.manifest.get("model")) or "unknown", str(store.manifest.get("hookpoint", "unknown"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise StoreError(f"cannot write {path}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for unit in units:
                exemplars = [{"split": split, "kind": kind, "tokens": ex.tokens,
                              "activations": [float(f"{a:.6g}") for a in ex.activations.tolist()]}
                             for split in SPLITS for kind in KINDS for ex in store.exemplars(unit, split, kind)]
                line = {**head, "unit": str(unit), "model": model, "hookpoint": hookpoint, "exemplars": exemplars}
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {err.strerror or err}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("exported %d units of %s to %s", len(units), store.path, path)
    return len(units)


# -- parsing ----------------------------------------------------------------------------------------------
def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _json_lines(path: Path) -> Iterator[tuple[str, object]]:
    """(``"file:line"``, object) for each non-blank line of a JSONL file."""
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{path}:{lineno}", json.loads(line)
                except json.JSONDecodeError as err:
                    raise StoreError(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno}): "
                                     "fix or remove that line") from None
                except ValueError as err:  # e.g. an integer of over 4300 digits
                    raise StoreError(f"{path}:{lineno}: unreadable JSON ({str(err).splitlines()[0]}): "
                                     "fix or remove that line") from None
    except FileNotFoundError:
        raise StoreError(f"no such file: {path}") from None
    except UnicodeDecodeError:
        raise StoreError(f"{path} is not UTF-8 text: give a JSONL file") from None
    except IsADirectoryError:
        raise StoreError(f"{path} is a directory: give a .jsonl file") from None


def _record(obj, where: str, kind: str | None = None) -> _Record:
    """Parse one ``{"tokens", "activations"[, "kind", "split"]}`` object; a given ``kind`` overrides the file's."""
    if not isinstance(obj, dict):
        raise StoreError(f'{where}: an exemplar must be an object with "tokens" and "activations"')
    tokens, acts = obj.get("tokens"), obj.get("activations")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise StoreError(f'{where}: "tokens" must be a non-empty list of strings')
    if not isinstance(acts, list) or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in acts):
        raise StoreError(f'{where}: "activations" must be a list of numbers, one per token')
    if len(tokens) != len(acts):
        raise StoreError(f"{where}: {len(tokens)} tokens but {len(acts)} activations: give one activation per token")
    big = [i for i, a in enumerate(acts) if isinstance(a, int) and abs(a) > _F32_MAX]  # float() would overflow
    if big:
        raise StoreError(f"{where}: activation {big[0]} is a {len(str(abs(acts[big[0]])))}-digit integer: "
                         "activations must be finite float32 numbers")
    arr = np.asarray(acts, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(arr) | (np.abs(arr) > _F32_MAX))
    if bad.size:
        raise StoreError(f"{where}: activation {bad[0]} is {acts[bad[0]]}: activations must be finite float32 numbers")
    split = None
    if kind is None:
        kind, split = obj.get("kind", "top"), obj.get("split")
        if kind not in KINDS:
            raise StoreError(f"{where}: unknown kind {kind!r}: use one of {', '.join(KINDS)}")
        if split is not None and split not in SPLITS:
            raise StoreError(f"{where}: unknown split {split!r}: use one of {', '.join(SPLITS)} or leave it out")
    return _Record(tokens, arr.astype(np.float32), kind, split)


def _unit_in_range(layer: int, index: int, where: str) -> UnitId:
    problem = unit_range_problem(layer, index)
    if problem:
        raise StoreError(f"{where}: unit {problem}: fix that record")
    return UnitId(layer, index)


def _unit_of(obj: dict, where: str) -> UnitId:
    unit = obj.get("unit")
    if isinstance(unit, str):
        try:
            return UnitId.parse(unit)
        except ConfigError as err:
            if "out of range" in str(err):  # LAYER:INDEX, but too large
                raise StoreError(f"{where}: {err}: fix that record") from None
            shown = unit if len(unit) <= 40 else unit[:40] + "..."
            raise StoreError(f'{where}: bad "unit" {shown!r}: write "LAYER:INDEX", e.g. "5:123"') from None
    if isinstance(unit, list) and len(unit) == 2 and all(_is_int(x) for x in unit):
        return _unit_in_range(*unit, where)
    layer, index = obj.get("layer"), obj.get("index", obj.get("neuron"))
    if unit is None and _is_int(layer) and _is_int(index):
        return _unit_in_range(layer, index, where)
    raise StoreError(f'{where}: no unit: give "unit": "LAYER:INDEX", or "layer" and "index" integers')


def _check_fractions(split) -> tuple[float, float, float]:
    try:
        fractions = tuple(float(x) for x in split)
    except (TypeError, ValueError):
        fractions = ()
    if len(fractions) != len(SPLITS) or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ConfigError(f"split fractions {split!r} must be 3 non-negative numbers summing to 1, "
                          "e.g. (0.4, 0.3, 0.3)")
    return fractions  # type: ignore[return-value]


def _refuse_existing(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise StoreError(f"{out} already exists: choose another --out or pass --overwrite")


# -- split assignment -------------------------------------------------------------------------------------
def _keys(unit: UnitId, ids: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """uniform_keys salted by ``unit``, so two units' records get independent keys."""
    unit_key = np.array([(unit.layer << 32) | unit.index], dtype=np.uint64)
    salt = np.uint64(int(uniform_keys(unit_key, seed, stream)[0] * 2**53))
    return uniform_keys(np.asarray(ids, dtype=np.uint64) ^ salt, seed, stream)


def _counts(fractions: tuple[float, ...], n: int) -> np.ndarray:
    """Largest-remainder split of ``n`` items by ``fractions`` (ties go to the earlier split)."""
    raw = np.asarray(fractions) * n
    counts = np.floor(raw + 1e-9).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:n - counts.sum()]] += 1
    return counts


def _block_size(fractions: tuple[float, ...]) -> int:
    for b in range(1, 101):
        raw = np.asarray(fractions) * b
        if np.allclose(raw, np.round(raw), atol=1e-6):
            return b
    return 100


def _stratified(unit: UnitId, n: int, seed: int, stream: int, fractions: tuple[float, ...]) -> np.ndarray:
    """Split index of each of ``n`` ranks: whole blocks hold the fractions' counts, permuted per block."""
    b = _block_size(fractions)
    out = np.empty(n, dtype=np.int64)
    for start in range(0, n, b):
        m = min(b, n - start)
        pattern = np.repeat(np.arange(len(fractions)), _counts(fractions, m))
        keys = _keys(unit, np.arange(start, start + m), seed, stream)
        out[start:start + m] = pattern[np.argsort(keys, kind="stable")]
    return out


def _assign(unit: UnitId, records: list[_Record], seed: int, fractions: tuple[float, ...]) -> list[Exemplar]:
    """Give every split-less record of ``unit`` a split; return them all as Exemplars."""
    edges = np.cumsum(fractions)[:-1]
    for kind in KINDS:
        todo = [r for r in records if r.kind == kind and r.split is None]
        if not todo:
            continue
        if kind == "random":
            idx = np.searchsorted(edges, _keys(unit, np.arange(len(todo)), seed, _STREAMS[kind]), side="right")
            ranked = todo
        else:
            sign = -1.0 if kind == "top" else 1.0
            ranked = sorted(todo, key=lambda r: sign * float(r.acts.max() if kind == "top" else r.acts.min()))
            idx = _stratified(unit, len(ranked), seed, _STREAMS[kind], fractions)
        for r, s in zip(ranked, idx):
            r.split = SPLITS[int(s)]
    return [Exemplar(tokens=r.tokens, activations=r.acts, kind=r.kind, split=r.split) for r in records]


# -- building the store -----------------------------------------------------------------------------------
def _best_first(exemplars: list[Exemplar]) -> list[Exemplar]:
    key = {"top": lambda e: -e.max_activation, "random": lambda e: 0.0,
           "negative": lambda e: float(e.activations.min()) if e.activations.size else 0.0}
    return sorted(exemplars, key=lambda e: (SPLITS.index(e.split), KINDS.index(e.kind), key[e.kind](e)))


def _unit_stats(exemplars: list[Exemplar]) -> dict[str, float]:
    every = np.concatenate([e.activations for e in exemplars]).astype(np.float64)
    rand = [e.activations for e in exemplars if e.kind == "random"]
    sample = np.concatenate(rand).astype(np.float64) if rand else every
    if every.size == 0:
        return dict.fromkeys(("mean", "std", "max", "min", "frequency"), 0.0)
    return {"mean": sample.mean(), "std": sample.std(), "max": every.max(), "min": every.min(),
            "frequency": float((sample > 0).mean())}


def write_exemplars(exemplars: dict[UnitId, list[Exemplar]], out: str | Path, *, manifest: dict,
                    overwrite: bool = False) -> Path:
    """Write per-unit exemplars (each with its split and kind set) as a store, one window row per exemplar."""
    if not exemplars:
        raise ValueError("no units to write")
    units = sorted(exemplars)
    ordered = {u: _best_first(exemplars[u]) for u in units}
    flat = [e for u in units for e in ordered[u]]
    width = max([len(e.tokens) for e in flat] + [1])
    windows = np.full((len(flat), width), -1, dtype=np.int32)
    window_split = np.array([SPLITS.index(e.split) for e in flat], dtype=np.int8)
    strings: dict[str, int] = {}
    groups: dict[UnitId, dict[tuple[str, str], list[int]]] = {u: {} for u in units}
    row = 0
    for u in units:
        for e in ordered[u]:
            windows[row, :len(e.tokens)] = [strings.setdefault(t, len(strings)) for t in e.tokens]
            groups[u].setdefault((e.split, e.kind), []).append(row)
            row += 1
    kinds = [k for k in KINDS if any(e.kind == k for e in flat)]
    layers = {}
    for layer in sorted({u.layer for u in units}):
        lunits = [u for u in units if u.layer == layer]
        slots = {}
        for split in SPLITS:
            for kind in kinds:
                k = max(len(groups[u].get((split, kind), [])) for u in lunits)
                win = np.full((len(lunits), k), -1, dtype=np.int64)
                acts = np.zeros((len(lunits), k, width), dtype=np.float32)
                for i, u in enumerate(lunits):
                    for slot, w in enumerate(groups[u].get((split, kind), [])):
                        win[i, slot] = w
                        acts[i, slot, :len(flat[w].activations)] = flat[w].activations
                slots[(split, kind)] = (win, acts)
        per_unit = [_unit_stats(ordered[u]) for u in lunits]
        stats = {k: np.array([s[k] for s in per_unit]) for k in ("mean", "std", "max", "min", "frequency")}
        layers[layer] = LayerData(units=np.array([u.index for u in lunits], dtype=np.int64), slots=slots, stats=stats)
    return write_store(out, manifest=manifest, strings=list(strings), windows=windows, window_split=window_split,
                       layers=layers, overwrite=overwrite)


def _finish(records: dict[UnitId, list[_Record]], files: list[Path], out: Path, *, overwrite: bool, seed: int,
            fractions: tuple[float, ...], model: str, hookpoint: str) -> Path:
    exemplars = {u: _assign(u, recs, seed, fractions) for u, recs in records.items()}
    manifest = {"source": "imported", "imported_from": [f.name for f in files], "model": {"name": model},
                "hookpoint": hookpoint, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "ns_dspy_version": __version__, "split_seed": seed, "split_fractions": list(fractions)}
    path = write_exemplars(exemplars, out, manifest=manifest, overwrite=overwrite)
    log.info("imported %d units (%d exemplars) from %s into %s", len(exemplars),
             sum(len(v) for v in exemplars.values()), ", ".join(f.name for f in files), path)
    return path


# -- importers --------------------------------------------------------------------------------------------
def import_jsonl(path: str | Path, out: str | Path, *, overwrite: bool = False, seed: int = 0,
                 split: tuple[float, float, float] = (0.4, 0.3, 0.3), model: str = "unknown",
                 hookpoint: str = "unknown") -> Path:
    """Build the store ``out`` from an ns-dspy-records JSONL file (or a looser per-unit JSONL of another tool)."""
    path, out, fractions = Path(path), Path(out), _check_fractions(split)
    _refuse_existing(out, overwrite)
    records: dict[UnitId, list[_Record]] = {}
    seen: dict[str, str] = {}
    for where, obj in _json_lines(path):
        if not isinstance(obj, dict):
            raise StoreError(f"{where}: each line must be a JSON object with a unit and its exemplars")
        if obj.get("format", FORMAT) != FORMAT:
            raise StoreError(f"{where}: format {obj['format']!r} is not {FORMAT!r}: give an ns-dspy-records file")
        if obj.get("version", VERSION) != VERSION:
            raise StoreError(f"{where}: ns-dspy-records version {obj['version']!r}; this ns-dspy reads version "
                             f"{VERSION}: re-export it or upgrade ns-dspy")
        unit = _unit_of(obj, where)
        items = obj.get("exemplars")
        if not isinstance(items, list) or not items:
            raise StoreError(f'{where}: unit {unit} needs "exemplars": a non-empty list of exemplar objects')
        records.setdefault(unit, []).extend(_record(x, f"{where} exemplar {i}") for i, x in enumerate(items))
        for key in ("model", "hookpoint"):
            if _name(obj.get(key)):
                seen.setdefault(key, _name(obj[key]))
    if not records:
        raise StoreError(f"{path} is empty: write one JSON object per unit and line (see ns_dspy.exemplars.interop)")
    return _finish(records, [path], out, overwrite=overwrite, seed=seed, fractions=fractions,
                   model=model if model != "unknown" else seen.get("model", model),
                   hookpoint=hookpoint if hookpoint != "unknown" else seen.get("hookpoint", hookpoint))


def _neuron_files(paths: list[Path] | Path | str) -> list[Path]:
    files = []
    for p in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix in (".json", ".jsonl") and f.is_file())
            if not found:
                raise StoreError(f"{p} holds no .json or .jsonl files: point at NeuronRecord JSON files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise StoreError(f"no such file or directory: {p}")
    if not files:
        raise StoreError("no NeuronRecord files given: pass a file, a directory or a list of them")
    return files


def _json_objects(path: Path) -> Iterator[tuple[str, object]]:
    """A .jsonl file's lines, or a .json file's object (or each object of its top-level list)."""
    if path.suffix == ".jsonl":
        yield from _json_lines(path)
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise StoreError(f"cannot read {path} ({err}): give a UTF-8 NeuronRecord JSON file") from None
    if not text.strip():
        raise StoreError(f"{path} is empty: give a NeuronRecord JSON file")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise StoreError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); a file of one record per line "
                         "must be named .jsonl") from None
    except ValueError as err:  # e.g. an integer of over 4300 digits
        raise StoreError(f"{path}: unreadable JSON ({str(err).splitlines()[0]}): fix that file") from None
    if isinstance(obj, list):
        yield from ((f"{path} record {i}", o) for i, o in enumerate(obj))
    else:
        yield str(path), obj


def _records_list(obj: dict, key: str, where: str) -> list:
    value = obj.get(key) or []
    if not isinstance(value, list):
        raise StoreError(f'{where}: "{key}" must be a list of activation records')
    return value


def _neuron_record(obj, where: str) -> tuple[UnitId, list[_Record]]:
    nid = obj.get("neuron_id") if isinstance(obj, dict) else None
    if not isinstance(nid, dict) or not (_is_int(nid.get("layer_index")) and _is_int(nid.get("neuron_index"))):
        raise StoreError(f'{where}: not a NeuronRecord: it needs "neuron_id": '
                         '{"layer_index": int, "neuron_index": int}')
    unit = _unit_in_range(nid["layer_index"], nid["neuron_index"], where)
    key = "most_positive_activation_records"
    out = [_record(r, f"{where} {key}[{i}]", "top") for i, r in enumerate(_records_list(obj, key, where))]
    rand = [(f"random_sample[{i}]", r) for i, r in enumerate(_records_list(obj, "random_sample", where))]
    if not rand:
        for q, group in enumerate(_records_list(obj, "random_sample_by_quantile", where)):
            if not isinstance(group, list):
                raise StoreError(f'{where}: "random_sample_by_quantile" must be a list of lists of activation records')
            rand.extend((f"random_sample_by_quantile[{q}][{i}]", r) for i, r in enumerate(group))
    out.extend(_record(r, f"{where} {name}", "random") for name, r in rand)
    if not out:
        raise StoreError(f"{where}: neuron {unit} has no activation records: give most_positive_activation_records "
                         "or random_sample")
    return unit, out


def import_neuron_records(paths: list[Path] | Path, out: str | Path, *, overwrite: bool = False, seed: int = 0,
                          split: tuple[float, float, float] = (0.4, 0.3, 0.3), model: str = "unknown",
                          hookpoint: str = "unknown") -> Path:
    """Build the store ``out`` from OpenAI automated-interpretability NeuronRecord files.

    ``paths``: a ``.json`` file holding one NeuronRecord (or a list of them), a ``.jsonl`` file of one per line,
    a directory of such files, or a list of any of these. ``most_positive_activation_records`` become ``top``
    exemplars and ``random_sample`` (or, when empty, the flattened ``random_sample_by_quantile``) ``random``
    ones; summary moments and ``dataclass_name`` keys are ignored.
    """
    out, fractions = Path(out), _check_fractions(split)
    _refuse_existing(out, overwrite)
    files = _neuron_files(paths)
    records: dict[UnitId, list[_Record]] = {}
    for f in files:
        for where, obj in _json_objects(f):
            unit, recs = _neuron_record(obj, where)
            records.setdefault(unit, []).extend(recs)
    if not records:
        raise StoreError(f"{', '.join(map(str, files))} hold no NeuronRecords: give NeuronRecord JSON files")
    return _finish(records, files, out, overwrite=overwrite, seed=seed, fractions=fractions, model=model,
                   hookpoint=hookpoint)
