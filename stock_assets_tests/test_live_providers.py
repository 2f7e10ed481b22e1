"""The session in progress from real providers, over HTTP to a loopback server: Alpha Vantage's
intraday series (no `month`, `entitlement=delayed`) and Polygon's aggregates for today (bars
only), each provider's `live_delay`, and `bars_so_far` keeping that session's bars ended by now
minus the delay. The payloads copy the recorded ones' shape (fixtures/alphavantage/
time_series_intraday_5min_IBM_2020-05-08_crazzyghost.json and its CSV sibling, fixtures/polygon/
aggs_range_AAPL_1day_2023-01-01_2023-01-10_asc_openbb_cassette_2024recording.json); their
numbers are the synthetic market's. csvdir has no live prices and says so."""

import dataclasses
import datetime as dt
import json
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pytest

from stock_assets import clock
from stock_assets.lake.storage import LakeStorage
from stock_assets.providers.alphavantage import plan_requests
from stock_assets.providers.csvdir import CsvDirProvider
from stock_assets.providers.live_bars import bars_so_far, in_progress
from stock_assets.providers.registry import parse_payload
from stock_assets.providers.resource import provider_resource
from stock_assets.providers.synthetic import synthetic_intraday
from stock_assets_tests.conftest import fixture_bytes
from stock_assets_tests.test_provider_graph import KEY, http_settings  # noqa: F401 (fixture)

NY = ZoneInfo("America/New_York")
TODAY, YESTERDAY = dt.date(2026, 10, 13), dt.date(2026, 10, 12)
ELEVEN = dt.datetime(2026, 10, 13, 11, 0, tzinfo=NY)
AS_OF = dt.datetime(2026, 10, 13, 10, 45, tzinfo=NY)  # 11:00 minus the 15-minute delay
FIELDS = ("open", "high", "low", "close", "volume")


def market(symbol: str, session: dt.date, first: str, last: str) -> pd.DataFrame:
    """The synthetic market's 5min bars of `session` from `first` to `last` (New York times), as a
    feed would send them: the bar at `last` still forming."""
    bars = synthetic_intraday(symbol, session, "5min")
    start = pd.date_range(f"{session} {first}", f"{session} {last}", freq="5min", tz=NY)
    bars = bars.set_index(bars["ts"].dt.tz_convert(NY)).reindex(start)
    return bars.ffill().bfill().assign(ts=start)  # before the open: the first bar's prices, as quiet trading


def alphavantage_body(symbol: str, datatype: str) -> bytes:
    """A compact 5min answer at 11:00 with the 15-minute delay: yesterday's last hour, then today up
    to the bar opening at 10:45, newest first, labelled by their start (as since 2023)."""
    bars = pd.concat([market(symbol, YESTERDAY, "15:00", "15:55"), market(symbol, TODAY, "09:30", "10:45")]).iloc[::-1]
    labels = bars["ts"].dt.strftime("%Y-%m-%d %H:%M:%S")
    if datatype == "csv":
        rows = [f"{t},{b.open:.4f},{b.high:.4f},{b.low:.4f},{b.close:.4f},{int(b.volume)}" for t, b in zip(labels, bars.itertuples())]
        return ("timestamp,open,high,low,close,volume\r\n" + "\r\n".join(rows) + "\r\n").encode()
    series = {t: {"1. open": f"{b.open:.4f}", "2. high": f"{b.high:.4f}", "3. low": f"{b.low:.4f}", "4. close": f"{b.close:.4f}",
                  "5. volume": str(int(b.volume))} for t, b in zip(labels, bars.itertuples())}  # fmt: skip
    meta = {"1. Information": "Intraday (5min) open, high, low, close prices and volume", "2. Symbol": symbol,
            "3. Last Refreshed": "2026-10-13 10:45:00", "4. Interval": "5min", "5. Output Size": "Compact", "6. Time Zone": "US/Eastern"}  # fmt: skip
    return json.dumps({"Meta Data": meta, "Time Series (5min)": series}, indent=4).encode()


