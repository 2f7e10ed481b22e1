"""Polygon's corporate actions: unadjusted aggregates, then the reference endpoints for splits
and dividends, over real HTTP to the loopback server; every page a counted request, kept in raw/
byte for byte, parsed apart from the bars (fixtures built from the documented shapes, SOURCES.md)."""

import dataclasses
import datetime as dt
import json

import pyarrow as pa
import pytest

from stock_assets.cli import materialize_range
from stock_assets.lake import layout
from stock_assets.lake.storage import LakeStorage
from stock_assets.partitions import sessions_between
from stock_assets.providers.errors import MalformedPayloadError, MissingResultsError, PremiumEndpointError
from stock_assets.providers.http import HttpClient, RateLimiter
from stock_assets.providers.polygon import PolygonProvider
from stock_assets.providers.polygon_format import parse_polygon_actions
from stock_assets.providers.registry import parse_actions, parse_payload
from stock_assets.transforms.actions import ACTIONS_SCHEMA
from stock_assets_tests.conftest import defs_for, fixture_bytes
from stock_assets_tests.fake_api import Reply

KEY = "SEKRIT-KEY-4711"
AAPL = fixture_bytes("polygon/aggs_range_AAPL_1day_2023-01-01_2023-01-10_asc_openbb_cassette_2024recording.json")
SPLITS_1 = fixture_bytes("polygon/reference_splits_AAPL_page1_documented_shape.json")
SPLITS_2 = fixture_bytes("polygon/reference_splits_AAPL_page2_documented_shape.json")
DIVIDENDS = fixture_bytes("polygon/reference_dividends_AAPL_documented_shape.json")
NOT_AUTHORIZED = fixture_bytes("polygon/error_not_authorized_plan_timeframe_future_date.json")
SESSIONS = sessions_between("2015-01-02", "2023-01-03", "2023-01-10")
SEEN = dt.datetime(2026, 12, 7, 14, tzinfo=dt.UTC)


def polygon(api, retries=2) -> tuple[PolygonProvider, RateLimiter]:
    limiter = RateLimiter(6000.0, 100)
    http = HttpClient("polygon", limiter, secret=KEY, retries=retries, backoff_seconds=0.01, max_backoff_seconds=1)
    http.headers = {"Authorization": f"Bearer {KEY}"}
    return PolygonProvider(http, api.url), limiter


def rows(table: pa.Table) -> list[tuple]:
    return [(r["symbol"], str(r["ex_date"]), r["kind"], r["value"], r["source"], r["factor"]) for r in table.to_pylist()]


def test_splits_and_dividends_parse_to_actions():
    splits = parse_polygon_actions(SPLITS_1, "AAPL", "splits", SEEN)
    assert splits.schema == ACTIONS_SCHEMA
    assert rows(splits) == [
        ("AAPL", "2005-02-28", "split", 2.0, "polygon", None),
        ("AAPL", "2014-06-09", "split", 7.0, "polygon", None),
        ("AAPL", "2020-08-31", "split", 4.0, "polygon", None),
    ]
    assert set(splits["first_seen"].to_pylist()) == {SEEN}
    dividends = parse_polygon_actions(DIVIDENDS, "AAPL", "dividends", SEEN)
    assert [(d, v) for _, d, _, v, _, _ in rows(dividends)] == [
        ("2020-02-07", 0.77), ("2020-05-08", 0.82), ("2020-08-07", 0.82), ("2020-11-06", 0.205), ("2021-02-05", 0.205),
    ]
    assert parse_polygon_actions(fixture_bytes("polygon/reference_empty_results_documented_shape.json"), "AAPL", "splits", SEEN).num_rows == 0


def test_only_cash_dividends_in_dollars_count_and_one_ex_date_sums():
    def dividend(kind, amount, currency="USD"):
        return {"cash_amount": amount, "currency": currency, "dividend_type": kind, "ex_dividend_date": "2024-03-14", "ticker": "XYZ"}

    listed = [dividend("CD", 0.5), dividend("SC", 1.25), dividend("LT", 0.3), dividend("ST", 0.2), dividend("CD", 0.4, "CAD"), dividend("CD", 0.5)]
    body = json.dumps({"status": "OK", "results": listed}).encode()
    assert rows(parse_polygon_actions(body, "XYZ", "dividends", SEEN)) == [("XYZ", "2024-03-14", "dividend", 1.75, "polygon", None)]


