"""deploy/'s compose topology, run for real without Docker: the code location (deploy/Dockerfile's
CMD), `dagster-daemon run` and `dagster-webserver` as three processes on loopback, on the
production deploy/dagster.yaml with PostgreSQL storage (a throwaway database on the local server)
and compute logs and the lake on an S3 API (moto's server, reached through AWS_ENDPOINT_URL as
MinIO is in compose). What stands in for Docker: loopback addresses for the compose service names,
and Dagster's DefaultRunLauncher (a run process started by the code server) for the
DockerRunLauncher (a run container). Proves that a run launched through the webserver's GraphQL
API is queued, dequeued by the daemon, launched through the code server and succeeds, with its
events in PostgreSQL, its data in the lake and warehouse and its step logs in the bucket; that the
daemon runs every daemon the instance asks for; and deploy/README.md step 5's command."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import boto3
import psycopg2
import pytest
import yaml

from stock_assets_tests import test_deploy
from stock_assets_tests.conftest import ROOT
from stock_assets_tests.test_deploy import ASSETS, BUCKET, DEPLOY, dockerfile, free_port, query

pytestmark = pytest.mark.slow

deploy_database = test_deploy.deploy_database  # the fixture (a throwaway database), shared under its name

BIN = Path(sys.executable).parent
LOCATION = {"repositoryLocationName": "stock_assets", "repositoryName": "__repository__"}
PARTITION = "2024-01-03"
DEFAULT_LAUNCHER = {"module": "dagster", "class": "DefaultRunLauncher"}  # Dagster's default (instance/ref.py)


def graphql(port: int, text: str, **variables) -> dict:
    body = json.dumps({"query": text, "variables": variables}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


@pytest.fixture
def stack(deploy_database, s3_endpoint, tmp_path):
    """The three long-running processes of deploy/docker-compose.yaml, with the environment compose
    gives them; terminated (process group and all: runs are children of the code server) afterwards."""
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    config["run_launcher"] = DEFAULT_LAUNCHER  # no Docker engine: the only change
    (home := tmp_path / "dagster_home").mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    code_port, web_port = free_port(), free_port()
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=code_port)  # was code-location:4000
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    ws = str(tmp_path / "workspace.yaml")

    db, prefix = deploy_database, f"stack-test/{uuid.uuid4().hex[:8]}"
    with psycopg2.connect(**{k: db[k] for k in ("host", "port", "user", "password", "dbname")}) as con:
        con.cursor().execute("CREATE SCHEMA warehouse")  # compose: a database of its own on the same server
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOCK_ASSETS_", "DAGSTER_"))}  # AWS_*: moto
    env |= {
        "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1",
        "DAGSTER_PG_HOST": db["host"], "DAGSTER_PG_PORT": str(db["port"]), "DAGSTER_PG_USER": db["user"],
        "DAGSTER_PG_PASSWORD": db["password"], "DAGSTER_PG_DB": db["dbname"],
        "DAGSTER_COMPUTE_LOGS_BUCKET": BUCKET, "DAGSTER_COMPUTE_LOGS_PREFIX": f"{prefix}/compute-logs",
        "DAGSTER_EVENT_BATCH_SIZE": "1000",
        "STOCK_ASSETS_HOME": str(tmp_path / "stock_assets"), "STOCK_ASSETS_PROVIDER": "synthetic",
        "STOCK_ASSETS_SYMBOLS": "AAPL,MSFT", "STOCK_ASSETS_INTERVAL": "1d", "STOCK_ASSETS_START": "2024-01-02",
        "STOCK_ASSETS_LAKE_URL": f"s3://{BUCKET}/{prefix}/lake", "STOCK_ASSETS_UI_URL": f"http://127.0.0.1:{web_port}",
        "STOCK_ASSETS_WAREHOUSE_URL": f"postgresql://{db['user']}:{db['password']}@{db['host']}:{db['port']}/"
                                      f"{db['dbname']}?options=-csearch_path%3Dwarehouse",
    }
    code_server = json.loads(dockerfile("Dockerfile")["CMD"][-1])
    code_server[0] = str(BIN / "dagster")
    code_server[code_server.index("-h") + 1], code_server[code_server.index("-p") + 1] = "127.0.0.1", str(code_port)
    stack = SimpleNamespace(config=config, workspace=workspace, env=env, prefix=prefix, code_port=code_port,
                            web_port=web_port, db=db, processes={}, ws=ws)
    stack.logs = lambda: "\n".join(f"--- {name} (exit {p.poll()}) ---\n{(tmp_path / f'{name}.log').read_text()[-3000:]}"
                                   for name, p in stack.processes.items())

    def start(name: str, command: list[str]):
        with (tmp_path / f"{name}.log").open("w") as out:
            stack.processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                     start_new_session=True)

    try:
        start("code-server", code_server)
        # compose starts the webserver and daemon once the code location's health check passes: that check, here.
        compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
        health = compose["services"]["code-location"]["healthcheck"]["test"]  # ["CMD", "dagster", ..., "-p", "4000"]
        health = [str(BIN / "dagster"), *health[2:-1], str(code_port)]
        assert health[-2] == "-p"
        wait_for(stack, "the code location's health check", lambda: subprocess.run(
            health, check=False, env=env, capture_output=True, timeout=60).returncode == 0, 180)
        start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", ws])
        start("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port), "-w", ws])
        yield stack
    finally:
        for process in stack.processes.values():
            with contextlib.suppress(ProcessLookupError):  # the group: the code server's children, runs too
                os.killpg(process.pid, signal.SIGTERM)
        for process in stack.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for(stack, what: str, check, seconds: float):
    """check()'s first truthy answer; fails with the processes' logs if one exits or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if answer := check():
                return answer
        except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
            pass
        assert all(p.poll() is None for p in stack.processes.values()), f"a process exited\n{stack.logs()}"
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s\n{stack.logs()}"
        time.sleep(1)


