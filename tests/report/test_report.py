"""The HTML report of real run files: escaping, the numbers against the run file, every section, the CLI."""

from __future__ import annotations

import pytest
from report_world import ATTR_BREAK, LM_INJECTION, SCRIPT_LINE
from html_tree import parse

from ns_dspy.cli import main
from ns_dspy.errors import StoreError
from ns_dspy.report import render_report, write_report
from ns_dspy.report.data import mean_trajectories, neuron_trajectory
from ns_dspy.report.html import num
from ns_dspy.report.page import SCRIPT
from ns_dspy.runs.read import read_run


@pytest.fixture(scope="module")
def pages(runs):
    return {mode: parse(render_report(path)) for mode, path in runs.items()}


def test_corpus_and_lm_markup_is_text_never_markup(pages):
    for mode, page in pages.items():
        nodes = list(page.iter())
        assert [n.text() for n in nodes if n.tag == "script"] == [SCRIPT]  # ours only
        assert not [n for n in nodes if n.tag == "img"]
        handlers = [(n.tag, k) for n in nodes for k in n.attrs if k.startswith("on")]
        assert handlers == [], mode
        text = page.text()
        assert SCRIPT_LINE in text  # the run config's note: a string from the run file
        if mode == "baseline":
            assert LM_INJECTION in text
    refine = pages["refine"]
    tokens = refine.find_all("span", class_="tok")
    assert SCRIPT_LINE in [t.text() for t in tokens] and ATTR_BREAK in [t.text() for t in tokens]
    tips = [t.attrs["title"] for t in tokens]
    assert any(tip.startswith(repr(ATTR_BREAK)) for tip in tips)  # the attribute held; nothing broke out of it
    assert LM_INJECTION in refine.find("section", data_unit="0:1").text()


def test_summary_and_final_scores_are_the_run_files_numbers(runs, pages):
    for mode, path in runs.items():
        run, page = read_run(path), pages[mode]
        rows = [r for r in page.find("table", id="summary").find_all("tr") if "data-unit" in r.attrs]
        assert [r.attrs["data-unit"] for r in rows] == [str(r.unit) for r in run.records]
        for row, record in zip(rows, run.records):
            cell = {td.attrs["data-col"]: td.text() for td in row.find_all("td")}
            assert cell["status"] == record.status
            assert cell["valid"] == num(record.score_valid) and cell["test"] == num(record.score_test)
            poly = record.trace.get("polysemantic") or {}
            interval = poly.get("test_interval") if record.status == "done" else None
            assert cell["interval"] == (f"[{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")
            assert cell["number"] == (str(record.number) if record.number is not None else "\u2013")
            if record.status != "done":
                assert cell["text"] == record.error
            section = page.find("section", data_unit=str(record.unit))
            finals = record.trace.get("finals") or []
            shown = [r for r in section.find_all("tr") if "data-final" in r.attrs]
            assert len(shown) == len(finals)
            for tr, final in zip(shown, finals):
                got = {td.attrs.get("data-col"): td.text() for td in tr.find_all("td")}
                assert got["valid"] == num(final["valid"]) and got["test"] == num(final["test"])
                assert final["explanation"] in tr.text()
            if finals:
                poly = record.trace["polysemantic"]
                assert section.find("td", data_col="poly-test").text() == num(poly["test"]) == num(record.score_test)
                assert section.find("td", data_col="poly-valid").text() == num(poly["valid"])
        done = run.done
        cards = {c.attrs["data-card"]: c.find("b").text() for c in page.find_all("div", class_="card")}
        assert cards["mean score test"] == num(sum(r.score_test for r in done) / len(done))
        assert cards["mean Number"] == num(sum(r.number for r in done) / len(done), 2)
        assert cards["neurons"] == f"{len(done)} done / {len(run.records) - len(done)} failed"
        stats = [r.trace["statistical"]["test"] for r in done]  # every method carries the no-LM row
        assert cards["statistical explainer: test"] == num(sum(stats) / len(stats))


def test_heat_map_intensity_and_tooltips_follow_the_activations(runs, pages):
    record = next(r for r in read_run(runs["refine"]).records if r.status == "done")
    shown = record.trace["exemplars_shown"]
    scale = max(max(ex["activations"]) for ex in shown)
    section = pages["refine"].find("section", data_unit=str(record.unit))
    spans = section.find_all("span", class_="tok")
    flat = [(t, a) for ex in shown for t, a in zip(ex["tokens"], ex["activations"])]
    assert len(spans) == len(flat)
    for span, (tok, act) in zip(spans, flat):
        assert span.attrs["title"] == f"{tok!r}: {act:.4g}"
        style = span.attrs.get("style", "")
        if act == 0:
            assert style == ""
        else:
            rgb = "255,127,14" if act > 0 else "31,119,180"
            assert style == f"background:rgba({rgb},{min(1.0, abs(act) / scale):.2f})"
    assert any(a < 0 for _, a in flat) and any(a == scale for _, a in flat)


