"""The commands a user types: `make run`'s and `make backfill`'s entry point and `make dev`'s
server, each in a subprocess against a fresh STOCK_ASSETS_HOME and DAGSTER_HOME."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from stock_assets.calendar import closed_sessions
from stock_assets.partitions import sessions_between
from stock_assets_tests.test_deploy import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).with_name("dagster")


def environment(home: Path, **extra: str) -> dict:
    (home / "dagster").mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster" / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOCK_ASSETS_", "DAGSTER_"))}
    return env | {"STOCK_ASSETS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")} | extra


def test_cli_backfill_of_120_sessions_is_one_run_and_idempotent(tmp_path):
    sessions = sessions_between("2015-01-02", "2023-01-03", "2023-12-29")[:120]
    first, last = sessions[0], sessions[-1]
    env = environment(tmp_path, STOCK_ASSETS_SYMBOLS="AAPL,MSFT")
    command = [sys.executable, "-m", "stock_assets.cli", "backfill"]
    select = "SELECT * EXCLUDE (ingested_at) FROM prices ORDER BY symbol, session"

    subprocess.run([*command, "--start", str(first), "--end", str(last)], cwd=ROOT, env=env, check=True, capture_output=True)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), min(session), max(session) FROM prices").fetchall() == [(2 * 120, first, last)]
        before = con.execute(select).fetchall()

    # Again over part of the range: nothing changes, inside or outside it.
    subprocess.run([*command, "--start", str(sessions[100]), "--end", str(sessions[109])], cwd=ROOT, env=env, check=True, capture_output=True)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute(select).fetchall() == before

    os.environ["DAGSTER_HOME"], saved = str(tmp_path / "dagster"), os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
            assert len(runs) == 2  # one run per backfill, not one per session
            assert {r.remote_job_origin.location_name for r in runs} == {"stock_assets"}  # runs of the code location
    finally:
        os.environ.pop("DAGSTER_HOME") if saved is None else os.environ.update(DAGSTER_HOME=saved)


def test_run_entry_point_prints_the_summary(tmp_path):
    env = environment(tmp_path, STOCK_ASSETS_SYMBOLS="IBM")
    last_closed = closed_sessions(1)
    out = subprocess.run([sys.executable, "-m", "stock_assets.cli", "run", "--sessions", "5"], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    assert "stock_assets: succeeded" in out
    assert "(5)" in out
    assert re.search(r"redshift_table +5 rows", out)
    assert re.search(r"prices_not_null +passed", out)
    if closed_sessions(1) == last_closed:
        assert re.search(r"prices_fresh +passed", out)  # the last closed session is loaded
    else:  # a session closed while the run went on: the load is one session behind, and says so
        assert re.search(r"prices_fresh +FAILED \(WARN\)", out)
    assert str(tmp_path / "warehouse.duckdb") in out
    page = tmp_path / "reports" / "dashboard.html"
    assert out.rstrip().splitlines()[-1].startswith(f"  dashboard    {page}") and page.stat().st_size > 1_000_000


LOCATION = {"repositoryLocationName": "stock_assets", "repositoryName": "__repository__"}
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def graphql(port: int, text: str, **variables) -> dict:
    body = json.dumps({"query": text, "variables": variables}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"})
    reply = json.load(urllib.request.urlopen(request, timeout=10))
    assert "errors" not in reply, reply
    return reply["data"]


def wait_for(what: str, probe, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, KeyError, TypeError, ValueError):
            if value := probe():
                return value
        time.sleep(1)
    raise AssertionError(f"{what}: not within {seconds:.0f} s")


def run_status(port: int, run_id: str) -> dict:
    return graphql(port, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status jobName stepKeysToExecute assetSelection { path } } } }", id=run_id)["runOrError"]


def reexecute(port: int, run_id: str, strategy: str) -> str:
    text = """mutation($params: ReexecutionParams!) { launchPipelineReexecution(reexecutionParams: $params) {
      __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
    launched = graphql(port, text, params={"parentRunId": run_id, "strategy": strategy})["launchPipelineReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def test_cli_runs_are_runs_of_the_code_location_in_the_ui(tmp_path, fake_api):
    """`make dev`'s command serves the graph; a run `make run` starts while it is up is one of the
    location's runs: the run-failure sensor alerts on it and the UI re-executes it (all steps, and
    from failure) through the same GraphQL mutation as its buttons."""
    fake_api.route("/hook", b"ok")
    port = free_port()
    env = environment(tmp_path, STOCK_ASSETS_SYMBOLS="IBM", STOCK_ASSETS_SLACK_WEBHOOK_URL=f"{fake_api.url}/hook")
    server = subprocess.Popen(
        [str(DAGSTER), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        nodes = wait_for("dagster dev serving the graph", lambda: graphql(port, "{ assetNodes { assetKey { path } } }")["assetNodes"], 120)
        assert {"raw_prices", "landing_csv", "lake_parquet", "deduped_prices", "dq_report", "redshift_table", "indicators"} <= {
            n["assetKey"]["path"][0] for n in nodes
        }
        ticks = """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor { sensorState { ticks(limit: 1) { status } } } } }"""
        selector = LOCATION | {"sensorName": "run_failure_alert_sensor"}
        wait_for("the alert sensor's first tick", lambda: graphql(port, ticks, s=selector)["sensorOrError"]["sensorState"]["ticks"], 90)

        failing = env | {"STOCK_ASSETS_SYNTHETIC_FAULTS": "ohlc"}  # only this command's bars are damaged
        done = subprocess.run([sys.executable, "-m", "stock_assets.cli", "run", "--sessions", "3"], check=False, cwd=ROOT, env=failing, capture_output=True, text=True)
        assert done.returncode == 1, done.stdout + done.stderr
        run_id = re.search(r"stock_assets: FAILED, run (\S+)", done.stdout).group(1)
        failed = run_status(port, run_id)
        assert (failed["status"], failed["jobName"]) == ("FAILURE", "__ASSET_JOB")
        assert {"raw_prices", "indicators", "dashboard"} <= {k["path"][0] for k in failed["assetSelection"]}  # the UI's "Target" column

        alerts = lambda: [r for r in fake_api.requests if r.path == "/hook" and run_id in json.loads(r.body)["text"]]
        texts = [json.loads(r.body)["text"] for r in wait_for("the run-failure alert for the CLI run", alerts, 120)]
        assert any(":red_circle: stock_assets run failed: job `__ASSET_JOB`" in t for t in texts)
        assert any("`prices_ohlc_consistent` failed (ERROR)" in t for t in texts)

        again = reexecute(port, run_id, "ALL_STEPS")  # the UI's "Re-execute all"; the server's bars are clean
        from_failure = reexecute(port, run_id, "FROM_FAILURE")
        finished = {r: wait_for(f"run {r} finished", lambda r=r: run_status(port, r)["status"] in TERMINAL and run_status(port, r), 180)
                    for r in (again, from_failure)}  # fmt: skip
        assert finished[again]["status"] == "SUCCESS"
        steps = finished[from_failure]["stepKeysToExecute"]
        assert "dq_report" in steps and "raw_prices" not in steps  # from the failed step on, not from the start
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_a_backfill_of_three_runs_says_what_it_does_as_it_goes(tmp_path):
    env = environment(tmp_path, STOCK_ASSETS_SYMBOLS="IBM,MSFT")
    done = subprocess.run([sys.executable, "-m", "stock_assets.cli", "backfill", "--start", "2024-01-02", "--end", "2024-01-31", "--chunk", "8"],
                          cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    lines = done.stdout.splitlines()
    runs = [line for line in lines if re.match(r"stock_assets: run \d of 3: sessions ", line)]
    assert [r.split(":")[1].strip().split(" sessions")[0] for r in runs] == ["run 1 of 3", "run 2 of 3", "run 3 of 3"]
    assert "2024-01-02 .. 2024-01-11 (8)" in runs[0] and re.search(r"\(5\), ~\d+ s left$", runs[2])
    first_run = lines[lines.index(runs[0]) : lines.index(runs[1])]
    steps = [line.split()[0] for line in first_run if line.endswith("started")]
    assert steps[:5] == ["raw_prices", "landing_csv", "lake_parquet", "corporate_actions", "deduped_prices"] and "dashboard" in steps
    assert any(re.fullmatch(r"\s+raw_prices\s+done, 2 payloads, \d+\.\d s", line) for line in first_run)
    assert any(re.fullmatch(r"\s+redshift_table\s+done, 16 rows, \d+\.\d s", line) for line in first_run)
    assert first_run.index(next(x for x in first_run if "raw_prices" in x and "done" in x)) < first_run.index(next(x for x in first_run if x.startswith("stock_assets: run 1 of 3 succeeded (run ")))
    ended = [line for line in lines if re.match(r"stock_assets: run \d of 3 (succeeded|FAILED)", line)]
    assert [e.split(" (run ")[0] for e in ended] == [f"stock_assets: run {i} of 3 succeeded" for i in (1, 2, 3)]
    assert all(e.endswith("), checks failed: prices_fresh") for e in ended)  # January 2024 is not the latest session (WARN)
    # One summary for the command, at the end, every run's rows added up (2 symbols x 21 sessions).
    assert [line for line in lines if line.startswith("stock_assets: succeeded")] == ["stock_assets: succeeded, 3 runs (3 succeeded)"]
    end = lines[lines.index("stock_assets: succeeded, 3 runs (3 succeeded)") :]
    assert "  sessions     2024-01-02 .. 2024-01-31 (21)" in end[1] and any(re.fullmatch(r"\s+redshift_table\s+42 rows", x) for x in end)
    assert sum(line.strip() == "checks:" for line in lines) == 1 and any(re.fullmatch(r"\s+prices_not_null\s+passed", x) for x in end)
    assert "BetaWarning" not in done.stderr and "PreviewWarning" not in done.stderr  # Dagster's notices are not the user's


def test_a_bad_setting_is_one_line_and_no_traceback(tmp_path):
    env = environment(tmp_path, STOCK_ASSETS_INTERVAL="2min")
    for command in (["run", "--sessions", "2"], ["live"], ["rebuild", "--table", "lake/deduped"]):
        done = subprocess.run([sys.executable, "-m", "stock_assets.cli", *command], check=False, cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 2 and done.stdout == "", command
        assert done.stderr == "stock_assets: STOCK_ASSETS_INTERVAL='2min'; accepted: 1d, 60min, 30min, 15min, 5min, 1min\n", command


def test_the_backfill_policy_splits_a_one_minute_range_as_the_cli_does(tmp_path):
    symbols = ",".join(f"S{i:03d}" for i in range(100))
    env = environment(tmp_path, STOCK_ASSETS_SYMBOLS=symbols, STOCK_ASSETS_INTERVAL="1min", STOCK_ASSETS_PROVIDER="polygon")
    probe = (
        "from stock_assets.definitions import defs\n"
        "from stock_assets.cli import backfill_chunks\n"
        "from stock_assets.settings import Settings\n"
        "print(defs().resolve_assets_def('raw_prices').backfill_policy.max_partitions_per_run)\n"
        "print(len(backfill_chunks(Settings.from_env(), '2024-01-02', '2024-12-31')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert out == ["51", "5"]  # 100 symbols x 390 bars a session: 51 sessions (~2 M bars) a run; 252 sessions in 5 runs
