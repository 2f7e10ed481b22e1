"""The daily run: every NYSE session at 18:30 New York time, that session's partition.

Not build_schedule_from_partitioned_job: for partitions on a custom cron (weekdays at
midnight, holidays excluded) it accepts no hour or minute, so it would run at midnight."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from stock_assets.calendar import NY, is_session
from stock_assets.settings import Settings

daily_prices_job = dg.define_asset_job(
    "daily_prices_job",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("live"),  # live_prices has runs of its own (defs/live.py)
    description="The whole graph for one session (the schedule) or a range (backfills); live_prices is not in it.",
)


@dg.schedule(job=daily_prices_job, cron_schedule="30 18 * * 1-5", execution_timezone=NY, default_status=dg.DefaultScheduleStatus.RUNNING)
def daily_prices_job_schedule(context: dg.ScheduleEvaluationContext):
    """After the close (and after an early close), load the day's session; skip holidays."""
    day: dt.date = context.scheduled_execution_time.astimezone(ZoneInfo(NY)).date()
    if not is_session(day):
        return dg.SkipReason(f"{day} is not an NYSE session (exchange holiday)")
    return dg.RunRequest(run_key=str(day), partition_key=str(day))


def build(settings: Settings) -> dg.Definitions:
    return dg.Definitions(schedules=[daily_prices_job_schedule])
