"""The exactness distributed recording rests on, without a cluster: trackers fed disjoint parts of a stream, in
any grouping, merge into exactly the tracker fed the whole stream, ties included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ns_dspy.recording.trackers import BatchActs, Reservoir, TopK
from ns_dspy.recording.windows import uniform_keys

N, T, U, K = 96, 5, 7, 6


def _acts() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return (torch.randn(N, T, U, generator=g) * 2).round() / 2  # coarse values: many equal scores


def _feed(tracker, acts: torch.Tensor, windows: list[int], kind: str, batch: int = 4) -> None:
    eligible = torch.arange(N) % 4 != 1  # as if a quarter of the windows were in another split
    for start in range(0, len(windows), batch):
        ids = torch.tensor(windows[start:start + batch])
        a = acts[ids]
        if kind == "random":
            tracker.update(BatchActs(a), ids, eligible[ids].numpy())
        else:
            score = a.amax(1) if kind == "top" else -a.amin(1)
            tracker.update(score.masked_fill(~eligible[ids, None], -torch.inf), BatchActs(a), ids)


def _new(kind: str):
    return Reservoir(U, K, T, seed=4) if kind == "random" else TopK(U, K, T)


@pytest.mark.parametrize("kind", ["top", "negative", "random"])
def test_merged_shards_equal_one_tracker_fed_everything(kind):
    acts = _acts()
    whole = _new(kind)
    _feed(whole, acts, list(range(N)), kind)
    expect_windows, expect_acts = whole.sorted_state()
    chunks = [list(range(c, c + 16)) for c in range(0, N, 16)]
    for shards in ([[0, 3, 4], [1, 2, 5]], [[5], [0, 1, 2, 3, 4]], [[2, 0], [4], [1, 5, 3]]):
        merged = _new(kind)
        for shard in shards:
            part = _new(kind)
            _feed(part, acts, [w for c in shard for w in chunks[c]], kind, batch=3)
            merged.merge(*part.state().values())
            merged.merge(*part.state().values())  # merging the same windows again changes nothing
        windows, kept = merged.sorted_state()
        np.testing.assert_array_equal(windows, expect_windows)
        np.testing.assert_array_equal(kept, expect_acts)
    # and what was kept is the best K by (score, smaller window) / the K smallest hashed keys
    eligible = [w for w in range(N) if w % 4 != 1]
    if kind == "random":
        keys = uniform_keys(np.array(eligible), 4, stream=2)
        assert expect_windows.tolist() == [eligible[i] for i in np.argsort(keys, kind="stable")[:K]]
    else:
        score = acts.amax(1) if kind == "top" else -acts.amin(1)
        for u in range(U):
            best = sorted(eligible, key=lambda w: (-float(score[w, u]), w))[:K]
            assert expect_windows[u].tolist() == best
        assert len({float(score[w, 0]) for w in eligible}) < len(eligible) / 2  # ties were there to break
