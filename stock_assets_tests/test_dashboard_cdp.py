"""A tiny Chrome DevTools Protocol driver for Debian's chromium, over --remote-debugging-pipe
(no websocket library, no webdriver), and its own tests: a page with a console error, an
uncaught exception or a network request is reported as such.

Without chromium the tests skip with a loud reason; with CI set they fail instead.
"""

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: a page that needs the network fails visibly
)  # fmt: skip

# Chromium reads commands from fd 3 and writes replies to fd 4: put the pipe's ends there
# (via high numbers first, so neither end overwrites the other), then exec the browser.
LAUNCHER = (
    "import fcntl, os, sys\n"
    "ends = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]\n"
    "for target, fd in zip((3, 4), ends): os.dup2(fd, target)\n"
    "for fd in ends + [int(fd) for fd in sys.argv[1:3] if int(fd) not in (3, 4)]: os.close(fd)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def chromium_binary() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        reason = ("NO CHROMIUM: the dashboard was not opened in a browser. Install Debian's chromium "
                  "(apt-get install -y chromium); .ci/run installs it when missing.")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


class Chromium:
    """One headless browser and one page; every console message, exception and request is kept."""

    def __init__(self, binary: str, profile: Path, width: int = 1400, height: int = 900):
        to_chrome, self._commands = os.pipe()
        self._replies, from_chrome = os.pipe()
        args = [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(to_chrome), str(from_chrome), *args],
            pass_fds=(to_chrome, from_chrome), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer, self._next_id, self.events, self.session = b"", 0, [], None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if not select.select([self._replies], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, timeout: float = 30, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            seen = next((e for e in self.events if e.get("method") == method), None)
            if seen:
                return seen
            self.events.append(self._read(deadline))

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def poll(self, expression: str, timeout: float = 10):
        """The expression's value once it is truthy."""
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)) and time.monotonic() < deadline:
            time.sleep(0.05)
        return value

    def click(self, selector: str, text: str | None = None) -> None:
        """A real mouse click (pressed and released) at the centre of the first match."""
        box = self.evaluate(
            f"(() => {{ const e = [...document.querySelectorAll({json.dumps(selector)})]"
            f".find(e => {json.dumps(text)} === null || e.textContent === {json.dumps(text)});"
            " if (!e) return null; const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        if box is None:
            raise LookupError(f"nothing matches {selector} {text or ''}")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, error log entries."""
        found = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p["type"] in ("error", "warning", "assert"):
                found.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif method == "Runtime.exceptionThrown":
                details = p["exceptionDetails"]
                found.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                found.append(f"log: {p['entry']['text']}")
        return found

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path) -> Path:
        """The whole page, not just the viewport."""
        import base64

        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        self.send("Emulation.setDeviceMetricsOverride", width=int(size["width"]), height=int(size["height"]), deviceScaleFactor=1, mobile=False)
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]))
        return path

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


@pytest.fixture
def browser(tmp_path):
    chrome = Chromium(chromium_binary(), tmp_path / "profile")
    yield chrome
    chrome.close()


def test_the_driver_reports_console_errors_exceptions_and_network_requests(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><body><div id=x>hi</div><script>console.log('fine'); console.error('boom');"
        "fetch('https://cdn.example.com/lib.js').catch(() => {}); null.foo();</script></body>"
    )
    browser.open(page.as_uri())
    assert browser.evaluate("document.getElementById('x').textContent") == "hi"
    problems = browser.problems()
    assert any("console.error: boom" in p for p in problems)
    assert any("exception:" in p and "null" in p for p in problems)
    assert not any("fine" in p for p in problems)
    assert "https://cdn.example.com/lib.js" in browser.requests()


def test_a_clean_page_has_no_problems_and_screenshots(browser, tmp_path):
    page = tmp_path / "clean.html"
    page.write_text("<!doctype html><body style='height:2000px'><h1>ok</h1><script>console.log('hello')</script></body>")
    browser.open(page.as_uri())
    assert browser.problems() == []
    shot = browser.screenshot(tmp_path / "clean.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(shot.read_bytes()[20:24], "big") >= 2000  # the full page's height, not the viewport's
