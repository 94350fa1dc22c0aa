"""The offline default corpus: assembly, cache layout, reading without subprocesses."""

from __future__ import annotations

import json
import subprocess

import pytest

from ns_dspy.corpus import DEFAULT_CORPUS, DefaultCorpus, assemble_default_corpus, open_corpus
from ns_dspy.corpus import default as default_mod
from ns_dspy.corpus.sources import SOURCES, SourceUnavailable, split_document
from ns_dspy.errors import CorpusError


def forbid_subprocess(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("reading the cached default corpus must not start a subprocess")

    monkeypatch.setattr(subprocess, "run", boom)
    monkeypatch.setattr(subprocess, "Popen", boom)


@pytest.fixture(scope="module")
def stdlib_corpus(tmp_path_factory):
    return assemble_default_corpus(tmp_path_factory.mktemp("c") / default_mod.DEFAULT_VERSION, sources=("stdlib",))


def test_stdlib_source_assembles(stdlib_corpus):
    info = json.loads((stdlib_corpus / "sources.json").read_text())
    assert [s["name"] for s in info["sources"]] == ["stdlib"]
    s = info["sources"][0]
    assert "PSF" in s["licence"] and s["documents"] > 100 and 2_000_000 < s["bytes"] < 5_000_000
    assert s["topic_documents"] > 50 and s["code_documents"] > 50
    lines = (stdlib_corpus / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == info["documents"] == s["documents"]
    assert {json.loads(ln)["source"] for ln in lines} == {"stdlib"}
    assert max(len(json.loads(ln)["text"]) for ln in lines) < 12_000


def test_read_back_without_subprocess(stdlib_corpus, monkeypatch):
    forbid_subprocess(monkeypatch)
    src = DefaultCorpus(stdlib_corpus)
    docs = list(src.documents())
    assert len(docs) == src.describe()["documents"] and all(d.strip() for d in docs)
    assert docs[:20] == list(src.documents())[:20]
    d = src.describe()
    assert d["kind"] == DEFAULT_CORPUS and d["location"] == str(stdlib_corpus) and d["sources"][0]["licence"]
    json.dumps(d)


def test_open_default_uses_cache(stdlib_corpus, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path))
    shutil.copytree(stdlib_corpus, tmp_path / "corpus" / default_mod.DEFAULT_VERSION)
    forbid_subprocess(monkeypatch)
    src = open_corpus("default")
    assert isinstance(src, DefaultCorpus) and src.root == tmp_path / "corpus" / default_mod.DEFAULT_VERSION
    assert next(iter(src.documents()))


def test_missing_sources_are_skipped_and_mixing_is_seeded(tmp_path, monkeypatch):
    def unavailable():
        raise SourceUnavailable("npm is not installed")

    monkeypatch.setitem(SOURCES, "brown", unavailable)
    monkeypatch.setitem(SOURCES, "python-doc", lambda: default_mod.SourceBuild("python-doc", "PSF", "test", ["p1", "p2", "p3"]))
    monkeypatch.setitem(SOURCES, "stdlib", lambda: default_mod.SourceBuild("stdlib", "PSF", "test", ["s1", "s2", "s3"]))
    a = assemble_default_corpus(tmp_path / "a")
    b = assemble_default_corpus(tmp_path / "b")
    read = lambda p: (p / "corpus.jsonl").read_text()
    assert read(a) == read(b)
    info = json.loads((a / "sources.json").read_text())
    assert info["missing"] == [{"name": "brown", "reason": "npm is not installed"}]
    assert sorted(DefaultCorpus(a).documents()) == ["p1", "p2", "p3", "s1", "s2", "s3"]
    assert DefaultCorpus(a).describe()["missing"] == ["brown"]


def test_failed_assembly_leaves_no_cache(tmp_path, monkeypatch):
    def broken():
        raise RuntimeError("killed")

    monkeypatch.setitem(SOURCES, "stdlib", broken)
    with pytest.raises(RuntimeError):
        assemble_default_corpus(tmp_path / "x", sources=("stdlib",))
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


def test_unknown_source(tmp_path):
    with pytest.raises(CorpusError, match="unknown default-corpus sources"):
        assemble_default_corpus(tmp_path / "x", sources=("wikipedia",))


def test_split_document():
    assert split_document("  short  ") == ["short"]
    paras = [f"paragraph {i} " + "x" * 90 for i in range(100)]
    text = "\n\n".join(paras)
    pieces = split_document(text, max_chars=2000)
    assert all(len(p) <= 2000 for p in pieces) and len(pieces) in (5, 6)
    assert "\n\n".join(pieces) == text
    code = "\n".join(f"line {i}" for i in range(1000))
    assert "\n".join(split_document(code, max_chars=1000)) == code


@pytest.mark.slow
def test_full_default_corpus(tmp_path, monkeypatch):
    root = assemble_default_corpus(tmp_path / "default-v1")
    info = json.loads((root / "sources.json").read_text())
    assert info["bytes"] >= 5_000_000 and not info["missing"]
    by_name = {s["name"]: s for s in info["sources"]}
    assert set(by_name) == {"brown", "python-doc", "stdlib"}
    assert all(s["licence"] and s["documents"] > 0 and s["bytes"] > 0 for s in by_name.values())
    assert "redistribution permitted" in by_name["brown"]["licence"] and len(by_name["brown"]["genres"]) == 15
    assert "PSF" in by_name["python-doc"]["licence"]
    forbid_subprocess(monkeypatch)
    src = DefaultCorpus(root)
    first = []
    for doc in src.documents():
        first.append(doc)
        if len(first) == 50:
            break
    sources = [json.loads(ln)["source"] for ln in (root / "corpus.jsonl").open().readlines()[:50]]
    assert set(sources) == {"brown", "python-doc", "stdlib"}
    assert sum(1 for _ in src.documents()) == info["documents"]
