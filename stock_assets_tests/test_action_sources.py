"""Where each provider's corporate actions come from: Alpha Vantage's adjusted daily series and
csvdir carry them on the bars (split coefficient, dividend), Alpha Vantage's adjusted close is
kept as sent; intraday and Polygon's aggregates are asked as traded (test_polygon_actions.py)."""

import datetime as dt

from stock_assets.partitions import sessions_between
from stock_assets.providers.alphavantage import plan_requests
from stock_assets.providers.alphavantage_format import parse_alphavantage
from stock_assets.providers.base import RawPayload
from stock_assets.providers.csvdir_format import parse_csvdir
from stock_assets.providers.registry import parse_actions
from stock_assets_tests.conftest import fixture_bytes

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
