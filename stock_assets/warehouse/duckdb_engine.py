"""DuckDB, the embedded default: the window's rows inserted straight from Arrow."""

import contextlib
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from stock_assets.warehouse.common import check_window, load_error, quote
from stock_assets.warehouse.ddl import CATALOG_SQL, plan_ddl, window_delete_sql


@dataclass
class DuckDBWarehouse:
    path: Path
    dialect = "duckdb"

    def connect(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(self.path))
        con.execute("SET TimeZone = 'UTC'")
        return con

    def _ensure(self, con: duckdb.DuckDBPyConnection, table: str, schema: pa.Schema) -> None:
        statements = plan_ddl(table, schema, self.dialect, con.execute(CATALOG_SQL).fetchall())
        if statements:
            con.execute("BEGIN TRANSACTION")
            for statement in statements:
                con.execute(statement)
            con.execute("COMMIT")

    def replace_window(self, table: str, data: pa.Table, first: dt.date, last: dt.date, lake_prefix: str | None = None) -> int:
        """Make `table` hold exactly `data` for sessions first..last; returns rows inserted."""
        check_window(table, data, first, last)
        with self.connect() as con:
            try:
                self._ensure(con, table, data.schema)
                con.execute("BEGIN TRANSACTION")
                con.execute(window_delete_sql(table, first, last))
                con.register("incoming", data)
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
