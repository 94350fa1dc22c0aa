"""A scripted explainer that reads the marks in its prompt, a deterministic bag-of-words embedder, and toy units
with the command-line refusals shared by the trials on ``simulator_training``'s units."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
from simulator_training.data import write_units

from ns_dspy.agents import Embedder
from ns_dspy.lms.scripted import agent_of


class BagOfWordsEmbedder(Embedder):
    """Words hashed (crc32) into 32 dimensions: deterministic across processes, similar texts are close."""

    kind = "experiments-test-bow"
    name = "experiments-test-bow"

    @classmethod
    def from_spec(cls, arg, **options):
        return cls()

    def embed(self, texts):
        rows = np.full((len(texts), 33), 0.05, dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                if word not in {"this", "neuron", "activates", "on", "the", "word", "tokens"}:
                    rows[i, zlib.crc32(word.encode()) % 32] += 1.0
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _field(prompt: str, name: str) -> str:
    return prompt.split(f"[[ ## {name} ## ]]")[-1].split("[[ ##")[0].strip()


class MarkReader:
    """A scripted explainer: the hypothesis names the words marked << >> in the excerpts, the decomposition
    makes two conditions per word (a mode each, for the embedder below), and each refinement proposal keeps
    one word of the best explanation so far (a different one per call). Deterministic, so two runs over the
    same neurons get the same answers."""

    def __init__(self):
        self.calls = 0

    def __call__(self, prompt: str, request):
        self.calls += 1
        if agent_of(prompt) == "refinement":
            best = _field(prompt, "history").splitlines()[0] if _field(prompt, "history") else ""
            words = re.findall(r"'([^']+)'", best) or re.findall(r"\w+", best)[-2:] or ["x"]
            return {"explanation": f"the word '{words[self.calls % len(words)]}'"}
        if agent_of(prompt) == "decomposition":
            words = re.findall(r"'([^']+)'", _field(prompt, "explanation")) or ["x"]
            return {"conditions": [c for w in words for c in (f"This neuron activates on the word '{w}'",
                                                              f"This neuron activates on '{w}' tokens")]}
        marked = [m.strip() for m in re.findall(r"<<(.*?)>>", prompt) if m.strip()]
        top = [w for w, _ in sorted(((w, marked.count(w)) for w in set(marked)), key=lambda t: (-t[1], t[0]))][:3]
        return {"explanation": "tokens " + ", ".join(f"'{w}'" for w in top or ["x"])}


def category_unit(name: str, members: list[str], explanations: list[str]) -> dict:
    """A synthetic ``wordnet`` unit of ``simulator_training``'s shape: four exemplars, ``members`` active at 10."""
    texts = [[" the", " rock", " sat", " by", " a", " stone", " wall"],
             [" a", " big", " stone", " fell", " on", " the", " rock"],
             [" no", " match", " here", " at", " all", " in", " it"],
             [" the", " wall", " by", " the", " road", " was", " old"]]
    exemplars = [{"tokens": t, "token_ids": list(range(len(t))), "kind": "top" if k < 2 else "random",
                  "targets": [10.0 if tok.strip() in members else 0.0 for tok in t]} for k, t in enumerate(texts)]
    return {"unit": name, "family": "wordnet", "explanations": explanations, "exemplars": exemplars}


CATEGORY_UNITS = [category_unit("wordnet:natural_object", ["rock", "stone"], ["words for kinds of natural object"]),
                  category_unit("wordnet:structure", ["wall", "road"], ["words for kinds of structure"])]
"""Two such units: natural objects (rock, stone) and structures (wall, road)."""


def check_unit_cli_refusals(main, tmp_path) -> Path:
    """The refusals shared by the experiments that read a ``build-data`` folder into ``--out OUT.json``: no data,
    a family the data lacks, an ``--out`` not ending in .json, a results file made with other settings; each one
    line before anything is written. Returns the data folder (``CATEGORY_UNITS`` as its valid split)."""
    with pytest.raises(SystemExit, match="no valid.jsonl"):
        main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "o.json")])
    data = tmp_path / "d"
    write_units(data, {"train": CATEGORY_UNITS[:1], "valid": CATEGORY_UNITS}, {"source": "test"}, overwrite=False)
    with pytest.raises(SystemExit, match="no unit of the families code"):
        main(["--data", str(data), "--out", str(tmp_path / "o.json"), "--families", "code"])
    with pytest.raises(SystemExit, match="must end in .json"):
        main(["--data", str(data), "--out", str(tmp_path / "o.md")])
    assert not (tmp_path / "o.json").exists()
    (tmp_path / "o.json").write_text(json.dumps({"settings": {"data": "elsewhere"}, "rows": []}))
    with pytest.raises(SystemExit, match="was made with other settings"):
        main(["--data", str(data), "--out", str(tmp_path / "o.json")])
    return data
