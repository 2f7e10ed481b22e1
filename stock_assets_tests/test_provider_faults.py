"""Permanent failures fail the run at once and no layer retries them (not the HTTP layer, not the
step's RetryPolicy, not run retries); transient ones keep the HTTP backoff and the step retry.
Counted where it matters: requests that reached a real loopback server, and the step's events.
Also: Alpha Vantage notices are classified by what the body is, not by a word in a URL."""

import dataclasses
import json
import time

import duckdb
import pytest

from stock_assets.cli import materialize_range
from stock_assets.providers.alphavantage_format import check_alphavantage_body
from stock_assets.providers.errors import BadKeyError, MalformedPayloadError, PremiumEndpointError, ThrottledError
from stock_assets_tests.conftest import defs_for, fixture_bytes
from stock_assets_tests.fake_api import Reply

KEY = "SEKRIT-KEY-4711"
MSFT_2019 = fixture_bytes("alphavantage/time_series_daily_MSFT_compact_demo_2019_stockpoint.json")
NOTE = fixture_bytes("alphavantage/error_rate_limit_note_5perminute_500perday.json")
UNKNOWN = fixture_bytes("alphavantage/error_invalid_api_call_TIME_SERIES_DAILY_unknown_symbol.json")
# Alpha Vantage's bad-key wording, as quoted in public client tests (also in test_provider_formats.py).
AV_BAD_KEY = b'{"Error Message": "the parameter apikey is invalid or missing. Please claim your free API key on (https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."}'
# The 2018-era throttle wording (5/minute, 500/day) that was read as a premium-endpoint refusal.
THROTTLE_2018 = (
    "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and 500 calls per day. "
    "Please visit https://www.alphavantage.co/premium/ if you would like to have a higher API call volume."
)
JUNE_2019 = ("2019-06-03", "2019-06-28")
JAN_2023 = ("2023-01-03", "2023-01-06")
RETRY_EVENTS = ("STEP_UP_FOR_RETRY", "STEP_RESTARTED")


@pytest.fixture
def http_settings(settings, fake_api, monkeypatch):
    def for_provider(name: str, symbols: tuple[str, ...], **changes):
        monkeypatch.setenv(f"{name.upper()}_API_KEY", KEY)
        return dataclasses.replace(
            settings, provider=name, symbols=symbols, provider_base_url=fake_api.url,
            requests_per_minute=6000, http_retries=1, http_backoff_seconds=0.01, **changes,
        )

    return for_provider


def raw_prices_events(result) -> list:
    return [e for e in result.all_events if e.step_key == "raw_prices"]


def kinds(events) -> list[str]:
    return [e.event_type_value for e in events]


def failure_text(events) -> str:
    [failure] = [e for e in events if e.event_type_value == "STEP_FAILURE"]
    return str(failure.event_specific_data.error.message)


def requested_symbols(fake_api) -> list[str]:
    return sorted(r.query.get("symbol") or r.path.split("/")[4] for r in fake_api.requests)


def raw_files(settings) -> list:
    raw = settings.home / "lake" / "raw"
    return sorted(p for p in raw.rglob("*") if p.is_file()) if raw.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize(
    "provider, route, body, status, window, error",
    [
        ("alphavantage", "/query", AV_BAD_KEY, 200, JUNE_2019, "BadKeyError"),
        ("alphavantage", "/query", fixture_bytes("alphavantage/error_demo_key_information_airbyte.json"), 200, JUNE_2019, "PremiumEndpointError"),
        ("alphavantage", "/query", fixture_bytes("alphavantage/error_premium_endpoint_information_daily_adjusted.json"), 200, JUNE_2019, "PremiumEndpointError"),
        ("alphavantage", "/query", UNKNOWN, 200, JUNE_2019, "BadSymbolError"),
        ("alphavantage", "/query", MSFT_2019[:500], 200, JUNE_2019, "MalformedPayloadError"),
        ("polygon", "/v2/aggs", fixture_bytes("polygon/error_api_key_not_provided_400.json"), 400, JAN_2023, "BadKeyError"),
        ("polygon", "/v2/aggs", fixture_bytes("polygon/error_not_authorized_plan_timeframe_future_date.json"), 403, JAN_2023, "PremiumEndpointError"),
        ("polygon", "/v2/aggs", b'{"status": "ERROR", "error": "Could not parse the time parameter: \'from\'."}', 400, JAN_2023, "ProviderError"),
    ],
)
def test_a_permanent_failure_costs_one_request_per_symbol_and_fails_the_run_at_once(
    http_settings, fake_api, instance, provider, route, body, status, window, error
):
    settings = http_settings(provider, ("IBM", "MSFT"))
    fake_api.route(route, Reply(body, status))

    started = time.monotonic()
    result = materialize_range(defs_for(settings), *window, instance)
    elapsed = time.monotonic() - started

    assert not result.success
    assert requested_symbols(fake_api) == ["IBM", "MSFT"]  # exactly one request per symbol, no HTTP retry
    events = raw_prices_events(result)
    # One attempt: the step's RetryPolicy (STOCK_ASSETS_STEP_RETRIES=3) did not fire.
    assert kinds(events).count("STEP_START") == 1 and not set(RETRY_EVENTS) & set(kinds(events))
    assert kinds(events)[-1] == "STEP_FAILURE"
    text = failure_text(events)
    assert "IBM" in text and "MSFT" in text and error in text and "not retried" in text
    assert KEY not in text
    assert raw_files(settings) == []  # nothing landed in the lake
    # The step's own time: a retry would add at least one RetryPolicy delay per attempt.
    assert elapsed < 30 and len(fake_api.requests) == 2


