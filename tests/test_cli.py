"""The command line, run in-process through ``main`` on a tiny real model."""

from __future__ import annotations

import pytest

from ns_dspy.cli import build_parser, main


def _record(tiny_llama, text_corpus, out, *extra):
    return main(["record", "--model", str(tiny_llama), "--corpus", str(text_corpus), "--layers", "0,1",
                 "--tokens", "800", "--window", "8", "--top-k", "6", "--random-k", "3", "--dtype", "float32",
                 "--out", str(out), "--quiet", *extra])


def test_record_show_units_export_import(tiny_llama, text_corpus, tmp_path, capsys):
    store = tmp_path / "store"
    assert _record(tiny_llama, text_corpus, store) == 0
    assert "128 units in layers [0, 1]" in capsys.readouterr().out
    assert main(["show", str(store), "1:5", "-n", "2", "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "unit 1:5" in out and "\u00ab" in out and out.count("#") == 2
    assert main(["show", str(store), "1:5", "--color", "always", "--split", "valid"]) == 0
    assert "\x1b[48;5;" in capsys.readouterr().out
    assert main(["units", str(store), "--layer", "0", "-n", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2 + 3
    assert main(["export", str(store), str(tmp_path / "r.jsonl"), "--units", "0:1,1:5"]) == 0
    assert main(["import", str(tmp_path / "r.jsonl"), str(tmp_path / "imported")]) == 0
    assert "2 units in layers [0, 1]" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["show", "/nonexistent/store", "1:5"], "no exemplar store at /nonexistent/store"),
    (["record", "--model", "no-such-model", "--layers", "1", "--out", "x"], "unknown model 'no-such-model'"),
    (["record", "--layers", "1", "--split", "0.5,0.5", "--out", "x"], "--split"),
    (["record", "--layers", "1", "--tokens", "0", "--out", "x"], "--tokens must be positive"),
    (["record", "--neurons", "5:x", "--out", "x"], "bad unit '5:x'"),
])
def test_user_mistakes_exit_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("ns-dspy: error:")
    assert not (tmp_path / "x").exists()


def test_bad_unit_and_corpus(tiny_llama, text_corpus, tmp_path, capsys):
    store = tmp_path / "store"
    assert _record(tiny_llama, text_corpus, store) == 0
    capsys.readouterr()
    assert main(["show", str(store), "0:999"]) == 2
    assert "unit 0:999 was not recorded" in capsys.readouterr().err
    assert _record(tiny_llama, tmp_path / "missing.jsonl", tmp_path / "s2") == 2
    assert "missing.jsonl" in capsys.readouterr().err
    assert _record(tiny_llama, text_corpus, store) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err


def test_help_everywhere(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"record", "show", "units", "export", "import", "demo"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--top-k" in out and "top-activating windows kept per unit" in out


def test_score_prints_score_and_token_table(tiny_llama, text_corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))
    store = tmp_path / "store"
    assert _record(tiny_llama, text_corpus, store) == 0
    capsys.readouterr()
    from ns_dspy.exemplars import ExemplarStore
    from ns_dspy.types import UnitId

    first_ex = ExemplarStore.open(store).exemplars(UnitId(1, 5), "test", "top")[0]
    word = max((t.strip() for t in first_ex.tokens if t.strip().isalpha()), key=len)
    assert main(["score", str(store), "1:5", f"the word {word}", "--simulator", "keyword", "--table", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("unit 1:5, test: score ") and "constant" not in out and "top" in out and "random" in out
    table = out.split("predicted\n")[1].strip().splitlines()
    assert len(table) == len(first_ex.tokens) and any(line.endswith("10.00") for line in table)
    args = ["score", str(store), "1:5", "the cat", "--simulator", f"prompted:{tiny_llama}", "--dtype", "float32",
            "--device", "cpu", "--split", "valid", "--table", "0"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "unit 1:5, valid: score" in first
    assert (tmp_path / "cache" / "simulations.sqlite").exists()
    assert main(args) == 0  # served from the cache: same result
    assert capsys.readouterr().out == first
    assert main(["score", str(store), "1:5", "x", "--simulator", "warp:9"]) == 2
    assert "unknown simulator 'warp:9'" in capsys.readouterr().err


@pytest.mark.parametrize("verbose", [False, True])
def test_command_line_logging_shows_our_progress_not_library_chatter(verbose):
    """In a fresh process (as the commands run): our INFO lines and everyone's warnings reach stderr; another
    library's INFO (sentence-transformers announcing its device, say) only with -v."""
    import subprocess
    import sys

    code = ("import logging; from ns_dspy.config import configure_logging; "
            f"configure_logging({verbose}); "
            "logging.getLogger('ns_dspy.program').info('ours'); "
            "logging.getLogger('simulator_training.train').info('trainer'); "
            "logging.getLogger('sentence_transformers.base.model').info('chatter'); "
            "logging.getLogger('httpx').warning('theirs'); "
            "logging.getLogger('ns_dspy.build').debug('detail')")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert "INFO ns_dspy.program: ours" in err and "INFO simulator_training.train: trainer" in err
    assert "WARNING httpx: theirs" in err
    assert ("chatter" in err) == verbose and ("DEBUG ns_dspy.build: detail" in err) == verbose


def test_experiment_drivers_log_their_own_lines_with_the_time_and_no_library_chatter():
    """experiments/paper.py and the other drivers log through the same configure_logging: their own logger
    (``paper``) and ours at INFO, each line prefixed with HH:MM:SS; another library's INFO not at all."""
    import re
    import subprocess
    import sys

    code = ("import logging; from ns_dspy.config import OUR_LOGGERS, configure_logging; "
            "configure_logging(ours=(*OUR_LOGGERS, 'paper'), timestamps=True); "
            "logging.getLogger('paper').info('step'); logging.getLogger('ns_dspy.program').info('ours'); "
            "logging.getLogger('sentence_transformers.base.model').info('chatter')")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    lines = err.splitlines()
    assert [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in lines] == ["INFO paper: step",
                                                                         "INFO ns_dspy.program: ours"]
    assert all(re.match(r"^\d\d:\d\d:\d\d INFO ", line) for line in lines)
