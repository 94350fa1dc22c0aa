"""A toy world for the report tests: NeuronScope run end to end with a scripted LM, the keyword simulator
and an exact word embedder, over a toy store whose corpus and LM answers carry markup that must stay text."""

from __future__ import annotations

import re

import numpy as np

from ns_dspy.agents import ClusterConfig, Embedder
from ns_dspy.exemplars import ExemplarStore, LayerData, write_store
from ns_dspy.lms.scripted import agent_of, scripted_lm
from ns_dspy.program import ExplainConfig, NeuronScope
from ns_dspy.runs import RunStore
from ns_dspy.runs.runner import explain_units
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.types import UnitId

SCRIPT_LINE = "<script>document.title='PWNED'</script>"
"""A corpus token that would run if the report did not escape it."""
ATTR_BREAK = "\" onmouseover=\"document.title='PWNED2'\" x=\""
"""A corpus token that would break out of an attribute (tooltips carry tokens)."""
LM_INJECTION = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
"""What a hostile or confused LM writes into an explanation."""

WORDS = ["The", " dog", " ran", " and", " a", " cat", " sat", " on", " mat", " today", SCRIPT_LINE, ATTR_BREAK]


class MarkupWordEmbedder(Embedder):
    """dog / cat / other axes: exact, so the dog and cat conditions form two modes."""

    kind = "report-test-words"
    name = "report-test-words"

    @classmethod
    def from_spec(cls, arg, **options):
        return cls()

    def embed(self, texts):
        rows = np.array([[("dog" in t) * 1.0, ("cat" in t) * 1.0, 0.1] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def toy_store(path):
    """Unit 0:1 fires on ' dog' (5), ' cat' (3) and the script token (1); 0:2 never fires (fails)."""
    rng = np.random.default_rng(0)
    windows = np.array([rng.permutation(len(WORDS))[:6] for _ in range(30)])
    windows[0, 2], windows[3, 4] = WORDS.index(SCRIPT_LINE), WORDS.index(ATTR_BREAK)
    split = np.array([0, 1, 2] * 10)
    acts = np.zeros((2, 30, 6), dtype=np.float32)
    for w in range(30):
        for t, s in enumerate(windows[w]):
            acts[0, w, t] = {" dog": 5.0, " cat": 3.0, SCRIPT_LINE: 1.0}.get(WORDS[s], 0.0)
    strongest = max(range(0, 30, 3), key=lambda w: (acts[0, w].max(), -w))  # first train exemplar shown
    acts[0, strongest, int(np.flatnonzero(acts[0, strongest] == 0)[0])] = -1.5  # drawn in blue
    acts[1] = -0.5
    slots = {}
    for s, name in enumerate(["train", "valid", "test"]):
        rows = np.flatnonzero(split == s)
        top = rows[np.argsort(-acts[0, rows].max(1), kind="stable")]
        slots[(name, "top")] = (np.broadcast_to(top[:6], (2, 6)).copy(), acts[:, top[:6]])
        slots[(name, "random")] = (np.broadcast_to(top[6:], (2, 4)).copy(), acts[:, top[6:]])
    layer = LayerData(units=np.array([1, 2]), slots=slots,
                      stats={"max": acts.max((1, 2)), "mean": acts.mean((1, 2)), "frequency": (acts > 0).mean((1, 2))})
    return ExemplarStore.open(write_store(path, manifest={"model": {"name": "toy"}}, strings=WORDS, windows=windows,
                                          window_split=split, layers={0: layer}))


_calls: list[str] = []


def responder(prompt, request):
    if agent_of(prompt) == "refinement":  # sharpen the mode's explanation
        history = prompt.split("[[ ## history ## ]]")[-1].split("[[ ##")[0]
        word = "dog" if "dog" in history else "cat"
        _calls.append(word)  # every other proposal carries markup too
        return {"explanation": f"the word {word}" + (" " + LM_INJECTION if len(_calls) % 2 else "")}
    if agent_of(prompt) == "decomposition":
        return {"conditions": ["This neuron activates on dogs and puppies", "This neuron activates when dog appears",
                               "This neuron activates on cats " + LM_INJECTION,
                               "This neuron activates when a cat sits"]}
    marked = re.findall(r"<<(.*?)>>", prompt)
    return {"explanation": f"dogs, cats and {SCRIPT_LINE} ({len(marked)} marks) </textarea>{LM_INJECTION}"}


def explain(store, path, **config):
    lm, _ = scripted_lm([responder] * 200)
    cfg = ExplainConfig(candidates=2, iterations=3, max_exemplars=5, cluster=ClusterConfig(), **config)
    program = NeuronScope(KeywordSimulator(), MarkupWordEmbedder(), cfg)
    run_config = {"explain": cfg.to_dict(), "lm": "scripted", "temperature": 0.7, "simulator": "keyword",
                  "embedder": MarkupWordEmbedder.kind, "store": str(store.path), "note": SCRIPT_LINE}
    run = RunStore(path, run_config)
    explain_units(program, store, [UnitId(0, 1), UnitId(0, 2)], run, lm, progress=False)
    run.close()
    return path
