"""Alpha Vantage and Polygon body parsers, checked bar by bar against recorded payloads (fixtures/SOURCES.md)."""

import csv
import datetime as dt
import io
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from stock_assets.providers.alphavantage_format import check_alphavantage_body, parse_alphavantage
from stock_assets.providers.errors import (
    BadKeyError,
    BadSymbolError,
    EmptyResultError,
    MalformedPayloadError,
    PremiumEndpointError,
    ProviderError,
    ThrottledError,
)
from stock_assets.providers.polygon_format import parse_polygon
from stock_assets.schema import BAR_SCHEMA, InvalidSymbolError

FIXTURES = Path(__file__).parent / "fixtures"
NY, UTC = ZoneInfo("America/New_York"), dt.UTC
INGESTED = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)  # after AV switched to start labels
IN_2020 = dt.datetime(2020, 5, 8, 18, 10, tzinfo=UTC)  # before
OHLC = ("open", "high", "low", "close")


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def av(name: str, symbol: str, interval: str = "1d", ingested_at: dt.datetime = INGESTED) -> pa.Table:
    path = FIXTURES / "alphavantage" / name
    return parse_alphavantage(path.read_bytes(), path.suffix[1:], symbol, interval, ingested_at)


def av_expected(name: str) -> list[tuple[str, dict]]:
    """(label, fields) per bar, read independently of the parser, oldest first; JSON keys as CSV names."""
    path = FIXTURES / "alphavantage" / name
    if path.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        return sorted((row.pop("timestamp", None) or row.pop("time"), row) for row in rows)
    series = next(v for k, v in json.loads(path.read_bytes()).items() if k.startswith("Time Series"))
    rename = {k: k.split(". ", 1)[1].replace(" ", "_") for bar in series.values() for k in bar}
    return sorted((label, {rename[k]: v for k, v in bar.items()}) for label, bar in series.items())


def _float(value: str | None) -> float | None:
    return None if value is None else float(value)


AV_CASES = [  # file, symbol, interval, ingested_at, minutes to subtract from each label (end-labelled)
    ("time_series_daily_IBM_2020-05-08_crazzyghost.json", "IBM", "1d", INGESTED, 0),
    ("time_series_daily_MSFT_compact_demo_2019_stockpoint.json", "MSFT", "1d", INGESTED, 0),
    ("time_series_daily_adjusted_IBM_2020-05-08_dividend_crazzyghost.json", "IBM", "1d", INGESTED, 0),
    ("time_series_daily_adjusted_MSFT_compact_demo_2019_stockpoint.json", "MSFT", "1d", INGESTED, 0),
    ("time_series_daily_adjusted_AAPL_compact_2021-07-23_visvol.json", "AAPL", "1d", INGESTED, 0),
    ("time_series_daily_IBM_datatype_csv_airbyte.csv", "IBM", "1d", INGESTED, 0),
    ("time_series_intraday_5min_MSFT_demo_stockpoint.json", "MSFT", "5min", INGESTED, 5),  # 16:00, no 09:30
    ("time_series_intraday_5min_TSLA_2021-07-23_extended_hours_visvol.json", "TSLA", "5min", INGESTED, 5),  # 20:00
    ("time_series_intraday_extended_csv_2020-12-18_romeltorres.csv", "MSFT", "1min", INGESTED, 1),  # 20:00, CRLF
    ("time_series_intraday_15min_AAPL_2023-01-03_04_csv_excerpt_openbb_cassette.csv", "AAPL", "15min", IN_2020, 0),
    # Mid-session slices touch no session boundary: judged by when they were fetched.
    ("time_series_intraday_5min_IBM_2020-05-08_crazzyghost.json", "IBM", "5min", IN_2020, 5),
    ("time_series_intraday_5min_IBM_2020-05-08_crazzyghost.json", "IBM", "5min", INGESTED, 0),
    ("time_series_intraday_1min_MSFT_2017-12-18_romeltorres.json", "MSFT", "1min", IN_2020, 1),
]


