"""The hourly view: STOCK_ASSETS_INTERVAL=60min and seven sessions give hourly bars end to end
with the synthetic provider (lake, warehouse, indicators, checks, dashboard), as `make run
SESSIONS=7` does; and the rules that must not assume one bar a session: a bar's end is the
close when the close comes first, a split explains the first bar of its ex-date only, a dividend
is measured against the last close of the session before, volatility is annualized per bar."""

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from stock_assets.calendar import session_bounds
from stock_assets.lake import delta
from stock_assets.lake.storage import LakeStorage
from stock_assets.providers.synthetic import synthetic_bars
from stock_assets.reports.dashboard import render_dashboard
from stock_assets.reports.data import read_report_data
from stock_assets.restatement import closes_before
from stock_assets.settings import Settings
from stock_assets.transforms.actions import ACTIONS_SCHEMA, with_factors
from stock_assets.transforms.indicators import compute_indicators
from stock_assets.transforms.quality_window import jumps, partial_bars
from stock_assets.warehouse.warehouse import warehouse_for_url
from stock_assets_tests.browser import Chromium, chromium_binary
from stock_assets_tests.conftest import ROOT
from stock_assets_tests.test_cli import environment
from stock_assets_tests.test_grafana import grafana_sql, panel_queries

UTC = dt.UTC
BAR_COLUMNS = ["symbol", "session", "ts", "interval", "close", "adj_close", "split_coefficient", "ingested_at"]


def hourly(symbol: str, session: dt.date, closes: list[float], coefficient: float = 1.0, ingested_at: dt.datetime | None = None) -> pa.Table:
    """One session's 60min bars aligned on the open (09:30, 10:30, …), as every provider stamps them."""
    opened = session_bounds(session)[0]
    n = len(closes)
    return pa.table({
        "symbol": [symbol] * n, "session": pa.array([session] * n, pa.date32()),
        "ts": pa.array([opened + dt.timedelta(hours=k) for k in range(n)], pa.timestamp("us", tz="UTC")),
        "interval": ["60min"] * n, "close": pa.array(closes, pa.float64()), "adj_close": pa.nulls(n, pa.float64()),
        "split_coefficient": pa.array([coefficient] * n, pa.float64()),
        "ingested_at": pa.array([ingested_at or opened + dt.timedelta(days=1)] * n, pa.timestamp("us", tz="UTC")),
    })  # fmt: skip


def failing(report: pa.Table) -> dict[dt.date, float]:
    return {r["session"]: r["observed"] for r in report.to_pylist() if not r["passed"]}


def test_the_last_hourly_bar_ends_at_the_close_not_an_hour_after_its_start():
    regular, early = dt.date(2024, 3, 1), dt.date(2024, 11, 29)  # the day after Thanksgiving closes at 13:00
    closes = {s: session_bounds(s)[1] for s in (regular, early)}
    after_close = pa.concat_tables([hourly("AAPL", regular, [100.0] * 7, ingested_at=closes[regular] + dt.timedelta(minutes=5)),
                                    hourly("AAPL", early, [100.0] * 4, ingested_at=closes[early] + dt.timedelta(minutes=5))])  # fmt: skip
    assert failing(partial_bars(after_close, [regular, early], closes, "deduped_prices")) == {}
    before_close = hourly("AAPL", regular, [100.0] * 7, ingested_at=closes[regular] - dt.timedelta(minutes=1))
    assert failing(partial_bars(before_close, [regular], closes, "deduped_prices")) == {regular: 1}  # the 15:30 bar only


@pytest.mark.parametrize("in_order", [True, False], ids=["numpy", "duckdb"])
def test_a_split_explains_the_first_hourly_bar_of_its_ex_date_only(in_order):
    before, ex_date = dt.date(2024, 3, 1), dt.date(2024, 3, 4)
    previous = hourly("AAPL", before, [100.0, 100.5, 101.0, 100.8, 101.2, 101.0, 100.9])
    split = hourly("AAPL", ex_date, [50.6, 50.7, 50.5, 50.9, 50.8, 51.0, 51.1], coefficient=2.0)  # 2:1, every bar of the day says so
    window = split if in_order else split.take(list(range(6, -1, -1)))
    assert failing(jumps(window, previous, [ex_date], 0.25, "deduped_prices")) == {}
    jumped = hourly("AAPL", ex_date, [50.6, 50.7, 75.0, 75.2, 75.1, 75.0, 75.3], coefficient=2.0)  # +48 % at 11:30: no split explains that
    window = jumped if in_order else jumped.take(list(range(6, -1, -1)))
    assert failing(jumps(window, previous, [ex_date], 0.25, "deduped_prices")) == {ex_date: 1}


