"""The search space: the default, files in three formats, and every kind of bad range refused in one line."""

from __future__ import annotations

import json

import optuna
import pytest

from ns_dspy.agents import ClusterConfig
from ns_dspy.errors import ConfigError
from ns_dspy.program import ExplainConfig
from ns_dspy.sweep import DEFAULT_SPACE, SearchSpace, apply_params, default_space, load_space

ISSUE_PARAMS = {"cluster.min_cluster_size", "cluster.min_samples", "cluster.cluster_selection_epsilon",
                "cluster.cluster_selection_method", "cluster.metric", "iterations", "candidates", "temperature"}


def test_default_space_covers_the_issue_and_drops_refinement_without_it():
    space = default_space(ExplainConfig())
    assert set(space.names) == ISSUE_PARAMS
    space.check(ExplainConfig(), 0.7)
    plain = default_space(ExplainConfig(refine=False))
    assert set(plain.names) == ISSUE_PARAMS - {"iterations", "candidates"}
    assert SearchSpace.from_dict(space.to_dict()).to_dict() == space.to_dict() == DEFAULT_SPACE


@pytest.mark.parametrize("suffix, text", [
    (".toml", 'iterations = { low = 1, high = 3 }\ntemperature = [0.5, 1.0]\n[cluster]\n'
              'min_cluster_size = { low = 2, high = 4 }\nmetric = ["euclidean", "cosine"]\n'),
    (".json", json.dumps({"iterations": {"low": 1, "high": 3}, "temperature": {"choices": [0.5, 1.0]},
                          "cluster": {"min_cluster_size": {"low": 2, "high": 4}, "metric": ["euclidean", "cosine"]}})),
    (".yaml", "iterations: {low: 1, high: 3}\ntemperature: [0.5, 1.0]\ncluster:\n  min_cluster_size: {low: 2, high: 4}\n"
              "  metric: [euclidean, cosine]\n"),
])
def test_space_files_in_three_formats_give_the_same_space(tmp_path, suffix, text):
    path = tmp_path / f"space{suffix}"
    path.write_text(text)
    space = load_space(path, ExplainConfig())
    assert space.names == ["iterations", "temperature", "cluster.min_cluster_size", "cluster.metric"]
    trial = optuna.trial.FixedTrial({"iterations": 3, "temperature": 1.0, "cluster.min_cluster_size": 4,
                                     "cluster.metric": "cosine"})
    config, temperature = apply_params(ExplainConfig(candidates=2), 0.7, space.suggest(trial))
    assert (config.iterations, config.candidates, temperature) == (3, 2, 1.0)
    assert config.cluster == ClusterConfig(min_cluster_size=4, metric="cosine")


@pytest.mark.parametrize("space, message", [
    ({"cluster": {"min_cluster_sise": {"low": 2, "high": 4}}}, "unknown parameter 'cluster.min_cluster_sise'; sweepable:"),
    ({"temprature": [0.5]}, "unknown parameter 'temprature'"),
    ({"iterations": {"low": 5, "high": 1}}, "invalid range, low 5 is above high 1"),
    ({"cluster": {"min_cluster_size": {"low": 1, "high": 4}}},
     "cluster.min_cluster_size = 1 is invalid (min_cluster_size must be at least 2, got 1)"),
    ({"cluster": {"min_samples": {"low": 0, "high": 4}}}, "cluster.min_samples = 0 is invalid"),
    ({"cluster": {"cluster_selection_epsilon": {"low": -0.1, "high": 0.5}}}, "cluster_selection_epsilon must be >= 0"),
    ({"cluster": {"metric": ["euclidean", "manhattan"]}}, "metric must be one of euclidean, cosine, got 'manhattan'"),
    ({"cluster": {"cluster_selection_method": {"low": 0, "high": 1}}}, "is a str setting: give choices"),
    ({"temperature": {"low": 0.5, "high": 3.0}}, "temperature 3.0 is outside [0, 2]"),
    ({"candidates": {"low": 2, "high": 7, "step": 2}}, "high - low (5) must be a multiple of step 2"),
    ({"candidates": {"low": 2.5, "high": 7}}, "low must be a finite int, got 2.5"),
    ({"iterations": {"low": 0, "high": 3, "log": True}}, "a log range needs low > 0"),
    ({"iterations": {"low": 1}}, "a range needs both low and high"),
    ({"iterations": {"low": 1, "high": 3, "choices": [1]}}, "give either choices or a range"),
    ({"iterations": {"low": 1, "high": 3, "steps": 1}}, "unknown key 'steps'"),
    ({"candidates": []}, "choices must be a non-empty list"),
    ({"refine": [True, "no"]}, "choice 'no' is not a bool"),
    ({}, "the space is empty"),
])
def test_bad_spaces_are_refused_in_one_line(tmp_path, space, message):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    with pytest.raises(ConfigError) as err:
        load_space(path, ExplainConfig()).check(ExplainConfig(), 0.7)
    assert message in str(err.value) and "\n" not in str(err.value) and str(path) in str(err.value)


def test_refinement_settings_cannot_be_swept_without_refinement(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text("candidates = { low = 2, high = 4 }\n")
    with pytest.raises(ConfigError, match="candidates has no effect with --no-refine"):
        load_space(path, ExplainConfig(refine=False)).check(ExplainConfig(refine=False), 0.7)
    with pytest.raises(ConfigError, match="drop --baseline"):
        default_space(ExplainConfig()).check(ExplainConfig(baseline=True), 0.7)


@pytest.mark.parametrize("name, text, message", [
    ("space.json", "{not json", "is malformed: Expecting property name"),
    ("space.toml", "iterations = {low = 1", "is malformed"),
    ("space.yaml", "- just\n- a list\n", "must hold a mapping at the top level"),
    ("space.ini", "[x]", "unknown file type .ini"),
])
def test_malformed_space_files(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as err:
        load_space(tmp_path / name, ExplainConfig())
    assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="no space file at"):
        load_space(tmp_path / "missing.toml", ExplainConfig())
