"""The browser helper itself: a page with a console error, an uncaught exception or a network
request is reported as such; a clean page is not, and its screenshot is the whole page."""

import pytest

from stock_assets_tests.browser import Chromium, chromium_binary


@pytest.fixture
def browser():
    chrome = Chromium(chromium_binary())
    yield chrome
    chrome.close()


@pytest.mark.slow
def test_a_page_with_a_console_error_an_exception_and_a_network_request_has_those_problems(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><body><div id=x>hi</div><script>console.log('fine'); console.error('boom');"
        "fetch('https://cdn.example.com/lib.js').catch(() => {}); null.foo();</script>"
        "<img src='http://127.0.0.1:9/pixel.png'></body>"
    )
    browser.open(page.as_uri())
    assert browser.evaluate("document.getElementById('x').textContent") == "hi"
    for _ in range(100):  # the fetch is routed (and blocked) asynchronously
        if len(browser.blocked) >= 2:
            break
        browser.page.wait_for_timeout(50)
    problems = browser.problems()
    assert any("console.error: boom" in p for p in problems)
    assert any("exception:" in p and "null" in p for p in problems)
    assert not any("fine" in p for p in problems)
    assert "network (blocked): GET https://cdn.example.com/lib.js" in problems
    assert "network (blocked): GET http://127.0.0.1:9/pixel.png" in problems  # loopback too: nothing leaves
    assert {"https://cdn.example.com/lib.js", "http://127.0.0.1:9/pixel.png"} <= set(browser.requests())


@pytest.mark.slow
def test_a_clean_page_has_no_problems_and_screenshots_whole(browser, tmp_path):
    page = tmp_path / "clean.html"
    page.write_text("<!doctype html><body style='height:2000px'><h1>ok</h1><script>console.log('hello')</script></body>")
    browser.open(page.as_uri())
    assert browser.problems() == []
    assert {u.split(":", 1)[0] for u in browser.requests()} <= {"file", "data", "about"}
    shot = browser.screenshot(tmp_path / "clean.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(shot.read_bytes()[20:24], "big") >= 2000  # the full page's height, not the viewport's


@pytest.mark.slow
def test_an_allowed_origin_is_reached_and_nothing_else(tmp_path):
    import functools
    import http.server
    import threading

    (tmp_path / "index.html").write_text("<!doctype html><h1>served</h1><img src='http://127.0.0.1:9/other-port.png'>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    chrome = Chromium(chromium_binary(), allow=(origin,))
    try:
        chrome.open(f"{origin}/index.html")
        assert chrome.page.inner_text("h1") == "served"
        assert chrome.blocked == ["GET http://127.0.0.1:9/other-port.png"]  # same host, another port: blocked
    finally:
        chrome.close()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("ci", ["", "true"])
def test_without_chromium_the_tests_skip_loudly_and_fail_under_ci(monkeypatch, ci):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    if ci:
        monkeypatch.setenv("CI", ci)
    else:
        monkeypatch.delenv("CI", raising=False)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match="NO CHROMIUM"):
        chromium_binary()
