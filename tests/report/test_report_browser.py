"""The report in a real browser: headless Chromium (Debian's package, installed when missing) renders it, takes
a screenshot and dumps the DOM after scripts ran.

The screenshot is kept as an artifact: in ``$NS_DSPY_ARTIFACTS`` when set, else in pytest's temporary
directory (the path is printed; pytest keeps the last three runs' directories).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from report_world import ATTR_BREAK, LM_INJECTION, SCRIPT_LINE
from html_tree import parse
from headless_chromium import dump_dom, ensure_chromium, screenshot
from PIL import Image

from ns_dspy.report import write_report
from ns_dspy.report.html import num
from ns_dspy.runs.read import read_run

SIZE = (1280, 1800)


@pytest.fixture(scope="session")
def chromium():
    path, reason = ensure_chromium()
    if path is None:
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def rendered(runs, chromium, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-browser")
    page = write_report(runs["refine"], out / "report.html")
    png = screenshot(chromium, page, out / "report.png", size=SIZE)
    keep = os.environ.get("NS_DSPY_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        png = Path(shutil.copy(png, Path(keep) / "report-test-screenshot.png"))
    print(f"report screenshot: {png}")
    return page, png, dump_dom(chromium, page)


def test_chromium_renders_the_page(rendered):
    _, png, _ = rendered
    image = Image.open(png)
    assert image.format == "PNG" and image.size == SIZE
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert pixels.std() > 20  # not a blank or uniform page
    colours = {tuple(p) for p in pixels.reshape(-1, 3)[::7]}
    assert len(colours) > 50  # text, tables and charts, not a flat error page
    # the heat map's orange (255,127,14) at full intensity is on screen: the strongest token of the first exemplar
    orange = (np.abs(pixels - np.array([255, 127, 14])).sum(axis=2) < 30).sum()
    assert orange > 1500


def test_injected_markup_stays_text_in_the_browser(rendered):
    page, _, dom_text = rendered
    dom = parse(dom_text)
    html = dom.find("html")
    assert html.attrs.get("data-js") == "ready"  # the report's own script ran under its CSP
    title = dom.find("title").text()
    assert title.startswith("ns-dspy report:") and "PWNED" not in title  # no injected script set the title
    assert "data-pwned" not in dom.find("body").attrs and not dom.find_all("img")
    assert len(dom.find_all("script")) == 1
    assert not [(n.tag, k) for n in dom.iter() for k in n.attrs if k.startswith("on")]
    tokens = [t.text() for t in dom.find_all("span", class_="tok")]
    assert SCRIPT_LINE in tokens and ATTR_BREAK in tokens  # shown as text, as the corpus had them
    assert LM_INJECTION in dom.find("section", data_unit="0:1").text()
    assert "&lt;script&gt;document.title='PWNED'&lt;/script&gt;" in dom_text


def test_numbers_in_the_browser_match_the_run_file(rendered, runs):
    _, _, dom_text = rendered
    dom = parse(dom_text)
    run = read_run(runs["refine"])
    rows = {r.attrs["data-unit"]: r for r in dom.find("table", id="summary").find_all("tr") if "data-unit" in r.attrs}
    assert sorted(rows) == sorted(str(r.unit) for r in run.records)
    for record in run.records:
        cells = {td.attrs["data-col"]: td.text() for td in rows[str(record.unit)].find_all("td")}
        assert (cells["valid"], cells["test"]) == (num(record.score_valid), num(record.score_test))
        if record.status == "done":
            section = dom.find("section", data_unit=str(record.unit))
            assert section.find("td", data_col="poly-test").text() == num(record.trace["polysemantic"]["test"])