def test_a_unit_that_never_fires_is_drawn_by_magnitude(runs, pages):
    record = next(r for r in read_run(runs["refine"]).records if r.status == "failed")
    acts = [a for ex in record.trace["exemplars_shown"] for a in ex["activations"]]
    assert max(acts) < 0
    spans = pages["refine"].find("section", data_unit=str(record.unit)).find_all("span", class_="tok")
    scale = max(abs(a) for a in acts)
    assert [s.attrs.get("style", "") for s in spans] == [
        f"background:rgba(31,119,180,{abs(a) / scale:.2f})" for a in acts]  # blue, not invisible


def test_a_mode_stopped_for_adding_nothing_to_the_word_lists_says_so():
    from ns_dspy.report.page import _modes
    from ns_dspy.trace import Candidate, Final, Mode, Trace

    modes = [Mode(members=["dogs"], representative="dogs", explanation="dog tokens", valid=0.2,
                  history=[Candidate("dog tokens", 0.2), Candidate("dogs", 0.1)], trajectory=[0.1, 0.2], stopped=why)
             for why in ("no_contribution", "converged")]
    page = parse(_modes(Trace(conditions=["dogs", "dogs"], labels=[0, 1], modes=modes), [Final("dog tokens", 0.2)]))
    said = ["added nothing to the statistical word lists" in d.text() for d in page.find_all("div", class_="mode")]
    assert said == [True, False]


def test_modes_trajectories_and_candidates(runs, pages):
    record = read_run(runs["refine"]).by_unit()
    record = next(r for r in record.values() if r.status == "done")
    section = pages["refine"].find("section", data_unit=str(record.unit))
    modes = [d for d in section.find_all("div", class_="mode")]
    clusters = record.trace["clusters"]
    assert len(modes) == len(clusters) >= record.number
    finals = {f["explanation"] for f in record.trace["finals"]}
    for mode, cluster in zip(modes, clusters):
        if cluster.get("source") == "stats":  # a statistical word list added as a mode: no conditions, no refinement
            assert "statistical word list" in mode.text() and cluster["explanation"] in finals
            assert not mode.find_all("li") and not mode.find_all("svg")
            continue
        assert [li.text().replace("representative", "") for li in mode.find_all("li")] == cluster["members"]
        assert mode.find("li", class_="rep").text().startswith(cluster["representative"])
        points = mode.find("svg").find_all("circle")
        assert len(points) == len(cluster["trajectory"])
        assert [p.find("title").text().rsplit(" ", 1)[1] for p in points] == [num(v) for v in cluster["trajectory"]]
        ranked = mode.find("table", class_="hist").find_all("tr")[1:]
        assert len(ranked) == len(cluster["history"])
        for rank, (tr, (text, score)) in enumerate(zip(ranked, cluster["history"]), 1):
            assert [td.text() for td in tr.find_all("td")][:2] == [str(rank), num(score)] and text in tr.text()
        final_rows = [tr for tr in ranked if "final" in tr.text()]
        assert final_rows and cluster["explanation"] in final_rows[0].text()
        # a mode stopped because it added nothing to the word lists (ExplainConfig.mode_stop) says so
        said = "stopped: it added nothing to the statistical word lists" in mode.text()
        assert said == (cluster.get("stopped") == "no_contribution")
    # the run-level convergence chart (Figure 2a): one series per layer, the mean of the neurons' trajectories
    curves = mean_trajectories(read_run(runs["refine"]).records)
    chart = pages["refine"].find("svg")
    assert len(chart.find_all("path")) == len(curves)
    (ys, n), = curves.values()
    assert ys == neuron_trajectory(record) and n == 1


def test_ablation_and_baseline_pages(runs, pages):
    norefine = pages["norefine"]  # no refinement: no history tables and no trajectory charts, only the scores chart
    assert not norefine.find_all("table", class_="hist")
    assert norefine.find_all("svg") == norefine.find("div", data_chart="scores").find_all("svg")
    base = read_run(runs["baseline"])
    record = next(r for r in base.records if r.status == "done")
    table = pages["baseline"].find("section", data_unit=str(record.unit)).find("table", class_="hist")
    rows = table.find_all("tr")[1:]
    candidates = sorted(record.trace["baseline_candidates"], key=lambda c: -c[1])
    assert [tr.find("td").text() for tr in rows] == [num(s) for _, s in candidates]
    chosen = [tr for tr in rows if tr.text().endswith("chosen")]
    assert len(chosen) == 1 and record.trace["finals"][0]["explanation"] in chosen[0].text()


