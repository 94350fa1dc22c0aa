import dspy
import numpy as np
import pytest
from dspy.utils.dummies import DummyLM

from ns_dspy.agents import AgentError, Hypothesize, HypothesisAgent
from ns_dspy.types import Exemplar


def exemplars(split="train"):
    return [Exemplar(tokens=["My", " cat", " purrs"], activations=np.array([0, 6, 1], np.float32), split=split),
            Exemplar(tokens=["A", " kitten", "."], activations=np.array([0, 4, 0], np.float32), split=split)]


def test_returns_the_lms_explanation():
    lm = DummyLM([{"explanation": "Fires on cat words such as 'cat' and 'kitten'."}])
    with dspy.context(lm=lm):
        result = HypothesisAgent()(exemplars=exemplars())
    assert result.explanation == "Fires on cat words such as 'cat' and 'kitten'."


def test_prompt_carries_the_signature_and_marked_exemplars(scripted):
    lm, engine = scripted(["[[ ## explanation ## ]]\nCats. [[ ## completed ## ]] [[ ## completed ## ]]"])
    with dspy.context(lm=lm):
        result = HypothesisAgent()(exemplars=exemplars())
    assert result.explanation == "Cats."  # leaked markers stripped
    prompt = engine.prompts[0]
    assert "1. My <<cat>> purrs" in prompt
    assert "2. A <<kitten>>." in prompt
    assert "keep EVERY plausible cue" in prompt  # the docstring is the instruction
    assert Hypothesize.__doc__.split()[0] in prompt


@pytest.mark.parametrize("acts", [[0, 0, 0], [-1, -2, 0]])
def test_refuses_a_unit_without_activation(acts):
    dead = [Exemplar(tokens=["a", " b", " c"], activations=np.array(acts, np.float32))]
    with pytest.raises(AgentError, match="no activation in its train exemplars"):
        HypothesisAgent()(exemplars=dead)


def test_refuses_held_out_exemplars():
    with pytest.raises(AgentError, match="train exemplars only"):
        HypothesisAgent()(exemplars=exemplars(split="valid"))


def test_empty_answer_is_a_neuron_failure(scripted):
    lm, _ = scripted([{"explanation": "  "}])
    with dspy.context(lm=lm), pytest.raises(AgentError, match="empty explanation"):
        HypothesisAgent()(exemplars=exemplars())


def test_error_messages_are_one_line(scripted):
    lm, _ = scripted(default="no fields at all")
    with dspy.context(lm=lm), pytest.raises(AgentError) as info:
        HypothesisAgent()(exemplars=exemplars())
    assert "\n" not in str(info.value)


def test_config_reaches_the_lm_for_distinct_drafts(scripted):
    lm, engine = scripted([{"explanation": "Cats."}, {"explanation": "Kittens."}])
    with dspy.context(lm=lm):
        agent = HypothesisAgent()
        drafts = [agent(exemplars=exemplars(), config={"rollout_id": k, "temperature": 1.0}).explanation
                  for k in range(2)]
    assert drafts == ["Cats.", "Kittens."]
    assert [r.config.temperature for r in engine.requests] == [1.0, 1.0]


def test_a_parser_system_error_is_an_unusable_answer_retried_fresh(scripted, monkeypatch):
    """CPython 3.11's parser can raise SystemError when two threads parse deep garbage at once (seen with
    --concurrency 8); the agent treats it like an unparsable answer: one fresh sample, then a one-line failure."""
    import numpy as np

    from ns_dspy.agents import HypothesisAgent
    from ns_dspy.types import Exemplar

    lm, engine = scripted([{"explanation": "first"}, {"explanation": "the word cat"}])
    calls = []
    agent = HypothesisAgent()
    real = agent.hypothesize.forward

    def flaky(**kwargs):
        calls.append(kwargs.get("config"))
        if len(calls) == 1:
            raise SystemError("AST constructor recursion depth mismatch (before=48, after=47)")
        return real(**kwargs)

    monkeypatch.setattr(agent.hypothesize, "forward", flaky)
    ex = [Exemplar(tokens=["A", " cat"], activations=np.array([0, 5], np.float32))]
    import dspy

    with dspy.context(lm=lm):
        out = agent(exemplars=ex)
    assert out.explanation in ("first", "the word cat") and len(calls) == 2
    assert calls[1]["rollout_id"] != (calls[0] or {}).get("rollout_id")
