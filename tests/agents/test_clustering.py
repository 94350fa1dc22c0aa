import copy
from types import SimpleNamespace

import numpy as np
import pytest

from ns_dspy.agents import (AgentError, ClusterConfig, ClusteringAgent, Embedder, MiniLMEmbedder, OpenAIEmbedder,
                            build_embedder, cluster_embeddings, embedder_kinds, hdbscan_labels)
from ns_dspy.errors import ConfigError

# Two clear groups (around axes 0 and 2), a3 and b3 nearest their group's centroid, and one condition
# orthogonal to both (HDBSCAN noise) leaning slightly towards group B.
TABLE = {
    "a1": [1, .2, 0, 0, 0], "a2": [1, -.2, 0, 0, 0], "a3": [1, 0, 0, .05, 0],
    "b1": [0, 0, 1, .2, 0], "b2": [0, 0, 1, -.2, 0], "b3": [.05, 0, 1, 0, 0],
    "odd": [0, 0, .02, 0, 1],
}
GROUPS = ["a1", "a2", "a3", "b1", "b2", "b3"]


def agent(table_embedder, **config):
    return ClusteringAgent(table_embedder(TABLE), ClusterConfig(**config))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_two_groups_give_two_clusters_with_centroid_representatives(table_embedder, metric):
    result = agent(table_embedder, metric=metric)(conditions=GROUPS)
    assert result.cluster_labels == [0, 0, 0, 1, 1, 1]
    assert [c.members for c in result.clusters] == [["a1", "a2", "a3"], ["b1", "b2", "b3"]]
    assert [c.representative for c in result.clusters] == ["a3", "b3"]
    assert [c.representative_index for c in result.clusters] == [2, 5]
    assert result.embeddings.shape == (6, 5) and result.embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(result.embeddings, axis=1), 1.0)


def test_the_odd_condition_is_hdbscan_noise(table_embedder):
    x = table_embedder(TABLE).embed(GROUPS + ["odd"])
    assert hdbscan_labels(x, ClusterConfig()).tolist() == [0, 0, 0, 1, 1, 1, -1]


def test_noise_nearest_joins_the_most_similar_cluster_without_moving_its_representative(table_embedder):
    result = agent(table_embedder, noise="nearest")(conditions=GROUPS + ["odd"])
    assert result.cluster_labels == [1, 1, 1, 0, 0, 0, 0]  # B grew to 4 members, so it comes first
    b = result.clusters[0]
    assert b.members == ["b1", "b2", "b3", "odd"] and b.joined == [6] and b.representative == "b3"
    assert result.clusters[1].joined == []


def test_noise_singleton_is_a_mode_of_its_own(table_embedder):
    result = agent(table_embedder, noise="singleton")(conditions=GROUPS + ["odd"])
    assert result.cluster_labels == [0, 0, 0, 1, 1, 1, 2]
    assert result.clusters[2].members == ["odd"] and result.clusters[2].representative == "odd"


def test_noise_drop_discards_it(table_embedder):
    result = agent(table_embedder, noise="drop")(conditions=GROUPS + ["odd"])
    assert result.cluster_labels == [0, 0, 0, 1, 1, 1, -1]
    assert sum(c.size for c in result.clusters) == 6


@pytest.mark.parametrize("policy, expected", [("nearest", [0, 0, 0]), ("drop", [0, 0, 0]),
                                              ("singleton", [0, 1, 2])])
def test_no_cluster_found(table_embedder, policy, expected):
    # three mutually distant conditions: HDBSCAN finds no cluster
    result = agent(table_embedder, noise=policy)(conditions=["a1", "b1", "odd"])
    assert result.cluster_labels == expected


def test_no_conditions_is_a_neuron_failure(table_embedder):
    with pytest.raises(AgentError, match="no conditions"):
        agent(table_embedder)(conditions=[])


def test_one_condition_is_one_cluster(table_embedder):
    result = agent(table_embedder)(conditions=["odd"])
    assert result.cluster_labels == [0] and result.clusters[0].representative == "odd"


@pytest.mark.parametrize("policy, n_clusters", [("nearest", 1), ("drop", 1), ("singleton", 2)])
def test_two_conditions(table_embedder, policy, n_clusters):
    result = agent(table_embedder, noise=policy)(conditions=["a1", "b1"])
    assert len(result.clusters) == n_clusters
    assert sorted(i for c in result.clusters for i in c.indices) == [0, 1]


