"""The lake's Delta tables: windows written as single commits, read "as of" a version or a
moment, compacted to one file per year without losing a row, and vacuumed without losing the
published production version."""

import datetime as dt
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stock_assets.defs.maintenance import maintain_lake
from stock_assets.defs.publish import publish_version
from stock_assets.lake import delta, layout
from stock_assets.lake.storage import LakeStorage
from stock_assets.partitions import sessions_between

SESSIONS = sessions_between("2015-01-02", "2023-12-01", "2024-01-31")  # two years' sessions, 41 of them


def bars(sessions: list[dt.date], close: float) -> pa.Table:
    return pa.table({"symbol": ["A", "B"] * len(sessions), "session": pa.array([s for s in sessions for _ in "AB"], pa.date32()),
                     "close": [close] * 2 * len(sessions)})  # fmt: skip


def daily_runs(lake: LakeStorage) -> None:
    """As the schedule does: one session a run, one commit (and one small file) each."""
    for session in SESSIONS:
        layout.write_sessions(lake, "lake/deduped", bars([session], 1.0), [session])


def test_daily_runs_compact_to_one_file_per_year_sorted_by_symbol_and_keep_every_row(tmp_path):
    lake = LakeStorage(str(tmp_path / "lake"))
    daily_runs(lake)
    before = delta.read_window(lake, "lake/deduped", SESSIONS, schema=None)
    assert before.num_rows == 82 and len(delta.current_files(lake, "lake/deduped")) == 41
    reports = {r["table"]: r for r in maintain_lake(lake, 0, dt.datetime.now(dt.UTC))}
    report = reports.pop("lake/deduped")
    assert report["files"] == 2 and report["files_compacted"] == 41
    assert [p.split("/")[0] for p in delta.current_files(lake, "lake/deduped")] == ["year=2023", "year=2024"]
    for path in delta.current_files(lake, "lake/deduped"):  # as a window write leaves a file: a symbol's rows together
        symbols = pq.read_table(lake.path(f"lake/deduped/{path}"), filesystem=lake.fs)["symbol"].to_pylist()
        assert symbols == sorted(symbols) and set(symbols) == {"A", "B"}
    assert delta.read_window(lake, "lake/deduped", SESSIONS, schema=None).equals(before)
    assert report["files_vacuumed"] == 41  # no version within the retention needs the small files
    on_disk = [p.split("lake/deduped/")[1] for p in lake.list_files("lake/deduped") if p.endswith(".parquet")]
    assert sorted(on_disk) == delta.current_files(lake, "lake/deduped")
    assert [r["skipped"] for r in reports.values()] == ["never written"] * 3  # the tables no run wrote yet


def test_as_of_a_version_or_a_moment_and_the_production_version_survives_vacuum(tmp_path):
    lake = LakeStorage(str(tmp_path / "lake"))
    first = layout.write_sessions(lake, "lake/deduped", bars(SESSIONS, 1.0), SESSIONS)
    trained_on = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    layout.write_sessions(lake, "lake/deduped", bars(SESSIONS, 2.0), SESSIONS)  # a later correction
    assert first == [f"{lake.uri('lake/deduped')}@v0"]
    closes = lambda version: set(delta.read_window(lake, "lake/deduped", SESSIONS, schema=None, version=version)["close"].to_pylist())
    assert closes(None) == {2.0} and closes(0) == {1.0} and closes(trained_on) == {1.0}

    publish_version(lake, 0, SESSIONS, dt.datetime.now(dt.UTC), "run-0", {})  # version 0 is production
    maintain_lake(lake, 0, dt.datetime.now(dt.UTC) + dt.timedelta(days=90))  # a retention of 0 days, 90 days on
    assert closes(0) == {1.0}  # the production version still reads as it was
    lake.delete("published/LATEST")
    maintain_lake(lake, 0, dt.datetime.now(dt.UTC) + dt.timedelta(days=90))
    assert closes(None) == {2.0}
    with pytest.raises(OSError):  # without a production version to keep, the old one's files are gone
        closes(0)


def test_dictionaries_only_for_text_columns_in_window_writes_and_compaction(tmp_path):
    """Prices are nearly all distinct: a dictionary for them costs twice the write time and makes
    files larger. Text (symbols, intervals) keeps its dictionary."""
    lake = LakeStorage(str(tmp_path / "lake"))
    daily_runs(lake)
    maintain_lake(lake, 0, dt.datetime.now(dt.UTC))
    layout.write_sessions(lake, "lake/deduped", bars(SESSIONS[:3], 3.0), SESSIONS[:3])
    paths = delta.current_files(lake, "lake/deduped")  # 2023 rewritten by the window, 2024 as compacted
    assert sorted({p.split("/")[0] for p in paths}) == ["year=2023", "year=2024"]
    for file in (pq.ParquetFile(lake.path(f"lake/deduped/{p}"), filesystem=lake.fs) for p in paths):
        columns = {c.path_in_schema: c for c in (file.metadata.row_group(0).column(i) for i in range(file.metadata.num_columns))}
        assert columns["symbol"].has_dictionary_page and not columns["close"].has_dictionary_page
        assert not columns["session"].has_dictionary_page and columns["close"].statistics.has_min_max
