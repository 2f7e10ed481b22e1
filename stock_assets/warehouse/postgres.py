"""PostgreSQL: each window load is one transaction.

    CREATE TEMP TABLE <t>_stage (…)            private to this connection, the data's columns
    COPY <t>_stage FROM STDIN (FORMAT binary)  the Arrow table encoded by pgbinary.py
    DELETE FROM <t> WHERE session BETWEEN …    the window
    INSERT INTO <t> SELECT … FROM <t>_stage
    COMMIT

A concurrent reader sees the old window until COMMIT, then the new one, never an empty one.
Staging first means bad data fails in COPY before a row of the table is touched.

URL: postgresql://user@host:5432/db (libpq URI). `?options=-csearch_path%3Dmyschema` picks a
schema; the password can come from PGPASSWORD instead of the URL. Passwords never appear in
errors or `describe()`.

Every session sets lock_timeout and statement_timeout (STOCK_ASSETS_WAREHOUSE_LOCK_TIMEOUT_SECONDS,
..._STATEMENT_TIMEOUT_SECONDS) and connects with a connect_timeout, so no wait is unbounded:
a lock held by another session ends the load with WarehouseLockedError naming the table and
the holder's PID, a statement running too long with a WarehouseLoadError naming the setting.
"""

import contextlib
import datetime as dt
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg2
import pyarrow as pa

from stock_assets.warehouse.common import (
    LOCK_TIMEOUT_VARIABLE,
    STATEMENT_TIMEOUT_VARIABLE,
    WarehouseConnectionError,
    WarehouseLoadError,
    WarehouseLockedError,
    check_window,
    load_error,
    quote,
    redact,
    redact_url,
)
from stock_assets.warehouse.ddl import CATALOG_SQL, column_ddl, plan_ddl, window_delete_sql
from stock_assets.warehouse.pgbinary import copy_binary

# Result column types by PostgreSQL type OID; anything else is left to Arrow to infer.
ARROW_TYPES = {
    16: pa.bool_(), 20: pa.int64(), 21: pa.int16(), 23: pa.int32(), 700: pa.float32(), 701: pa.float64(),
    25: pa.string(), 1043: pa.string(), 1042: pa.string(), 19: pa.string(), 1082: pa.date32(),
    1114: pa.timestamp("us"), 1184: pa.timestamp("us", tz="UTC"),
}
COPY_BATCH_ROWS = 200_000  # bounds the encoder's memory; one COPY per batch, same transaction
LONGEST_CONNECT_TIMEOUT_SECONDS = 30
# Who holds a lock on the table, as far as pg_locks and pg_stat_activity tell this user.
LOCK_HOLDERS_SQL = """
SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.state, ''), extract(epoch FROM now() - a.xact_start)
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.relation = to_regclass(%s) AND l.pid <> pg_backend_pid()
ORDER BY l.pid
"""
_PLACEHOLDERS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")


def to_pyformat(sql: str) -> str:
    """`?` placeholders (DuckDB style, what callers write) as psycopg2's %s; literal % doubled."""
    def swap(m: re.Match) -> str:
        token = m.group(0)
        return "%s" if token == "?" else "%%" if token == "%" else token.replace("%", "%%")
    return _PLACEHOLDERS.sub(swap, sql)


def _why(err: Exception) -> str:
    """The server's message on one line, without the echo of our SQL (LINE n: … and its caret)."""
    lines = [x.strip() for x in str(err).splitlines()]
    return " ".join(x for x in lines if x and not x.startswith("LINE ") and set(x) != {"^"}) or type(err).__name__


def milliseconds(seconds: float) -> int:
    """A timeout setting in ms; never 0, which PostgreSQL reads as "wait forever"."""
    return max(1, round(seconds * 1000))


def lock_holders(con, table: str) -> str:
    """' (held by PID 4242, psql, idle in transaction for 12 s)', or '' when none can be seen."""
    try:
        with con.cursor() as cur:
            cur.execute(LOCK_HOLDERS_SQL, [quote(table)])
            found = cur.fetchall()
        con.rollback()
    except psycopg2.Error:
        return ""
    described = [
        ", ".join([f"PID {pid}", *(x for x in (app, state) if x)]) + (f" for {age:.0f} s" if age is not None else "")
        for pid, app, state, age in found
    ]
    return f" (held by {'; '.join(described)})" if described else ""


def arrow_result(description, rows: list[tuple]) -> pa.Table:
    names = [d.name for d in description]
    columns = list(zip(*rows)) if rows else [() for _ in names]
    return pa.table([pa.array(c, type=ARROW_TYPES.get(d.type_code)) for c, d in zip(columns, description)], names=names)


