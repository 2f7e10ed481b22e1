"""The dashboard asset, for real: the whole graph materialized into a temporary home, then the
one HTML file it wrote opened in headless chromium (every panel drawn, the symbol picker
switches symbols, no console error, no network request), a full-page screenshot kept as a
test artifact; the PNG preview in its metadata decoded; the atomic write. Today so far: a
copy of that warehouse given a `live_prices` table, re-rendered by render_dashboard."""

import base64
import datetime as dt
import functools
import io
import os
import re
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pyarrow as pa
import pytest

from stock_assets import live as live_refresh
from stock_assets.calendar import session_bounds
from stock_assets.cli import materialize_range
from stock_assets.lake.storage import LakeStorage
from stock_assets.providers.synthetic import SyntheticProvider
from stock_assets.reports.dashboard import render_dashboard
from stock_assets.reports.figures import PANELS
from stock_assets.reports.page import write_atomic
from stock_assets.reports.resource import ReportsResource
from stock_assets.settings import Settings
from stock_assets.warehouse.warehouse import warehouse_for_url
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


@pytest.mark.slow
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


@pytest.mark.slow
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



@pytest.mark.slow
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


# --- Today so far: the warehouse table live_prices beside history --------------------------

LIVE_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("session", pa.date32()), ("ts", pa.timestamp("us", tz="UTC")), ("interval", pa.string()),
    ("open", pa.float64()), ("high", pa.float64()), ("low", pa.float64()), ("close", pa.float64()), ("volume", pa.int64()),
    ("vwap", pa.float64()), ("trades", pa.int64()), ("source", pa.string()), ("as_of", pa.timestamp("us", tz="UTC")),
])  # fmt: skip
LIVE_SESSION = dt.date(2024, 2, 29)  # the session after the materialized history
LIVE_AS_OF = dt.datetime(2024, 2, 29, 16, 0, tzinfo=dt.UTC)  # 11:00 New York (EST)


