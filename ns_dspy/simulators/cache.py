"""A persistent simulation cache: the same (simulator, explanation, text) is never simulated twice.

:class:`SimulationCache` is a SQLite file (WAL mode, safe for several processes, e.g. sweep workers);
:class:`CachedSimulator` wraps any simulator and consults it. Keys are SHA-256 digests of the simulator's
``cache_key``, the explanation and the exemplar's tokens, so the file holds no text and no credentials; values
are float32 predictions.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..paths import cache_dir
from ..sqlite_retry import retry_locked
from ..types import Exemplar
from .base import Simulator

__all__ = ["SimulationCache", "CachedSimulator"]


class SimulationCache:
    """Predictions stored by key; thread-safe within a process, shared safely between processes."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else cache_dir() / "simulations.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
        # several workers open the same file at once (Ray actors, sweep workers): these steps can fail at once
        retry_locked(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
        retry_locked(lambda: self._db.execute(
            "CREATE TABLE IF NOT EXISTS predictions (key TEXT PRIMARY KEY, value BLOB NOT NULL)"))
        retry_locked(self._db.commit)

    @staticmethod
    def key(simulator_key: str, explanation: str, tokens: Sequence[str]) -> str:
        blob = json.dumps([simulator_key, explanation, list(tokens)], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                rows = self._db.execute(f"SELECT key, value FROM predictions WHERE key IN ({','.join('?' * len(chunk))})",
                                        chunk).fetchall()
                for k, v in rows:
                    value = np.frombuffer(v, dtype=np.float32).copy()
                    if np.isfinite(value).all():  # a broken prediction (from before put_many refused them) is a miss
                        out[k] = value
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        """Store ``items``, except predictions with a NaN or infinity: a broken simulation is never replayed (the
        caller's scoring refuses it, and a fixed simulator then simulates those pairs again)."""
        items = {k: v for k, v in items.items() if np.isfinite(v).all()}
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO predictions VALUES (?, ?)",
                                 [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()])
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedSimulator(Simulator):
    """``inner`` with a persistent cache in front; only missing pairs reach ``inner``.

    ``hits`` and ``misses`` count pairs served from the cache and simulated.
    """

    def __init__(self, inner: Simulator, cache: SimulationCache | None = None):
        self.inner = inner
        self.cache = cache if cache is not None else SimulationCache()
        self.hits = self.misses = 0

    @property
    def cache_key(self) -> str:
        return self.inner.cache_key

    def simulate(self, explanations: Sequence[str], exemplars: Sequence[Exemplar]) -> list[list[np.ndarray]]:
        sk = self.inner.cache_key
        keys = [[SimulationCache.key(sk, e, ex.tokens) for ex in exemplars] for e in explanations]
        found = self.cache.get_many([k for row in keys for k in row])
        todo_e = [i for i, row in enumerate(keys) if any(k not in found for k in row)]
        todo_x = sorted({j for i in todo_e for j, k in enumerate(keys[i]) if k not in found})
        if todo_e:
            fresh = self.inner.simulate([explanations[i] for i in todo_e], [exemplars[j] for j in todo_x])
            new = {keys[i][j]: fresh[a][b] for a, i in enumerate(todo_e) for b, j in enumerate(todo_x)}
            self.cache.put_many(new)
            found.update(new)
        n = len(explanations) * len(exemplars)
        self.misses += len(todo_e) * len(todo_x)
        self.hits += n - len(todo_e) * len(todo_x)
        return [[found[k] for k in row] for row in keys]

    def close(self) -> None:
        self.inner.close()
        self.cache.close()
