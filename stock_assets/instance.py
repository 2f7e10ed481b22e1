"""The local Dagster instance, made safe for every way a run is started by hand.

- Initialised once: two first commands at once on a new DAGSTER_HOME would each create the
  SQLite storage and leave two schema heads; creation happens under a file lock.
- Runs whose process died are recognised: every run records its host and process id; one still
  marked as running whose process is gone (killed, crashed) is marked failed and the pool slots
  it held are freed, so the next run does not wait on a ghost.
- A pool wait is bounded and said: a run waits at most `wait_seconds` for a slot a live run
  holds, saying at INFO which run holds it, then fails with a named error.
- SIGTERM stops a run at once: it is marked failed and its pool slots are freed.

Every run of the code location does the last three first, in its own process, however it was
started (`make run`, `dagster asset materialize`, the UI, the schedule): the location's executor
is `in_process_executor` below. `python -m stock_assets.instance` (`make instance`, `make dev`)
fails dead runs too, and our commands wait for the pool before they start a run.
"""

import fcntl
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

PID_TAG, HOST_TAG = "stock_assets/pid", "stock_assets/host"
RUNNING = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
_stopping: set[int] = set()  # the signals that stop this process (stop_on_signals)


class PoolBusyError(RuntimeError):
    pass


def process_tags() -> dict[str, str]:
    """Tags that let a later command tell whether this process still runs the run."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def prepare_instance(home: str | None = None) -> dg.DagsterInstance:
    """The instance at DAGSTER_HOME, its storage created under an exclusive file lock."""
    root = Path(home or os.environ.get("DAGSTER_HOME") or ".stock_assets/dagster").resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(root)
    with open(root / ".init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = dg.DagsterInstance.get()
        instance.get_runs_count()  # the run, event log and schedule storages exist from here on
        instance.event_log_storage.get_concurrency_keys()
        instance.schedule_storage.all_instigator_state()
    return instance


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[str | None, str | None]:
    """(pid, host) of the process running `run`: every run of the location tags it; a run started
    otherwise on a local (SQLite) instance ran in the process that logged its RUN_START, here."""
    if PID_TAG in run.tags:
        return run.tags[PID_TAG], run.tags.get(HOST_TAG)
    if "sqlite" not in type(instance.run_storage).__name__.lower():
        return None, None  # shared storage: the run may live on another machine
    started = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
    pid = started[0].dagster_event.pid if started and started[0].dagster_event else None
    return (str(pid), socket.gethostname()) if pid else (None, None)


def fail_dead_runs(instance: dg.DagsterInstance, say: Callable[[str], None] = print) -> list[str]:
    """Mark failed every run started on this host whose process is gone, and free its pool slots;
    free too the slots still held by runs that ended (or were deleted). Returns the failed runs."""
    failed = []
    for run in instance.get_runs(dg.RunsFilter(statuses=RUNNING)):
        pid, host = _run_process(instance, run)
        if not pid or host != socket.gethostname() or _alive(int(pid)):
            continue
        message = f"run {run.run_id} was still marked running, but its process {pid} is gone (killed or crashed): marked failed, its pool slots freed"
        instance.report_run_failed(run, message)
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        say(message)
        failed.append(run.run_id)
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        holding = storage.get_concurrency_run_ids()
        live = [*RUNNING, dg.DagsterRunStatus.CANCELING]
        ended = holding - {r.run_id for r in instance.get_runs(dg.RunsFilter(run_ids=list(holding), statuses=live))} if holding else set()
        for run_id in sorted(ended):
            storage.free_concurrency_slots_for_run(run_id)
            say(f"run {run_id} has ended but still held pool slots: freed")
    return failed


def stop_this_process(instance: dg.DagsterInstance, signum: int) -> None:
    """Fail the runs this process is running, free their pool slots, and exit (a signal handler)."""
    for run in instance.get_runs(dg.RunsFilter(statuses=RUNNING, tags={PID_TAG: str(os.getpid())})):
        instance.report_run_failed(run, f"run {run.run_id} stopped by signal {signum}: marked failed, its pool slots freed")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        print(f"stock_assets: run {run.run_id} stopped by signal {signum}", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def stop_on_signals(instance: dg.DagsterInstance, signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """SIGTERM (kill, docker stop, a scheduler's timeout), and Ctrl-C for our commands, stop the
    process at once, even inside a provider request. During a run Dagster's own handlers take the
    signals and only interrupt the step (whose retry policy then waits to try again), so the
    signal is also written to a pipe (signal.set_wakeup_fd, whatever Python handler is installed)
    that a watcher thread reads. Writes are atomic (lake) or transactional (warehouse): nothing
    half-written is left visible. Only the main thread can install handlers; a second call adds
    its signals to the first's."""
    if threading.current_thread() is not threading.main_thread():
        return
    first = not _stopping
    _stopping.update(signums)
    if signal.SIGTERM in signums:
        signal.signal(signal.SIGTERM, lambda signum, _: stop_this_process(instance, signum))
    if not first:
        return
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write)

    def watch() -> None:
        while True:
            for signum in os.read(read, 64):
                if signum in _stopping:
                    stop_this_process(instance, signum)

    threading.Thread(target=watch, name="stock_assets-signals", daemon=True).start()


def _holders(instance: dg.DagsterInstance, pool: str) -> str:
    slots = instance.event_log_storage.get_concurrency_info(pool).claimed_slots
    return ", ".join(sorted({slot.run_id for slot in slots})) or "no run (queued behind others)"