def test_the_compose_topology_runs_a_queued_run_on_the_production_instance(stack):
    production = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert {k for k in production | stack.config if production.get(k) != stack.config.get(k)} == {"run_launcher"}
    shipped = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    shipped["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=stack.code_port)
    assert stack.workspace == shipped  # only the address of the code location differs

    nodes = wait_for(stack, "the webserver serving the asset graph",
                     lambda: graphql(stack.web_port, "{ assetNodes { assetKey { path } } }")["assetNodes"], 180)
    assert ASSETS <= {n["assetKey"]["path"][0] for n in nodes}

    tags = [{"key": "dagster/partition", "value": PARTITION}]
    launched = graphql(stack.web_port, """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
        __typename ... on LaunchRunSuccess { run { runId status } } ... on Error { message } } }""",
                       p={"selector": {**LOCATION, "jobName": "daily_prices_job"}, "executionMetadata": {"tags": tags}})
    launched = launched["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    assert launched["run"]["status"] == "QUEUED"  # the QueuedRunCoordinator: the webserver only enqueues

    def finished():
        status = graphql(stack.web_port, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                         id=run_id)["runOrError"]["status"]
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    assert wait_for(stack, f"run {run_id} finishing", finished, 180) == "SUCCESS", stack.logs()

    # What the stack wrote to PostgreSQL: the run, its path through the queue, its materializations.
    db = stack.db
    assert query(db, "SELECT status, partition FROM runs WHERE run_id = %s", run_id) == [("SUCCESS", PARTITION)]
    events = query(db, "SELECT dagster_event_type, asset_key FROM event_logs WHERE run_id = %s ORDER BY id", run_id)
    # ENQUEUED by the webserver, STARTING when the daemon dequeues it (Dagster writes no DEQUEUED event).
    lifecycle = ["PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_START", "PIPELINE_SUCCESS"]
    assert [t for t, _ in events if t.startswith("PIPELINE_")] == lifecycle
    assert ASSETS <= {json.loads(k)[0] for t, k in events if t == "ASSET_MATERIALIZATION"}
    [(grpc_info,)] = query(db, "SELECT value FROM run_tags WHERE run_id = %s AND key = '.dagster/grpc_info'", run_id)
    assert json.loads(grpc_info) == {"host": "127.0.0.1", "port": stack.code_port}  # launched through the code server
    daemons = {t for (t,) in query(db, "SELECT daemon_type FROM daemon_heartbeats")}
    # The queue, run monitoring and run retries (EVENT_LOG_CONSUMER) are each switched on by dagster.yaml.
    assert {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR", "MONITORING", "EVENT_LOG_CONSUMER"} <= daemons, daemons
    assert query(db, "SELECT count(*) FROM warehouse.prices") == [(2,)]  # two symbols, one session

    # The run process reached the S3 API too: the lake, and the compute logs of its steps.
    s3 = boto3.client("s3")
    lake = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{stack.prefix}/lake/").get("Contents", [])]
    assert any(k.endswith(".parquet") for k in lake), lake
    logs = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{stack.prefix}/compute-logs/storage/{run_id}/")["Contents"]
    # The steps print nothing to stdout, and empty files are not uploaded (skip_empty_files): stderr only.
    assert [Path(o["Key"]).suffix for o in logs] == [".err"], logs
    err = s3.get_object(Bucket=BUCKET, Key=logs[0]["Key"])["Body"].read()
    assert b'Started execution of step "raw_prices"' in err

    # deploy/README.md step 5, from the shell against the same instance and workspace. The schedule is
    # already on (default_status=RUNNING in the code, stored by the scheduler as DECLARED_IN_CODE), so
    # the command reports success and has nothing to change.
    def schedule_status():
        schedule = graphql(stack.web_port, """query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) {
            ... on Schedule { scheduleState { status } } } }""",
                       s={**LOCATION, "scheduleName": "daily_prices_job_schedule"})["scheduleOrError"]
        return schedule["scheduleState"]["status"]

    assert schedule_status() == "RUNNING"
    started = subprocess.run([str(BIN / "dagster"), "schedule", "start", "daily_prices_job_schedule", "-w", stack.ws],
                             check=False, cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0 and "Started schedule daily_prices_job_schedule" in started.stdout, started
    assert schedule_status() == "RUNNING"
    stored = wait_for(stack, "the scheduler storing the schedule's state", lambda: query(
        db, "SELECT status FROM instigators WHERE instigator_type = 'SCHEDULE' "
            "AND instigator_body LIKE '%%\"daily_prices_job_schedule\"%%'"), 60)
    assert stored == [("DECLARED_IN_CODE",)]
