"""The Explain tab in a real ``tensorboard`` and the report file, driven in headless Chromium through Selenium.

Skipped when Chromium, its driver or Selenium is missing, unless ``LIGHTNING_EXPLAIN_REQUIRE_BROWSER=1`` (as in
``.ci/run``), when that is a failure. Run them alone with ``python -m pytest -m browser``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request

import pytest
from conftest import FIT_RUN, METHODS, SYNTHETIC_RUN, chromium_paths, serve_tensorboard, write_synthetic

from lightning_explain.dashboard import write_report

pytestmark = pytest.mark.browser
TAGS = [f"explain/{m}" for m in METHODS]


@pytest.fixture(scope="module")
def driver():
    paths = chromium_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        paths = None
    if paths is None:
        message = "needs Debian's chromium and chromium-driver, and selenium (pip install selenium)"
        if os.environ.get("LIGHTNING_EXPLAIN_REQUIRE_BROWSER") == "1":
            pytest.fail(message + "; LIGHTNING_EXPLAIN_REQUIRE_BROWSER=1 requires them")
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in ("--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(paths[1]), options=options)  # Selenium Manager downloads nothing
    yield browser
    browser.quit()


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


def shown(driver) -> dict[str, list[str]]:
    """Per grid card: the step of each pane's image (``data-step``), once every image has loaded."""
    return driver.execute_script(
        """const out = {};
        for (const card of document.querySelectorAll('.le-card')) {
          out[card.dataset.tag] = Array.from(card.querySelectorAll('img.le-grid')).map((img) =>
            img.hidden ? 'none' : (img.complete && img.naturalWidth > 0 ? img.dataset.step : 'loading'));
        }
        return out;"""
    )


