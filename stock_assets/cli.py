"""`python -m stock_assets.cli run` (the latest sessions) and `backfill --start --end` (any
range, in as few runs as fit), each for the configured universe or `--symbols X,Y` only (every
other symbol's rows stay as they are: stock_assets/window.py): materialize the whole graph and print what happened —
sessions, rows per asset, check results, where everything is. `rebuild --table lake/<name>`:
a damaged lake table moved aside and written again (stock_assets/lake/repair.py). `live`: one
refresh of live_prices, the session in progress (stock_assets/live_cli.py)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING

from stock_assets.settings import Settings, SettingsError, sessions_per_run
from stock_assets.warehouse.common import redact_url
from stock_assets.window import SYMBOLS_TAG, InvalidWindowError, parse_symbols

# Dagster, the code location and the lake's engines load (~2 s) only in the functions that use
# them: `--help`, `rebuild` and a refused argument answer without them.
if TYPE_CHECKING:
    import dagster as dg
    from dagster._core.execution.execution_result import ExecutionResult
    from dagster._core.remote_origin import RemoteJobOrigin

LAKE_TABLES = ("lake/prices", "lake/deduped", "lake/dq_report", "lake/indicators")  # lake/repair.py's TABLES


def location_origin(job_name: str) -> RemoteJobOrigin:
    """The job as the UI and the daemon know it: workspace.yaml's code location. Only the location
    and repository names identify it there, so a run that carries this origin is one of the
    location's runs (re-executable from the UI, seen by its run-status sensors)."""
    from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
    from dagster._core.remote_origin import (
        ManagedGrpcPythonEnvCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    from stock_assets.definitions import LOCATION_NAME

    target = LoadableTargetOrigin(executable_path=sys.executable, module_name="stock_assets.definitions", working_directory=os.getcwd())
    location = ManagedGrpcPythonEnvCodeLocationOrigin(target, LOCATION_NAME)
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME), job_name)


