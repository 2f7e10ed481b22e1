"""Production is only ever a complete, checked window. One symbol of three that the provider
cannot serve fails the run by name (after the step retries when it may pass, at once when it
cannot); what was fetched stays in raw/, nothing is loaded or published, and a re-run fetches
only what is missing. A symbol with no bars for a reason we know (not listed yet) does not
block. Polygon: an empty page after `next_url` ends the series and keeps the pages before it.
Against the loopback server, counting the requests it saw."""

import collections
import dataclasses
import datetime as dt
import json

import dagster as dg
import duckdb
import pytest

from stock_assets.cli import materialize_range
from stock_assets.defs.quality import quarantined_symbols
from stock_assets.lake import layout
from stock_assets.lake.storage import LakeStorage
from stock_assets.seed_csv import from_landing_csv, to_landing_csv
from stock_assets.transforms.quality_window import absent_symbols
from stock_assets_tests.conftest import defs_for, fixture_bytes
from stock_assets_tests.fake_api import Reply

KEY = "SEKRIT-KEY-4711"
MSFT_2019 = fixture_bytes("alphavantage/time_series_daily_MSFT_compact_demo_2019_stockpoint.json")  # 2019-03-13..2019-08-02
IBM_2020 = fixture_bytes("alphavantage/time_series_daily_IBM_2020-05-08_crazzyghost.json")  # 2020-05-07..2020-05-08
POLYGON_AAPL = fixture_bytes("polygon/aggs_range_AAPL_1day_2023-01-01_2023-01-10_asc_openbb_cassette_2024recording.json")
POLYGON_EMPTY = fixture_bytes("polygon/empty_results_null_intermittent_2020.json")
JUNE_2019 = ("2019-06-03", "2019-06-28")  # 20 sessions


@pytest.fixture
def http_settings(settings, fake_api, monkeypatch):
    def for_provider(name: str, symbols: tuple[str, ...], **changes):
        monkeypatch.setenv(f"{name.upper()}_API_KEY", KEY)
        return dataclasses.replace(
            settings, provider=name, symbols=symbols, provider_base_url=fake_api.url,
            **{"requests_per_minute": 6000, "http_retries": 1, "http_backoff_seconds": 0.01} | changes,
        )  # fmt: skip

    return for_provider


def av_series(symbol: str) -> bytes:
    return MSFT_2019.replace(b'"MSFT"', f'"{symbol}"'.encode())


def requests_by_symbol(fake_api) -> dict[str, int]:
    return dict(collections.Counter(r.query.get("symbol") or r.query.get("ticker") or r.path.split("/")[4] for r in fake_api.requests))


def step_events(result, step: str = "raw_prices") -> list[str]:
    return [e.event_type_value for e in result.all_events if e.step_key == step]


def failure_of(result) -> str:
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return f"{failure.step_key}: {failure.event_specific_data.error.message}"


def raw_symbols(settings) -> set[str]:
    raw = settings.home / "lake" / "raw"
    return {p.name.split("__")[2] for p in raw.rglob("*") if p.is_file()} if raw.exists() else set()


def loaded(settings) -> dict[str, int]:
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'prices'").fetchone()[0]:
            return {}
        return dict(con.execute("SELECT symbol, count(*) FROM prices GROUP BY symbol").fetchall())


def latest(settings) -> dict | None:
    try:
        return json.loads(LakeStorage(settings.lake_url).read_bytes("published/LATEST"))
    except FileNotFoundError:
        return None


def check(result, name: str):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


