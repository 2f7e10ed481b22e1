"""Provider clients over real HTTP to a loopback server serving recorded payloads: retries,
backoff, Retry-After, rate limits, partial failure, and a key that never leaks."""

import datetime as dt
import email.utils
import json
import threading
import time

import pytest

from stock_assets.partitions import sessions_between
from stock_assets.providers.alphavantage import AlphaVantageProvider, plan_requests
from stock_assets.providers.errors import BadKeyError, MalformedPayloadError, PremiumEndpointError
from stock_assets.providers.http import HttpClient, QuotaExhaustedError, RateLimiter
from stock_assets.providers.polygon import PolygonProvider
from stock_assets_tests.conftest import fixture_bytes
from stock_assets_tests.fake_api import Reply

KEY = "SEKRIT-KEY-4711"
MSFT_2019 = fixture_bytes("alphavantage/time_series_daily_MSFT_compact_demo_2019_stockpoint.json")
JUNE_2019 = sessions_between("2015-01-02", "2019-06-03", "2019-06-28")
NOTE = fixture_bytes("alphavantage/error_rate_limit_note_5perminute_500perday.json")


def client(provider="alphavantage", retries=3, backoff=0.05, per_minute=6000.0, per_day=None) -> HttpClient:
    return HttpClient(provider, RateLimiter(per_minute, per_day), secret=KEY, retries=retries, backoff_seconds=backoff, max_backoff_seconds=2)


def alphavantage(api, **kw) -> AlphaVantageProvider:
    return AlphaVantageProvider(client(**kw), KEY, api.url)


def test_one_full_request_per_symbol_covers_a_backfill(fake_api):
    fake_api.route("/query", MSFT_2019, symbol="MSFT")
    result = alphavantage(fake_api).fetch(["MSFT"], JUNE_2019, "1d")
    assert result.failures == {}
    assert [p.body for p in result.payloads] == [MSFT_2019]  # byte-for-byte
    [request] = fake_api.requests
    assert request.query == {"function": "TIME_SERIES_DAILY", "symbol": "MSFT", "outputsize": "full", "datatype": "json", "apikey": KEY}


def test_compact_is_asked_for_when_the_window_is_recent():
    recent = sessions_between("2015-01-02", dt.date.today() - dt.timedelta(days=20), dt.date.today() - dt.timedelta(days=1))
    assert plan_requests("IBM", recent, "1d", False, "json")[0]["outputsize"] == "compact"
    months = plan_requests("IBM", sessions_between("2015-01-02", "2020-11-23", "2021-01-05"), "5min", False, "csv")
    assert [m["month"] for m in months] == ["2020-11", "2020-12", "2021-01"]


def test_a_throttle_body_is_retried_after_a_real_backoff(fake_api):
    fake_api.route("/query", NOTE, NOTE, MSFT_2019)
    result = alphavantage(fake_api, backoff=0.2).fetch(["MSFT"], JUNE_2019, "1d")
    assert result.failures == {} and len(fake_api.requests) == 3
    gaps = [b.at - a.at for a, b in zip(fake_api.requests, fake_api.requests[1:])]
    assert 0.1 <= gaps[0] < 1.0 and 0.2 <= gaps[1] < 2.0  # 0.2 then 0.4, each plus jitter in [0, 0.2]


def test_retry_after_is_honoured(fake_api):
    fake_api.route("/query", Reply(b"slow down", 429, {"Retry-After": "1"}), MSFT_2019)
    alphavantage(fake_api).fetch(["MSFT"], JUNE_2019, "1d")
    assert len(fake_api.requests) == 2
    assert fake_api.requests[1].at - fake_api.requests[0].at >= 0.95


def http_date(seconds_from_now: float) -> str:
    """A Retry-After HTTP-date (IMF-fixdate, whole seconds), e.g. Wed, 21 Oct 2026 07:28:00 GMT."""
    return email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds_from_now), usegmt=True)


def test_an_http_date_retry_after_is_honoured(fake_api):
    fake_api.route("/query", Reply(b"slow down", 429, {"Retry-After": http_date(2)}), MSFT_2019)
    result = alphavantage(fake_api).fetch(["MSFT"], JUNE_2019, "1d")  # waits at most 2 s (max_backoff_seconds)
    assert result.failures == {} and len(fake_api.requests) == 2
    assert fake_api.requests[1].at - fake_api.requests[0].at >= 0.9  # the date, to the second: 1..2 s away


