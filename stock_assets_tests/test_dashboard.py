"""The dashboard asset, for real: the whole graph materialized into a temporary home, then the
one HTML file it wrote opened in headless chromium (every panel drawn, the symbol picker
switches symbols, no console error, no network request), a full-page screenshot kept as a
test artifact; the PNG preview in its metadata decoded; the atomic write."""

import base64
import functools
import io
import os
import re
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest

from stock_assets.cli import materialize_range
from stock_assets.reports.figures import PANELS
from stock_assets.reports.page import write_atomic
from stock_assets.reports.resource import ReportsResource
from stock_assets.settings import Settings
from stock_assets_tests.browser import Chromium, chromium_binary
from stock_assets_tests.conftest import SYMBOLS, defs_for

FIRST, LAST = "2024-01-02", "2024-02-28"  # 40 sessions: MACD's signal is defined from the 34th


def defs_with_reports(settings: Settings) -> dg.Definitions:
    """The code location; `reports` bound to $home/reports if definitions.py does not bind it yet."""
    defs = defs_for(settings)
    if "reports" in (defs.resources or {}):
        return defs
    return dg.Definitions.merge(defs, dg.Definitions(resources={"reports": ReportsResource(directory=str(settings.home / "reports"))}))


def materialized_home(tmp: Path) -> tuple[Settings, dg.ExecuteInProcessResult]:
    settings = Settings(
        home=tmp, provider="synthetic", symbols=SYMBOLS, interval="1d", start="2012-01-03",
        lake_url=str(tmp / "lake"), warehouse_url=f"duckdb:///{tmp / 'warehouse.duckdb'}",
    )  # fmt: skip
    with dg.instance_for_test() as instance:
        result = materialize_range(defs_with_reports(settings), FIRST, LAST, instance)
    assert result.success
    return settings, result


def materialized_once(tmp_path_factory) -> tuple[Settings, dg.ExecuteInProcessResult]:
    """One graph run per test session, read (never written) by the dashboard and Grafana tests."""
    return _materialized(tmp_path_factory.getbasetemp())


@functools.cache
def _materialized(basetemp: Path) -> tuple[Settings, dg.ExecuteInProcessResult]:
    home = basetemp / "materialized"
    home.mkdir()
    return materialized_home(home)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return materialized_once(tmp_path_factory)


def dashboard_metadata(result) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "dashboard"]
    assert events, "the dashboard was not materialized"
    return events[0].step_materialization_data.materialization.metadata


def test_the_dashboard_is_one_self_contained_html_file_under_home_reports(home):
    settings, result = home
    page = settings.home / "reports" / "dashboard.html"
    metadata = dashboard_metadata(result)
    assert metadata["path"].value == str(page)
    assert sorted(p.name for p in page.parent.iterdir()) == ["dashboard.html"]  # no temporary file left behind
    text = page.read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", text)  # plotly.js is embedded, nothing is fetched
    assert "Plotly.newPlot" in text and metadata["bytes"].value == page.stat().st_size
    assert all(symbol in text for symbol in SYMBOLS)
    assert "Synthetic data" in text  # the synthetic provider is never mistaken for market data
    assert metadata["shown"].value == f"{FIRST}..{LAST}"


def decode_png(data: bytes) -> np.ndarray:
    """The PNG's RGB pixels, read by Pillow; it refuses a truncated or corrupt file."""
    from PIL import Image

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.mode == "RGB"
    return np.asarray(image)


def test_the_preview_is_a_png_line_per_symbol_the_ui_can_show(home):
    preview = dashboard_metadata(home[1])["preview"].value
    encoded = re.search(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", preview).group(1)
    image = decode_png(base64.b64decode(encoded))
    pixels = {bytes(p) for p in image.reshape(-1, 3)}
    assert {bytes([31, 119, 180]), bytes([255, 127, 14]), bytes([44, 160, 44])} <= pixels  # one color per symbol
    assert all(symbol in preview for symbol in SYMBOLS)  # legend and the latest-values table


PAGE_STATE = """(() => {
  const gd = document.querySelector('.js-plotly-plot');
  const price = gd._fullData.find(t => t.visible === true && t.name === 'price');  // decoded arrays
  return {
    plots: document.querySelectorAll('.js-plotly-plot').length,
    titles: [...document.querySelectorAll('.annotation-text')].map(e => e.textContent),
    lines: document.querySelectorAll('.scatterlayer .trace path.js-line').length,
    bars: document.querySelectorAll('.barlayer .trace .point').length,
    heatmaps: document.querySelectorAll('.hm image').length,
    menu: gd.layout.updatemenus[0].buttons.map(b => b.label),
    last_price: price.y[price.y.length - 1],
  };
})()"""



def test_the_dashboard_opens_offline_in_chromium_with_every_chart_and_no_error(home, tmp_path):
    settings, _ = home
    page = settings.home / "reports" / "dashboard.html"
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        latest = dict(con.execute(
            "SELECT symbol, coalesce(adj_close, close) FROM prices WHERE session = (SELECT max(session) FROM prices)").fetchall())
    browser = Chromium(chromium_binary())
    try:
        browser.open(page.as_uri())
        state = browser.evaluate(PAGE_STATE)
        assert state["plots"] == 1 and state["menu"] == sorted(SYMBOLS)
        assert [t for t, _ in PANELS] == [t for t in state["titles"] if t in dict(PANELS)]
        assert state["lines"] >= 10 and state["bars"] >= 100 and state["heatmaps"] == 2
        assert state["last_price"] == pytest.approx(latest[min(SYMBOLS)])
        browser.click(".updatemenu-header")  # open the symbol picker, pick MSFT, as a person would
        browser.click(".updatemenu-dropdown-button", "MSFT")
        switched = browser.poll(f"{PAGE_STATE}.last_price === {latest['MSFT']}")
        assert switched, "picking MSFT did not show MSFT's prices"
        assert browser.problems() == []
        assert {u.split(":", 1)[0] for u in browser.requests()} <= {"file", "data", "about"}  # nothing from a network
        artifacts = Path(os.environ.get("STOCK_ASSETS_TEST_ARTIFACTS") or tmp_path)
        artifacts.mkdir(parents=True, exist_ok=True)
        shot = browser.screenshot(artifacts / "dashboard.png")
    finally:
        browser.close()
    print(f"dashboard screenshot: {shot}")
    assert shot.stat().st_size > 50_000


def test_the_page_is_replaced_atomically(tmp_path):
    target = tmp_path / "reports" / "dashboard.html"
    write_atomic(target, "old")
    write_atomic(target, "new")
    assert target.read_text() == "new"
    with pytest.raises(TypeError):
        write_atomic(target, b"not text")  # a write that fails half-way
    assert target.read_text() == "new" and [p.name for p in target.parent.iterdir()] == ["dashboard.html"]
