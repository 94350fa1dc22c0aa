"""The exemplar store: a unit's top, random and negative windows, already split into train/valid/test.

On-disk format (``format: ns-dspy-exemplars``, ``version: 1``), a directory::

    manifest.json            format, version, model, hookpoint, corpus, record config, layers, counts
    strings.json             the store's token table: list of token strings
    windows.npy              (W, T) int32, indices into strings.json; -1 pads windows shorter than T
    window_split.npy         (W,) int8, 0=train 1=valid 2=test: every window belongs to exactly one split
    token_ids.npy            (W, T) int64 subject-tokenizer ids (only when recorded, -1 pads)
    layer_<L>/units.npy      (U,) int64 channel indices of the recorded units
    layer_<L>/stats.npz      per-unit mean, std, max, min, frequency (fraction of tokens > 0)
    layer_<L>/<split>_<kind>_windows.npy   (U, k) int64 rows of windows.npy, best first, -1 = empty slot
    layer_<L>/<split>_<kind>_acts.npy      (U, k, T) float16 or float32 per-token activations

Arrays are plain ``.npy``/``.npz`` read with ``allow_pickle=False``. The directory is built under a temporary
name and renamed into place, so an interrupted write leaves no store at all.
"""

from __future__ import annotations

import json
import re
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir, atomic_write_json
from ..errors import StoreError, json_kind
from ..parsing import PARSE_LOCK
from ..types import KINDS, SPLITS, UNIT_LIMIT, Exemplar, UnitId

__all__ = ["FORMAT", "VERSION", "LayerData", "ExemplarStore", "write_store"]

FORMAT = "ns-dspy-exemplars"
VERSION = 1
STATS = ("mean", "std", "max", "min", "frequency")
"""The per-unit statistics ``layer_<L>/stats.npz`` holds (a recorded or imported store has all of them)."""


@dataclass
class LayerData:
    """Everything stored for one layer. ``slots[(split, kind)] = (windows (U, k) int64, acts (U, k, T))``."""

    units: np.ndarray
    slots: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]
    stats: dict[str, np.ndarray] = field(default_factory=dict)


def _compact_float(acts: np.ndarray) -> np.ndarray:
    """float16 when every value fits, else float32."""
    acts = np.asarray(acts, dtype=np.float32)
    finite = acts[np.isfinite(acts)]
    return acts.astype(np.float16) if finite.size == 0 or np.abs(finite).max() < 6.0e4 else acts


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_LAYER_KEY = re.compile(r"0|[1-9][0-9]*")


def _manifest_problem(manifest: dict) -> str | None:
    """What is wrong with the fields of a store's manifest that readers rely on (one line), or None."""
    for key in ("n_windows", "window"):
        if key not in manifest:
            return f'"{key}" is missing'
        if not _is_count(manifest[key]):
            return f'"{key}" must be a non-negative integer, got {json_kind(manifest[key])}'
    layers = manifest.get("layers")
    if not isinstance(layers, dict):
        return ('"layers" must be an object mapping each layer number to {"n_units": N}, got '
                + ("nothing" if "layers" not in manifest else json_kind(layers)))
    for key, value in layers.items():
        if not _LAYER_KEY.fullmatch(key) or int(key) >= UNIT_LIMIT:
            return f'"layers" has the key {json.dumps(key)[:40]}: keys are layer numbers such as "3"'
        if not isinstance(value, dict) or not _is_count(value.get("n_units")):
            return (f'"layers"."{key}" must be an object with "n_units": a non-negative integer, got '
                    f"{json_kind(value)}")
    if "model" in manifest and not isinstance(manifest["model"], dict):
        return f'"model" must be an object such as {{"name": "gemma-3-270m"}}, got {json_kind(manifest["model"])}'
    return None


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez`` (``np.load`` reads it), but every member has a fixed timestamp: the same arrays give
    the same bytes, so two recordings of the same data are identical files."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)