def _busy(pool: str, holders: str, wait_seconds: float) -> PoolBusyError:
    return PoolBusyError(
        f"pool {pool} is still held by run(s) {holders} after {wait_seconds:.0f} s; wait for them, "
        f"or if they are gone: dagster run delete <run id> (or raise STOCK_ASSETS_POOL_WAIT_SECONDS)"
    )


def wait_for_pool(instance: dg.DagsterInstance, pool: str, wait_seconds: float, say: Callable[[str], None] = print, poll: float = 2.0) -> None:
    """Return once `pool` has a free slot; say what holds it meanwhile; PoolBusyError after `wait_seconds`."""
    deadline, said = time.monotonic() + wait_seconds, False
    while True:
        info = instance.event_log_storage.get_concurrency_info(pool)
        if info.slot_count == 0 or len(info.claimed_slots) < info.slot_count:
            return
        if time.monotonic() >= deadline:
            raise _busy(pool, _holders(instance, pool), wait_seconds)
        if not said:
            say(f"waiting for pool {pool}: held by run(s) {_holders(instance, pool)} (at most {wait_seconds:.0f} s)")
            said = True
        time.sleep(poll)
        fail_dead_runs(instance, say)


def claim_pool(instance: dg.DagsterInstance, run_id: str, step_key: str, pool: str, wait_seconds: float, say: Callable[[str], None], poll: float = 1.0) -> None:
    """Claim `step_key`'s slot in `pool` for the run, as Dagster's executor would just before the
    step (it then finds the slot already claimed), but failing the holders that died as it
    waits, saying which run holds the pool, and giving up after `wait_seconds` (PoolBusyError)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    if storage.get_pool_config().default_pool_limit is not None and pool not in {p.name for p in storage.get_pool_limits()}:
        storage.initialize_concurrency_limit_to_default(pool)
    if storage.get_concurrency_info(pool).slot_count == 0:
        return  # no limit on this pool
    started, said = time.monotonic(), False
    while not storage.claim_concurrency_slot(pool, run_id, step_key).is_claimed:
        if time.monotonic() - started >= wait_seconds:
            holders = _holders(instance, pool)
            storage.free_concurrency_slot_for_step(run_id, step_key)  # leave the queue
            raise _busy(pool, holders, wait_seconds)
        if not said:
            say(f"waiting for pool {pool}: held by run(s) {_holders(instance, pool)} (at most {wait_seconds:.0f} s)")
            said = True
        time.sleep(poll)
        fail_dead_runs(instance, say)
    if said:
        say(f"pool {pool} claimed for {step_key} after {time.monotonic() - started:.0f} s")


def start_run(instance: dg.DagsterInstance, run_id: str, pools: Mapping[str, str], wait_seconds: float, say: Callable[[str], None]) -> None:
    """What a run does before its first step: record its process, stop on SIGTERM, fail the runs
    that died, and claim the pools of its steps ({step key: pool}) within `wait_seconds`."""
    instance.add_run_tags(run_id, process_tags())
    if not instance.is_ephemeral:
        stop_on_signals(instance, (signal.SIGTERM,))  # Ctrl-C and the UI's Terminate (SIGINT) stay Dagster's
    fail_dead_runs(instance, say)
    for step_key, pool in pools.items():
        claim_pool(instance, run_id, step_key, pool, wait_seconds, say)


class _StartChecked(dg.Executor):
    def __init__(self, inner: dg.Executor, pool_wait_seconds: float):
        self._inner, self._wait = inner, pool_wait_seconds

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def execute(self, plan_context, execution_plan):
        run_id = plan_context.dagster_run.run_id
        steps = execution_plan.get_steps_to_execute_in_topo_order()
        start_run(plan_context.instance, run_id, {s.key: s.pool for s in steps if s.pool}, self._wait, plan_context.log.info)
        try:
            yield from self._inner.execute(plan_context, execution_plan)
        finally:  # a claimed step that never ran (an upstream failure) leaves no slot behind
            plan_context.instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def in_process_executor(pool_wait_seconds: float) -> dg.ExecutorDefinition:
    """dg.in_process_executor (same name and config), each run first doing `start_run`."""
    base = dg.in_process_executor
    return dg.ExecutorDefinition(
        name=base.name, config_schema=base.config_schema, description=base.description,
        executor_creation_fn=lambda init: _StartChecked(base.executor_creation_fn(init), pool_wait_seconds),
    )  # fmt: skip


class LocalRunLauncher(dg.DefaultRunLauncher):
    """Dagster's default launcher (dagster.yaml), which also answers the daemon's run monitoring:
    a run whose process is gone has failed (DefaultRunLauncher cannot tell, so a dead run stayed
    "started" and kept its place under max_concurrent_runs)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        pid, host = _run_process(self._instance, run)
        if pid and host == socket.gethostname() and not _alive(int(pid)):
            return CheckRunHealthResult(WorkerStatus.FAILED, f"run {run.run_id}: its process {pid} is gone (killed or crashed)")
        return CheckRunHealthResult(WorkerStatus.RUNNING)  # alive, or elsewhere: not ours to judge


if __name__ == "__main__":
    with prepare_instance() as ready:
        fail_dead_runs(ready)
        print(f"instance ready at {os.environ['DAGSTER_HOME']}", file=sys.stderr)
