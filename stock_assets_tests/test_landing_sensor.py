"""The landing sensor over new, duplicate and malformed dropped files, on a local folder and on
a real S3 API; then the run it asks for, turning a dropped file into warehouse rows."""

import dagster as dg
import duckdb
import pytest

from stock_assets.defs.sensors import landing_files_sensor
from stock_assets.lake.io_manager import LakeResource
from stock_assets.lake.storage import LakeStorage
from stock_assets_tests.conftest import defs_for, fixture_bytes

KO = fixture_bytes("csv/seed_format_KO_2012-2014_zipline_csvdir.csv")
NO_SYMBOL = fixture_bytes("csv/zipline_csvdir_AAPL_2012-2014_with_dividend_split.csv")
KO_TAIL = b"symbol,date,open,high,low,close,volume\n" + b"\n".join(KO.splitlines()[-3:]) + b"\n"
MIXED = KO_TAIL + b"KO,2014-12-27,41.0,41.5,40.9,41.2,100\nko$,2014-12-31,41.0,41.5,40.9,41.2,100\n"  # a Saturday, a bad symbol


def evaluate(instance, url: str, cursor: str | None = None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"lake": LakeResource(url=url)})
    results = list(landing_files_sensor(context))
    requests = [r for r in results if isinstance(r, dg.RunRequest)]
    skips = [r for r in results if isinstance(r, dg.SkipReason)]
    return requests, context.cursor, skips


@pytest.fixture(params=["local", "s3"])
def lake_url(request, tmp_path) -> str:
    return str(tmp_path / "lake") if request.param == "local" else request.getfixturevalue("s3_lake_url")


def test_new_duplicate_and_malformed_files(instance, lake_url):
    lake = LakeStorage(lake_url)
    lake.write_bytes("landing/incoming/ko.csv", KO)
    lake.write_bytes("landing/incoming/aapl_no_symbol.csv", NO_SYMBOL)

    requests, cursor, _ = evaluate(instance, lake_url)
    [ko] = requests
    assert ko.tags["dagster/asset_partition_range_start"] == "2012-01-03"
    assert ko.tags["dagster/asset_partition_range_end"] == "2014-12-31"
    landed = [p for p in lake.list_files("landing") if "/ext-" in p]
    assert len(landed) == 754 and "landing/2012-10-29" not in str(landed)  # Sandy closure: no session, no file
    # The malformed file is moved to quarantine with its reason beside it; nothing else is lost.
    assert lake.list_files("landing/incoming") == ["landing/incoming/ko.csv"]
    [bad, reason] = lake.list_files("quarantine")
    assert bad.endswith("aapl_no_symbol.csv") and reason == bad + ".reason.txt"
    assert lake.read_bytes(bad) == NO_SYMBOL
    assert "missing seed-format columns ['symbol']" in lake.read_bytes(reason).decode()

    # Evaluated again (a restart reads the stored cursor): nothing new, no run.
    again, same_cursor, skips = evaluate(instance, lake_url, cursor)
    assert again == [] and len(skips) == 1 and same_cursor == cursor

    # The same bytes dropped under another name: the same run key, so Dagster runs it once.
    lake.write_bytes("landing/incoming/ko_copy.csv", KO)
    [duplicate], _, _ = evaluate(instance, lake_url, cursor)
    assert duplicate.run_key == ko.run_key


def test_good_rows_land_and_load_bad_rows_are_quarantined(instance, settings, lake_url):
    lake = LakeStorage(lake_url)
    lake.write_bytes("landing/incoming/mixed.csv", MIXED)
    [request], _, _ = evaluate(instance, lake_url)
    assert (request.tags["dagster/asset_partition_range_start"], request.tags["dagster/asset_partition_range_end"]) == ("2014-12-29", "2014-12-31")
    [rejected, reason] = lake.list_files("quarantine")
    assert lake.read_bytes(rejected).decode().count("\n") == 1 + 2
    assert "1 rows with an invalid symbol; 1 rows on a date that is not an NYSE session" in lake.read_bytes(reason).decode()

    defs = defs_for(settings.__class__(**{**settings.__dict__, "lake_url": lake_url}))
    result = defs.resolve_job_def("landing_to_lake_job").execute_in_process(instance=instance, tags=request.tags)
    assert result.success
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT session::VARCHAR, open, high, low, close, volume FROM prices ORDER BY session").fetchall()
    expected = [line.split(",")[1:] for line in KO_TAIL.decode().splitlines()[1:]]
    assert rows == [(d, float(o), float(h), float(lo), float(c), int(v)) for d, o, h, lo, c, v in expected]