def write_store(path: str | Path, *, manifest: dict, strings: list[str], windows: np.ndarray,
                window_split: np.ndarray, layers: dict[int, LayerData], token_ids: np.ndarray | None = None,
                overwrite: bool = False) -> Path:
    """Write a complete store atomically. Raises StoreError if ``path`` exists and not ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise StoreError(f"{path} already exists: choose another --out or pass --overwrite")
    if path.exists() and not (path / "manifest.json").exists():
        raise StoreError(f"{path} exists and is not an exemplar store: refusing to overwrite it")
    if windows.ndim != 2 or window_split.shape != (windows.shape[0],):
        raise ValueError("windows must be (W, T) and window_split (W,)")
    manifest = {**manifest, "format": FORMAT, "version": VERSION, "window": int(windows.shape[1]),
                "n_windows": int(windows.shape[0]), "splits": list(SPLITS), "kinds": list(KINDS),
                "layers": {str(layer): {"n_units": int(len(d.units)),
                                        "counts": {f"{s}_{k}": int(w.shape[1]) for (s, k), (w, _) in d.slots.items()}}
                           for layer, d in sorted(layers.items())}}
    try:
        with atomic_dir(path, overwrite=overwrite) as tmp:
            (tmp / "strings.json").write_text(json.dumps(strings, ensure_ascii=False), encoding="utf-8")
            np.save(tmp / "windows.npy", windows.astype(np.int32))
            np.save(tmp / "window_split.npy", window_split.astype(np.int8))
            if token_ids is not None:
                np.save(tmp / "token_ids.npy", token_ids.astype(np.int64))
            for layer, data in layers.items():
                d = tmp / f"layer_{layer}"
                d.mkdir()
                np.save(d / "units.npy", np.asarray(data.units, dtype=np.int64))
                _save_npz(d / "stats.npz", {k: np.asarray(v, dtype=np.float64) for k, v in data.stats.items()})
                for (split, kind), (win, acts) in data.slots.items():
                    if acts.shape[:2] != win.shape or acts.shape[2] != windows.shape[1]:
                        raise ValueError(f"layer {layer} {split}/{kind}: acts {acts.shape} vs windows {win.shape}")
                    np.save(d / f"{split}_{kind}_windows.npy", win.astype(np.int64))
                    np.save(d / f"{split}_{kind}_acts.npy", _compact_float(acts))
            atomic_write_json(tmp / "manifest.json", manifest)  # last: its presence marks a complete store
    except OSError as err:
        raise StoreError(f"cannot write store {path}: {err.strerror or err}") from None
    return path


class ExemplarStore:
    """Read access to a store. Open with :meth:`open`; arrays are memory-mapped and loaded lazily."""

    def __init__(self, path: Path, manifest: dict):
        self.path, self.manifest = path, manifest

    @classmethod
    def open(cls, path: str | Path) -> "ExemplarStore":
        path = Path(path)
        if path.is_file():
            raise StoreError(f"{path} is a file, not an exemplar store: give the folder ns-dspy record --out wrote")
        if not path.is_dir():
            raise StoreError(f"no exemplar store at {path}: record one with `ns-dspy record --out {path}`")
        mpath = path / "manifest.json"
        if not mpath.is_file():
            partial = path.with_name(path.name + ".partial")
            hint = f" (an unfinished recording is at {partial}: rerun the same record command)" if partial.exists() else ""
            raise StoreError(f"{path} is not an exemplar store: manifest.json is missing{hint}")
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StoreError(f"{path} is corrupt: manifest.json is unreadable ({err})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise StoreError(f"{path} is not an ns-dspy exemplar store (manifest format is "
                             f"{manifest.get('format') if isinstance(manifest, dict) else None!r})")
        if manifest.get("version") != VERSION:
            raise StoreError(f"{path} has store version {manifest.get('version')}; this ns-dspy reads version "
                             f"{VERSION}: re-record it or upgrade ns-dspy")
        problem = _manifest_problem(manifest)
        if problem:
            raise StoreError(f"{mpath} is corrupt: {problem}; fix it or re-record (re-import) the store")
        store = cls(path, manifest)
        store._check()
        return store

    def _load(self, rel: str) -> np.ndarray:
        try:
            with PARSE_LOCK:  # numpy parses the header with ast.literal_eval, not thread-safe on CPython 3.11
                array = np.load(self.path / rel, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise StoreError(f"{self.path} is corrupt: cannot read {rel} ({_one_line(err)})") from None
        if not isinstance(array, np.ndarray):  # e.g. an .npz archive under an .npy name
            raise StoreError(f"{self.path} is corrupt: {rel} is not a .npy array")
        return array

    def _check(self) -> None:
        windows = self.windows
        if windows.shape != (self.manifest["n_windows"], self.manifest["window"]):
            raise StoreError(f"{self.path} is corrupt: windows.npy has shape {windows.shape}, the manifest says "
                             f"({self.manifest['n_windows']}, {self.manifest['window']})")
        if windows.dtype.kind not in "iu":
            raise StoreError(f"{self.path} is corrupt: windows.npy holds {windows.dtype}, not integer token ids")
        if self.window_split.shape != (windows.shape[0],):
            raise StoreError(f"{self.path} is corrupt: window_split.npy does not match windows.npy")
        for layer in self.layers:
            n = self.manifest["layers"][str(layer)]["n_units"]
            if self._load(f"layer_{layer}/units.npy").shape != (n,):
                raise StoreError(f"{self.path} is corrupt: layer_{layer}/units.npy does not hold {n} units")

    # -- tables -----------------------------------------------------------------------------------------
    @cached_property
    def strings(self) -> list[str]:
        try:
            strings = json.loads((self.path / "strings.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:  # ValueError: bad UTF-8 or JSON
            raise StoreError(f"{self.path} is corrupt: strings.json is unreadable ({_one_line(err)})") from None
        if not isinstance(strings, list) or not all(isinstance(t, str) for t in strings):
            raise StoreError(f"{self.path} is corrupt: strings.json must be a list of token strings")
        return strings

    @cached_property
    def windows(self) -> np.ndarray:
        return self._load("windows.npy")

    @cached_property
    def window_split(self) -> np.ndarray:
        return self._load("window_split.npy")

    @cached_property
    def token_ids(self) -> np.ndarray | None:
        if not (self.path / "token_ids.npy").exists():
            return None
        ids = self._load("token_ids.npy")
        if ids.shape != self.windows.shape:
            raise StoreError(f"{self.path} is corrupt: token_ids.npy has shape {ids.shape}, windows.npy "
                             f"{self.windows.shape}")
        return ids

    @property
    def layers(self) -> list[int]:
        return sorted(int(layer) for layer in self.manifest["layers"])

    def layer_units(self, layer: int) -> np.ndarray:
        if str(layer) not in self.manifest["layers"]:
            raise StoreError(f"layer {layer} is not in {self.path}: it holds layers {self.layers}")
        return self._load(f"layer_{layer}/units.npy")

    def units(self, layer: int | None = None) -> list[UnitId]:
        layers = self.layers if layer is None else [layer]
        return [UnitId(lay, int(i)) for lay in layers for i in self.layer_units(lay)]

    def _row(self, unit: UnitId) -> int:
        units = self.layer_units(unit.layer)
        row = np.searchsorted(units, unit.index)
        if row >= len(units) or units[row] != unit.index:
            shown = f"{units[0]}..{units[-1]}" if len(units) else "none"
            raise StoreError(f"unit {unit} was not recorded in {self.path} (layer {unit.layer} holds {len(units)} "
                             f"units, {shown}): record it or pick another")
        return int(row)

    def stats(self, unit: UnitId, require: Sequence[str] = ()) -> dict[str, float]:
        """The unit's statistics (see :meth:`layer_stats`, ``require`` included)."""
        row = self._row(unit)
        return {k: float(v[row]) for k, v in self.layer_stats(unit.layer, require).items()}

    def layer_stats(self, layer: int, require: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Every per-unit statistic of ``layer``: name -> (U,) array, in the order of :meth:`layer_units`.
        ``require``: names that must be there (of :data:`STATS`); one missing is a one-line :class:`StoreError`."""
        n = len(self.layer_units(layer))
        rel = f"layer_{layer}/stats.npz"
        try:
            with PARSE_LOCK:  # each member's .npy header is parsed with ast.literal_eval (see ns_dspy.parsing)
                archive = np.load(self.path / rel, allow_pickle=False)
                if isinstance(archive, np.ndarray):
                    raise ValueError("an .npy array, not an .npz archive")
                with archive as z:
                    stats = {k: np.array(z[k]) for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise StoreError(f"{self.path} is corrupt: cannot read {rel} ({_one_line(err)}): "
                             "re-record (re-import) the store") from None
        for name, values in stats.items():
            if values.shape != (n,) or values.dtype.kind not in "biuf":
                raise StoreError(f"{self.path} is corrupt: {rel} holds {name!r} as {values.dtype} of shape "
                                 f"{values.shape}, not one number for each of the layer's {n} units")
        missing = [name for name in require if name not in stats]
        if missing:
            raise StoreError(f"{self.path} is corrupt: {rel} lacks {', '.join(repr(m) for m in missing)} (it holds "
                             f"{', '.join(repr(k) for k in stats) or 'nothing'}; a store keeps {', '.join(STATS)}): "
                             "re-record (re-import) the store")
        return stats

    # -- exemplars --------------------------------------------------------------------------------------
    def train_exemplars(self, unit: UnitId) -> list[Exemplar]:
        """What the explainers read of a unit: its train top exemplars, best first, then its train random (quiet)
        ones."""
        return self.exemplars(unit, "train", "top") + self.exemplars(unit, "train", "random")

    def exemplars(self, unit: UnitId, split: str, kind: str = "top") -> list[Exemplar]:
        """The unit's ``kind`` exemplars of ``split``, best first (top/negative) or in sample order (random)."""
        if split not in SPLITS:
            raise StoreError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        if kind not in KINDS:
            raise StoreError(f"unknown exemplar kind {kind!r}: use one of {', '.join(KINDS)}")
        row = self._row(unit)
        name = f"layer_{unit.layer}/{split}_{kind}"
        if not (self.path / f"{name}_windows.npy").exists():
            return []
        all_rows, all_acts = self._load(f"{name}_windows.npy"), self._load(f"{name}_acts.npy")
        n_units, (n_windows, width) = len(self.layer_units(unit.layer)), self.windows.shape
        if (all_rows.ndim != 2 or all_rows.shape[0] != n_units or all_rows.dtype.kind not in "iu"
                or all_acts.shape != (*all_rows.shape, width)):
            raise StoreError(f"{self.path} is corrupt: {name}_windows.npy {all_rows.dtype} {all_rows.shape} and "
                             f"{name}_acts.npy {all_acts.shape} do not fit {n_units} units and windows of {width}")
        rows, acts = all_rows[row], all_acts[row]
        strings, out = self.strings, []
        for slot, w in enumerate(rows):
            if w < 0:
                continue
            if w >= n_windows:
                raise StoreError(f"{self.path} is corrupt: {name}_windows.npy gives unit {unit} window {int(w)}, "
                                 f"but windows.npy holds {n_windows} windows (0..{n_windows - 1})")
            ids = self.windows[w]
            n = int((ids >= 0).sum())
            if n and (ids[:n].min() < 0 or ids[:n].max() >= len(strings)):
                raise StoreError(f"{self.path} is corrupt: window {int(w)} of windows.npy holds a token id outside "
                                 f"0..{len(strings) - 1} (strings.json) or a -1 pad before its end")
            tok_ids = None if self.token_ids is None else [int(t) for t in self.token_ids[w][:n]]
            act = np.asarray(acts[slot][:n], dtype=np.float32)
            if not np.isfinite(act).all():
                raise StoreError(f"{self.path} is corrupt: non-finite activations for unit {unit} ({split}/{kind})")
            out.append(Exemplar(tokens=[strings[i] for i in ids[:n]], activations=act, window=int(w),
                                kind=kind, split=split, token_ids=tok_ids))
        return out

    def describe(self) -> str:
        m = self.manifest
        n_units = sum(v["n_units"] for v in m["layers"].values())
        return (f"{self.path}: model {m.get('model', {}).get('name', '?')}, hookpoint {m.get('hookpoint', '?')}, "
                f"{n_units} units in layers {self.layers}, {m['n_windows']} windows of {m['window']} tokens")
