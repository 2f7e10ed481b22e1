"""Lake: every landed bar typed in a Delta table (lake_parquet), then one bar per key (deduped_prices)."""

import dagster as dg
import pyarrow as pa

from stock_assets.defs.common import lake_asset, table_metadata, window_sessions
from stock_assets.settings import Settings
from stock_assets.transforms.dedup import dedupe_latest


def build(settings: Settings) -> dg.Definitions:
    @lake_asset(settings, "lake/prices", "lake", {"deltalake"})
    def lake_parquet(context: dg.AssetExecutionContext, landing_csv: pa.Table) -> dg.Output[pa.Table]:
        """Every landed bar, typed, in the Delta table lake/prices (partitioned by year)."""
        return dg.Output(landing_csv, metadata=table_metadata(context, landing_csv, window_sessions(context)))

    @lake_asset(settings, "lake/deduped", "lake", {"deltalake", "duckdb"})
    def deduped_prices(context: dg.AssetExecutionContext, lake_parquet: pa.Table) -> dg.Output[pa.Table]:
        """One bar per (symbol, interval, ts): the latest ingestion wins (Delta table lake/deduped)."""
        deduped = dedupe_latest(lake_parquet)
        metadata = table_metadata(context, deduped, window_sessions(context)) | {"duplicates_dropped": lake_parquet.num_rows - deduped.num_rows}
        return dg.Output(deduped, metadata=metadata)

    return dg.Definitions(assets=[lake_parquet, deduped_prices])
