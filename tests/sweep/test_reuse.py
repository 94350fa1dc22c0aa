"""Reuse: the work cache and the cached agents. A repeated configuration and a clustering-only change make no
LM call at all - in the same process or in a new one on the same database - while anything that changes the
LM's work (its temperature) pays again. Costs are the configuration's, whatever the cache held."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sqlalchemy as sa
from fake_chat import FakeChatServer
from sweep_world import SweepWordEmbedder, answer

from ns_dspy.agents import ClusterConfig
from ns_dspy.lms import make_lm
from ns_dspy.lms.scripted import chat_answer
from ns_dspy.program import ExplainConfig, NeuronScope
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.sweep import CachedEmbedder, Evaluator, TrialError, WorkCache, sweep_neurons
from ns_dspy.types import UnitId


def _cache(tmp_path) -> WorkCache:
    return WorkCache(sa.create_engine(f"sqlite:///{tmp_path / 'study.sqlite'}"))


def _evaluator(tmp_path, lm_spec: str) -> Evaluator:
    program = NeuronScope(KeywordSimulator(), SweepWordEmbedder(), ExplainConfig())
    return Evaluator(program, _cache(tmp_path), make_lm(lm_spec, cache=False, num_retries=0), lm_spec)


def test_work_cache_is_shared_and_first_value_wins(tmp_path):
    one, two = _cache(tmp_path), _cache(tmp_path)
    one.put("hypothesis", "k1", {"explanation": "first", "tokens": 5})
    two.put("hypothesis", "k1", {"explanation": "second", "tokens": 9})
    assert two.get("k1") == one.get("k1") == {"explanation": "first", "tokens": 5}
    assert _cache(tmp_path).get_many(["k1", "nope"]) == {"k1": {"explanation": "first", "tokens": 5}}
    assert one.counts() == {"hypothesis": 1}


def test_cached_embedder_embeds_each_text_once(tmp_path):
    inner = SweepWordEmbedder()
    texts = ["This neuron fires for dog", "This neuron fires for cat", "This neuron fires for dog"]
    before = SweepWordEmbedder.embedded
    first = CachedEmbedder(inner, _cache(tmp_path)).embed(texts)
    assert SweepWordEmbedder.embedded - before == 2  # the repeated text once
    again = CachedEmbedder(inner, _cache(tmp_path)).embed(texts[::-1])  # a new process on the same database
    assert SweepWordEmbedder.embedded - before == 2
    assert np.array_equal(first, inner.embed(texts)) and np.array_equal(again, first[::-1])


def test_repeat_and_clustering_only_evaluations_make_no_lm_call(store, server, tmp_path):
    neuron = sweep_neurons(store, [UnitId(0, 0)])[0]
    evaluator = _evaluator(tmp_path, server.lm)
    two_modes = ExplainConfig(refine=False, stats_modes=False, cluster=ClusterConfig(min_cluster_size=2))
    first = evaluator.evaluate(two_modes, 0.7, neuron)
    paid = server.calls
    assert paid == first.ledger.calls == 2 and first.ledger.spent_tokens == first.ledger.cost_tokens == 20
    assert len(first.explanations) == 2 and first.error is None  # a dog mode and a cat mode

    one_mode = ExplainConfig(refine=False, stats_modes=False, cluster=ClusterConfig(min_cluster_size=3, min_samples=2,
                                                                  cluster_selection_method="leaf", metric="cosine"))
    clustered = evaluator.evaluate(one_mode, 0.7, neuron)
    assert server.calls == paid and clustered.ledger.calls == 0 and clustered.ledger.hits == 2
    assert len(clustered.explanations) == 1 and clustered.valid < first.valid  # clustering changed, the LM work did not
    assert clustered.ledger.cost_tokens == 20 and clustered.ledger.spent_tokens == 0

    fresh = _evaluator(tmp_path, server.lm)  # another worker process on the same study database
    again = fresh.evaluate(two_modes, 0.7, neuron)
    assert server.calls == paid and (again.valid, again.explanations) == (first.valid, first.explanations)

    hotter = evaluator.evaluate(two_modes, 1.2, neuron)  # another LM temperature is other LM work
    assert server.calls == paid + 2 and hotter.ledger.calls == 2
    assert {b["temperature"] for b in server.bodies[paid:]} == {1.2}


def test_repeated_refinement_is_free_too(store, server, tmp_path):
    neuron = sweep_neurons(store, [UnitId(0, 1)])[0]
    evaluator = _evaluator(tmp_path, server.lm)
    config = ExplainConfig(candidates=2, iterations=2)
    first = evaluator.evaluate(config, 0.7, neuron)
    paid = server.calls
    assert first.ledger.calls == paid > 2  # hypothesis, decomposition and refinement proposals
    again = evaluator.evaluate(config, 0.7, neuron)
    assert server.calls == paid and again.ledger.calls == 0 and again.ledger.cost_tokens == first.ledger.cost_tokens
    assert (again.valid, again.explanations) == (first.valid, first.explanations)
    more = evaluator.evaluate(dataclasses.replace(config, candidates=3), 0.7, neuron)
    assert more.ledger.calls > 0 and more.ledger.hits == 2  # only refinement is redone
    # a refinement that stops modes adding nothing to the word lists (the default) is not one that does not
    off = evaluator.evaluate(dataclasses.replace(config, mode_stop=False), 0.7, neuron)
    assert off.ledger.hits == 2
    assert evaluator.evaluate(dataclasses.replace(config, mode_stop=False), 0.7, neuron).ledger.calls == 0


def test_agent_failures_are_cached_and_score_zero(store, tmp_path):
    def garbage_decomposition(body):
        last = body["messages"][-1]["content"]
        return chat_answer(conditions="no idea") if "conditions" in last.split("Respond with")[-1] else answer(body)

    with FakeChatServer(garbage_decomposition, model="toy", usage=(7, 3)) as server:
        lm = f"endpoint:{server.url}@toy"
        neuron = sweep_neurons(store, [UnitId(0, 0)])[0]
        result = _evaluator(tmp_path, lm).evaluate(ExplainConfig(refine=False), 0.7, neuron)
        assert result.valid == 0.0 and "no usable conditions in 2 attempts" in result.error
        paid = server.calls
        assert paid >= 3 and result.ledger.calls == paid  # the hypothesis, two decomposition attempts (+ DSPy's
        again = _evaluator(tmp_path, lm).evaluate(ExplainConfig(refine=False), 0.7, neuron)  # JSON fallbacks)
        assert server.calls == paid and again.error == result.error and again.ledger.cost_tokens == 10 * paid


def test_an_lm_that_is_down_fails_the_trial_and_caches_nothing(store, tmp_path):
    with FakeChatServer(answer) as gone:
        url = gone.url
    neuron = sweep_neurons(store, [UnitId(0, 0)])[0]
    with pytest.raises(TrialError, match=r"^unit 0:0 could not be evaluated: \w+") as err:
        _evaluator(tmp_path, f"endpoint:{url}@toy").evaluate(ExplainConfig(refine=False), 0.7, neuron)
    assert "\n" not in str(err.value) and _cache(tmp_path).counts() == {}
