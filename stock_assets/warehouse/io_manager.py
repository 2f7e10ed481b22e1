"""The warehouse IO manager: an asset's table replaces its partition window in one transaction.

`metadata={"warehouse_table": ...}` names the table; an optional `lake_path` also keeps
the output in the lake as Hive-partitioned Parquet (dq_report, indicators).
"""

import datetime as dt

import dagster as dg

from stock_assets.lake import layout
from stock_assets.lake.io_manager import LakeResource
from stock_assets.warehouse.warehouse import DuckDBWarehouse, warehouse_for_url


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse (STOCK_ASSETS_WAREHOUSE_URL): duckdb:///path by default."""

    url: str

    def get(self) -> DuckDBWarehouse:
        return warehouse_for_url(self.url)


class WarehouseIOManager(dg.ConfigurableIOManager):
    warehouse: WarehouseResource
    lake: LakeResource

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        table = context.definition_metadata["warehouse_table"]
        sessions = [dt.date.fromisoformat(k) for k in context.asset_partition_keys]
        rows = self.warehouse.get().replace_window(table, obj, sessions[0], sessions[-1])
        metadata = {"warehouse_table": table, "rows_loaded": rows}
        if lake_path := context.definition_metadata.get("lake_path"):
            storage = self.lake.storage()
            layout.write_sessions(storage, lake_path, obj, sessions)
            metadata["lake_location"] = dg.MetadataValue.path(storage.uri(lake_path))
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext):
        table = context.upstream_output.definition_metadata["warehouse_table"]
        sessions = [dt.date.fromisoformat(k) for k in context.asset_partition_keys]
        return self.warehouse.get().query(
            f'SELECT * FROM "{table}" WHERE session BETWEEN ? AND ? ORDER BY session', [sessions[0], sessions[-1]]
        )
