"""Live: the session in progress, refreshed every few minutes during market hours (stock_assets/live.py).

Not part of the daily run (daily_prices_job leaves group `live` out). Its runs never queue:
the schedule skips a tick while a live run is queued or running, or that it evaluates late, and
two refreshes started at once end as one (stock_assets/live_lock.py: the second skips, saying
who holds the lock). They take no pool, so they never hold the daily run's provider pool
(`provider_<name>`); the provider's request budget and rate limit are still shared with it.
"""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pyarrow.compute as pc

from stock_assets import clock
from stock_assets.calendar import NY
from stock_assets.defs.common import RANGE_TAGS, warehouse_kind
from stock_assets.lake.io_manager import LakeResource
from stock_assets.live import (
    LAKE_PATH,
    LIVE_SCHEMA,
    TABLE,
    fetch_live,
    live_delay,
    session_in_progress,
    store_live,
    with_previous,
)
from stock_assets.live_lock import refresh_lock
from stock_assets.live_schedule import freshness, newest_as_of, refresh_due, schedule_crons
from stock_assets.providers.resource import MissingSettingError, ProviderResource
from stock_assets.reports.dashboard import render_dashboard
from stock_assets.reports.resource import ReportsResource
from stock_assets.settings import Settings
from stock_assets.warehouse.io_manager import WarehouseResource

IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
KEY = dg.AssetKey("live_prices")
COLUMNS = dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in LIVE_SCHEMA])
SAID = "live_prices: "  # how the refresh's own lines begin in its run's log (the CLI prints them)


def _fresh_result(settings: Settings, store, delay: dt.timedelta) -> dg.AssetCheckResult:
    now = clock.now()
    found = session_in_progress(now)
    newest = newest_as_of(store, found[0]) if found else {}
    judged = freshness(newest, settings.symbols, now, settings.live_refresh_minutes, delay)
    metadata = {
        "summary": judged.summary,
        "oldest_as_of": judged.oldest_as_of.isoformat() if judged.oldest_as_of else "none",
        "age_minutes": round((now - judged.oldest_as_of).total_seconds() / 60, 1) if judged.oldest_as_of else "none",
        "stale_symbols": ", ".join(judged.stale) or "none",
        "market_open": judged.in_session,
    }
    return dg.AssetCheckResult(passed=judged.passed, severity=dg.AssetCheckSeverity.WARN, metadata=metadata, asset_key=KEY)


def _delay(provider: ProviderResource) -> dt.timedelta:
    """The provider's feed delay, for the freshness allowed; 0 when its client cannot be made (the
    refresh itself then fails, naming the missing setting)."""
    try:
        return live_delay(provider.client())
    except (MissingSettingError, ValueError):
        return dt.timedelta(0)


def _redraw(context: dg.AssetExecutionContext, store, reports: ReportsResource, interval: str) -> str:
    """The dashboard drawn again with today so far: its path, or why it was not."""
    if not store.table_exists("prices"):
        return "not drawn: no history loaded yet (make run)"
    try:
        return str(render_dashboard(store, reports.path("dashboard.html"), interval=interval).path)
    except Exception as err:  # noqa: BLE001 - the rows are stored and the page keeps its last version: said, not fatal
        context.log.warning(f"{SAID}the dashboard was not redrawn: {type(err).__name__}: {err}")
        return f"not redrawn: {type(err).__name__}: {err}"


