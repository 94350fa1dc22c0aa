"""Hugging Face specs: parsing and the missing-package error (never the network)."""

from __future__ import annotations

import importlib.util

import pytest

from ns_dspy.corpus import open_corpus, parse_hf_spec
from ns_dspy.corpus.hf import HFSpec
from ns_dspy.errors import CorpusError


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("hf:lmsys/lmsys-chat-1m", HFSpec("lmsys/lmsys-chat-1m", None, "train")),
        ("hf:HuggingFaceFW/fineweb:sample-10BT@train", HFSpec("HuggingFaceFW/fineweb", "sample-10BT", "train")),
        ("hf:wikitext:wikitext-103-raw-v1@validation", HFSpec("wikitext", "wikitext-103-raw-v1", "validation")),
        ("hf:stas/openwebtext-10k@train[:100]", HFSpec("stas/openwebtext-10k", None, "train[:100]")),
    ],
)
def test_parse_hf_spec(spec, expected):
    parsed = parse_hf_spec(spec)
    assert parsed == expected
    assert parse_hf_spec(str(parsed)) == parsed


@pytest.mark.parametrize("spec", ["hf:", "hf::cfg", "hf:name:", "hf:name@", "hf:a:b:c", "hf:a@b@c"])
def test_malformed_hf_spec(spec):
    with pytest.raises(CorpusError, match="hf:NAME"):
        parse_hf_spec(spec)


def test_missing_datasets_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "datasets" else real(name, *a))
    with pytest.raises(CorpusError) as err:
        open_corpus("hf:lmsys/lmsys-chat-1m")
    msg = str(err.value)
    assert "pip install 'ns-dspy[hf]'" in msg and "\n" not in msg


def test_hf_rows_use_text_field_and_conversations(monkeypatch):
    """With a fake ``datasets`` module the rows go through the same record rules as jsonl."""
    import sys
    import types

    rows = [{"text": "plain"}, {"conversation": [{"role": "user", "content": "hi"}]}, {"text": " "}]
    calls = []

    def load_dataset(name, config, split, streaming):
        calls.append((name, config, split, streaming))
        return iter(rows)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    src = open_corpus("hf:some/chat:cfg@test")
    assert list(src.documents()) == ["plain", "user: hi"]
    assert calls == [("some/chat", "cfg", "test", True)]
    assert src.describe() == {"kind": "hf", "location": "hf:some/chat:cfg@test", "name": "some/chat", "config": "cfg",
                              "split": "test", "text_field": "text"}


def test_hf_network_failure_is_one_line(monkeypatch):
    import sys
    import types

    def load_dataset(*a, **k):
        raise ConnectionError("Couldn't reach 'x/y' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    with pytest.raises(CorpusError) as err:
        list(open_corpus("hf:x/y").documents())
    msg = str(err.value)
    assert "hf:x/y@train" in msg and "ConnectionError" in msg and "\n" not in msg