def test_a_dividend_is_measured_against_the_last_hourly_close_of_the_session_before(tmp_path):
    before, ex_date = dt.date(2024, 3, 1), dt.date(2024, 3, 4)
    window = pa.concat_tables([hourly("MSFT", before, [100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 110.0]), hourly("MSFT", ex_date, [109.0] * 7)])
    dividend = pa.Table.from_pylist([dict(symbol="MSFT", ex_date=ex_date, kind="dividend", value=1.1, source="synthetic",
                                          first_seen=dt.datetime(2024, 3, 5, tzinfo=UTC), factor=None)], schema=ACTIONS_SCHEMA)  # fmt: skip
    [action] = with_factors(dividend, closes_before(LakeStorage(str(tmp_path / "lake")), dividend, window)).to_pylist()
    assert action["factor"] == pytest.approx(1 - 1.1 / 110.0, rel=1e-15)  # the 15:30 bar's close: the session's close


def test_hourly_volatility_is_annualized_by_the_bars_of_a_year():
    rng = np.random.default_rng(5)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, 70)))
    sessions = [dt.date(2024, 3, 1) + dt.timedelta(days=d) for d in range(14)]
    sessions = [s for s in sessions if s.weekday() < 5][:10]
    bars = pa.concat_tables([hourly("IBM", s, list(close[7 * i:7 * i + 7])) for i, s in enumerate(sessions)])
    bars = bars.append_column("high", bars["close"]).append_column("low", bars["close"])
    got = compute_indicators(bars)["volatility_20"].to_numpy(zero_copy_only=False)
    log_return = np.diff(np.log(close))
    expected = np.std(log_return[-20:], ddof=1) * np.sqrt(252 * 7)
    assert got[-1] == pytest.approx(expected, rel=1e-12)


# --- The whole graph at 60min over seven sessions, as `make run SESSIONS=7` runs it ------------

NOW = "2024-12-03 22:00:00"  # UTC: 17:00 New York, Tuesday Dec 3 has closed
SESSIONS = [dt.date(2024, 11, d) for d in (22, 25, 26, 27, 29)] + [dt.date(2024, 12, 2), dt.date(2024, 12, 3)]
EARLY = dt.date(2024, 11, 29)  # closes at 13:00: four hourly bars; AMZN's dividend goes ex that day
UNIVERSE = ("AAPL", "MSFT", "NVDA", "IBM", "AMZN")  # the default


@pytest.fixture(scope="module")
def hourly_home(tmp_path_factory):
    """STOCK_ASSETS_INTERVAL=60min and nothing else: the CLI `make run SESSIONS=7` calls, under faketime."""
    home = tmp_path_factory.mktemp("hourly")
    return home, cli_run(home, 7, STOCK_ASSETS_INTERVAL="60min")