@dataclass
class PostgresWarehouse:
    url: str
    # Called inside the open load transaction, after the insert: lets a test read from a
    # second connection while the load is in flight.
    before_commit: Callable[[], None] | None = None
    lock_timeout_seconds: float = 60.0  # STOCK_ASSETS_WAREHOUSE_LOCK_TIMEOUT_SECONDS
    statement_timeout_seconds: float = 3600.0  # STOCK_ASSETS_WAREHOUSE_STATEMENT_TIMEOUT_SECONDS
    dialect = "postgresql"

    def dsn(self) -> str:
        return self.url

    def session_settings(self) -> list[str]:
        return [
            "SET timezone TO 'UTC'",
            f"SET lock_timeout = {milliseconds(self.lock_timeout_seconds)}",
            f"SET statement_timeout = {milliseconds(self.statement_timeout_seconds)}",
        ]

    def connect_timeout(self) -> int:
        """Seconds libpq may take to connect: a closed or silent port fails fast (libpq's floor is 2)."""
        return max(2, min(LONGEST_CONNECT_TIMEOUT_SECONDS, math.ceil(self.lock_timeout_seconds)))

    def connect(self):
        try:
            dsn = self.dsn()
            given = psycopg2.extensions.parse_dsn(dsn)  # a connect_timeout in the URL wins
            con = psycopg2.connect(dsn, **({} if "connect_timeout" in given else {"connect_timeout": self.connect_timeout()}))
        except psycopg2.Error as err:
            raise WarehouseConnectionError(f"cannot connect to {self.describe()}: {redact(str(err).strip(), self._password)}") from None
        with con.cursor() as cur:
            for statement in self.session_settings():
                cur.execute(statement)
        con.commit()
        return con

    def _failure(self, con, table: str, first: dt.date, last: dt.date, err: Exception) -> Exception:
        """The error a failed load raises: a lock or statement timeout named as such."""
        if isinstance(err, psycopg2.errors.LockNotAvailable):
            return WarehouseLockedError(
                f"loading {table} for sessions {first}..{last} waited {self.lock_timeout_seconds:g} s for a lock "
                f"({LOCK_TIMEOUT_VARIABLE}) and was rolled back, nothing changed: another session holds a lock on "
                f"{table}{lock_holders(con, table)}; find it in pg_locks / pg_stat_activity, e.g. SELECT pid, state, query "
                f"FROM pg_stat_activity WHERE pid IN (SELECT pid FROM pg_locks WHERE relation = '{table}'::regclass)"
            )
        if isinstance(err, psycopg2.errors.QueryCanceled):
            return load_error(table, first, last, (
                f"a statement was canceled ({_why(err)}); statement_timeout is {self.statement_timeout_seconds:g} s, "
                f"set by {STATEMENT_TIMEOUT_VARIABLE}: raise it or load a shorter window"
            ), self._password)
        return load_error(table, first, last, _why(err), self._password)

    @property
    def _password(self) -> str | None:
        return urlsplit(self.url).password

    def _ensure(self, con, table: str, schema: pa.Schema) -> None:
        with con.cursor() as cur:
            if self.dialect == "postgresql":
                # Two runs creating a table at once: IF NOT EXISTS alone races on the catalog.
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"stock_assets.ddl.{table}"])
            cur.execute(CATALOG_SQL)
            for statement in plan_ddl(table, schema, self.dialect, cur.fetchall()):
                cur.execute(statement)
        con.commit()

    def _stage(self, cur, table: str, data: pa.Table, first: dt.date, last: dt.date, lake_prefix: str | None) -> str:
        """Fill a temporary table shaped like `data` with it; returns the INSERT that moves it over.

        Shaped like the data, not the target, so binary COPY always matches and type mismatches
        surface in the INSERT as PostgreSQL's own "column x is of type …" error."""
        stage, columns = quote(f"{table}_stage"), ", ".join(quote(c) for c in data.column_names)
        cur.execute(f"CREATE TEMP TABLE {stage} ({', '.join(column_ddl(data.schema, self.dialect))}) ON COMMIT DROP")
        for start in range(0, data.num_rows, COPY_BATCH_ROWS):
            encoded = copy_binary(data.slice(start, COPY_BATCH_ROWS))
            cur.copy_expert(f"COPY {stage} FROM STDIN WITH (FORMAT binary)", io.BytesIO(encoded))
        return f"INSERT INTO {quote(table)} ({columns}) SELECT {columns} FROM {stage}"

    def replace_window(self, table: str, data: pa.Table, first: dt.date, last: dt.date, lake_prefix: str | None = None) -> int:
        """Make `table` hold exactly `data` for sessions first..last; returns rows inserted.

        `lake_prefix`: where the lake already holds these rows as Hive-partitioned Parquet
        (only Redshift uses it: it loads from S3, not from this process)."""
        check_window(table, data, first, last)
        con = self.connect()
        try:
            self._ensure(con, table, data.schema)
            with con.cursor() as cur:
                insert = self._stage(cur, table, data, first, last, lake_prefix)
                cur.execute(window_delete_sql(table, first, last))
                cur.execute(insert)
                if self.before_commit:
                    self.before_commit()
            con.commit()
        except Exception as err:
            with contextlib.suppress(psycopg2.Error):  # a dead connection has rolled back already
                con.rollback()
            if isinstance(err, WarehouseLoadError):
                raise
            raise self._failure(con, table, first, last, err) from err
        finally:
            con.close()
        return data.num_rows

    def query(self, sql: str, params: list | None = None) -> pa.Table:
        con = self.connect()
        try:
            with con.cursor() as cur:
                cur.execute(to_pyformat(sql) if params is not None else sql, params)
                return arrow_result(cur.description, cur.fetchall())
        except psycopg2.errors.LockNotAvailable:
            raise WarehouseLockedError(
                f"a query on {self.describe()} waited {self.lock_timeout_seconds:g} s for a lock ({LOCK_TIMEOUT_VARIABLE}): "
                "another session holds a lock on a table it reads; find it in pg_locks / pg_stat_activity"
            ) from None
        finally:
            con.close()

    def table_exists(self, table: str) -> bool:
        con = self.connect()
        try:
            with con.cursor() as cur:
                cur.execute(CATALOG_SQL)
                return any(name == table for name, *_ in cur.fetchall())
        finally:
            con.close()

    def describe(self) -> str:
        return redact_url(self.url)
