"""The sweep's work cache: LM and embedding work that trials share, kept in the study's own database.

One table, ``ns_dspy_sweep_cache`` (key, kind, value), in the same database as the optuna study: the
SQLite file by default, or the PostgreSQL / MySQL database that several workers share, so a hypothesis one
worker paid for is free for every other worker and for later studies in that database. Keys are SHA-256
digests of everything that decides the result (:func:`digest`): the exemplars' tokens and activations,
the LM spec and settings, the agent's settings and its predictor's state (instructions and demos of a
compiled program included). No key names a path, a study or a machine, so entries are valid wherever the
same inputs recur. Values are JSON. Writes are first-wins: a key two workers computed at once keeps one
value, and both values were valid results of the same inputs.

Agent outcomes are cached with the LM tokens they cost when they were computed, so a trial's cost in tokens
is the cost of its configuration, not an accident of what earlier trials left in the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterable
from typing import Any

__all__ = ["WorkCache", "digest", "TABLE"]

log = logging.getLogger(__name__)

TABLE = "ns_dspy_sweep_cache"


def digest(*parts: Any) -> str:
    """SHA-256 hex of the canonical JSON of ``parts`` (dict keys sorted; numbers as JSON writes them)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_plain)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _plain(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray):
        return [round(float(v), 6) for v in obj.ravel()]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return str(obj)


class WorkCache:
    """Key-value cache in a SQLAlchemy database (``engine``), with an in-process layer in front.

    Thread-safe. ``get``/``get_many`` return decoded JSON values or nothing; ``put`` keeps the first value
    stored under a key.
    """

    def __init__(self, engine):
        import sqlalchemy as sa
        from sqlalchemy.dialects import mysql

        self.engine = engine
        self._memory: dict[str, Any] = {}
        self._lock = threading.Lock()
        metadata = sa.MetaData()
        self.table = sa.Table(TABLE, metadata,
                              sa.Column("key", sa.String(64), primary_key=True),
                              sa.Column("kind", sa.String(32), nullable=False),
                              sa.Column("value", sa.Text().with_variant(mysql.LONGTEXT(), "mysql"), nullable=False))
        from .storage import retry_schema_race

        retry_schema_race(lambda: metadata.create_all(engine, checkfirst=True))  # workers may start together

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        import sqlalchemy as sa

        keys = list(dict.fromkeys(keys))
        with self._lock:
            found = {k: self._memory[k] for k in keys if k in self._memory}
        missing = [k for k in keys if k not in found]
        for start in range(0, len(missing), 500):
            chunk = missing[start:start + 500]
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(self.table.c.key, self.table.c.value)
                                    .where(self.table.c.key.in_(chunk))).all()
            loaded = {key: json.loads(value) for key, value in rows}
            with self._lock:
                self._memory.update(loaded)
            found.update(loaded)
        return found

    def get(self, key: str) -> Any | None:
        return self.get_many([key]).get(key)

    def put_many(self, kind: str, items: dict[str, Any]) -> None:
        import sqlalchemy as sa

        encoded = {k: json.dumps(v, ensure_ascii=False, default=_plain) for k, v in items.items()}
        taken = []
        for key, value in encoded.items():
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.insert(self.table).values(key=key, kind=kind, value=value))
            except sa.exc.IntegrityError:  # another worker stored it first: keep theirs
                log.debug("cache key %s already stored", key[:12])
                taken.append(key)
        with self._lock:
            for key, value in encoded.items():
                if key not in taken:
                    self._memory[key] = json.loads(value)
        if taken:
            self.get_many(taken)  # read theirs, so this process answers as every other does

    def put(self, kind: str, key: str, value: Any) -> None:
        self.put_many(kind, {key: value})

    def counts(self) -> dict[str, int]:
        """Entries per kind (for reports and tests)."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(self.table.c.kind, sa.func.count()).group_by(self.table.c.kind)).all()
        return {kind: int(n) for kind, n in rows}

    def close(self) -> None:
        self.engine.dispose()
