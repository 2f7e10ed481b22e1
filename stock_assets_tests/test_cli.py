"""The commands a user types: `dagster asset materialize --partition-range` and `make run`'s
entry point, each in a subprocess against a fresh STOCK_ASSETS_HOME and DAGSTER_HOME."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb

from stock_assets.partitions import sessions_between

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).with_name("dagster")


def environment(home: Path, **extra: str) -> dict:
    (home / "dagster").mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster" / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOCK_ASSETS_", "DAGSTER_"))}
    return env | {"STOCK_ASSETS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")} | extra


def test_cli_backfill_of_250_sessions_is_one_run_and_idempotent(tmp_path):
    sessions = sessions_between("2015-01-02", "2023-01-03", "2023-12-29")[:250]
    first, last = sessions[0], sessions[-1]
    env = environment(tmp_path, STOCK_ASSETS_SYMBOLS="AAPL,MSFT")
    command = [str(DAGSTER), "asset", "materialize", "-m", "stock_assets.definitions", "--select", "*", "--partition-range"]
    select = "SELECT * EXCLUDE (ingested_at) FROM prices ORDER BY symbol, session"

    subprocess.run([*command, f"{first}...{last}"], cwd=ROOT, env=env, check=True, capture_output=True)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), min(session), max(session) FROM prices").fetchall() == [(2 * 250, first, last)]
        before = con.execute(select).fetchall()

    # Again over part of the range: nothing changes, inside or outside it.
    subprocess.run([*command, f"{sessions[100]}...{sessions[109]}"], cwd=ROOT, env=env, check=True, capture_output=True)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute(select).fetchall() == before

    os.environ["DAGSTER_HOME"], saved = str(tmp_path / "dagster"), os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            assert instance.get_runs_count() == 2  # one run per backfill, not one per session
    finally:
        os.environ.pop("DAGSTER_HOME") if saved is None else os.environ.update(DAGSTER_HOME=saved)


def test_run_entry_point_prints_the_summary(tmp_path):
    env = environment(tmp_path, STOCK_ASSETS_SYMBOLS="IBM")
    out = subprocess.run([sys.executable, "-m", "stock_assets.cli", "run", "--sessions", "5"], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    assert "stock_assets: succeeded" in out
    assert "(5)" in out
    assert re.search(r"redshift_table +5 rows", out)
    assert re.search(r"prices_not_null +passed", out)
    assert re.search(r"prices_fresh +passed", out)  # the last closed session is loaded
    assert str(tmp_path / "warehouse.duckdb") in out
    page = tmp_path / "reports" / "dashboard.html"
    assert out.rstrip().splitlines()[-1].startswith(f"  dashboard    {page}") and page.stat().st_size > 1_000_000


def test_dagster_dev_serves_the_asset_graph(tmp_path):
    """`make dev`'s command, smoke-tested: the UI's GraphQL API answers with the graph."""
    import json
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = environment(tmp_path)
    server = subprocess.Popen(
        [str(DAGSTER), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
    try:
        deadline, keys = time.monotonic() + 120, None
        while time.monotonic() < deadline and keys is None:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", query, {"Content-Type": "application/json"})
                nodes = json.load(urllib.request.urlopen(request, timeout=5))["data"]["assetNodes"]
                keys = sorted(n["assetKey"]["path"][0] for n in nodes) if nodes else None
            except (OSError, KeyError, TypeError, ValueError):
                time.sleep(1)
        assert keys is not None, "dagster dev did not answer within 120 s"
        assert {"raw_prices", "landing_csv", "lake_parquet", "deduped_prices", "dq_report", "redshift_table", "indicators"} <= set(keys)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_a_backfill_of_three_runs_says_what_it_does_as_it_goes(tmp_path):
    env = environment(tmp_path, STOCK_ASSETS_SYMBOLS="IBM,MSFT")
    done = subprocess.run([sys.executable, "-m", "stock_assets.cli", "backfill", "--start", "2024-01-02", "--end", "2024-01-31", "--chunk", "8"],
                          cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    lines = done.stdout.splitlines()
    runs = [line for line in lines if line.startswith("stock_assets: run ")]
    assert [r.split(":")[1].strip().split(" sessions")[0] for r in runs] == ["run 1 of 3", "run 2 of 3", "run 3 of 3"]
    assert "2024-01-02 .. 2024-01-11 (8)" in runs[0] and re.search(r"\(5\), ~\d+ s left$", runs[2])
    first_run = lines[lines.index(runs[0]) : lines.index(runs[1])]
    steps = [line.split()[0] for line in first_run if line.endswith("started")]
    assert steps[:4] == ["raw_prices", "landing_csv", "lake_parquet", "deduped_prices"] and "dashboard" in steps
    assert any(re.fullmatch(r"\s+raw_prices\s+done, 2 payloads, \d+\.\d s", line) for line in first_run)
    assert any(re.fullmatch(r"\s+redshift_table\s+done, 16 rows, \d+\.\d s", line) for line in first_run)
    assert first_run.index(next(x for x in first_run if "raw_prices" in x and "done" in x)) < first_run.index(next(x for x in first_run if x.startswith("stock_assets: succeeded")))
    assert "BetaWarning" not in done.stderr and "PreviewWarning" not in done.stderr  # Dagster's notices are not the user's


def test_the_backfill_policy_splits_a_one_minute_range_as_the_cli_does(tmp_path):
    symbols = ",".join(f"S{i:03d}" for i in range(100))
    env = environment(tmp_path, STOCK_ASSETS_SYMBOLS=symbols, STOCK_ASSETS_INTERVAL="1min", STOCK_ASSETS_PROVIDER="polygon")
    probe = (
        "from stock_assets.definitions import defs\n"
        "from stock_assets.cli import backfill_chunks\n"
        "from stock_assets.settings import Settings\n"
        "print(defs.resolve_assets_def('raw_prices').backfill_policy.max_partitions_per_run)\n"
        "print(len(backfill_chunks(Settings.from_env(), '2024-01-02', '2024-12-31')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert out == ["51", "5"]  # 100 symbols x 390 bars a session: 51 sessions (~2 M bars) a run; 252 sessions in 5 runs