@pytest.mark.parametrize(
    "body, kind, error, words",
    [
        (b'{"status": "OK", "request_id": "x"}', "splits", MissingResultsError, "splits answer without results"),
        (b'{"status": "OK", "results": null}', "dividends", MissingResultsError, "dividends answer without results"),
        (NOT_AUTHORIZED, "dividends", PremiumEndpointError, "NOT_AUTHORIZED"),
        (SPLITS_1[:200], "splits", MalformedPayloadError, "not valid JSON"),
        (SPLITS_1.replace(b'"AAPL"', b'"MSFT"', 1), "splits", MalformedPayloadError, "splits for other tickers ['MSFT']"),
        (SPLITS_1.replace(b'"split_to": 4', b'"split_to": 0'), "splits", MalformedPayloadError, "not positive"),
        (SPLITS_1.replace(b'"execution_date"', b'"date"'), "splits", MalformedPayloadError, "lack ['execution_date']"),
        (DIVIDENDS.replace(b'"2020-08-07"', b'"2020-08-77"'), "dividends", MalformedPayloadError, "cannot parse dividends"),
    ],
)
def test_bad_reference_answers_are_named(body, kind, error, words):
    with pytest.raises(error) as info:
        parse_polygon_actions(body, "AAPL", kind, SEEN)
    assert type(info.value) is error and str(info.value).startswith("polygon AAPL: ") and words in str(info.value)


def test_client_asks_unadjusted_bars_then_every_page_of_the_actions(fake_api, tmp_path):
    fake_api.route("/v2/aggs/ticker/AAPL/", AAPL)
    fake_api.polygon_actions(SPLITS_1, DIVIDENDS, ticker="AAPL")
    fake_api.route("/v3/reference/splits", SPLITS_2, cursor="YWN0aXZlPXRydWUmZGF0ZT0yMDA1LTAyLTI4JmxpbWl0PTMmb3JkZXI9ZGVzYw")
    provider, limiter = polygon(fake_api)
    result = provider.fetch(["AAPL"], SESSIONS, "1d")
    assert result.failures == {}
    assert [(r.path, r.query) for r in fake_api.requests] == [
        ("/v2/aggs/ticker/AAPL/range/1/day/2023-01-03/2023-01-10", {"adjusted": "false", "sort": "asc", "limit": "50000"}),
        ("/v3/reference/splits", {"ticker": "AAPL", "limit": "1000"}),
        ("/v3/reference/splits", {"cursor": "YWN0aXZlPXRydWUmZGF0ZT0yMDA1LTAyLTI4JmxpbWl0PTMmb3JkZXI9ZGVzYw"}),  # next_url, via our base URL
        ("/v3/reference/dividends", {"ticker": "AAPL", "limit": "1000"}),
    ]
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" and KEY not in str(r.query) for r in fake_api.requests)
    assert limiter.budget.used("polygon", limiter.today()) == 4  # every page counts in the day's budget
    assert [(p.interval, p.part, p.is_actions) for p in result.payloads] == [("1d", 0, False), ("splits", 0, True), ("splits", 1, True), ("dividends", 0, True)]
    assert [p.body for p in result.payloads] == [AAPL, SPLITS_1, SPLITS_2, DIVIDENDS]
    assert [parse_payload(p).num_rows for p in result.payloads] == [6, 0, 0, 0]  # actions are never bars

    storage = LakeStorage(str(tmp_path / "lake"))
    layout.write_raw(storage, result.payloads, SESSIONS[0], SESSIONS[-1])
    stored = layout.read_raw(storage, SESSIONS[0], SESSIONS[-1], exact=True)
    assert sorted((p.interval, p.part, p.body) for p in stored) == sorted((p.interval, p.part, p.body) for p in result.payloads)  # byte for byte
    actions = parse_actions(stored)
    assert actions.schema == ACTIONS_SCHEMA
    assert [(str(d), k, v) for d, k, v in zip(actions["ex_date"].to_pylist(), actions["kind"].to_pylist(), actions["value"].to_pylist())] == [
        ("1987-06-16", "split", 2.0), ("2000-06-21", "split", 2.0), ("2005-02-28", "split", 2.0), ("2014-06-09", "split", 7.0),
        ("2020-02-07", "dividend", 0.77), ("2020-05-08", "dividend", 0.82), ("2020-08-07", "dividend", 0.82),
        ("2020-08-31", "split", 4.0), ("2020-11-06", "dividend", 0.205), ("2021-02-05", "dividend", 0.205),
    ]


