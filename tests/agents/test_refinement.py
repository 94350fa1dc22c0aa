"""Refinement with a scripted LM and a real, transparent simulator (KeywordSimulator scored on valid data)."""

import dspy
import numpy as np
import pytest

from ns_dspy.agents import AgentError, RefinementAgent, valid_scorer
from ns_dspy.errors import ConfigError
from ns_dspy.scoring import HeldOut, select
from ns_dspy.simulators.keyword import KeywordSimulator
from ns_dspy.types import Exemplar, UnitId

# The unit fires on "cat" (strongly) and "dog" (weakly), nowhere else.
VALID = HeldOut(UnitId(0, 7), "valid", tuple(
    Exemplar(tokens=tokens, activations=np.array(acts, np.float32), split="valid", kind=kind)
    for tokens, acts, kind in [
        (["The", " cat", " sat", " near", " the", " dog", "."], [0, 9, 0, 0, 0, 4, 0], "top"),
        (["A", " cat", " and", " a", " cat", "."], [0, 8, 0, 0, 9, 0], "top"),
        (["My", " dog", " ran", " home", "."], [0, 5, 0, 0, 0], "top"),
        (["Rain", " fell", " on", " the", " house", "."], [0, 0, 0, 0, 0, 0], "random"),
        (["He", " sat", " near", " home", "."], [0, 0, 0, 0, 0], "random"),
    ]))
TRAIN = [Exemplar(tokens=["Our", " cat", " slept"], activations=np.array([0, 7, 0], np.float32))]


class Scorer:
    """The program's score function (``valid_scorer``: one batched ``select`` on valid data); records calls."""

    def __init__(self):
        self.score, self.calls = valid_scorer(KeywordSimulator(), VALID), []

    def __call__(self, explanations):
        self.calls.append(list(explanations))
        return self.score(explanations)

    @property
    def scored(self):
        return [e for call in self.calls for e in call]


def proposals(*texts):
    return [{"explanation": t} for t in texts]


def r(explanation):
    return select(KeywordSimulator(), [explanation], VALID)[0].value


def test_keyword_scores_order_the_explanations():
    assert r("cat or dog tokens") > r("cat tokens") > r("house tokens") and r("cat or dog tokens") > 0.9


def test_improves_over_the_seed_and_never_rescores(scripted):
    lm, engine = scripted(proposals(
        "cat tokens.", "house tokens", "cat or dog tokens",   # iteration 1: a duplicate of the seed, two new
        "Cat or dog tokens", "cat, dog or home", "house tokens",  # iteration 2: two duplicates, one new (worse)
    ))
    score = Scorer()
    with dspy.context(lm=lm):
        result = RefinementAgent(candidates=3, iterations=5, patience=1)(seed="Cat tokens", score=score)
    assert result.explanation == "cat or dog tokens" and result.score == pytest.approx(r("cat or dog tokens"))
    assert result.score > r("Cat tokens")
    assert score.calls == [["Cat tokens"], ["house tokens", "cat or dog tokens"], ["cat, dog or home"]]
    assert len(set(score.scored)) == len(score.scored)
    assert result.stopped == "converged" and len(engine.requests) == 6  # stopped after iteration 2
    assert result.trajectory == pytest.approx([r("Cat tokens"), r("cat or dog tokens"), r("cat or dog tokens")])
    assert [e for e, _ in result.history][0] == "cat or dog tokens" and len(result.history) == 4
    assert [s for _, s in result.history] == sorted((s for _, s in result.history), reverse=True)


def test_history_reaches_the_lm_ranked_best_first(scripted):
    lm, engine = scripted(proposals("house tokens", "cat or dog tokens", "dog tokens", "x", "y", "z"))
    with dspy.context(lm=lm):
        RefinementAgent(candidates=3, iterations=2, patience=2)(seed="cat tokens", score=Scorer(), exemplars=TRAIN)
    second = engine.prompts[3]
    assert f"1. score {r('cat or dog tokens'):.3f}: cat or dog tokens" in second
    assert second.index("cat or dog tokens") < second.index("2. score") < second.index("house tokens")
    assert "<<cat>>" in engine.prompts[0]  # exemplars shown as evidence
    assert "Return only the new explanation text" in engine.prompts[0]


