"""The weekly lake maintenance: every table compacted by its own layout to one file per year,
each reported as it finishes, a table's failure named without skipping the others; and the
published production version, recorded with its own commit time, never vacuumed, even with the
clock (delta-rs's too, under libfaketime in a child process) moved past the retention."""

import dataclasses
import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from stock_assets.cli import materialize_range
from stock_assets.defs.maintenance import LAKE_TABLES, maintain_lake
from stock_assets.defs.publish import publish_version
from stock_assets.lake import delta, layout
from stock_assets.lake.storage import LakeStorage
from stock_assets.partitions import sessions_between
from stock_assets_tests.conftest import ROOT, defs_for

DAYS = ["2024-01-02", "2024-01-03"]


def files_per_year(lake: LakeStorage, prefix: str) -> dict[str, int]:
    return dict(Counter(p.split("/")[0] for p in delta.current_files(lake, prefix)))


def on_disk(lake: LakeStorage, prefix: str) -> list[str]:
    return sorted(p.split(f"{prefix}/")[1] for p in lake.list_files(prefix) if p.endswith(".parquet"))


def version_files(lake: LakeStorage, prefix: str, version: int) -> list[str]:
    return pa.table(delta.open_table(lake, prefix, version).get_add_actions(flatten=True))["path"].to_pylist()


def messages(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult, *starts: str) -> list[str]:
    """The run's log lines (context.log) that start with one of `starts`, in order."""
    return [e.user_message for e in instance.all_logs(result.run_id) if e.dagster_event is None and e.user_message.startswith(starts)]


