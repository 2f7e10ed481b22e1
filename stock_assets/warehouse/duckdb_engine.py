"""DuckDB, the embedded default: the window's rows inserted straight from Arrow.

One process at a time may open the file (a read-only one shuts writers out too). Every
connection, read or write, waits for another process's lock with a short backoff for at most
`lock_timeout_seconds`, logging what it waits for, then raises WarehouseLockedError naming
the file and the holder's PID.
"""

import contextlib
import datetime as dt
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from stock_assets.warehouse.common import LOCK_TIMEOUT_VARIABLE, WarehouseLockedError, check_window, load_error, quote
from stock_assets.warehouse.ddl import CATALOG_SQL, plan_ddl, window_delete_sql

log = logging.getLogger("stock_assets.warehouse")

# DuckDB's own words, e.g. 'IO Error: Could not set lock on file "/x.duckdb": Conflicting lock is
# held in /usr/bin/python3.11 (PID 12018). However, you would be able to open ...'
LOCK_CONFLICT = re.compile(r"Could not set lock on file|Conflicting lock is held")
LOCK_HOLDER = re.compile(r"held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
# A load inserts in parallel (rows have no order: 30 % faster) and keeps a bounded share of what it
# wrote in memory, the rest already in the file (1.26 M indicator rows: 1.3 s and +70 MiB at the peak, against 1.7 s and +450 MiB; 5 M rows load as well).
LOAD_SETTINGS = "SET preserve_insertion_order = false; SET memory_limit = '64MB'"
FIRST_WAIT_SECONDS, LONGEST_WAIT_SECONDS, LOG_EVERY_SECONDS = 0.2, 5.0, 5.0


def lock_holder(message: str) -> str:
    """'PID 12018, /usr/bin/python3.11' from DuckDB's lock message, or 'PID unknown'."""
    found = LOCK_HOLDER.search(message)
    return f"PID {found['pid']}, {found['program']}" if found else "PID unknown"


@dataclass
class DuckDBWarehouse:
    path: Path
    lock_timeout_seconds: float = 60.0  # STOCK_ASSETS_WAREHOUSE_LOCK_TIMEOUT_SECONDS
    dialect = "duckdb"

    def connect(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = self._open()
        con.execute("SET TimeZone = 'UTC'")
        return con

    def _open(self) -> duckdb.DuckDBPyConnection:
        """duckdb.connect, waiting out another process's lock on the file for lock_timeout_seconds."""
        started = time.monotonic()
        pause, logged = FIRST_WAIT_SECONDS, None
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as err:
                if not LOCK_CONFLICT.search(str(err)):
                    raise
                holder, waited = lock_holder(str(err)), time.monotonic() - started
                left = self.lock_timeout_seconds - waited
                if left <= 0:
                    raise WarehouseLockedError(
                        f"the DuckDB warehouse {self.path.absolute()} is locked by another process ({holder}); "
                        f"waited {waited:.1f} s ({LOCK_TIMEOUT_VARIABLE}={self.lock_timeout_seconds:g}): "
                        f"a process has the warehouse open; close it, or query a copy "
                        f"(cp {self.path.absolute()} /tmp/copy.duckdb) or the lake's Delta tables through their log "
                        f"(DuckDB's delta_scan, or deltalake's DeltaTable: README, 'Read the lake')"
                    ) from err
                if logged is None or time.monotonic() - logged >= LOG_EVERY_SECONDS:
                    log.info("waiting for the DuckDB warehouse %s: another process holds its lock (%s); "
                             "waited %.1f s, giving up after %g s", self.path.absolute(), holder, waited,
                             self.lock_timeout_seconds)
                    logged = time.monotonic()
                time.sleep(min(pause, left))
                pause = min(pause * 2, LONGEST_WAIT_SECONDS)

    def _ensure(self, con: duckdb.DuckDBPyConnection, table: str, schema: pa.Schema) -> None:
        statements = plan_ddl(table, schema, self.dialect, con.execute(CATALOG_SQL).fetchall())
        if statements:
            con.execute("BEGIN TRANSACTION")
            for statement in statements:
                con.execute(statement)
            con.execute("COMMIT")

    def replace_window(self, table: str, data: pa.Table, first: dt.date, last: dt.date, lake_prefix: str | None = None,
                       symbols: list[str] | None = None, scope: str | None = None) -> int:  # fmt: skip
        """Make `table` hold exactly `data` for sessions first..last (of `symbols`, or of `scope`
        for a table without symbols, when given: ddl.window_sql); returns rows inserted."""
        check_window(table, data, first, last, symbols)
        with self.connect() as con:
            try:
                self._ensure(con, table, data.schema)
                con.execute("BEGIN TRANSACTION")
                con.execute(window_delete_sql(table, first, last, symbols, scope))
                con.register("incoming", data)
                con.execute(LOAD_SETTINGS)
                con.execute(f"INSERT INTO {quote(table)} BY NAME SELECT * FROM incoming")
                con.execute("COMMIT")
            except duckdb.Error as err:
                with contextlib.suppress(duckdb.TransactionException):  # none open: nothing to undo
                    con.rollback()
                raise load_error(table, first, last, str(err)) from err
        return data.num_rows

    def query(self, sql: str, params: list | None = None) -> pa.Table:
        with self.connect() as con:
            return con.sql(sql, params=params).to_arrow_table() if params else con.sql(sql).to_arrow_table()

    def table_exists(self, table: str) -> bool:
        with self.connect() as con:
            rows = con.execute(CATALOG_SQL).fetchall()
        return any(name == table for name, *_ in rows)

    def describe(self) -> str:
        return f"duckdb:///{self.path}"