def build(settings: Settings) -> dg.Definitions:
    @dg.asset(
        group_name="live",
        kinds={"python", "deltalake", warehouse_kind(settings)},
        output_required=False,  # skipped (another refresh holds the lock, no session in progress): nothing written
        backfill_policy=dg.BackfillPolicy.single_run(),  # unpartitioned: a range's backfill runs it once
        metadata={"dagster/table_name": TABLE, "lake_path": LAKE_PATH, "dagster/column_schema": COLUMNS},
    )
    def live_prices(context: dg.AssetExecutionContext, provider: dg.ResourceParam[ProviderResource], lake: LakeResource,
                    warehouse: WarehouseResource, reports: ReportsResource):  # fmt: skip
        """The session in progress, per symbol: its intraday bars so far at STOCK_ASSETS_LIVE_INTERVAL
        and a partial daily bar (`1d`) built from them, each row with the refresh's `as_of`.
        Replaced whole on each refresh (warehouse `live_prices`, lake/live_prices); the daily run
        removes a session's rows once its final bars load."""
        if windowed := [t for t in (*RANGE_TAGS, "dagster/partition") if t in context.run.tags]:
            context.log.info(f"{SAID}skipped: a run of session partitions ({windowed[0]}) does not refresh the session in progress; "
                             "live_prices_job (live_session_schedule, make live) does")  # fmt: skip
            return
        now = clock.now()
        with refresh_lock(settings.home, now) as holder:
            if holder:
                context.log.info(f"{SAID}skipped: another refresh is in progress ({holder}); its rows will be the newest")
                return
            try:
                client = provider.client()
            except MissingSettingError as err:
                raise dg.Failure(f"{SAID}{err}", allow_retries=False) from None
            fetched = fetch_live(client, settings.symbols, settings.live_interval, now)
            if fetched.session is None:
                context.log.info(SAID + "; ".join(fetched.notes))
                return
            for symbol, why in fetched.failures.items():
                context.log.warning(f"{SAID}{symbol} not refreshed: {why}")
            if set(fetched.failures) >= set(settings.symbols):
                raise dg.Failure(f"{SAID}no symbol could be refreshed for {fetched.session}: "
                                 + "; ".join(f"{s}: {w}" for s, w in fetched.failures.items()), allow_retries=False)  # fmt: skip
            store = warehouse.get(lake=lake.storage())
            rows = with_previous(store, fetched)
            version = store_live(lake.storage(), store, rows)
        as_of = fetched.as_of.astimezone(ZoneInfo(NY))
        intraday = rows.filter(pc.not_equal(rows["interval"], "1d"))
        context.log.info(f"{SAID}{fetched.session} as of {as_of:%H:%M} New York: {intraday.num_rows} {settings.live_interval} bars "
                         f"of {len(set(rows['symbol'].to_pylist()))} symbols")  # fmt: skip
        page = _redraw(context, store, reports, settings.interval)
        yield dg.MaterializeResult(
            metadata={
                "session": str(fetched.session),
                "as_of": f"{as_of:%Y-%m-%d %H:%M} New York",
                "interval": settings.live_interval,
                "dagster/row_count": rows.num_rows,
                "intraday_bars": intraday.num_rows,
                "symbols": len(set(rows["symbol"].to_pylist())),
                "not_refreshed": ", ".join(sorted(fetched.failures)) or "none",
                "lake_version": version,
                "lake_location": dg.MetadataValue.path(lake.storage().uri(LAKE_PATH)),
                "warehouse": store.describe(),
                "dashboard": page,
            }
        )

    @dg.asset_check(asset=live_prices, description="During market hours (NYSE sessions, early closes included), every symbol's live rows are at most STOCK_ASSETS_LIVE_REFRESH_MINUTES + the feed's delay + 5 minutes old.")
    def live_prices_fresh(provider: dg.ResourceParam[ProviderResource], warehouse: WarehouseResource) -> dg.AssetCheckResult:
        return _fresh_result(settings, warehouse.get(), _delay(provider))

    live_prices_job = dg.define_asset_job(
        "live_prices_job",
        selection=dg.AssetSelection.assets(live_prices),
        description="One refresh of live_prices (the session in progress) and its freshness check.",
    )

    @dg.schedule(job=live_prices_job, cron_schedule=schedule_crons(settings.live_refresh_minutes), execution_timezone=NY,
                 default_status=dg.DefaultScheduleStatus.RUNNING)  # fmt: skip
    def live_session_schedule(context: dg.ScheduleEvaluationContext):
        """Every STOCK_ASSETS_LIVE_REFRESH_MINUTES from the open to the close of each NYSE session
        (the last tick at the close, an early one too). A tick is skipped, never queued, while a
        live run is queued or running, or when it is evaluated later than one period after its time."""
        at = context.scheduled_execution_time
        if why := refresh_due(at, settings.live_refresh_minutes):
            return dg.SkipReason(why)
        late = clock.now() - at
        if late > dt.timedelta(minutes=settings.live_refresh_minutes):
            return dg.SkipReason(f"the tick of {at:%Y-%m-%d %H:%M %Z} is evaluated {late.total_seconds() / 60:.0f} minutes late: skipped; the next one refreshes")
        busy = context.instance.get_runs(dg.RunsFilter(job_name=live_prices_job.name, statuses=IN_PROGRESS), limit=1)
        if busy:
            return dg.SkipReason(f"live run {busy[0].run_id} is still {busy[0].status.value.lower()}: this tick is skipped, not queued")
        return dg.RunRequest(run_key=f"live-{at.isoformat()}")

    @dg.sensor(minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
    def live_prices_freshness_sensor(context: dg.SensorEvaluationContext, provider: dg.ResourceParam[ProviderResource], warehouse: WarehouseResource):
        """Reports live_prices_fresh every few minutes during market hours (no run), and once when
        the market closes, so the UI shows how fresh live_prices is while it matters."""
        result = _fresh_result(settings, warehouse.get(), _delay(provider))
        market_open = result.metadata["market_open"].value
        if not market_open and context.cursor == "closed":
            return dg.SkipReason("no NYSE session in progress: nothing to be fresh for")
        evaluation = dg.AssetCheckEvaluation(asset_key=KEY, check_name="live_prices_fresh", passed=result.passed,
                                             metadata=result.metadata, severity=result.severity)  # fmt: skip
        return dg.SensorResult(asset_events=[evaluation], cursor="open" if market_open else "closed")

    return dg.Definitions(assets=[live_prices], asset_checks=[live_prices_fresh], jobs=[live_prices_job],
                          schedules=[live_session_schedule], sensors=[live_prices_freshness_sensor])  # fmt: skip