def test_failed_neuron_shows_its_error(runs, pages):
    failed = [r for r in read_run(runs["refine"]).records if r.status == "failed"]
    assert failed
    for r in failed:
        section = pages["refine"].find("section", data_unit=str(r.unit))
        assert "failed" in section.attrs["class"].split()
        assert section.find("p", class_="err").text() == f"failed: {r.error}"


def test_cli_writes_the_report_atomically_and_filters(runs, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", str(runs["refine"]), "--out", str(out), "--neurons", "0:1", "--exemplars", "2"]) == 0
    assert "written to" in capsys.readouterr().out
    page = parse(out.read_text(encoding="utf-8"))
    assert [s.attrs["data-unit"] for s in page.find_all("section")] == ["0:1"]
    assert len([d for d in page.find_all("div", class_="ex")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temporary file left behind


def test_demo_ends_with_its_table_and_report(runs, tmp_path, capsys):
    """``ns-dspy demo`` prints its run's summary table and writes that run's report beside it."""
    from ns_dspy.api import ExplainResult
    from ns_dspy.demo import conclude

    data = read_run(runs["refine"])
    assert conclude(ExplainResult(data.records, data.path), tmp_path) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "report.html") in printed and str(data.path) in printed
    page = parse((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert sorted(s.attrs["data-unit"] for s in page.find_all("section")) == sorted(str(r.unit) for r in data.records)
    assert conclude(ExplainResult([], data.path), tmp_path / "none") == 1  # nothing explained: no report, exit 1
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.sqlite", "no run file at"),
    (lambda d: d, "is a directory"),
    (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", "is not an ns-dspy run file"),
    (lambda d: (d / "empty.sqlite").write_bytes(b"") or d / "empty.sqlite", "is not an ns-dspy run file"),
])
def test_user_mistakes_are_one_line_errors(make, message, tmp_path, capsys):
    run = make(tmp_path)
    out = tmp_path / "keep.html"
    out.write_text("previous report")
    assert main(["report", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ns-dspy: error:") and message in err and len(err.splitlines()) == 1
    assert out.read_text() == "previous report"  # an error never clobbers the old report
    assert not (tmp_path / "missing.sqlite").exists()  # reading never creates a run file


def test_unknown_neuron_and_bad_out(runs, tmp_path, capsys):
    assert main(["report", str(runs["refine"]), "--out", str(tmp_path / "r.html"), "--neurons", "7:7"]) == 2
    assert "unit 7:7 is not in run" in capsys.readouterr().err
    assert main(["report", str(runs["refine"]), "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    (tmp_path / "r.html").write_text("not a database")
    with pytest.raises(StoreError, match="not an ns-dspy run file"):
        write_report(tmp_path / "r.html", tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_the_scores_chart_draws_each_test_score_its_interval_and_the_statistical_row(runs, pages):
    """One dot, bar and diamond per done neuron, at the run file's own numbers (read from the marks' tooltips),
    each score drawn inside its bar; no chart for traces written before intervals."""
    import json
    import re
    from dataclasses import replace

    from ns_dspy.report.page import _scores_chart

    run = read_run(runs["refine"])
    done = run.done
    chart = pages["refine"].find("div", data_chart="scores")
    dots, bars, diamonds = chart.find_all("circle"), chart.find_all("line"), chart.find_all("path")
    assert len(dots) == len(diamonds) == len(done)
    for dot, diamond, record in zip(dots, diamonds, done):
        poly, row = record.trace["polysemantic"], record.trace["statistical"]
        assert dot.text() == f"{record.unit}: test score {record.score_test:.3f}"
        assert diamond.text() == f"{record.unit}: reference {row['test']:.3f}"
        bar = next(b for b in bars if b.text().startswith(f"{record.unit}: 90% interval"))
        low, high = poly["test_interval"]
        assert bar.text() == f"{record.unit}: 90% interval [{low:.3f}, {high:.3f}]"
        x = [float(bar.attrs["x1"]), float(dot.attrs["cx"]), float(bar.attrs["x2"])]
        assert x == sorted(x)  # the score drawn inside its interval
    scale = [float(re.sub("[^0-9.]", "", d.attrs["cx"])) for d in dots]
    scores = [r.score_test for r in done]
    # positions follow the scores (one linear axis for all neurons)
    assert sorted(range(len(done)), key=scale.__getitem__) == sorted(range(len(done)), key=scores.__getitem__)
    before = []
    for record in done:  # as written before intervals
        trace = json.loads(json.dumps(record.trace))
        del trace["polysemantic"]["test_interval"]
        before.append(replace(record, trace=trace))
    assert _scores_chart(before, stats_mode=False) == ""
