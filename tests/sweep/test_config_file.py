"""Explain configuration files: written by the sweep, read by ``ns-dspy explain --config``; the command line
wins over the file, the file over the defaults - even when an option is given with its default value."""

from __future__ import annotations

import json
import logging

import pytest

from ns_dspy.agents import ClusterConfig
from ns_dspy.cli import build_parser, main
from ns_dspy.errors import ConfigError
from ns_dspy.program import ExplainConfig
from ns_dspy.runs import RunStore
from ns_dspy.runs.config_file import program_config, read_config_file, write_config_file

TUNED = ExplainConfig(candidates=3, iterations=2, cluster=ClusterConfig(min_cluster_size=3, metric="cosine"))


def _parse(*argv):
    return build_parser().parse_args(["explain", "--store", "s", "--neurons", "0:0", *argv])


def test_round_trip_and_precedence(tmp_path):
    path = write_config_file(tmp_path / "best.json", TUNED, 1.2, {"trial": 4})
    assert read_config_file(path).tuned == {"trial": 4}
    config, temperature = program_config(_parse("--config", str(path)))
    assert config == TUNED and temperature == 1.2
    # given on the command line, even at their default values, options win over the file
    config, temperature = program_config(_parse("--config", str(path), "--candidates", "8", "--metric", "euclidean",
                                                "--temperature", "0.7", "--no-refine"))
    assert (config.candidates, config.iterations, config.refine) == (8, 2, False)
    assert (config.cluster.metric, config.cluster.min_cluster_size, temperature) == ("euclidean", 3, 0.7)
    # a partial hand-written TOML file: the rest are the defaults
    (tmp_path / "mine.toml").write_text("[explain]\niterations = 4\n[explain.cluster]\nnoise = 'drop'\n")
    config, temperature = program_config(_parse("--config", str(tmp_path / "mine.toml")))
    assert config == ExplainConfig(iterations=4, cluster=ClusterConfig(noise="drop")) and temperature == 0.7
    assert program_config(_parse()) == (ExplainConfig(), 0.7)


@pytest.mark.parametrize("content, message", [
    ({"explain": {"candidatez": 3}}, "unknown setting explain.candidatez; known:"),
    ({"explain": {"cluster": {"distance": "cosine"}}}, "unknown setting explain.cluster.distance"),
    ({"lm": {"model": "x"}}, "unknown setting lm.model; the file sets only lm.temperature"),
    ({"explain": {"candidates": "3"}}, "explain.candidates must be int, got '3'"),
    ({"explain": {"refine": 1}}, "explain.refine must be bool, got 1"),
    ({"explain": {"cluster": {"min_cluster_size": 1}}}, "min_cluster_size must be at least 2, got 1 (settings from"),
    ({"format": "ns-dspy-run"}, "is not an ns-dspy explain configuration"),
    ({"extra": 1}, "unknown key 'extra'"),
    ({"lm": {"temperature": "hot"}}, "lm.temperature must be a number"),
])
def test_bad_config_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError) as err:
        program_config(_parse("--config", str(path)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_explain_runs_with_the_file(store, server, tmp_path, caplog, capsys):
    caplog.set_level(logging.WARNING)
    path = write_config_file(tmp_path / "best.json", TUNED, 1.2, {"lm": "openai:gpt-4o", "simulator": "keyword"})
    run = tmp_path / "run.sqlite"
    argv = ["explain", "--store", str(store.path), "--neurons", "0:0", "--lm", server.lm, "--simulator", "keyword",
            "--embedder", "sweep-words", "--config", str(path), "--iterations", "1", "--run", str(run), "-q"]
    assert main(argv) == 0
    stored = RunStore(run).meta()["config"]
    assert stored["explain"] == {**TUNED.to_dict(), "iterations": 1} and stored["temperature"] == 1.2
    assert {body["temperature"] for body in server.bodies[:2]} == {1.2}  # the hypothesis and decomposition calls
    assert "was tuned with --lm openai:gpt-4o" in caplog.text and "--simulator" not in caplog.text
    capsys.readouterr()
    assert main([*argv, "--config", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ns-dspy: error: no configuration file at") and len(err.splitlines()) == 1
