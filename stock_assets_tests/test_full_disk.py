"""A full disk, for real (a tmpfs of its own filled to its last block): a write that fails for lack
of space names the lake file, lake table or warehouse it was writing and says the disk is full;
the step is not retried (no retry frees a disk); the alert of a failed run says its step's error."""

import dataclasses
import datetime as dt
import json
import os
import subprocess

import dagster as dg
import pytest

from stock_assets.alerts import CAUSE_CHARS, cause_text
from stock_assets.cli import materialize_range
from stock_assets.defs.alerts import run_failure_alert_sensor
from stock_assets.full_disk import DiskFullError
from stock_assets.lake import delta, layout
from stock_assets.lake.storage import TMP, LakeStorage
from stock_assets.warehouse import io_manager as warehouse_io
from stock_assets.warehouse.warehouse import warehouse_for_url
from stock_assets_tests.conftest import defs_for, with_faults
from stock_assets_tests.month_faults import fill_disk
from stock_assets_tests.test_landing_sensor import KO_TAIL, drop, evaluate, land
from stock_assets_tests.test_operations import alerts_to

FIRST, SECOND = "2024-01-02", "2024-01-03"


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs of the test's own."""
    home = tmp_path / "disk"
    home.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(home)], capture_output=True, check=False).returncode:
        reason = "cannot mount a tmpfs here (not root?): the full-disk tests did not run"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    yield home
    subprocess.run(["umount", "-l", str(home)], check=False)


def on_disk(settings, home):
    return dataclasses.replace(settings, home=home, lake_url=str(home / "lake"), warehouse_url=f"duckdb:///{home / 'warehouse.duckdb'}")


def run_failure_alert(instance, result, url: str) -> None:
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context("run_failure_alert_sensor", failure, instance, run, resources=alerts_to(url))
    run_failure_alert_sensor(context.for_run_failure())


@pytest.mark.slow
def test_every_write_on_a_full_disk_names_what_it_was_writing(settings, instance, small_disk):
    ours = on_disk(settings, small_disk)
    assert materialize_range(defs_for(ours), FIRST, FIRST, instance).success
    storage = LakeStorage(ours.lake_url)
    session = [dt.date.fromisoformat(FIRST)]
    deduped = layout.read_sessions(storage, "lake/deduped", session)
    filler = fill_disk(small_disk)

    with pytest.raises(DiskFullError) as lake_file:
        storage.write_bytes("raw/2024-01-02_2024-01-02/big.json", b"x" * 200_000)
    assert f"lake file {storage.uri('raw/2024-01-02_2024-01-02/big.json')} could not be written: the disk is full ([errno 28] No space left on device)" in str(lake_file.value)
    assert storage.list_files(TMP) == [], "the half-written temporary file was left taking space"

    with pytest.raises(DiskFullError) as lake_table:
        delta.write_window(storage, "lake/deduped", deduped, session)
    assert f"lake table {storage.uri('lake/deduped')} could not be written: the disk is full" in str(lake_table.value)

    warehouse = warehouse_for_url(ours.warehouse_url)
    with pytest.raises(DiskFullError) as loaded:
        warehouse_io.store_window(warehouse, storage, {"warehouse_table": "prices_copy"}, deduped, session, "a-run")
    assert f"warehouse {warehouse.describe()} could not be written: the disk is full" in str(loaded.value)
    assert "Free space on it, then run the window again" in str(loaded.value)

    filler.unlink()
    storage.write_bytes("raw/2024-01-02_2024-01-02/big.json", b"x" * 200_000)  # space again: it writes


@pytest.mark.slow
def test_a_run_on_a_full_disk_fails_at_once_naming_the_file_and_the_alert_says_so(settings, instance, small_disk, fake_api):
    fake_api.route("/hook", b"ok")
    ours = on_disk(settings, small_disk)
    assert materialize_range(defs_for(ours), FIRST, FIRST, instance).success
    filler = fill_disk(small_disk)
    result = materialize_range(defs_for(ours), SECOND, SECOND, instance)
    assert not result.success
    retried = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert retried == [], "a full disk was retried: no retry frees a disk"
    [failed] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    said = failed.step_failure_data.error.message
    assert failed.step_key == "raw_prices"
    assert f"lake file {small_disk / 'lake' / 'raw'}/{SECOND}_{SECOND}/" in said and "the disk is full ([errno 28] No space left on device)" in said

    run_failure_alert(instance, result, f"{fake_api.url}/hook")
    [alert] = [json.loads(r.body)["text"] for r in fake_api.requests]
    assert "Steps failed: ['raw_prices']" in alert
    assert f"raw_prices: lake file {small_disk / 'lake' / 'raw'}/{SECOND}_{SECOND}/" in alert and "the disk is full" in alert
    assert "Traceback" not in alert and len(alert) < 2000

    filler.unlink()  # the operator frees the disk and runs the window again
    assert materialize_range(defs_for(ours), SECOND, SECOND, instance).success


@pytest.mark.slow
def test_the_alert_of_a_failed_run_says_its_failed_steps_own_error(settings, instance, fake_api):
    fake_api.route("/hook", b"ok")
    result = materialize_range(defs_for(with_faults(settings, "missing_symbol")), FIRST, FIRST, instance)
    assert not result.success
    run_failure_alert(instance, result, f"{fake_api.url}/hook")
    [alert] = [json.loads(r.body)["text"] for r in fake_api.requests]
    assert "Steps failed: ['raw_prices']" in alert
    assert f"raw_prices: {FIRST}..{FIRST}: IBM could not be fetched after 4 tries" in alert
    assert "Exceeded max_retries" not in alert and "Traceback" not in alert and 'File "' not in alert


def test_an_alert_quotes_an_error_without_its_traceback_or_secrets():
    message = ("stock_assets.warehouse.common.WarehouseLoadError: postgresql://loader:hunter2@db:5432/prices refused "
               "https://api.example/query?symbol=IBM&apikey=SECRETKEY\nTraceback (most recent call last):\n  File \"x.py\"")
    said = cause_text(message)
    assert said == "WarehouseLoadError: postgresql://loader:***@db:5432/prices refused https://api.example/query?symbol=IBM&apikey=***"
    assert len(cause_text("x" * 10_000)) == CAUSE_CHARS


def test_a_dropped_file_landing_on_a_full_disk_fails_at_once_naming_the_file(settings, instance, small_disk):
    ours = on_disk(settings, small_disk)
    lake = LakeStorage(ours.lake_url)
    drop(lake, "ko.csv", KO_TAIL)
    [request], _, _ = evaluate(instance, ours.lake_url)
    filler = fill_disk(small_disk)
    result, landed = land(instance, ours, request)
    assert not result.success and landed is None
    assert [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY] == [], "a full disk was retried"
    [failed] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert f"lake file {lake.uri('')}" in failed.step_failure_data.error.message
    assert "the disk is full ([errno 28] No space left on device)" in failed.step_failure_data.error.message
    filler.unlink()
    assert land(instance, ours, request)[0].success  # space again: the same file lands