def cli_run(home, sessions: int, **env: str) -> str:
    """`make run SESSIONS=<sessions>`'s command in `home` at NOW, with `env` set: its printed summary."""
    done = subprocess.run(["faketime", NOW, sys.executable, "-m", "stock_assets.cli", "run", "--sessions", str(sessions)],
                          check=False, cwd=ROOT, env=environment(home, TZ="UTC", **env), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def query(home, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql, params).fetchall()


@pytest.mark.slow
def test_one_setting_gives_hourly_bars_of_the_last_seven_sessions_in_the_lake_and_the_warehouse(hourly_home):
    home, out = hourly_home
    assert "stock_assets: succeeded" in out and "2024-11-22 .. 2024-12-03 (7)" in out
    checks = re.findall(r"^    (\w+) +(.+)$", out.split("  checks:\n")[1], re.MULTILINE)
    assert len(checks) >= 12 and all(result == "passed" for _, result in checks), checks
    expected = {(s, d): 4 if d == EARLY else 7 for s in UNIVERSE for d in SESSIONS}  # bars per symbol and session
    with duckdb.connect() as con:  # the lake's table through its Delta log, as any reader reads it
        con.register("lake", delta.dataset(LakeStorage(str(home / "lake")), "lake/deduped"))
        got = con.sql("SELECT symbol, session, count(*), min(interval), max(interval) FROM lake GROUP BY ALL").fetchall()
    assert {(s, d): n for s, d, n, *_ in got} == expected and {i for *_, lo, hi in got for i in (lo, hi)} == {"60min"}
    assert {(s, d): n for s, d, n in query(home, "SELECT symbol, session, count(*) FROM prices GROUP BY ALL")} == expected
    assert query(home, "SELECT DISTINCT interval FROM prices") == [("60min",)]
    starts = query(home, "SELECT DISTINCT strftime(timezone('America/New_York', ts), '%H:%M') FROM prices ORDER BY 1")
    assert [s for (s,) in starts] == ["09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"]  # aligned on the open
    assert query(home, "SELECT count(*), bool_and(passed) FROM dq_report") == [(len(SESSIONS) * 12, True)]
    # The hourly bars are the seeds' own: each session's add up to its synthetic daily bar.
    bars = query(home, "SELECT symbol, session, arg_min(open, ts), max(high), min(low), arg_max(close, ts), sum(volume) FROM prices GROUP BY ALL")
    daily = {(s, dt.date.fromisoformat(r.date)): (r.open, r.high, r.low, r.close, r.volume)
             for s in UNIVERSE for r in synthetic_bars(s, SESSIONS).itertuples()}  # fmt: skip
    assert {(s, d): tuple(v) for s, d, *v in bars} == daily


@pytest.mark.slow
def test_a_dividend_on_an_hourly_ex_date_is_one_action_measured_against_the_close_before(hourly_home):
    home, _ = hourly_home
    [(value, factor)] = query(home, "SELECT value, factor FROM corporate_actions WHERE symbol = 'AMZN' AND ex_date = ?", [EARLY])
    [(close,)] = query(home, "SELECT arg_max(close, ts) FROM prices WHERE symbol = 'AMZN' AND session = '2024-11-27'")
    assert factor == pytest.approx(1 - value / close, rel=1e-12)
    adjusted = query(home, "SELECT session < ?, bool_and(abs(adj_close - close * ?) <= 1e-9 * close), bool_and(adj_close = close) "
                           "FROM prices WHERE symbol = 'AMZN' GROUP BY 1 ORDER BY 1", [EARLY, factor])  # fmt: skip
    assert adjusted == [(False, False, True), (True, True, False)]  # before the ex-date restated, from it on as traded


@pytest.mark.slow
def test_indicators_run_over_one_series_per_symbol_across_the_sessions(hourly_home):
    home, _ = hourly_home
    rows = query(home, "SELECT p.ts, p.adj_close, i.sma_7, i.volatility_20, i.pct_change FROM prices p JOIN indicators i USING (symbol, interval, ts) "
                       "WHERE symbol = 'AMZN' ORDER BY ts")  # fmt: skip
    assert len(rows) == query(home, "SELECT count(*) FROM prices WHERE symbol = 'AMZN'")[0][0] == 46
    price = np.array([r[1] for r in rows])
    assert [r[2] is None for r in rows[:7]] == [True] * 6 + [False]  # SMA 7 at the first session's last bar ...
    assert rows[7][2] == pytest.approx(price[1:8].mean(), rel=1e-12)  # ... and on, across the night, into the next session
    assert rows[8][4] == pytest.approx(price[8] / price[7] - 1, rel=1e-12)
    log_return = np.diff(np.log(price))
    assert rows[-1][3] == pytest.approx(np.std(log_return[-20:], ddof=1) * np.sqrt(252 * 7), rel=1e-9)


@pytest.mark.slow
def test_the_dashboard_draws_the_hourly_bars_at_new_york_time(hourly_home):
    home, out = hourly_home
    page = home / "reports" / "dashboard.html"
    assert f"  dashboard    {page}" in out
    data = read_report_data(warehouse_for_url(f"duckdb:///{home / 'warehouse.duckdb'}"), 250)
    assert (data.interval, data.first, data.last, data.not_loaded) == ("60min", SESSIONS[0], SESSIONS[-1], [])
    assert "7 NYSE sessions loaded: 2024-11-22 … 2024-12-03 · 5 symbols · 60min bars" in page.read_text()
    last = dict(query(home, "SELECT symbol, arg_max(adj_close, ts) FROM prices GROUP BY symbol"))
    browser = Chromium(chromium_binary())
    try:
        browser.open(page.as_uri())
        state = browser.evaluate(HOURLY_STATE)
        assert browser.problems() == []
    finally:
        browser.close()
    assert state["n"] == 46 and (state["first"], state["last"]) == ("2024-11-22T09:30:00.000000", "2024-12-03T15:30:00.000000")
    assert state["y"] == pytest.approx(last["AAPL"])
    assert "% change per bar" in state["titles"] and "Daily % change" not in state["titles"]


HOURLY_STATE = """(() => {
  const gd = document.querySelector('.js-plotly-plot');
  const price = gd._fullData.find(t => t.visible === true && t.name === 'price');
  const x = [...price.x].map(String);
  return {n: x.length, first: x[0], last: x[x.length - 1], y: price.y[price.y.length - 1],
          titles: [...document.querySelectorAll('.annotation-text')].map(e => e.textContent)};
})()"""


@pytest.mark.slow
def test_every_grafana_query_answers_for_the_hourly_interval(hourly_home):
    home, _ = hourly_home
    start, end = dt.datetime(2024, 11, 21, tzinfo=UTC), dt.datetime(2024, 12, 4, tzinfo=UTC)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        assert con.execute(panel_queries()["variable interval"]).fetchall() == [("60min",)]
        for title, sql in panel_queries().items():
            if "live_prices" in sql:
                continue  # today so far: test_grafana gives those a live_prices table
            cursor = con.execute(grafana_sql(sql, {"symbol": "AMZN", "interval": "60min"}, start, end))
            columns, rows = [d[0] for d in cursor.description], cursor.fetchall()
            assert rows, title
            if columns[0] == "time":
                assert [r[0] for r in rows] == sorted(r[0] for r in rows), title
                assert len(rows) >= (46 if "quality" not in title else 7), title  # a row per hourly bar (per session for the checks)


def make_home(checkout: Path, **env: str) -> Path:
    """The STOCK_ASSETS_HOME the Makefile exports when run in `checkout` with `env` (and no home set)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOCK_ASSETS_", "DAGSTER_"))} | env
    shown = subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "--eval", "show-home: ; @echo $$STOCK_ASSETS_HOME", "show-home"],
                           cwd=checkout, env=env, check=True, capture_output=True, text=True).stdout  # fmt: skip
    return Path(shown.strip())


@pytest.mark.slow
def test_the_hourly_view_has_a_home_of_its_own_beside_the_daily_history(tmp_path, monkeypatch):
    daily_home, hourly_home = make_home(tmp_path), make_home(tmp_path, STOCK_ASSETS_INTERVAL="60min")
    assert (daily_home, hourly_home) == (tmp_path / ".stock_assets", tmp_path / ".stock_assets" / "60min")
    monkeypatch.chdir(tmp_path)  # the CLI without make picks the same homes
    assert [Settings.from_env({"STOCK_ASSETS_INTERVAL": i}).home for i in ("1d", "60min")] == [daily_home, hourly_home]
    assert Settings.from_env({"STOCK_ASSETS_INTERVAL": "60min", "STOCK_ASSETS_HOME": str(tmp_path / "mine")}).home == tmp_path / "mine"

    cli_run(daily_home, 60)  # `make run`: 60 daily sessions
    daily = "SELECT * EXCLUDE (ingested_at) FROM prices ORDER BY ALL"
    before, page = query(daily_home, daily), (daily_home / "reports" / "dashboard.html").read_bytes()
    out = cli_run(hourly_home, 7, STOCK_ASSETS_INTERVAL="60min")  # then `STOCK_ASSETS_INTERVAL=60min make run SESSIONS=7`
    assert "stock_assets: succeeded" in out and str(hourly_home / "reports" / "dashboard.html") in out
    assert query(daily_home, daily) == before and len(before) == 60 * len(UNIVERSE)  # the daily history as it was
    assert (daily_home / "reports" / "dashboard.html").read_bytes() == page
    assert query(hourly_home, "SELECT interval, count(*) FROM prices GROUP BY ALL") == [("60min", len(UNIVERSE) * (6 * 7 + 4))]


@pytest.mark.slow
def test_the_page_shows_the_configured_interval_where_a_warehouse_holds_two(hourly_home, tmp_path):
    home, _ = hourly_home
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(home / "warehouse.duckdb", copy)
    with duckdb.connect(str(copy)) as con:  # as many rows labelled 1d: on a tie the page would pick 1d
        con.execute("INSERT INTO prices BY NAME SELECT * REPLACE ('1d' AS interval) FROM prices")
        assert con.execute("SELECT interval, count(*) FROM prices GROUP BY ALL ORDER BY 1").fetchall() == [("1d", 230), ("60min", 230)]
    store = warehouse_for_url(f"duckdb:///{copy}")
    assert render_dashboard(store, tmp_path / "a.html", interval="60min").data.interval == "60min"
    assert render_dashboard(store, tmp_path / "b.html").data.interval == "1d"  # unasked: the interval with most bars
