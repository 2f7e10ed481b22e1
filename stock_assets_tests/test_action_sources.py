"""Where each provider's corporate actions come from: Alpha Vantage's adjusted daily series and
csvdir carry them on the bars (split coefficient, dividend), Alpha Vantage's adjusted close is
kept as sent; intraday and Polygon's aggregates are asked as traded (test_polygon_actions.py).
Then, for each source, history loaded before a dividend and a split and a later window carrying
them give the tables of one clean load, and a re-run changes nothing."""

import dataclasses
import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
import talib

from stock_assets.partitions import sessions_between
from stock_assets.providers.alphavantage import plan_requests
from stock_assets.providers.alphavantage_format import parse_alphavantage
from stock_assets.providers.base import RawPayload
from stock_assets.providers.csvdir_format import parse_csvdir
from stock_assets.providers.registry import parse_actions
from stock_assets.providers.synthetic import synthetic_bars
from stock_assets_tests.conftest import fixture_bytes
from stock_assets_tests.test_restatement import load, restated, settings_for, tables_of

INGESTED = dt.datetime(2026, 12, 7, 14, tzinfo=dt.UTC)


def test_intraday_is_asked_as_traded_even_with_adjusted_daily_bars():
    sessions = sessions_between("2015-01-02", "2020-11-23", "2021-01-05")
    assert {p["adjusted"] for p in plan_requests("IBM", sessions, "5min", True, "csv")} == {"false"}
    assert plan_requests("IBM", sessions, "1d", True, "json")[0]["function"] == "TIME_SERIES_DAILY_ADJUSTED"


def test_alphavantage_adjusted_fixtures_carry_their_actions_and_adjusted_close():
    """Every recorded adjusted daily fixture says split coefficient and dividend on every bar;
    the adjusted close lands as sent (lake/prices keeps it for the comparison with ours)."""
    for name, symbol, ex_date, amount in [
        ("time_series_daily_adjusted_IBM_2020-05-08_dividend_crazzyghost.json", "IBM", dt.date(2020, 5, 7), 1.63),
        ("time_series_daily_adjusted_MSFT_compact_demo_2019_stockpoint.json", "MSFT", dt.date(2019, 5, 15), 0.46),
        ("time_series_daily_adjusted_AAPL_compact_2021-07-23_visvol.json", "AAPL", dt.date(2021, 5, 7), 0.22),
    ]:
        bars = parse_alphavantage(fixture_bytes(f"alphavantage/{name}"), "json", symbol, "1d", INGESTED)
        assert bars["split_coefficient"].null_count == bars["dividend"].null_count == bars["adj_close"].null_count == 0, name
        assert set(bars["split_coefficient"].to_pylist()) == {1.0}, name
        paid = [(s, d) for s, d in zip(bars["session"].to_pylist(), bars["dividend"].to_pylist()) if d]
        assert paid == [(ex_date, amount)], name
    plain = parse_alphavantage(fixture_bytes("alphavantage/time_series_daily_MSFT_compact_demo_2019_stockpoint.json"), "json", "MSFT", "1d", INGESTED)
    assert plain["split_coefficient"].null_count == plain["dividend"].null_count == plain["adj_close"].null_count == plain.num_rows  # no action said


def test_csvdir_split_and_dividend_columns_land_and_are_no_reference_payload():
    body = fixture_bytes("csv/zipline_csvdir_AAPL_2012-2014_with_dividend_split.csv")
    bars = parse_csvdir(body, "AAPL", "1d", INGESTED, name="AAPL.csv")
    said = {s: (d, r) for s, d, r in zip(bars["session"].to_pylist(), bars["dividend"].to_pylist(), bars["split_coefficient"].to_pylist()) if d or r != 1}
    assert said[dt.date(2014, 6, 9)] == (0.0, 7.0) and said[dt.date(2014, 5, 8)] == (0.47, 1.0)
    payload = RawPayload("csvdir", "AAPL", "1d", dt.date(2014, 1, 2), dt.date(2014, 12, 31), INGESTED, "csv", body)
    assert not payload.is_actions and parse_actions([payload]).num_rows == 0  # its actions travel in the bars


# --- end to end, per source: history, then a window carrying a dividend and a split ----------
# SPEN is a synthetic symbol whose walk pays $3.06 on 2024-08-28 and splits 4:1 on 2024-09-03
# (docs/providers.md); the Alpha Vantage and Polygon answers below are its traded bars in each
# provider's documented shape, the actions told the provider's way. csvdir: test_restatement.py.
A, B = ("2024-08-13", "2024-08-27"), ("2024-08-28", "2024-09-06")  # 11 and 7 sessions: each run costs its partitions' events
DIVIDEND, SPLIT, AMOUNT = dt.date(2024, 8, 28), dt.date(2024, 9, 3), 3.06


def traded(first: str, last: str) -> pd.DataFrame:
    return synthetic_bars("SPEN", sessions_between("2012-01-03", first, last))


def av_answer(last: str) -> bytes:
    """TIME_SERIES_DAILY_ADJUSTED as Alpha Vantage answers it on `last`: every session since A,
    newest first, the adjusted close restated by every action up to `last` (its CRSP factors)."""
    bars = traded(A[0], last)
    factor = np.where(bars["split_coefficient"] != 1, 1 / bars["split_coefficient"], 1 - bars["dividend"] / bars["close"].shift(1))
    later = np.concatenate([np.cumprod(factor[::-1])[::-1][1:], [1.0]])  # the product over every later session
    series = {
        row.date: {
            "1. open": f"{row.open:.4f}", "2. high": f"{row.high:.4f}", "3. low": f"{row.low:.4f}", "4. close": f"{row.close:.4f}",
            "5. adjusted close": f"{row.close * f:.10g}", "6. volume": str(row.volume),
            "7. dividend amount": f"{row.dividend:.4f}", "8. split coefficient": f"{row.split_coefficient:.1f}",
        }
        for row, f in zip(bars.itertuples(), later)
    }  # fmt: skip
    meta = {"1. Information": "Daily Time Series with Splits and Dividend Events", "2. Symbol": "SPEN", "3. Last Refreshed": last,
            "4. Output Size": "Full size", "5. Time Zone": "US/Eastern"}  # fmt: skip
    return json.dumps({"Meta Data": meta, "Time Series (Daily)": dict(reversed(series.items()))}).encode()


