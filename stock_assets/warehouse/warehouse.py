"""The warehouse: tables generated from Arrow schemas, loaded one partition window at a time.

`Warehouse.for_url` picks the engine from STOCK_ASSETS_WAREHOUSE_URL; the assets and IO
manager only ever call `replace_window` and `query`. Each window load is one transaction:
delete the window, insert the new rows; a reader sees the old rows or the new, never none.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pyarrow as pa

DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.date32(): "DATE",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
    pa.float64(): "DOUBLE",
    pa.int64(): "BIGINT",
    pa.bool_(): "BOOLEAN",
}


class WarehouseLoadError(RuntimeError):
    pass


def column_ddl(schema: pa.Schema) -> list[str]:
    return [f'"{f.name}" {DUCKDB_TYPES[f.type]}' for f in schema]


@dataclass
class DuckDBWarehouse:
    path: Path

    def connect(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(self.path))
        con.execute("SET TimeZone = 'UTC'")
        return con

    def _ensure_table(self, con: duckdb.DuckDBPyConnection, table: str, schema: pa.Schema) -> None:
        con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({", ".join(column_ddl(schema))})')
        existing = {row[0] for row in con.execute(f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}'").fetchall()}
        for field, ddl in zip(schema, column_ddl(schema)):
            if field.name not in existing:  # a new nullable column: old rows read NULL
                con.execute(f'ALTER TABLE "{table}" ADD COLUMN {ddl}')

    def replace_window(self, table: str, data: pa.Table, first: dt.date, last: dt.date) -> int:
        """Make `table` hold exactly `data` for sessions first..last; returns rows inserted."""
        with self.connect() as con:
            self._ensure_table(con, table, data.schema)
            try:
                con.execute("BEGIN TRANSACTION")
                con.execute(f'DELETE FROM "{table}" WHERE session BETWEEN ? AND ?', [first, last])
                con.register("incoming", data)
                con.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM incoming')
                con.execute("COMMIT")
            except duckdb.Error as err:
                con.execute("ROLLBACK")
                raise WarehouseLoadError(f"loading {table} for sessions {first}..{last} failed and was rolled back: {err}") from err
        return data.num_rows

    def query(self, sql: str, params: list | None = None) -> pa.Table:
        with self.connect() as con:
            return con.sql(sql, params=params).to_arrow_table() if params else con.sql(sql).to_arrow_table()

    def table_exists(self, table: str) -> bool:
        with self.connect() as con:
            return bool(con.execute(f"SELECT count(*) FROM information_schema.tables WHERE table_name = '{table}'").fetchall()[0][0])

    def describe(self) -> str:
        return f"duckdb:///{self.path}"


def warehouse_for_url(url: str) -> DuckDBWarehouse:
    parsed = urlparse(url)
    if parsed.scheme == "duckdb":
        return DuckDBWarehouse(Path(url.removeprefix("duckdb://")))  # duckdb:///abs or duckdb://relative
    raise ValueError(f"unsupported warehouse URL scheme {parsed.scheme!r}: use duckdb:///path")
