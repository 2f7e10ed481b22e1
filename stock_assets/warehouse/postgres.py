"""PostgreSQL: each window load is one transaction.

    CREATE TEMP TABLE <t>_stage (…)            private to this connection, the data's columns
    COPY <t>_stage FROM STDIN (FORMAT binary)  ADBC's bulk ingest of the Arrow table
    DELETE FROM <t> WHERE session BETWEEN …    the window
    INSERT INTO <t> SELECT … FROM <t>_stage
    COMMIT

A concurrent reader sees the old window until COMMIT, then the new one, never an empty one.
Staging first means bad data fails in COPY before a row of the table is touched.

Two drivers, one libpq connection string: loads go through ADBC (adbc-driver-postgresql), whose
ingest writes binary COPY from the Arrow buffers in C, column by column; reads and the Redshift
engine's loads (COPY from S3, nothing to encode here) go through psycopg2.

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
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import adbc_driver_manager.dbapi as adbc
import adbc_driver_postgresql.dbapi as adbc_postgresql
import duckdb
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
from stock_assets.warehouse.ddl import CATALOG_SQL, column_ddl, plan_ddl, window_delete_sql, window_sql

# Result column types by PostgreSQL type OID; anything else is left to Arrow to infer.
ARROW_TYPES = {
    16: pa.bool_(), 20: pa.int64(), 21: pa.int16(), 23: pa.int32(), 700: pa.float32(), 701: pa.float64(),
    25: pa.string(), 1043: pa.string(), 1042: pa.string(), 19: pa.string(), 1082: pa.date32(),
    1114: pa.timestamp("us"), 1184: pa.timestamp("us", tz="UTC"),
}
COPY_BATCH_ROWS = 200_000  # the ingest's record batches: bounds the COPY buffer, one COPY stream
LONGEST_CONNECT_TIMEOUT_SECONDS = 30
# Who holds a lock on the table, as far as pg_locks and pg_stat_activity tell this user.
LOCK_HOLDERS_SQL = """
SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.state, ''), extract(epoch FROM now() - a.xact_start)
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.relation = to_regclass(%s) AND l.pid <> pg_backend_pid()
ORDER BY l.pid
"""
LOCK_NOT_AVAILABLE, QUERY_CANCELED = "55P03", "57014"  # SQLSTATEs: lock_timeout, statement_timeout


def to_pyformat(sql: str) -> str:
    """`?` placeholders (DuckDB style, what callers write) as psycopg2's %s; literal % doubled.
    Which `?` are placeholders is DuckDB's own tokenizer's answer: not one in a string, a quoted
    name or a comment."""
    marks = [at for at, kind in duckdb.tokenize(sql) if kind == duckdb.token_type.operator and sql[at] == "?"]
    cuts = [-1, *marks, len(sql)]
    return "%s".join(sql[a + 1 : b].replace("%", "%%") for a, b in itertools.pairwise(cuts))


def _sqlstate(err: Exception) -> str | None:
    return getattr(err, "pgcode", None) or getattr(err, "sqlstate", None)  # psycopg2, ADBC


def _why(err: Exception) -> str:
    """The server's message on one line, without the echo of our SQL (LINE n: … and its caret)."""
    fields = dict(getattr(err, "details", None) or [])  # ADBC: the server's fields, as libpq reports them
    if b"PG_DIAG_MESSAGE_PRIMARY" in fields:
        parts = [(b"PG_DIAG_MESSAGE_PRIMARY", ""), (b"PG_DIAG_MESSAGE_DETAIL", "DETAIL: "), (b"PG_DIAG_MESSAGE_HINT", "HINT: ")]
        return " ".join(label + fields[key].decode(errors="replace") for key, label in parts if key in fields)
    lines = [x.strip() for x in str(err).splitlines()]
    shown = [x for x in lines if x and not x.startswith(("LINE ", "Query was:")) and set(x) != {"^"}]
    return " ".join(shown) or type(err).__name__