def polygon_aggs(first: str, last: str) -> bytes:
    """/v2/aggs range answer, unadjusted: bars stamped at 00:00 New York, in ms."""
    bars = traded(first, last)
    starts = pd.to_datetime(bars["date"]).dt.tz_localize("America/New_York")
    results = [
        {"v": float(r.volume), "vw": r.vwap, "o": r.open, "c": r.close, "h": r.high, "l": r.low, "t": int(t.timestamp() * 1000), "n": int(r.trades)}
        for r, t in zip(bars.itertuples(), starts)
    ]
    return json.dumps({"ticker": "SPEN", "queryCount": len(results), "resultsCount": len(results), "adjusted": False,
                       "results": results, "status": "OK", "request_id": "built-here", "count": len(results)}).encode()  # fmt: skip


POLYGON_SPLITS = json.dumps({"status": "OK", "request_id": "built-here", "results": [
    {"execution_date": str(SPLIT), "id": "built-here", "split_from": 1, "split_to": 4, "ticker": "SPEN"}]}).encode()  # fmt: skip
POLYGON_DIVIDENDS = json.dumps({"status": "OK", "request_id": "built-here", "results": [
    {"cash_amount": AMOUNT, "currency": "USD", "dividend_type": "CD", "ex_dividend_date": str(DIVIDEND), "frequency": 4, "ticker": "SPEN"}]}).encode()  # fmt: skip


def serve(fake_api, provider: str, stage: str) -> None:
    """What the provider answers before the actions (while A is loaded) and after them."""
    if provider == "alphavantage":
        fake_api.route("/query", av_answer(A[1] if stage == "before" else B[1]), symbol="SPEN")
    elif provider == "polygon" and stage == "before":
        fake_api.route(f"/v2/aggs/ticker/SPEN/range/1/day/{A[0]}/{A[1]}", polygon_aggs(*A))
        fake_api.polygon_actions(ticker="SPEN")  # not announced yet: no split, no dividend
    elif provider == "polygon":
        for first, last in (B, (A[0], B[1])):
            fake_api.route(f"/v2/aggs/ticker/SPEN/range/1/day/{first}/{last}", polygon_aggs(first, last))
        fake_api.polygon_actions(POLYGON_SPLITS, POLYGON_DIVIDENDS, ticker="SPEN")


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["synthetic", "alphavantage", "polygon"])
def test_a_later_window_with_a_dividend_and_a_split_equals_one_clean_load(provider, tmp_path, fake_api, monkeypatch):
    monkeypatch.setenv(f"{provider.upper()}_API_KEY", "SEKRIT-KEY-4711")
    http = {"provider_base_url": fake_api.url, "requests_per_minute": 6000, "http_retries": 0} if provider != "synthetic" else {}

    def settings(home):
        base = settings_for(home, home)
        return dataclasses.replace(base, provider=provider, csvdir_url="", symbols=("SPEN",), alphavantage_adjusted=True, **http)

    serve(fake_api, provider, "after")
    clean = settings(tmp_path / "clean")
    load(clean, (A[0], B[1]))
    once = tables_of(clean)

    history = settings(tmp_path / "history")
    serve(fake_api, provider, "before")
    load(history, A)
    assert {r["adj_close"] == r["close"] for r in tables_of(history)["prices"]} == {True}  # no action known yet
    serve(fake_api, provider, "after")
    result = load(history, B)
    earlier = len(sessions_between("2012-01-03", *A))
    assert restated(result) == [f"SPEN: ${AMOUNT:g} dividend on {DIVIDEND} — {earlier} earlier sessions restated, indicators recomputed",
                                f"SPEN: 4:1 split on {SPLIT} — {earlier} earlier sessions restated, indicators recomputed"]  # fmt: skip
    after = tables_of(history)
    assert after == once
    assert [(a["ex_date"], a["kind"], a["value"], a["source"]) for a in after["corporate_actions"]] == [
        (DIVIDEND, "dividend", AMOUNT, provider), (SPLIT, "split", 4.0, provider)]  # fmt: skip
    adjusted = np.array([r["adj_close"] for r in after["prices"]])
    for name, expected in (("sma_7", talib.SMA(adjusted, 7)), ("ema_12", talib.EMA(adjusted, 12)), ("rsi_14", talib.RSI(adjusted, 14))):
        got = np.array([np.nan if r[name] is None else r[name] for r in after["indicators"]])
        np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True, err_msg=name)
    if provider == "alphavantage":  # its own adjusted close, kept as sent in lake/prices, agrees with ours
        checks = [e for e in result.get_asset_check_evaluations() if e.check_name == "prices_adjusted_close_agrees"]
        assert checks and all(e.passed for e in checks)

    again = load(history, B)
    assert restated(again) == [] and tables_of(history) == after  # a re-run changes nothing

    reverse = settings(tmp_path / "reverse")  # the later window first, the earlier one after it
    load(reverse, B)
    load(reverse, A)
    assert tables_of(reverse) == once
