"""The warehouse IO manager: an asset's table replaces its partition window in one transaction.

`metadata={"warehouse_table": ...}` names the table. An optional `lake_path` also keeps the
output in the lake as a Delta table (dq_report, indicators); `lake_source` says
where the lake already holds the asset's rows (redshift_table: lake/deduped). Redshift COPYs
from those files; the lake is written first so that they exist when it does. With
`log_loads`, every replaced session is also recorded in `<table>_loads` (rows, when, which
run): what the staleness of derived data is judged by (transforms/history.py).
"""

import datetime as dt

import dagster as dg
import pyarrow as pa

from stock_assets.full_disk import writing
from stock_assets.lake import layout
from stock_assets.lake.io_manager import LakeResource, stop_when_disk_full, window_scope, window_symbols
from stock_assets.lake.storage import LakeStorage
from stock_assets.transforms.history import loads_record
from stock_assets.warehouse.warehouse import Warehouse, warehouse_for_url


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse (STOCK_ASSETS_WAREHOUSE_URL): duckdb:///path by default, postgresql://, redshift://."""

    url: str
    redshift_iam_role: str | None = None  # STOCK_ASSETS_REDSHIFT_IAM_ROLE, for COPY from S3
    lock_timeout_seconds: float = 60.0  # STOCK_ASSETS_WAREHOUSE_LOCK_TIMEOUT_SECONDS
    statement_timeout_seconds: float = 3600.0  # STOCK_ASSETS_WAREHOUSE_STATEMENT_TIMEOUT_SECONDS

    def get(self, lake: LakeStorage | None = None) -> Warehouse:
        return warehouse_for_url(self.url, lake=lake, redshift_iam_role=self.redshift_iam_role,
                                 lock_timeout_seconds=self.lock_timeout_seconds,
                                 statement_timeout_seconds=self.statement_timeout_seconds)


def store_window(warehouse: Warehouse, storage: LakeStorage, spec: dict, data: pa.Table, sessions: list[dt.date], run_id: str,
                 symbols=None, scope: str | None = None) -> dict:  # fmt: skip
    """Replace the window's sessions of `spec["warehouse_table"]` (and of its lake copy) with
    `data`: the asset's definition metadata says where. With `symbols` (and `scope`, for a table
    without symbols: dq_report) only the window's rows are replaced (stock_assets.window).
    Returns the output metadata."""
    table = spec["warehouse_table"]
    metadata = {"warehouse_table": table}
    source = spec.get("lake_source")
    rows_of = {"symbols": symbols} if "symbol" in data.column_names else {"scope": scope if "scope" in data.column_names else None}
    if lake_path := spec.get("lake_path"):
        layout.write_sessions(storage, lake_path, data, sessions, **rows_of)
        metadata["lake_location"] = dg.MetadataValue.path(storage.uri(lake_path))
        source = lake_path
    with writing("warehouse", warehouse.describe()):
        metadata["rows_loaded"] = warehouse.replace_window(table, data, sessions[0], sessions[-1], lake_prefix=source, **rows_of)
        if spec.get("log_loads"):
            held = data if symbols is None else warehouse.query(f'SELECT session FROM "{table}" WHERE session BETWEEN ? AND ?', [sessions[0], sessions[-1]])
            record = loads_record(held, sessions, dt.datetime.now(dt.UTC), run_id)  # rows the sessions hold now, every symbol's
            warehouse.replace_window(f"{table}_loads", record, sessions[0], sessions[-1])
    metadata["warehouse"] = warehouse.describe()
    return metadata


class WarehouseIOManager(dg.ConfigurableIOManager):
    warehouse: WarehouseResource
    lake: LakeResource
    universe: list[str] = []  # STOCK_ASSETS_SYMBOLS: a window's symbols unless its run names others

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        sessions = [dt.date.fromisoformat(k) for k in context.asset_partition_keys]
        storage = self.lake.storage()
        warehouse = self.warehouse.get(lake=storage)
        with stop_when_disk_full():
            symbols = window_symbols(context, self.universe)
            scope = window_scope(context) if symbols is not None else None
            metadata = store_window(warehouse, storage, context.definition_metadata, obj, sessions, context.run_id, symbols, scope)
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext):
        table = context.upstream_output.definition_metadata["warehouse_table"]
        sessions = [dt.date.fromisoformat(k) for k in context.asset_partition_keys]
        return self.warehouse.get().query(
            f'SELECT * FROM "{table}" WHERE session BETWEEN ? AND ? ORDER BY session', [sessions[0], sessions[-1]]
        )
