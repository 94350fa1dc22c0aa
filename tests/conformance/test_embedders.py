"""The embedder conformance suite: every registered embedder kind keeps the contract of ``Embedder``'s docstring
(the offline MiniLM package; the openai kind against a fake embeddings server; cases: conftest.py)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ns_dspy.agents.embedders import Embedder, build_embedder
from ns_dspy.errors import ConfigError

TEXTS = ["The neuron fires on cats.", "Fires on commas.", "The neuron fires on cats.", "Le café — naïve\tdog", "x"]


def test_a_known_option_is_accepted(embedder_case):
    embedder = build_embedder(embedder_case.spec, **embedder_case.case.known)
    assert isinstance(embedder, Embedder) and embedder.kind == embedder_case.kind
    for name, value in embedder_case.case.known.items():
        assert getattr(embedder, name) == value


def test_an_unknown_option_is_refused_in_one_line(embedder_case, one_line):
    with pytest.raises(ConfigError) as err:
        build_embedder(embedder_case.spec, bogus_option=1)
    assert "bogus_option" in one_line(err)


def test_built_the_way_the_commands_build_it(embedder_case, tmp_path, monkeypatch):
    """``--embedder SPEC`` with the commands' default run options: the program's clustering agent embeds."""
    from ns_dspy.build import build_program
    from ns_dspy.config import EmbedderConfig, RunConfig, SimulatorConfig

    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path))
    config = RunConfig(simulator=SimulatorConfig("keyword"), embedder=EmbedderConfig(embedder_case.spec))
    with build_program(config, with_lm=False) as built:
        embedder = built.program.clustering.embedder
        assert embedder.kind == embedder_case.kind and embedder.name == build_embedder(embedder_case.spec).name
        assert embedder.embed(TEXTS[:2]).shape[0] == 2
        assert built.provenance()["components"]["embedder"] == embedder.name


def test_name_is_stable_and_names_the_model(embedder_case):
    """The name keys cached embeddings (the sweep's work cache): the same for two builds and for options that do
    not change vectors, another for another model."""
    case = embedder_case.case
    name = build_embedder(case.spec, **case.known).name
    assert isinstance(name, str) and name and "\n" not in name
    assert build_embedder(case.spec, **case.known).name == name
    a, b = (build_embedder(case.spec, **options).name for options in case.neutral)
    assert a == b == name
    assert build_embedder(case.other_model).name != name


def test_is_shared_never_copied(embedder_case):
    from ns_dspy.program import NeuronScope
    from ns_dspy.simulators import build_simulator

    embedder = build_embedder(embedder_case.spec)
    assert copy.deepcopy(embedder) is embedder
    program = NeuronScope(build_simulator("keyword"), embedder)
    assert program.deepcopy().clustering.embedder is embedder
    assert program.reset_copy().clustering.embedder is embedder


def test_embeds_unit_rows_of_one_width(embedder_case):
    """float32 ``(n, d)`` with unit rows, equal texts give equal rows, a second call the same vectors; no texts:
    ``(0, d)`` without a request to the model's server."""
    embedder = build_embedder(embedder_case.spec, **embedder_case.case.known)
    requests = embedder_case.server.calls
    empty = embedder.embed([])
    assert empty.dtype == np.float32 and empty.ndim == 2 and empty.shape[0] == 0
    assert embedder_case.server.calls == requests
    vectors = embedder.embed(TEXTS)
    assert vectors.dtype == np.float32 and vectors.ndim == 2 and vectors.shape[0] == len(TEXTS)
    assert vectors.shape[1] > 0 and np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    np.testing.assert_allclose(embedder.embed(TEXTS), vectors, atol=1e-5)
    assert embedder.embed([]).shape == (0, vectors.shape[1])


def test_importing_the_embedders_imports_no_model_library():
    code = ("import json, sys\nimport ns_dspy.agents.embedders\n"
            "print(json.dumps(sorted(m for m in ('torch', 'openai', 'sentence_transformers') if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert json.loads(out) == []
