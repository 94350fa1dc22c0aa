"""The Python documentation's reST sources from the Debian package ``python3.11-doc`` (PSF licence)."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from ns_dspy.corpus.sources import SourceBuild, SourceUnavailable, register_source, run_tool, split_document

__all__ = ["clean_rst", "read_deb_members", "DOC_PACKAGE"]

logger = logging.getLogger(__name__)

DOC_PACKAGE = "python3.11-doc"
DOC_LICENCE = "PSF-2.0 (Python Software Foundation License Version 2); Python documentation (c) Python Software Foundation"
_SOURCES_PREFIX = "usr/share/doc/python3.11/html/_sources/"
_NOISE = re.compile(r"^(\s*)\.\. (index|moduleauthor|sectionauthor|highlight)::|^(\s*)\.\. _[^:`]+:\s*$")


def clean_rst(text: str) -> str:
    """Drop Sphinx noise that carries no prose: ``.. index::`` blocks, author and highlight lines, labels."""
    out, skip_indent = [], None
    for line in text.splitlines():
        if skip_indent is not None:
            indent = len(line) - len(line.lstrip())
            if line.strip() and indent > skip_indent:
                continue
            skip_indent = None
        m = _NOISE.match(line)
        if m:
            skip_indent = len(line) - len(line.lstrip())
            continue
        out.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def _download(workdir: Path) -> Path:
    logger.info("python-doc: downloading %s with apt-get", DOC_PACKAGE)
    try:
        run_tool(["apt-get", "download", DOC_PACKAGE], workdir, timeout=300)
    except SourceUnavailable as first:
        if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise
        logger.info("python-doc: apt-get download failed (%s); running apt-get update once", first)
        run_tool(["apt-get", "update"], workdir, timeout=300)
        run_tool(["apt-get", "download", DOC_PACKAGE], workdir, timeout=300)
    debs = sorted(workdir.glob(f"{DOC_PACKAGE}_*.deb"))
    if not debs:
        raise SourceUnavailable(f"apt-get download {DOC_PACKAGE} produced no .deb")
    return debs[0]


def _ar_members(data: bytes) -> dict[str, bytes]:
    """Members of an ``ar`` archive (the outer format of a .deb)."""
    if not data.startswith(b"!<arch>\n"):
        raise SourceUnavailable("not a .deb (ar) archive")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip() or 0)
        members[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def read_deb_members(deb: Path, prefix: str, suffix: str) -> dict[str, str]:
    """Text of the files under ``prefix`` ending in ``suffix`` inside a .deb, keyed by path below ``prefix``.

    Uses ``dpkg-deb -x`` when available, else reads the ar archive and its ``data.tar.*`` in Python (xz, gz,
    bz2; a zstd-compressed package then needs dpkg-deb).
    """
    if shutil.which("dpkg-deb"):
        with tempfile.TemporaryDirectory(prefix="ns_dspy-deb-") as tmp:
            run_tool(["dpkg-deb", "-x", str(deb), tmp], Path(tmp), timeout=300)
            root = Path(tmp) / prefix
            return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8", errors="replace")
                    for p in sorted(root.rglob(f"*{suffix}")) if p.is_file() and not p.is_symlink()}
    members = _ar_members(deb.read_bytes())
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None:
        raise SourceUnavailable(f"{deb.name} has no data.tar member")
    texts = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(members[data_name]), mode="r:*") as tar:
            for m in tar:
                name = m.name.removeprefix("./")
                if m.isfile() and name.startswith(prefix) and name.endswith(suffix):
                    texts[name[len(prefix):]] = tar.extractfile(m).read().decode("utf-8", errors="replace")
    except tarfile.TarError as e:
        raise SourceUnavailable(f"cannot read {data_name} of {deb.name} ({e}); install dpkg-deb") from None
    return dict(sorted(texts.items()))


@register_source("python-doc")
def build_python_doc() -> SourceBuild:
    with tempfile.TemporaryDirectory(prefix="ns_dspy-pydoc-") as tmp:
        deb = _download(Path(tmp))
        version = deb.name.split("_")[1] if deb.name.count("_") >= 2 else "unknown"
        texts = read_deb_members(deb, _SOURCES_PREFIX, ".rst.txt")
    if not texts:
        raise SourceUnavailable(f"{deb.name} holds no {_SOURCES_PREFIX}*.rst.txt files")
    docs = [piece for name in sorted(texts) for piece in split_document(clean_rst(texts[name]))]
    logger.info("python-doc: %d reST files -> %d documents", len(texts), len(docs))
    return SourceBuild(
        name="python-doc", licence=DOC_LICENCE, origin=f"debian:{DOC_PACKAGE}={version} {_SOURCES_PREFIX}**/*.rst.txt",
        documents=docs, extra={"files": len(texts)},
    )
