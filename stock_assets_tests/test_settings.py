"""Every setting is read and checked once, when the code location loads: a bad one stops the
load with a message naming the variable and what it accepts, before anything is written."""

import datetime as dt
import subprocess
import sys

import pytest

from stock_assets.settings import Settings, SettingsError
from stock_assets_tests.test_cli import ROOT, environment

TODAY = dt.date(2026, 11, 27)


@pytest.mark.parametrize(
    "variable, value, says",
    [
        ("STOCK_ASSETS_START", "2999-01-01", "from 1990-01-02 to today (2026-11-27)"),
        ("STOCK_ASSETS_START", "last tuesday", "a date YYYY-MM-DD"),
        ("STOCK_ASSETS_SYMBOLS", ",", "no symbol"),
        ("STOCK_ASSETS_SYMBOLS", "AAPL,ms ft", "invalid symbol 'MS FT'"),
        ("STOCK_ASSETS_PROVIDER", "yahoo", "synthetic, alphavantage, polygon"),
        ("STOCK_ASSETS_INTERVAL", "2h", "1d, 60min"),
        ("STOCK_ASSETS_LAKE_URL", "gs://bucket/lake", "a local path or s3://bucket/prefix"),
        ("STOCK_ASSETS_HTTP_RETRIES", "many", "a whole number >= 0"),
        ("STOCK_ASSETS_DQ_JUMP_THRESHOLD", "-1", "a number > 0 and <= 10"),
        ("STOCK_ASSETS_SYNTHETIC_FAULTS", "gremlins", "nulls, zeros"),
        ("ALPHAVANTAGE_ADJUSTED", "maybe", "true, false"),
    ],
)
def test_a_bad_setting_names_its_variable_and_what_it_accepts(variable, value, says):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value}, today=TODAY)
    assert str(raised.value).startswith(f"{variable}=") and says in str(raised.value)


def test_a_warehouse_url_with_a_password_is_named_but_not_shown():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"STOCK_ASSETS_WAREHOUSE_URL": "mysql://loader:s3cret@db/prices"}, today=TODAY)
    assert "STOCK_ASSETS_WAREHOUSE_URL=<set>: unsupported scheme 'mysql'" in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_the_defaults_are_valid():
    settings = Settings.from_env({}, today=TODAY)
    assert (settings.provider, settings.start, settings.symbols[0]) == ("synthetic", "2015-01-02", "AAPL")


def test_the_code_location_does_not_load_with_a_bad_setting_and_writes_nothing(tmp_path):
    env = environment(tmp_path, STOCK_ASSETS_START="2999-01-01")
    load = "from stock_assets.definitions import defs; defs()"  # what Dagster does with the @dg.definitions function
    loaded = subprocess.run([sys.executable, "-c", load], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert loaded.returncode != 0
    assert "SettingsError: STOCK_ASSETS_START='2999-01-01': outside the range" in loaded.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dagster"]  # no lake, no warehouse


@pytest.mark.parametrize(
    "env, variable, says",
    [
        ({"STOCK_ASSETS_PROVIDER": "csvdir"}, "STOCK_ASSETS_CSVDIR_URL", "STOCK_ASSETS_CSVDIR_URL='': required with STOCK_ASSETS_PROVIDER=csvdir; accepted: a local folder or s3://bucket/prefix"),
        ({"STOCK_ASSETS_PROVIDER": "csvdir", "STOCK_ASSETS_CSVDIR_URL": "gs://bucket/archive"}, "STOCK_ASSETS_CSVDIR_URL", "unsupported scheme 'gs'"),
        ({"STOCK_ASSETS_PROVIDER": "csvdir", "STOCK_ASSETS_CSVDIR_URL": "/data/csv", "STOCK_ASSETS_INTERVAL": "5min"}, "STOCK_ASSETS_INTERVAL", "csvdir files hold daily bars; accepted: 1d with STOCK_ASSETS_PROVIDER=csvdir"),
    ],
)
def test_provider_csvdir_needs_its_folder_and_daily_bars(env, variable, says):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env, today=TODAY)
    assert str(raised.value).startswith(f"{variable}=") and says in str(raised.value)


