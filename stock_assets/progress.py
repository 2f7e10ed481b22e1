"""What a command is doing while it does it: each step as it starts and ends (rows, seconds), a
step still running every so often, and after each of those the time left once there is
something to go by; for a backfill of several runs, run i of n.

The time left comes from the last run of the same graph over a session range in this instance,
its steps' seconds scaled to this run's sessions and to the pace of this run's steps so far; in a
new instance, from this run's own steps once one has ended. A thread follows the run's events in
the instance (the run executes in this process, so the events are local); nothing here changes
what the run does.
"""

import math
import threading
import time
from collections.abc import Callable
from typing import Self

import dagster as dg

from stock_assets.calendar import sessions_between
from stock_assets.defs.common import RANGE_TAGS
from stock_assets.instance import PID_TAG, RUNNING

ASSET_JOB = "__ASSET_JOB"  # the job of the CLI's runs and of the UI's materializations
STEP_EVENTS = [dg.DagsterEventType.STEP_START, dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.STEP_SUCCESS,
               dg.DagsterEventType.STEP_FAILURE]


def expected_steps(instance: dg.DagsterInstance, sessions: int) -> dict[str, float]:
    """Seconds each step should take over `sessions`: of the latest successful runs of the asset
    graph over a session range (the CLI's, backfills), the one nearest in sessions, its steps
    scaled by sessions; {} when there is none."""
    near = []
    for run in instance.get_runs(dg.RunsFilter(job_name=ASSET_JOB, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=20):
        first, last = (run.tags.get(tag) for tag in RANGE_TAGS)
        if first and last:
            then = max(1, len(sessions_between(first, last)))
            near.append((abs(math.log(then / max(1, sessions))), then, run.run_id))
    for _, then, run_id in sorted(near)[:1]:
        took = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(run_id) if s.start_time and s.end_time}
        return {step: seconds * sessions / then for step, seconds in took.items()}
    return {}


def backfill_left(took: list[tuple[int, float]], expected: dict[str, float], sessions: int, later: int) -> tuple[float | None, float | None]:
    """Seconds left for (this run and the later ones, the later ones): at the pace per session of
    the runs done ((sessions, seconds) each), else of the expected steps; None when not known."""
    per_session = sum(s for _, s in took) / max(1, sum(n for n, _ in took)) if took else sum(expected.values()) / sessions if expected else None
    if per_session is None:
        return None, None if later else 0.0
    return per_session * (sessions + later), per_session * later


def left_line(seconds: float | None, done: int, steps: int, in_run_only: bool) -> str | None:
    if seconds is None:
        return None
    return f"  {'time left':<30} ~{seconds:.0f} s{' in this run' if in_run_only else ''} ({done} of {steps} steps done)"


class StepProgress:
    """Prints `step started` / `step done: rows, seconds`, then the time left, for the run this
    process is executing. `expected`: expected_steps (by default from the instance, for the run's
    sessions); `after`: seconds expected for the runs after this one (None: the time left is
    said to be this run's)."""

    def __init__(self, instance: dg.DagsterInstance, pid: int, say: Callable[[str], None] = print, poll: float = 0.5,
                 expected: dict[str, float] | None = None, after: float | None = None, every: float = 20.0):  # fmt: skip
        self.instance, self.pid, self.say, self.poll, self.every = instance, str(pid), say, poll, every
        self.expected, self.after = expected, after
        self.done: dict[str, float] = {}  # step -> seconds
        self.steps = 0  # steps the run will execute
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="stock_assets-progress", daemon=True)

    def __enter__(self) -> Self:
        if self.instance.is_persistent:  # an instance of its own: its reads do not wait on the run's writes (one lock an instance)
            self.instance = dg.DagsterInstance.from_ref(self.instance.get_ref())
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)  # what the run logged last is said before the summary
        if self.instance.is_persistent and not self._thread.is_alive():
            self.instance.dispose()

    def left(self, running: dict[str, float], now: float) -> float | None:
        """Seconds left: the steps not done as expected at this run's pace (without history, as the
        mean of its steps done), less what the running ones have already taken; None when unknown."""
        if self.expected:  # None until the run is found
            known = [s for s in self.done if s in self.expected]
            pace = sum(self.done[s] for s in known) / sum(self.expected[s] for s in known) if known and sum(self.expected[s] for s in known) else 1.0
            todo = [pace * self.expected.get(s, 0.0) - (now - running.get(s, now)) for s in self.expected if s not in self.done]
        elif self.done and self.steps:
            mean = sum(self.done.values()) / len(self.done)
            todo = [mean] * (self.steps - len(self.done) - len(running)) + [mean - (now - at) for at in running.values()]
        else:
            return None
        return sum(max(0.0, t) for t in todo) + (self.after or 0.0)

    def _say_left(self, running: dict[str, float], now: float) -> None:
        line = left_line(self.left(running, now), len(self.done), max(self.steps, len(self.done)), self.after is None)
        if line:
            self.say(line)

    def _follow(self) -> None:
        run_id, cursor, started, said = None, None, {}, time.monotonic()
        while not self._stop.is_set() or run_id:
            if run_id is None:
                runs = self.instance.get_runs(dg.RunsFilter(statuses=RUNNING, tags={PID_TAG: self.pid}), limit=1)
                run_id = runs[0].run_id if runs else None
                if run_id:
                    steps = self.instance.get_execution_plan_snapshot(runs[0].execution_plan_snapshot_id).step_keys_to_execute
                    if self.expected is None:
                        first, last = (runs[0].tags.get(tag) for tag in RANGE_TAGS)
                        self.expected = expected_steps(self.instance, len(sessions_between(first, last))) if first and last else {}
                    self.steps, self.expected = len(steps), {k: v for k, v in self.expected.items() if k in steps}
            if run_id is not None:
                cursor, spoke = self._report(run_id, cursor, started)
                said = time.monotonic() if spoke else said
                running = {k: v for k, v in started.items() if isinstance(k, str)}
                if running and time.monotonic() - said >= self.every:  # a long step: say it is still at it
                    now, step = time.time(), min(running, key=running.get)
                    self.say(f"  {step:<30} running, {now - running[step]:.0f} s")
                    self._say_left(running, now)
                    said = time.monotonic()
                if self._stop.is_set():  # the run has ended: what it logged last is reported
                    return
            self._stop.wait(self.poll)

    def _report(self, run_id: str, cursor, started: dict) -> tuple[str | None, bool]:
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
                self.done[step] = at - started.pop(step, at)
                running = {k: v for k, v in started.items() if isinstance(k, str)}
                self.say(f"  {step:<30} {outcome}{f', {rows}' if rows else ''}, {self.done[step]:.1f} s")
                self._say_left(running, at)
        return (found.cursor if found.records else cursor), bool(found.records)
