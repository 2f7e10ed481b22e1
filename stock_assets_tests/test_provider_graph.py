"""Real providers through the whole graph: a loopback server holds recorded payloads, the
run goes raw_prices -> ... -> redshift_table, and every bar in the window must arrive with
the payload's exact values. The API key is set in the environment and must leak nowhere."""

import dataclasses
import datetime as dt
import json

import dagster as dg
import duckdb
import pytest

from stock_assets.cli import materialize_range
from stock_assets_tests.conftest import defs_for, fixture_bytes
from stock_assets_tests.fake_api import Reply

KEY = "SEKRIT-KEY-4711"
MSFT_2019 = fixture_bytes("alphavantage/time_series_daily_MSFT_compact_demo_2019_stockpoint.json")
UNKNOWN = fixture_bytes("alphavantage/error_invalid_api_call_TIME_SERIES_DAILY_unknown_symbol.json")
POLYGON_AAPL = fixture_bytes("polygon/aggs_range_AAPL_1day_2023-01-01_2023-01-10_desc_openbb_cassette.json")


@pytest.fixture
def http_settings(settings, fake_api, monkeypatch):
    def for_provider(name: str, symbols: tuple[str, ...]):
        monkeypatch.setenv(f"{name.upper()}_API_KEY", KEY)
        return dataclasses.replace(
            settings, provider=name, symbols=symbols, provider_base_url=fake_api.url,
            requests_per_minute=6000, http_retries=1, http_backoff_seconds=0.01,
        )

    return for_provider


def prices(settings, symbol: str) -> list[tuple]:
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(
            "SELECT session::VARCHAR, open, high, low, close, volume, ts FROM prices WHERE symbol = ? ORDER BY session", [symbol]
        ).fetchall()


def run_text(instance, result) -> str:
    return "\n".join(str(record) for record in instance.all_logs(result.run_id))


@pytest.mark.slow
def test_alphavantage_window_lands_with_exact_values_and_partial_failure_repairs(http_settings, fake_api, instance):
    settings = http_settings("alphavantage", ("IBM", "MSFT"))
    fake_api.route("/query", MSFT_2019, symbol="MSFT")
    fake_api.route("/query", UNKNOWN, symbol="IBM")

    failed = materialize_range(defs_for(settings), "2019-06-03", "2019-06-28", instance)
    assert not failed.success  # the window would lack IBM: nothing is loaded or published
    assert len(fake_api.requests) == 2  # one request per symbol for the whole window, none retried
    [failure] = [e for e in failed.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    text = failure.event_specific_data.error.message
    assert failure.step_key == "raw_prices" and "IBM cannot be fetched" in text and "BadSymbolError" in text
    assert "a re-run fetches only IBM" in text and KEY not in run_text(instance, failed)
    assert not failed.get_asset_materialization_events()

    # The provider learns IBM; a re-run fetches IBM only and keeps MSFT's stored payload.
    fake_api.route("/query", MSFT_2019.replace(b'"MSFT"', b'"IBM"'), symbol="IBM")
    again = materialize_range(defs_for(settings), "2019-06-03", "2019-06-28", instance)
    assert again.success
    assert [r.query["symbol"] for r in fake_api.requests[2:]] == ["IBM"]

    series = json.loads(MSFT_2019)["Time Series (Daily)"]
    expected = [
        (day, float(bar["1. open"]), float(bar["2. high"]), float(bar["3. low"]), float(bar["4. close"]), int(bar["5. volume"]))
        for day, bar in sorted(series.items())
        if "2019-06-03" <= day <= "2019-06-28"
    ]
    got = prices(settings, "MSFT")
    assert [row[:6] for row in got] == expected and len(got) == 20
    assert got[0][6] == dt.datetime(2019, 6, 3, 4, tzinfo=dt.UTC)  # 00:00 New York
    assert [row[:6] for row in prices(settings, "IBM")] == expected
    complete = next(e for e in again.get_asset_check_evaluations() if e.check_name == "prices_complete")
    assert complete.passed
    assert KEY not in run_text(instance, again)


@pytest.mark.slow
def test_polygon_window_lands_with_exact_values(http_settings, fake_api, instance):
    settings = http_settings("polygon", ("AAPL",))
    fake_api.route("/v2/aggs/ticker/AAPL/range/1/day/2023-01-03/2023-01-06", POLYGON_AAPL)

    result = materialize_range(defs_for(settings), "2023-01-03", "2023-01-06", instance)
    assert result.success
    bars = json.loads(POLYGON_AAPL)["results"]
    expected = sorted(
        (dt.datetime.fromtimestamp(b["t"] / 1000, dt.UTC), b["o"], b["h"], b["l"], b["c"], int(b["v"]))
        for b in bars
        if b["t"] < dt.datetime(2023, 1, 7, tzinfo=dt.UTC).timestamp() * 1000
    )
    got = prices(settings, "AAPL")
    assert [(r[6], *r[1:6]) for r in got] == expected and len(got) == 4
    assert [r[0] for r in got] == ["2023-01-03", "2023-01-04", "2023-01-05", "2023-01-06"]
    request, *reference = fake_api.requests
    assert request.query["adjusted"] == "false" and [r.path for r in reference] == ["/v3/reference/splits", "/v3/reference/dividends"]
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in fake_api.requests)
    assert KEY not in run_text(instance, result)


