"""A toy world for compiling NeuronScope: a store of seven units with known trigger words, a scripted LM that
explains better when shown demos or told to, an exact word embedder, and a fake OpenAI chat server that
answers with the same script (for the CLI, through ``--lm endpoint:URL@toy``)."""

from __future__ import annotations

import dataclasses
import json
import re
from types import SimpleNamespace

import dspy
from fake_chat import FakeChatServer
from trigger_words import prompt_field, trigger_store, word_rows
from dspy.lm15 import Usage

from ns_dspy.agents import ClusterConfig, Embedder
from ns_dspy.lms.scripted import ScriptedEngine, chat_answer
from ns_dspy.program import ExplainConfig, NeuronScope
from ns_dspy.simulators import KeywordSimulator

WORDS = ["The", " dog", " ran", " and", " a", " cat", " sat", " on", " mat", " today", " big", " red"]
TRIGGERS = [{" dog": 5.0, " cat": 3.0}, {" mat": 4.0}, {" ran": 5.0, " sat": 2.0}, {" today": 4.0},
            {" big": 3.0, " red": 5.0}, {" a": 4.0}, {}]  # units 0:0 .. 0:6; 0:6 never fires
NOISE = "the and"  # what the scripted LM adds when it has no demo to follow: both words occur, neither fires


class WordEmbedder(Embedder):
    """One axis per toy word (and one shared): exact, so conditions about one word cluster together."""

    kind = "toy-words"
    name = "toy-words"

    @classmethod
    def from_spec(cls, arg, **options):
        return cls()

    def embed(self, texts):
        return word_rows(texts, WORDS)


def toy_store(tmp_path):
    return trigger_store(tmp_path / "store", WORDS, TRIGGERS)


def responder(prompt, request):
    """The toy explainer. Hypothesis: the marked words, plus NOISE unless demos are in the prompt or the
    instruction says "trigger words only" (what the optimizers' prompts are answered with), so a compiled
    program explains better. Decomposition: one condition per marked word (each its own mode), each with the
    NOISE words when the hypothesis has them, so every mode predicts false alarms. Refinement:
    the best explanation so far, unchanged. Anything else (an optimizer's own prompts): every field asked for.
    No word of the fixed phrasing is a toy word, so the keyword simulator reads only the words named."""
    last = request.messages[-1].text or ""
    asked = [f for f in re.findall(r"`\[\[ ## (\w+) ## \]\]`", last.split("Respond with")[-1]) if f != "completed"]
    if "[[ ## history ## ]]" in last:
        best = prompt_field(last, "history").strip().splitlines()[0]
        return {"explanation": re.sub(r"^\W*\d*\W*(score[^:]*:)?\s*", "", best).split(" (score")[0]}
    if asked == ["conditions"]:
        words = list(dict.fromkeys(re.findall(r"\w+", prompt_field(last, "explanation").split(":")[-1])))
        noise = [w for w in words if w in NOISE.split()]
        # NOISE sticks to every condition (a mode of its own would be calibrated away by the neuron-level score)
        triggers = [w for w in words if w not in noise] or noise
        return {"conditions": [f"This neuron fires for {' '.join(dict.fromkeys([w, *noise]))}" for w in triggers]}
    if "[[ ## exemplars ## ]]" in last and asked == ["explanation"]:
        marked = dict.fromkeys(m.strip().lower() for m in re.findall(r"<<(.*?)>>", prompt_field(last, "exemplars")))
        taught = len(request.messages) > 1 or "trigger words only" in prompt  # shown demos, or told what to do
        return {"explanation": "fires for: " + " ".join(marked) + ("" if taught else " " + NOISE)}
    if "Respond with a JSON object" in last:  # e.g. GEPA's reflection, through DSPy's JSONAdapter
        asked = re.findall(r"`(\w+)`", last.split("Respond with a JSON object")[-1])
        return json.dumps({name: f"Name the neuron's trigger words only ({name})." for name in asked})
    return {name: f"Name the neuron's trigger words only ({name})." for name in asked} or "ok"


class CountingEngine(ScriptedEngine):
    """The scripted engine reporting 7 prompt + 3 completion tokens per call, so token accounting shows."""

    def complete(self, request):
        return dataclasses.replace(super().complete(request),
                                   usage=Usage(input_tokens=7, output_tokens=3, total_tokens=10))


def toy_lm(cache=True):
    engine = CountingEngine([], default=responder)
    return dspy.LM("local/toy-scripted", engine=engine, cache=cache), engine


def toy_program(**kw):
    kw = {"candidates": 1, "iterations": 1, "max_exemplars": 6, "cluster": ClusterConfig(noise="singleton"), **kw}
    cfg = ExplainConfig(**kw)
    return NeuronScope(KeywordSimulator(), WordEmbedder(), cfg)


def _toy_answer(body: dict) -> str:
    """Answer a chat request the way :func:`responder` answers the scripted LM."""
    messages = body.get("messages", [])
    system = "".join(m["content"] for m in messages if m["role"] == "system")
    rest = [SimpleNamespace(text=m["content"]) for m in messages if m["role"] != "system"]
    answer = responder(system + "\n" + "\n".join(m.text for m in rest), SimpleNamespace(messages=rest))
    return chat_answer(**answer) if isinstance(answer, dict) else str(answer)


def ToyChatServer() -> FakeChatServer:
    """A local chat server answered by :func:`responder` (7 prompt + 3 completion tokens per call)."""
    return FakeChatServer(_toy_answer, model="toy", usage=(7, 3))
