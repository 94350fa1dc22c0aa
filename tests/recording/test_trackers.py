import numpy as np
import pytest
import torch

from ns_dspy.recording import fastpath, trackers
from ns_dspy.recording.trackers import BatchActs, Reservoir, Stats, TopK, batch_stats, sample_keys
from ns_dspy.recording.windows import uniform_keys


def _stream(n_windows=60, T=5, U=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_windows, T, U, generator=g)


@pytest.fixture(params=["compiled", "torch", "sync-free"])
def topk_path(request, monkeypatch):
    """Each top-k test runs on every update path: the compiled loop (:mod:`ns_dspy.recording.fastpath`, CPU), the
    torch ops (without numba) and the update that reads nothing on the host (GPUs and other devices)."""
    if request.param == "torch":
        monkeypatch.setattr(fastpath, "available", lambda *_: False)
    elif request.param == "sync-free":
        monkeypatch.setattr(trackers, "SYNC_FREE", True)
    else:
        assert fastpath.available(torch.zeros(1), torch.zeros(1))
    return request.param


@pytest.mark.parametrize("batch", [1, 4, 13])
def test_topk_matches_brute_force(batch, topk_path):
    acts = _stream()
    k = 6
    eligible = torch.arange(len(acts)) % 3 != 0  # as if only two thirds of windows were in this split
    top = TopK(acts.shape[2], k, acts.shape[1])
    for start in range(0, len(acts), batch):
        a = acts[start:start + batch]
        score = a.amax(1).masked_fill(~eligible[start:start + batch, None], -torch.inf)
        top.update(score, BatchActs(a), torch.arange(start, start + len(a)))
    windows, kept = top.sorted_state()
    wmax = acts.amax(1).numpy()
    for u in range(acts.shape[2]):
        cand = [w for w in range(len(acts)) if eligible[w]]
        expect = sorted(cand, key=lambda w: -wmax[w, u])[:k]
        assert windows[u].tolist() == expect
        np.testing.assert_array_equal(kept[u], acts[expect, :, u].numpy())


def test_topk_negative_and_empty_slots(topk_path):
    acts = _stream(n_windows=3)
    neg = TopK(acts.shape[2], 5, acts.shape[1])
    neg.update(-acts.amin(1), BatchActs(acts), torch.arange(3))
    windows, kept = neg.sorted_state()
    assert (windows[:, 3:] == -1).all()  # only 3 windows exist
    wmin = acts.amin(1).numpy()
    assert windows[0, 0] == int(np.argmin(wmin[:, 0]))


def test_reservoir_is_uniform_sample_independent_of_batching():
    acts = _stream(n_windows=50)
    results = []
    for batch in (3, 7, 50):
        res = Reservoir(acts.shape[2], 8, acts.shape[1], seed=5)
        for start in range(0, 50, batch):
            a = acts[start:start + batch]
            res.update(BatchActs(a), torch.arange(start, start + len(a)), np.ones(len(a), bool))
        results.append(res.sorted_state())
    expect = np.argsort(uniform_keys(np.arange(50), 5, stream=2))[:8]
    for windows, kept in results:
        assert windows.tolist() == expect.tolist()
        np.testing.assert_array_equal(kept, acts[expect].permute(2, 0, 1).numpy())


def _fed(dtype, path, monkeypatch, n_batches=30, B=9, T=5, U=40, k=6, seed=0, split=None):
    """A tracker fed a stream with ties (constant units), -0.0 and ineligible (-inf) scores, rows of each
    batch chosen as a split's, by one path."""
    g = torch.Generator().manual_seed(seed)
    with monkeypatch.context() as m:
        if path == "torch":
            m.setattr(fastpath, "available", lambda *_: False)
        top = TopK(U, k, T, dtype=dtype)
        for b in range(n_batches):
            x = torch.randn(B, T + 1, U, generator=g).to(dtype)
            x[:, :, :4] = 0.0  # every window ties on these units: the smaller window wins
            x[:, :, 4] = -0.0
            acts = BatchActs(x[:, 1:], x, 1)
            rows = torch.nonzero(torch.rand(B, generator=g) < 0.6).squeeze(1) if split is None else split
            ids = torch.arange(b * B, (b + 1) * B)[rows]
            score = acts.acts.amax(1)[rows].float()
            score[:, 5] = -torch.inf
            top.update(score, acts, ids, (b * B, (b + 1) * B - 1), batch_rows=rows)
    return top


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("copy_from", ["rows", "strided"])
@pytest.mark.parametrize("blocks", [None, 1, 3, 64])
def test_the_compiled_topk_update_selects_exactly_what_the_torch_ops_select(dtype, copy_from, blocks, monkeypatch):
    # copy_from: the activations copied from the transposed batch (as for many pairs) or read strided; blocks: the
    # units cut into that many blocks updated in parallel (None: one per thread; 64: more blocks than units)
    monkeypatch.setattr(fastpath, "ROWS_FROM", 1 if copy_from == "rows" else 10**9)
    monkeypatch.setattr(fastpath, "BLOCKS", blocks)
    fast, ops = _fed(dtype, "compiled", monkeypatch), _fed(dtype, "torch", monkeypatch)
    (wf, af), (wo, ao) = fast.sorted_state(), ops.sorted_state()
    np.testing.assert_array_equal(wf, wo)
    np.testing.assert_array_equal(af, ao)
    # units 0-4 tie on every window (0.0 and -0.0 alike): the smallest eligible windows, in order
    assert all(wf[u].tolist() == wf[0].tolist() for u in range(5)) and wf[0].tolist() == sorted(wf[0].tolist())
    assert (wf[5] == -1).all()  # never eligible
    # the state written to a checkpoint holds the same windows, slot order aside
    for name in ("values", "windows"):
        np.testing.assert_array_equal(np.sort(getattr(fast, name).float().numpy(), 1),
                                      np.sort(getattr(ops, name).float().numpy(), 1))


