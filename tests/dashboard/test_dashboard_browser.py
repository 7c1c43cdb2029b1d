"""The Explain tab in a real ``tensorboard`` and the report file, in headless Chromium and Firefox.

Chromium runs through Selenium, Firefox through WebDriver BiDi (see ``browsers.py``). A missing Chromium (or
chromedriver, or Selenium) skips its tests unless ``LIGHTNING_EXPLAIN_REQUIRE_BROWSER=1`` (as in ``.ci/run``),
which makes that a failure; a missing Firefox skips its tests. Run them alone with ``python -m pytest -m browser``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request

import pytest
from browsers import open_page
from dashboard_runs import FIT_RUN, METHODS, SYNTHETIC_RUN, serve_tensorboard, write_synthetic
from torch.utils.tensorboard import SummaryWriter

from lightning_explain.dashboard import write_report

pytestmark = pytest.mark.browser
TAGS = [f"explain/{m}" for m in METHODS]
SAMPLE = 5


@pytest.fixture(scope="module", params=["chromium", "firefox"])
def page(request):
    try:
        browser = open_page(request.param)
    except Exception as error:  # noqa: BLE001 - a browser that is installed but cannot start is a failure
        pytest.fail(f"{request.param} did not start: {error}")
    if browser is None:
        message = f"needs {request.param}" + (
            " and chromium-driver (Debian) and selenium (pip)" if request.param == "chromium" else ""
        )
        if request.param == "chromium" and os.environ.get("LIGHTNING_EXPLAIN_REQUIRE_BROWSER") == "1":
            pytest.fail(message + "; LIGHTNING_EXPLAIN_REQUIRE_BROWSER=1 requires them")
        pytest.skip(message)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def server(dashboard_logdir, tmp_path_factory):
    """A real tensorboard on a copy of the logs (the live test writes to it)."""
    logdir = tmp_path_factory.mktemp("browser_logs") / "logs"
    shutil.copytree(dashboard_logdir, logdir)
    with serve_tensorboard(logdir) as url:
        yield url, logdir


def until(condition, timeout: float = 15.0, what: str = "the page"):
    """Poll ``condition`` until it returns a truthy value; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - elements come and go while the page updates
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


SHOWN = """const out = {};
for (const card of document.querySelectorAll('.le-card')) {
  out[card.dataset.tag] = Array.from(card.querySelectorAll('img.le-grid')).map((img) =>
    img.hidden ? 'none' : (img.complete && img.naturalWidth > 0 ? img.dataset.step : 'loading'));
}
return out;"""

FILMSTRIP = """const out = {};
for (const row of document.querySelectorAll('#le-film .le-film-row')) {
  out[row.dataset.tag] = Array.from(row.querySelectorAll('.le-frame')).map((f) =>
    [f.dataset.step, f.querySelector('img').getAttribute('src'), f.classList.contains('le-current'),
     f.querySelector('.le-frame-outcome').textContent]);
}
return out;"""


def shown(page) -> dict[str, list[str]]:
    """Per grid card: the step of each pane's image (``data-step``) once it has loaded."""
    return page.run(SHOWN)


def at(page, steps: list) -> bool:
    """Whether every method's grid shows ``steps`` (one per pane)."""
    now = shown(page)
    return all(now.get(tag) == [str(s) for s in steps] for tag in TAGS)


def choose(page, select_id: str, value: str) -> None:
    """Pick an option of a <select>, as the user's choice fires it."""
    page.run(
        "const s = document.getElementById(arguments[0]); s.value = arguments[1];"
        "s.dispatchEvent(new Event('change', {bubbles: true}));",
        select_id,
        value,
    )


def click_sample(page, tag: str, box: list[int], size: list[int]) -> None:
    """Click the middle of a probe sample's cell in ``tag``'s grid (first pane)."""
    css = f'.le-card[data-tag="{tag}"] img.le-grid'
    width, height = page.run("const r = document.querySelector(arguments[0]).getBoundingClientRect();"
                             "return [r.width, r.height];", css)  # fmt: skip
    scale = width / size[0]
    page.click(css, (box[0] + box[2] / 2) * scale - width / 2, (box[1] + box[3] / 2) * scale - height / 2)


