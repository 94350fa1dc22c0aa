import numpy as np

from ns_dspy.recording.windows import iter_windows, split_of


def test_windows_pack_documents_in_order():
    docs = ["a b c", "d e f g h", "i"]
    encode = lambda text: [ord(c) for c in text.replace(" ", "")]  # noqa: E731
    windows = list(iter_windows(docs, encode, 3, separator=[0]))
    # a document's tail continues after a separator; a document that starts a window needs none
    assert [w.tolist() for w in windows] == [[97, 98, 99], [100, 101, 102], [103, 104, 0]]
    # the final 'i' never fills a window and is dropped


def test_split_is_deterministic_and_follows_fractions():
    ids = np.arange(20_000)
    s = split_of(ids, seed=3, fractions=(0.4, 0.3, 0.3))
    assert np.array_equal(s, split_of(ids, seed=3, fractions=(0.4, 0.3, 0.3)))
    assert np.array_equal(s[5000:6000], split_of(ids[5000:6000], 3, (0.4, 0.3, 0.3)))  # batching-independent
    np.testing.assert_allclose(np.bincount(s) / len(s), [0.4, 0.3, 0.3], atol=0.015)
    assert not np.array_equal(s, split_of(ids, seed=4, fractions=(0.4, 0.3, 0.3)))