@pytest.mark.parametrize("retry_after", ["3600", "in-an-hour"])
def test_a_retry_after_past_the_longest_wait_fails_at_once_named(fake_api, retry_after):
    value = http_date(3600) if retry_after == "in-an-hour" else retry_after
    fake_api.route("/query", Reply(b"slow down", 429, {"Retry-After": value}), MSFT_2019)
    started = time.monotonic()
    result = alphavantage(fake_api).fetch(["MSFT"], JUNE_2019, "1d")
    assert time.monotonic() - started < 1 and len(fake_api.requests) == 1  # no sleep, no second request
    why = result.failures["MSFT"]
    assert why.startswith("RetryAfterTooLongError") and f"Retry-After: {value}" in why and "longer than the 2 s" in why
    assert "HTTP 429" in why
    assert "MSFT" in result.permanent  # waiting in this run would not help: no step retry either


def test_an_unreadable_retry_after_falls_back_to_the_backoff(fake_api):
    fake_api.route("/query", Reply(b"busy", 503, {"Retry-After": "soon-ish"}), MSFT_2019)
    assert alphavantage(fake_api).fetch(["MSFT"], JUNE_2019, "1d").failures == {}
    assert len(fake_api.requests) == 2


def test_a_server_error_then_success(fake_api):
    fake_api.route("/query", Reply(b"oops", 500), Reply(b"oops", 502), MSFT_2019)
    assert alphavantage(fake_api).fetch(["MSFT"], JUNE_2019, "1d").failures == {}
    assert len(fake_api.requests) == 3


def test_exhausted_retries_fail_that_symbol_only(fake_api):
    fake_api.route("/query", MSFT_2019, symbol="MSFT")
    fake_api.route("/query", NOTE, symbol="IBM")
    result = alphavantage(fake_api, retries=2).fetch(["IBM", "MSFT"], JUNE_2019, "1d")
    assert [p.symbol for p in result.payloads] == ["MSFT"]
    assert "ThrottledError" in result.failures["IBM"] and "gave up after 3 attempts" in result.failures["IBM"]


@pytest.mark.parametrize(
    "fixture, error, requests",
    [
        ("alphavantage/error_invalid_api_call_TIME_SERIES_DAILY_unknown_symbol.json", "BadSymbolError", 1),
        ("alphavantage/error_premium_endpoint_information_daily_adjusted.json", "PremiumEndpointError", 1),
        ("alphavantage/error_demo_key_information_airbyte.json", "PremiumEndpointError", 1),
    ],
)
def test_permanent_errors_are_not_retried(fake_api, fixture, error, requests):
    fake_api.route("/query", fixture_bytes(fixture))
    result = alphavantage(fake_api).fetch(["XYZ"], JUNE_2019, "1d")
    assert result.failures["XYZ"].startswith(error) and len(fake_api.requests) == requests


