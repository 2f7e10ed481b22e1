"""Runs started by Dagster's own `dagster asset materialize` (no command of ours around them), on
a real SQLite DAGSTER_HOME, with `raw_prices` held in the provider pool by a provider that does
not answer (the loopback fake): killed with SIGKILL, stopped with SIGTERM, and waited for by the
next run. The next run finds a dead one and fails it, waits for a live one at INFO and at most
STOCK_ASSETS_POOL_WAIT_SECONDS, and SIGTERM stops a run at once."""

import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration

from stock_assets.instance import fail_dead_runs
from stock_assets_tests.fake_api import Reply
from stock_assets_tests.test_cli import ROOT, environment
from stock_assets_tests.test_faults import MSFT_2019, pool_holders, wait_until

pytestmark = pytest.mark.slow

DAGSTER = Path(sys.executable).with_name("dagster")
POOL = "provider_alphavantage"


def materialize(select: str = "*") -> list[str]:
    return [str(DAGSTER), "asset", "materialize", "-m", "stock_assets.definitions", "--select", select, "--partition", "2019-06-03"]


def provider_env(home: Path, url: str, **extra: str) -> dict:
    return environment(home, STOCK_ASSETS_PROVIDER="alphavantage", ALPHAVANTAGE_API_KEY="k", ALPHAVANTAGE_BASE_URL=url,
                       ALPHAVANTAGE_REQUESTS_PER_MINUTE="6000", STOCK_ASSETS_SYMBOLS="MSFT", STOCK_ASSETS_START="2019-01-02", **extra)  # fmt: skip


def instance_at(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home / "dagster")))


def runs(home: Path) -> dict[str, tuple[dg.DagsterRunStatus, str]]:
    """run id -> (status, failure message and error) on the instance at home/dagster."""
    with instance_at(home) as instance:
        found = {}
        for run in instance.get_runs():
            failures = [e.dagster_event for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)]
            error = failures[-1].event_specific_data.error if failures and failures[-1].event_specific_data else None
            found[run.run_id] = (run.status, (failures[-1].message or "") + (error.message if error else "") if failures else "")
        return found


def logged(output: str, text: str) -> str:
    """The console log line that says `text`."""
    lines = [line for line in output.splitlines() if text in line]
    assert lines, f"no line says {text!r}:\n{output[-3000:]}"
    return lines[0]


def hold_the_pool(home: Path, env: dict) -> tuple[subprocess.Popen, str]:
    """A plain `dagster asset materialize` whose raw_prices holds the pool, waiting on the provider."""
    holder = subprocess.Popen(materialize(), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    held = wait_until(lambda: pool_holders(home, POOL), 90, "raw_prices claims the provider pool")
    return holder, held[0]


def test_a_killed_dagster_asset_materialize_is_failed_and_freed_by_the_next_one(tmp_path, fake_api):
    fake_api.route("/query", Reply(MSFT_2019, delay=60))
    env = provider_env(tmp_path, fake_api.url)
    killed, dead_run = hold_the_pool(tmp_path, env)
    killed.send_signal(signal.SIGKILL)
    killed.wait()

    fake_api.route("/query", Reply(MSFT_2019))  # the provider answers again; raw_prices is where the next one waited
    again = subprocess.run(materialize("raw_prices"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]
    assert " - INFO - " in logged(output, f"run {dead_run} was still marked running, but its process {killed.pid} is gone")
    assert pool_holders(tmp_path, POOL) == []
    found = runs(tmp_path)
    assert found[dead_run][0] == dg.DagsterRunStatus.FAILURE and f"its process {killed.pid} is gone" in found[dead_run][1]
    assert [status for run, (status, _) in found.items() if run != dead_run] == [dg.DagsterRunStatus.SUCCESS]


def test_a_live_holder_is_waited_for_at_info_and_at_most_the_pool_wait_and_sigterm_stops_it_at_once(tmp_path, fake_api):
    fake_api.route("/query", Reply(MSFT_2019, delay=60))
    env = provider_env(tmp_path, fake_api.url)
    holder, live_run = hold_the_pool(tmp_path, env)
    try:
        waiting = subprocess.run(materialize("raw_prices"), cwd=ROOT, env=env | {"STOCK_ASSETS_POOL_WAIT_SECONDS": "3"},
                                 capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        holder.send_signal(signal.SIGTERM)
        held, _ = holder.communicate(timeout=15)  # Dagster alone interrupts the step, which then retries
    finally:
        holder.kill()
    output = waiting.stdout + waiting.stderr
    assert waiting.returncode != 0, output[-3000:]
    assert " - INFO - " in logged(output, f"waiting for pool {POOL}: held by run(s) {live_run} (at most 3 s)")
    assert f"pool {POOL} is still held by run(s) {live_run} after 3 s" in output
    found = runs(tmp_path)
    waited = next(run for run in found if run != live_run)
    assert found[waited][0] == dg.DagsterRunStatus.FAILURE and "STOCK_ASSETS_POOL_WAIT_SECONDS" in found[waited][1]

    assert holder.returncode == 128 + signal.SIGTERM, held[-3000:]
    assert f"run {live_run} stopped by signal 15" in held
    assert found[live_run][0] == dg.DagsterRunStatus.FAILURE
    assert pool_holders(tmp_path, POOL) == []


def monitor(instance: dg.DagsterInstance) -> None:
    """One pass of the daemon's run monitoring (`make dev` runs it every poll_interval_seconds)."""
    import logging

    with WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as workspace:
        list(execute_run_monitoring_iteration(workspace, logging.getLogger("run monitoring")))


def test_the_daemons_run_monitoring_fails_a_run_whose_process_died(tmp_path, fake_api):
    """dagster.yaml's launcher tells run monitoring whether a run's process lives (Dagster's
    default launcher cannot): a dead run no longer stays "started", holding a place under
    max_concurrent_runs, while `make dev` is up and nothing else starts."""
    fake_api.route("/query", Reply(MSFT_2019, delay=60))
    holder, run_id = hold_the_pool(tmp_path, provider_env(tmp_path, fake_api.url))
    try:
        with instance_at(tmp_path) as instance:
            assert instance.run_monitoring_enabled
            monitor(instance)
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED  # alive: left alone
    finally:
        holder.kill()
        holder.communicate()
    with instance_at(tmp_path) as instance:
        monitor(instance)
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        said = []
        assert fail_dead_runs(instance, said.append) == []  # already failed; the slots it still held go
        assert said == [f"run {run_id} has ended but still held pool slots: freed"]
    assert f"its process {holder.pid} is gone" in runs(tmp_path)[run_id][1]
    assert pool_holders(tmp_path, POOL) == []