def test_a_neurons_refinement_prompts_share_its_evidence_as_their_prefix(scripted):
    """The excerpts and statistics come before the history, so the calls of every iteration (and of every mode of
    the neuron) begin with the same text, which the local LM's prefix cache evaluates once."""
    import os

    lm, engine = scripted(proposals("house tokens", "cat or dog tokens", "dog tokens", "x", "y", "z"))
    with dspy.context(lm=lm):
        RefinementAgent(candidates=3, iterations=2, patience=2)(seed="cat tokens", score=Scorer(), exemplars=TRAIN)
    first, second = engine.prompts[0], engine.prompts[3]
    shared = os.path.commonprefix([first, second])
    user = second.rindex("[[ ## exemplars ## ]]")  # the user message's fields (the system prompt names them too)
    assert user < second.rindex("[[ ## statistics ## ]]") < second.rindex("[[ ## history ## ]]") < len(shared) + 40
    assert "<<cat>>" in shared[user:] and "cat or dog tokens" not in shared[user:]
    assert "cat or dog tokens" in second[len(shared):]


def test_distinct_rollouts_per_candidate(scripted):
    lm, engine = scripted(proposals("a1", "a2", "a3", "a4"))
    with dspy.context(lm=lm):
        RefinementAgent(candidates=2, iterations=2, patience=2)(seed="cat tokens", score=Scorer())
    assert all(req.config.temperature == 1.0 for req in engine.requests)
    assert len(engine.prompts) == 4


def test_trajectory_is_monotone(scripted):
    lm, _ = scripted(proposals("dog tokens", "house", "cat tokens", "sat near", "cat dog", "home"))
    with dspy.context(lm=lm):
        result = RefinementAgent(candidates=2, iterations=3, patience=3)(seed="the house", score=Scorer())
    assert len(result.trajectory) == 4 and result.stopped == "iterations"
    assert all(b >= a for a, b in zip(result.trajectory, result.trajectory[1:]))
    assert result.trajectory[-1] == result.score == max(s for _, s in result.history)


def test_keep_stops_a_mode_whose_best_adds_nothing_and_is_not_asked_after_the_last_iteration(scripted):
    """``keep`` is asked after every iteration but the last with the best explanation so far; a no stops the loop
    there (``no_contribution``), with the best kept as it is."""
    asked = []

    def keep(text):
        asked.append(text)
        return "dog" not in text  # e.g. the statistical lists already name dogs

    lm, engine = scripted(proposals("cat or dog tokens", "house tokens", "dog tokens", "cat", "x", "y"))
    with dspy.context(lm=lm):
        result = RefinementAgent(candidates=2, iterations=3, patience=3)(seed="cat tokens", score=Scorer(), keep=keep)
    assert result.stopped == "no_contribution" and asked == ["cat or dog tokens"] and len(engine.requests) == 2
    assert result.explanation == "cat or dog tokens" and len(result.trajectory) == 2
    # while it says yes the loop runs on; after the last iteration it is not asked
    asked.clear()
    lm, engine = scripted(proposals("house tokens", "home", "sat near", "rain", "dog tokens", "fell"))
    with dspy.context(lm=lm):
        result = RefinementAgent(candidates=2, iterations=3, patience=4)(seed="cat tokens", score=Scorer(), keep=keep)
    assert result.stopped == "iterations" and len(engine.requests) == 6 and asked == ["cat tokens", "cat tokens"]


def test_stops_when_no_new_candidate_comes_out(scripted):
    lm, engine = scripted(proposals("cat tokens", " CAT   tokens. ", ""))
    score = Scorer()
    with dspy.context(lm=lm):
        result = RefinementAgent(candidates=3, iterations=5)(seed="cat tokens", score=score)
    assert result.stopped == "no_new_candidates" and score.calls == [["cat tokens"]]
    assert result.explanation == "cat tokens" and result.trajectory == [pytest.approx(r("cat tokens"))]


def test_failing_candidates_are_skipped_and_counted(scripted):
    # an LM error, then an answer DSPy cannot parse (twice: ChatAdapter and its JSON fallback), then a good one
    lm, engine = scripted([RuntimeError("timeout"), "no fields", "still none", {"explanation": "cat or dog tokens"}])
    with dspy.context(lm=lm):
        result = RefinementAgent(candidates=3, iterations=1)(seed="cat tokens", score=Scorer())
    assert result.explanation == "cat or dog tokens" and result.failures == 2 and result.stopped == "iterations"
    assert len(engine.requests) == 4


def test_an_iteration_where_every_call_fails_stops_gracefully(scripted):
    lm, _ = scripted(default=RuntimeError("server down"))
    score = Scorer()
    with dspy.context(lm=lm):
        result = RefinementAgent(candidates=3, iterations=5)(seed="cat tokens", score=score)
    assert result.stopped == "lm_failed" and result.failures == 3
    assert result.explanation == "cat tokens" and score.calls == [["cat tokens"]]
    assert result.trajectory == [pytest.approx(r("cat tokens"))]


