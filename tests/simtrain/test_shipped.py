"""The shipped default simulator (gemma-3-270m + its trained adapter) reads explanations.

Hand-labelled exemplars of three concepts from three families: the correct explanation must score well and
another concept's explanation must not. Runs the real base model (slow marker, ~20 s on 2 cores).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from ns_dspy.models.subject import load_subject
from ns_dspy.scoring.correlation import pooled
from ns_dspy.simulators import DEFAULT_SIMULATOR, build_simulator
from ns_dspy.simulators.finetuned_adapter import shipped_adapters
from ns_dspy.types import Exemplar

pytestmark = pytest.mark.slow

TEXTS = [
    "The farmer kept a dog, two horses and a cat. One morning the dog chased the cat into the barn, "
    "where the horses were eating hay.",
    "She walked to the market, bought some bread and returned home before the rain started.",
    "def parse(line):\n    parts = line.split(',')\n    return [p.strip() for p in parts]\n\n"
    "def total(values):\n    return sum(values)\n",
    "Wolves and bears live in the forest, but the birds and the fish stay near the lake all summer.",
    "They opened the door, looked around and laughed when the old clock fell off the wall.",
    "class Reader:\n    def read(self, path):\n        with open(path) as f:\n            return f.read()\n",
]
CONCEPTS = {
    "Names of animals.": lambda tok, nxt: tok.strip().lower().rstrip("s") in
    {"dog", "horse", "cat", "wolve", "wolf", "bear", "bird", "fish"},
    "Past-tense verbs.": lambda tok, nxt: tok.strip() in {"kept", "chased", "were", "walked", "bought", "returned",
                                                          "started", "opened", "looked", "laughed", "fell"},
    "The keyword def in Python code.": lambda tok, nxt: tok.strip() == "def",
}


def _exemplars(subject, rule):
    out = []
    for text in TEXTS:
        ids = subject.encode(text)
        tokens = subject.token_strings(ids)
        # a word's value goes on its last token (the next token starts a new word)
        acts = [10.0 if rule(tok, nxt) and not re.match(r"^[a-z]", nxt) else 0.0
                for tok, nxt in zip(tokens, tokens[1:] + [" "])]
        out.append(Exemplar(tokens=tokens, activations=np.asarray(acts, np.float32), token_ids=ids))
    return out


def test_default_simulator_is_the_shipped_trained_one():
    assert "gemma-3-270m" in shipped_adapters()
    assert DEFAULT_SIMULATOR == "finetuned:gemma-3-270m"


def test_shipped_simulator_reads_explanations():
    subject = load_subject("gemma-3-270m")
    simulator = build_simulator(DEFAULT_SIMULATOR)
    names = list(CONCEPTS)
    correct, shuffled = [], []
    for k, name in enumerate(names):
        exemplars = _exemplars(subject, CONCEPTS[name])
        assert sum(float(e.activations.sum()) for e in exemplars) > 0
        other = names[(k + 1) % len(names)]
        preds = simulator.simulate([name, other], exemplars)
        trues = [e.activations for e in exemplars]
        correct.append(pooled(preds[0], trues).r)
        shuffled.append(pooled(preds[1], trues).r)
    assert min(correct) > 0.4, correct
    assert np.mean(correct) > np.mean(shuffled) + 0.4, (correct, shuffled)
