"""A scripted LM for tests and dry runs: a real ``dspy.LM`` whose engine answers from a script.

It plays the role DSPy's ``DummyLM`` plays, but answers through DSPy's engine interface (so adapters,
parsing, history and usage work as with a real model) and records every prompt it was sent.
"""

from __future__ import annotations

import json

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage, response_to_events

__all__ = ["ScriptedEngine", "agent_of", "chat_answer", "scripted_lm"]


def agent_of(prompt: str) -> str:
    """Which of NeuronScope's LM agents sent ``prompt``: ``"refinement"`` (its inputs hold a history),
    ``"concept"`` (its output is a concept, ``ExplainConfig.concepts``), ``"decomposition"`` (its outputs are
    conditions) or ``"hypothesis"`` (any other), for scripts that answer
    each agent differently."""
    if "[[ ## history ## ]]" in prompt:
        return "refinement"
    if "[[ ## concept ## ]]" in prompt.split("Your output fields are")[-1]:
        return "concept"
    if "[[ ## conditions ## ]]" in prompt.split("Your output fields are")[-1]:
        return "decomposition"
    return "hypothesis"


def chat_answer(**fields) -> str:
    """An answer in ChatAdapter's format; lists and dicts are written as JSON."""
    parts = [f"[[ ## {name} ## ]]\n{value if isinstance(value, str) else json.dumps(value)}"
             for name, value in fields.items()]
    return "\n\n".join(parts + ["[[ ## completed ## ]]"])


class ScriptedEngine:
    """A DSPy engine answering from a script.

    Each script item is a raw answer string, a dict of output fields (formatted as ChatAdapter answers),
    an exception to raise, or a callable ``(prompt_text, request) -> item``. When the script runs out,
    ``default`` answers.
    """

    def __init__(self, script, default="I am not sure."):
        self.script, self.default = list(script), default
        self.prompts: list[str] = []
        self.requests = []

    def complete(self, request):
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system or ())
        prompt = system + "\n" + "\n".join(m.text or "" for m in request.messages)
        self.prompts.append(prompt)
        self.requests.append(request)
        item = self.script.pop(0) if self.script else self.default
        if callable(item) and not isinstance(item, type):
            item = item(prompt, request)
        if isinstance(item, BaseException):
            raise item
        text = chat_answer(**item) if isinstance(item, dict) else str(item)
        return Response(id=None, model="scripted", message=Message.assistant([TextPart(text)]), finish_reason="stop",
                        usage=Usage(input_tokens=0, output_tokens=0, total_tokens=0))

    def stream(self, request):
        return response_to_events(self.complete(request))

    def close(self):
        pass


def scripted_lm(script=(), default="I am not sure.") -> tuple[dspy.LM, ScriptedEngine]:
    """``(lm, engine)``: a real ``dspy.LM`` over a :class:`ScriptedEngine` (no cache)."""
    engine = ScriptedEngine(script, default)
    return dspy.LM("local/scripted", engine=engine, cache=False), engine
