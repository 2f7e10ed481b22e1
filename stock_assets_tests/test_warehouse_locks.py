"""Lock waits are bounded and named, on real parts: a second process holding the DuckDB file, a
second PostgreSQL session holding LOCK TABLE, a closed port and a port that never answers."""

import logging
import socket
import subprocess
import sys
import time

import duckdb
import psycopg2
import pytest

from stock_assets.warehouse.duckdb_engine import DuckDBWarehouse
from stock_assets.warehouse.io_manager import WarehouseResource
from stock_assets.warehouse.postgres import PostgresWarehouse
from stock_assets.warehouse.redshift import RedshiftWarehouse
from stock_assets.warehouse.warehouse import (
    WarehouseConnectionError,
    WarehouseLoadError,
    WarehouseLockedError,
    warehouse_for_url,
)
from stock_assets_tests.test_provider_budget import at_once
from stock_assets_tests.test_warehouse import FEB, JAN, bars

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)  # like a notebook: the file stays open
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def hold_duckdb():
    """Start a second process that opens the file read-only and keeps it `seconds`; yields it held."""
    holders = []

    def hold(path, seconds: float) -> subprocess.Popen:
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        assert holder.stdout.readline().strip() == "holding"
        return holder

    yield hold
    for holder in holders:
        holder.kill()
        holder.wait()


def test_duckdb_held_by_another_process_fails_named_and_bounded(tmp_path, hold_duckdb, caplog):
    path = tmp_path / "warehouse.duckdb"
    DuckDBWarehouse(path).replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    holder = hold_duckdb(path, 60)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="stock_assets.warehouse"), pytest.raises(WarehouseLockedError) as locked:
        DuckDBWarehouse(path, lock_timeout_seconds=1.5).replace_window("prices", bars(FEB), FEB[0], FEB[-1])
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 10
    message = str(locked.value)
    assert str(path) in message and f"PID {holder.pid}" in message and f"cp {path} /tmp/copy.duckdb" in message
    assert "STOCK_ASSETS_WAREHOUSE_LOCK_TIMEOUT_SECONDS=1.5" in message
    waits = [r.getMessage() for r in caplog.records if r.name == "stock_assets.warehouse"]
    assert waits and all(str(path) in w and f"PID {holder.pid}" in w for w in waits)
    assert isinstance(locked.value, WarehouseConnectionError)
    # Reads open the file the same way: with no time to wait, they fail at once, named.
    started = time.monotonic()
    with pytest.raises(WarehouseLockedError, match=f"PID {holder.pid}"):
        DuckDBWarehouse(path, lock_timeout_seconds=0).query("SELECT count(*) FROM prices")
    assert time.monotonic() - started < 1.5


def test_duckdb_load_goes_through_once_the_holder_lets_go(tmp_path, hold_duckdb):
    path = tmp_path / "warehouse.duckdb"
    warehouse = DuckDBWarehouse(path, lock_timeout_seconds=10)
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    holder = hold_duckdb(path, 1)
    started = time.monotonic()
    assert warehouse.replace_window("prices", bars(FEB), FEB[0], FEB[-1]) == 2 * len(FEB)
    assert time.monotonic() - started < 10 and holder.wait(timeout=10) == 0
    assert warehouse.query("SELECT count(*) AS n FROM prices")["n"].to_pylist() == [2 * (len(JAN) + len(FEB))]


def test_other_duckdb_errors_are_not_waited_for(tmp_path):
    path = tmp_path / "not-a-database.duckdb"
    path.write_bytes(b"this is no DuckDB file" * 1000)
    started = time.monotonic()
    with pytest.raises(duckdb.Error) as failed:
        DuckDBWarehouse(path, lock_timeout_seconds=10).query("SELECT 1")
    assert time.monotonic() - started < 2 and not isinstance(failed.value, WarehouseLockedError)


@pytest.fixture
def lock_prices(postgres_url):
    """A second session that holds LOCK TABLE prices until it is released."""
    sessions = []

    def lock():
        con = psycopg2.connect(postgres_url)
        con.autocommit = True
        con.cursor().execute("BEGIN; LOCK TABLE prices IN ACCESS EXCLUSIVE MODE")
        sessions.append(con)
        return con

    yield lock
    for con in sessions:
        con.close()


