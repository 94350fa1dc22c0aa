"""``ns-dspy doctor``: every item has a status and, when not ok, its fix; exit 1 only when something is broken."""

from __future__ import annotations

import socket

from ns_dspy.cli import main
from ns_dspy.doctor import Check, format_checks, run_checks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_doctor_reports_each_item_and_checks_the_library_decodes(tmp_path, monkeypatch, capsys, fake_llama_cpp):
    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))
    fake_llama_cpp("ok")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    checks = run_checks(lm=f"local:{gguf}", simulator="keyword")
    by = {c.item: c for c in checks}
    assert by["llama.cpp decode"].status == "ok" and "AVX2" in by["llama.cpp decode"].detail
    assert by["cpu"].status == "ok" and "cores" in by["cpu"].detail
    assert by["torch"].status == "ok" and by["embedder"].status == "ok"
    assert by["model gemma-3-270m"].status == "warn"  # a fresh cache: not converted yet, and nothing is built
    assert not (tmp_path / "cache" / "models" / "gemma-3-270m" / "ns_dspy_source.json").exists()
    assert main(["doctor", "-q", "--lm", f"local:{gguf}", "--simulator", "keyword"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("0 failed")


def test_doctor_fails_on_a_dead_endpoint_with_its_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))
    url = f"http://127.0.0.1:{_free_port()}/v1"
    assert main(["doctor", "-q", "--lm", f"endpoint:{url}@m", "--simulator", f"endpoint:{url}@m"]) == 1
    out = capsys.readouterr().out
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 2 and all("no server at" in line for line in fails)
    assert out.strip().splitlines()[-1].startswith("2 failed")


def test_format_marks_failures_and_fixes():
    text = format_checks([Check("ok", "a", "fine"), Check("fail", "b", "broken", "do this")])
    assert "FAIL b: broken\n     fix: do this" in text and text.endswith("1 failed, 0 warnings, 1 ok")


def test_a_faster_llama_cpp_build_is_suggested_only_where_the_cpu_has_more_than_the_build():
    from ns_dspy.doctor import build_hint

    portable = "AVX AVX2 F16C FMA BMI2 LLAMAFILE OPENMP REPACK"
    hint = build_hint({"avx2", "fma", "f16c", "avx512f", "avx512_vnni"}, portable)
    assert hint is not None and hint.status == "warn" and "avx512f avx512_vnni" in hint.detail
    assert "--no-cache-dir llama-cpp-python==" in hint.fix  # pip would reuse the cached portable wheel otherwise
    assert build_hint({"avx2", "fma", "f16c"}, portable) is None  # nothing more in this CPU
    assert build_hint({"avx2", "avx512f"}, portable + " AVX512 AVX512_VNNI") is None  # already built for it
    assert build_hint({"avx2", "avx512f"}, "") is None  # the build's features unknown: say nothing