@pytest.mark.slow
def test_one_symbol_down_fails_the_run_by_name_and_a_rerun_fetches_only_it(http_settings, fake_api, instance):
    """The outage engineer F's simulated month injects: IBM answers HTTP 500 on every try."""
    settings = http_settings("alphavantage", ("AAPL", "MSFT", "IBM"), step_retries=2)
    for symbol in ("AAPL", "MSFT"):
        fake_api.route("/query", av_series(symbol), symbol=symbol)
    fake_api.route("/query", Reply(b"upstream down", 500), symbol="IBM")

    result = materialize_range(defs_for(settings), *JUNE_2019, instance)

    assert not result.success
    assert step_events(result).count("STEP_UP_FOR_RETRY") == 2  # STOCK_ASSETS_STEP_RETRIES=2: three tries
    text = failure_of(result)
    assert text.startswith("raw_prices: ") and "IBM could not be fetched after 3 tries" in text and "HTTP 500" in text
    assert "AAPL" not in text.split("kept in raw/")[0] and KEY not in text
    # Each try asks for IBM only (two HTTP attempts each); AAPL and MSFT were fetched once and kept.
    assert requests_by_symbol(fake_api) == {"AAPL": 1, "MSFT": 1, "IBM": 6}
    assert raw_symbols(settings) == {"AAPL", "MSFT"}
    assert not result.get_asset_materialization_events()  # nothing landed, loaded or published
    assert latest(settings) is None and loaded(settings) == {}

    fake_api.route("/query", av_series("IBM"), symbol="IBM")  # the provider is back
    again = materialize_range(defs_for(settings), *JUNE_2019, instance)

    assert again.success
    assert requests_by_symbol(fake_api) == {"AAPL": 1, "MSFT": 1, "IBM": 7}  # the re-run fetched IBM only
    assert loaded(settings) == {"AAPL": 20, "MSFT": 20, "IBM": 20}
    assert (latest(settings)["window"], latest(settings)["rows"]) == (list(JUNE_2019), 60)
    assert check(again, "prices_complete").passed


@pytest.mark.slow
def test_with_refetch_a_retry_fetches_again_only_what_this_run_has_not(http_settings, fake_api, instance):
    settings = http_settings("alphavantage", ("AAPL", "MSFT"), step_retries=1)
    fake_api.route("/query", av_series("AAPL"), symbol="AAPL")
    fake_api.route("/query", av_series("MSFT"), symbol="MSFT")
    assert materialize_range(defs_for(settings), *JUNE_2019, instance).success
    fake_api.route("/query", Reply(b"upstream down", 500), symbol="MSFT")

    refetch = {"ops": {"raw_prices": {"config": {"refetch": True}}}}
    job = defs_for(settings).resolve_implicit_global_asset_job_def()
    tags = {"dagster/asset_partition_range_start": JUNE_2019[0], "dagster/asset_partition_range_end": JUNE_2019[1]}
    result = job.execute_in_process(instance=instance, run_config=refetch, tags=tags, raise_on_error=False)

    assert not result.success and step_events(result).count("STEP_UP_FOR_RETRY") == 1
    assert "MSFT could not be fetched after 2 tries" in failure_of(result)
    assert requests_by_symbol(fake_api) == {"AAPL": 2, "MSFT": 1 + 2 * 2}  # AAPL fetched again once, not on the retry


