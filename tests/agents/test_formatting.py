import numpy as np
import pytest

from ns_dspy.agents import clean_output, format_exemplars, format_history
from ns_dspy.types import Exemplar


def ex(pairs, **kw):
    return Exemplar(tokens=[t for t, _ in pairs], activations=np.array([a for _, a in pairs], dtype=np.float32), **kw)


def test_marks_tokens_at_threshold_and_merges_runs():
    text = format_exemplars([ex([("The", 0), (" New", 4), (" York", 3), (" team", 0.5), (" won", 10)])],
                            threshold=0.3)
    assert text == "1. The <<New York>> team <<won>>"


def test_threshold_is_relative_to_the_max_over_shown_exemplars():
    strong = ex([("a", 10), (" b", 0)])
    weak = ex([("c", 2), (" d", 4)])
    lines = format_exemplars([weak, strong], threshold=0.3).splitlines()
    assert lines[0].startswith("1. <<a>> b")  # strongest first
    assert lines[1] == "2. c <<d>>"  # 2 < 0.3 * 10 <= 4


def test_zero_and_negative_activations_are_never_marked():
    text = format_exemplars([ex([("x", 0), (" y", -3)]), ex([("p", 1), (" q", 0)])], threshold=1.0)
    assert "<<x>>" not in text and "<<y>>" not in text and "<<p>>" in text


def test_newlines_are_escaped_and_lines_stay_one_per_exemplar():
    text = format_exemplars([ex([("def", 0), (" f", 0), (":\n", 5), ("\t", 0), ("return", 0)]),
                             ex([("a\nb", 1)])])
    assert text.splitlines() == ["1. def f<<:\\n>>\\treturn",
                                 "2. a\\nb"]


def test_keeps_the_strongest_max_exemplars():
    exemplars = [ex([(f"w{i}", float(i))]) for i in range(1, 6)]
    lines = format_exemplars(exemplars, max_exemplars=2).splitlines()
    assert [line.split(". ", 1)[1] for line in lines] == ["<<w5>>", "<<w4>>"]


def test_long_windows_are_cut_around_the_most_active_token():
    tokens = [(f" t{i:02d}", 0.0) for i in range(60)]
    tokens[40] = (" HOT", 9.0)
    text = format_exemplars([ex(tokens)], max_chars=40)
    body = text.split(". ", 1)[1]
    assert "<<HOT>>" in body and body.startswith("...") and body.endswith("...")
    assert " t39" in body and len(body) < 60  # mostly left context kept


def test_threshold_validated():
    with pytest.raises(ValueError):
        format_exemplars([], threshold=0)


def test_history_ranked_best_first():
    text = format_history([("low one", 0.1), ("high  one\n", 0.7), ("mid", 0.4)])
    assert text.splitlines() == ["1. score 0.700: high one", "2. score 0.400: mid", "3. score 0.100: low one"]
    assert format_history([("a", 0.1), ("b", 0.7)], limit=1) == "1. score 0.700: b"


@pytest.mark.parametrize("raw", ["Fires on cats.", "[[ ## explanation ## ]]\nFires on cats.\n\n[[ ## completed ## ]]",
                                 "```\nFires on cats.\n```", "Explanation: Fires on cats.", '"Fires on cats."'])
def test_clean_output(raw):
    assert clean_output(raw) == "Fires on cats."


@pytest.mark.parametrize("text, leaked", [
    ("The new explanation should focus on the specific token.", "explanation"),
    ("the word '.' is another cue that appears in several excerpts", None),
    ("The marked tokens are nouns", "marked tokens"),
    ("the word <<adding>> in prose", "<<adding>>"),
    ('the word "explanation" and "excerpt"', None),
    ("the token after << in C++ code", None),
    ("words about family, scores of matches and type annotations", None),
])
def test_leaked_instructions(text, leaked):
    from ns_dspy.agents.formatting import leaked_instructions

    assert leaked_instructions(text) == leaked


@pytest.mark.parametrize("text, kept", [
    ("The explanation now focuses more specifically on the context of the `.PY` extension in file names.",
     "The context of the `.PY` extension in file names."),
    ("A better explanation would be: the word 'def' at the start of Python lines.",
     "The word 'def' at the start of Python lines."),
    ("The word 'def' at line starts. This explanation is more specific than the previous one.",
     "The word 'def' at line starts."),
    ("The explanation is that the neuron fires on commas after names.", "The neuron fires on commas after names."),
    ("Fires on cats.", "Fires on cats."),
    ("the word 'explanation' in prose", "the word 'explanation' in prose"),
    ("The explanation should be improved.", "The explanation should be improved."),  # all task talk: refused later
])
def test_drop_task_talk_keeps_the_description_inside_talk_about_the_task(text, kept):
    from ns_dspy.agents.formatting import drop_task_talk, leaked_instructions

    assert drop_task_talk(text) == kept
    assert (leaked_instructions(kept) is None) == (kept != "The explanation should be improved.")


# an answer seen in a run of the 1.5B offline LM: the refinement prompt's own words, nothing about the neuron
ECHO = ("When using a language model, it is essential to understand which tokens activate and in what context. "
        "The word 'def' at line starts. The neurons in the language model also predict activation where there is none.")


def test_copied_instructions_finds_five_words_of_the_prompt_outside_quotes():
    from ns_dspy.agents.formatting import COPIED_WORDS, copied_instructions
    from ns_dspy.agents.signatures import Refine

    instructions = Refine.instructions
    assert COPIED_WORDS == 5
    assert copied_instructions(ECHO, instructions) == "which tokens activate and in"
    assert copied_instructions("it would predict activation where there is none", instructions) == \
        "would predict activation where there"  # the first five shared words
    assert copied_instructions('the words "predict activation where there is none"', instructions) is None  # quoted
    assert copied_instructions("which tokens activate and", instructions) is None  # four words only
    assert copied_instructions("the neuron's activation on commas after names", instructions) is None
    assert copied_instructions(ECHO, "") is None  # no instructions given: nothing to copy from


def test_sentences_copied_from_the_instructions_are_task_talk():
    from ns_dspy.agents.formatting import drop_task_talk, leaked_instructions
    from ns_dspy.agents.signatures import Refine

    assert drop_task_talk(ECHO, Refine.instructions) == "The word 'def' at line starts."
    assert drop_task_talk(ECHO) == ECHO  # without the instructions only the old rules apply: nothing dropped
    all_echo = "Drop parts that would predict activation where there is none."
    assert drop_task_talk(all_echo, Refine.instructions) == all_echo  # all of it: refused by the next check
    assert leaked_instructions(all_echo, Refine.instructions) == "drop parts that would predict"
