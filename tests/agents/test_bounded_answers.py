"""An agent's answer cut at the agent's own ``max_tokens`` is expected (each agent bounds its answer on purpose):
DSPy's "LM response was truncated; increase max_tokens" warning would give the wrong advice, so inside an agent
it becomes one INFO line of ours naming the agent and its bound, while the same LM called outside the agents
still warns (:func:`ns_dspy.agents.reliability.bounded_answer`)."""

from __future__ import annotations

import logging

import dspy
import numpy as np
import pytest
from dspy.lm15 import Response, Usage

from ns_dspy.agents import DecompositionAgent, HypothesisAgent
from ns_dspy.lms.scripted import ScriptedEngine, chat_answer
from ns_dspy.types import Exemplar


class CutEngine(ScriptedEngine):
    """Answers from the script, each reported as cut at ``max_tokens`` (finish reason "length")."""

    def complete(self, request):
        done = super().complete(request)
        return Response(id=None, model="scripted", message=done.message, finish_reason="length",
                        usage=Usage(input_tokens=0, output_tokens=0, total_tokens=0))


def cut_lm(script) -> dspy.LM:
    return dspy.LM("local/scripted", engine=CutEngine(script), cache=False)


def train() -> list[Exemplar]:
    return [Exemplar(tokens=["My", " cat", " purrs"], activations=np.array([0, 6, 1], np.float32)),
            Exemplar(tokens=["A", " kitten", "."], activations=np.array([0, 4, 0], np.float32))]


class Kept(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def dspy_warnings():
    """What DSPy's LM logger emits, read by a handler on that logger itself (DSPy's loggers need not propagate
    to the root, where caplog listens)."""
    kept, logger = Kept(), logging.getLogger("dspy.clients.lm")
    logger.addHandler(kept)
    yield kept.messages
    logger.removeHandler(kept)


def test_an_agents_cut_answer_is_one_info_line_of_ours_not_dspys_warning(caplog, dspy_warnings):
    caplog.set_level(logging.INFO)
    with dspy.context(lm=cut_lm([chat_answer(explanation="Fires on cat words: cat, kitten, cat, kitten")])):
        result = HypothesisAgent(max_tokens=64)(exemplars=train())
    assert result.explanation.startswith("Fires on cat words")  # the cut answer is still used
    assert dspy_warnings == []
    ours = [r.getMessage() for r in caplog.records if r.name == "ns_dspy.agents.reliability"]
    assert ours == ["hypothesis: the LM's answer reached the agent's bound (64 tokens) and was cut there"]

    caplog.clear()
    with dspy.context(lm=cut_lm([chat_answer(conditions=["This neuron activates on the word cat."])])):
        DecompositionAgent(max_tokens=96)(explanation="Fires on cats.")
    assert dspy_warnings == []
    assert any("decomposition: the LM's answer reached the agent's bound (96 tokens)" in r.getMessage()
               for r in caplog.records)


def test_the_same_cut_outside_the_agents_still_warns(caplog, dspy_warnings):
    """A user's own DSPy program in the same process keeps DSPy's warning, also after an agent has run."""
    caplog.set_level(logging.INFO)
    with dspy.context(lm=cut_lm([chat_answer(explanation="Cats.")])):
        HypothesisAgent()(exemplars=train())
    assert dspy_warnings == []
    caplog.clear()
    with dspy.context(lm=cut_lm([chat_answer(answer="Paris")])):
        dspy.Predict("question -> answer")(question="Capital of France?")
    assert len(dspy_warnings) == 1 and dspy_warnings[0].startswith("LM response was truncated")
    assert not any(r.name == "ns_dspy.agents.reliability" for r in caplog.records)