def test_truncated_json_is_a_malformed_payload(fake_api):
    fake_api.route("/query", MSFT_2019[: len(MSFT_2019) // 2])
    result = alphavantage(fake_api).fetch(["MSFT"], JUNE_2019, "1d")
    assert result.failures["MSFT"].startswith(MalformedPayloadError.__name__)


def test_the_key_never_appears_in_errors_or_logs(fake_api, caplog):
    caplog.set_level("DEBUG")
    fake_api.route("/query", NOTE)
    closed = AlphaVantageProvider(client(retries=1), KEY, "http://127.0.0.1:9")  # nothing listens on port 9
    failures = alphavantage(fake_api, retries=1).fetch(["MSFT"], JUNE_2019, "1d").failures | closed.fetch(["IBM"], JUNE_2019, "1d").failures
    assert "ServerError" in failures["IBM"] and "127.0.0.1" in failures["IBM"]
    assert KEY not in json.dumps(failures) and KEY not in caplog.text
    assert "apikey=***" in caplog.text  # the URL is logged, redacted


def test_the_rate_limiter_spaces_requests_instead_of_failing(fake_api):
    fake_api.route("/query", MSFT_2019)
    provider = alphavantage(fake_api, per_minute=240)  # one request every 0.25 s
    started = time.monotonic()
    assert provider.fetch(["MSFT", "IBM", "AAPL", "NVDA"], JUNE_2019, "1d").failures == {}
    assert time.monotonic() - started >= 0.7
    gaps = [b.at - a.at for a, b in zip(fake_api.requests, fake_api.requests[1:])]
    assert min(gaps) >= 0.2


def test_the_rate_limiter_spaces_and_counts_across_threads():
    limiter = RateLimiter(per_minute=600, per_day=6)  # one every 0.1 s, six a day
    granted, refused = [], []

    def take():
        try:
            limiter.acquire("alphavantage", "MSFT")
            granted.append(time.monotonic())
        except QuotaExhaustedError:
            refused.append(1)

    threads = [threading.Thread(target=take) for _ in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 6 and len(refused) == 3
    gaps = [b - a for a, b in zip(sorted(granted), sorted(granted)[1:])]
    assert min(gaps) >= 0.08  # 0.1 s apart, less the time between the grant and the timestamp


def test_the_daily_budget_stops_requests_with_a_named_error(fake_api):
    fake_api.route("/query", MSFT_2019)
    result = alphavantage(fake_api, per_day=2).fetch(["MSFT", "IBM", "AAPL"], JUNE_2019, "1d")
    assert [p.symbol for p in result.payloads] == ["MSFT", "IBM"]
    assert result.failures["AAPL"].startswith(QuotaExhaustedError.__name__) and "daily limit of 2" in result.failures["AAPL"]
    assert len(fake_api.requests) == 2


POLYGON_AAPL = fixture_bytes("polygon/aggs_range_AAPL_1day_2023-01-01_2023-01-10_asc_openbb_cassette_2024recording.json")


def polygon_pages(api) -> tuple[bytes, bytes]:
    """The recorded 6-bar response split into two pages joined by next_url, as Polygon pages."""
    doc = json.loads(POLYGON_AAPL)
    first = doc | {"results": doc["results"][:4], "resultsCount": 4, "next_url": "https://api.polygon.io/v2/aggs/ticker/AAPL/range/1/day/1673240400000/2023-01-10?cursor=abc"}
    second = doc | {"results": doc["results"][4:], "resultsCount": 2}
    return json.dumps(first).encode(), json.dumps(second).encode()


def polygon(api, **kw) -> PolygonProvider:
    http = client("polygon", **kw)
    http.headers = {"Authorization": f"Bearer {KEY}"}
    return PolygonProvider(http, api.url)


def test_polygon_follows_next_url_through_the_base_url(fake_api):
    page1, page2 = polygon_pages(fake_api)
    fake_api.route("/v2/aggs/ticker/AAPL/range/1/day/2023-01-03/2023-01-10", page1)
    fake_api.route("/v2/aggs/ticker/AAPL/range/1/day/1673240400000", page2)
    result = polygon(fake_api).fetch(["AAPL"], sessions_between("2015-01-02", "2023-01-03", "2023-01-10"), "1d")
    bars = [p for p in result.payloads if not p.is_actions]  # then its splits and dividends (test_polygon_actions.py)
    assert [p.body for p in bars] == [page1, page2] and [p.part for p in bars] == [0, 1]
    first, second, *reference = fake_api.requests
    assert first.query == {"adjusted": "false", "sort": "asc", "limit": "50000"}
    assert second.query == {"cursor": "abc"}
    assert [r.path for r in reference] == ["/v3/reference/splits", "/v3/reference/dividends"]
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" and KEY not in r.path for r in fake_api.requests)


def test_polygon_null_results_are_retried_then_reported(fake_api):
    empty = fixture_bytes("polygon/empty_results_null_intermittent_2020.json")
    fake_api.route("/v2/aggs/ticker/AAPL", empty, POLYGON_AAPL)
    fake_api.route("/v2/aggs/ticker/MSFT", empty)
    result = polygon(fake_api, retries=2).fetch(["AAPL", "MSFT"], sessions_between("2015-01-02", "2023-01-03", "2023-01-10"), "1d")
    assert [(p.symbol, p.interval) for p in result.payloads] == [("AAPL", "1d"), ("AAPL", "splits"), ("AAPL", "dividends")]
    assert result.failures["MSFT"].startswith("EmptyResultError")
    assert len(fake_api.requests) == 2 + 2 + 3  # AAPL's splits and dividends asked once its bars came


@pytest.mark.parametrize(
    "fixture, status, error",
    [
        ("polygon/error_not_authorized_plan_timeframe_future_date.json", 403, PremiumEndpointError),
        ("polygon/error_api_key_not_provided_400.json", 400, BadKeyError),
    ],
)
def test_polygon_errors_are_named_and_not_retried(fake_api, fixture, status, error):
    fake_api.route("/v2/aggs", Reply(fixture_bytes(fixture), status))
    result = polygon(fake_api).fetch(["AAPL"], sessions_between("2015-01-02", "2023-01-03", "2023-01-10"), "1d")
    assert result.failures["AAPL"].startswith(error.__name__) and len(fake_api.requests) == 1
