"""Item 2, the orchestrated backfill: the whole graph over a session range in ONE run
(stock_assets.cli.materialize_range), beside the floor (benchmarks/floor.py) on the same
kind of instance: the default SQLite storage, and PostgreSQL storage with
DAGSTER_EVENT_BATCH_SIZE=1000, and the same with DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS
(one planned event per asset for the run's range, not one per (asset, session)). Every measurement gets a fresh home, a fresh instance and,
for PostgreSQL, a throwaway database.

The child (`child`) is also what item 3 uses to time one-session runs.
"""

import contextlib
import time
import uuid
import warnings
from urllib.parse import urlsplit, urlunsplit

from benchmarks.common import (
    PG_URL,
    START,
    child_env,
    child_main,
    median,
    new_home,
    peak_rss_mib,
    remove_home,
    run_child,
    scaled,
    sessions_after,
    universe,
)

MODES = ("floor", "ours")
STORAGES = {  # name -> extra environment of the child
    "sqlite": None,
    "postgres": {"DAGSTER_EVENT_BATCH_SIZE": "1000"},
    "postgres_subset": {"DAGSTER_EVENT_BATCH_SIZE": "1000", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true"},
}


def child(mode: str, first: str, last: str, runs: int = 1, budget_s: float = 0) -> dict:
    """Up to `runs` runs of the whole graph (ours or the floor) over first..last on DAGSTER_HOME's
    instance (fewer when one more would pass `budget_s`); each run re-materializes the same window."""
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    import dagster as dg

    from benchmarks.floor import floor_defs
    from stock_assets.cli import materialize_range
    from stock_assets.definitions import build_defs
    from stock_assets.settings import Settings

    ours = build_defs(Settings.from_env())
    defs = ours if mode == "ours" else floor_defs(ours)
    load_s = time.perf_counter() - started
    out = {"mode": mode, "first": first, "last": last, "load_s": load_s, "seconds": [], "events": [], "failures": []}
    with dg.DagsterInstance.get() as instance:
        out["event_storage"] = type(instance.event_log_storage).__name__
        instance.get_runs_count()  # storages created before the clock starts
        while len(out["seconds"]) < runs:
            started = time.perf_counter()
            result = materialize_range(defs, first, last, instance)
            out["seconds"].append(time.perf_counter() - started)
            records = instance.all_logs(result.run_id)
            out["events"].append(len(records))
            out["steps"], out["phases"] = step_seconds(records)
            if not result.success:
                out["failures"] += [e.message for e in result.all_events if e.is_step_failure][:3] or ["run failed"]
            if sum(out["seconds"]) + out["seconds"][-1] > budget_s:
                break
    graph = defs.resolve_asset_graph()
    out["assets"], out["checks"] = len(graph.get_all_asset_keys()), len(graph.asset_check_keys)
    return out | {"median_s": median(out["seconds"]), "success": not out["failures"], "peak_rss_mib": round(peak_rss_mib(), 1)}


def step_seconds(records) -> tuple[dict, dict]:
    """From a run's event log: seconds from each step's start to its end, and the run's phases —
    `planning` (from the first event, the planned events written at run creation, to RUN_START),
    `steps` (their sum) and `other` (everything else up to the last event)."""
    from dagster import DagsterEventType as T

    began, took, start = {}, {}, None
    for r in records:
        event = r.dagster_event
        kind = event.event_type if event else None
        if kind == T.RUN_START:
            start = r.timestamp
        elif kind == T.STEP_START:
            began[event.step_key] = r.timestamp
        elif kind in (T.STEP_SUCCESS, T.STEP_FAILURE) and event.step_key in began:
            took[event.step_key] = round(r.timestamp - began[event.step_key], 3)
    total = records[-1].timestamp - records[0].timestamp if records else 0.0
    planning = (start - records[0].timestamp) if start and records else 0.0
    steps = sum(took.values())
    return took, {"planning": round(planning, 3), "steps": round(steps, 3), "other": round(total - planning - steps, 3)}


@contextlib.contextmanager
def throwaway_database(server_url: str = PG_URL):
    """A new PostgreSQL database on the server, dropped afterwards; yields its psycopg2 URL."""
    import psycopg2

    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        parts = urlsplit(server_url)
        scheme = "postgresql+psycopg2"  # psycopg 3 fails dagster-postgres's NOTIFY
        yield urlunsplit(parts._replace(scheme=scheme, path=f"/{name}"))
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def measure(mode: str, storage: str, symbols: list[str], first: str, last: str) -> dict:
    home = new_home(f"{storage}-{mode}")
    try:
        if storage == "sqlite":
            return run_child("backfill", {"mode": mode, "first": first, "last": last}, child_env(home, symbols))
        with throwaway_database() as url:
            env = child_env(home, symbols, {"storage": {"postgres": {"postgres_url": url}}}, **STORAGES[storage])
            return run_child("backfill", {"mode": mode, "first": first, "last": last}, env)
    finally:
        remove_home(home)


def run() -> dict:
    symbols = universe(scaled(500))
    sessions = sessions_after("2024-01-02", scaled(252))
    out = {"symbols": len(symbols), "sessions": len(sessions), "bars": len(symbols) * len(sessions), "start": START}
    for storage in STORAGES:
        try:
            runs = {mode: measure(mode, storage, symbols, sessions[0], sessions[-1]) for mode in MODES}
        except Exception as err:  # noqa: BLE001 - one storage failing must not lose the other
            out[storage] = {"error": f"{type(err).__name__}: {err}"}
            continue
        out[storage] = runs | {"ratio": runs["ours"]["median_s"] / runs["floor"]["median_s"]}
    return out


if __name__ == "__main__":
    child_main(child)