@pytest.mark.slow
def test_after_two_daily_runs_the_weekly_job_compacts_every_table_by_its_own_layout(settings, instance):
    defs = defs_for(settings)
    for day in DAYS:  # two daily runs: two commits, two files in each table's 2024
        assert materialize_range(defs, day, day, instance).success
    lake = LakeStorage(settings.lake_url)
    sessions = [dt.date.fromisoformat(d) for d in DAYS]
    before = {p: delta.read_window(lake, p, sessions, schema=None) for p in LAKE_TABLES}
    assert {p: files_per_year(lake, p) for p in LAKE_TABLES} == {p: {"year=2024": 2} for p in LAKE_TABLES}

    result = defs.resolve_job_def("lake_maintenance_job").execute_in_process(instance=instance)
    assert result.success
    for prefix in LAKE_TABLES:
        assert files_per_year(lake, prefix) == {"year=2024": 1}, prefix
        assert delta.read_window(lake, prefix, sessions, schema=None).equals(before[prefix]), prefix
    (dq_file,) = delta.current_files(lake, "lake/dq_report")  # no symbol: in session order, as a window write leaves it
    assert pq.read_table(lake.path(f"lake/dq_report/{dq_file}"), filesystem=lake.fs)["session"].to_pylist() == sorted(sessions * 12)
    # One line per table as it finishes, naming it, in the order maintained; the report in the metadata.
    assert [m.split()[1] for m in messages(instance, result, "maintained ")] == [f"{lake.uri(p)}:" for p in LAKE_TABLES]
    (output,) = [e.step_output_data for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    assert all(f"| {p} |" in output.metadata["tables"].value for p in LAKE_TABLES)


def write_twice(lake: LakeStorage) -> list[dt.date]:
    """Each lake table written by daily windows, two in each of 2023 and 2024, with its own columns."""
    sessions = sessions_between("2015-01-02", "2023-12-28", "2024-01-03")
    for index, session in enumerate(sessions):
        bars = pa.table({"symbol": ["A", "B"], "session": pa.array([session] * 2, pa.date32()), "close": [1.0 + index, 2.0]})
        checks = pa.table({"session": pa.array([session] * 2, pa.date32()), "check_name": ["gaps", "jumps"], "passed": [True, True]})
        for prefix in LAKE_TABLES:
            layout.write_sessions(lake, prefix, checks if prefix == "lake/dq_report" else bars, [session])
    return sessions


def test_a_table_that_fails_is_named_and_the_others_are_still_maintained(settings, instance):
    settings = dataclasses.replace(settings, lake_retention_days=0)
    lake = LakeStorage(settings.lake_url)
    sessions = write_twice(lake)
    damaged = ("lake/prices", "lake/dq_report")  # the first table in line, and one before the last
    lost = [delta.current_files(lake, prefix)[0] for prefix in damaged]
    for prefix, path in zip(damaged, lost, strict=True):
        lake.delete(f"{prefix}/{path}")  # a data file of the current version is gone

    result = defs_for(settings).resolve_job_def("lake_maintenance_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("compact_and_vacuum_lake").user_failure_data
    for prefix, path in zip(damaged, lost, strict=True):  # each failed table named, with the file it failed on
        assert f"{lake.uri(prefix)}: " in failure.description and path.split("/")[-1] in failure.description
    assert all(f"{lake.uri(p)}: " not in failure.description for p in LAKE_TABLES if p not in damaged)
    assert all(f"| {p} |" in failure.metadata["tables"].value for p in LAKE_TABLES)
    for prefix in ("lake/deduped", "lake/indicators"):  # after a failed one: maintained all the same
        assert files_per_year(lake, prefix) == {"year=2023": 1, "year=2024": 1}, prefix
        assert on_disk(lake, prefix) == delta.current_files(lake, prefix), prefix  # and vacuumed
        assert delta.read_window(lake, prefix, sessions, schema=None).num_rows == 8, prefix
    lines = messages(instance, result, "maintained ", "could not maintain ")
    assert [line.split()[0] for line in lines] == ["could", "maintained", "could", "maintained"]


# --- the production version under a clock moved past the retention ---------------------------

def faketime_library() -> str:
    """libfaketime (the PyPI wheel of the dev dependencies, else Debian's `faketime` package): it
    moves the clock of a child process for Python and for delta-rs's Rust alike."""
    spec = importlib.util.find_spec("libfaketime")
    found = [Path(spec.origin).parent / "vendor/libfaketime/src/libfaketime.so.1"] if spec and spec.origin else []
    found = [p for p in [*found, Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")] if p.exists()]
    if not found:
        reason = "NO LIBFAKETIME (pip install libfaketime, or apt-get install faketime): the vacuum-under-a-moved-clock test did not run"
        pytest.fail(reason) if os.environ.get("CI") else pytest.skip(reason)
    return str(found[0])


# Each step sets the process's clock (libfaketime rereads the timestamp file on every call) and
# acts as the pipeline would at that instant.
AT_TIMES = r"""
import json, os, sys
import pyarrow as pa
from stock_assets import clock
from stock_assets.defs.maintenance import maintain_lake
from stock_assets.defs.publish import publish_version
from stock_assets.lake import layout
from stock_assets.lake.storage import LakeStorage
from stock_assets.partitions import sessions_between

lake, stamp = LakeStorage(sys.argv[1]), sys.argv[2]
sessions = sessions_between("2015-01-02", "2024-01-02", "2024-01-05")
for at, action, arg in json.loads(sys.argv[3]):
    with open(f"{stamp}.new", "w") as f:
        f.write(f"@{at}")
    os.replace(f"{stamp}.new", stamp)  # whole: libfaketime reads it on every clock call, from any thread
    if action == "write":
        bars = pa.table({"symbol": ["A", "B"] * 4, "session": pa.array([s for s in sessions for _ in "AB"], pa.date32()), "close": [float(arg)] * 8})
        print(action, arg, layout.write_sessions(lake, "lake/deduped", bars, sessions), flush=True)
    elif action == "publish":
        print(action, json.dumps(publish_version(lake, arg, sessions, clock.now(), f"run-{arg}", {"ok": True})), flush=True)
    else:
        print(action, json.dumps(maintain_lake(lake, arg, clock.now())), flush=True)
"""


def at_times(tmp_path: Path, lake: LakeStorage, steps: list[tuple[str, str, int]]) -> dict[str, list[str]]:
    stamp = tmp_path / "faketime"
    stamp.write_text(f"@{steps[0][0]}")
    env = {**os.environ, "LD_PRELOAD": faketime_library(), "FAKETIME_TIMESTAMP_FILE": str(stamp), "FAKETIME_NO_CACHE": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", AT_TIMES, lake.url, str(stamp), json.dumps(steps)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        action, _, rest = line.partition(" ")
        out.setdefault(action, []).append(rest)
    return out


def closes(lake: LakeStorage, version: int | None) -> list[tuple]:
    """The version's rows as deltalake reads them (no code of ours), in one order."""
    table = DeltaTable(lake.uri("lake/deduped"), version=version).to_pyarrow_table()
    return sorted(zip(table["symbol"].to_pylist(), table["session"].to_pylist(), table["close"].to_pylist(), strict=True))


def readable(lake: LakeStorage, version: int) -> bool:
    try:
        closes(lake, version)
        return True
    except OSError:  # its data files were vacuumed
        return False


@pytest.mark.slow
def test_the_production_version_survives_vacuum_with_the_clock_moved_past_the_retention(tmp_path):
    lake = LakeStorage(str(tmp_path / "lake"))
    sessions = sessions_between("2015-01-02", "2024-01-02", "2024-01-05")
    written = lambda close: sorted((symbol, session, float(close)) for session in sessions for symbol in "AB")
    # v0..v3 a day apart; v1 published on 20 February, after v2 and v3 were written (a backfill
    # publishing its checked window late, or a run publishing while another wrote); then v4.
    steps = [("2030-01-01 00:00:00", "write", 0), ("2030-01-02 00:00:00", "write", 1), ("2030-01-03 00:00:00", "write", 2),
             ("2030-01-04 00:00:00", "write", 3), ("2030-02-20 00:00:00", "publish", 1), ("2030-02-20 01:00:00", "write", 4),
             ("2030-03-01 00:00:00", "maintain", 30)]  # fmt: skip
    out = at_times(tmp_path, lake, steps)
    assert closes(lake, 1) == written(1)  # production, written 58 days before, reads row for row
    assert not readable(lake, 0) and not readable(lake, 2)  # older than the retention, not production: gone
    assert closes(lake, 3) == written(3)  # the table's current version until 20 February: within the 30 days
    assert closes(lake, None) == written(4)

    manifest = json.loads(lake.read_bytes("published/LATEST"))
    assert manifest == json.loads(out["publish"][0])
    at = lambda field: dt.datetime.fromisoformat(manifest[field])
    assert abs(at("version_written_at") - dt.datetime(2030, 1, 2, tzinfo=dt.UTC)) < dt.timedelta(minutes=1)  # v1's own commit
    assert abs(at("published_at") - dt.datetime(2030, 2, 20, tzinfo=dt.UTC)) < dt.timedelta(minutes=1)
    assert (manifest["version"], manifest["rows"]) == (1, 8)

    at_times(tmp_path, lake, [("2030-06-01 00:00:00", "maintain", 30)])  # three months on: only production and the current version
    assert closes(lake, 1) == written(1) and not readable(lake, 3) and closes(lake, None) == written(4)
    kept = [u.split("lake/deduped/")[1] for v in (1, None) for u in delta.open_table(lake, "lake/deduped", v).file_uris()]
    assert on_disk(lake, "lake/deduped") == sorted(kept)  # every other file vacuumed


def test_an_unreadable_production_manifest_stops_maintenance_before_anything_is_vacuumed(tmp_path):
    lake = LakeStorage(str(tmp_path / "lake"))
    write_twice(lake)
    files = {p: on_disk(lake, p) for p in LAKE_TABLES}
    lake.write_bytes("published/LATEST", b'{"table": "')  # cut short
    with pytest.raises(ValueError, match=r"published/LATEST: not a readable production manifest .* nothing was vacuumed"):
        maintain_lake(lake, 0, dt.datetime.now(dt.UTC))
    assert {p: on_disk(lake, p) for p in LAKE_TABLES} == files
    # A LATEST pointing at a copy a rebuild moved aside keeps no version of the tables maintained.
    lake.write_bytes("published/LATEST", json.dumps({"table": lake.uri("lake/.damaged/deduped-1"), "version": 1}).encode())
    assert all(r["files"] == 2 for r in maintain_lake(lake, 0, dt.datetime.now(dt.UTC)))


def test_the_production_versions_log_entry_outlives_the_log_retention(tmp_path):
    """delta-rs deletes log entries older than delta.logRetentionDuration (30 days) at each
    checkpoint (every 100 commits): without its entry a version cannot be loaded, whatever
    files vacuum kept. The lake's tables keep their log; maintenance sets it on older tables."""
    lake = LakeStorage(str(tmp_path / "lake"))
    sessions = sessions_between("2015-01-02", "2024-01-02", "2024-01-05")
    bars = lambda close: pa.table({"symbol": ["A"] * 4, "session": pa.array(sessions, pa.date32()), "close": [float(close)] * 4})
    layout.write_sessions(lake, "lake/deduped", bars(0), sessions)
    assert delta.open_table(lake, "lake/deduped").metadata().configuration["delta.enableExpiredLogCleanup"] == "false"
    # A table created before that (cleanup on, as delta-rs's default), checkpointed every 5 commits to keep this short.
    delta.open_table(lake, "lake/deduped").alter.set_table_properties({"delta.enableExpiredLogCleanup": "true", "delta.checkpointInterval": "5"})
    lake.write_bytes("published/LATEST", json.dumps({"table": lake.uri("lake/deduped"), "version": 0}).encode())
    maintain_lake(lake, 30, dt.datetime.now(dt.UTC))  # the weekly job
    for close in range(1, 6):  # up to a checkpoint
        layout.write_sessions(lake, "lake/deduped", bars(close), sessions)
    months_ago = dt.datetime.now().timestamp() - 60 * 86400
    for entry in lake.list_files("lake/deduped/_delta_log"):
        os.utime(lake.path(entry), (months_ago, months_ago))  # all of it written two months ago
    for close in range(6, 11):  # the next checkpoint, and the cleanup that would come with it
        layout.write_sessions(lake, "lake/deduped", bars(close), sessions)
    assert sum(p.endswith(".checkpoint.parquet") for p in lake.list_files("lake/deduped/_delta_log")) == 2
    assert delta.open_table(lake, "lake/deduped", 0).to_pyarrow_table()["close"].to_pylist() == [0.0] * 4


@pytest.mark.slow
def test_on_s3_every_table_is_compacted_and_vacuumed_but_production(s3_lake_url):
    lake = LakeStorage(s3_lake_url)
    sessions = write_twice(lake)
    production = delta.read_window(lake, "lake/deduped", sessions, schema=None, version=0)
    publish_version(lake, 0, sessions[:1], dt.datetime.now(dt.UTC), "run-0", {})
    reports = maintain_lake(lake, 0, dt.datetime.now(dt.UTC))  # a retention of 0: only production is kept
    assert [r["table"] for r in reports if "error" not in r and "skipped" not in r] == list(LAKE_TABLES)
    for prefix in LAKE_TABLES:
        assert files_per_year(lake, prefix) == {"year=2023": 1, "year=2024": 1}, prefix
        kept = delta.current_files(lake, prefix) + (version_files(lake, prefix, 0) if prefix == "lake/deduped" else [])
        assert on_disk(lake, prefix) == sorted(kept), prefix
    assert delta.read_window(lake, "lake/deduped", sessions, schema=None, version=0).equals(production)