@pytest.mark.slow
def test_a_symbol_not_listed_yet_does_not_block_and_one_that_stopped_trading_does(http_settings, fake_api, instance):
    settings = http_settings("alphavantage", ("MSFT", "IBM"))
    fake_api.route("/query", MSFT_2019, symbol="MSFT")  # ends 2019-08-02
    fake_api.route("/query", IBM_2020, symbol="IBM")  # begins 2020-05-07: not listed yet in 2019

    first = materialize_range(defs_for(settings), "2019-07-29", "2019-08-02", instance)
    assert first.success
    complete = check(first, "prices_complete")
    assert (complete.passed, complete.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert "IBM" in complete.metadata["not_listed_yet"].value and complete.metadata["unexplained"].value == "none"
    assert loaded(settings) == {"MSFT": 5} and latest(settings)["window"] == ["2019-07-29", "2019-08-02"]
    published = latest(settings)

    # MSFT traded on 2019-08-02 and the provider has no bar of it after: a gap, not a listing to come.
    later = materialize_range(defs_for(settings), "2019-08-05", "2019-08-09", instance)
    assert not later.success
    complete = check(later, "prices_complete")
    assert (complete.passed, complete.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert "MSFT" in complete.metadata["unexplained"].value and "IBM" not in complete.metadata["unexplained"].value
    assert latest(settings) == published and loaded(settings) == {"MSFT": 5}

    # Published alone (as a backfill does), the window that lacks MSFT is refused by name.
    job = defs_for(settings).resolve_implicit_global_asset_job_def()
    alone = job.get_subset(asset_selection={dg.AssetKey("published_prices")}).execute_in_process(instance=instance, raise_on_error=False)
    assert not alone.success
    text = failure_of(alone)
    assert "prices_complete" in text and "MSFT" in text and "not published" in text
    assert latest(settings) == published


@pytest.mark.slow
def test_polygon_an_empty_series_is_not_listed_yet_unless_it_traded_the_session_before(http_settings, fake_api, instance):
    settings = http_settings("polygon", ("AAPL", "NEWCO"), step_retries=1)
    fake_api.route("/v2/aggs/ticker/AAPL/range/1/day/2023-01-03/2023-01-05", POLYGON_AAPL)
    fake_api.route("/v2/aggs/ticker/NEWCO/", POLYGON_EMPTY)  # answered, no bars: not listed yet

    first = materialize_range(defs_for(settings), "2023-01-03", "2023-01-05", instance)
    assert first.success
    assert requests_by_symbol(fake_api) == {"AAPL": 1 + 2, "NEWCO": 2}  # the empty answer is asked again once, then believed; AAPL's splits and dividends too
    assert step_events(first).count("STEP_UP_FOR_RETRY") == 0
    assert loaded(settings) == {"AAPL": 3} and latest(settings)["window"] == ["2023-01-03", "2023-01-05"]

    # AAPL traded on 2023-01-05: an empty answer for the next days is an outage, retried, then named.
    fake_api.route("/v2/aggs/ticker/AAPL/range/1/day/2023-01-06/2023-01-09", POLYGON_EMPTY)
    later = materialize_range(defs_for(settings), "2023-01-06", "2023-01-09", instance)
    assert not later.success
    assert step_events(later).count("STEP_UP_FOR_RETRY") == 1
    text = failure_of(later)
    assert "AAPL could not be fetched after 2 tries" in text and "2023-01-05" in text and "NEWCO" not in text
    assert latest(settings)["window"] == ["2023-01-03", "2023-01-05"] and loaded(settings) == {"AAPL": 3}


def test_a_permanent_failure_of_one_symbol_fails_at_once_and_keeps_the_others(http_settings, fake_api, instance):
    settings = http_settings("polygon", ("AAPL", "MSFT", "IBM"))
    fake_api.route("/v2/aggs/ticker/AAPL/", POLYGON_AAPL)
    fake_api.route("/v2/aggs/ticker/MSFT/", POLYGON_AAPL.replace(b'"AAPL"', b'"MSFT"'))
    fake_api.route("/v2/aggs/ticker/IBM/", Reply(fixture_bytes("polygon/error_not_authorized_plan_timeframe_future_date.json"), 403))

    result = materialize_range(defs_for(settings), "2023-01-03", "2023-01-06", instance)

    assert not result.success
    assert step_events(result).count("STEP_START") == 1 and "STEP_UP_FOR_RETRY" not in step_events(result)
    text = failure_of(result)
    assert "IBM" in text and "PremiumEndpointError" in text and "not retried" in text
    assert requests_by_symbol(fake_api) == {"AAPL": 1 + 2, "MSFT": 1 + 2, "IBM": 1}  # bars, splits, dividends; IBM's bars refused
    assert raw_symbols(settings) == {"AAPL", "MSFT"} and latest(settings) is None and loaded(settings) == {}


def polygon_pages(base_url: str) -> list[bytes]:
    """The recorded six bars as two pages linked by next_url, then an empty last page (Polygon's
    empty shape, the recorded `results: null` body), as a paged answer ends."""
    doc = json.loads(POLYGON_AAPL)
    cursor = f"{base_url}/v2/aggs/ticker/AAPL/range/1/day/2023-01-03/2023-01-10?cursor="
    first = doc | {"results": doc["results"][:3], "resultsCount": 3, "next_url": f"{cursor}p2"}
    second = doc | {"results": doc["results"][3:], "resultsCount": 3, "next_url": f"{cursor}p3"}
    return [json.dumps(first).encode(), json.dumps(second).encode(), POLYGON_EMPTY]


@pytest.mark.slow
def test_polygon_an_empty_last_page_ends_the_series_and_keeps_the_pages(http_settings, fake_api, instance):
    settings = http_settings("polygon", ("AAPL",), http_retries=3)
    first, second, empty = polygon_pages("https://api.polygon.io")
    fake_api.route("/v2/aggs/ticker/AAPL/range/1/day/2023-01-03/2023-01-10", first)
    fake_api.route("/v2/aggs/ticker/AAPL/range/1/day/2023-01-03/2023-01-10", second, cursor="p2")
    fake_api.route("/v2/aggs/ticker/AAPL/range/1/day/2023-01-03/2023-01-10", empty, cursor="p3")

    result = materialize_range(defs_for(settings), "2023-01-03", "2023-01-10", instance)

    assert result.success
    assert [r.query.get("cursor") for r in fake_api.requests if r.path.startswith("/v2/")] == [None, "p2", "p3"]  # no retry spent on the empty page
    assert [r.path for r in fake_api.requests[3:]] == ["/v3/reference/splits", "/v3/reference/dividends"]
    assert loaded(settings) == {"AAPL": 6} and latest(settings)["rows"] == 6
    assert step_events(result).count("STEP_START") == 1
    raw = settings.home / "lake" / "raw" / "2023-01-03_2023-01-10"
    assert sorted(p.read_bytes() for p in raw.glob("polygon__1d__*")) == sorted([first, second, empty])  # every page kept as received
    assert len(list(raw.glob("polygon__splits__AAPL__*"))) == len(list(raw.glob("polygon__dividends__AAPL__*"))) == 1
    landing = next(e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "landing_csv")
    assert landing.step_materialization_data.materialization.metadata["unparsed_payloads"].value == "none"  # the empty page is no bars


def test_bars_set_aside_explain_a_symbol_absent_from_the_window(tmp_path):
    """A symbol that traded the session before is excused only by bars of it in quarantine/ for this window."""
    storage = LakeStorage(str(tmp_path))
    saturday = from_landing_csv(b"symbol,date,open,high,low,close,volume\nMSFT,2019-06-08,1,2,0.5,1.5,100\n", source="test", ingested_at=dt.datetime(2019, 6, 10, tzinfo=dt.UTC))
    sessions = [dt.date(2019, 6, 7), dt.date(2019, 6, 10)]
    layout.quarantine(storage, "provider/2019-06-07_2019-06-10/20190610T000000Z-not-a-session.csv", to_landing_csv(saturday), "1 bar not a session\n")
    layout.quarantine(storage, "provider/2019-06-03_2019-06-06/20190610T000000Z-not-a-session.csv", b"symbol,date\nIBM,2019-06-01\n", "another window\n")
    quarantined = quarantined_symbols(storage, sessions)
    assert quarantined == {"MSFT"}
    present = saturday.slice(0, 0)
    assert absent_symbols(present, ["AAPL", "IBM", "MSFT", "NEWCO"], {"AAPL", "IBM", "MSFT"}, quarantined) == {
        "unexplained": ["AAPL", "IBM"], "quarantined": ["MSFT"], "not_listed_yet": ["NEWCO"],
    }
