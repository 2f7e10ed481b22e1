"""A window's landing folders listed in few requests, and the landing files a process wrote not
read back by it, on a local folder and on the S3 API (moto on loopback)."""

import datetime as dt
import json
import time

import pyarrow as pa
import pytest

from stock_assets.lake import landing_index, layout
from stock_assets.lake.storage import LakeStorage
from stock_assets.partitions import sessions_between
from stock_assets.providers.synthetic import SyntheticProvider, parse_synthetic
from stock_assets.seed_csv import to_landing_csv

SESSIONS = sessions_between("2015-01-02", "2024-02-01", "2024-03-08")  # 26: more than WHOLE_LISTING_SESSIONS


def bars(sessions) -> pa.Table:
    return pa.concat_tables([parse_synthetic(p) for p in SyntheticProvider().fetch(["AAPL", "MSFT"], sessions, "1d").payloads])


@pytest.fixture(params=["local", "s3"])
def lake(request, tmp_path) -> LakeStorage:
    return LakeStorage(str(tmp_path / "lake") if request.param == "local" else request.getfixturevalue("s3_lake_url"))


def test_a_window_lists_what_its_folders_hold_and_nothing_else(lake):
    assert len(SESSIONS) > landing_index.WHOLE_LISTING_SESSIONS
    window = SESSIONS[2:-2]
    layout.write_landing(lake, bars(SESSIONS), SESSIONS)
    lake.write_bytes(f"landing/{window[0]}/ext-0123.csv", to_landing_csv(bars(window[:1])))
    lake.write_bytes("landing/incoming/drop.csv", b"symbol,date\n")
    per_folder = [p for s in window for p in lake.list_files(f"landing/{s}")]
    assert landing_index.window_paths(lake, window) == per_folder
    assert len(per_folder) == 2 * len(window) + 1  # a CSV and its record a session, and the drop
    assert landing_index.window_paths(lake, window[::-1]) == [p for s in window[::-1] for p in lake.list_files(f"landing/{s}")]


def test_a_rerun_replaces_the_windows_files_and_keeps_the_others(lake):
    layout.write_landing(lake, bars(SESSIONS), SESSIONS)
    before = lake.list_files("landing")
    later = bars(SESSIONS[5:]).set_column(13, "ingested_at", pa.array([dt.datetime(2030, 1, 1, tzinfo=dt.UTC)] * (2 * len(SESSIONS[5:])),
                                                                        pa.timestamp("us", tz="UTC")))  # fmt: skip
    layout.write_landing(lake, later, SESSIONS[5:])
    after = lake.list_files("landing")
    assert [p for p in after if p.split("/")[1] < str(SESSIONS[5])] == [p for p in before if p.split("/")[1] < str(SESSIONS[5])]
    newer = [p for p in after if p.split("/")[1] >= str(SESSIONS[5])]
    assert len(newer) == 2 * len(SESSIONS[5:]) and all("20300101T" in p for p in newer)
    assert layout.inspect_landing(lake, SESSIONS) == ({s: 2 for s in SESSIONS}, {})


def test_a_file_changed_after_this_process_wrote_it_is_found(lake, tmp_path):
    """Files this process wrote are counted from their records without a read; once a file or its
    record changes (here: the same size, other bytes, written later) it is read and found."""
    layout.write_landing(lake, bars(SESSIONS), SESSIONS)
    files = layout.landing_files(lake, SESSIONS)
    assert layout.inspect_landing(lake, SESSIONS) == ({s: 2 for s in SESSIONS}, {})
    assert layout.landing_record_rows(lake, SESSIONS) == 2 * len(SESSIONS)
    edited, recorded = files[3], files[7]
    body = lake.read_bytes(edited)
    if not lake.is_local:  # S3 keeps modification times in seconds: a write a second later shows as one
        time.sleep(1.1)
    lake.write_bytes(edited, body.replace(b"AAPL", b"AAPX", 1))  # the same size
    record = json.loads(lake.read_bytes(layout.record_path(recorded)))
    lake.write_bytes(layout.record_path(recorded), json.dumps(record | {"rows": 3, "sessions": {str(SESSIONS[7]): 3}}).encode())
    rows, damaged = layout.inspect_landing(lake, SESSIONS)
    assert list(damaged) == [lake.uri(edited)] and "changed since written" in damaged[lake.uri(edited)]
    assert rows == {s: 2 for s in SESSIONS} | {SESSIONS[7]: 3}  # the record as it now reads (its file's SHA-256 still matches)
    assert layout.landing_record_rows(lake, SESSIONS) == 2 * len(SESSIONS) + 1  # the record as it now says


def test_what_another_process_wrote_is_read(lake):
    layout.write_landing(lake, bars(SESSIONS), SESSIONS)
    landing_index.WRITTEN.files.clear()  # as in a process that did not write them
    first = layout.landing_files(lake, SESSIONS)[0]
    body = lake.read_bytes(first)
    lake.write_bytes(first, body[: body.rindex(b"\n", 0, len(body) - 1) + 1])
    rows, damaged = layout.inspect_landing(lake, SESSIONS)
    assert rows[SESSIONS[0]] == 1 and list(damaged) == [lake.uri(first)]


def test_the_remembered_files_are_bounded(tmp_path):
    lake = LakeStorage(str(tmp_path / "lake"))
    written = landing_index.Written(max_files=3)
    layout.write_landing(lake, bars(SESSIONS[:5]), SESSIONS[:5])
    infos = landing_index.window_infos(lake, SESSIONS[:5])
    written.remember(lake, {p: {"rows": 2} for p in layout.landing_files(lake, SESSIONS[:5])}, layout.record_path, infos)
    assert [path for _, path in written.files] == layout.landing_files(lake, SESSIONS[2:5])


def test_an_unchanged_listing_is_all_that_is_looked_at(tmp_path):
    """The other side of not reading back: a rewrite that keeps the size and the modification time
    (possible on S3 only within the write's second) is not found by the process that wrote it, and
    is by any other."""
    import os

    lake = LakeStorage(str(tmp_path / "lake"))
    layout.write_landing(lake, bars(SESSIONS), SESSIONS)
    path = layout.landing_files(lake, SESSIONS)[0]
    stat = os.stat(lake.path(path))
    lake.write_bytes(path, lake.read_bytes(path).replace(b"AAPL", b"AAPX", 1))
    os.utime(lake.path(path), ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert layout.inspect_landing(lake, SESSIONS) == ({s: 2 for s in SESSIONS}, {})
    landing_index.WRITTEN.files.clear()
    assert list(layout.inspect_landing(lake, SESSIONS)[1]) == [lake.uri(path)]
