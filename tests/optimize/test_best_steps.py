"""The best-steps optimizer: which refinement step becomes the demonstration, and when the demos are kept."""

from __future__ import annotations

import re
from types import SimpleNamespace

import dspy
import pytest
from toy_neurons import NOISE, CountingEngine, responder, toy_program
from trigger_words import prompt_field

from ns_dspy.errors import ConfigError
from ns_dspy.optimize import compile_program, evaluate_program, neuron_sets
from ns_dspy.agents.formatting import format_history, history_best
from ns_dspy.optimize.best_steps import in_format
from ns_dspy.scoring import SimulatorMetric
from ns_dspy.types import UnitId


def test_in_format_and_history_best():
    text = 'It fires on "dog." and "cat". Also on mat. And on red.'
    assert in_format(text) == 'It fires on "dog." and "cat". Also on mat.'
    assert in_format("Fires on dog. Also on cat (a pet.) And more") == "Fires on dog. Also on cat (a pet.)"
    assert in_format("Fires on dog.\nAlso on cat.") == "Fires on dog." and in_format("Fires on dog and the") == ""
    assert in_format("One. Two. Three.", max_sentences=3) == "One. Two. Three."
    assert in_format('The words "dog." and "cat" after "the".') == 'The words "dog." and "cat" after "the".'
    assert in_format("") == "" and in_format("Fires on dog. Also on cat.") == "Fires on dog. Also on cat."
    assert history_best("1. score 0.412: the dog\n   missed: [[cat]]\n2. score -0.100: x") == 0.412
    assert history_best("1. score -0.25: x") == -0.25 and history_best("no history") is None
    assert history_best(format_history([("a", -0.3), ("b", 0.4121)])) == 0.412  # reads what format_history writes


class Refiner:
    """The toy explainer (``toy_neurons.responder``) whose refinement improves: untaught, the first candidate of a
    call drops the NOISE word "the" in one sentence (a well-formed improvement) and the second drops "and" (which
    scores higher on the toy neurons) but in a third sentence, which the format cuts off; shown a demo, it drops both
    in one sentence."""

    def __init__(self, malformed: bool = True, improve: bool = True):
        self.calls, self.malformed, self.improve = 0, malformed, improve

    def __call__(self, prompt, request):
        last = request.messages[-1].text or ""
        if "[[ ## history ## ]]" not in last or not self.improve:
            return responder(prompt, request)
        best = prompt_field(last, "history").strip().splitlines()[0]
        best = re.sub(r"^\W*\d*\W*(score[^:]*:)?\s*", "", best).rstrip(".")
        words = best.split()
        if len(request.messages) > 1:  # shown a demo
            return {"explanation": " ".join(w for w in words if w not in NOISE.split()) + "."}
        self.calls += 1
        if self.calls % 2 == 1 or not self.malformed:
            return {"explanation": " ".join(w for w in words if w != "the") + "."}
        return {"explanation": "Nothing else fires. That is all. " + " ".join(w for w in words if w != "and") + "."}


def _compile(store, refiner, **options):
    sets = neuron_sets(store, [UnitId(0, i) for i in range(7)], seed=0)
    program = toy_program(candidates=2)
    lm = dspy.LM("local/toy-scripted", engine=CountingEngine([], default=refiner), cache=True)
    with dspy.context(lm=lm):
        compiled = compile_program(program, optimizer="best-steps", trainset=sets.train, valset=sets.val,
                                   metric=SimulatorMetric(program.simulator), options=options)
        before, after = (evaluate_program(p, sets.val, SimulatorMetric(p.simulator)) for p in (program, compiled))
    return program, compiled, before, after


def test_the_demo_is_the_best_well_formed_improving_step(store):
    program, compiled, before, after = _compile(store, Refiner())
    demos = compiled.refinement.refine.demos
    assert len(demos) == 1 and not compiled.hypothesis.hypothesize.demos  # refinement only, by default
    demo = demos[0]
    # the one-sentence answer that dropped "the" (its history's best still had it), not the three-sentence one that
    # dropped "and": cut to two sentences it names no toy word and improves on nothing
    shown, answer = re.findall(r"\w+", demo["history"].splitlines()[0]), re.findall(r"\w+", demo["explanation"])
    assert "the" in shown and "the" not in answer and "and" in answer and demo["explanation"].count(".") == 1
    assert after.mean > before.mean  # kept because it raised the compile-val mean
    assert compiled.dump_state()["decomposition.decompose"] == program.dump_state()["decomposition.decompose"]


def test_without_a_well_formed_improvement_the_program_stays_uncompiled(store, caplog):
    for refiner in (Refiner(improve=False), ):  # refinement repeats the best: no step improves on what it saw
        program, compiled, before, after = _compile(store, refiner)
        assert compiled.dump_state() == program.dump_state() and after.scores == before.scores
    assert "no well-formed improving step" in caplog.text


def test_demos_that_do_not_raise_compile_val_are_dropped(store, caplog):
    """Every untaught call improves as much as a taught one: the demos add nothing on compile-val."""
    class Same(Refiner):
        def __call__(self, prompt, request):
            return super().__call__(prompt, SimpleNamespace(messages=request.messages[-1:]))  # demos unread

    program, compiled, *_ = _compile(store, Same(malformed=False))
    assert compiled.dump_state() == program.dump_state()
    assert "did not raise the compile-val mean" in caplog.text
    _, kept, *_ = _compile(store, Same(malformed=False), keep_if_worse=True)
    assert kept.refinement.refine.demos


def test_options_are_checked(store):
    with pytest.raises(ConfigError, match="best-steps refused its options: agents must be"):
        _compile(store, Refiner(), agents="hypothesis,clustering")
    with pytest.raises(ConfigError, match="best-steps has no option 'max_bootstrapped_demos'"):
        _compile(store, Refiner(), max_bootstrapped_demos=1)
