"""Toy worlds of trigger words, shared by the optimize and sweep tests: a store whose units fire on known
words, and exact word embeddings (one axis per word plus a small shared one)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ns_dspy.exemplars import ExemplarStore, LayerData, write_store


def trigger_store(path: Path, words: list[str], triggers: list[dict[str, float]], n: int = 48,
                  token_ids: bool = False) -> ExemplarStore:
    """Layer 0, unit ``u`` fires ``triggers[u][word]`` on each word; the last unit is -0.5 everywhere. Windows
    of 6 random words, split train/valid/test in turn; per split the 8 strongest windows are top, 4 others random.
    ``token_ids``: keep each word's index as its token id, as a recording with the subject's tokenizer does."""
    rng = np.random.default_rng(0)
    windows = np.array([rng.permutation(len(words))[:6] for _ in range(n)])
    split = np.array([0, 1, 2] * (n // 3))
    acts = np.zeros((len(triggers), n, 6), dtype=np.float32)
    for u, fires in enumerate(triggers):
        for w in range(n):
            for t, s in enumerate(windows[w]):
                acts[u, w, t] = fires.get(words[s], 0.0)
    acts[-1] = -0.5
    slots = {}
    units = range(len(triggers))
    for s, name in enumerate(["train", "valid", "test"]):
        rows = np.flatnonzero(split == s)
        top = np.stack([rows[np.argsort(-acts[u, rows].max(1), kind="stable")][:8] for u in units])
        rest = np.stack([np.setdiff1d(rows, top[u])[:4] for u in units])
        slots[(name, "top")] = (top, np.stack([acts[u, top[u]] for u in units]))
        slots[(name, "random")] = (rest, np.stack([acts[u, rest[u]] for u in units]))
    layer = LayerData(units=np.arange(len(triggers)), slots=slots,
                      stats={"max": acts.max((1, 2)), "mean": acts.mean((1, 2))})
    return ExemplarStore.open(write_store(path, manifest={"model": {"name": "toy"}}, strings=words, windows=windows,
                                          window_split=split, layers={0: layer},
                                          token_ids=windows.astype(np.int64) if token_ids else None))


def word_rows(texts: list[str], words: list[str]) -> np.ndarray:
    """Unit-norm rows: one axis per word of ``words`` present in the text, plus 0.1 on a shared axis."""
    vocab = [w.strip().lower() for w in words]
    rows = np.array([[float(w in re.findall(r"\w+", t.lower())) for w in vocab] + [0.1] for t in texts])
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def prompt_field(text: str, name: str) -> str:
    """The text of one ``[[ ## name ## ]]`` field of a DSPy chat prompt."""
    return text.split(f"[[ ## {name} ## ]]")[-1].split("[[ ##")[0].split("Respond with")[0]
