"""Run configuration files: written by the sweep, read by ``--config``; the command line wins over the file, the
file over the defaults - even when an option is given with its default value. Every value of a file is
type-checked, also those the command line overrides, and version 1 files (explain settings and the temperature)
still read."""

from __future__ import annotations

import json
import logging

import pytest

from ns_dspy.cli import build_parser, main
from ns_dspy.config import (ClusterConfig, ExplainConfig, LMConfig, RunConfig, SimulatorConfig, load_run_config,
                            read_config_file, write_config_file)
from ns_dspy.errors import ConfigError
from ns_dspy.runs import RunStore

TUNED = RunConfig(explain=ExplainConfig(candidates=3, iterations=2, cluster=ClusterConfig(min_cluster_size=3,
                                                                                          metric="cosine")),
                  lm=LMConfig(temperature=1.2))


def _parse(*argv):
    return build_parser().parse_args(["explain", "--store", "s", "--neurons", "0:0", *argv])


def test_round_trip_and_precedence(tmp_path):
    path = write_config_file(tmp_path / "best.json", TUNED, {"trial": 4})
    assert read_config_file(path).tuned == {"trial": 4}
    assert load_run_config(_parse("--config", str(path))) == TUNED
    # given on the command line, even at their default values, options win over the file
    config = load_run_config(_parse("--config", str(path), "--candidates", "8", "--metric", "euclidean",
                                    "--temperature", "0.7", "--no-refine"))
    assert (config.explain.candidates, config.explain.iterations, config.explain.refine) == (8, 2, False)
    assert (config.explain.cluster.metric, config.explain.cluster.min_cluster_size) == ("euclidean", 3)
    assert config.lm.temperature == 0.7
    # a partial hand-written TOML file: the rest are the defaults
    (tmp_path / "mine.toml").write_text("[explain]\niterations = 4\n[explain.cluster]\nnoise = 'drop'\n"
                                        "[simulator]\nspec = 'keyword'\n")
    config = load_run_config(_parse("--config", str(tmp_path / "mine.toml")))
    assert config == RunConfig(explain=ExplainConfig(iterations=4, cluster=ClusterConfig(noise="drop")),
                               simulator=SimulatorConfig(spec="keyword"))
    assert load_run_config(_parse()) == RunConfig()


def test_a_version_1_file_still_reads(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "ns-dspy-explain-config", "version": 1,
                                "explain": {"candidates": 3, "cluster": {"metric": "cosine"}},
                                "lm": {"temperature": 1.2}, "tuned": {"trial": 1}}))
    config = load_run_config(_parse("--config", str(path)))
    assert config.explain.candidates == 3 and config.explain.cluster.metric == "cosine"
    assert config.lm.temperature == 1.2 and config.lm.spec == LMConfig().spec


def test_to_dict_round_trips_and_provenance_leaves_out_execution_settings():
    config = RunConfig(lm=LMConfig(timeout=30.0, hedge=False), simulator=SimulatorConfig(device="cpu",
                                                                                       options={"batch_size": 4}))
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    kept = config.to_dict(provenance=True)
    assert "timeout" not in kept["lm"] and "hedge" not in kept["lm"] and "device" not in kept["simulator"]
    assert kept["simulator"]["options"] == {"batch_size": 4} and kept["lm"]["temperature"] == 0.7


@pytest.mark.parametrize("content, message", [
    ({"explain": {"candidatez": 3}}, "unknown setting explain.candidatez; known:"),
    ({"explain": {"cluster": {"distance": "cosine"}}}, "unknown setting explain.cluster.distance"),
    ({"version": 1, "lm": {"model": "x"}}, "unknown setting lm.model; a version 1 file sets only lm.temperature"),
    ({"lm": {"model": "x"}}, "unknown setting lm.model; known:"),
    ({"explain": {"candidates": "3"}}, "explain.candidates must be int, got '3'"),
    ({"explain": {"refine": 1}}, "explain.refine must be bool, got 1"),
    ({"explain": {"cluster": {"min_cluster_size": 1}}}, "min_cluster_size must be at least 2, got 1 (settings from"),
    ({"format": "ns-dspy-run"}, "is not an ns-dspy run configuration"),
    ({"version": 3}, "is not an ns-dspy run configuration"),
    ({"extra": 1}, "unknown key 'extra'"),
    ({"lm": {"temperature": "hot"}}, "lm.temperature must be float, got 'hot'"),
    ({"lm": {"temperature": True}}, "lm.temperature must be float, got True"),
    ({"simulator": {"options": [1]}}, "simulator.options must be a mapping"),
    ({"simulator": {"dtype": "int4"}}, "--dtype must be auto, bfloat16, float16 or float32"),
    ({"program": 3}, "program must be str, got 3"),
    ({"explain": []}, "explain must be a mapping"),
])
def test_bad_config_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError) as err:
        load_run_config(_parse("--config", str(path)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_wrong_value_in_the_file_is_refused_even_when_the_option_is_given(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"explain": {"candidates": "many"}}))
    with pytest.raises(ConfigError, match="explain.candidates must be int"):
        load_run_config(_parse("--config", str(path), "--candidates", "3"))


def test_explain_runs_with_the_file(store, server, tmp_path, caplog, capsys):
    caplog.set_level(logging.WARNING)
    path = write_config_file(tmp_path / "best.json", TUNED, {"lm": "openai:gpt-4o", "simulator": "keyword"})
    run = tmp_path / "run.sqlite"
    argv = ["explain", "--store", str(store.path), "--neurons", "0:0", "--lm", server.lm, "--simulator", "keyword",
            "--embedder", "sweep-words", "--config", str(path), "--iterations", "1", "--run", str(run), "-q"]
    assert main(argv) == 0
    stored = RunStore(run).meta()["config"]["run"]
    assert stored["explain"] == {**TUNED.explain.to_dict(), "iterations": 1} and stored["lm"]["temperature"] == 1.2
    assert {body["temperature"] for body in server.bodies[:2]} == {1.2}  # the hypothesis and decomposition calls
    assert "was tuned with --lm openai:gpt-4o" in caplog.text and "--simulator" not in caplog.text
    capsys.readouterr()
    assert main([*argv, "--config", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ns-dspy: error: no configuration file at") and len(err.splitlines()) == 1
