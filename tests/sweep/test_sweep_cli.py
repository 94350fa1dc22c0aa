"""``ns-dspy sweep`` end to end, in process, on the toy world: outputs, reuse, resuming, the Pareto front,
pruning, and every bad input refused in one line before any trial runs."""

from __future__ import annotations

import csv
import json
import sqlite3

import optuna
import pytest

from ns_dspy.cli import main
from ns_dspy.runs import RunStore
from ns_dspy.sweep import SearchSpace
from ns_dspy.sweep.study import looks_at_test

SPACE = {"cluster": {"min_cluster_size": {"low": 2, "high": 4}, "metric": ["euclidean", "cosine"],
                     "cluster_selection_epsilon": {"low": 0.0, "high": 0.3}},
         "iterations": {"low": 1, "high": 2}, "candidates": {"low": 1, "high": 2}, "temperature": [0.7, 1.2]}
CLUSTER_ONLY = {"cluster": {"min_cluster_size": {"low": 2, "high": 5}, "min_samples": {"low": 1, "high": 3},
                            "cluster_selection_epsilon": {"low": 0.0, "high": 0.5},
                            "cluster_selection_method": ["eom", "leaf"], "metric": ["euclidean", "cosine"]}}


def _space(tmp_path, space, name="space.json"):
    (tmp_path / name).write_text(json.dumps(space))
    return str(tmp_path / name)


def _study(store, name="sweep"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{store.path}.sweep.sqlite")


def _complete(study):
    return study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


def test_sweep_exports_the_best_configuration_for_explain(store, server, sweep_argv, tmp_path, capsys):
    argv = sweep_argv("--n-trials", "6", "--space", _space(tmp_path, SPACE))
    assert main(argv) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "store.sweep.sweep"
    study = _study(store)
    trials = _complete(study)
    assert len(study.trials) == 6 and len(trials) + len(study.get_trials(states=(optuna.trial.TrialState.PRUNED,))) == 6
    best = max(trials, key=lambda t: (t.values[0], -t.user_attrs["lm_tokens"], -t.number))
    # the toy world's known structure: a mode per trigger word beats one mode, and a hot LM's noise word hurts
    by = {(t.params["cluster.min_cluster_size"], t.params["temperature"]): t.values[0] for t in trials}
    for (size, temperature), value in by.items():
        if (2, 0.7) in by and (size, temperature) != (2, 0.7):
            assert value <= by[(2, 0.7)]
    chosen = json.loads((out / "best.json").read_text())
    assert chosen["tuned"]["trial"] == best.number and chosen["tuned"]["valid"] == pytest.approx(best.values[0])
    assert chosen["explain"]["cluster"]["min_cluster_size"] == best.params["cluster.min_cluster_size"]
    assert chosen["explain"]["iterations"] == best.params["iterations"]
    assert chosen["lm"]["temperature"] == best.params["temperature"]
    assert chosen["tuned"]["neurons"] == ["0:0", "0:1", "0:2"]
    report = study.user_attrs[f"test:{best.number}"]
    assert chosen["tuned"]["test"] == pytest.approx(report["test"]) and set(report["neurons"]) == {"0:0", "0:1", "0:2"}
    assert f"chosen: trial {best.number}, mean valid {best.values[0]:.3f} -> test {report['test']:.3f}" in printed
    assert "scored on test now" in printed and f"optuna-dashboard sqlite:///{store.path}.sweep.sqlite" in printed
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(r["trial"]) for r in rows][0] == best.number and len(rows) == len(trials)
    assert [float(r["valid"]) for r in rows] == sorted((float(r["valid"]) for r in rows), reverse=True)
    assert {"cluster.min_cluster_size", "temperature", "lm_tokens", "number"} <= set(rows[0])
    assert (out / "trials.md").read_text().startswith("# ns-dspy sweep 'sweep'")
    assert SearchSpace.from_dict(json.loads((out / "space.json").read_text())).to_dict() == \
        SearchSpace.from_dict(SPACE).to_dict()
    for t in trials:  # per-neuron intermediate values: the running mean after each neuron
        means = [sum(v["valid"] for v in list(t.user_attrs["neurons"].values())[:k]) / k for k in (1, 2, 3)]
        assert [t.intermediate_values[k] for k in (1, 2, 3)] == pytest.approx(means)

    calls = server.calls
    assert main(argv) == 0  # complete already: no trial, no LM call, the test score is not computed again
    again = capsys.readouterr().out
    assert server.calls == calls and "this worker ran 0 trial(s)" in again and "computed once, earlier" in again
    assert looks_at_test(_study(store)) == [best.number]
    assert main(argv + ["--test-maps", "linear"]) == 0  # another kind of maps: scored once more, stored apart
    assert server.calls == calls and "scored on test now" in capsys.readouterr().out
    linear = _study(store).user_attrs[f"test:{best.number}:linear"]
    assert linear["test_maps"] == "linear" and report["test_maps"] == "guarded"
    assert looks_at_test(_study(store)) == [best.number]

    run = tmp_path / "explained.sqlite"
    assert main(["explain", "--store", str(store.path), "--neurons", "0:0", "--lm", server.lm, "--simulator",
                 "keyword", "--embedder", "sweep-words", "--config", str(out / "best.json"), "--run", str(run),
                 "-q"]) == 0
    stored = RunStore(run).meta()["config"]["run"]
    assert stored["explain"] == chosen["explain"] and stored["lm"]["temperature"] == chosen["lm"]["temperature"]


