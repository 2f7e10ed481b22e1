"""What a command is doing while it does it: each step as it starts and ends (rows, seconds),
and for a backfill of several runs, run i of n with an estimate of the time left.

A thread follows the run's events in the instance (the run executes in this process, so the
events are local); nothing here changes what the run does.
"""

import threading
from collections.abc import Callable
from typing import Self

import dagster as dg

from stock_assets.instance import PID_TAG, RUNNING

STEP_EVENTS = [dg.DagsterEventType.STEP_START, dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.STEP_SUCCESS,
               dg.DagsterEventType.STEP_FAILURE]


def estimate(done: list[float], left: int) -> str:
    """'~N s left' from the runs done so far; empty before the first one ends."""
    return f", ~{sum(done) / len(done) * left:.0f} s left" if done and left else ""


class StepProgress:
    """Prints `step started` / `step done: rows, seconds` for the run this process is executing."""

    def __init__(self, instance: dg.DagsterInstance, pid: int, say: Callable[[str], None] = print, poll: float = 0.5):
        self.instance, self.pid, self.say, self.poll = instance, str(pid), say, poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="stock_assets-progress", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _follow(self) -> None:
        run_id, cursor, started = None, None, {}
        while not self._stop.is_set() or run_id:
            if run_id is None:
                runs = self.instance.get_runs(dg.RunsFilter(statuses=RUNNING, tags={PID_TAG: self.pid}), limit=1)
                run_id = runs[0].run_id if runs else None
            if run_id is not None:
                cursor = self._report(run_id, cursor, started)
                if self._stop.is_set():  # the run has ended: what it logged last is reported
                    return
            self._stop.wait(self.poll)

    def _report(self, run_id: str, cursor, started: dict) -> str | None:
        found = self.instance.get_records_for_run(run_id, cursor=cursor, of_type=set(STEP_EVENTS))
        for record in found.records:
            event = record.event_log_entry.dagster_event
            step, at = event.step_key, record.event_log_entry.timestamp
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                meta = event.step_materialization_data.materialization.metadata
                for key, unit in (("window_rows", "rows"), ("payloads", "payloads")):
                    if key in meta:
                        started[("rows", step)] = f"{int(meta[key].value):,} {unit}"
            elif event.event_type == dg.DagsterEventType.STEP_START:
                started[step] = at
                self.say(f"  {step:<30} started")
            else:
                rows = started.get(("rows", step))
                outcome = "done" if event.event_type == dg.DagsterEventType.STEP_SUCCESS else "FAILED"
                self.say(f"  {step:<30} {outcome}{f', {rows}' if rows else ''}, {at - started.get(step, at):.1f} s")
        return found.cursor if found.records else cursor
