"""Indicators left stale by a load that did not recompute them are recomputed (files dropped
into landing/incoming/ are defs/landing.py's)."""

import dagster as dg

from stock_assets.defs.common import RANGE_TAGS
from stock_assets.settings import Settings
from stock_assets.transforms.history import describe_sessions, stale_in_warehouse
from stock_assets.transforms.indicators import LOOKBACK_SESSIONS
from stock_assets.warehouse.io_manager import WarehouseResource

indicators_job = dg.define_asset_job(
    "indicators_job",
    selection=dg.AssetSelection.assets("indicators"),
    description="Indicators (and their lookback's later sessions) recomputed over a session range.",
)
IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


@dg.sensor(job=indicators_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
def stale_indicators_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    """Prices loaded without the indicators that depend on them (a run that selected the
    warehouse load only, or failed after it): one run recomputes the stale range. Waits while
    any run is in progress, since that run may be about to recompute them itself."""
    busy = context.instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS), limit=1)
    if busy:
        return dg.SkipReason(f"run {busy[0].run_id} is in progress")
    store = warehouse.get()
    stale = stale_in_warehouse(store, "indicators", LOOKBACK_SESSIONS)
    if not stale:
        return dg.SkipReason("indicators are current for every session with prices")
    first, last = str(stale[0]), str(stale[-1])
    newest_load = store.query("SELECT max(loaded_at) AS t FROM prices_loads")["t"][0].as_py()
    context.log.info(f"stale indicators: {describe_sessions(stale)}")
    return dg.RunRequest(
        # One request per state of the prices: a recomputation that fails is not retried until
        # prices load again (or by hand), rather than every few minutes.
        run_key=f"stale-indicators-{first}-{last}-{newest_load:%Y%m%dT%H%M%S%f}",
        tags=dict(zip(RANGE_TAGS, (first, last))),
    )


def build(settings: Settings) -> dg.Definitions:
    return dg.Definitions(sensors=[stale_indicators_sensor])
