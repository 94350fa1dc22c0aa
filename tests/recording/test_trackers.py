import numpy as np
import pytest
import torch

from ns_dspy.recording.trackers import BatchActs, Reservoir, Stats, TopK, batch_stats
from ns_dspy.recording.windows import uniform_keys


def _stream(n_windows=60, T=5, U=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_windows, T, U, generator=g)


@pytest.mark.parametrize("batch", [1, 4, 13])
def test_topk_matches_brute_force(batch):
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


def test_topk_negative_and_empty_slots():
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
def test_batch_acts_transpose_is_exact_and_drops_prefix(dtype):
    base = torch.randn(4, 9, 6).to(dtype)
    view = base[:, 1:, :]
    np.testing.assert_array_equal(BatchActs(view, base, 1).by_unit.float().numpy(),
                                  view.transpose(1, 2).float().numpy())