def test_the_compiled_topk_update_continues_after_load_and_merge(monkeypatch):
    """load() and merge() replace the keys: the compiled path's per-unit floor must follow them."""
    a = _fed(torch.float32, "compiled", monkeypatch, n_batches=10, seed=1)
    b = _fed(torch.float32, "compiled", monkeypatch, n_batches=10, seed=2)

    def resumed_and_merged():
        resumed = TopK(40, 6, 5)
        resumed.load(a.state())
        merged = TopK(40, 6, 5)
        merged.load(a.state())
        merged.merge(**b.state())
        return resumed, merged

    fast = resumed_and_merged()
    with monkeypatch.context() as m:
        m.setattr(fastpath, "available", lambda *_: False)
        ops = resumed_and_merged()
    g = torch.Generator().manual_seed(9)
    for b_ in range(5):
        x = torch.randn(7, 5, 40, generator=g)
        ids = torch.arange(20_000 + 7 * b_, 20_007 + 7 * b_)
        for t in fast:
            t.update(x.amax(1), BatchActs(x), ids)
        with monkeypatch.context() as m:
            m.setattr(fastpath, "available", lambda *_: False)
            for t in ops:
                t.update(x.amax(1), BatchActs(x), ids)
    for f, o in zip(fast, ops):
        np.testing.assert_array_equal(f.sorted_state()[0], o.sorted_state()[0])
        np.testing.assert_array_equal(f.sorted_state()[1], o.sorted_state()[1])
        windows = f.sorted_state()[0]
        assert ((windows >= 20_000).any(1) & ((windows < 20_000) & (windows >= 0)).any(1)).any()  # old and new mix


def test_reservoir_takes_keys_computed_once_per_batch():
    acts = _stream(n_windows=40)
    eligible = np.arange(40) % 2 == 0
    a, b = (Reservoir(acts.shape[2], 6, acts.shape[1], seed=3) for _ in range(2))
    for start in range(0, 40, 8):
        x, ids = acts[start:start + 8], np.arange(start, start + 8)
        a.update(BatchActs(x), torch.from_numpy(ids), eligible[start:start + 8])
        keys = np.where(eligible[start:start + 8], sample_keys(ids, 3), np.iinfo(np.int64).min)
        b.update(BatchActs(x), torch.from_numpy(ids), eligible[start:start + 8], ids, keys)
    assert a.sorted_state()[0].tolist() == b.sorted_state()[0].tolist()
    assert all(w % 2 == 0 for w in a.sorted_state()[0].tolist())
    np.testing.assert_array_equal(a.sorted_state()[1], b.sorted_state()[1])