def test_a_missing_key_is_a_clear_error(settings, instance, monkeypatch):
    monkeypatch.delenv("POLYGON_API_KEY", raising=False)
    result = materialize_range(defs_for(dataclasses.replace(settings, provider="polygon")), "2023-01-03", "2023-01-06", instance)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure.step_key == "raw_prices" and "set POLYGON_API_KEY in the environment" in failure.event_specific_data.error.message
    assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]  # no retry can mend it


def test_a_throttled_provider_is_waited_out(http_settings, fake_api, instance):
    settings = http_settings("alphavantage", ("MSFT",))
    fake_api.route("/query", Reply(b"busy", 503), MSFT_2019)
    assert materialize_range(defs_for(settings), "2019-07-01", "2019-07-03", instance).success
    assert len(fake_api.requests) == 2 and len(prices(settings, "MSFT")) == 3


def test_alphavantage_intraday_month_lands_at_bar_start(http_settings, fake_api, instance):
    settings = dataclasses.replace(http_settings("alphavantage", ("MSFT",)), interval="5min")
    body = fixture_bytes("alphavantage/time_series_intraday_5min_MSFT_demo_stockpoint.json")
    fake_api.route("/query", body, function="TIME_SERIES_INTRADAY", month="2019-08")

    assert materialize_range(defs_for(settings), "2019-08-01", "2019-08-02", instance).success
    [request] = fake_api.requests
    assert (request.query["interval"], request.query["outputsize"]) == ("5min", "full")
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT ts, open, close, volume FROM prices WHERE session = '2019-08-02' ORDER BY ts").fetchall()
        assert con.execute("SELECT count(*), count(DISTINCT session) FROM prices").fetchall() == [(100, 2)]
    series = json.loads(body)["Time Series (5min)"]
    first = series["2019-08-02 09:35:00"]  # labelled by its end: the bar that starts at 09:30
    assert rows[0] == (dt.datetime(2019, 8, 2, 13, 30, tzinfo=dt.UTC), float(first["1. open"]), float(first["4. close"]), int(first["5. volume"]))
    assert rows[-1][0] == dt.datetime(2019, 8, 2, 19, 55, tzinfo=dt.UTC)


@pytest.mark.slow
def test_alphavantage_csv_datatype_lands_the_same_way(http_settings, fake_api, instance):
    settings = dataclasses.replace(http_settings("alphavantage", ("IBM",)), alphavantage_datatype="csv")
    body = fixture_bytes("alphavantage/time_series_daily_IBM_datatype_csv_airbyte.csv")
    fake_api.route("/query", body, datatype="csv")

    assert materialize_range(defs_for(settings), "2026-10-01", "2026-10-05", instance).success
    expected = [line.split(",") for line in body.decode().splitlines()[1:]]
    expected = sorted((d, float(o), float(h), float(low), float(c), int(v)) for d, o, h, low, c, v in expected)
    assert [row[:6] for row in prices(settings, "IBM")] == expected
