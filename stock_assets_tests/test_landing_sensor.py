"""Files dropped into landing/incoming/: the sensor notices new, complete files (on a local folder
and on a real S3 API) and asks for a run that lands each; a landed file's sessions then run
through the lake to the warehouse."""

import dataclasses
import os
import time

import dagster as dg
import duckdb
import pytest

from stock_assets.defs.landing import landing_files_sensor
from stock_assets.lake.io_manager import LakeResource
from stock_assets.lake.storage import LakeStorage
from stock_assets_tests.conftest import defs_for, fixture_bytes

KO = fixture_bytes("csv/seed_format_KO_2012-2014_zipline_csvdir.csv")
NO_SYMBOL = fixture_bytes("csv/zipline_csvdir_AAPL_2012-2014_with_dividend_split.csv")
KO_TAIL = b"symbol,date,open,high,low,close,volume\n" + b"\n".join(KO.splitlines()[-3:]) + b"\n"
MIXED = KO_TAIL + b"KO,2014-12-27,41.0,41.5,40.9,41.2,100\nko$,2014-12-31,41.0,41.5,40.9,41.2,100\n"  # a Saturday, a bad symbol
RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def evaluate(instance, url: str, cursor: str | None = None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"lake": LakeResource(url=url)})
    results = list(landing_files_sensor(context))
    requests = [r for r in results if isinstance(r, dg.RunRequest)]
    skips = [r for r in results if isinstance(r, dg.SkipReason)]
    return requests, context.cursor, skips


def land(instance, settings, request: dg.RunRequest):
    """The run the sensor asked for, then what landed_files_sensor asks for once it ends:
    (the landing run's result, the request for landing_to_lake_job or a SkipReason, or None
    when the landing run failed)."""
    defs = defs_for(settings)
    result = defs.resolve_job_def("land_dropped_file_job").execute_in_process(instance=instance, tags=request.tags, raise_on_error=False)
    if not result.success:
        return result, None
    run = instance.get_run_by_id(result.run_id)  # with the tags the run added
    success = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_SUCCESS)
    context = dg.build_run_status_sensor_context("landed_files_sensor", success, instance, run)
    return result, defs.resolve_sensor_def("landed_files_sensor")(context)


def on(settings, lake_url: str):
    return dataclasses.replace(settings, lake_url=lake_url)


@pytest.fixture(params=["local", "s3"])
def lake_url(request, tmp_path) -> str:
    return str(tmp_path / "lake") if request.param == "local" else request.getfixturevalue("s3_lake_url")


def drop(lake: LakeStorage, name: str, body: bytes) -> None:
    """A complete drop: the file, then its completion marker."""
    lake.write_bytes(f"landing/incoming/{name}", body)
    lake.write_bytes(f"landing/incoming/{name}.done", b"")