def test_reservoirs_offered_one_batch_share_one_plan():
    """A recorder hands every layer's reservoir of a split one plan per batch: the first works out which slots take
    which windows, the others reuse it - and one whose keys differ (here: a reservoir that missed the first batch)
    works out its own instead of taking a wrong plan."""
    acts = _stream(n_windows=48, U=7)
    layers = [Reservoir(acts.shape[2], 6, acts.shape[1], seed=3) for _ in range(3)]
    alone, late, late_alone = (Reservoir(acts.shape[2], 6, acts.shape[1], seed=3) for _ in range(3))
    reused = 0
    for start in range(0, 48, 8):
        ids = np.arange(start, start + 8)
        keys = sample_keys(ids, 3)
        plan: dict = {}
        for i, res in enumerate(layers):
            x = acts[start:start + 8] * (i + 1)  # every layer's own activations, the same windows
            first = plan.get("slot")
            res.update(BatchActs(x), torch.from_numpy(ids), np.ones(8, bool), ids, keys.copy(), plan=plan)
            reused += first is not None and plan["slot"] is first  # the first layer's plan, not one worked out anew
        if start:
            late.update(BatchActs(acts[start:start + 8]), torch.from_numpy(ids), np.ones(8, bool), ids, keys.copy(),
                        plan=plan)
            late_alone.update(BatchActs(acts[start:start + 8]), torch.from_numpy(ids), np.ones(8, bool), ids,
                              keys.copy())
            assert late.sorted_state()[0].tolist() == late_alone.sorted_state()[0].tolist()
        alone.update(BatchActs(acts[start:start + 8]), torch.from_numpy(ids), np.ones(8, bool), ids, keys.copy())
    assert reused > 0
    for i, res in enumerate(layers):
        assert res.sorted_state()[0].tolist() == alone.sorted_state()[0].tolist()
        np.testing.assert_array_equal(res.sorted_state()[1], alone.sorted_state()[1] * (i + 1))
    expect = np.argsort(uniform_keys(np.arange(8, 48), 3, stream=2))[:6] + 8
    assert late.sorted_state()[0].tolist() == expect.tolist()


def test_host_replacement_pairs_the_slots_and_columns_the_torch_ops_pair():
    """The random sample's choice on the host keeps the same set of keys as :func:`replacement_pairs`, with empty
    slots (:data:`VACANT`, tied) and ineligible windows (:data:`EMPTY`) in play; evicted slots and entering
    columns come paired, each ascending."""
    rng = np.random.default_rng(0)
    for trial in range(300):
        k, b = int(rng.integers(1, 9)), int(rng.integers(1, 12))
        old = rng.integers(-50, 50, k).astype(np.int64)
        old[rng.random(k) < 0.3] = trackers.VACANT
        new = rng.choice(np.arange(100, 200), b, replace=False).astype(np.int64) - rng.integers(0, 150)
        new[rng.random(b) < 0.3] = trackers.EMPTY
        slot, col = trackers._host_replacement(old, new, k)
        _, t_slot, t_col = trackers.replacement_pairs(torch.from_numpy(old)[None], torch.from_numpy(new)[None], k)
        after, t_after = old.copy(), old.copy()
        after[slot], t_after[t_slot.numpy()] = new[col], new[t_col.numpy()]
        assert sorted(after) == sorted(t_after), trial
        assert len(slot) == len(col) and (np.diff(slot) > 0).all() and (np.diff(col) > 0).all()
        assert trackers.EMPTY not in after


