"""A toy world for fault tests (issue 18): an explainer LM behind a fake OpenAI-compatible server that fails a
seeded share of its calls in every way a real endpoint does, a store of trigger-word neurons and an exact word
embedder (registered as ``--embedder fault-words``).

:class:`FaultyExplainer` is the server's ``answer``: it gives each agent (hypothesis, decomposition, refinement)
a valid answer in the format the request asks for (DSPy's chat format, or JSON for the JSON-adapter fallback),
after ``latency_s``, except that a share ``rate`` of calls fail, spread evenly over :data:`FAULTS`:

``http_500``  an internal server error;
``http_429``  a rate limit, with ``Retry-After: 1``;
``drop``      the connection closed without an answer;
``hang``      nothing sent for ``hang_s`` seconds (longer than the LM timeout under test), then closed;
``garbage``   a 200 answer no adapter can parse.

Whether a call fails, and how, is drawn from a RNG seeded with ``seed``, the request's content and how often
that same request was seen before: the same run meets the same faults whatever the thread timing, and a
retried request (same content) draws again.

Also used by ``benchmarks/faults.py``; the module registers its embedder when imported, so a child process
running ``ns-dspy explain`` imports it first.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import threading
import time
from collections import Counter
from pathlib import Path

from fake_chat import DROP, Hang
from trigger_words import trigger_store, word_rows

from ns_dspy.agents import Embedder
from ns_dspy.lms.scripted import agent_of, chat_answer

__all__ = ["FAULTS", "GARBAGE", "WORDS", "FaultyExplainer", "FaultWords", "answer_fields", "fault_store",
           "explain_argv", "run_cli"]

FAULTS = ("http_500", "http_429", "drop", "hang", "garbage")
GARBAGE = "Sorry, I cannot help with that."
WORDS = ["The", " dog", " ran", " and", " a", " cat", " sat", " on", " mat", " today"]
_PAIRS = random.Random(0).sample(list(itertools.combinations(range(1, len(WORDS)), 2)), 36)


class FaultWords(Embedder):
    """One axis per word of :data:`WORDS` (exact, instant): ``--embedder fault-words``."""

    kind = "fault-words"
    name = "fault-words"

    @classmethod
    def from_spec(cls, arg, **options):
        return cls()

    def embed(self, texts):
        return word_rows(texts, WORDS)


def fault_store(path: Path, n_units: int):
    """Layer 0: units 0:0 .. 0:n-1 (n <= 36), each firing on its own pair of words (5 and 3), and a dead unit."""
    if n_units > len(_PAIRS):
        raise ValueError(f"at most {len(_PAIRS)} units")
    triggers = [{WORDS[a]: 5.0, WORDS[b]: 3.0} for a, b in _PAIRS[:n_units]] + [{}]
    return trigger_store(path, WORDS, triggers, n=24)


def explain_argv(store, run, url: str, units: int, *extra: str) -> list[str]:
    """``ns-dspy explain`` of units 0:0 .. 0:units-1 against the server at ``url``."""
    return ["explain", "--store", str(store), "--neurons", ",".join(f"0:{u}" for u in range(units)),
            "--lm", f"endpoint:{url}@fake", "--simulator", "keyword", "--embedder", "fault-words",
            "--candidates", "1", "--iterations", "1", "--max-exemplars", "5", "--run", str(run), "-q", *extra]


def _prompt(body: dict) -> str:
    return "\n".join(str(m.get("content")) for m in body.get("messages", []))


def _field(text: str, name: str) -> str:
    return text.split(f"[[ ## {name} ## ]]")[-1].split("[[ ##")[0]


def _marked(prompt: str) -> list[str]:
    """The words marked ``<<like this>>`` in the prompt's exemplars, most frequent first."""
    words = Counter(w for run in re.findall(r"<<(.*?)>>", _field(prompt, "exemplars")) for w in run.split())
    return [w for w, _ in words.most_common()] or ["the"]


def answer_fields(prompt: str) -> dict:
    """A valid answer of the agent that sent ``prompt``: it names the words the exemplars mark."""
    which = agent_of(prompt)
    if which == "hypothesis":
        return {"explanation": "the words " + " and ".join(_marked(prompt)[:2])}
    if which == "decomposition":
        words = re.findall(r"\w+", _field(prompt, "explanation").split("the words")[-1])
        return {"conditions": [f"This neuron activates on the word {w}" for w in words if w != "and"][:3]}
    return {"explanation": f"the word {_marked(prompt)[0]}"}


class FaultyExplainer:
    """The answer function of a :class:`~fake_chat.FakeChatServer` (see the module docstring).

    ``injected`` counts the faults sent, by kind; ``answered`` the valid answers."""

    def __init__(self, *, rate: float = 0.3, seed: int = 0, latency_s: float = 0.0, hang_s: float = 3.0,
                 faults: tuple[str, ...] = FAULTS):
        self.rate, self.seed, self.latency_s, self.hang_s, self.faults = rate, seed, latency_s, hang_s, faults
        self.injected: Counter = Counter()
        self.answered = 0
        self._seen: Counter = Counter()
        self._lock = threading.Lock()

    def draw(self, body: dict) -> str | None:
        """The fault this request gets (None: a valid answer): a function of the request without its sampling
        seed (which endpoint LMs send with every request) and of how often it was sent before."""
        request = {k: v for k, v in body.items() if k != "seed"}
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        with self._lock:
            n = self._seen[digest]
            self._seen[digest] += 1
        rng = random.Random(f"{self.seed}|{digest}|{n}")
        return rng.choice(self.faults) if rng.random() < self.rate else None

    def __call__(self, body: dict):
        fault = self.draw(body)
        if fault is not None:
            with self._lock:
                self.injected[fault] += 1
        if fault == "http_500":
            return 500, {"error": {"message": "injected internal error", "type": "server_error"}}
        if fault == "http_429":
            return 429, {"error": {"message": "injected rate limit", "type": "rate_limit"}}, {"Retry-After": "1"}
        if fault == "drop":
            return DROP
        if fault == "hang":
            return Hang(self.hang_s)
        time.sleep(self.latency_s)
        if fault == "garbage":
            return GARBAGE
        with self._lock:
            self.answered += 1
        fields = answer_fields(_prompt(body))
        return json.dumps(fields) if body.get("response_format") else chat_answer(**fields)


def run_cli(argv: list[str], env: dict[str, str]) -> None:
    """A child process's entry (``multiprocessing``): ``ns-dspy ARGV`` with ``env`` set and DSPy's disk cache in
    ``env["DSPY_CACHEDIR"]`` (opened here, in the child: never a connection inherited from the parent)."""
    import os

    import dspy

    from ns_dspy.cli import main

    os.environ.update(env)
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=env["DSPY_CACHEDIR"])
    raise SystemExit(main(argv))
