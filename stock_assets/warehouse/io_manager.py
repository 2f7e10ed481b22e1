"""The warehouse IO manager: an asset's table replaces its partition window in one transaction.

`metadata={"warehouse_table": ...}` names the table. An optional `lake_path` also keeps the
output in the lake as Hive-partitioned Parquet (dq_report, indicators); `lake_source` says
where the lake already holds the asset's rows (redshift_table: lake/deduped). Redshift COPYs
from those files; the lake is written first so that they exist when it does.
"""

import datetime as dt

import dagster as dg

from stock_assets.lake import layout
from stock_assets.lake.io_manager import LakeResource
from stock_assets.lake.storage import LakeStorage
from stock_assets.warehouse.warehouse import Warehouse, warehouse_for_url


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse (STOCK_ASSETS_WAREHOUSE_URL): duckdb:///path by default, postgresql://, redshift://."""

    url: str
    redshift_iam_role: str | None = None  # STOCK_ASSETS_REDSHIFT_IAM_ROLE, for COPY from S3

    def get(self, lake: LakeStorage | None = None) -> Warehouse:
        return warehouse_for_url(self.url, lake=lake, redshift_iam_role=self.redshift_iam_role)


class WarehouseIOManager(dg.ConfigurableIOManager):
    warehouse: WarehouseResource
    lake: LakeResource

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        table = context.definition_metadata["warehouse_table"]
        sessions = [dt.date.fromisoformat(k) for k in context.asset_partition_keys]
        storage = self.lake.storage()
        metadata = {"warehouse_table": table}
        source = context.definition_metadata.get("lake_source")
        if lake_path := context.definition_metadata.get("lake_path"):
            layout.write_sessions(storage, lake_path, obj, sessions)
            metadata["lake_location"] = dg.MetadataValue.path(storage.uri(lake_path))
            source = lake_path
        warehouse = self.warehouse.get(lake=storage)
        metadata["rows_loaded"] = warehouse.replace_window(table, obj, sessions[0], sessions[-1], lake_prefix=source)
        metadata["warehouse"] = warehouse.describe()
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext):
        table = context.upstream_output.definition_metadata["warehouse_table"]
        sessions = [dt.date.fromisoformat(k) for k in context.asset_partition_keys]
        return self.warehouse.get().query(
            f'SELECT * FROM "{table}" WHERE session BETWEEN ? AND ? ORDER BY session', [sessions[0], sessions[-1]]
        )