@pytest.mark.slow
def test_new_duplicate_and_malformed_files(instance, settings, lake_url):
    lake = LakeStorage(lake_url)
    drop(lake, "ko.csv", KO)
    drop(lake, "aapl_no_symbol.csv", NO_SYMBOL)

    requests, cursor, _ = evaluate(instance, lake_url)
    assert [r.tags["stock_assets/landing_file"] for r in requests] == ["landing/incoming/aapl_no_symbol.csv", "landing/incoming/ko.csv"]
    assert lake.list_files("quarantine") == [] and not [p for p in lake.list_files("landing") if "/ext-" in p]  # the tick only noticed
    bad, ko = requests

    _, follow = land(instance, on(settings, lake_url), ko)
    assert (follow.tags[RANGE[0]], follow.tags[RANGE[1]]) == ("2012-01-03", "2014-12-31")
    landed = [p for p in lake.list_files("landing") if "/ext-" in p]
    assert len(landed) == 754 and "landing/2012-10-29" not in str(landed)  # Sandy closure: no session, no file

    # The malformed file's run fails, naming it; a copy goes to quarantine with its reason; the original stays.
    failed, follow = land(instance, on(settings, lake_url), bad)
    assert follow is None
    failure = next(e for e in failed.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "aapl_no_symbol.csv cannot be landed: " in failure.step_failure_data.error.message
    assert [p for p in lake.list_files("landing/incoming") if p.endswith(".csv")] == ["landing/incoming/aapl_no_symbol.csv", "landing/incoming/ko.csv"]
    [copy, reason] = lake.list_files("quarantine")
    assert copy.endswith("aapl_no_symbol.csv") and reason == copy + ".reason.txt"
    assert lake.read_bytes(copy) == NO_SYMBOL
    assert "missing seed-format columns ['symbol']" in lake.read_bytes(reason).decode()

    # Evaluated again (a restart reads the stored cursor): nothing new, no run.
    again, same_cursor, skips = evaluate(instance, lake_url, cursor)
    assert again == [] and len(skips) == 1 and same_cursor == cursor

    # The same bytes dropped under another name: the same run key, so Dagster runs it once.
    drop(lake, "ko_copy.csv", KO)
    [duplicate], _, _ = evaluate(instance, lake_url, cursor)
    assert duplicate.run_key == ko.run_key


@pytest.mark.slow
def test_good_rows_land_and_load_bad_rows_are_quarantined(instance, settings, lake_url):
    lake = LakeStorage(lake_url)
    drop(lake, "mixed.csv", MIXED)
    [landing], _, _ = evaluate(instance, lake_url)
    landed, request = land(instance, on(settings, lake_url), landing)
    assert (request.tags[RANGE[0]], request.tags[RANGE[1]]) == ("2014-12-29", "2014-12-31")
    assert request.tags["stock_assets/symbols"] == "KO"  # the lake run's window: the file's symbols (KO is not in the universe)
    assert landed.success and any("2 rows set aside" in e.user_message for e in instance.all_logs(landed.run_id))  # in the run's log
    [rejected, reason] = lake.list_files("quarantine")
    assert lake.read_bytes(rejected).decode().count("\n") == 1 + 2
    assert "1 rows with an invalid symbol; 1 rows on a date that is not an NYSE session" in lake.read_bytes(reason).decode()

    result = defs_for(on(settings, lake_url)).resolve_job_def("landing_to_lake_job").execute_in_process(instance=instance, tags=request.tags)
    assert result.success
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT session::VARCHAR, open, high, low, close, volume FROM prices ORDER BY session").fetchall()
    expected = [line.split(",")[1:] for line in KO_TAIL.decode().splitlines()[1:]]
    assert rows == [(d, float(o), float(h), float(lo), float(c), int(v)) for d, o, h, lo, c, v in expected]


def test_files_with_old_times_are_picked_up_and_growing_files_wait_until_complete(instance, settings, tmp_path):
    # A local folder: modification times are set as `cp -p`, `mv` and `rsync -t` leave them.
    url = str(tmp_path / "lake")
    lake = LakeStorage(url)
    incoming = tmp_path / "lake" / "landing" / "incoming"
    lake.write_bytes("landing/incoming/ko.csv", KO)
    a_year_ago = time.time() - 365 * 86400
    os.utime(incoming / "ko.csv", (a_year_ago, a_year_ago))
    requests, cursor, skips = evaluate(instance, url)
    assert requests == [] and "no new complete file" in skips[0].skip_message  # seen once: it may still grow
    [ko], cursor, _ = evaluate(instance, url, cursor)  # unchanged since, and long since written: complete
    assert ko.tags["stock_assets/landing_file"] == "landing/incoming/ko.csv"

    half = len(MIXED) // 2
    (incoming / "late.csv").write_bytes(MIXED[:half])  # a writer still busy
    requests, cursor, _ = evaluate(instance, url, cursor)
    assert requests == [] and lake.list_files("quarantine") == []  # not read, not quarantined
    with open(incoming / "late.csv", "ab") as f:
        f.write(MIXED[half:])
    requests, cursor, _ = evaluate(instance, url, cursor)
    assert requests == []  # it changed since the last tick: still being written
    settled = time.time() - 60
    os.utime(incoming / "late.csv", (settled, settled))
    requests, cursor, _ = evaluate(instance, url, cursor)  # the size and time it had are now 60 s old
    requests, cursor, _ = evaluate(instance, url, cursor)
    [late] = requests
    for request in (ko, late):
        land(instance, on(settings, url), request)
    assert len([p for p in lake.list_files("landing/2014-12-30") if p.endswith(".csv")]) == 2  # ko's and late's: one copy each
    assert evaluate(instance, url, cursor)[0] == []  # exactly once


@pytest.mark.slow
def test_a_non_numeric_value_sets_aside_its_row_only_and_nothing_is_deleted(instance, settings, lake_url):
    lake = LakeStorage(lake_url)
    body = KO_TAIL.replace(KO_TAIL.splitlines()[2].split(b",")[2], b"4l.5", 1)  # a typo: one open price is not a number
    drop(lake, "typo.csv", body)
    [landing], _, _ = evaluate(instance, lake_url)
    _, request = land(instance, on(settings, lake_url), landing)
    [bad, reason] = lake.list_files("quarantine")
    assert b"4l.5" in lake.read_bytes(bad) and lake.read_bytes(bad).count(b"\n") == 1 + 1
    assert "1 rows with a open that is not a number" in lake.read_bytes(reason).decode()
    assert "landing/incoming/typo.csv" in lake.list_files("landing/incoming")
    result = defs_for(on(settings, lake_url)).resolve_job_def("landing_to_lake_job").execute_in_process(instance=instance, tags=request.tags)
    assert result.success
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM prices").fetchall() == [(2,)]


@pytest.mark.slow
def test_a_garbage_landed_file_moves_to_quarantine_and_the_rerun_passes(instance, settings):
    lake = LakeStorage(settings.lake_url)
    drop(lake, "mixed.csv", MIXED)
    [landing], _, _ = evaluate(instance, settings.lake_url)
    _, request = land(instance, settings, landing)
    lake.write_bytes("landing/2014-12-30/ext-garbage.csv", b"\x00\x01 not a csv at all")
    job = defs_for(settings).resolve_job_def("landing_to_lake_job")
    result = job.execute_in_process(instance=instance, tags=request.tags)
    assert result.success  # the garbage no longer fails every run covering its session
    moved = [p for p in lake.list_files("quarantine/landing") if p.endswith("ext-garbage.csv")]
    assert len(moved) == 1 and lake.read_bytes(moved[0]) == b"\x00\x01 not a csv at all"
    assert job.execute_in_process(instance=instance, tags=request.tags).success
