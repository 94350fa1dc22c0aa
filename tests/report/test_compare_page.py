"""ns-dspy compare --html: the page of two real run files (report_world's), from the runs' recorded store and
simulator."""

from __future__ import annotations

from html_tree import parse

from ns_dspy.build import build_simulator
from ns_dspy.cli import main
from ns_dspy.config import SimulatorConfig
from ns_dspy.exemplars import ExemplarStore
from ns_dspy.runs.compare import compare_runs
from ns_dspy.runs.read import read_run


def test_the_page_holds_the_chart_and_table_of_the_differences_and_no_script(runs, tmp_path, capsys):
    page_path = tmp_path / "deeper" / "c.html"
    argv = ["compare", str(runs["refine"]), str(runs["norefine"]), "--html", str(page_path)]
    assert main(argv) == 0  # store and simulator read from the run files
    assert f"comparison written to {page_path}" in capsys.readouterr().out
    a, b = read_run(runs["refine"]), read_run(runs["norefine"])
    store = ExemplarStore.open(a.config["store"])
    pairs, _ = compare_runs(a, b, store, build_simulator(SimulatorConfig("keyword")))
    text = page_path.read_text()
    page = parse(text)
    rows = page.find("table", id="compare").find_all("tr")[1:]
    assert [r.attrs["data-unit"] for r in rows] == [str(p.unit) for p in pairs] and pairs
    for row, pair in zip(rows, pairs):
        cells = [td.text() for td in row.find_all("td")]
        assert cells[3] == f"{pair.a - pair.b:+.3f}" and cells[5] == pair.verdict
    dots = page.find("div", data_chart="differences").find_all("circle")
    assert [d.text() for d in dots] == [f"{p.unit}: test score A - B {p.a - p.b:.3f}" for p in pairs]
    summary = [p.text() for p in page.find_all("p", data_summary="")]
    assert summary[0].startswith(f"mean over {len(pairs)} neurons")
    assert "<script" not in text


def test_an_html_path_that_cannot_be_written_is_refused_before_any_work(runs, tmp_path, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("x")
    assert main(["compare", str(runs["refine"]), str(runs["norefine"]), "--html", str(blocked / "c.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--html" in err[0]
