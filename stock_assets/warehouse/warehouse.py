"""The warehouse, chosen by STOCK_ASSETS_WAREHOUSE_URL; the dialect differences live in this package.

    duckdb:///path              embedded DuckDB file (default)           duckdb_engine.py
    postgresql://user@host/db   PostgreSQL, COPY FROM STDIN              postgres.py
    redshift://user@host:5439/db  Redshift, COPY from the S3 lake        redshift.py
    table DDL and views for each dialect                                 ddl.py, views.py

Every engine offers the same four methods: `replace_window(table, data, first, last)` makes
the table hold exactly `data` for those sessions in one transaction (a reader sees the old
rows or the new, never none) and raises WarehouseLoadError naming the window otherwise;
`query(sql, params)` with `?` placeholders; `table_exists(table)`; `describe()` (no password).

No engine waits unboundedly for someone else: a DuckDB file another process has open, or a
PostgreSQL table lock, is waited for `lock_timeout_seconds`, then WarehouseLockedError (a
WarehouseConnectionError) names what was locked, by whom when known, and what to do.
"""

from pathlib import Path
from urllib.parse import urlsplit

from stock_assets.lake.storage import LakeStorage
from stock_assets.warehouse.common import WarehouseConnectionError, WarehouseLoadError, WarehouseLockedError, redact_url
from stock_assets.warehouse.duckdb_engine import DuckDBWarehouse
from stock_assets.warehouse.postgres import PostgresWarehouse
from stock_assets.warehouse.redshift import RedshiftWarehouse

__all__ = ["DuckDBWarehouse", "PostgresWarehouse", "RedshiftWarehouse", "Warehouse", "WarehouseConnectionError",
           "WarehouseLoadError", "WarehouseLockedError", "warehouse_for_url"]

Warehouse = DuckDBWarehouse | PostgresWarehouse | RedshiftWarehouse


def warehouse_for_url(url: str, lake: LakeStorage | None = None, redshift_iam_role: str | None = None,
                      lock_timeout_seconds: float = 60.0, statement_timeout_seconds: float = 3600.0) -> Warehouse:
    """The engine for `url`. Redshift also needs the S3 lake it COPYs from and an IAM role.
    DuckDB has no statement timeout; Redshift no lock timeout (see redshift.py)."""
    scheme = urlsplit(url).scheme
    timeouts = {"lock_timeout_seconds": lock_timeout_seconds, "statement_timeout_seconds": statement_timeout_seconds}
    if scheme == "duckdb":  # duckdb:///abs or duckdb://relative
        return DuckDBWarehouse(Path(url.removeprefix("duckdb://")), lock_timeout_seconds=lock_timeout_seconds)
    if scheme in ("postgresql", "postgres"):
        return PostgresWarehouse(url, **timeouts)
    if scheme == "redshift":
        return RedshiftWarehouse(url, lake=lake, iam_role=redshift_iam_role, **timeouts)
    raise ValueError(
        f"unsupported warehouse URL scheme {scheme!r} in {redact_url(url)}: "
        "use duckdb:///path, postgresql://user@host:5432/db or redshift://user@host:5439/db"
    )
