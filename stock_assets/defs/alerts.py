"""Alert sensor: a failed run, and every ERROR asset check that failed it, become Slack messages.
Every ERROR check blocks, so a failed one always fails its run: this one sensor sees them all.

Both read the finished run's own events, which works on every event-log storage (SQLite
shards events per run)."""

import dagster as dg

from stock_assets.alerts import AlertsResource, cause_text, partitions_of
from stock_assets.settings import Settings

MAX_STEPS = 5  # steps whose error an alert quotes: the run's page has them all
# Dagster's own errors around the step's: what the step raised is their cause.
WRAPPERS = ("Dagster", "RetryRequested")


def failed_error_checks(instance: dg.DagsterInstance, run_id: str) -> list:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    evaluations = [r.dagster_event.event_specific_data for r in records]
    return [e for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]


def step_causes(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Each failed step's own error, "step: message": under Dagster's wrappers ("Exceeded
    max_retries", "Error occurred while executing op"), without its traceback, secrets masked."""
    said = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)[:MAX_STEPS]:
        error = record.dagster_event.step_failure_data.error
        while error.cause is not None and (error.cls_name or "").startswith(WRAPPERS):
            error = error.cause
        said.append(f"{record.dagster_event.step_key}: {cause_text(error.message)}")
    return said


def check_message(alerts: AlertsResource, evaluation, run_id: str) -> str:
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    return (
        f":warning: stock_assets check `{evaluation.check_name}` failed (ERROR) on `{evaluation.asset_key.to_user_string()}`, "
        f"sessions {meta.get('window', '?')}: {meta.get('failing_rows', '?')} failing rows in {meta.get('failing_sessions', '?')} sessions; "
        f"sample {meta.get('sample', 'none')}\n{alerts.run_link(run_id)}"
    )


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, alerts: AlertsResource):
    """Posts every failed run (job, sessions, error, link), then each ERROR check it failed."""
    run = context.dagster_run
    error = "\n".join([(context.failure_event.message or "no message")[:300], *step_causes(context.instance, run.run_id)])
    alerts.send(f":red_circle: stock_assets run failed: job `{run.job_name}`, sessions {partitions_of(run.tags)}\n{error}\n{alerts.run_link(run.run_id)}")
    for evaluation in failed_error_checks(context.instance, run.run_id):
        alerts.send(check_message(alerts, evaluation, run.run_id))


def build(settings: Settings) -> dg.Definitions:
    return dg.Definitions(sensors=[run_failure_alert_sensor])
