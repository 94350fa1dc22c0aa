import json

import numpy as np
import pytest

from ns_dspy.errors import StoreError
from ns_dspy.exemplars import ExemplarStore, LayerData, write_store
from ns_dspy.types import UnitId


def _write(path, **kw):
    windows = np.array([[0, 1, 2], [2, 1, -1], [1, 1, 1]])
    acts = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)
    slots = {("train", "top"): (np.array([[0, 1], [2, -1]]), acts),
             ("train", "random"): (np.array([[1], [0]]), acts[:, 1:]),
             ("valid", "random"): (np.array([[2], [2]]), acts[:, :1])}
    layer = LayerData(units=np.array([4, 9]), slots=slots, stats={"max": np.array([5.0, 11.0])})
    return write_store(path, manifest={"model": {"name": "m"}, "hookpoint": "mlp"}, strings=["a", "b", "c"],
                       windows=windows, window_split=np.array([0, 0, 1]), layers={3: layer}, **kw)


def test_round_trip_and_padding(tmp_path):
    store = ExemplarStore.open(_write(tmp_path / "s"))
    assert store.units() == [UnitId(3, 4), UnitId(3, 9)]
    ex = store.exemplars(UnitId(3, 4), "train", "top")
    assert [e.tokens for e in ex] == [["a", "b", "c"], ["c", "b"]]  # -1 pads are cut
    np.testing.assert_array_equal(ex[1].activations, [3, 4])
    assert len(store.exemplars(UnitId(3, 9), "train", "top")) == 1  # the empty slot is skipped
    assert store.exemplars(UnitId(3, 4), "test", "top") == []
    assert store.stats(UnitId(3, 9)) == {"max": 11.0}
    # what the explainers read: train top windows best first, then the train random ones
    shown = store.train_exemplars(UnitId(3, 4))
    assert [(e.kind, e.tokens) for e in shown] == [("top", ["a", "b", "c"]), ("top", ["c", "b"]),
                                                   ("random", ["c", "b"])]


def test_unrecorded_unit_and_bad_names(tmp_path):
    store = ExemplarStore.open(_write(tmp_path / "s"))
    with pytest.raises(StoreError, match="unit 3:5 was not recorded"):
        store.exemplars(UnitId(3, 5), "train")
    with pytest.raises(StoreError, match="layer 2 is not in"):
        store.exemplars(UnitId(2, 4), "train")
    with pytest.raises(StoreError, match="unknown split"):
        store.exemplars(UnitId(3, 4), "training")


def test_missing_foreign_and_corrupt_stores(tmp_path):
    with pytest.raises(StoreError, match="no exemplar store"):
        ExemplarStore.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="manifest.json is missing"):
        ExemplarStore.open(tmp_path / "empty")
    path = _write(tmp_path / "s")
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format": "something-else"}))
    with pytest.raises(StoreError, match="not an ns-dspy exemplar store"):
        ExemplarStore.open(path)
    (path / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(StoreError, match="version 99"):
        ExemplarStore.open(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="corrupt"):
        ExemplarStore.open(path)
    path = _write(tmp_path / "t")
    (path / "windows.npy").write_bytes(b"garbage")
    with pytest.raises(StoreError, match="corrupt: cannot read windows.npy"):
        ExemplarStore.open(path)
    path = _write(tmp_path / "u")
    np.save(path / "layer_3" / "train_top_acts.npy", np.full((2, 2, 3), np.nan, dtype=np.float32))
    with pytest.raises(StoreError, match="non-finite"):
        ExemplarStore.open(path).exemplars(UnitId(3, 4), "train")


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save = np.save

    def failing_save(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_save(*a, **kw)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path / "s")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_overwrite_rules(tmp_path):
    _write(tmp_path / "s")
    with pytest.raises(StoreError, match="already exists"):
        _write(tmp_path / "s")
    ExemplarStore.open(_write(tmp_path / "s", overwrite=True))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "precious.txt").write_text("x")
    with pytest.raises(StoreError, match="not an exemplar store"):
        _write(tmp_path / "other", overwrite=True)
    assert (tmp_path / "other" / "precious.txt").exists()
