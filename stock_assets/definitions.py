"""The code location: every definition under stock_assets/defs, built from one Settings.

Resource keys are the same everywhere; which lake, warehouse and provider they reach, the
partitions' first session, the provider pool and the retry policy all come from the Settings
passed to build_defs. The environment is read once, when Dagster loads `defs`.
"""

import warnings

import dagster as dg

# Dagster marks `backfill_policy` (Beta) and a few other APIs (Preview) as not yet stable. The
# project pins Dagster's version and its tests cover what it uses, so the notices are for us,
# not for the people running our commands.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from stock_assets.alerts import AlertsResource
from stock_assets.defs import (
    actions,
    alerts,
    analytics,
    ingest,
    lake,
    landing,
    live,
    maintenance,
    publish,
    quality,
    repair,
    schedules,
    sensors,
    warehouse,
)
from stock_assets.instance import in_process_executor
from stock_assets.lake.io_manager import LakeIOManager, LakeResource
from stock_assets.providers.resource import provider_resource
from stock_assets.reports.resource import ReportsResource
from stock_assets.settings import Settings
from stock_assets.warehouse.io_manager import WarehouseIOManager, WarehouseResource

LOCATION_NAME = "stock_assets"  # workspace.yaml, deploy/workspace.yaml and pyproject.toml name it so


def resources_for(settings: Settings) -> dict:
    lake = LakeResource(url=settings.lake_url)
    warehouse = WarehouseResource(
        url=dg.EnvVar("STOCK_ASSETS_WAREHOUSE_URL") if settings.warehouse_url_from_env else settings.warehouse_url,
        redshift_iam_role=settings.redshift_iam_role,
        lock_timeout_seconds=settings.warehouse_lock_timeout_seconds,
        statement_timeout_seconds=settings.warehouse_statement_timeout_seconds,
    )
    return {
        "lake": lake,
        "warehouse": warehouse,
        "lake_io_manager": LakeIOManager(lake=lake, universe=list(settings.symbols)),
        "warehouse_io_manager": WarehouseIOManager(warehouse=warehouse, lake=lake, universe=list(settings.symbols)),
        "provider": provider_resource(settings),
        "reports": ReportsResource(directory=str(settings.home / "reports")),
        "alerts": AlertsResource(
            slack_webhook_url=dg.EnvVar("STOCK_ASSETS_SLACK_WEBHOOK_URL") if settings.slack_webhook_set else None,
            ui_url=settings.ui_url,
        ),
    }


MODULES = (ingest, lake, actions, quality, publish, warehouse, analytics, schedules, sensors, landing, maintenance, repair, alerts, live)


def build_defs(settings: Settings) -> dg.Definitions:
    # In process: a daily run must not pay a process spawn per step, and the embedded
    # DuckDB file takes one writer at a time. Each run first fails the runs that died and waits
    # for its pool, bounded and said (stock_assets.instance).
    return dg.Definitions.merge(
        *(module.build(settings) for module in MODULES),
        dg.Definitions(resources=resources_for(settings), executor=in_process_executor(settings.pool_wait_seconds)),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What Dagster loads (workspace.yaml, `dagster dev`, the gRPC server): settings from the environment."""
    return build_defs(Settings.from_env())