def test_stats_match_numpy():
    acts = _stream()
    st = Stats(acts.shape[2])
    for start in range(0, len(acts), 11):
        st.update(batch_stats(acts[start:start + 11]))
    s = st.summary()
    flat = acts.reshape(-1, acts.shape[2]).double().numpy()
    np.testing.assert_allclose(s["mean"], flat.mean(0), atol=1e-5)
    np.testing.assert_allclose(s["std"], flat.std(0), atol=1e-5)
    np.testing.assert_allclose(s["max"], flat.max(0), atol=1e-6)
    np.testing.assert_allclose(s["frequency"], (flat > 0).mean(0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_fused_statistics_kernel_matches_the_plain_ops_and_does_not_depend_on_threads(dtype):
    """A recording-sized batch (32 windows x 64 tokens x 512 units, with the prefix position dropped as the
    recorder does): the compiled one-pass kernel gives the same window max/min and positive counts exactly and
    the same sums up to float32 rounding; the same bits with 1 or 2 threads (distributed recording's workers run
    1); a batch below FUSE_MIN_ELEMENTS takes the plain ops."""
    from ns_dspy.recording import trackers

    base = (torch.randn(32, 65, 512) * 3).to(dtype)
    base[0, 5, :7] = 0.0  # zeros are not positive
    acts = base[:, 1:, :]
    assert acts.numel() >= trackers.FUSE_MIN_ELEMENTS
    plain, fused = batch_stats(acts), batch_stats(acts, fuse=True)
    if trackers._fused_kernel() is None:
        pytest.skip("torch.compile cannot build kernels here (no C++ compiler)")
    for name in ("window_max", "window_min", "positive"):
        torch.testing.assert_close(getattr(fused, name).float(), getattr(plain, name).float(), rtol=0, atol=0)
    exact = acts.double()
    torch.testing.assert_close(fused.total.double(), exact.sum((0, 1)), rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(fused.total_sq.double(), exact.square().sum((0, 1)), rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(fused.total, plain.total, rtol=1e-5, atol=1e-2)
    if dtype == torch.bfloat16:  # the plain ops square in bf16 (each square rounded); the fused kernel in float32
        err = lambda got: (got.double() - exact.square().sum((0, 1))).abs().max().item()  # noqa: E731
        assert err(fused.total_sq) < err(plain.total_sq)
    assert fused.count == plain.count == 32 * 64
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = batch_stats(acts, fuse=True)
        torch.set_num_threads(2)
        two = batch_stats(acts, fuse=True)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one[:5], two[:5]):
        assert torch.equal(a, b)
    small = acts[:2, :8, :16]
    assert torch.equal(batch_stats(small, fuse=True).total, batch_stats(small).total)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(32, 65, 512), (3, 9, 517), (5, 70, 40), (2, 3, 7)])
def test_the_statistics_loop_gives_the_compiled_kernels_bits(dtype, shape):
    """The per-token statistics by the compiled loop (``fastpath.batch_stats``, the CPU default where numba is
    importable) are the bits of the inductor kernel (``_one_pass`` compiled) and of its formula run window by window
    in float32, for any width (whole vectors or not) and 1 or 2 threads, on a batch viewed past its prefix as the
    recorder passes it; which path recorded a chunk therefore does not change the store."""
    from ns_dspy.recording import fastpath, trackers

    if fastpath._stats_kernels() is None:
        pytest.skip("numba is not importable")
    base = (torch.randn(shape) * 3).to(dtype)
    base[0, 1, :3] = 0.0
    base[-1, -1, -1] = -0.0
    acts = base[:, 1:, :]
    a = acts.float()
    sums = [torch.zeros(shape[2]) for _ in range(3)]
    for w in range(shape[0]):  # window sums in order, each window's tokens in order
        parts = [torch.zeros(shape[2]) for _ in range(3)]
        for t in range(a.shape[1]):
            x = a[w, t]
            parts[0] += x
            parts[1] += x * x
            parts[2] += (x > 0).float()
        for total, part in zip(sums, parts):
            total += part
    want = (a.amax(1), a.amin(1), *sums)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            got = fastpath.batch_stats(acts)
            for name, g, w in zip(trackers.BatchStats._fields, got, want):
                assert torch.equal(g, w), (n, name)
    finally:
        torch.set_num_threads(threads)
    kernel = trackers._fused_kernel()
    if kernel is not None:
        for g, k in zip(got, kernel(acts)):
            assert torch.equal(g, k)
    assert fastpath.batch_stats(acts.to(torch.float16)) is None  # other dtypes: the inductor kernel
    assert fastpath.batch_stats(acts.transpose(1, 2)) is None  # units not contiguous


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_batch_acts_transpose_is_exact_and_drops_prefix(dtype):
    base = torch.randn(4, 9, 6).to(dtype)
    view = base[:, 1:, :]
    np.testing.assert_array_equal(BatchActs(view, base, 1).by_unit.float().numpy(),
                                  view.transpose(1, 2).float().numpy())


def test_torch_ops_switches_the_trackers_to_the_torch_update_and_back():
    """``fastpath.torch_ops()`` (what the recording benchmarks compare against) routes updates through the torch
    ops, which keep no compiled index, and restores the compiled path after."""
    x = torch.randn(4, 5, 40)
    with fastpath.torch_ops():
        top = TopK(40, 3, 5)
        top.update(x.amax(1), BatchActs(x), torch.arange(4))
        assert top._index is None
    top.update(x.amax(1) + 100, BatchActs(x), torch.arange(4, 8))  # every later window beats every earlier one
    assert top._index is not None and fastpath.available(top.acts, x)
    assert (top.sorted_state()[0] >= 4).all()


@pytest.mark.parametrize("batch", [1, 4, 13])
def test_topk_group_selects_as_each_tracker_alone(batch, monkeypatch):
    """A :class:`~ns_dspy.recording.trackers.TopKGroup` (every layer's trackers of a split updated as one, as a
    recorder does on a GPU) keeps, per unit, exactly the windows and activations of each tracker updated alone by
    the compiled CPU loop, through a merge that replaces one tracker's tensors mid-stream and with batches both
    smaller and larger than k; its trackers keep reading as trackers (views of the group's tensors)."""
    from ns_dspy.recording.trackers import TopKGroup

    sizes, k, T = [7, 3, 11], 6, 5
    acts = _stream(n_windows=60, T=T, U=sum(sizes), seed=3)
    acts[:, :, 1] = 0.5  # a constant unit: every window ties
    eligible = torch.arange(len(acts)) % 3 != 1
    alone = [TopK(n, k, T) for n in sizes]
    grouped = [TopK(n, k, T) for n in sizes]
    monkeypatch.setattr(trackers, "SYNC_FREE", True)
    group = TopKGroup(grouped)
    offsets = np.cumsum([0] + sizes)
    for start in range(0, len(acts), batch):
        a = acts[start:start + batch]
        ids = torch.arange(start, start + len(a))
        score = a.amax(1).masked_fill(~eligible[start:start + batch, None], -torch.inf)
        group.update(score, BatchActs(a), ids, (start, start + len(a) - 1))
        monkeypatch.setattr(trackers, "SYNC_FREE", False)
        for t, lo, hi in zip(alone, offsets[:-1], offsets[1:]):
            t.update(score[:, lo:hi], BatchActs(a[:, :, lo:hi]), ids)
        monkeypatch.setattr(trackers, "SYNC_FREE", True)
        if start <= 30 < start + batch:  # a merge replaces the middle tracker's tensors
            for t in (alone[1], grouped[1]):
                t.merge(torch.full((3, 2), 9.0), torch.tensor([[100, 101]] * 3), torch.ones(3, 2, T))
    for a_, g_ in zip(alone, grouped):
        wa, ka = a_.sorted_state()
        wg, kg = g_.sorted_state()
        assert wa.tolist() == wg.tolist()
        np.testing.assert_array_equal(ka, kg)
    assert grouped[1].windows[:, :2].tolist() != [[-1, -1]] * 3 and 100 in grouped[1].sorted_state()[0]


def test_batch_stats_by_unit_in_blocks(monkeypatch):
    """The statistics of every layer at once (activations laid out (B, units, T)) agree with the (B, T, units)
    path - maxima, minima and positive counts exactly, sums to rounding - whether the units are reduced in one
    block or in blocks of 4 (a large model's batch; the block size follows from the batch's shape only)."""
    x = torch.randn(5, 37, 7)
    whole = batch_stats(x, by_unit=True)
    monkeypatch.setattr(trackers, "FLOAT_BLOCK_BYTES", 4 * 5 * 7 * 4)
    blocks = batch_stats(x, by_unit=True)
    ref = batch_stats(x.transpose(1, 2))
    assert whole.count == blocks.count == ref.count == 35
    for got in (whole, blocks):
        for name in ("window_max", "window_min", "positive"):
            assert torch.equal(getattr(got, name).float(), getattr(ref, name).float()), name
        for name in ("total", "total_sq"):
            torch.testing.assert_close(getattr(got, name), getattr(ref, name), rtol=1e-5, atol=1e-5)


def test_reservoir_group_samples_as_each_reservoir_alone():
    """A :class:`~ns_dspy.recording.trackers.ReservoirGroup` (every layer's random sample of a split updated as
    one) holds, for every layer, the windows and activations of that layer's reservoir updated alone, also after a
    state loaded mid-stream (a resumed checkpoint), and its reservoirs' states save as separate tensors."""
    from ns_dspy.recording.trackers import ReservoirGroup

    sizes, k, T = [4, 9, 2], 5, 6
    acts = _stream(n_windows=70, T=T, U=sum(sizes), seed=4)
    eligible = (np.arange(70) % 4) != 2
    alone = [Reservoir(n, k, T, seed=7) for n in sizes]
    grouped = [Reservoir(n, k, T, seed=7) for n in sizes]
    group = ReservoirGroup(grouped)
    offsets = np.cumsum([0] + sizes)
    for start in range(0, 70, 6):
        a, ids = acts[start:start + 6], torch.arange(start, min(start + 6, 70))
        group.update(BatchActs.of_units(a.transpose(1, 2).contiguous()), ids, eligible[start:start + 6])
        for r, lo, hi in zip(alone, offsets[:-1], offsets[1:]):
            r.update(BatchActs(a[:, :, lo:hi]), ids, eligible[start:start + 6])
        if start == 30:  # a checkpoint loaded into the group's reservoirs replaces their host keys
            for r in grouped:
                r.load({name: t.clone() for name, t in r.state().items()})
    for r_alone, r_group in zip(alone, grouped):
        wa, ka = r_alone.sorted_state()
        wg, kg = r_group.sorted_state()
        assert wa.tolist() == wg.tolist() and (wa >= 0).all()
        np.testing.assert_array_equal(ka, kg)
    states = [r.state() for r in grouped]
    assert states[0]["windows"].data_ptr() != states[1]["windows"].data_ptr()
