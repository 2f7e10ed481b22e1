"""The daily run: every NYSE session at 18:30 New York time, that session's partition."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd

from stock_assets.partitions import NY, SETTINGS_START, nyse_calendar

daily_prices_job = dg.define_asset_job(
    "daily_prices_job",
    selection=dg.AssetSelection.all(),
    description="The whole graph for one session (the schedule) or a range (backfills).",
)


@dg.schedule(
    job=daily_prices_job,
    cron_schedule="30 18 * * 1-5",
    execution_timezone=NY,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def daily_prices_job_schedule(context: dg.ScheduleEvaluationContext):
    """After the close (and after an early close), load the day's session; skip holidays."""
    day: dt.date = context.scheduled_execution_time.astimezone(ZoneInfo(NY)).date()
    if not nyse_calendar(SETTINGS_START).is_session(pd.Timestamp(day)):
        return dg.SkipReason(f"{day} is not an NYSE session (exchange holiday)")
    return dg.RunRequest(run_key=str(day), partition_key=str(day))