def check_slider_and_filmstrip(page, index: dict, source_of) -> None:
    """Move the slider every way, click a sample, check the filmstrip against the run's index."""
    steps = index["images"][TAGS[0]]["steps"]
    until(lambda: at(page, [steps[-1]]), what=f"the grids at step {steps[-1]}")
    page.run("document.getElementById('le-slider').focus();")  # the keys go to the slider
    page.press("Home")  # every method moves together
    until(lambda: at(page, [steps[0]]), what="the grids at the first step")
    page.press("ArrowRight")
    until(lambda: at(page, [steps[1]]), what="the grids at the second step")
    middle = steps[len(steps) // 2]
    page.run(
        "const s = document.getElementById('le-slider'); s.value = arguments[0];"
        "s.dispatchEvent(new Event('input', {bubbles: true}));",
        middle,
    )
    until(lambda: at(page, [middle]), what=f"the grids at step {middle}")
    assert page.run("return document.getElementById('le-step').textContent;") == f"step {middle}"

    entry = index["images"][TAGS[1]]
    click_sample(page, TAGS[1], entry["cells"][SAMPLE], entry["size"])
    strip = until(lambda: page.run(FILMSTRIP) or None, what="the filmstrip")
    heading = page.run("return document.querySelector('#le-film .le-film-head strong').textContent;")
    assert heading == f"Sample {SAMPLE} across the run"  # the sample that was clicked
    assert sorted(strip) == sorted(TAGS)  # one row per method; OverfitMonitor's pictures have no cells
    for tag in TAGS:
        frames, tag_steps = strip[tag], index["images"][tag]["steps"]
        assert [f[0] for f in frames] == [str(s) for s in tag_steps]
        assert [f[1] for f in frames] == [source_of(tag, s) for s in tag_steps]
        assert [f[0] for f in frames if f[2]] == [str(middle)]  # the slider's step is marked
        for (_, _, _, outcome), meta in zip(frames, index["images"][tag]["frames"], strict=True):
            assert outcome.startswith(f"label {meta['target'][SAMPLE]} · pred {meta['predicted'][SAMPLE]} (")
            assert outcome.endswith("✓ right" if meta["correct"][SAMPLE] else "✗ wrong")
    marks = page.run("return document.querySelectorAll('.le-card .le-mark:not([hidden])').length;")
    assert marks == len(TAGS)  # the sample is outlined in each method's grid
    page.click(f'#le-film .le-film-row[data-tag="{TAGS[0]}"] .le-frame[data-step="{steps[2]}"]')
    until(lambda: at(page, [steps[2]]), what="the slider at the clicked frame")


def fetch_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_explain_tab_in_tensorboard(page, server):
    url, logdir = server
    index = fetch_json(url + "/data/plugin/lightning_explain/run?run=" + FIT_RUN)
    page.goto(url + "/#lightning_explain")
    until(lambda: page.enter_frame() or True, what="the plugin's iframe")
    until(lambda: page.run("return document.getElementById('le-run').value;") == SYNTHETIC_RUN, what="the newest run")
    choose(page, "le-run", FIT_RUN)
    check_slider_and_filmstrip(
        page, index, lambda tag, s: f"image?run=fit%2Fversion_0&tag={tag.replace('/', '%2F')}&step={s}"
    )

    steps = index["images"][TAGS[0]]["steps"]
    choose(page, "le-mode", "steps")  # two steps: the first on the left, the slider's on the right
    until(lambda: at(page, [steps[0], steps[2]]), what="two steps side by side")
    choose(page, "le-mode", "runs")  # two runs at one step: the synthetic run has no grad_cam
    until(lambda: shown(page)["explain/grad_cam"] == [str(steps[2]), "none"], what="two runs side by side")
    choose(page, "le-mode", "single")

    # The synthetic run: its alerts on the timeline; clicking one, or a chart, moves the slider there.
    runs = fetch_json(url + "/data/plugin/lightning_explain/runs")["runs"]
    last = str({r["name"]: r for r in runs}[SYNTHETIC_RUN]["last_step"])  # 50, or later after a live test
    choose(page, "le-run", SYNTHETIC_RUN)
    until(lambda: shown(page) == {"explain/occlusion": [last]}, what="the synthetic run")
    alerts = page.run("return Array.from(document.querySelectorAll('.le-alert')).map((a) => a.dataset.step);")
    assert alerts == ["20", "50"]
    lines = page.run("return Array.from(document.querySelectorAll('svg.le-chart')).map((c) =>"
                     " c.querySelectorAll('.le-alert-line').length);")  # fmt: skip
    assert lines and set(lines) == {2}
    page.click('.le-alert[data-step="20"]')
    until(lambda: shown(page) == {"explain/occlusion": ["20"]}, what="the slider at the alert")
    chart = 'svg.le-chart[data-group="overfit/alert"]'
    width = page.run("return document.querySelector(arguments[0]).getBoundingClientRect().width;", chart)
    page.click(chart, width / 2 - 12, 0)  # near the right end: the last step
    until(lambda: shown(page) == {"explain/occlusion": [last]}, what="the slider at the clicked point")

    # Live: training writes new events; the page shows them without a reload (the slider follows the last step).
    new = int(last) + 10
    write_synthetic(logdir / SYNTHETIC_RUN, steps=[new], alert=[0])
    until(lambda: shown(page) == {"explain/occlusion": [str(new)]}, timeout=20, what=f"the new step {new}")
    assert page.run("return document.getElementById('le-slider').max;") == str(new)

    # A run with scalars only (OverfitMonitor without images): the slider walks the scalars' steps.
    writer = SummaryWriter(str(logdir / "scalars_only"))
    for step in (0, 10, 20):
        writer.add_scalar("overfit/val_loss", 1.0 / (step + 1), step)
    writer.close()
    until(lambda: page.run("return Array.from(document.getElementById('le-run').options).map((o) => o.value);")
          .count("scalars_only"), what="the new run in the list")  # fmt: skip
    choose(page, "le-run", "scalars_only")
    until(lambda: page.run("return document.getElementById('le-step').textContent;") == "step 20", what="its steps")
    page.run("document.getElementById('le-slider').focus();")
    page.press("Home")
    until(lambda: page.run("return document.getElementById('le-step').textContent;") == "step 0", what="step 0")
    assert page.console_errors() == []


def test_report_works_offline(page, dashboard_logdir, tmp_path):
    out = tmp_path / "report.html"
    write_report(dashboard_logdir, out, max_steps=None)
    data = json.loads(out.read_text().split('id="le-data">', 1)[1].split("</script>", 1)[0])
    page.goto(out.as_uri())
    until(lambda: page.run("return document.getElementById('le-run').value;") == SYNTHETIC_RUN, what="the report")
    choose(page, "le-run", FIT_RUN)
    images = data["images"][FIT_RUN]
    check_slider_and_filmstrip(page, data["indexes"][FIT_RUN], lambda tag, step: images[tag][str(step)])
    sources = page.run("return Array.from(document.querySelectorAll('[src],[href]')).map((e) => e.src || e.href);")
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    requested = page.run("return performance.getEntriesByType('resource').map((e) => e.name);")
    assert all(name.startswith("data:") for name in requested)  # nothing fetched from anywhere
    assert page.console_errors() == []