@pytest.mark.parametrize("name, symbol, interval, ingested_at, shift", AV_CASES)
def test_alphavantage_bars_match_the_payload(name, symbol, interval, ingested_at, shift):
    table = av(name, symbol, interval, ingested_at)
    assert table.schema == BAR_SCHEMA
    expected = av_expected(name)
    assert table.num_rows == len(expected)
    fmt = "%Y-%m-%d" if interval == "1d" else "%Y-%m-%d %H:%M:%S"
    for bar, (label, e) in zip(table.to_pylist(), expected):
        local = dt.datetime.strptime(label, fmt) - dt.timedelta(minutes=shift)
        assert (bar["ts"], bar["session"]) == (local.replace(tzinfo=NY).astimezone(UTC), local.date())
        assert [bar[c] for c in OHLC] == [float(e[c]) for c in OHLC] and bar["volume"] == int(e["volume"])
        assert bar["adj_close"] == _float(e.get("adjusted_close"))
        assert bar["dividend"] == _float(e.get("dividend_amount"))
        assert bar["split_coefficient"] == _float(e.get("split_coefficient"))
        assert (bar["symbol"], bar["interval"], bar["source"]) == (symbol, interval, "alphavantage")
        assert (bar["ingested_at"], bar["vwap"], bar["trades"]) == (ingested_at, None, None)


def test_alphavantage_first_regular_bar_starts_at_0930_whatever_the_labels():
    winter = av("time_series_intraday_15min_AAPL_2023-01-03_04_csv_excerpt_openbb_cassette.csv", "AAPL", "15min")
    assert (winter["ts"][0].as_py(), winter["ts"][-1].as_py()) == (utc(2023, 1, 3, 14, 30), utc(2023, 1, 4, 20, 45))
    summer = av("time_series_intraday_5min_MSFT_demo_stockpoint.json", "MSFT", "5min").to_pylist()
    first = next(b for b in summer if b["session"] == dt.date(2019, 8, 2))
    assert (first["ts"], first["open"]) == (utc(2019, 8, 2, 13, 30), 138.09)  # the bar labelled 09:35
    assert summer[-1]["ts"] == utc(2019, 8, 2, 19, 55)  # labelled 16:00
    extended = av("time_series_intraday_extended_csv_2020-12-18_romeltorres.csv", "MSFT", "1min")
    assert extended["ts"][0].as_py() == utc(2020, 11, 23, 9, 0)  # labelled 04:01
    assert len(set(extended["session"].to_pylist())) == 19


def test_alphavantage_dividends_and_exact_adjusted_close():
    ibm = av("time_series_daily_adjusted_IBM_2020-05-08_dividend_crazzyghost.json", "IBM").to_pylist()
    assert [(b["session"], b["dividend"]) for b in ibm] == [(dt.date(2020, 5, 7), 1.63), (dt.date(2020, 5, 8), 0.0)]
    aapl = av("time_series_daily_adjusted_AAPL_compact_2021-07-23_visvol.json", "AAPL").to_pylist()
    bars = {b["session"]: b for b in aapl}
    assert bars[dt.date(2021, 5, 7)]["dividend"] == 0.22
    assert bars[dt.date(2021, 5, 6)]["adj_close"] == 129.521163843 < bars[dt.date(2021, 5, 6)]["close"]


AV_ERRORS = [
    ("error_demo_key_information_airbyte.json", PremiumEndpointError),
    ("error_premium_endpoint_information_daily_adjusted.json", PremiumEndpointError),
    ("error_rate_limit_information_spread_out_25perday_2025.json", ThrottledError),  # mentions "premium" too
    ("error_rate_limit_note_5perminute_500perday.json", ThrottledError),
    ("error_invalid_api_call_FX_DAILY.json", BadSymbolError),
    ("error_invalid_api_call_TIME_SERIES_DAILY_unknown_symbol.json", BadSymbolError),
    ("error_invalid_api_call_TIME_SERIES_DAILY_ADJUSTED.json", BadSymbolError),
    ("global_quote_MSFT_romeltorres.json", MalformedPayloadError),
    ("time_series_weekly_adjusted_IBM_crazzyghost.json", MalformedPayloadError),
]


@pytest.mark.parametrize("extension", ["json", "csv"])  # AV answers errors in JSON even when CSV was asked
@pytest.mark.parametrize("name, error", AV_ERRORS)
def test_alphavantage_error_bodies(name, error, extension):
    body = (FIXTURES / "alphavantage" / name).read_bytes()
    with pytest.raises(error) as checked:
        check_alphavantage_body(body, extension, "IBM")
    with pytest.raises(error) as parsed:
        parse_alphavantage(body, extension, "IBM", "1d", INGESTED)
    for info in (checked, parsed):
        assert type(info.value) is error and str(info.value).startswith("alphavantage IBM: ")
        assert info.value.retryable == (error is ThrottledError)


