"""``ns-dspy compile`` and ``ns-dspy explain --program``, in process, against the toy chat server (offline)."""

from __future__ import annotations

import pytest
from toy_neurons import NOISE, ToyChatServer

from ns_dspy.cli import main
from ns_dspy.optimize import read_manifest
from ns_dspy.runs import RunStore

TOY = ["--simulator", "keyword", "--embedder", "toy-words", "--candidates", "1", "--iterations", "1",
       "--max-exemplars", "6", "--noise", "singleton"]
ALL = "0:0,0:1,0:2,0:3,0:4,0:5,0:6"


def test_compile_then_explain_with_the_compiled_program(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))  # the simulation cache
    out = tmp_path / "compiled.json"
    with ToyChatServer() as server:
        lm = ["--lm", f"endpoint:{server.url}@toy", "--store", str(store.path)]
        argv = ["compile", *lm, *TOY, "--neurons", ALL, "--optimizer", "bootstrap", "--opt",
                "max_bootstrapped_demos=2", "--threads", "2", "--out", str(out)]
        assert main(argv) == 0
        printed = capsys.readouterr().out
        lines = printed.splitlines()
        assert "uncompiled" in lines[1] and lines[-3].split()[0] == "mean"
        before, after = map(float, lines[-3].split()[1:3])
        assert after > before and "LM tokens spent compiling: " in lines[-2] and "--program" in lines[-1]
        m = read_manifest(out)
        assert m["lm"] == f"endpoint:{server.url}@toy" and m["simulator"]["spec"] == "keyword"
        assert m["embedder"] == "toy-words" and m["units"]["skipped"] == ["0:6"]
        assert m["lm_usage"]["tokens"] == 10 * m["lm_usage"]["compile_lm"]["calls"] > 0

        calls = server.calls
        assert main(argv) == 0 and server.calls == calls  # the same command again: all from the cache
        assert capsys.readouterr().out.splitlines()[-3] == lines[-3]
        again = read_manifest(out)["lm_usage"]
        assert again["tokens"] == 0 and again["compile_lm"]["cached_calls"] == m["lm_usage"]["compile_lm"]["calls"]
        test_units = ",".join(m["units"]["test"])
        assert main(["explain", *lm, *TOY, "--neurons", test_units, "--program", str(out), "-q"]) == 0
        run_path = tmp_path / "store.explain.compiled.sqlite"
        assert str(run_path) in capsys.readouterr().out
        finals = [f["explanation"] for r in RunStore(run_path).records() for f in r.trace["finals"]]
        assert finals and not any(word in f.lower().split() for f in finals for word in NOISE.split())

        assert main(["explain", *lm, *TOY, "--neurons", test_units, "--program", str(out), "--no-refine"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == ("ns-dspy: error: compiled for another configuration: refine=True there, refine=False here - "
                       "build the program as recorded in compiled.manifest.json or recompile")


@pytest.mark.parametrize("extra, message", [
    (["--optimizer", "simba"], "unknown optimizer 'simba': use one of best-steps, bootstrap, bootstrap-rs, gepa, mipro"),
    (["--optimizer", "gepa"], "gepa needs a reflection LM: pass --reflection-lm"),
    (["--optimizer", "mipro", "--opt", "num_trials"], "bad --opt 'num_trials': write KEY=VALUE"),
    (["--optimizer", "mipro", "--opt", "num_trials=3"], "mipro without auto needs both"),
    (["--optimizer", "bootstrap", "--opt", "max_labeled_demos=3"], "max_labeled_demos is fixed at 0"),
    (["--optimizer", "bootstrap", "--split", "0.5,x"], "bad --split '0.5,x'"),
    (["--optimizer", "bootstrap", "--neurons", "0:0,0:1,0:6"], "2 usable neurons cannot be split"),
    (["--optimizer", "bootstrap", "--neurons", "0:99"], "unit 0:99 was not recorded"),
    (["--optimizer", "bootstrap", "--n-neurons", "2"], "--n-neurons must be at least 3"),
])
def test_compile_mistakes_exit_2_with_one_line(store, tmp_path, extra, message, capsys):
    argv = ["compile", "--store", str(store.path), "--out", str(tmp_path / "c.json"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("ns-dspy: error:")
    assert not (tmp_path / "c.json").exists()


def test_out_must_be_json_and_program_must_exist(store, tmp_path, capsys):
    assert main(["compile", "--store", str(store.path), "--optimizer", "bootstrap", "--out", "c.pkl"]) == 2
    assert "name it *.json" in capsys.readouterr().err
    assert main(["explain", "--store", str(store.path), "--neurons", "0:0", "--program",
                 str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no compiled program at" in err and "ns-dspy compile --out" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.glob("*.sqlite")) and not list(store.path.parent.glob("*.sqlite"))