def live_rows(first_prices: dict[str, float], session: dt.date = LIVE_SESSION, as_of: dt.datetime = LIVE_AS_OF, minutes: int = 5) -> pa.Table:
    """live_prices as a refresh writes it: per symbol, the `minutes` bars of `session` that ended by
    `as_of` (opening at first_prices[symbol], 0.1 % up a bar) and the partial daily bar they make."""
    opened = session_bounds(session)[0]
    starts = [opened + dt.timedelta(minutes=minutes * k) for k in range(int((as_of - opened).total_seconds()) // (60 * minutes))]
    rows = []
    for symbol, price in first_prices.items():
        bars = [dict(symbol=symbol, session=session, ts=t, interval=f"{minutes}min", open=price * 1.001**k, high=price * 1.001**k * 1.0015,
                     low=price * 1.001**k * 0.999, close=price * 1.001 ** (k + 1), volume=1000 + k) for k, t in enumerate(starts)]  # fmt: skip
        daily = dict(symbol=symbol, session=session, ts=opened, interval="1d", open=bars[0]["open"], high=max(b["high"] for b in bars),
                     low=min(b["low"] for b in bars), close=bars[-1]["close"], volume=sum(b["volume"] for b in bars))  # fmt: skip
        rows += [r | dict(vwap=None, trades=None, source="synthetic", as_of=as_of) for r in (*bars, daily)]
    return pa.Table.from_pylist(rows, schema=LIVE_SCHEMA)


def warehouse_copy(settings: Settings, target: Path, live: pa.Table | None) -> Path:
    """A copy of the materialized warehouse (the shared one stays as it is), with `live` as live_prices."""
    copy = target / "warehouse.duckdb"
    shutil.copy(settings.home / "warehouse.duckdb", copy)
    if live is not None:
        with duckdb.connect(str(copy)) as con:
            con.register("live", live)
            con.execute("CREATE TABLE live_prices AS SELECT * FROM live")
    return copy


def last_closes(warehouse: Path) -> dict[str, float]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return dict(con.execute("SELECT symbol, close FROM prices WHERE session = (SELECT max(session) FROM prices)").fetchall())


TODAY_TRACE = """(() => {
  const gd = document.querySelector('.js-plotly-plot');
  const today = gd._fullData.filter(t => t.visible === true && t.name.startsWith('today so far'));
  return today.map(t => ({name: t.name, x: [...t.x].map(String), y: [...t.y]}));
})()"""


@pytest.mark.slow
def test_today_so_far_as_of_new_york_time_is_beside_history_and_follows_the_symbol_picker(home, tmp_path):
    settings, _ = home
    closes = last_closes(settings.home / "warehouse.duckdb")
    live = live_rows(closes)
    copy = warehouse_copy(settings, tmp_path, live)
    page = render_dashboard(warehouse_for_url(f"duckdb:///{copy}"), tmp_path / "dashboard.html")
    assert page.today is not None and (page.today.session, page.today.label) == (LIVE_SESSION, "11:00")
    assert page.today.interval == "5min" and len(page.today.bars) == 18 * len(SYMBOLS)  # 09:30 .. 10:55, every one ended by 11:00
    text = page.path.read_text()
    assert "<h2>Today so far, as of 11:00 New York</h2>" in text and "Session 2024-02-29 in progress" in text
    daily = {r["symbol"]: r for r in live.to_pylist() if r["interval"] == "1d"}
    table = re.search(r"Today so far.*?(<table.*?</table>)", text, re.DOTALL).group(1)
    for symbol in SYMBOLS:  # the price so far and its move from the last final close, per symbol
        row = re.search(rf"<th>{symbol}</th>(.*?)</tr>", table, re.DOTALL).group(1)
        cells = [float(c) for c in re.findall(r"<td>([-\d.]+)</td>", row)]
        assert cells[:2] == [round(daily[symbol]["close"], 2), round(100 * (daily[symbol]["close"] / closes[symbol] - 1), 2)]
    browser = Chromium(chromium_binary())
    try:
        browser.open(page.path.as_uri())
        [shown] = browser.evaluate(TODAY_TRACE)
        assert shown["name"] == "today so far, as of 11:00"
        assert shown["x"] == ["2024-02-29"] and shown["y"] == [pytest.approx(daily[min(SYMBOLS)]["close"])]  # daily history: the partial bar
        browser.click(".updatemenu-header")
        browser.click(".updatemenu-dropdown-button", "MSFT")
        assert browser.poll(f"{TODAY_TRACE}[0].y[0] === {daily['MSFT']['close']}"), "picking MSFT did not show MSFT's day so far"
        assert browser.problems() == []
    finally:
        browser.close()


@pytest.mark.slow
def test_no_live_prices_table_no_rows_or_only_final_sessions_show_nothing_of_today(home, tmp_path):
    settings, _ = home
    closes = last_closes(settings.home / "warehouse.duckdb")
    final = live_rows(closes, session=dt.date(2024, 2, 28), as_of=dt.datetime(2024, 2, 28, 16, 0, tzinfo=dt.UTC))  # loaded since
    for case, live in {"no table": None, "empty": LIVE_SCHEMA.empty_table(), "final bars loaded": final}.items():
        folder = tmp_path / case.replace(" ", "_")
        folder.mkdir()
        copy = warehouse_copy(settings, folder, live)
        page = render_dashboard(warehouse_for_url(f"duckdb:///{copy}"), folder / "dashboard.html")
        text = page.path.read_text()
        assert page.today is None and "Today so far" not in text and "today so far" not in text, case
        assert "<h2>Latest bar per symbol</h2>" in text and "Plotly.newPlot" in text, case


@pytest.mark.slow
def test_a_live_refresh_of_the_synthetic_market_is_drawn_beside_history(home, tmp_path):
    """The live refresh's own rows (stock_assets.live at 11:00 New York, synthetic provider), stored
    as it stores them, then the page drawn as it draws it."""
    assert live_refresh.LIVE_SCHEMA == LIVE_SCHEMA  # the rows the other tests write are the refresh's
    settings, _ = home
    rows = live_refresh.refresh(SyntheticProvider(clock=lambda: LIVE_AS_OF), SYMBOLS, "5min", LIVE_AS_OF)
    store = warehouse_for_url(f"duckdb:///{warehouse_copy(settings, tmp_path, None)}")
    live_refresh.store_live(LakeStorage(str(tmp_path / "lake")), store, rows)
    page = render_dashboard(store, tmp_path / "dashboard.html", interval="1d")
    assert (page.today.session, page.today.label, page.today.interval) == (LIVE_SESSION, "11:00", "5min")
    assert sorted(page.today.daily.index) == sorted(SYMBOLS) and len(page.today.bars) == 18 * len(SYMBOLS)
    daily = {r["symbol"]: r["close"] for r in rows.to_pylist() if r["interval"] == "1d"}
    assert page.today.daily["close"].to_dict() == daily
    assert "<h2>Today so far, as of 11:00 New York</h2>" in page.path.read_text()


def test_an_older_range_backfilled_leaves_the_page_on_the_loaded_history(tmp_path):
    """A newcomer's path: the latest 60 sessions, then a backfill of an older quarter. The page
    shows the 60 (the 250 sessions back from the newest held 190 never loaded), and the older
    quarter is outside it: nothing on the page is 'not loaded'."""
    from stock_assets.calendar import sessions_between
    from stock_assets.providers.registry import parse_payload
    from stock_assets.transforms.indicators import compute_indicators

    store = warehouse_for_url(f"duckdb:///{tmp_path / 'w.duckdb'}")
    recent, older = sessions_between("2026-06-01", "2026-08-25"), sessions_between("2024-01-02", "2024-03-28")
    for window in (recent, older):
        payloads = SyntheticProvider(clock=lambda: dt.datetime(2026, 12, 1, tzinfo=dt.UTC)).fetch(["AAPL", "MSFT"], window, "1d").payloads
        bars = pa.concat_tables([parse_payload(p) for p in payloads])
        store.replace_window("prices", bars, window[0], window[-1])
        store.replace_window("indicators", compute_indicators(bars), window[0], window[-1])
    page = render_dashboard(store, tmp_path / "dashboard.html")
    assert len(recent) == 60 and (page.data.first, page.data.last) == (recent[0], recent[-1])
    assert page.data.sessions == recent and page.data.not_loaded == []
    assert "Not loaded" not in page.path.read_text()