@pytest.mark.slow
def test_postgresql_table_lock_fails_named_and_bounded_then_loads_once_released(postgres_url, lock_prices):
    warehouse = PostgresWarehouse(postgres_url, lock_timeout_seconds=1)
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    holder = lock_prices()
    started = time.monotonic()
    with pytest.raises(WarehouseLockedError) as locked:
        warehouse.replace_window("prices", bars(FEB), FEB[0], FEB[-1])
    assert 1 <= time.monotonic() - started < 5
    message = str(locked.value)
    assert f"loading prices for sessions {FEB[0]}..{FEB[-1]} waited 1 s" in message
    assert f"another session holds a lock on prices (held by PID {holder.get_backend_pid()}" in message
    assert "pg_locks / pg_stat_activity" in message
    with pytest.raises(WarehouseLockedError, match="a query on .* waited 1 s for a lock"):
        warehouse.query("SELECT count(*) FROM prices")
    holder.cursor().execute("COMMIT")
    assert warehouse.replace_window("prices", bars(FEB), FEB[0], FEB[-1]) == 2 * len(FEB)
    assert warehouse.query("SELECT count(*) AS n FROM prices")["n"].to_pylist() == [2 * (len(JAN) + len(FEB))]


def test_postgresql_statement_timeout_fails_named(postgres_url, lock_prices):
    warehouse = PostgresWarehouse(postgres_url, lock_timeout_seconds=30, statement_timeout_seconds=1)
    warehouse.replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    lock_prices()
    started = time.monotonic()
    with pytest.raises(WarehouseLoadError) as failed:
        warehouse.replace_window("prices", bars(FEB), FEB[0], FEB[-1])
    assert time.monotonic() - started < 5
    assert f"loading prices for sessions {FEB[0]}..{FEB[-1]} failed and was rolled back" in str(failed.value)
    assert "STOCK_ASSETS_WAREHOUSE_STATEMENT_TIMEOUT_SECONDS" in str(failed.value)


def test_the_timeouts_reach_each_session_from_the_resource(postgres_url):
    def settings(warehouse) -> list:
        return [warehouse.query(f"SHOW {name}")[name].to_pylist()[0] for name in ("lock_timeout", "statement_timeout")]

    assert settings(WarehouseResource(url=postgres_url, lock_timeout_seconds=2, statement_timeout_seconds=7).get()) == ["2s", "7s"]
    assert settings(warehouse_for_url(postgres_url)) == ["1min", "1h"]
    # Redshift has no lock_timeout: its sessions set statement_timeout only.
    assert settings(RedshiftWarehouse(postgres_url, lock_timeout_seconds=2, statement_timeout_seconds=7)) == ["0", "7s"]


def test_a_closed_port_fails_fast_without_the_password():
    started = time.monotonic()
    with pytest.raises(WarehouseConnectionError) as failed:
        warehouse_for_url("postgresql://loader:hunter2-secret@127.0.0.1:1/test").replace_window("prices", bars(JAN), JAN[0], JAN[-1])
    assert time.monotonic() - started < 10
    assert "loader:***@127.0.0.1:1" in str(failed.value) and "hunter2" not in str(failed.value)


def test_a_port_that_never_answers_fails_after_the_connect_timeout():
    with socket.socket() as silent:  # accepts the TCP connection (backlog), never speaks PostgreSQL
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"postgresql://loader:hunter2-secret@127.0.0.1:{silent.getsockname()[1]}/test"
        started = time.monotonic()
        with pytest.raises(WarehouseConnectionError) as failed:
            PostgresWarehouse(url, lock_timeout_seconds=2).query("SELECT 1")
        assert 1.5 <= time.monotonic() - started < 10
    assert "timeout" in str(failed.value) and "hunter2" not in str(failed.value)



@pytest.mark.slow
def test_runs_creating_a_postgresql_table_at_once_all_load(postgres_url):
    """Two runs of a multi-run backfill load their first windows into a table neither has created yet."""
    for round_ in range(6):
        table = f"prices_race_{round_}"
        loads = [lambda w=w, t=table: PostgresWarehouse(postgres_url).replace_window(t, bars(w), w[0], w[-1]) for w in (JAN, FEB)]
        assert at_once(loads) == [], f"round {round_}"
        count = PostgresWarehouse(postgres_url).query(f"SELECT count(*) AS n FROM {table}")["n"].to_pylist()
        assert count == [2 * (len(JAN) + len(FEB))]
