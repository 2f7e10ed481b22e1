"""The local Dagster instance, made safe for the commands people run by hand.

- Initialised once: two first commands at once on a new DAGSTER_HOME would each create the
  SQLite storage and leave two schema heads; creation happens under a file lock.
- Runs whose process died are recognised: a run started here records its host and process id;
  one still marked as running whose process is gone (killed, crashed) is marked failed and the
  pool slots it held are freed, so the next command does not wait on a ghost.
- A pool wait is bounded and said: a command waits at most `wait_seconds` for a slot a live
  run holds, printing what it waits for, then stops with a named error.

`python -m stock_assets.instance` (what `make instance` runs) does the first two; our commands
(`make run`, `make backfill`) all three. A killed `dagster asset materialize` is found too, by
the process id in its run's RUN_START event, the next time `make instance` runs.
"""

import fcntl
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg

PID_TAG, HOST_TAG = "stock_assets/pid", "stock_assets/host"
RUNNING = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


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
    """(pid, host) of the process running `run`: our commands tag it; a run started otherwise on
    a local (SQLite) instance, e.g. by `dagster asset materialize`, ran in the process that
    logged its RUN_START, on this machine."""
    if PID_TAG in run.tags:
        return run.tags[PID_TAG], run.tags.get(HOST_TAG)
    if "sqlite" not in type(instance.run_storage).__name__.lower():
        return None, None  # shared storage: the run may live on another machine
    started = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
    pid = started[0].dagster_event.pid if started and started[0].dagster_event else None
    return (str(pid), socket.gethostname()) if pid else (None, None)


def fail_dead_runs(instance: dg.DagsterInstance, say: Callable[[str], None] = print) -> list[str]:
    """Mark failed every run started on this host whose process is gone; free its pool slots."""
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
    return failed


def stop_this_process(instance: dg.DagsterInstance, signum: int) -> None:
    """Fail the runs this process is running, free their pool slots, and exit (a signal handler)."""
    for run in instance.get_runs(dg.RunsFilter(statuses=RUNNING, tags={PID_TAG: str(os.getpid())})):
        instance.report_run_failed(run, f"run {run.run_id} stopped by signal {signum}: marked failed, its pool slots freed")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        print(f"stock_assets: run {run.run_id} stopped by signal {signum}", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def stop_on_signals(instance: dg.DagsterInstance) -> None:
    """SIGTERM or Ctrl-C (kill, docker stop, a scheduler's timeout) stops a command at once, even
    inside a provider request. During a run Dagster's own handlers take both signals and only
    interrupt the step (whose retry policy then waits to try again), so the signal is also
    written to a pipe (signal.set_wakeup_fd, whatever Python handler is installed) that a
    watcher thread reads. Writes are atomic (lake) or transactional (warehouse): nothing
    half-written is left visible."""
    signal.signal(signal.SIGTERM, lambda signum, _: stop_this_process(instance, signum))
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write)

    def watch() -> None:
        while True:
            for signum in os.read(read, 64):
                if signum in (signal.SIGTERM, signal.SIGINT):
                    stop_this_process(instance, signum)

    threading.Thread(target=watch, name="stock_assets-signals", daemon=True).start()


def wait_for_pool(instance: dg.DagsterInstance, pool: str, wait_seconds: float, say: Callable[[str], None] = print, poll: float = 2.0) -> None:
    """Return once `pool` has a free slot; say what holds it meanwhile; PoolBusyError after `wait_seconds`."""
    deadline, said = time.monotonic() + wait_seconds, False
    while True:
        info = instance.event_log_storage.get_concurrency_info(pool)
        if info.slot_count == 0 or len(info.claimed_slots) < info.slot_count:
            return
        holders = sorted({slot.run_id for slot in info.claimed_slots})
        if time.monotonic() >= deadline:
            raise PoolBusyError(
                f"pool {pool} is still held by run(s) {', '.join(holders)} after {wait_seconds:.0f} s; wait for them, "
                f"or if they are gone: dagster run delete <run id> (or raise STOCK_ASSETS_POOL_WAIT_SECONDS)"
            )
        if not said:
            say(f"waiting for pool {pool}: held by run(s) {', '.join(holders)} (at most {wait_seconds:.0f} s)")
            said = True
        time.sleep(poll)
        fail_dead_runs(instance, say)


if __name__ == "__main__":
    with prepare_instance() as ready:
        fail_dead_runs(ready)
        print(f"instance ready at {os.environ['DAGSTER_HOME']}", file=sys.stderr)