def test_cluster_embeddings_is_pure(table_embedder):
    # (its speed is not asserted here: a wall-clock bound failed under CPU contention, 7 s for 50 calls)
    x = table_embedder(TABLE).embed(GROUPS + ["odd"])
    before = x.copy()
    labels = {p: cluster_embeddings(x, ClusterConfig(noise=p)).tolist() for p in ("nearest", "drop")}
    assert labels == {"nearest": [1, 1, 1, 0, 0, 0, 0], "drop": [0, 0, 0, 1, 1, 1, -1]}
    assert np.array_equal(x, before)
    assert [cluster_embeddings(x).tolist() for _ in range(3)] == [labels["nearest"]] * 3  # same answer every call


@pytest.mark.parametrize("bad", [dict(min_cluster_size=1), dict(min_samples=0), dict(cluster_selection_epsilon=-1),
                                 dict(cluster_selection_method="mean"), dict(metric="manhattan"),
                                 dict(noise="ignore")])
def test_config_validation(bad):
    with pytest.raises(ConfigError):
        ClusterConfig(**bad)


def test_embedder_shape_is_checked():
    class Broken(Embedder):
        name = "broken"

        def embed(self, texts):
            return np.ones((1, 3), np.float32)

    with pytest.raises(ValueError, match="shape"):
        ClusteringAgent(Broken())(conditions=["a", "b"])


def test_deepcopy_keeps_the_embedder(table_embedder):
    a = agent(table_embedder)
    assert copy.deepcopy(a).embedder is a.embedder
    assert a.deepcopy().embedder is a.embedder


def test_build_embedder_registry():
    assert {"minilm", "openai"} <= set(embedder_kinds())
    assert isinstance(build_embedder("minilm"), MiniLMEmbedder)
    built = build_embedder("openai:text-embedding-3-large")
    assert isinstance(built, OpenAIEmbedder) and built.model == "text-embedding-3-large"
    with pytest.raises(ConfigError, match="unknown embedder"):
        build_embedder("word2vec")


# --- conformance: every Embedder implementation --------------------------------------------------------


class FakeOpenAIClient:
    """Answers ``embeddings.create`` with hashed bag-of-words vectors, items out of order."""

    def __init__(self):
        self.calls = []
        self.embeddings = SimpleNamespace(create=self.create)

    def create(self, model, input):
        self.calls.append((model, list(input)))
        data = []
        for i, text in enumerate(input):
            v = np.zeros(16)
            for word in text.lower().split():
                v[sum(map(ord, word)) % 16] += 1.0
            data.append(SimpleNamespace(index=i, embedding=(3 * v + 0.1).tolist()))
        return SimpleNamespace(data=list(reversed(data)))


def _openai():
    return OpenAIEmbedder(client=FakeOpenAIClient(), batch_size=2)


EMBEDDERS = [pytest.param(_openai, id="openai-fake"),
             pytest.param(MiniLMEmbedder, id="minilm", marks=pytest.mark.slow)]


@pytest.mark.parametrize("make", EMBEDDERS)
def test_embedder_contract(make):
    embedder = make()
    texts = ["the cat sat", "a dog barked loudly", "the cat sat"]
    x = embedder.embed(texts)
    assert isinstance(embedder.name, str) and embedder.name
    assert x.dtype == np.float32 and x.ndim == 2 and x.shape[0] == 3
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert np.allclose(x[0], x[2], atol=1e-6)
    assert np.allclose(embedder.embed(texts[:1]), x[:1], atol=1e-5)
    assert copy.deepcopy(embedder) is embedder


def test_openai_embedder_batches_and_keeps_order():
    embedder = _openai()
    x = embedder.embed(["one", "two", "three"])
    assert [len(batch) for _, batch in embedder.client.calls] == [2, 1]
    assert embedder.client.calls[0][0] == "text-embedding-3-small"
    assert np.allclose(x[0], embedder.embed(["one"])[0])


@pytest.mark.slow
def test_minilm_groups_sentences_by_topic():
    conditions = [
        "This neuron activates when the text mentions cats or kittens.",
        "This neuron activates on words for pet cats such as 'kitten'.",
        "This neuron fires when a cat is described purring or meowing.",
        "This neuron activates when a Python comment starts with '#'.",
        "This neuron activates on the '#' symbol that begins a code comment.",
        "This neuron fires at comment lines in Python source code.",
        "This neuron activates on prices written in US dollars.",
        "This neuron fires when a dollar amount such as '$5' appears.",
    ]
    result = ClusteringAgent(MiniLMEmbedder())(conditions=conditions)
    groups = sorted(sorted(c.indices) for c in result.clusters)
    assert result.embeddings.shape == (8, 384)
    assert groups == [[0, 1, 2], [3, 4, 5], [6, 7]]
    for c in result.clusters:
        assert c.representative in c.members