@pytest.mark.slow
def test_transient_failures_keep_the_http_backoff_and_the_step_retry(http_settings, fake_api, instance):
    settings = http_settings("alphavantage", ("IBM", "MSFT"))
    fake_api.route("/query", MSFT_2019.replace(b'"MSFT"', b'"IBM"'), symbol="IBM")
    fake_api.route("/query", NOTE, symbol="MSFT")  # throttled every time: transient

    result = materialize_range(defs_for(settings), *JUNE_2019, instance)

    assert not result.success
    events = raw_prices_events(result)
    attempts = 1 + kinds(events).count("STEP_RESTARTED")
    assert attempts == 4 and kinds(events).count("STEP_UP_FOR_RETRY") == 3  # STOCK_ASSETS_STEP_RETRIES=3
    # IBM once (kept in raw/ by the first try); MSFT twice per attempt (STOCK_ASSETS_HTTP_RETRIES=1).
    assert requested_symbols(fake_api) == ["IBM"] + ["MSFT"] * 2 * attempts
    assert "MSFT could not be fetched after 4 tries" in failure_text(events) and "ThrottledError" in failure_text(events)


def test_a_permanent_failure_beside_a_transient_one_stops_at_once(http_settings, fake_api, instance):
    """IBM cannot be fetched by any retry, so the window cannot be completed: no retry for MSFT either."""
    settings = http_settings("alphavantage", ("IBM", "MSFT"))
    fake_api.route("/query", UNKNOWN, symbol="IBM")  # permanent
    fake_api.route("/query", NOTE, symbol="MSFT")  # throttled every time: transient

    result = materialize_range(defs_for(settings), *JUNE_2019, instance)

    assert not result.success
    events = raw_prices_events(result)
    assert kinds(events).count("STEP_START") == 1 and not set(RETRY_EVENTS) & set(kinds(events))
    assert requested_symbols(fake_api) == ["IBM", "MSFT", "MSFT"]
    text = failure_text(events)
    assert "BadSymbolError" in text and "ThrottledError" in text and "not retried" in text


@pytest.mark.slow
def test_a_transient_failure_recovers_on_the_step_retry(http_settings, fake_api, instance):
    settings = http_settings("alphavantage", ("MSFT",))
    fake_api.route("/query", Reply(b"busy", 503), Reply(b"busy", 503), MSFT_2019)  # 2 HTTP attempts fail, the step retry lands

    result = materialize_range(defs_for(settings), "2019-07-01", "2019-07-03", instance)

    assert result.success
    assert kinds(raw_prices_events(result)).count("STEP_UP_FOR_RETRY") == 1 and len(fake_api.requests) == 3


def test_a_reversed_window_fails_at_once_and_says_so(settings, instance):
    result = materialize_range(defs_for(settings), "2019-06-28", "2019-06-03", instance)

    assert not result.success
    events = raw_prices_events(result)
    assert kinds(events).count("STEP_START") == 1 and not set(RETRY_EVENTS) & set(kinds(events))
    text = failure_text(events)
    assert "2019-06-28..2019-06-03 holds no NYSE session" in text and "reversed" in text
    assert "zero-size array" not in text


def test_no_symbol_fails_at_once_and_says_so(settings, instance):
    result = materialize_range(defs_for(dataclasses.replace(settings, symbols=())), "2019-06-03", "2019-06-07", instance)

    assert not result.success
    events = raw_prices_events(result)
    assert kinds(events).count("STEP_START") == 1 and not set(RETRY_EVENTS) & set(kinds(events))
    text = failure_text(events)
    assert "no symbol" in text and "STOCK_ASSETS_SYMBOLS" in text and "No objects to concatenate" not in text