def test_a_symbol_without_actions_costs_two_more_requests_and_no_row(fake_api):
    fake_api.route("/v2/aggs/ticker/MSFT/", AAPL.replace(b'"AAPL"', b'"MSFT"'))
    result = polygon(fake_api)[0].fetch(["MSFT"], SESSIONS, "1d")
    assert [r.path for r in fake_api.requests] == ["/v2/aggs/ticker/MSFT/range/1/day/2023-01-03/2023-01-10", "/v3/reference/splits", "/v3/reference/dividends"]
    assert parse_actions(result.payloads).num_rows == 0 and parse_actions(result.payloads).schema == ACTIONS_SCHEMA


def test_an_unusable_actions_answer_fails_the_symbol_by_name(fake_api):
    fake_api.route("/v2/aggs/ticker/", AAPL)
    fake_api.polygon_actions(dividends=Reply(NOT_AUTHORIZED, 403), ticker="AAPL")  # a plan without dividends: permanent
    fake_api.route("/v2/aggs/ticker/IBM/", AAPL.replace(b'"AAPL"', b'"IBM"'))
    fake_api.polygon_actions(splits=b'{"status": "OK", "results": null}', ticker="IBM")  # retried, then given up
    result = polygon(fake_api, retries=2)[0].fetch(["AAPL", "IBM"], SESSIONS, "1d")
    assert result.payloads == []
    assert result.failures["AAPL"].startswith("PremiumEndpointError: polygon AAPL: NOT_AUTHORIZED")
    assert result.failures["IBM"] == "MissingResultsError: polygon IBM: splits answer without results (status OK) (gave up after 3 attempts)"
    assert result.permanent == {"AAPL"} and result.no_bars == set()
    asked = [(r.path, r.query.get("ticker")) for r in fake_api.requests if r.path.startswith("/v3")]
    assert asked == [("/v3/reference/splits", "AAPL"), ("/v3/reference/dividends", "AAPL")] + [("/v3/reference/splits", "IBM")] * 3


def test_parse_actions_keeps_the_newest_value_and_the_first_sighting():
    from stock_assets.providers.base import RawPayload

    def payload(body, moment, provider="polygon"):
        return RawPayload(provider, "AAPL", "splits", SESSIONS[0], SESSIONS[-1], moment, "json", body)

    earlier, later = SEEN - dt.timedelta(days=30), SEEN
    corrected = SPLITS_1.replace(b'"split_to": 7', b'"split_to": 8')
    actions = parse_actions([payload(corrected, later), payload(SPLITS_1, earlier)])
    seven = [r for r in actions.to_pylist() if str(r["ex_date"]) == "2014-06-09"]
    assert [(r["value"], r["first_seen"]) for r in seven] == [(8.0, earlier)]
    with pytest.raises(ValueError, match="no corporate-actions parser for provider 'csvdir' \\(payload splits for AAPL\\)"):
        parse_actions([payload(SPLITS_1, SEEN, provider="csvdir")])


def test_a_dividend_without_type_or_currency_counts_as_regular_cash():
    body = json.dumps({"status": "OK", "results": [{"cash_amount": 0.25, "ex_dividend_date": "2024-03-14", "ticker": "XYZ"}]}).encode()
    assert rows(parse_polygon_actions(body, "XYZ", "dividends", SEEN)) == [("XYZ", "2024-03-14", "dividend", 0.25, "polygon", None)]
    empty = json.dumps({"status": "OK", "results": []}).encode()
    assert parse_polygon_actions(empty, "XYZ", "dividends", SEEN).num_rows == 0


@pytest.mark.slow
def test_a_rerun_keeps_the_actions_fetched_with_the_bars(settings, fake_api, instance, monkeypatch):
    """raw_prices reuses what raw/ holds for the window: the actions pages as well as the bars."""
    monkeypatch.setenv("POLYGON_API_KEY", KEY)
    settings = dataclasses.replace(settings, provider="polygon", symbols=("AAPL",), provider_base_url=fake_api.url, requests_per_minute=6000, http_retries=0)
    fake_api.route("/v2/aggs/ticker/AAPL/", AAPL)
    fake_api.polygon_actions(SPLITS_2, DIVIDENDS, ticker="AAPL")
    for run in ("first", "re-run"):
        result = materialize_range(defs_for(settings), "2023-01-03", "2023-01-06", instance)
        assert result.success, run
        raw = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "raw_prices"]  # one a session
        assert {e.step_materialization_data.materialization.metadata["payloads"].value for e in raw} == {3}, run  # bars, splits, dividends
    assert len(fake_api.requests) == 3  # the re-run asked nothing
    folder = settings.home / "lake" / "raw" / "2023-01-03_2023-01-06"
    assert sorted(p.name.split("__")[1] for p in folder.iterdir()) == ["1d", "dividends", "splits"]
    assert [p.read_bytes() for p in folder.glob("polygon__splits__*")] == [SPLITS_2]