def test_all_failing_after_an_improvement_keeps_the_best(scripted):
    lm, _ = scripted(proposals("cat or dog tokens"), default=RuntimeError("quota"))
    with dspy.context(lm=lm):
        result = RefinementAgent(candidates=1, iterations=5, patience=2)(seed="cat tokens", score=Scorer())
    assert result.explanation == "cat or dog tokens" and result.stopped == "lm_failed"
    assert len(result.trajectory) == 2


def test_zero_iterations_only_scores_the_seed(scripted):
    lm, engine = scripted()
    with dspy.context(lm=lm):
        result = RefinementAgent(iterations=0)(seed="cat tokens", score=Scorer())
    assert result.explanation == "cat tokens" and engine.requests == [] and result.stopped == "iterations"


def test_valid_scorer_keeps_the_order_and_refuses_test_data():
    score = valid_scorer(KeywordSimulator(), VALID)
    assert score(["house tokens", "cat or dog tokens"]) == pytest.approx([r("house tokens"), r("cat or dog tokens")])
    test = HeldOut(VALID.unit, "test", VALID.exemplars)
    with pytest.raises(ConfigError, match="valid data"):
        valid_scorer(KeywordSimulator(), test)(["cat"])


def test_bad_score_function_and_arguments():
    with pytest.raises(ValueError, match="one finite number per explanation"):
        RefinementAgent()(seed="cat", score=lambda es: [])
    with pytest.raises(ValueError, match="one finite number per explanation"):
        RefinementAgent()(seed="cat", score=lambda es: [float("nan")])
    with pytest.raises(AgentError, match="no seed"):
        RefinementAgent()(seed="  ", score=Scorer())
    for split in ("valid", "test"):
        held_out = [Exemplar(tokens=["a"], activations=np.ones(1, np.float32), split=split)]
        with pytest.raises(AgentError, match="only train exemplars"):
            RefinementAgent()(seed="cat", score=Scorer(), exemplars=held_out)
    for bad in (dict(candidates=0), dict(iterations=-1), dict(patience=0), dict(min_delta=-1)):
        with pytest.raises(ConfigError):
            RefinementAgent(**bad)


def test_an_answer_about_the_task_is_not_scored(scripted):
    """"The marked tokens are ..." or "A better explanation: ..." describe the prompt or the answer, not the
    neuron: such a proposal counts as unusable and is never scored; when a whole iteration is like that, one
    fresh sample is drawn. A description wrapped in talk about the task ("The new explanation should focus on
    the cat tokens.") is scored without the wrapping."""
    lm, engine = scripted(proposals(
        "The new explanation should focus on the cat tokens.", "cat or dog tokens",
        "A better explanation: dog tokens.", "The marked tokens are animals.",
        "Refined: house tokens in <<the>> text",
    ))
    score = Scorer()
    with dspy.context(lm=lm):
        result = RefinementAgent(candidates=2, iterations=2, patience=2)(seed="cat tokens", score=score)
    assert score.calls[1] == ["The cat tokens.", "cat or dog tokens"]
    assert not any("explanation" in e or "marked" in e or "<<" in e for e in score.scored)
    # iteration 1: both usable; iteration 2: both unusable, then one fresh sample, unusable too
    assert result.failures == 3 and len(engine.requests) == 5 and result.stopped == "lm_failed"
    assert result.explanation == "cat or dog tokens"


def test_sentences_echoing_the_instructions_are_dropped_and_an_echo_alone_is_not_scored(scripted):
    """A proposal that copies five or more words of the agent's instructions (as the offline LM's "... would predict
    activation where there is none") keeps only its other sentences; one that is nothing but the echo is refused."""
    lm, engine = scripted(proposals(
        "Cat tokens after the. The neurons also predict activation where there is none.",
        "Make it more specific about which tokens activate and in which context.",
        "dog tokens",
    ))
    score = Scorer()
    with dspy.context(lm=lm):
        result = RefinementAgent(candidates=2, iterations=1, patience=1)(seed="house tokens", score=score)
    assert score.calls[1] == ["Cat tokens after the."]  # the echo dropped from the first; the second refused
    assert result.failures == 1 and len(engine.requests) == 2
    assert not any("activation where there is none" in e or "which tokens activate" in e for e in score.scored)
