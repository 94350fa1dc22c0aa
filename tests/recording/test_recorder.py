"""Recording on tiny real models, checked against activations recomputed with a plain forward hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ns_dspy.corpus import open_corpus
from ns_dspy.errors import CorpusError, ModelError, RecordingError, StoreError
from ns_dspy.exemplars import ExemplarStore
from ns_dspy.models import load_subject
from ns_dspy.recording import RecordConfig, Recorder, record
from ns_dspy.types import SPLITS, UnitId


def _config(model, corpus, **kw):
    base = dict(model=str(model), corpus=str(corpus), layers="0,2", tokens=1600, window=8, top_k=10,
                random_k=6, negative_k=3, batch_size=5, dtype="float32", device="cpu")
    base.update(kw)
    return RecordConfig(**base)


def _record(model, corpus, out, **kw):
    return ExemplarStore.open(record(_config(model, corpus, **kw), out, progress=False))


def _same_exemplars(a: ExemplarStore, b: ExemplarStore, units) -> None:
    """Every split and kind of each unit holds the same windows, with the same activations, in both stores."""
    for unit in units:
        for split in SPLITS:
            for kind in ("top", "random", "negative"):
                x, y = a.exemplars(unit, split, kind), b.exemplars(unit, split, kind)
                assert [e.window for e in x] == [e.window for e in y] and [e.text for e in x] == [e.text for e in y]
                for ex, ey in zip(x, y):
                    np.testing.assert_array_equal(ex.activations, ey.activations)


def _true_acts(model_dir, store: ExemplarStore, unit: UnitId, window: int, module: str) -> np.ndarray:
    subject = load_subject(str(model_dir), dtype="float32", device="cpu")
    seen = {}
    mod = subject.model.get_submodule(module.format(layer=unit.layer))
    handle = mod.register_forward_pre_hook(lambda _m, args: seen.__setitem__("x", args[0]))
    ids = subject.prefix_ids + [int(t) for t in store.token_ids[window]]
    with torch.no_grad():
        subject.model(input_ids=torch.tensor([ids]))
    handle.remove()
    return seen["x"][0, len(subject.prefix_ids):, unit.index].numpy()


def test_stored_activations_equal_a_plain_forward(tiny_llama, text_corpus, tmp_path):
    store = _record(tiny_llama, text_corpus, tmp_path / "s")
    assert store.manifest["model"]["prefix_ids"] == [0]  # <bos> fed, never recorded
    for unit in (UnitId(0, 3), UnitId(2, 41)):
        for kind in ("top", "random", "negative"):
            for ex in store.exemplars(unit, "valid", kind):
                truth = _true_acts(tiny_llama, store, unit, ex.window, "model.layers.{layer}.mlp.down_proj")
                np.testing.assert_allclose(ex.activations, truth, rtol=2e-3, atol=2e-3)
    # top exemplars are ordered by their peak and beat every random window of the same split
    top = store.exemplars(UnitId(0, 3), "train", "top")
    peaks = [e.max_activation for e in top]
    assert peaks == sorted(peaks, reverse=True) and len(top) == 4
    assert min(peaks) >= max(e.max_activation for e in store.exemplars(UnitId(0, 3), "train", "random"))


def test_gpt2_mlp_neurons_are_the_c_proj_input(tiny_gpt2, text_corpus, tmp_path):
    store = _record(tiny_gpt2, text_corpus, tmp_path / "s", layers="1")
    assert store.manifest["model"]["prefix_ids"] == []
    unit = UnitId(1, 100)
    ex = store.exemplars(unit, "test", "top")[0]
    truth = _true_acts(tiny_gpt2, store, unit, ex.window, "transformer.h.{layer}.mlp.c_proj")
    np.testing.assert_allclose(ex.activations, truth, rtol=2e-3, atol=2e-3)
    assert len(store.layer_units(1)) == 128


def test_splits_never_share_a_window(tiny_llama, text_corpus, tmp_path):
    store = _record(tiny_llama, text_corpus, tmp_path / "s")
    by_split = {s: set() for s in SPLITS}
    for unit in store.units():
        for split in SPLITS:
            for kind in ("top", "random", "negative"):
                for ex in store.exemplars(unit, split, kind):
                    by_split[split].add(ex.window)
                    assert SPLITS[store.window_split[ex.window]] == split
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["valid"]) and not (by_split["train"] & by_split["test"])
    assert not (by_split["valid"] & by_split["test"])


def _score(kind: str):
    return (lambda e: -float(e.activations.min())) if kind == "negative" else (lambda e: e.max_activation)


def assert_same_selection(a: list, b: list, tol: float, kind: str = "top") -> None:
    """What recording guarantees across batch sizes and unit subsets (anything that changes the matrix kernels'
    shapes): the same number of exemplars, scores equal to ``tol``, an exemplar kept by both has the same
    activations to ``tol``, and where the two lists differ it is only among near-ties (scores within 2 ``tol``):
    two exemplars swapped, or one at the boundary of the top k exchanged for another. Exemplars are matched by
    their text: a store numbers only the windows it keeps."""
    assert len(a) == len(b)
    if kind == "random":  # chosen by hashed window keys, not by activation: the same windows in the same order
        assert [e.text for e in a] == [e.text for e in b]
        for ea, eb in zip(a, b):
            np.testing.assert_allclose(ea.activations, eb.activations, rtol=0, atol=tol)
        return
    score = _score(kind)
    sa, sb = np.array([score(e) for e in a]), np.array([score(e) for e in b])
    np.testing.assert_allclose(sa, sb, rtol=0, atol=tol)
    position = {}
    for j, e in enumerate(b):
        position.setdefault(e.text, j)
    for i, ex in enumerate(a):
        j = position.get(ex.text)
        if j is None:  # exchanged at the boundary: a near-tie with the last kept score
            assert abs(sa[i] - sb[-1]) <= 2 * tol, (ex.text, sa[i], sb[-1])
            continue
        np.testing.assert_allclose(ex.activations, b[j].activations, rtol=0, atol=tol)
        assert abs(sa[i] - sa[j]) <= 2 * tol, (i, j, sa[i], sa[j])  # moved only among near-ties


def test_deterministic_and_batch_independent_up_to_near_ties(tiny_llama, text_corpus, tmp_path):
    a = _record(tiny_llama, text_corpus, tmp_path / "a")
    again = _record(tiny_llama, text_corpus, tmp_path / "again")
    b = _record(tiny_llama, text_corpus, tmp_path / "b", batch_size=7)
    c = _record(tiny_llama, text_corpus, tmp_path / "c", layers="", neurons="2:41,0:3")
    d = _record(tiny_llama, text_corpus, tmp_path / "d", seed=1)
    for unit in (UnitId(0, 3), UnitId(2, 41)):
        scale = max(float(a.stats(unit)["max"]), -float(a.stats(unit)["min"]))
        for split in SPLITS:
            for kind in ("top", "random", "negative"):
                x, y = a.exemplars(unit, split, kind), again.exemplars(unit, split, kind)
                assert [e.window for e in x] == [e.window for e in y]  # same settings: bit for bit
                for ex, ey in zip(x, y):
                    np.testing.assert_array_equal(ex.activations, ey.activations)
                # another batch size runs other kernels: equal up to float32 rounding and near-ties
                assert_same_selection(x, b.exemplars(unit, split, kind), 1e-5 * scale + 1e-6, kind)
            for kind in ("top", "random", "negative"):
                assert_same_selection(a.exemplars(unit, split, kind), c.exemplars(unit, split, kind),
                                      1e-5 * scale + 1e-6, kind)
    assert c.units() == [UnitId(0, 3), UnitId(2, 41)]
    assert not np.array_equal(a.window_split, d.window_split) or a.windows.shape != d.windows.shape


@pytest.mark.parametrize("sync_free", [False, True], ids=["cpu-default", "sync-free"])
def test_interrupted_recording_resumes_to_the_same_store(tiny_llama, text_corpus, tmp_path, monkeypatch, sync_free):
    """Resumed from a checkpoint, the store is the uninterrupted one's; also when the interrupted and resumed runs
    take the GPUs' sync-free updates (forced on the CPU), against the CPU default's uninterrupted store."""
    from ns_dspy.recording import trackers

    full = _record(tiny_llama, text_corpus, tmp_path / "full")
    monkeypatch.setattr(trackers, "SYNC_FREE", sync_free or None)
    out = tmp_path / "resumed"
    calls = {"n": 0}
    original = Recorder.process

    def flaky(self, ids, tokens):
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt
        return original(self, ids, tokens)

    monkeypatch.setattr(Recorder, "process", flaky)
    with pytest.raises(KeyboardInterrupt):
        record(_config(tiny_llama, text_corpus, checkpoint_every=1e-9), out, progress=False)
    assert not out.exists() and (tmp_path / "resumed.partial" / "state.safetensors").exists()
    monkeypatch.setattr(Recorder, "process", original)
    processed = {"n": 0}
    monkeypatch.setattr(Recorder, "process", lambda self, i, t: (processed.__setitem__("n", processed["n"] + 1),
                                                                   original(self, i, t))[1])
    resumed = ExemplarStore.open(record(_config(tiny_llama, text_corpus), out, progress=False))
    assert processed["n"] == 40 - 11  # 200 windows in batches of 5; 11 were checkpointed
    assert not (tmp_path / "resumed.partial").exists()
    _same_exemplars(full, resumed, full.units())


def test_checkpoint_with_other_settings_is_refused(tiny_llama, text_corpus, tmp_path, monkeypatch):
    out = tmp_path / "s"
    monkeypatch.setattr(Recorder, "process", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        record(_config(tiny_llama, text_corpus, checkpoint_every=1e-9), out, progress=False)
    # the interrupt hit the first batch, before any checkpoint: nothing to refuse yet
    monkeypatch.undo()
    calls = {"n": 0}
    original = Recorder.process

    def stop_later(self, ids, tokens):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, ids, tokens)

    monkeypatch.setattr(Recorder, "process", stop_later)
    with pytest.raises(KeyboardInterrupt):
        record(_config(tiny_llama, text_corpus, checkpoint_every=1e-9), out, progress=False)
    monkeypatch.undo()
    with pytest.raises(StoreError, match="other settings"):
        record(_config(tiny_llama, text_corpus, top_k=12), out, progress=False)


def test_resid_hookpoint_and_sae_encoder(tiny_llama, text_corpus, tmp_path):
    torch.manual_seed(0)
    W, b = torch.randn(32, 20), torch.randn(20) * 0.1
    save_file({"W_enc": W, "b_enc": b}, str(tmp_path / "sae_1.safetensors"))
    store = _record(tiny_llama, text_corpus, tmp_path / "s", layers="1", hookpoint="resid",
                    encoder=str(tmp_path / "sae_{layer}.safetensors"))
    assert len(store.layer_units(1)) == 20
    unit = UnitId(1, 7)
    ex = store.exemplars(unit, "train", "top")[0]
    subject = load_subject(str(tiny_llama), dtype="float32", device="cpu")
    ids = subject.prefix_ids + [int(t) for t in store.token_ids[ex.window]]
    with torch.no_grad():
        hidden = subject.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[2][0, 1:]
    np.testing.assert_allclose(ex.activations, torch.relu(hidden @ W + b)[:, 7].numpy(), rtol=2e-3, atol=2e-3)


def test_forward_stops_after_the_deepest_layer(tiny_llama, text_corpus):
    subject = load_subject(str(tiny_llama), dtype="float32", device="cpu")
    ran = []
    subject.model.model.layers[2].register_forward_pre_hook(lambda *_: ran.append(2))
    rec = Recorder(subject, _config(tiny_llama, text_corpus, layers="1"))
    rec.process(np.arange(2), np.array([subject.encode("the cat sat on the mat ok")[:8]] * 2))
    assert ran == []


def test_user_mistakes_are_one_line_errors_and_write_nothing(tiny_llama, text_corpus, tmp_path):
    with pytest.raises(ModelError, match="layer 7 does not exist|model has layers"):
        record(_config(tiny_llama, text_corpus, layers="7"), tmp_path / "a", progress=False)
    with pytest.raises(ModelError, match="unit 0:64 does not exist"):
        record(_config(tiny_llama, text_corpus, layers="0", neurons="60-64"), tmp_path / "b", progress=False)
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n")
    with pytest.raises(CorpusError):
        record(_config(tiny_llama, empty), tmp_path / "c", progress=False)
    short = tmp_path / "short.txt"
    short.write_text("hi")
    with pytest.raises(CorpusError, match="no full window"):
        record(_config(tiny_llama, short), tmp_path / "d", progress=False)
    save_file({"W_enc": torch.randn(64, 4), "b_enc": torch.full((4,), float("nan"))}, str(tmp_path / "nan.safetensors"))
    with pytest.raises(RecordingError, match="non-finite"):
        record(_config(tiny_llama, text_corpus, layers="0", encoder=str(tmp_path / "nan.safetensors"),
                       hookpoint="model.layers.{layer}.mlp.down_proj:input"), tmp_path / "e", progress=False)
    assert not any((tmp_path / n).exists() for n in "abcde")
    (tmp_path / "f").mkdir()
    with pytest.raises(StoreError, match="already exists"):
        record(_config(tiny_llama, text_corpus), tmp_path / "f", progress=False)


def test_source_is_read_lazily(tiny_llama, text_corpus, tmp_path):
    source = open_corpus(str(text_corpus))
    subject = load_subject(str(tiny_llama), dtype="float32", device="cpu")
    store = ExemplarStore.open(Recorder(subject, _config(tiny_llama, text_corpus, tokens=80)).record(
        source, tmp_path / "s", progress=False))
    assert store.manifest["windows_recorded"] == 10


def test_fused_statistics_record_the_same_exemplars_and_close_statistics(tiny_llama, text_corpus, tmp_path,
                                                                         monkeypatch):
    """The recorder with the compiled per-token statistics (every batch of this tiny model takes the fused path
    once the size threshold is lowered) keeps the very same exemplar windows and activations as with plain ops
    (window max and min are exact either way), and its means, stds and frequencies agree to float32 rounding."""
    from ns_dspy.recording import trackers

    if trackers._fused_kernel() is None:
        pytest.skip("torch.compile cannot build kernels here (no C++ compiler)")
    plain = _record(tiny_llama, text_corpus, tmp_path / "plain", fuse=False)
    monkeypatch.setattr(trackers, "FUSE_MIN_ELEMENTS", 0)
    fused = _record(tiny_llama, text_corpus, tmp_path / "fused", fuse=True)
    assert fused.manifest["config"]["fuse"] and not plain.manifest["config"]["fuse"]
    _same_exemplars(plain, fused, (UnitId(0, 3), UnitId(2, 41), UnitId(2, 7)))
    for layer in (0, 2):
        for name in ("mean", "std", "frequency", "max", "min"):
            np.testing.assert_allclose(fused.layer_stats(layer)[name], plain.layer_stats(layer)[name],
                                       rtol=1e-5, atol=1e-6)


def test_compiled_topk_update_records_the_same_store_as_the_torch_ops(tiny_llama, text_corpus, tmp_path,
                                                                       monkeypatch):
    """The recorder's top-k, negative and random selections through the compiled loops
    (:mod:`ns_dspy.recording.fastpath`, the CPU default) hold exactly the windows and activations the torch ops
    hold, for every unit of every layer."""
    from ns_dspy.recording import fastpath

    compiled = _record(tiny_llama, text_corpus, tmp_path / "compiled", negative_k=6)
    monkeypatch.setattr(fastpath, "available", lambda *_: False)
    ops = _record(tiny_llama, text_corpus, tmp_path / "ops", negative_k=6)
    assert compiled.units() == ops.units()
    _same_exemplars(compiled, ops, compiled.units())
    assert any(len(compiled.exemplars(u, "train", "negative")) for u in compiled.units())


def test_sync_free_updates_record_the_same_store(tiny_llama, text_corpus, tmp_path, monkeypatch):
    """The updates GPUs take (:data:`~ns_dspy.recording.trackers.SYNC_FREE`: every unit's best k found by
    fixed-shape ops, every layer's statistics and trackers updated as one group after the forward, the finiteness
    check read once a batch), forced here on the CPU, hold exactly the windows and activations of the CPU default,
    for every unit of every layer, negative windows included. The statistics' float32 sums run in another order
    (each window's tokens first), so means and deviations agree to rounding; maxima, minima and the counts behind
    the frequency exactly."""
    from ns_dspy.recording import trackers

    default = _record(tiny_llama, text_corpus, tmp_path / "default", negative_k=6)
    monkeypatch.setattr(trackers, "SYNC_FREE", True)
    free = _record(tiny_llama, text_corpus, tmp_path / "free", negative_k=6)
    _same_exemplars(default, free, default.units())
    for layer in (0, 2):
        for name in ("frequency", "max", "min"):
            np.testing.assert_array_equal(free.layer_stats(layer)[name], default.layer_stats(layer)[name])
        for name in ("mean", "std"):
            np.testing.assert_allclose(free.layer_stats(layer)[name], default.layer_stats(layer)[name],
                                       rtol=1e-5, atol=1e-7)


def test_sync_free_recording_reads_nothing_on_the_host_beyond_the_forward(tiny_llama, text_corpus, monkeypatch):
    """Counted with a dispatch mode (device-independent): the ops that make the host wait for a device (a scalar
    read, ``nonzero``, ``equal``) during batches of recording. The torch-ops update adds many per batch to what a
    plain forward does; the sync-free one adds at most one (the batch's finiteness flags), and the non-finite
    check still fires."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from ns_dspy.recording import fastpath, trackers

    waits = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
             torch.ops.aten.equal.default, torch.ops.aten.is_nonzero.default}

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += func in waits
            return func(*args, **(kwargs or {}))

    subject = load_subject(str(tiny_llama), dtype="float32", device="cpu")
    config = _config(tiny_llama, text_corpus, negative_k=3)
    tokens = np.random.default_rng(0).integers(5, 200, (20, 8))
    batches = [(np.arange(i, i + 5), tokens[i:i + 5]) for i in range(0, 20, 5)]

    def count(run) -> int:
        run(*batches[0])  # the first batch fills empty slots; count the steady state
        Count.n = 0
        with Count():
            for ids, rows in batches[1:]:
                run(ids, rows)
        return Count.n

    bare = Recorder(subject, config)
    plain = count(lambda ids, rows: bare._forward(torch.from_numpy(rows)))
    monkeypatch.setattr(fastpath, "available", lambda *_: False)
    ops = count(Recorder(subject, config).process)
    monkeypatch.setattr(trackers, "SYNC_FREE", True)
    free = count(Recorder(subject, config).process)
    assert ops - plain >= 3 * 2 * 3  # at least one wait per tracker update (2 layers, top and negative, 3 batches)
    assert free - plain <= 3, (plain, ops, free)
    print(f"waits in 3 batches: plain forward {plain}, torch-ops update {ops}, sync-free {free}")
    from ns_dspy.recording import recorder as recorder_module

    recorder = Recorder(subject, config)
    monkeypatch.setattr(recorder_module, "batch_stats",
                        lambda acts, fuse, **kw: trackers.batch_stats(acts * torch.nan, fuse, **kw))
    with pytest.raises(RecordingError, match="non-finite activations at layer 0"):
        recorder.process(*batches[0])


_THREADS_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from ns_dspy.recording import RecordConfig, Recorder
from ns_dspy.recording import recorder as R

seen = []
forward = Recorder._forward
def counted(self, ids):
    seen.append(torch.get_num_threads())
    return forward(self, ids)
R.Recorder._forward = counted
R.record(RecordConfig(model=sys.argv[1], corpus=sys.argv[2], layers="0,2", tokens=480, window=8, top_k=10,
                      random_k=6, negative_k=3, batch_size=5, dtype="float32", device="cpu"), sys.argv[3],
         progress=False)
print(sorted(set(seen)), torch.get_num_threads())
"""


def test_recording_keeps_the_thread_count_it_was_given(tiny_llama, text_corpus, tmp_path):
    """numba's OpenMP pool, launched by the first compiled update, set the process's thread count to one per core
    (here 2, NUMBA_NUM_THREADS): every forward after the first ran on 2 threads though torch was given 1 (a Ray
    worker's OMP_NUM_THREADS=1 oversubscribed; on an AMD EPYC the first batch's bits then differed from the
    rest). A fresh process, since the pool launches once per process."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, str(tiny_llama), str(text_corpus),
                           str(tmp_path / "s")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "[1] 1"
