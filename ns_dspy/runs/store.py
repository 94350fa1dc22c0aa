"""The run store: every explained neuron's full trace, written atomically as it completes.

A SQLite file (default ``RUN.sqlite``). ``meta`` holds the run's configuration and its fingerprint; each row of
``neurons`` is one unit: its status (``done`` or ``failed``), the one-line error of a failure, the headline
numbers, and ``trace``: a JSON document with everything the program did (exemplars shown, raw explanation,
atomic conditions, clusters and members, every refinement candidate with its score, final explanations with
valid and test scores, LM tokens and cost, wall time). A row is written in one transaction, so a killed run
keeps every finished neuron and never half of one; rerunning skips units already ``done``, and a ``failed``
row never replaces a ``done`` one.

Several processes may share one run file. ``claims`` holds the units being worked on: ``(unit, owner,
expires_at)`` with ``owner`` = ``host|process space|pid|random`` (one per :class:`RunStore` object) and ``expires_at`` in
Unix seconds. :meth:`RunStore.claim` takes a unit in one ``BEGIN IMMEDIATE`` transaction, only if it is not
``done`` and no other owner holds an unexpired claim; the holder renews its leases while it works
(:meth:`~RunStore.renew`) and drops the claim when it writes the unit's row. A killed holder's lease
expires and the next process takes the unit over; a holder of this machine (same boot and PID namespace) whose
process is gone is taken over at once. Files made before claims existed get the table on open.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..trace import Trace
from ..machine import pid_alive, process_space
from ..sqlite_retry import retry_locked
from ..types import UnitId

__all__ = ["RunStore", "NeuronRecord", "DEFAULT_LEASE_S"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS neurons (
    unit TEXT PRIMARY KEY, layer INTEGER NOT NULL, idx INTEGER NOT NULL, status TEXT NOT NULL,
    error TEXT, number INTEGER, score_valid REAL, score_test REAL, baseline_test REAL,
    lm_tokens INTEGER, lm_cost REAL, seconds REAL, finished TEXT NOT NULL, trace TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (unit TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL);
"""
FORMAT = "ns-dspy-run"
VERSION = 1
DEFAULT_LEASE_S = 900.0
"""A claim's lease: generous (15 min), renewed while the unit is worked on; a killed holder's units are taken
over when it runs out."""


@dataclass
class NeuronRecord:
    """One unit's row. ``score_*`` are the neuron-level (polysemantic) scores; ``number`` its cluster count."""

    unit: UnitId
    status: str
    error: str | None
    number: int | None
    score_valid: float | None
    score_test: float | None
    baseline_test: float | None
    lm_tokens: int | None
    lm_cost: float | None
    seconds: float | None
    trace: dict[str, Any]  # the stored JSON document; read it through typed_trace
    _typed: tuple[dict, Trace] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def typed_trace(self) -> Trace:
        """``trace`` read as a :class:`~ns_dspy.trace.Trace` (:class:`~ns_dspy.trace.TraceError` when malformed),
        parsed once per document: a ``trace`` assigned anew is parsed again (one edited in place is not)."""
        if self._typed is None or self._typed[0] is not self.trace:
            self._typed = (self.trace, Trace.from_dict(self.trace))
        return self._typed[1]


def _changed(was: Any, now: Any, prefix: str = "") -> list[str]:
    """The dotted paths at which two JSON documents differ, e.g. ``run.simulator.spec``."""
    if isinstance(was, dict) and isinstance(now, dict):
        return [path for key in sorted(set(was) | set(now), key=str)
                for path in _changed(was.get(key), now.get(key), f"{prefix}{key}.")]
    return [] if was == now else [prefix.rstrip(".") or "config"]


def _as_list(legacy: dict | list[dict] | None) -> list[dict]:
    return [] if legacy is None else list(legacy) if isinstance(legacy, list) else [legacy]


