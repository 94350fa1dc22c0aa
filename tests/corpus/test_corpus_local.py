"""Local corpora: txt, jsonl, json, parquet files and directories of them."""

from __future__ import annotations

import json

import pytest

from ns_dspy.corpus import LocalCorpus, TextSource, open_corpus
from ns_dspy.errors import CorpusError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_txt_is_one_document(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("Line one.\n\nLine two.\n", encoding="utf-8")
    src = open_corpus(str(p))
    assert isinstance(src, TextSource) and isinstance(src, LocalCorpus)
    assert list(src.documents()) == ["Line one.\n\nLine two.\n"]
    d = src.describe()
    assert d["kind"] == "local" and d["location"] == str(p.resolve()) and d["format"] == "txt"
    json.dumps(d)


def test_jsonl_text_field_and_blank_documents_skipped(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"text": "first"}, {"text": "   "}, {"text": None}, {"body": "x", "text": "second"}])
    (tmp_path / "a.jsonl").write_text(p.read_text() + "\n\n", encoding="utf-8")  # trailing blank lines are fine
    assert list(open_corpus(str(p)).documents()) == ["first", "second"]


def test_custom_text_field(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"body": "hello"}, {"body": "world"}])
    assert list(open_corpus(p, text_field="body").documents()) == ["hello", "world"]


def test_conversation_jsonl(tmp_path):
    rows = [
        {"conversation_id": "1", "conversation": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}]},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]},
    ]
    p = write_jsonl(tmp_path / "chat.jsonl", rows)
    assert list(open_corpus(str(p)).documents()) == ["user: Hi there\nassistant: Hello!", "system: Be brief.\nuser: 2+2?"]


def test_missing_text_field(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"text": "ok"}, {"body": "no text here"}])
    with pytest.raises(CorpusError, match=r"line 2 has no 'text' field \(keys: body\)"):
        list(open_corpus(str(p)).documents())


def test_malformed_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "ok"}\n{"text": "also ok"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(CorpusError) as err:
        list(open_corpus(str(p)).documents())
    msg = str(err.value)
    assert str(p) in msg and "line 3" in msg and "\n" not in msg


def test_non_string_text_field(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"text": 3}])
    with pytest.raises(CorpusError, match="line 1: field 'text' is a int"):
        list(open_corpus(str(p)).documents())


def test_json_list_of_strings_and_objects(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps(["one", {"text": "two"}, {"messages": [{"role": "user", "content": "three"}]}]), encoding="utf-8")
    assert list(open_corpus(str(p)).documents()) == ["one", "two", "user: three"]


def test_json_must_be_a_list(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('{"text": "x"}', encoding="utf-8")
    with pytest.raises(CorpusError, match="must be a list"):
        list(open_corpus(str(p)).documents())


def test_parquet_in_batches(tmp_path, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from ns_dspy.corpus import local

    texts = [f"document {i}" for i in range(50)]
    table = pa.table({"id": list(range(50)), "content": texts})
    p = tmp_path / "a.parquet"
    pq.write_table(table, p, row_group_size=16)
    monkeypatch.setattr(local, "PARQUET_BATCH_ROWS", 7)
    assert list(open_corpus(str(p), text_field="content").documents()) == texts
    with pytest.raises(CorpusError, match=r"no 'text' column \(columns: id, content\)"):
        list(open_corpus(str(p)).documents())


def test_parquet_conversation_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    conv = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]]
    pq.write_table(pa.table({"conversation": conv}), tmp_path / "c.parquet")
    assert list(open_corpus(str(tmp_path / "c.parquet")).documents()) == ["user: hi\nassistant: hey"]


def test_directory_recursive_sorted(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("bz", encoding="utf-8")
    (tmp_path / "a.txt").write_text("a", encoding="utf-8")
    write_jsonl(tmp_path / "b" / "c.jsonl", [{"text": "bc1"}, {"text": "bc2"}])
    (tmp_path / "notes.md").write_text("ignored", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("ignored", encoding="utf-8")
    src = open_corpus(str(tmp_path))
    assert list(src.documents()) == ["a", "bc1", "bc2", "bz"]
    assert src.describe()["format"] == "directory"


def test_documents_are_deterministic(tmp_path):
    for i in range(5):
        write_jsonl(tmp_path / f"{i}.jsonl", [{"text": f"{i}-{j}"} for j in range(3)])
    src = open_corpus(str(tmp_path))
    assert list(src.documents()) == list(src.documents())
    assert len(list(src.documents())) == 15


@pytest.mark.parametrize("content", ["", "   \n\t\n"])
def test_empty_corpus(tmp_path, content):
    p = tmp_path / "empty.txt"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError, match=r"corpus .*empty\.txt is empty"):
        list(open_corpus(str(p)).documents())


def test_empty_directory(tmp_path):
    with pytest.raises(CorpusError, match="is empty"):
        list(open_corpus(str(tmp_path)).documents())


def test_unknown_extension(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("text\nx\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"unknown extension '\.csv'; use one of \.json, \.jsonl, \.parquet, \.txt"):
        open_corpus(str(p))


def test_missing_path(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        open_corpus(str(tmp_path / "nope.jsonl"))


def test_not_utf8(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(CorpusError, match="not UTF-8"):
        list(open_corpus(str(p)).documents())


def test_empty_spec():
    with pytest.raises(CorpusError, match="is empty"):
        open_corpus("  ")