@pytest.mark.parametrize("url", ["/data/zipline/csvdir/daily", "file:///data/csv", "s3://archive-bucket/csvdir/daily"])
def test_provider_csvdir_takes_a_folder_or_an_s3_prefix(url):
    settings = Settings.from_env({"STOCK_ASSETS_PROVIDER": "csvdir", "STOCK_ASSETS_CSVDIR_URL": url}, today=TODAY)
    assert (settings.provider, settings.csvdir_url, settings.requests_per_day) == ("csvdir", url, None)
    assert Settings.from_env({"STOCK_ASSETS_CSVDIR_URL": url}, today=TODAY).provider == "synthetic"  # read, unused


def test_rows_per_run_sizes_the_runs_of_a_backfill():
    from stock_assets.defs.common import backfill_policy

    settings = Settings.from_env({"STOCK_ASSETS_ROWS_PER_RUN": "250", "STOCK_ASSETS_SYMBOLS": "A,B,C,D,E"}, today=TODAY)
    assert backfill_policy(settings).max_partitions_per_run == 50  # 250 bars: 50 sessions of 5 symbols' daily bars
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"STOCK_ASSETS_ROWS_PER_RUN": "0"}, today=TODAY)
    assert str(raised.value).startswith("STOCK_ASSETS_ROWS_PER_RUN='0'")


AV, POLYGON = {"STOCK_ASSETS_PROVIDER": "alphavantage"}, {"STOCK_ASSETS_PROVIDER": "polygon"}
# Every numeric variable, what it accepts, and one finite value just outside that range.
NUMBERS = [
    ("ALPHAVANTAGE_REQUESTS_PER_MINUTE", AV, "a number >= 0 and <= 100,000", "100001"),
    ("POLYGON_REQUESTS_PER_MINUTE", POLYGON, "a number >= 0 and <= 100,000", "100001"),
    ("ALPHAVANTAGE_REQUESTS_PER_DAY", AV, "a whole number >= 1 and <= 10,000,000", "0"),
    ("POLYGON_REQUESTS_PER_DAY", POLYGON, "a whole number >= 1 and <= 10,000,000", "0"),
    ("STOCK_ASSETS_HTTP_RETRIES", {}, "a whole number >= 0 and <= 20", "21"),
    ("STOCK_ASSETS_HTTP_BACKOFF_SECONDS", {}, "a number >= 0 and <= 60", "61"),
    ("STOCK_ASSETS_DQ_JUMP_THRESHOLD", {}, "a number > 0 and <= 10", "0"),
    ("STOCK_ASSETS_STEP_RETRIES", {}, "a whole number >= 0 and <= 20", "21"),
    ("STOCK_ASSETS_STEP_RETRY_DELAY_SECONDS", {}, "a number >= 0 and <= 3,600", "3601"),
    ("STOCK_ASSETS_WAREHOUSE_LOCK_TIMEOUT_SECONDS", {}, "a number >= 1 and <= 86,400", "0.5"),
    ("STOCK_ASSETS_WAREHOUSE_STATEMENT_TIMEOUT_SECONDS", {}, "a number >= 1 and <= 604,800", "604801"),
    ("STOCK_ASSETS_POOL_WAIT_SECONDS", {}, "a number >= 1 and <= 604,800", "0"),
    ("STOCK_ASSETS_LAKE_RETENTION_DAYS", {}, "a number > 0 and <= 36,500", "0"),
    ("STOCK_ASSETS_ROWS_PER_RUN", {}, "a whole number >= 1 and <= 1,000,000,000", "1000000001"),
]


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "out of range"])
@pytest.mark.parametrize("variable, env, accepted, outside", NUMBERS, ids=[n[0] for n in NUMBERS])
def test_every_number_is_finite_and_in_its_range_at_load(variable, env, accepted, outside, bad):
    value = outside if bad == "out of range" else bad
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({**env, variable: value}, today=TODAY)
    assert str(raised.value).startswith(f"{variable}={value!r}") and str(raised.value).endswith(f"; accepted: {accepted}")


def test_the_jump_check_cannot_be_switched_off_by_nan():
    # nan compares False with every move: no jump would ever be flagged
    with pytest.raises(SettingsError, match=r"^STOCK_ASSETS_DQ_JUMP_THRESHOLD='nan': not a finite number"):
        Settings.from_env({"STOCK_ASSETS_DQ_JUMP_THRESHOLD": "nan"}, today=TODAY)