class RunStore:
    """Open or create a run file. ``config`` (a JSON-able dict) is stored on creation; reopening with another
    config is refused, so one run never mixes settings; ``legacy`` is the same configuration as an older
    ns-dspy recorded it (or a list of such forms), accepted in place of ``config`` for a run file made then;
    ``near``: more forms, never accepted, against which a refusal names what differs (the nearest of all is used).
    ``owner`` names this object's claims (``host:pid:random``)."""

    def __init__(self, path: str | Path, config: dict | None = None, *,
                 legacy: dict | list[dict] | None = None, near: list[dict] | None = None):
        self.path = Path(path)
        self.owner = f"{socket.gethostname()}|{process_space() or '-'}|{os.getpid()}|{secrets.token_hex(4)}"
        exists = self.path.exists()
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory: give a run file, e.g. {self.path}/run.sqlite")
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create the run file {self.path} ({err.strerror or err}): choose another "
                             "--run") from None
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
            retry_locked(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
            if exists:
                self._check_format()
            retry_locked(lambda: self._db.executescript(SCHEMA))
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError) and "unable to open" in str(err):
                raise StoreError(f"cannot open the run file {self.path} ({err}): choose another --run") from None
            raise StoreError(f"{self.path} is not an ns-dspy run file ({err}): choose another --run") from None
        stored = self.meta().get("config")
        if config is not None:
            canonical = json.loads(json.dumps(config, sort_keys=True, default=str))
            if stored is None:
                self._set_meta(format=FORMAT, version=VERSION, config=canonical,
                               created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            elif stored != canonical:
                forms = [json.loads(json.dumps(old, sort_keys=True, default=str)) for old in _as_list(legacy)]
                if stored not in forms:
                    # named against the nearest form (an older run lacks the newer options: ``near`` names those
                    # that are not at their old value now)
                    named = [json.loads(json.dumps(f, sort_keys=True, default=str)) for f in near or ()]
                    changed = min((_changed(stored, form) for form in [canonical, *forms, *named]), key=len)
                    raise StoreError(f"run {self.path} was made with other settings ({', '.join(changed)}): "
                                     "rerun with the same options to resume, or give a new --run")

    def _check_format(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "meta" not in tables:
            raise StoreError(f"{self.path} is not an ns-dspy run file: choose another --run")
        if "meta" in tables:
            row = self._db.execute("SELECT value FROM meta WHERE key='format'").fetchone()
            if row and json.loads(row[0]) != FORMAT:
                raise StoreError(f"{self.path} is not an ns-dspy run file: choose another --run")

    def _set_meta(self, **items: Any) -> None:
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                 [(k, json.dumps(v, sort_keys=True, default=str)) for k, v in items.items()])

    def meta(self) -> dict[str, Any]:
        with self._lock:
            return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    def done(self) -> set[UnitId]:
        with self._lock:
            rows = self._db.execute("SELECT layer, idx FROM neurons WHERE status='done'").fetchall()
        return {UnitId(layer, idx) for layer, idx in rows}

    def attempts(self) -> dict[UnitId, int]:
        """The next attempt number of each unit that has failed so far (its failed row's ``trace["attempt"]``
        + 1; 1 for rows written before attempts were counted)."""
        with self._lock:
            rows = self._db.execute("SELECT layer, idx, trace FROM neurons WHERE status!='done'").fetchall()
        return {UnitId(layer, idx): int(json.loads(trace).get("attempt") or 0) + 1 for layer, idx, trace in rows}

    def attempt(self, unit: UnitId) -> int:
        """The next attempt number of ``unit``: 0 if it has no failed row (see :meth:`attempts`)."""
        with self._lock:
            row = self._db.execute("SELECT trace FROM neurons WHERE unit=? AND status!='done'", (str(unit),)).fetchone()
        return 0 if row is None else int(json.loads(row[0]).get("attempt") or 0) + 1

    def put(self, record: NeuronRecord) -> bool:
        """Write one unit's row atomically (replacing an earlier failure of the same unit) and drop this owner's
        claim on it. A row that is not ``done`` never replaces a ``done`` one: then nothing is written and
        False is returned."""
        unit = str(record.unit)
        row = (unit, record.unit.layer, record.unit.index, record.status, record.error, record.number,
               record.score_valid, record.score_test, record.baseline_test, record.lm_tokens, record.lm_cost,
               record.seconds, datetime.now(timezone.utc).isoformat(timespec="seconds"),
               json.dumps(record.trace, ensure_ascii=False, default=_jsonable))
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM claims WHERE unit=? AND owner=?", (unit, self.owner))
            old = self._db.execute("SELECT status FROM neurons WHERE unit=?", (unit,)).fetchone()
            if old is not None and old[0] == "done" and record.status != "done":
                return False
            self._db.execute("INSERT OR REPLACE INTO neurons VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
        return True

    def claim(self, unit: UnitId, lease_s: float = DEFAULT_LEASE_S) -> bool:
        """Take ``unit`` for ``lease_s`` seconds: True unless it is ``done`` or another owner holds an unexpired
        claim on it (this owner's own claim is renewed). One ``BEGIN IMMEDIATE`` transaction, so of several
        processes claiming one unit at once exactly one succeeds."""
        key, now = str(unit), time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if self._db.execute("SELECT 1 FROM neurons WHERE unit=? AND status='done'", (key,)).fetchone():
                return False
            held = self._db.execute("SELECT owner, expires_at FROM claims WHERE unit=?", (key,)).fetchone()
            if held is not None and held[0] != self.owner and held[1] > now and not _dead_here(held[0]):
                return False
            self._db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)", (key, self.owner, now + lease_s))
        return True

    def renew(self, lease_s: float = DEFAULT_LEASE_S) -> int:
        """Extend every claim this owner still holds to ``lease_s`` seconds from now; returns how many."""
        with self._lock, self._db:
            return self._db.execute("UPDATE claims SET expires_at=? WHERE owner=?",
                                    (time.time() + lease_s, self.owner)).rowcount

    def release(self, unit: UnitId) -> None:
        """Drop this owner's claim on ``unit`` (if it still holds one)."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM claims WHERE unit=? AND owner=?", (str(unit), self.owner))

    def claims(self) -> dict[UnitId, tuple[str, float]]:
        """Unexpired claims: unit -> (owner, expires_at in Unix seconds)."""
        with self._lock:
            rows = self._db.execute("SELECT unit, owner, expires_at FROM claims WHERE expires_at > ?",
                                    (time.time(),)).fetchall()
        return {UnitId.parse(unit): (owner, expires) for unit, owner, expires in rows}

    def records(self) -> list[NeuronRecord]:
        with self._lock:
            rows = self._db.execute("SELECT layer, idx, status, error, number, score_valid, score_test, "
                                    "baseline_test, lm_tokens, lm_cost, seconds, trace FROM neurons "
                                    "ORDER BY layer, idx").fetchall()
        return [NeuronRecord(UnitId(r[0], r[1]), *r[2:11], trace=json.loads(r[11])) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _dead_here(owner: str) -> bool:
    """Whether a claim's owner was a process of this machine's boot and PID namespace that no longer exists (killed
    outright, or interrupted): its claims are taken over at once instead of when their lease runs out."""
    parts = owner.split("|")
    if len(parts) != 4 or parts[1] == "-" or parts[1] != process_space() or not parts[2].isdigit():
        return False
    return not pid_alive(int(parts[2]))


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, UnitId):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