def milliseconds(seconds: float) -> int:
    """A timeout setting in ms; never 0, which PostgreSQL reads as "wait forever"."""
    return max(1, round(seconds * 1000))


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

    def conninfo(self) -> str:
        """The URL as libpq reads it, with our connect_timeout unless the URL sets one (it wins)."""
        dsn = self.dsn()
        try:
            given = psycopg2.extensions.parse_dsn(dsn)
        except psycopg2.Error as err:
            raise WarehouseConnectionError(f"cannot connect to {self.describe()}: {redact(str(err).strip(), self._password)}") from None
        return psycopg2.extensions.make_dsn(dsn, **({} if "connect_timeout" in given else {"connect_timeout": self.connect_timeout()}))

    def connect(self):
        """A psycopg2 connection with the session settings applied (reads; Redshift's loads)."""
        conninfo = self.conninfo()
        try:
            con = psycopg2.connect(conninfo)
        except psycopg2.Error as err:
            raise WarehouseConnectionError(f"cannot connect to {self.describe()}: {redact(str(err).strip(), self._password)}") from None
        return self._with_settings(con)

    def load_connection(self):
        """The connection a window load runs in: ADBC, for its Arrow bulk ingest (see _stage)."""
        conninfo = self.conninfo()
        try:
            con = adbc_postgresql.connect(conninfo)  # autocommit off: one transaction until commit
        except adbc.Error as err:
            why = str(err).strip().removeprefix("IO: ").removeprefix("[libpq] ")
            raise WarehouseConnectionError(f"cannot connect to {self.describe()}: {redact(why, self._password)}") from None
        return self._with_settings(con)

    def _with_settings(self, con):
        try:
            with con.cursor() as cur:
                for statement in self.session_settings():
                    cur.execute(statement)
            con.commit()  # kept for the session: a rolled-back load must not undo them
        except Exception:
            con.close()
            raise
        return con

    def _failure(self, table: str, first: dt.date, last: dt.date, err: Exception) -> Exception:
        """The error a failed load raises: a lock or statement timeout named as such."""
        if _sqlstate(err) == LOCK_NOT_AVAILABLE:
            return WarehouseLockedError(
                f"loading {table} for sessions {first}..{last} waited {self.lock_timeout_seconds:g} s for a lock "
                f"({LOCK_TIMEOUT_VARIABLE}) and was rolled back, nothing changed: another session holds a lock on "
                f"{table}{self.lock_holders(table)}; find it in pg_locks / pg_stat_activity, e.g. SELECT pid, state, query "
                f"FROM pg_stat_activity WHERE pid IN (SELECT pid FROM pg_locks WHERE relation = '{table}'::regclass)"
            )
        if _sqlstate(err) == QUERY_CANCELED:
            return load_error(table, first, last, (
                f"a statement was canceled ({_why(err)}); statement_timeout is {self.statement_timeout_seconds:g} s, "
                f"set by {STATEMENT_TIMEOUT_VARIABLE}: raise it or load a shorter window"
            ), self._password)
        return load_error(table, first, last, _why(err), self._password)

    def lock_holders(self, table: str) -> str:
        """' (held by PID 4242, psql, idle in transaction for 12 s)', or '' when none can be seen."""
        try:
            con = self.connect()
        except WarehouseConnectionError:
            return ""
        try:
            with con.cursor() as cur:
                cur.execute(LOCK_HOLDERS_SQL, [quote(table)])
                found = cur.fetchall()
        except psycopg2.Error:
            return ""
        finally:
            con.close()
        described = [
            ", ".join([f"PID {pid}", *(x for x in (app, state) if x)]) + (f" for {age:.0f} s" if age is not None else "")
            for pid, app, state, age in found
        ]
        return f" (held by {'; '.join(described)})" if described else ""

    @property
    def _password(self) -> str | None:
        return urlsplit(self.url).password

    def _ensure(self, con, table: str, schema: pa.Schema) -> None:
        with con.cursor() as cur:
            if self.dialect == "postgresql":
                # Two runs creating a table at once: IF NOT EXISTS alone races on the catalog. The
                # key is a literal (quote() allows letters, digits and _ only): either driver runs it.
                cur.execute(f"SELECT pg_advisory_xact_lock(hashtext('stock_assets.ddl.{quote(table)[1:-1]}'))")
            cur.execute(CATALOG_SQL)
            for statement in plan_ddl(table, schema, self.dialect, cur.fetchall()):
                cur.execute(statement)
        con.commit()

    def _stage(self, cur, table: str, data: pa.Table, first: dt.date, last: dt.date, lake_prefix: str | None, window: str | None = None) -> str:
        """Fill a temporary table shaped like `data` with it; returns the INSERT that moves it over.

        Shaped like the data, not the target, so the COPY always matches and type mismatches
        surface in the INSERT as PostgreSQL's own "column x is of type …" error. ADBC's ingest
        writes it as binary COPY straight from the Arrow buffers, in this transaction."""
        stage, columns = quote(f"{table}_stage"), ", ".join(quote(c) for c in data.column_names)
        cur.execute(f"CREATE TEMP TABLE {stage} ({', '.join(column_ddl(data.schema, self.dialect))}) ON COMMIT DROP")
        cur.adbc_ingest(f"{table}_stage", data.to_reader(max_chunksize=COPY_BATCH_ROWS), mode="append", temporary=True)
        return f"INSERT INTO {quote(table)} ({columns}) SELECT {columns} FROM {stage}"

    def replace_window(self, table: str, data: pa.Table, first: dt.date, last: dt.date, lake_prefix: str | None = None,
                       symbols: list[str] | None = None, scope: str | None = None) -> int:  # fmt: skip
        """Make `table` hold exactly `data` for sessions first..last (of `symbols`, or of `scope`
        for a table without symbols, when given: ddl.window_sql); returns rows inserted.

        `lake_prefix`: the lake's Delta table that already holds these rows
        (only Redshift uses it: it loads from S3, not from this process)."""
        check_window(table, data, first, last, symbols)
        con = self.load_connection()
        try:
            self._ensure(con, table, data.schema)
            with con.cursor() as cur:
                insert = self._stage(cur, table, data, first, last, lake_prefix, window_sql(first, last, symbols, scope))
                cur.execute(window_delete_sql(table, first, last, symbols, scope))
                cur.execute(insert)
                if self.before_commit:
                    self.before_commit()
            con.commit()
        except Exception as err:
            with contextlib.suppress(psycopg2.Error, adbc.Error):  # a dead connection has rolled back already
                con.rollback()
            if isinstance(err, WarehouseLoadError):
                raise
            raise self._failure(table, first, last, err) from err
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