SECRET = {"STOCK_ASSETS_WAREHOUSE_URL", "STOCK_ASSETS_PROVIDER_BUDGET_URL"}
# Every URL variable and each part it cannot work without.
URLS = [
    ("STOCK_ASSETS_LAKE_URL", {}, "s3://", "no bucket"),
    ("STOCK_ASSETS_LAKE_URL", {}, "s3:///lake", "no bucket"),
    ("STOCK_ASSETS_LAKE_URL", {}, "file://", "no path"),
    ("STOCK_ASSETS_CSVDIR_URL", {"STOCK_ASSETS_PROVIDER": "csvdir"}, "s3:///csvdir/daily", "no bucket"),
    ("STOCK_ASSETS_WAREHOUSE_URL", {}, "postgresql://", "no host"),
    ("STOCK_ASSETS_WAREHOUSE_URL", {}, "postgresql://loader:s3cret@/prices", "no host"),
    ("STOCK_ASSETS_WAREHOUSE_URL", {}, "postgresql://loader:s3cret@db:5432", "no database"),
    ("STOCK_ASSETS_WAREHOUSE_URL", {}, "postgres://loader:s3cret@db:port/prices", "bad port"),
    ("STOCK_ASSETS_WAREHOUSE_URL", {}, "redshift://loader:s3cret@:5439/dev", "no host"),
    ("STOCK_ASSETS_WAREHOUSE_URL", {}, "redshift://loader:s3cret@cluster:5439/", "no database"),
    ("STOCK_ASSETS_WAREHOUSE_URL", {}, "duckdb://", "no file path"),
    ("STOCK_ASSETS_WAREHOUSE_URL", {}, "duckdb:///", "no file path"),
    ("STOCK_ASSETS_PROVIDER_BUDGET_URL", {}, "postgresql:///budget", "no host"),
    ("STOCK_ASSETS_PROVIDER_BUDGET_URL", {}, "postgresql://counter:s3cret@db", "no database"),
    ("STOCK_ASSETS_PROVIDER_BUDGET_URL", {}, "sqlite:///", "no file path"),
    ("STOCK_ASSETS_UI_URL", {}, "http://", "no host"),
    ("STOCK_ASSETS_UI_URL", {}, "https:///dagster", "no host"),
    ("ALPHAVANTAGE_BASE_URL", AV, "https://", "no host"),
    ("POLYGON_BASE_URL", POLYGON, "http://:8080", "no host"),
    ("POLYGON_BASE_URL", POLYGON, "api.polygon.example/v2", "unsupported scheme ''"),
]


@pytest.mark.parametrize("variable, env, url, says", URLS)
def test_every_url_has_the_parts_it_needs_at_load(variable, env, url, says):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({**env, variable: url}, today=TODAY)
    shown = "<set>" if variable in SECRET else repr(url)
    assert str(raised.value).startswith(f"{variable}={shown}: {says}; accepted: ")
    assert "s3cret" not in str(raised.value)


def test_complete_urls_and_numbers_at_the_ends_of_their_ranges_load():
    env = {"STOCK_ASSETS_PROVIDER": "polygon", "POLYGON_BASE_URL": "http://127.0.0.1:8080",
           "STOCK_ASSETS_LAKE_URL": "s3://bucket", "STOCK_ASSETS_CSVDIR_URL": "s3://archive/csvdir",
           "STOCK_ASSETS_WAREHOUSE_URL": "redshift://loader:pw@cluster.example:5439/dev",
           "STOCK_ASSETS_PROVIDER_BUDGET_URL": "postgresql://counter@db/budget", "STOCK_ASSETS_UI_URL": "https://dagster.example",
           "STOCK_ASSETS_DQ_JUMP_THRESHOLD": "10", "STOCK_ASSETS_LAKE_RETENTION_DAYS": "0.5",
           "STOCK_ASSETS_WAREHOUSE_LOCK_TIMEOUT_SECONDS": "1", "STOCK_ASSETS_HTTP_RETRIES": "0"}
    settings = Settings.from_env(env, today=TODAY)
    assert (settings.dq_jump_threshold, settings.lake_retention_days, settings.http_retries) == (10, 0.5, 0)
    assert Settings.from_env({"STOCK_ASSETS_WAREHOUSE_URL": "duckdb://warehouse.duckdb"}, today=TODAY).warehouse_url == "duckdb://warehouse.duckdb"
