"""A toy world for sweeps, small enough that a trial takes a fraction of a second and clear enough that the
settings being swept change the score for known reasons.

Store: units 0:0 (fires on ' dog' 5 and ' cat' 3), 0:1 (' red' 5, ' big' 3), 0:2 (' mat' 4) and 0:3 (never
fires: skipped by the sweep). Explainer (a local OpenAI-compatible chat server, so worker processes reach it
too, with 7 prompt + 3 completion tokens per call): the hypothesis names the marked words - plus the noise
word "and" when the LM's temperature is above 1 (a hot LM rambles) -, the decomposition gives two conditions
per word, refinement proposes the best explanation so far. Embedder: one axis per word, so the conditions of
one word coincide and HDBSCAN's ``min_cluster_size`` decides whether each word is a mode of its own (2) or
everything collapses into one mode (3 or more) - which the keyword simulator scores lower.

Importing this module registers the embedder kind ``sweep-words``.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for fake_chat and trigger_words (also in worker processes)

from fake_chat import FakeChatServer  # noqa: E402
from trigger_words import prompt_field, trigger_store, word_rows  # noqa: E402

from ns_dspy.agents import Embedder  # noqa: E402
from ns_dspy.exemplars import ExemplarStore  # noqa: E402
from ns_dspy.lms.scripted import chat_answer  # noqa: E402

WORDS = ["The", " dog", " cat", " ran", " sat", " on", " mat", " and", " a", " red", " big", " today"]
TRIGGERS = [{" dog": 5.0, " cat": 3.0}, {" red": 5.0, " big": 3.0}, {" mat": 4.0}, {}]
NOISE = "and"
UNITS = "0:0,0:1,0:2"


class SweepWordEmbedder(Embedder):
    """One axis per toy word, plus a small shared one; counts the texts it embedded."""

    kind = "sweep-words"
    name = "sweep-words"
    embedded = 0

    @classmethod
    def from_spec(cls, arg, **options):
        return cls()

    def embed(self, texts):
        SweepWordEmbedder.embedded += len(texts)
        return word_rows(texts, WORDS)


def make_store(path: Path) -> ExemplarStore:
    return trigger_store(path, WORDS, TRIGGERS)


def answer(body: dict) -> str:
    """The toy explainer's answer to one chat request (see the module docstring)."""
    last = (body.get("messages") or [{}])[-1].get("content") or ""
    asked = [f for f in re.findall(r"`\[\[ ## (\w+) ## \]\]`", last.split("Respond with")[-1]) if f != "completed"]
    hot = float(body.get("temperature") or 0.0) > 1.0
    if "[[ ## history ## ]]" in last:
        best = prompt_field(last, "history").strip().splitlines()[0]
        best = re.sub(r"^\W*\d*\W*(score[^:]*:)?\s*", "", best).split(" (score")[0]
        return chat_answer(explanation=best)
    if asked == ["conditions"]:
        words = re.findall(r"\w+", prompt_field(last, "explanation").split(":")[-1])
        conditions = [c for w in dict.fromkeys(words) for c in (f"This neuron fires for {w}",
                                                                 f"This neuron fires when {w} appears")]
        return chat_answer(conditions=conditions)
    if "[[ ## exemplars ## ]]" in last and asked == ["explanation"]:
        marked = dict.fromkeys(m.strip().lower() for m in re.findall(r"<<(.*?)>>", prompt_field(last, "exemplars")))
        return chat_answer(explanation="fires for: " + " ".join(marked) + (f" {NOISE}" if hot else ""))
    return chat_answer(**{name: "ok" for name in asked}) if asked else "ok"


class ToyServer(FakeChatServer):
    """The toy explainer behind a local chat server; ``delay`` seconds per answer make trials last. With
    ``clients=N`` no request is answered before requests with N different API keys arrived (60 s at most), so
    N worker processes, each given its own ``OPENAI_API_KEY``, are all inside a trial before any trial ends."""

    def __init__(self, delay: float = 0.0, clients: int = 0):
        deadline = []  # set by the first request: the gate stays shut 60 s at most, in all

        def slow(body):
            deadline.append(time.monotonic() + 60)
            while len(set(self.auth)) < clients and time.monotonic() < deadline[0]:
                time.sleep(0.02)
            if delay:
                time.sleep(delay)
            return answer(body)

        super().__init__(slow, model="toy", usage=(7, 3))

    @property
    def lm(self) -> str:
        return f"endpoint:{self.url}@toy"
