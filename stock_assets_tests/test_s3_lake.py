"""The lake on a real S3 API (moto's server mode on loopback): the whole graph lands in a
bucket exactly as it lands in a local folder, DuckDB reads its Delta tables, runs writing one
table at once all commit, and a killed writer leaves nothing half-written behind."""

import dataclasses
import json
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from stock_assets.cli import materialize_range
from stock_assets.lake import delta
from stock_assets.lake.athena import TABLES, lake_ddl
from stock_assets.lake.layout import read_sessions
from stock_assets.lake.storage import LakeStorage
from stock_assets.partitions import sessions_between
from stock_assets_tests.conftest import ROOT, defs_for

FIRST, LAST = "2024-01-02", "2024-01-31"
VALUES = "symbol, session, ts, interval, open, high, low, close, adj_close, volume, vwap, trades, source"


def warehouse_rows(settings, table: str, columns: str = "*") -> list[tuple]:
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(f"SELECT {columns} FROM {table} ORDER BY ALL").fetchall()


@pytest.mark.slow
def test_the_whole_graph_on_s3_matches_the_local_lake(settings, s3_lake_url, instance, tmp_path_factory):
    on_s3 = dataclasses.replace(settings, home=tmp_path_factory.mktemp("s3home"), lake_url=s3_lake_url)
    on_s3 = dataclasses.replace(on_s3, warehouse_url=f"duckdb:///{on_s3.home / 'warehouse.duckdb'}")
    assert materialize_range(defs_for(settings), FIRST, LAST, instance).success
    assert materialize_range(defs_for(on_s3), FIRST, LAST, instance).success

    assert warehouse_rows(on_s3, "prices", VALUES) == warehouse_rows(settings, "prices", VALUES)
    assert len(warehouse_rows(on_s3, "prices")) == 3 * 21
    assert warehouse_rows(on_s3, "indicators") == warehouse_rows(settings, "indicators")
    assert warehouse_rows(on_s3, "dq_report", "session, check_name, passed, observed") == warehouse_rows(settings, "dq_report", "session, check_name, passed, observed")

    local, bucket = LakeStorage(settings.lake_url), LakeStorage(s3_lake_url)
    sessions = sessions_between(settings.start, FIRST, LAST)
    for prefix in ("lake/prices", "lake/deduped", "lake/dq_report", "lake/indicators"):
        assert delta.open_table(bucket, prefix).version() == delta.open_table(local, prefix).version() == 0
        assert len(delta.current_files(bucket, prefix)) == len(delta.current_files(local, prefix)) == 1  # one month, one file
    for prefix in ("lake/prices", "lake/deduped"):
        s3_rows, local_rows = (read_sessions(s, prefix, sessions).drop_columns(["ingested_at"]) for s in (bucket, local))
        assert s3_rows.equals(local_rows)
    assert len(bucket.list_files("landing")) == len(local.list_files("landing")) == 2 * 21  # files and their records
    assert len(bucket.list_files("raw")) == 3
    latest = json.loads(bucket.read_bytes("published/LATEST"))  # the production version of lake/deduped
    assert (latest["table"], latest["version"], latest["rows"]) == (f"{s3_lake_url}/lake/deduped", 0, 3 * 21)
    assert latest["checks"]["prices_not_null"] is True

    assert materialize_range(defs_for(on_s3), FIRST, LAST, instance).success  # again: replaced, not doubled
    assert delta.open_table(bucket, "lake/deduped").version() == 1 and len(warehouse_rows(on_s3, "prices")) == 3 * 21
    assert read_sessions(bucket, "lake/deduped", sessions).num_rows == 3 * 21
    published = delta.read_window(bucket, "lake/deduped", sessions, version=latest["version"])  # "as of" the snapshot
    assert published.drop_columns(["ingested_at"]).equals(read_sessions(bucket, "lake/deduped", sessions).drop_columns(["ingested_at"]))
    assert not published["ingested_at"].equals(read_sessions(bucket, "lake/deduped", sessions)["ingested_at"])  # as it was, not as now