def press(driver, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


def severe_errors(driver) -> list:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def click_sample(driver, tag: str, box: list[int], size: list[int]) -> None:
    """Click the middle of a probe sample's cell in ``tag``'s grid (first pane)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    img = driver.find_element(By.CSS_SELECTOR, f'.le-card[data-tag="{tag}"] img.le-grid')
    scale = img.size["width"] / size[0]
    dx = (box[0] + box[2] / 2) * scale - img.size["width"] / 2
    dy = (box[1] + box[3] / 2) * scale - img.size["height"] / 2
    ActionChains(driver).move_to_element_with_offset(img, int(dx), int(dy)).click().perform()


def filmstrip(driver) -> dict[str, list[tuple[str, str, bool]]]:
    """Per filmstrip row: (step, image source, is the current frame) of every frame."""
    return driver.execute_script(
        """const out = {};
        for (const row of document.querySelectorAll('#le-film .le-film-row')) {
          out[row.dataset.tag] = Array.from(row.querySelectorAll('.le-frame')).map((f) =>
            [f.dataset.step, f.querySelector('img').getAttribute('src'), f.classList.contains('le-current'),
             f.querySelector('.le-frame-outcome').textContent]);
        }
        return out;"""
    )


def set_slider(driver, value: int) -> None:
    driver.execute_script(
        "const s = document.getElementById('le-slider'); s.value = arguments[0];"
        "s.dispatchEvent(new Event('input', {bubbles: true}));",
        value,
    )


def check_slider_and_filmstrip(driver, index: dict, steps_of) -> None:
    """Move the slider every way, click a sample, check the filmstrip against the run's index."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    steps = index["images"][TAGS[0]]["steps"]
    last = str(steps[-1])
    until(lambda: all(shown(driver).get(t) == [last] for t in TAGS), what=f"the grids at step {last}")
    driver.execute_script("document.getElementById('le-slider').focus()")  # the keys go to the slider
    press(driver, Keys.HOME)  # every method moves together
    until(lambda: all(shown(driver)[t] == [str(steps[0])] for t in TAGS), what="the grids at the first step")
    press(driver, Keys.ARROW_RIGHT)
    until(lambda: all(shown(driver)[t] == [str(steps[1])] for t in TAGS), what="the grids at the second step")
    middle = steps[len(steps) // 2]
    set_slider(driver, middle)
    until(lambda: all(shown(driver)[t] == [str(middle)] for t in TAGS), what=f"the grids at step {middle}")
    assert driver.find_element(By.ID, "le-step").text == f"step {middle}"

    entry = index["images"][TAGS[1]]
    sample = 5
    click_sample(driver, TAGS[1], entry["cells"][sample], entry["size"])
    strip = until(lambda: filmstrip(driver) or None, what="the filmstrip")
    assert sorted(strip) == sorted(TAGS)  # one row per method; OverfitMonitor's pictures have no cells
    for tag in TAGS:
        frames = strip[tag]
        tag_steps = index["images"][tag]["steps"]
        assert [f[0] for f in frames] == [str(s) for s in tag_steps]
        assert [f[1] for f in frames] == [steps_of(tag, s) for s in tag_steps]
        assert [f[0] for f in frames if f[2]] == [str(middle)]  # the slider's step is marked
        for (_, _, _, outcome), meta in zip(frames, index["images"][tag]["frames"], strict=True):
            verdict = "✓ right" if meta["correct"][sample] else "✗ wrong"
            assert outcome.startswith(f"label {meta['target'][sample]} · pred {meta['predicted'][sample]} (")
            assert outcome.endswith(verdict)
    marks = driver.find_elements(By.CSS_SELECTOR, ".le-card .le-mark:not([hidden])")
    assert len(marks) == len(TAGS)  # the sample is outlined in each method's grid
    driver.find_element(
        By.CSS_SELECTOR, f'#le-film .le-film-row[data-tag="{TAGS[0]}"] .le-frame[data-step="{steps[2]}"]'
    ).click()
    until(lambda: all(shown(driver)[t] == [str(steps[2])] for t in TAGS), what="the slider at the clicked frame")


def fetch_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_explain_tab_in_tensorboard(driver, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    url, logdir = server
    base = url + "/data/plugin/lightning_explain/"
    index = fetch_json(base + "run?run=" + FIT_RUN)
    driver.get(url + "/#lightning_explain")
    driver.switch_to.frame(until(lambda: driver.find_element(By.CSS_SELECTOR, "iframe"), what="the plugin's iframe"))
    until(lambda: driver.find_element(By.ID, "le-run").get_attribute("value") == SYNTHETIC_RUN, what="the newest run")
    Select(driver.find_element(By.ID, "le-run")).select_by_value(FIT_RUN)

    def source(tag, step):
        return f"image?run=fit%2Fversion_0&tag={tag.replace('/', '%2F')}&step={step}"

    check_slider_and_filmstrip(driver, index, source)

    # Compare two steps: the first step on the left, the slider's on the right.
    steps = index["images"][TAGS[0]]["steps"]
    Select(driver.find_element(By.ID, "le-mode")).select_by_value("steps")
    until(lambda: all(shown(driver)[t] == [str(steps[0]), str(steps[2])] for t in TAGS), what="two steps")
    # Compare two runs at one step: the synthetic run has no grad_cam.
    Select(driver.find_element(By.ID, "le-mode")).select_by_value("runs")
    until(lambda: shown(driver)["explain/grad_cam"] == [str(steps[2]), "none"], what="two runs")
    Select(driver.find_element(By.ID, "le-mode")).select_by_value("single")

    # The synthetic run: its alerts on the timeline; clicking one moves the slider there.
    Select(driver.find_element(By.ID, "le-run")).select_by_value(SYNTHETIC_RUN)
    until(lambda: shown(driver) == {"explain/occlusion": ["50"]}, what="the synthetic run")
    alerts = driver.find_elements(By.CSS_SELECTOR, ".le-alert")
    assert [a.get_attribute("data-step") for a in alerts] == ["20", "50"]
    charts = driver.find_elements(By.CSS_SELECTOR, "svg.le-chart")
    assert charts and all(len(c.find_elements(By.CSS_SELECTOR, ".le-alert-line")) == 2 for c in charts)
    alerts[0].click()
    until(lambda: shown(driver) == {"explain/occlusion": ["20"]}, what="the slider at the alert")
    chart = driver.find_element(By.CSS_SELECTOR, 'svg.le-chart[data-group="overfit/alert"]')
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element_with_offset(chart, chart.size["width"] // 2 - 12, 0).click().perform()
    until(lambda: shown(driver) == {"explain/occlusion": ["50"]}, what="the slider at the clicked point")

    # Live: training writes new events; the page shows them without a reload (the slider follows the last step).
    write_synthetic(logdir / SYNTHETIC_RUN, steps=[60], alert=[0])
    until(lambda: shown(driver) == {"explain/occlusion": ["60"]}, timeout=20, what="the new step 60")
    assert driver.find_element(By.ID, "le-slider").get_attribute("max") == "60"
    assert severe_errors(driver) == []


def test_report_works_offline_in_the_browser(driver, dashboard_logdir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    out = tmp_path / "report.html"
    write_report(dashboard_logdir, out, max_steps=None)
    data = json.loads(out.read_text().split('id="le-data">', 1)[1].split("</script>", 1)[0])
    driver.get(out.as_uri())
    until(lambda: driver.find_element(By.ID, "le-run").get_attribute("value") == SYNTHETIC_RUN, what="the report")
    Select(driver.find_element(By.ID, "le-run")).select_by_value(FIT_RUN)
    images = data["images"][FIT_RUN]
    check_slider_and_filmstrip(driver, data["indexes"][FIT_RUN], lambda tag, step: images[tag][str(step)])
    sources = driver.execute_script(
        "return Array.from(document.querySelectorAll('[src],[href]')).map((e) => e.src || e.href);"
    )
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    requested = driver.execute_script("return performance.getEntriesByType('resource').map((e) => e.name);")
    assert all(name.startswith("data:") for name in requested)  # nothing fetched from anywhere
    assert severe_errors(driver) == []