def test_clustering_only_trials_make_no_lm_call(store, server, sweep_argv, tmp_path, capsys):
    space = _space(tmp_path, CLUSTER_ONLY)
    assert main(sweep_argv("--n-trials", "8", "--space", space, "--no-refine", "--no-stats-modes")) == 0
    trials = sorted(_study(store).trials, key=lambda t: t.number)
    first = trials[0].user_attrs["lm_calls"]
    assert first == server.calls == 6  # hypothesis and decomposition of 3 neurons, paid once
    assert [t.user_attrs["lm_calls"] for t in trials[1:]] == [0] * 7
    assert all(t.user_attrs["lm_tokens"] == 60 and t.user_attrs["lm_tokens_spent"] == 0 for t in trials[1:])
    assert len({t.user_attrs["number"] for t in trials}) > 1  # the clustering did change
    assert main(sweep_argv("--n-trials", "3", "--space", space, "--no-refine", "--study", "second")) == 0
    assert server.calls == 6  # another study in the same database: no LM call at all
    capsys.readouterr()


def test_studies_resume_and_count_finished_trials(store, server, sweep_argv, tmp_path, capsys):
    space = _space(tmp_path, CLUSTER_ONLY)
    argv = sweep_argv("--space", space, "--no-refine")
    assert main([*argv, "--n-trials", "4", "--timeout", "0.001"]) == 0  # stops after its first trial
    printed = capsys.readouterr().out
    assert "1 of 4 trials finished: rerun the same command to go on" in printed
    assert not (tmp_path / "store.sweep.sweep" / "best.json").exists()
    assert main([*argv, "--n-trials", "4"]) == 0
    assert "this worker ran 3 trial(s)" in capsys.readouterr().out and len(_complete(_study(store))) == 4
    assert main([*argv, "--n-trials", "6"]) == 0  # extended: two more
    assert "this worker ran 2 trial(s)" in capsys.readouterr().out and len(_complete(_study(store))) == 6


def test_a_config_file_is_the_sweeps_base(store, server, sweep_argv, tmp_path, capsys):
    from ns_dspy.config import ClusterConfig, ExplainConfig, LMConfig, RunConfig, write_config_file

    base = write_config_file(tmp_path / "base.json", RunConfig(
        explain=ExplainConfig(refine=False, max_exemplars=6, cluster=ClusterConfig(noise="singleton")),
        lm=LMConfig(temperature=0.5)))
    space = _space(tmp_path, {"cluster": {"min_cluster_size": {"low": 2, "high": 3}}})
    assert main(sweep_argv("--n-trials", "2", "--space", space, "--config", str(base), "--max-exemplars", "5")) == 0
    capsys.readouterr()
    for t in _study(store).trials:
        config = t.user_attrs["config"]
        assert config["temperature"] == 0.5 and config["explain"]["refine"] is False
        assert config["explain"]["max_exemplars"] == 5  # the command line wins over the file
        assert config["explain"]["cluster"]["noise"] == "singleton"
        assert config["explain"]["cluster"]["min_cluster_size"] == t.params["cluster.min_cluster_size"]


def test_tokens_objective_gives_a_pareto_front(store, server, sweep_argv, tmp_path, capsys):
    assert main(sweep_argv("--n-trials", "6", "--space", _space(tmp_path, SPACE), "--tokens-objective")) == 0
    capsys.readouterr()
    study = _study(store)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert all(len(t.values) == 2 and t.values[1] == t.user_attrs["lm_tokens"] for t in _complete(study))
    assert all(not t.intermediate_values for t in study.trials)  # optuna cannot prune these: nothing reported
    front = {t.number for t in study.best_trials}
    rows = list(csv.DictReader((tmp_path / "store.sweep.sweep" / "trials.csv").open()))
    assert {int(r["trial"]) for r in rows if r["front"] == "*"} == front
    chosen = json.loads((tmp_path / "store.sweep.sweep" / "best.json").read_text())["tuned"]
    assert chosen["trial"] in front and chosen["objectives"] == ["valid", "lm_tokens"]
    assert chosen["valid"] == max(t.values[0] for t in _complete(study))


