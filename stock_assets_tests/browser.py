"""Headless Debian chromium driven by Playwright, offline: every request that is not to an
allowed origin (by default only file:, data:, about: and blob: URLs) is aborted and recorded, and
console errors and warnings, uncaught exceptions and those blocked requests are the page's
problems. Playwright's own browser builds are never downloaded: the system chromium is launched.

Without chromium (or Playwright) the tests skip with a loud reason; with CI set they fail instead.
Its own tests are in test_browser.py.
"""

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

LOCAL = ("file:", "data:", "about:", "blob:")
ARGS = ("--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--no-default-browser-check", "--hide-scrollbars")  # fmt: skip


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def chromium_binary() -> str:
    """The system chromium's path, once Playwright imports; else a loud skip (a failure under CI)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        _missing("NO CHROMIUM: no page was opened in a browser. Install Debian's chromium "
                 "(apt-get install -y chromium); .ci/run installs it when missing.")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("NO PLAYWRIGHT: no page was opened in a browser. Install the dev extra: "
                 "make install (pip install -e '.[dev]').")
    return binary


class Chromium:
    """One headless browser and one page; every console message, exception and request is kept.

    `allow` adds origins the page may reach (e.g. "http://127.0.0.1:3000"); everything else
    is aborted by the route below and, as a second wall, fails to resolve.
    """

    def __init__(self, binary: str, allow: tuple[str, ...] = (), width: int = 1400, height: int = 900):
        from playwright.sync_api import sync_playwright

        self.allowed = LOCAL + tuple(origin.rstrip("/") + "/" for origin in allow)  # :3000 never lets :30001 in
        hosts = sorted({urlsplit(origin).hostname for origin in allow} - {None})
        resolver = "MAP * ~NOTFOUND" + "".join(f", EXCLUDE {host}" for host in hosts)
        self._playwright = sync_playwright().start()
        try:
            self.browser = self._playwright.chromium.launch(
                executable_path=binary, headless=True, args=[*ARGS, f"--host-resolver-rules={resolver}"]
            )
            self.context = self.browser.new_context(viewport={"width": width, "height": height}, service_workers="block")
        except BaseException:
            self._playwright.stop()
            raise
        self.console, self.exceptions, self._requests, self.blocked = [], [], [], []
        self.context.route("**/*", self._route)
        self.context.on("console", lambda message: self.console.append(message))
        self.context.on("weberror", lambda error: self.exceptions.append(error.error))
        self.context.on("request", lambda request: self._requests.append(request.url))
        self.page = self.context.new_page()

    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith(self.allowed):
            route.continue_()
        else:
            self.blocked.append(f"{route.request.method} {url}")
            route.abort("blockedbyclient")

    def open(self, url: str, timeout: float = 30) -> None:
        self.page.goto(url, wait_until="load", timeout=timeout * 1000)

    def evaluate(self, expression: str):
        return self.page.evaluate(expression)

    def poll(self, expression: str, timeout: float = 10):
        """The expression's value once it is truthy; its last (falsy) value after the timeout."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            return self.page.wait_for_function(expression, timeout=timeout * 1000, polling=50).json_value()
        except PlaywrightTimeout:
            return self.evaluate(expression)

    def click(self, selector: str, text: str | None = None) -> None:
        """A real mouse click on the first match (whose whole text is `text`, if given)."""
        target = self.page.locator(selector)
        if text is not None:
            target = target.filter(has_text=re.compile(rf"^\s*{re.escape(text)}\s*$"))
        target.first.click(timeout=10_000)

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and every request that tried to leave."""
        found = [f"console.{m.type}: {m.text}" for m in self.console if m.type in ("error", "warning", "assert")]
        found += [f"exception: {e.name}: {e.message}" for e in self.exceptions]
        return found + [f"network (blocked): {request}" for request in self.blocked]

    def requests(self) -> list[str]:
        """Every URL the page asked for, allowed or blocked."""
        return list(self._requests)  # a request is reported before the route blocks it

    def screenshot(self, path: Path) -> Path:
        """The whole page, not just the viewport."""
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            self._playwright.stop()