CONCURRENT_WRITER = """
import datetime as dt, sys
import pyarrow as pa
from stock_assets.lake import layout
from stock_assets.lake.storage import LakeStorage
from stock_assets.partitions import sessions_between

sessions = sessions_between("2015-01-02", sys.argv[2], sys.argv[3])
bars = pa.table({"symbol": ["A"] * len(sessions), "session": pa.array(sessions, pa.date32()), "close": [float(i) for i in range(len(sessions))]})
print(layout.write_sessions(LakeStorage(sys.argv[1]), "lake/deduped", bars, sessions)[0])
"""


@pytest.mark.slow
def test_runs_writing_one_table_at_once_on_s3_all_commit(s3_lake_url):
    """Backfill runs of different windows commit to one Delta table at the same moment: each
    commit is a conditional put, so none overwrites another and every window is there."""
    windows = [("2024-01-02", "2024-01-12"), ("2024-01-16", "2024-01-26"), ("2024-02-01", "2024-02-09"), ("2024-03-01", "2024-03-08")]
    writers = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, s3_lake_url, a, b], cwd=ROOT, stdout=subprocess.PIPE, text=True)
               for a, b in windows]  # fmt: skip
    versions = sorted(int(w.communicate(timeout=120)[0].strip().rsplit("@v", 1)[1]) for w in writers)
    assert [w.returncode for w in writers] == [0] * 4
    assert versions == [0, 1, 2, 3]  # four commits, one each
    bucket = LakeStorage(s3_lake_url)
    every = [s for a, b in windows for s in sessions_between("2015-01-02", a, b)]
    assert read_sessions(bucket, "lake/deduped", every, schema=None).num_rows == len(every)


DUCKDB_READER = """
import sys, duckdb
from stock_assets.lake import delta
from stock_assets.lake.storage import LakeStorage
rows = delta.dataset(LakeStorage(sys.argv[2]), "lake/deduped")
print(duckdb.sql("SELECT count(*), count(DISTINCT session), min(session) FROM rows").fetchall()[0])
"""


@pytest.mark.slow
def test_duckdb_reads_the_lake_from_the_bucket(settings, s3_lake_url, s3_endpoint, instance):
    on_s3 = dataclasses.replace(settings, lake_url=s3_lake_url)
    assert materialize_range(defs_for(on_s3), FIRST, "2024-01-10", instance).success
    # In its own interpreter: DuckDB's Python filesystem bridge complains at interpreter exit.
    reader = subprocess.run([sys.executable, "-c", DUCKDB_READER, s3_endpoint, s3_lake_url], capture_output=True, text=True, check=True)
    assert reader.stdout.strip() == "(21, 7, datetime.date(2024, 1, 2))"


WRITER = """
import sys, time
from stock_assets.lake.storage import LakeStorage
def chunks():
    yield b"x" * 1_000_000
    print("writing", flush=True)
    time.sleep(60)
    yield b"never"
LakeStorage(sys.argv[1]).write_chunks("landing/2024-01-02/20240102T210000000000Z.csv", chunks())
"""


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_writer_killed_mid_write_leaves_no_visible_file(where, tmp_path, request):
    url = str(tmp_path / "lake") if where == "local" else request.getfixturevalue("s3_lake_url")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    time.sleep(0.2)
    assert LakeStorage(url).list_files("landing") == []


def test_athena_ddl_in_the_repository_is_generated_from_the_schema():
    committed = (ROOT / "deploy" / "athena" / "lake_tables.sql").read_text()
    assert committed == lake_ddl("s3://YOUR-BUCKET/stock_assets")
    for name, (prefix, schema) in TABLES.items():
        statement = committed.split(f"CREATE EXTERNAL TABLE IF NOT EXISTS {name}\n", 1)[1].split(";", 1)[0]
        assert statement == f"LOCATION 's3://YOUR-BUCKET/stock_assets/{prefix}/'\nTBLPROPERTIES ('table_type' = 'DELTA')"
        assert f"-- {name}: {', '.join(schema.names)};" in committed