def polygon_body(symbol: str, status: str = "DELAYED") -> bytes:
    """Today's 5-minute aggregates at 11:00 with the 15-minute delay: from 08:00 (pre-market) to
    the bar opening at 10:45, oldest first, `t` in epoch milliseconds at the bar start."""
    bars = market(symbol, TODAY, "08:00", "10:45")
    results = [{"v": float(b.volume), "vw": round((b.high + b.low + b.close) / 3, 4), "o": b.open, "c": b.close, "h": b.high, "l": b.low,
                "t": int(b.ts.timestamp() * 1000), "n": int(b.volume // 120)} for b in bars.itertuples()]  # fmt: skip
    n = len(results)
    return json.dumps({"ticker": symbol, "queryCount": n, "resultsCount": n, "adjusted": False, "results": results, "status": status,
                       "request_id": "fixture-live-5min", "count": n}).encode()  # fmt: skip


def expected(symbol: str) -> list[tuple]:
    """Today's bars the refresh at 11:00 may show: 09:30 to the one ending 10:45."""
    bars = synthetic_intraday(symbol, TODAY, "5min")
    bars = bars[bars["ts"] + pd.Timedelta(minutes=5) <= pd.Timestamp(AS_OF)]
    return [(t.to_pydatetime(), *(round(getattr(b, f), 4) for f in FIELDS[:4]), int(b.volume)) for t, b in zip(bars["ts"], bars.itertuples())]


def rows(table: pa.Table, symbol: str) -> list[tuple]:
    frame = table.to_pandas()
    frame = frame[frame["symbol"] == symbol]
    return [(t.to_pydatetime(), *(getattr(b, f) for f in FIELDS)) for t, b in zip(frame["ts"], frame.itertuples())]


def client(http_settings, provider: str, symbols: tuple[str, ...], **settings):  # noqa: F811
    return provider_resource(dataclasses.replace(http_settings(provider, symbols), **settings)).client()


@pytest.mark.parametrize("datatype", ["json", "csv"])
def test_alphavantage_today_so_far_at_eleven(http_settings, fake_api, datatype):  # noqa: F811
    for symbol in ("IBM", "MSFT"):
        fake_api.route("/query", alphavantage_body(symbol, datatype), symbol=symbol)
    provider = client(http_settings, "alphavantage", ("IBM", "MSFT"), alphavantage_datatype=datatype)
    assert provider.live_delay == dt.timedelta(minutes=15)
    clock.shift_to(ELEVEN)  # the provider reads the pipeline's clock
    try:
        result = provider.fetch(["IBM", "MSFT"], [TODAY], "5min")
    finally:
        clock.reset()
    assert result.failures == {} and [p.symbol for p in result.payloads] == ["IBM", "MSFT"]
    assert [r.query for r in fake_api.requests] == [
        {"function": "TIME_SERIES_INTRADAY", "symbol": s, "interval": "5min", "outputsize": "compact", "adjusted": "false",
         "extended_hours": "false", "datatype": datatype, "entitlement": "delayed", "apikey": KEY} for s in ("IBM", "MSFT")
    ]  # fmt: skip
    assert all(abs(p.ingested_at - ELEVEN) < dt.timedelta(seconds=30) and p.ingested_at.tzinfo == dt.UTC for p in result.payloads)
    bars = pa.concat_tables([parse_payload(p) for p in result.payloads])
    assert YESTERDAY in set(bars["session"].to_pylist())  # compact reaches back: the cut is what keeps today
    so_far = bars_so_far(bars, TODAY, ELEVEN - provider.live_delay)
    for symbol in ("IBM", "MSFT"):
        assert rows(so_far, symbol) == expected(symbol) and len(expected(symbol)) == 15  # 09:30 .. 10:40
    assert max(so_far["ts"].to_pylist()) == dt.datetime(2026, 10, 13, 10, 40, tzinfo=NY)


def test_alphavantage_asks_for_the_session_in_progress_without_month():
    one_minute = plan_requests("IBM", [TODAY], "1min", False, "json", ELEVEN)
    assert [(r["outputsize"], r.get("month"), r.get("entitlement")) for r in one_minute] == [("full", None, "delayed")]  # 390 bars > 100
    hourly = plan_requests("IBM", [YESTERDAY, TODAY], "60min", False, "json", ELEVEN)
    assert [(r["outputsize"], r.get("month"), r.get("entitlement")) for r in hourly] == [("full", "2026-10", None), ("compact", None, "delayed")]
    def asked(hour: int, minute: int) -> list[tuple]:
        now = dt.datetime(2026, 10, 13, hour, minute, tzinfo=NY)
        return [(r.get("month"), r.get("entitlement")) for r in plan_requests("IBM", [TODAY], "5min", False, "json", now)]

    assert asked(16, 10) == asked(16, 15) == [(None, "delayed")]  # the delayed feed reaches the close at 16:15
    assert asked(16, 16) == asked(18, 30) == [("2026-10", None)]  # history, as before


def test_polygon_today_so_far_at_eleven(http_settings, fake_api):  # noqa: F811
    fake_api.route("/v2/aggs/ticker/AAPL/range/5/minute/2026-10-13/2026-10-13", polygon_body("AAPL"))
    fake_api.route("/v2/aggs/ticker/NVDA/range/5/minute/2026-10-13/2026-10-13", polygon_body("NVDA", status="OK"))
    provider = client(http_settings, "polygon", ("AAPL", "NVDA"))
    provider.clock = lambda: ELEVEN
    assert provider.live_delay == dt.timedelta(minutes=15)
    result = provider.fetch(["AAPL", "NVDA"], [TODAY], "5min")
    assert result.failures == {} and [(p.symbol, p.interval) for p in result.payloads] == [("AAPL", "5min"), ("NVDA", "5min")]
    assert [(r.path, r.query) for r in fake_api.requests] == [
        (f"/v2/aggs/ticker/{s}/range/5/minute/2026-10-13/2026-10-13", {"adjusted": "false", "sort": "asc", "limit": "50000"}) for s in ("AAPL", "NVDA")
    ]  # no splits or dividends asked: live prices are as traded  # fmt: skip
    assert fake_api.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    bars = pa.concat_tables([parse_payload(p) for p in result.payloads])
    so_far = bars_so_far(bars, TODAY, ELEVEN - provider.live_delay)
    for symbol in ("AAPL", "NVDA"):  # pre-market and the bar still forming left out
        assert rows(so_far, symbol) == expected(symbol) and len(expected(symbol)) == 15
    assert so_far["vwap"].null_count == 0 and so_far["trades"].null_count == 0


def test_polygon_early_in_the_session_has_no_bar_yet_and_nothing_failed(http_settings, fake_api):  # noqa: F811
    empty = json.loads(fixture_bytes("polygon/empty_results_null_intermittent_2020.json"))
    fake_api.route("/v2/aggs/ticker/AAPL/range/5/minute/2026-10-13/2026-10-13", json.dumps(empty | {"adjusted": False}).encode())
    provider = client(http_settings, "polygon", ("AAPL",))
    provider.clock = lambda: dt.datetime(2026, 10, 13, 9, 45, tzinfo=NY)  # the delayed feed is at the open
    result = provider.fetch(["AAPL"], [TODAY], "5min")
    assert result.payloads == [] and result.failures == {} and len(fake_api.requests) == 1  # no retry spent


def test_polygon_free_plan_refuses_today_by_name(http_settings, fake_api):  # noqa: F811
    fake_api.route("/v2/aggs/ticker/AAPL", fixture_bytes("polygon/error_not_authorized_plan_timeframe_future_date.json"))
    provider = client(http_settings, "polygon", ("AAPL",))
    provider.clock = lambda: ELEVEN
    result = provider.fetch(["AAPL"], [TODAY], "5min")
    assert result.permanent == {"AAPL"} and len(fake_api.requests) == 1
    assert result.failures["AAPL"] == "PremiumEndpointError: polygon AAPL: NOT_AUTHORIZED: Your plan doesn't include this data timeframe. " \
                                      "Please upgrade your plan at https://polygon.io/pricing"  # fmt: skip


def test_polygon_is_live_until_its_feed_reaches_the_close_then_history_with_its_actions(http_settings, fake_api):  # noqa: F811
    fake_api.route("/v2/aggs/ticker/AAPL/range/5/minute/2026-10-13/2026-10-13", polygon_body("AAPL", status="OK"))
    provider = client(http_settings, "polygon", ("AAPL",))
    provider.clock = lambda: dt.datetime(2026, 10, 13, 16, 10, tzinfo=NY)
    assert [p.interval for p in provider.fetch(["AAPL"], [TODAY], "5min").payloads] == ["5min"]
    provider.clock = lambda: dt.datetime(2026, 10, 13, 18, 30, tzinfo=NY)
    assert [p.interval for p in provider.fetch(["AAPL"], [TODAY], "5min").payloads] == ["5min", "splits", "dividends"]


def test_every_provider_states_its_live_delay(settings, http_settings, tmp_path):  # noqa: F811
    delays = {name: client(http_settings, name, ("AAPL",)).live_delay for name in ("alphavantage", "polygon")}
    delays["synthetic"] = provider_resource(settings).client().live_delay
    delays["csvdir"] = provider_resource(dataclasses.replace(settings, provider="csvdir", csvdir_url=str(tmp_path))).client().live_delay
    assert delays == {"alphavantage": dt.timedelta(minutes=15), "polygon": dt.timedelta(minutes=15), "synthetic": dt.timedelta(0),
                      "csvdir": dt.timedelta(0)}  # fmt: skip


def test_csvdir_has_no_live_prices_and_says_so(tmp_path):
    (tmp_path / "AAPL.csv").write_text("symbol,date,open,high,low,close,volume\nAAPL,2026-10-12,1,1,1,1,1\n")
    result = CsvDirProvider(LakeStorage(str(tmp_path)), clock=lambda: ELEVEN).fetch(["AAPL", "MSFT"], [TODAY], "5min")
    assert result.payloads == [] and result.permanent == {"AAPL", "MSFT"}
    assert result.failures["MSFT"] == (
        "NoLivePricesError: csvdir MSFT: no live prices: csvdir reads archived daily files, with no bar of the session in progress "
        "(2026-10-13); live_prices needs STOCK_ASSETS_PROVIDER=synthetic, alphavantage or polygon")  # fmt: skip


def test_bars_so_far_keeps_the_regular_hours_bars_ended_by_then():
    """An hour bar of a feed aligned on the clock (09:00-10:00) overlaps the open: kept once ended;
    the last one ends at an early close; daily bars and other sessions are left out."""
    assert in_progress(TODAY, ELEVEN) and in_progress(TODAY, dt.datetime(2026, 10, 13, 16, 0, tzinfo=NY))  # the close: the last refresh
    assert not in_progress(TODAY, dt.datetime(2026, 10, 13, 9, 29, tzinfo=NY)) and not in_progress(TODAY, dt.datetime(2026, 10, 13, 16, 1, tzinfo=NY))
    early = dt.date(2026, 11, 27)
    starts = [dt.datetime(2026, 11, 27, h, 0, tzinfo=NY) for h in (8, 9, 10, 11, 12, 13)]
    table = pa.table({
        "symbol": ["X"] * 7, "session": [early] * 6 + [TODAY], "ts": [*starts, ELEVEN], "interval": ["60min"] * 5 + ["1d", "60min"],
    })  # fmt: skip
    cut = bars_so_far(table, early, dt.datetime(2026, 11, 27, 13, 0, tzinfo=NY))
    assert [t.astimezone(NY).hour for t in cut["ts"].to_pylist()] == [9, 10, 11, 12]  # 12:00-13:00 ends at the 13:00 close
    assert bars_so_far(table, early, dt.datetime(2026, 11, 27, 12, 59, tzinfo=NY)).num_rows == 3
