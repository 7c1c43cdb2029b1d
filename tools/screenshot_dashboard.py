"""Screenshot the Explain tab and the report for docs/dashboard.md (docs/images/dashboard_*.png).

Trains the shortcut scenario of examples/overfitting.py (training images carry a class-coded corner marker that
validation images lack) with an ``ExplainCallback`` on eight training images beside the ``OverfitMonitor``, into a
temporary folder (or uses --logdir); serves it with a real ``tensorboard`` on a free local port; drives headless
Chromium through Selenium (Debian: ``apt-get install chromium chromium-driver``; ``pip install selenium``) to a
step, clicks a sample to open its filmstrip and photographs the tab; then writes ``lightning-explain report`` of
the same logs and photographs that in "two steps" mode. Servers and browser are stopped whatever happens; nothing
beyond localhost is reached.

    python tools/screenshot_dashboard.py                      # train (about a minute) + screenshots
    python tools/screenshot_dashboard.py --logdir logs        # an existing log folder instead
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

from screenshot_tensorboard import find_chromium, tensorboard_server  # noqa: E402

RUN_NAME = "shortcut"
SAMPLE = 2  # the probe sample whose filmstrip is shown


def train(logdir: Path, epochs: int) -> None:
    """The shortcut scenario with both callbacks, logged to ``logdir/shortcut/version_0``."""
    from lightning.pytorch.loggers import TensorBoardLogger

    from examples.overfitting import PROBE_SIZE, fit_shapes, make_data
    from lightning_explain import ExplainCallback, OverfitMonitor

    train_data, val = make_data("shortcut", seed=0)
    masks = {"train": train_data.masks[:PROBE_SIZE], "val": val.masks[:PROBE_SIZE]}
    explain = ExplainCallback(probe=(train_data.images[:8], train_data.labels[:8]), every_n_steps=16)
    callbacks = [explain, OverfitMonitor(masks=masks, probe_size=PROBE_SIZE)]
    logger = TensorBoardLogger(str(logdir), name=RUN_NAME, version=0)
    fit_shapes(train_data, val, seed=0, epochs=epochs, callbacks=callbacks, logger=logger)


@contextlib.contextmanager
def tensorboard(logdir: Path, *options: str):
    """A real tensorboard serving ``logdir``; yields its URL once the Explain tab's routes list a run."""
    with tensorboard_server(logdir, *options) as port:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/data/plugin/lightning_explain/runs", timeout=2) as response:
                    if json.load(response)["runs"]:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("tensorboard did not serve the Explain tab within 60 s")
            time.sleep(0.3)
        yield url


def browser(chromium: str, size: tuple[int, int]):
    """Headless Chromium under Selenium, with Debian's chromedriver (Selenium Manager downloads nothing)."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        sys.exit("no chromedriver found; install it (Debian: apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless", "--no-sandbox", "--disable-background-networking", "--hide-scrollbars"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={size[0]},{size[1]}")
    return webdriver.Chrome(service=Service(driver_path), options=options)


def settle(driver, seconds: float = 1.5) -> None:
    """Wait until every image on the page has loaded, then a little more for layout."""
    deadline = time.monotonic() + 30
    script = "return Array.from(document.images).every((i) => i.loading === 'lazy' || (i.complete && i.naturalWidth));"
    while not driver.execute_script(script) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(seconds)


def pose(driver, step_fraction: float) -> None:
    """Move the slider to a step part-way through the run and open the filmstrip of sample ``SAMPLE``."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + 30
    while not driver.find_elements(By.CSS_SELECTOR, '.le-card[data-tag="explain/grad_cam"] img.le-grid'):
        if time.monotonic() > deadline:
            raise TimeoutError("the Explain tab showed no explain/grad_cam grid")
        time.sleep(0.2)
    driver.execute_script(
        """const s = document.getElementById('le-slider');
        s.value = Number(s.min) + arguments[0] * (Number(s.max) - Number(s.min));
        s.dispatchEvent(new Event('input', {bubbles: true}));""",
        step_fraction,
    )
    settle(driver, 0.5)
    img = driver.find_element(By.CSS_SELECTOR, '.le-card[data-tag="explain/grad_cam"] img.le-grid')
    driver.execute_script(
        """const img = arguments[0], card = img.closest('.le-card');
        const r = img.getBoundingClientRect();
        const index = arguments[1];  // click the middle of the sample's cell, as a user would
        const box = index.cells[arguments[2]];
        const x = r.left + (box[0] + box[2] / 2) * r.width / index.size[0];
        const y = r.top + (box[1] + box[3] / 2) * r.height / index.size[1];
        img.dispatchEvent(new MouseEvent('click', {clientX: x, clientY: y, bubbles: true}));""",
        img,
        _grad_cam_entry(driver),
        SAMPLE,
    )
    settle(driver)
    driver.execute_script("window.scrollTo(0, 0);")


def _grad_cam_entry(driver) -> dict:
    """The explain/grad_cam entry of the shown run's index, as the page holds it."""
    return driver.execute_script("return window.LightningExplain.lastState.index.images['explain/grad_cam'];")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", help="an existing TensorBoard log folder (default: train into a temporary one)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default: 10)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"), help="folder for the PNGs")
    parser.add_argument("--size", default="1400x1350", help="window WIDTHxHEIGHT (default: 1400x1350)")
    parser.add_argument("--chromium", help="the Chromium executable (default: found on PATH)")
    args = parser.parse_args(argv)
    chromium = find_chromium(args.chromium)
    width, height = (int(v) for v in args.size.lower().split("x"))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="lightning-explain-dashboard-") as tmp:
        logdir = Path(args.logdir) if args.logdir else Path(tmp) / "logs"
        if not args.logdir:
            print(f"training the shortcut scenario into {logdir} ...", flush=True)
            train(logdir, args.epochs)
        driver = browser(chromium, (width, height))
        try:
            with tensorboard(logdir) as url:
                driver.get(url + "/#lightning_explain")
                time.sleep(2)
                driver.switch_to.frame(driver.find_element("css selector", "iframe"))
                pose(driver, 0.75)
                driver.switch_to.default_content()
                tab = out / "dashboard_tab.png"
                driver.save_screenshot(str(tab))
            from lightning_explain.dashboard import write_report

            report = write_report(logdir, Path(tmp) / "report.html", max_steps=30)
            driver.get(report.path.as_uri())
            driver.execute_script(
                "const m = document.getElementById('le-mode'); m.value = 'steps';m.dispatchEvent(new Event('change'));"
            )
            pose(driver, 1.0)
            shot = out / "dashboard_report.png"
            driver.save_screenshot(str(shot))
        finally:
            driver.quit()
    for path in (tab, shot):
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    print(f"report of the run: {report.size / 1e6:.1f} MB, {report.images} images")


if __name__ == "__main__":
    main()
