"""`python -m stock_assets.cli live` (`make live`): one refresh of live_prices, run as a run of
the code location's live_prices_job (so the UI lists it with the schedule's), then what it did:
the session and its as-of time, rows, symbols not refreshed, freshness, where the rows are; or
why nothing was refreshed (no session in progress, another refresh holding the lock)."""

import sys

from stock_assets.settings import Settings
from stock_assets.warehouse.common import redact_url

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def refresh_command(settings: Settings) -> int:
    """0 when refreshed or rightly skipped, 1 when the refresh failed."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.execution.api import execute_run

    from stock_assets.cli import location_origin
    from stock_assets.definitions import build_defs
    from stock_assets.defs.live import SAID
    from stock_assets.instance import fail_dead_runs, prepare_instance, process_tags, stop_on_signals

    instance = prepare_instance()
    stop_on_signals(instance)
    fail_dead_runs(instance)
    job = build_defs(settings).resolve_job_def("live_prices_job")
    run = instance.create_run_for_job(job_def=job, run_config=QUIET, tags=process_tags(), remote_job_origin=location_origin(job.name))
    result = execute_run(InMemoryJob(job), run, instance)
    said = [r.user_message.removeprefix(SAID) for r in instance.all_logs(result.run_id) if r.user_message.startswith(SAID)]
    materialized = [e.step_materialization_data.materialization.metadata for e in result.get_asset_materialization_events()]
    if not result.success:
        failed = [e.step_failure_data for e in result.all_events if e.is_step_failure]
        errors = [(f.user_failure_data.description if f.user_failure_data else f.error.message).strip() for f in failed]
        print(f"stock_assets live: FAILED, run {result.run_id}", *(f"  {line}" for line in said + errors), sep="\n", file=sys.stderr)
        print("  what to do: docs/operations.md, 'A live refresh failed'", file=sys.stderr)
        return 1
    if not materialized:
        print(f"stock_assets live: nothing refreshed, run {result.run_id}", *(f"  {line}" for line in said), sep="\n")
        return 0
    meta = {k: v.value for k, v in materialized[0].items()}
    checks = [f"{c.check_name} {'passed' if c.passed else 'FAILED (WARN)'}" for c in result.get_asset_check_evaluations()]
    print("\n".join([
        f"stock_assets live: refreshed, run {result.run_id}",
        f"  session      {meta['session']}, as of {meta['as_of'].split(' ', 1)[1]}  ({meta['interval']} bars, provider={settings.provider})",
        f"  rows         {meta['dagster/row_count']}: {meta['intraday_bars']} intraday bars and a day so far for each of {meta['symbols']} symbols",
        f"  not refreshed {meta['not_refreshed']}",
        f"  checks       {'; '.join(checks) or 'none'}",
        f"  lake         {meta['lake_location']} (version {meta['lake_version']})",
        f"  warehouse    {redact_url(settings.warehouse_url)} table live_prices",
        f"  dashboard    {meta['dashboard']}",
    ]))  # fmt: skip
    return 0

