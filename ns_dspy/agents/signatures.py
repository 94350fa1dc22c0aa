"""The agents' prompts, one DSPy Signature each; the class docstring is the instruction the LM reads.

Written for this project after the roles in NeuronScope (Liu et al.), Section 2 and Appendix F: a
recall-oriented hypothesis, a split into atomic conditions, and a refinement step that reads a scored
history. Optimizers (``ns_dspy.optimize``) may rewrite these instructions; the field names are the contract.
"""

from __future__ import annotations

import dspy

__all__ = ["Hypothesize", "Decompose", "Refine", "NameConcept"]


class Hypothesize(dspy.Signature):
    """You are studying one neuron inside a language model. You are given text excerpts, one per line, on
    which the neuron activates. Tokens where it activates strongly are wrapped in << and >>; a run of consecutive
    activating tokens shares one pair. Newlines inside an excerpt are written as \\n. An excerpt with no
    marked tokens is one where the neuron stays quiet. The << >> marks and the activation values are
    annotations added for you: they are not part of the text the neuron reads, so never mention them.

    Describe what in the text makes the neuron fire: what the marked tokens have in common ACROSS the
    excerpts, not what each excerpt is about. The neuron reads text left to right, token by token, so its
    activation on a token can depend only on that token and the tokens before it, never on later ones.

    Aim for recall, not a tidy summary: this description will later be split into separate conditions and
    tested one by one, so keep EVERY plausible cue rather than choosing one. Neurons often respond to
    several unrelated things; name each cue once - particular words or word pieces, punctuation or
    symbols, grammatical roles, topics, formats such as code or lists, positions such as the start of a
    line - and say which marked tokens it covers and in what preceding context. Be concrete: quote the
    marked tokens themselves.

    Token statistics computed from the same excerpts come with them: the tokens that carry the most
    activation, the tokens just before the peaks and frequent tokens on which the neuron stays quiet. Use them
    to find what is common across excerpts; the numbers are annotations for you, never part of the answer."""

    exemplars: str = dspy.InputField(desc="numbered excerpts, activating tokens wrapped in << >>")
    statistics: str = dspy.InputField(desc="token statistics of the same excerpts")
    explanation: str = dspy.OutputField(desc="a description that names every plausible cue for the activations")


class Decompose(dspy.Signature):
    """Split a description of when a language-model neuron activates into its independent activation
    conditions.

    Each condition must be atomic (exactly one cue or context) and falsifiable (one could check it on a
    given piece of text). Write each as a complete standalone sentence that starts with "This neuron
    activates when ...". Keep the meaning and the concrete details (quoted tokens, contexts) of the
    original: split and normalise, do not summarise, generalise or add new ideas. Merge nothing that the
    description keeps apart, and do not repeat a condition. Leave out remarks about annotation marks such as
    << >> or activation scores: they are not conditions. If there is only one meaning, return only one
    condition.

    Give the conditions as a JSON array of strings."""

    explanation: str = dspy.InputField(desc="a description of when the neuron activates")
    conditions: list[str] = dspy.OutputField(
        desc='JSON array of sentences, each starting "This neuron activates when"')


class Refine(dspy.Signature):
    """You are improving a natural-language explanation of when one language-model neuron activates. Each
    explanation was scored by a simulator that reads it and predicts the neuron's activation on every token
    of held-out text; the score is the correlation of those predictions with the real activations (higher
    is better, 1 is perfect).

    The history lists earlier explanations with their scores, best first. Treat it as an optimisation
    trajectory: see what the better explanations have that the worse ones lack, then write a new
    explanation by making a meaningful improvement to the best one - make it more specific about which
    tokens activate and in which context, drop parts that would predict activation where there is none,
    or add a cue it misses. Under the best explanations the history may name the tokens each one missed (the
    neuron fired, the explanation predicted nothing; the token is in [[ ]] after a few tokens of context) and its
    false alarms (predicted activity where the neuron stayed quiet): add a missed cue, drop or narrow a cue that
    causes false alarms. Excerpts, when given, show activating tokens wrapped in << >>; token statistics of the
    training excerpts show which tokens carry the activation.

    Return only the new explanation text: one or two sentences, no preamble, no score, no commentary."""

    # the neuron's evidence first, the history last: every refinement call of a neuron (all its modes and
    # iterations) then starts with the same tokens, which the local LM evaluates once and reuses (a prefix cache)
    exemplars: str = dspy.InputField(desc="excerpts with activating tokens marked, or a note that none are given")
    statistics: str = dspy.InputField(desc="token statistics of the training excerpts, or a note that none are given")
    history: str = dspy.InputField(desc="earlier explanations with their scores, best first, some with their errors")
    explanation: str = dspy.OutputField(desc="the new explanation, nothing else")


class NameConcept(dspy.Signature):
    """You are given the words on which one neuron of a language model is most active, strongest first; a word is
    shown with the word before it where that is nearly always the same. Say what most of them have in common - a
    topic, a kind of word or a job they do in a sentence or in code - as a short category name of 2 to 6 words.
    If they share nothing, name what the first few share.

    Return only the category name: no sentence, no quotes, no list of the words, no commentary."""

    words: str = dspy.InputField(desc="the words, strongest first, comma-separated")
    concept: str = dspy.OutputField(desc="a short category name, 2 to 6 words")