def materialize_range(defs: dg.Definitions, first: str, last: str, instance: dg.DagsterInstance, symbols: tuple[str, ...] | None = None) -> ExecutionResult:
    """One run over the whole graph for sessions first..last (a single-run backfill) and `symbols`
    (the run's stock_assets/symbols tag; None: the universe), in this process, recorded as a run
    of the code location (execute_in_process records none)."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.execution.api import execute_run

    from stock_assets.defs.common import RANGE_TAGS
    from stock_assets.instance import process_tags

    job = defs.resolve_implicit_global_asset_job_def()
    graph = defs.resolve_asset_graph()  # every asset but live_prices (its own runs): the UI lists them as the run's target
    every_asset = frozenset(k for k in graph.get_all_asset_keys() if graph.get(k).group_name != "live")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    run = instance.create_run_for_job(
        job_def=job.get_subset(asset_selection=every_asset), run_config=quiet, asset_selection=every_asset,
        tags=dict(zip(RANGE_TAGS, (first, last))) | process_tags() | ({SYMBOLS_TAG: ",".join(symbols)} if symbols else {}),
        remote_job_origin=location_origin(job.name),
    )  # fmt: skip
    return execute_run(InMemoryJob(job), run, instance)


def summary(results: list[ExecutionResult], first: str, last: str, count: int, settings: Settings,
            symbols: tuple[str, ...] | None = None) -> str:  # fmt: skip
    """What the command did, once: every run's rows added up per asset, each check's worst result."""
    ok = all(r.success for r in results)
    runs = f"run {results[0].run_id}" if len(results) == 1 else f"{len(results)} runs ({sum(r.success for r in results)} succeeded)"
    lines = [f"stock_assets: {'succeeded' if ok else 'FAILED'}, {runs}"]
    named = f"symbols={','.join(symbols)} (only these: other symbols' rows untouched)" if symbols else f"symbols={','.join(settings.symbols)}"
    lines.append(f"  sessions     {first} .. {last} ({count})  provider={settings.provider} {named}")
    totals: dict[str, tuple[int | None, str]] = {}
    for result in results:
        seen = set()
        for event in result.get_asset_materialization_events():  # one per (asset, session); the window's totals on each
            mat = event.step_materialization_data.materialization
            name = mat.asset_key.to_user_string()
            if name in seen:
                continue
            seen.add(name)
            meta = mat.metadata
            rows = meta.get("window_rows") or meta.get("dagster/row_count") or meta.get("payloads")
            before = totals.get(name, (0, ""))[0]
            totals[name] = (None if rows is None or before is None else before + rows.value, "payloads" if "payloads" in meta else "rows")
    for name, (rows, unit) in totals.items():
        lines.append(f"  {name:<18} " + (f"{rows:>8} {unit}" if rows is not None else "     written"))
    for name in sorted({"redshift_table", "indicators", "dashboard"} - set(totals)):
        lines.append(f"  {name:<18} NOT LOADED (a blocking check failed or an upstream step failed)")
    lines.append("  checks:")
    checks: dict[str, list] = {}
    for result in results:
        for ev in result.get_asset_check_evaluations():
            checks.setdefault(ev.check_name, []).append(ev)
    for name, evaluations in checks.items():
        failed = [ev for ev in evaluations if not ev.passed]
        if not failed:
            lines.append(f"    {name:<28} passed")
            continue
        rows = sum(ev.metadata["failing_rows"].value for ev in failed if "failing_rows" in ev.metadata)
        runs_failed = f" in {len(failed)} of {len(evaluations)} runs" if len(evaluations) > 1 else ""
        lines.append(f"    {name:<28} FAILED ({failed[0].severity.value}){f': {rows} rows' if rows else ''}{runs_failed}")
    lines.append(f"  lake         {settings.lake_url}")
    lines.append(f"  warehouse    {redact_url(settings.warehouse_url)}")
    lines.append("  try:         .venv/bin/python -c \"import duckdb; print(duckdb.connect('"
                 f"{settings.home / 'warehouse.duckdb'}', read_only=True).sql('SELECT * FROM prices LIMIT 5'))\"")
    pages = [e.step_materialization_data.materialization.metadata.get("path") for r in results[-1:] for e in r.get_asset_materialization_events()
             if e.asset_key.to_user_string() == "dashboard"]
    if pages and pages[0]:
        lines.append(f"  dashboard    {pages[0].value}   <- open it in a browser (works offline)")
    return "\n".join(lines)


def backfill_chunks(settings: Settings, first: str, last: str, size: int | None = None, symbols: int | None = None) -> list[tuple[str, str]]:
    """The session range cut into runs as the assets' backfill policy cuts it in the UI
    (settings.sessions_per_run: at most ROWS_PER_RUN bars a run, of `symbols` symbols: the universe's by default)."""
    from stock_assets.partitions import sessions_between

    sessions = [str(s) for s in sessions_between(settings.start, first, last)]
    if not sessions:
        raise ValueError(f"no NYSE session between {first} and {last}")
    size = size or sessions_per_run(symbols or len(settings.symbols), settings.interval, settings.rows_per_run)
    return [(sessions[i], sessions[min(i + size, len(sessions)) - 1]) for i in range(0, len(sessions), size)]


def rebuild(settings: Settings, table: str) -> int:
    """Move a damaged lake table aside and write it again (stock_assets/lake/repair.py)."""
    from stock_assets.lake.repair import rebuild_table
    from stock_assets.lake.storage import LakeStorage
    from stock_assets.warehouse.warehouse import warehouse_for_url

    storage = LakeStorage(settings.lake_url)
    warehouse = warehouse_for_url(settings.warehouse_url, lake=storage, redshift_iam_role=settings.redshift_iam_role,
                                  lock_timeout_seconds=settings.warehouse_lock_timeout_seconds,
                                  statement_timeout_seconds=settings.warehouse_statement_timeout_seconds)  # fmt: skip
    try:
        report = rebuild_table(storage, table, warehouse)
    except ValueError as err:
        print(f"stock_assets: {err}", file=sys.stderr)
        return 2
    print(f"stock_assets: rebuilt {report['uri']} from {report['source']}: {report['rows']} rows, {report['sessions']} sessions, version {report['version']}")
    print(f"  damaged copy {report['moved_to'] or '(no table was there)'}")
    if report["production_points_at_moved_copy"]:
        print("  published/LATEST now names the moved copy (it holds that version); the next checked run publishes the rebuilt table")
    print("  next:        re-run the latest window (make run) so that every table agrees again")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stock_assets")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the whole graph for the most recent closed sessions")
    run.add_argument("--sessions", type=int, default=60)
    backfill = sub.add_parser("backfill", help="materialize the whole graph over START..END, in as few runs as fit")
    backfill.add_argument("--start", required=True)
    backfill.add_argument("--end", required=True)
    backfill.add_argument("--chunk", type=int, default=None, help="sessions per run (default: sized to the universe and interval)")
    for command in (run, backfill):
        command.add_argument("--symbols", default=None, help="only these symbols (comma list), e.g. a symbol just added to "
                             "STOCK_ASSETS_SYMBOLS; every other symbol's rows stay as they are (default: the universe)")
    repair = sub.add_parser("rebuild", help="move a damaged lake table aside and rebuild it from landing/ (or the warehouse)")
    repair.add_argument("--table", required=True, choices=LAKE_TABLES)
    sub.add_parser("live", help="refresh live_prices: the session in progress so far (nothing outside market hours)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as err:  # the variable, its value and what it accepts: no traceback
        print(f"stock_assets: {err}", file=sys.stderr)
        return 2
    if args.command == "rebuild":
        return rebuild(settings, args.table)
    if args.command == "live":
        from stock_assets.live_cli import refresh_command

        return refresh_command(settings)

    try:
        symbols = parse_symbols(args.symbols, "--symbols") if args.symbols is not None else None
    except InvalidWindowError as err:
        print(f"stock_assets: {err}", file=sys.stderr)
        return 2
    window = f"backfill {args.start} .. {args.end}" if args.command == "backfill" else f"the {args.sessions} latest closed sessions"
    print(f"stock_assets: {window} of {len(symbols or settings.symbols)} symbols: preparing the run", flush=True)
    from stock_assets.definitions import build_defs
    from stock_assets.instance import PoolBusyError, fail_dead_runs, prepare_instance, stop_on_signals, wait_for_pool
    from stock_assets.partitions import closed_sessions, sessions_between
    from stock_assets.progress import StepProgress, backfill_left

    instance = prepare_instance()
    stop_on_signals(instance)
    fail_dead_runs(instance)
    try:
        wait_for_pool(instance, f"provider_{settings.provider}", settings.pool_wait_seconds)
    except PoolBusyError as err:
        print(f"stock_assets: {err}", file=sys.stderr)
        return 3
    defs = build_defs(settings)
    if args.command == "run":
        keys = closed_sessions(settings.start, args.sessions)
        chunks = [(keys[0], keys[-1])]
    else:
        chunks = backfill_chunks(settings, args.start, args.end, args.chunk, len(symbols) if symbols else None)
    took, results = [], []  # (sessions, seconds) of each run done; their results
    for i, (first, last) in enumerate(chunks, 1):
        count = len(sessions_between(settings.start, first, last))
        left, after = backfill_left(took, {}, count, sum(len(sessions_between(settings.start, *c)) for c in chunks[i:]))
        print(f"stock_assets: run {i} of {len(chunks)}: sessions {first} .. {last} ({count}){f', ~{left:.0f} s left' if took else ''}", flush=True)
        started = time.monotonic()
        with StepProgress(instance, os.getpid(), say=lambda line: print(line, flush=True), after=after):
            result = materialize_range(defs, first, last, instance, symbols)
        took.append((count, time.monotonic() - started))
        results.append(result)
        if len(chunks) > 1:  # one line a run; the summary of them all once, at the end
            failed = sorted({ev.check_name for ev in result.get_asset_check_evaluations() if not ev.passed})
            said = f", checks failed: {', '.join(failed)}" if failed else ", every check passed"
            print(f"stock_assets: run {i} of {len(chunks)} {'succeeded' if result.success else 'FAILED'} (run {result.run_id}){said}", flush=True)
    total = sum(len(sessions_between(settings.start, *c)) for c in chunks)
    print(summary(results, chunks[0][0], chunks[-1][1], total, settings, symbols), flush=True)
    return 0 if all(r.success for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
