import dspy
import pytest
from dspy.utils.dummies import DummyLM

from ns_dspy.agents import AgentError, DecompositionAgent, normalise_condition, parse_conditions

A = "This neuron activates when the word 'cat' appears."
B = "This neuron fires when a line of Python code starts with '#'."


@pytest.mark.parametrize("raw", [
    [A, B],
    f'["{A}", "{B}"]',
    f'```json\n["{A}", "{B}"]\n```',
    f'```\n["{A}",\n "{B}"]\n```',
    f'{{"claims": ["{A}", "{B}"]}}',
    f'Here they are:\n```json\n{{"conditions": ["{A}", "{B}"], "count": 2}}\n```',
    f"1. {A}\n2. {B}",
    f"Sure! The conditions are:\n- {A}\n- {B}\nHope this helps.",
    f'[[ ## conditions ## ]]\n["{A}", "{B}"]\n\n[[ ## completed ## ]]',
    [f"{A} [[ ## completed ## ]]", B],
    [f'["{A}", "{B}"]'],  # a list whose one string is the JSON array
    [{"condition": A}, {"condition": B}],
    f"[1] {A}\n[2] {B}",
    [A, A.upper(), A.rstrip("."), B],  # duplicates up to case and final punctuation
])
def test_parse_conditions_messy_forms(raw):
    assert [c.casefold() for c in parse_conditions(raw)] == [A.casefold(), B.casefold()]


@pytest.mark.parametrize("item, expected", [
    ("the word 'cat' appears", A),
    ("When the word 'cat' appears", A),
    ("Activates when the word 'cat' appears", A),
    ("It activates when the word 'cat' appears.", A),
    ("The neuron activates when the word 'cat' appears", A),
    ("this unit fires when x", "This neuron fires when x."),
    ("The neuron's activation rises on 'cat'", "This neuron's activation rises on 'cat'."),
    ("Python comments start with '#'", "This neuron activates when Python comments start with '#'."),
    ("  ", ""),
    ("This neuron activates when", ""),
])
def test_normalise_condition(item, expected):
    assert normalise_condition(item) == expected


@pytest.mark.parametrize("raw", [None, "", "I cannot help with that.", "[]", "{}", [], ["", "  ", "..."],
                                 {"count": 3}, ["x" * 800]])
def test_parse_conditions_unusable_gives_nothing(raw):
    assert parse_conditions(raw) == []


def test_runaway_list_is_deduplicated_and_capped():
    looping = "[" + ", ".join(['"the token is a digit"'] * 500)  # cut off at max_tokens
    assert parse_conditions(looping) == ["This neuron activates when the token is a digit."]
    many = [f"the token is {i}" for i in range(100)]
    assert len(parse_conditions(many)) == 12
    assert len(parse_conditions(many, max_conditions=3)) == 3


def test_agent_with_dummy_lm():
    lm = DummyLM([{"conditions": ["the word 'cat' appears", B]}])
    with dspy.context(lm=lm):
        assert DecompositionAgent()(explanation="cats; and '#' comments").conditions == [A, B]


def test_agent_parses_raw_text_the_adapter_rejects(scripted):
    messy = f'[[ ## conditions ## ]]\n{{"claims": ["{A}", "{B}"]}}\n\n[[ ## completed ## ]]'
    lm, engine = scripted([messy, messy])  # ChatAdapter, then its JSONAdapter fallback, see the same text
    with dspy.context(lm=lm):
        assert DecompositionAgent()(explanation="cats and comments").conditions == [A, B]
    assert "Give the conditions as a JSON array of strings" in engine.prompts[0]


def test_agent_retries_once_with_another_rollout(scripted):
    def answer(prompt, request):  # garbage at the default temperature, a list on the retry
        return {"conditions": [A]} if request.config.temperature == 1.0 else "no idea"

    lm, engine = scripted(default=answer)
    with dspy.context(lm=lm):
        assert DecompositionAgent()(explanation="cats").conditions == [A]
    assert engine.requests[-1].config.temperature == 1.0


def test_agent_gives_up_after_two_garbage_attempts(scripted):
    lm, engine = scripted(default="I do not know what you mean.")
    with dspy.context(lm=lm), pytest.raises(AgentError, match="no usable conditions in 2 attempts") as info:
        DecompositionAgent()(explanation="cats")
    assert "\n" not in str(info.value)
    temperatures = [r.config.temperature for r in engine.requests]
    assert len(temperatures) <= 4 and temperatures[-1] == 1.0  # two attempts (each may try JSON once more)


def test_agent_gives_up_on_an_empty_list_twice(scripted):
    lm, engine = scripted([{"conditions": []}, {"conditions": ["   "]}])
    with dspy.context(lm=lm), pytest.raises(AgentError, match="no usable condition"):
        DecompositionAgent()(explanation="cats")
    assert len(engine.requests) == 2


def test_agent_refuses_empty_explanation():
    with pytest.raises(AgentError, match="empty"):
        DecompositionAgent()(explanation=" [[ ## completed ## ]] ")


def test_conditions_about_the_task_are_dropped(scripted):
    lm, _ = scripted([{"conditions": [A, "The explanation should mention the excerpts.", B]}])
    with dspy.context(lm=lm):
        assert DecompositionAgent()(explanation="cats and comments").conditions == [A, B]
    echo = "This neuron activates when it keeps the meaning and the concrete details."  # the prompt's own words
    lm, _ = scripted([{"conditions": [A, echo, B]}])
    with dspy.context(lm=lm):
        assert DecompositionAgent()(explanation="cats and comments").conditions == [A, B]
    only = ["This neuron activates when the explanation mentions cats.",
            "This neuron activates when tokens marked <<like this>> fire."]
    lm, _ = scripted([{"conditions": only}])
    with dspy.context(lm=lm):  # a preference, never a failure: with nothing else, they are kept
        assert DecompositionAgent()(explanation="cats").conditions == only