@pytest.mark.parametrize(
    "where, variable",
    [
        ("warehouse_closed_port", "STOCK_ASSETS_WAREHOUSE_URL"),
        ("warehouse_under_a_file", "STOCK_ASSETS_WAREHOUSE_URL"),
        ("lake_under_a_file", "STOCK_ASSETS_LAKE_URL"),
        ("lake_is_a_file", "STOCK_ASSETS_LAKE_URL"),
    ],
)
def test_an_unreachable_warehouse_or_lake_fails_before_any_request(http_settings, fake_api, instance, tmp_path, where, variable):
    (tmp_path / "afile").write_text("not a directory")
    changes = {
        "warehouse_closed_port": {"warehouse_url": "postgresql://nobody@127.0.0.1:9/nowhere"},
        "warehouse_under_a_file": {"warehouse_url": f"duckdb:///{tmp_path / 'afile' / 'warehouse.duckdb'}"},
        "lake_under_a_file": {"lake_url": str(tmp_path / "afile" / "lake")},
        "lake_is_a_file": {"lake_url": str(tmp_path / "afile")},
    }[where]
    settings = http_settings("alphavantage", ("MSFT",), **changes)
    fake_api.route("/query", MSFT_2019)

    result = materialize_range(defs_for(settings), *JUNE_2019, instance)

    assert not result.success and fake_api.requests == []  # no quota spent
    events = raw_prices_events(result)
    assert kinds(events).count("STEP_START") == 1 and not set(RETRY_EVENTS) & set(kinds(events))
    assert variable in failure_text(events)
    assert raw_files(settings) == [] and not (tmp_path / "lake").exists()


def test_a_missing_s3_bucket_fails_before_any_request(http_settings, fake_api, instance, s3_endpoint):
    settings = http_settings("alphavantage", ("MSFT",), lake_url="s3://no-such-bucket-4711/lake")
    fake_api.route("/query", MSFT_2019)

    result = materialize_range(defs_for(settings), *JUNE_2019, instance)

    assert not result.success and fake_api.requests == []
    events = raw_prices_events(result)
    assert not set(RETRY_EVENTS) & set(kinds(events))
    text = failure_text(events)
    assert "STOCK_ASSETS_LAKE_URL" in text and "no-such-bucket-4711" in text


# --- Alpha Vantage notices: what the body is, not a word in its URL ---------------------------


@pytest.mark.parametrize(
    "doc, error",
    [
        ({"Note": THROTTLE_2018}, ThrottledError),
        ({"Information": THROTTLE_2018}, ThrottledError),
        # Constructed: a notice with no rate word at all, only "premium" inside its URL.
        ({"Information": "Thank you for using Alpha Vantage! Please visit https://www.alphavantage.co/premium/ for a higher API call volume."}, ThrottledError),
        # Constructed after AV's 2024 wording for a parameter value that only paid plans may use.
        ({"Information": "Thank you for using Alpha Vantage! The outputsize=full parameter value is a premium feature for the TIME_SERIES_DAILY endpoint. You may subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium features"}, PremiumEndpointError),
        ({"Information": "Invalid API key. Please claim your free API key on (https://www.alphavantage.co/support/#api-key)."}, BadKeyError),
        ({"Information": THROTTLE_2018, "Meta Data": {}}, MalformedPayloadError),  # not a notice alone: we do not know it
    ],
)
def test_alphavantage_notices_are_classified_by_meaning(doc, error):
    with pytest.raises(error) as info:
        check_alphavantage_body(json.dumps(doc).encode(), "json", "IBM")
    assert type(info.value) is error and info.value.retryable == (error is ThrottledError)


def prices(settings, symbol: str) -> list[tuple]:
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("SELECT session::VARCHAR, close FROM prices WHERE symbol = ? ORDER BY session", [symbol]).fetchall()


@pytest.mark.slow
@pytest.mark.parametrize("key", ["Note", "Information"])
def test_the_2018_throttle_wording_is_waited_out_and_the_symbol_lands(http_settings, fake_api, instance, key):
    settings = http_settings("alphavantage", ("MSFT",))
    fake_api.route("/query", json.dumps({key: THROTTLE_2018}).encode(), MSFT_2019)

    result = materialize_range(defs_for(settings), *JUNE_2019, instance)

    assert result.success and len(fake_api.requests) == 2  # the throttle, then the data
    assert kinds(raw_prices_events(result)).count("STEP_START") == 1  # waited out by the HTTP layer
    got = prices(settings, "MSFT")
    assert len(got) == 20 and got[0][0] == "2019-06-03"


def test_a_warehouse_locked_by_a_concurrent_run_counts_as_reachable(tmp_path):
    """Another process holding the DuckDB file (a concurrent run's load) must not fail the run at once."""
    import subprocess
    import sys

    from stock_assets.lake.storage import LakeStorage
    from stock_assets.preflight import unreachable
    from stock_assets.warehouse.io_manager import WarehouseResource

    path = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys, time; con = duckdb.connect({str(path)!r}); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        warehouse = WarehouseResource(url=f"duckdb:///{path}", lock_timeout_seconds=0.5)
        assert unreachable(warehouse.get(), warehouse.url, LakeStorage(str(tmp_path / "lake")), str(tmp_path / "lake"), None) is None
    finally:
        holder.kill()
        holder.wait()
