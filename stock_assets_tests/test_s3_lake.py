"""The lake on a real S3 API (moto's server mode on loopback): the whole graph lands in a
bucket exactly as it lands in a local folder, DuckDB reads it, and a killed writer leaves
nothing half-written behind."""

import dataclasses
import json
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from stock_assets.cli import materialize_range
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
    keys = bucket.list_files("lake")
    assert keys == local.list_files("lake")
    assert keys[0] == "lake/deduped/session=2024-01-02/part-0.parquet" and len(keys) == 4 * 21
    assert len(bucket.list_files("landing")) == len(local.list_files("landing")) == 2 * 21  # files and their records
    assert len(bucket.list_files("raw")) == 3
    latest = json.loads(bucket.read_bytes("published/LATEST"))  # the snapshot: server-side copies of the checked files
    assert latest["rows"] == 3 * 21 and len(latest["files"]) == 21
    assert bucket.read_bytes(latest["files"][0]) == bucket.read_bytes(keys[0])
    sessions = sessions_between(settings.start, FIRST, LAST)
    for prefix in ("lake/prices", "lake/deduped"):
        s3_rows, local_rows = (read_sessions(s, prefix, sessions).drop_columns(["ingested_at"]) for s in (bucket, local))
        assert s3_rows.equals(local_rows)

    assert materialize_range(defs_for(on_s3), FIRST, LAST, instance).success  # again: replaced, not doubled
    assert bucket.list_files("lake") == keys and len(bucket.list_files("landing")) == 2 * 21
    assert len(warehouse_rows(on_s3, "prices")) == 3 * 21


DUCKDB_READER = """
import sys, duckdb, s3fs
con = duckdb.connect()
con.register_filesystem(s3fs.S3FileSystem(endpoint_url=sys.argv[1]))
print(con.execute(
    f"SELECT count(*), count(DISTINCT session), min(session) FROM read_parquet('{sys.argv[2]}/lake/deduped/*/*.parquet', hive_partitioning=true)"
).fetchall()[0])
"""


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
LakeStorage(sys.argv[1]).write_chunks("lake/prices/session=2024-01-02/part-0.parquet", chunks())
"""


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_writer_killed_mid_write_leaves_no_visible_file(where, tmp_path, request):
    url = str(tmp_path / "lake") if where == "local" else request.getfixturevalue("s3_lake_url")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    time.sleep(0.2)
    assert LakeStorage(url).list_files("lake") == []


def test_athena_ddl_in_the_repository_is_generated_from_the_schema():
    committed = (ROOT / "deploy" / "athena" / "lake_tables.sql").read_text()
    assert committed == lake_ddl("s3://YOUR-BUCKET/stock_assets")
    for name, (prefix, schema) in TABLES.items():
        assert f"CREATE EXTERNAL TABLE IF NOT EXISTS {name} (" in committed
        assert f"'storage.location.template' = 's3://YOUR-BUCKET/stock_assets/{prefix}/session=${{session}}/'" in committed
        assert all(f"`{f.name}`" in committed for f in schema)
