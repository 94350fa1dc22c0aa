"""gguf_read_once: one GGUF parse per file while an offline model is built, the library's class again after."""

from __future__ import annotations

import numpy as np

from ns_dspy.models.offline import gguf_read_once


def _gguf(path, value: int):
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("test.value", value)
    writer.add_tensor("w", np.arange(6, dtype=np.float32).reshape(2, 3))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_one_reader_per_file_within_the_block_and_the_class_after(tmp_path, monkeypatch):
    import gguf

    a, b = _gguf(tmp_path / "a.gguf", 1), _gguf(tmp_path / "b.gguf", 2)
    made = []
    original = gguf.GGUFReader
    monkeypatch.setattr(gguf, "GGUFReader", lambda path, mode="r": made.append(str(path)) or original(path, mode))
    counting = gguf.GGUFReader
    with gguf_read_once():
        from gguf import GGUFReader  # as transformers' load_gguf_checkpoint imports it, at each call

        first, again = GGUFReader(a), GGUFReader(str(tmp_path / "." / "a.gguf"))
        other = GGUFReader(b)
        assert first is again and other is not first
        assert int(first.fields["test.value"].parts[-1][0]) == 1 and int(other.fields["test.value"].parts[-1][0]) == 2
        np.testing.assert_array_equal(np.asarray(again.tensors[0].data).ravel(), np.arange(6, dtype=np.float32))
    assert made == [str(a), str(b)]  # each file parsed once
    assert gguf.GGUFReader is counting  # restored
    gguf.GGUFReader(a)
    assert len(made) == 3  # outside the block every call parses again