@pytest.mark.parametrize(
    "name, extension, symbol, interval",
    [
        ("time_series_daily_MSFT_compact_demo_2019_stockpoint.json", "json", "MSFT", "5min"),  # wrong interval
        ("time_series_daily_MSFT_compact_demo_2019_stockpoint.json", "json", "AAPL", "1d"),  # someone else's bars
        ("time_series_daily_MSFT_compact_demo_2019_stockpoint.json", "csv", "MSFT", "1d"),  # JSON data, CSV asked
        ("time_series_intraday_15min_AAPL_2023-01-03_04_csv_excerpt_openbb_cassette.csv", "csv", "AAPL", "1d"),
    ],
)
def test_alphavantage_wrong_shape_is_malformed(name, extension, symbol, interval):
    with pytest.raises(MalformedPayloadError, match=f"^alphavantage {symbol}: "):
        parse_alphavantage((FIXTURES / "alphavantage" / name).read_bytes(), extension, symbol, interval, INGESTED)


@pytest.mark.parametrize(
    "name, symbol",
    [
        ("alphavantage/time_series_daily_adjusted_MSFT_compact_demo_2019_stockpoint.json", "MSFT"),
        ("alphavantage/time_series_intraday_15min_AAPL_2023-01-03_04_csv_excerpt_openbb_cassette.csv", "AAPL"),
        ("polygon/aggs_range_AAPL_1day_2023-01-01_2023-01-10_asc_openbb_cassette_2024recording.json", "AAPL"),
    ],
)
def test_truncated_payload_is_malformed(name, symbol):
    body = (FIXTURES / name).read_bytes()
    half = body[: len(body) // 2]
    assert not half.endswith(b"\n")  # a CSV cut exactly after a row would look complete
    provider, extension = name.split("/")[0], name.rsplit(".", 1)[1]
    with pytest.raises(MalformedPayloadError, match=f"^{provider} {symbol}: "):
        if provider == "polygon":
            parse_polygon(half, symbol, "1d", INGESTED)
        else:
            parse_alphavantage(half, extension, symbol, "1d", INGESTED)


def test_error_messages_never_carry_a_key():
    # AV's bad-key wording (quoted in many public client tests), with a key pasted in for the test.
    body = b'{"Error Message": "the parameter apikey is invalid or missing (apikey=SECRET123)."}'
    with pytest.raises(BadKeyError) as info:
        check_alphavantage_body(body, "json", "IBM")
    assert "SECRET123" not in str(info.value) and str(info.value).startswith("alphavantage IBM: ")
    body = b'{"status": "ERROR", "error": "bad from date: /v2/aggs/ticker/AAPL/range/1/day/x/y?apiKey=SECRET123"}'
    with pytest.raises(ProviderError) as info:
        parse_polygon(body, "AAPL", "1d", INGESTED)
    assert type(info.value) is ProviderError and "SECRET123" not in str(info.value)
    with pytest.raises(InvalidSymbolError):
        av("time_series_daily_IBM_2020-05-08_crazzyghost.json", "ibm")


def pg_body(name: str) -> bytes:
    return (FIXTURES / "polygon" / name).read_bytes()


def pg(name: str, symbol: str = "AAPL", interval: str = "1d") -> pa.Table:
    table, next_url = parse_polygon(pg_body(name), symbol, interval, INGESTED)
    assert next_url is None
    return table


def midnight_ny_of(ms: int) -> dt.datetime:
    day = dt.datetime.fromtimestamp(ms / 1000, UTC).astimezone(NY).date()
    return dt.datetime.combine(day, dt.time(), NY).astimezone(UTC)


PG_2005 = "aggs_range_AAPL_1day_2005-04-01_2005-04-04_clientpython.json"
PG_ASC = "aggs_range_AAPL_1day_2023-01-01_2023-01-10_asc_openbb_cassette_2024recording.json"
PG_DESC = "aggs_range_AAPL_1day_2023-01-01_2023-01-10_desc_openbb_cassette.json"


@pytest.mark.parametrize("name", [PG_2005, PG_ASC, PG_DESC, "aggs_prev_AAPL_clientpython.json"])
def test_polygon_bars_match_the_payload(name):
    table = pg(name)
    assert table.schema == BAR_SCHEMA
    expected = sorted(json.loads(pg_body(name))["results"], key=lambda r: r["t"])
    assert table.num_rows == len(expected)
    for bar, e in zip(table.to_pylist(), expected):
        assert [bar[c] for c in (*OHLC, "vwap", "trades")] == [e["o"], e["h"], e["l"], e["c"], e["vw"], e["n"]]
        assert bar["volume"] == int(e["v"]) and isinstance(bar["volume"], int)
        assert bar["ts"] == midnight_ny_of(e["t"]) and bar["session"] == bar["ts"].astimezone(NY).date()
        if "range" in name:  # range bars already start at 00:00 ET; /prev is stamped 16:00 ET
            assert bar["ts"] == dt.datetime.fromtimestamp(e["t"] / 1000, UTC)
        assert (bar["symbol"], bar["interval"], bar["source"], bar["adj_close"]) == ("AAPL", "1d", "polygon", None)
        assert bar["ingested_at"] == INGESTED


def test_polygon_dst_and_sort_order():
    table = pg(PG_2005)
    assert table["ts"].to_pylist() == [utc(2005, 4, 1, 5), utc(2005, 4, 4, 4)]  # both 00:00 ET
    assert table["session"].to_pylist() == [dt.date(2005, 4, 1), dt.date(2005, 4, 4)]
    asc, desc = pg(PG_ASC), pg(PG_DESC)
    assert asc.equals(desc) and asc.num_rows == 6 and asc["volume"][0].as_py() == 112117471


def test_polygon_grouped_daily_16h_stamp_lands_on_the_range_bar_key():
    doc = json.loads(pg_body("aggs_grouped_vs_range_TTMI_2023-01-09_timestamp_mismatch.json"))
    grouped, ranged = (
        parse_polygon(json.dumps({"status": "OK", "results": [doc[key]]}).encode(), "TTMI", "1d", INGESTED)[0]
        for key in ("grouped_daily_2023-01-09_result", "range_1_day_2023-01-09_result")
    )
    assert grouped.equals(ranged) and grouped["ts"][0].as_py() == utc(2023, 1, 9, 5)
    # The client-python grouped mock is named 2005-04-04, but its t is 2020-10-14 16:00 EDT.
    gik = pg("aggs_grouped_us_stocks_2005-04-04_clientpython.json", "GIK")
    assert (gik["session"][0].as_py(), gik["ts"][0].as_py()) == (dt.date(2020, 10, 14), utc(2020, 10, 14, 4))


def test_polygon_intraday_keeps_t_and_returns_next_url():
    doc = json.loads(pg_body(PG_ASC))
    doc["results"] = [dict(doc["results"][0], t=1672756200000)]  # 2023-01-03 14:30Z = 09:30 EST
    doc["next_url"] = "https://api.polygon.io/v2/aggs/ticker/AAPL/range/5/minute/1672756200000/1673326800000?cursor=a"
    table, next_url = parse_polygon(json.dumps(doc).encode(), "AAPL", "5min", INGESTED)
    assert (table["ts"][0].as_py(), table["session"][0].as_py()) == (utc(2023, 1, 3, 14, 30), dt.date(2023, 1, 3))
    assert next_url == doc["next_url"]


@pytest.mark.parametrize(
    "name, symbol, error",
    [
        ("error_not_authorized_plan_timeframe_future_date.json", "AAPL", PremiumEndpointError),
        ("error_api_key_not_provided_400.json", "AAPL", BadKeyError),
        ("empty_results_null_intermittent_2020.json", "AAPL", EmptyResultError),
        ("aggs_grouped_us_stocks_2005-04-04_clientpython.json", "AAPL", MalformedPayloadError),  # T is GIK
        ("aggs_grouped_vs_range_TTMI_2023-01-09_timestamp_mismatch.json", "TTMI", MalformedPayloadError),  # bare bars
        (PG_ASC, "MSFT", MalformedPayloadError),  # the page's ticker is AAPL
    ],
)
def test_polygon_error_bodies(name, symbol, error):
    with pytest.raises(error) as info:
        parse_polygon(pg_body(name), symbol, "1d", INGESTED)
    assert type(info.value) is error and str(info.value).startswith(f"polygon {symbol}: ")
    assert info.value.retryable == (error is EmptyResultError)