def test_the_median_pruner_stops_bad_trials_early(store, server, sweep_argv, tmp_path, capsys):
    space = _space(tmp_path, {"cluster": {"min_cluster_size": {"low": 2, "high": 5}}})
    argv = sweep_argv("--n-trials", "8", "--space", space, "--no-refine", "--sampler", "random", "--seed", "5",
                      "--pruner", "median", "--prune-after", "1")  # seed 5 draws min_cluster_size 2 first, then 5
    assert main(argv) == 0
    capsys.readouterr()
    study = _study(store)
    pruned = study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    assert pruned, "no trial was pruned"
    best_at_1 = max(t.intermediate_values[1] for t in _complete(study))
    for t in pruned:
        assert len(t.user_attrs["neurons"]) < 3 and max(t.intermediate_values) == len(t.user_attrs["neurons"])
        assert t.intermediate_values[1] < best_at_1 and t.params["cluster.min_cluster_size"] > 2


def test_hyperband_pruner_and_random_sampler_run(store, server, sweep_argv, tmp_path, capsys):
    space = _space(tmp_path, {"cluster": {"min_cluster_size": {"low": 2, "high": 5}}})
    assert main(sweep_argv("--n-trials", "5", "--space", space, "--no-refine", "--sampler", "random", "--pruner",
                           "hyperband", "--study", "hb/1")) == 0
    assert "chosen: trial" in capsys.readouterr().out and (tmp_path / "store.sweep.hb_1" / "best.json").exists()
    study = _study(store, "hb/1")
    assert sum(t.state.is_finished() for t in study.trials) == 5


@pytest.mark.parametrize("extra, space, message", [
    ([], {"iterations": {"low": 3, "high": 1}}, "invalid range, low 3 is above high 1"),
    ([], {"cluster": {"distance": ["cosine"]}}, "unknown parameter 'cluster.distance'"),
    (["--min-cluster-size", "3"], CLUSTER_ONLY, "--min-cluster-size is swept by the search space"),
    (["--tokens-objective", "--pruner", "median"], None, "optuna cannot prune a multi-objective study"),
    (["--neurons", "0:99"], None, "unit 0:99 was not recorded"),
    (["--storage", "postgresql://u:secret@127.0.0.1:1/optuna"], None,
     "cannot open study storage postgresql://u:***@127.0.0.1:1/optuna: connection failed"),
    (["--storage", "postgresql://u@h:port/db"], None, "malformed storage URL 'postgresql://h:port/db'"),
    (["--storage", "redis://127.0.0.1/0"], None, "unsupported storage redis://127.0.0.1/0"),
    (["--storage", "sqlite://"], None, "is in memory"),
    (["--storage", "mysql://u@127.0.0.1/db"], None, "needs a database driver"),
    (["--n-trials", "0"], None, "--n-trials must be at least 1"),
    (["--baseline"], None, "drop --baseline"),
])
def test_bad_input_is_one_line_before_any_trial(store, server, sweep_argv, tmp_path, capsys, extra, space, message):
    argv = sweep_argv(*extra, *(["--space", _space(tmp_path, space)] if space else []))
    if "--neurons" in extra:
        argv.remove("--neurons"), argv.remove("0:0,0:1,0:2")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("ns-dspy: error:") and len(err.splitlines()) == 1
    assert "secret" not in err and server.calls == 0
    if "--storage" not in extra:
        assert not (tmp_path / "store.sweep.sqlite").exists()


def test_missing_store_foreign_storage_and_changed_settings(store, server, sweep_argv, tmp_path, capsys):
    argv = sweep_argv("--n-trials", "1", "--space", _space(tmp_path, CLUSTER_ONLY), "--no-refine")
    missing = [a if a != str(store.path) else str(tmp_path / "nope") for a in argv]
    assert main(missing) == 2
    assert "no exemplar store at" in capsys.readouterr().err
    run = tmp_path / "run.sqlite"
    RunStore(run, {"a": 1}).close()
    assert main([*argv, "--storage", str(run)]) == 2
    assert "is not an optuna study database" in capsys.readouterr().err
    assert main(argv) == 0
    capsys.readouterr()
    assert main(sweep_argv("--n-trials", "2", "--space", _space(tmp_path, {"cluster": {"metric": ["cosine"]}},
                                                                  "other.json"), "--no-refine")) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("ns-dspy: error: study 'sweep' was made with other settings (base, space): rerun with the same options "
                   "and space to resume or join it, or choose another --study")
    assert main([*argv, "--temperature", "0.9", "--n-trials", "2"]) == 2
    assert "other settings (base)" in capsys.readouterr().err
    con = sqlite3.connect(tmp_path / "store.sweep.sqlite")
    assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 1
