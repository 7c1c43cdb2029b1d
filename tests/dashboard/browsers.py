"""Two headless browsers behind one small interface, for the dashboard's browser tests.

- Chromium through Selenium with Debian's ``chromedriver`` (``Service(path)``: Selenium Manager downloads nothing);
- Firefox through WebDriver BiDi, the protocol Firefox itself speaks on ``--remote-debugging-port`` (no
  geckodriver, which Debian does not package), over ``websocket-client`` (a dependency of Selenium).

A :class:`Page` runs JavaScript (a function body with ``arguments``, its result passed through JSON), presses a
key, clicks an element at an offset from its centre, and collects console errors.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

KEYS = {"Home": "\ue011", "End": "\ue010", "ArrowLeft": "\ue012", "ArrowRight": "\ue014"}


def _wrap(body: str) -> str:
    return (
        "const r = (function () {"
        + body
        + "}).apply(null, arguments); return JSON.stringify(r === undefined ? null : r);"
    )


class ChromiumPage:
    """Headless Chromium under Selenium."""

    def __init__(self, chromium: str, driver: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in ("--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu"):
            options.add_argument(argument)
        options.add_argument("--window-size=1400,1000")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(driver), options=options)

    def goto(self, url: str) -> None:
        self.driver.switch_to.default_content()
        self.driver.get(url)

    def enter_frame(self) -> None:
        """Work inside the page's iframe (TensorBoard's plugin frame)."""
        self.driver.switch_to.frame(self.driver.find_element("css selector", "iframe"))

    def run(self, body: str, *args: Any) -> Any:
        return json.loads(self.driver.execute_script(_wrap(body), *args))

    def press(self, key: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).send_keys(KEYS.get(key, key)).perform()

    def click(self, css: str, dx: float = 0, dy: float = 0) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        # WebDriver offsets count from the element's in-view centre (the middle of its visible part), not from
        # the middle of the whole element: bring the target point to the middle of the viewport, then measure.
        dx, dy = self.run(
            """const el = document.querySelector(arguments[0]);
            let r = el.getBoundingClientRect();
            window.scrollBy(r.left + r.width / 2 + arguments[1] - innerWidth / 2,
                            r.top + r.height / 2 + arguments[2] - innerHeight / 2);
            r = el.getBoundingClientRect();
            const x = r.left + r.width / 2 + arguments[1], y = r.top + r.height / 2 + arguments[2];
            const left = Math.max(r.left, 0), right = Math.min(r.right, innerWidth);
            const top = Math.max(r.top, 0), bottom = Math.min(r.bottom, innerHeight);
            return [x - (left + right) / 2, y - (top + bottom) / 2];""",
            css,
            dx,
            dy,
        )
        element = self.driver.find_element("css selector", css)
        ActionChains(self.driver).move_to_element_with_offset(element, int(dx), int(dy)).click().perform()

    def console_errors(self) -> list:
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def close(self) -> None:
        self.driver.quit()


class FirefoxPage:
    """Headless Firefox over WebDriver BiDi."""

    def __init__(self, firefox: str) -> None:
        import websocket

        self.profile = tempfile.mkdtemp(prefix="firefox-profile-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [firefox, "--headless", "--no-remote", "--profile", self.profile, f"--remote-debugging-port={port}"]
        self.process = subprocess.Popen(
            command + ["--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "HOME": self.profile, "MOZ_CRASHREPORTER_DISABLE": "1"},
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                url = f"ws://127.0.0.1:{port}/session"
                self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
                break
            except Exception:  # noqa: BLE001 - refused, or a handshake before Firefox is ready
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise
                time.sleep(0.2)
        self._id = 0
        self.errors: list = []
        self._call("session.new", {"capabilities": {}})
        self._call("session.subscribe", {"events": ["log.entryAdded"]})
        self.top = self._call("browsingContext.getTree", {})["contexts"][0]["context"]
        self.context = self.top

    def _call(self, method: str, params: dict) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("method") == "log.entryAdded" and message["params"].get("level") == "error":
                self.errors.append(message["params"])
            if message.get("id") == self._id:
                if message.get("type") == "error":
                    raise RuntimeError(f"{method}: {message.get('error')}: {message.get('message')}")
                return message["result"]

    def goto(self, url: str) -> None:
        self.context = self.top
        self._call("browsingContext.navigate", {"context": self.top, "url": url, "wait": "complete"})

    def enter_frame(self) -> None:
        tree = self._call("browsingContext.getTree", {"root": self.top})["contexts"][0]
        self.context = tree["children"][0]["context"]

    def run(self, body: str, *args: Any) -> Any:
        arguments = [{"type": "number" if isinstance(a, (int, float)) else "string", "value": a} for a in args]
        result = self._call(
            "script.callFunction",
            {
                "functionDeclaration": "function () {" + _wrap(body) + "}",
                "arguments": arguments,
                "target": {"context": self.context},
                "awaitPromise": False,
            },
        )
        if result["type"] == "exception":
            raise RuntimeError(result["exceptionDetails"]["text"])
        return json.loads(result["result"]["value"])

    def _actions(self, actions: list[dict]) -> None:
        self._call("input.performActions", {"context": self.context, "actions": actions})

    def press(self, key: str) -> None:
        value = KEYS.get(key, key)
        self._actions([{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": value}, {"type": "keyUp", "value": value}]}])  # fmt: skip

    def click(self, css: str, dx: float = 0, dy: float = 0) -> None:
        """Scroll the element into view, then click at its centre + (dx, dy), in the top-level viewport."""
        x, y = self.run(
            """const el = document.querySelector(arguments[0]);
            el.scrollIntoView({block: 'center', inline: 'center'});
            const r = el.getBoundingClientRect();
            let x = r.left + r.width / 2 + arguments[1], y = r.top + r.height / 2 + arguments[2];
            for (let w = window; w.frameElement; w = w.parent) {
              const f = w.frameElement.getBoundingClientRect();
              x += f.left + w.frameElement.clientLeft;
              y += f.top + w.frameElement.clientTop;
            }
            return [x, y];""",
            css,
            dx,
            dy,
        )
        self._call("input.performActions", {"context": self.top, "actions": [
            {"type": "pointer", "id": "mouse", "actions": [
                {"type": "pointerMove", "x": round(x), "y": round(y), "origin": "viewport"},
                {"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0}]}]})  # fmt: skip

    def console_errors(self) -> list:
        return list(self.errors)

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def open_page(name: str):
    """A :class:`ChromiumPage` or :class:`FirefoxPage`, or None when that browser (or its tooling) is missing."""
    if name == "chromium":
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        driver = shutil.which("chromedriver")
        try:
            import selenium  # noqa: F401
        except ImportError:
            return None
        return ChromiumPage(chromium, driver) if chromium and driver else None
    firefox = shutil.which("firefox") or shutil.which("firefox-esr")
    try:
        import websocket  # noqa: F401
    except ImportError:
        return None
    return FirefoxPage(firefox) if firefox else None
