"""lake_repair_job: the UI's way to rebuild a damaged lake table (stock_assets/lake/repair.py),
the same as `python -m stock_assets.cli rebuild --table lake/<name>`. Launch it from the job's
Launchpad with the table in its config:

    ops:
      rebuild_lake_table:
        config:
          table: lake/deduped
"""

import datetime as dt

import dagster as dg
from pydantic import Field

from stock_assets.lake.io_manager import LakeResource
from stock_assets.lake.repair import TABLES, rebuild_table
from stock_assets.settings import Settings
from stock_assets.warehouse.io_manager import WarehouseResource


class RebuildConfig(dg.Config):
    table: str = Field(description=f"the lake table to move aside and rebuild: {', '.join(TABLES)}")


def build(settings: Settings) -> dg.Definitions:
    @dg.op
    def rebuild_lake_table(context: dg.OpExecutionContext, config: RebuildConfig, lake: LakeResource, warehouse: WarehouseResource) -> dg.Output[None]:
        """Move the table aside to lake/.damaged/ and write it again from landing/ or the warehouse."""
        storage = lake.storage()
        report = rebuild_table(storage, config.table, warehouse.get(lake=storage), dt.datetime.now(dt.UTC))
        context.log.info(f"rebuilt {report['uri']} from {report['source']}: {report['rows']} rows; damaged copy: {report['moved_to']}")
        return dg.Output(None, metadata={k: v if v is not None else "-" for k, v in report.items()})

    @dg.job(description="Rebuild a damaged lake table (config: table) from landing/ or the warehouse; the damaged one is moved to lake/.damaged/.")
    def lake_repair_job():
        rebuild_lake_table()

    return dg.Definitions(jobs=[lake_repair_job])
