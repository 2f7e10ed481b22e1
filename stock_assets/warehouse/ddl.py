"""Table DDL generated from Arrow schemas, per dialect: duckdb, postgresql, redshift.

`plan_ddl` turns "this table must hold this schema" plus the catalog as it is into the
statements that get there: CREATE TABLE, ALTER TABLE ADD COLUMN for new (nullable) columns,
PostgreSQL's session index, and the dashboard views that depend on the table.
"""

import datetime as dt
import re

import pyarrow as pa

from stock_assets.schema import validate_symbol
from stock_assets.warehouse import views
from stock_assets.warehouse.common import quote

# Redshift VARCHAR(n) counts bytes and sizes query memory by n: short codes get 256,
# free text gets the maximum.
WIDE_TEXT = {"sample", "scope"}  # scope: a window's symbols as a comma list

# The same SQL answers in all three engines; temporary tables live in other schemas (DuckDB:
# another catalog).
CATALOG_SQL = (
    "SELECT t.table_name, t.table_type, c.column_name FROM information_schema.tables t "
    "JOIN information_schema.columns c ON c.table_schema = t.table_schema AND c.table_name = t.table_name "
    "WHERE t.table_catalog = current_database() AND t.table_schema = current_schema() "
    "ORDER BY t.table_name, c.ordinal_position"
)


def sql_type(field: pa.Field, dialect: str) -> str:
    t = field.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if dialect == "redshift":
            return "VARCHAR(65535)" if field.name in WIDE_TEXT else "VARCHAR(256)"
        return "VARCHAR" if dialect == "duckdb" else "TEXT"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    if pa.types.is_float64(t):
        return "DOUBLE" if dialect == "duckdb" else "DOUBLE PRECISION"
    simple = {pa.date32(): "DATE", pa.float32(): "REAL", pa.int64(): "BIGINT", pa.int32(): "INTEGER",
              pa.int16(): "SMALLINT", pa.bool_(): "BOOLEAN"}
    if t in simple:
        return simple[t]
    raise ValueError(f"column {field.name!r} has Arrow type {t}, which has no {dialect} column type here")


def column_ddl(schema: pa.Schema, dialect: str) -> list[str]:
    return [f"{quote(f.name)} {sql_type(f, dialect)}" for f in schema]


def redshift_layout(schema: pa.Schema) -> str:
    # DISTKEY(symbol): indicators are window functions PARTITION BY symbol and dashboards join
    # prices to indicators on symbol, so both run slice-local with no redistribution. (A
    # universe smaller than the cluster's slice count leaves slices idle; fine at that size.)
    # COMPOUND SORTKEY(session, symbol): every load deletes one session window and most reads
    # are session ranges (lookbacks, "latest"), so zone maps on the leading session skip all
    # blocks outside it: a day's load costs the same with 20 years of history behind it.
    # Tables without symbol (dq_report) are small: DISTSTYLE AUTO lets Redshift copy them to
    # every node (ALL).
    names = set(schema.names)
    if {"symbol", "session"} <= names:
        return " DISTSTYLE KEY DISTKEY(symbol) COMPOUND SORTKEY(session, symbol)"
    return " DISTSTYLE AUTO SORTKEY(session)" if "session" in names else " DISTSTYLE AUTO"


def create_table_sql(table: str, schema: pa.Schema, dialect: str) -> list[str]:
    create = f"CREATE TABLE IF NOT EXISTS {quote(table)} ({', '.join(column_ddl(schema, dialect))})"
    if dialect == "redshift":
        return [create + redshift_layout(schema)]
    if dialect == "postgresql" and "session" in schema.names:
        # Without it every window delete scans the whole history.
        return [create, f"CREATE INDEX IF NOT EXISTS {quote(table + '_session_idx')} ON {quote(table)} (session)"]
    return [create]


def add_column_sql(table: str, field: pa.Field, dialect: str) -> str:
    return f"ALTER TABLE {quote(table)} ADD COLUMN {quote(field.name)} {sql_type(field, dialect)}"


def window_sql(first: dt.date, last: dt.date, symbols=None, scope: str | None = None) -> str:
    """The rows of a window: its sessions, and its symbols (or, for dq_report, its scope) when given.
    Symbols are validated (letters, digits, '.', '-'), so they can be quoted as literals."""
    where = f"session BETWEEN DATE '{first}' AND DATE '{last}'"
    if symbols is not None:
        if not symbols:
            raise ValueError("a window scoped to symbols needs at least one symbol")
        where += " AND symbol IN (" + ", ".join(f"'{validate_symbol(s)}'" for s in sorted(set(symbols))) + ")"
    if scope is not None:
        if not re.fullmatch(r"[A-Za-z0-9.,\-]+", scope):
            raise ValueError(f"invalid window scope {scope!r}")
        where += f" AND (scope = '{scope}'" + (" OR scope IS NULL)" if scope == "universe" else ")")
    return where


def window_delete_sql(table: str, first: dt.date, last: dt.date, symbols=None, scope: str | None = None) -> str:
    return f"DELETE FROM {quote(table)} WHERE {window_sql(first, last, symbols, scope)}"


def read_catalog(rows: list[tuple[str, str, str]]) -> tuple[dict[str, list[str]], set[str]]:
    """CATALOG_SQL rows -> ({base table: columns in order}, {view names})."""
    tables: dict[str, list[str]] = {}
    existing_views = set()
    for name, kind, column in rows:
        if kind == "VIEW":
            existing_views.add(name)
        else:
            tables.setdefault(name, []).append(column)
    return tables, existing_views


def plan_ddl(table: str, schema: pa.Schema, dialect: str, catalog: list[tuple[str, str, str]]) -> list[str]:
    """Statements that give `table` every column of `schema` and keep the views current."""
    tables, existing_views = read_catalog(catalog)
    if table not in tables:
        statements = create_table_sql(table, schema, dialect)
        tables[table] = list(schema.names)
    else:
        new = [f for f in schema if f.name not in tables[table]]
        statements = [add_column_sql(table, f, dialect) for f in new]
        tables[table] += [f.name for f in new]
    changed = {table} if statements else set()
    return statements + views.rebuild_sql(tables, existing_views, changed)
