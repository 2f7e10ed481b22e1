"""deploy/: the production dagster.yaml as a real instance (a throwaway database on the local
PostgreSQL, compute logs in a bucket on moto's S3 server) running a real two-session run; the
code location's start command run against the files its Dockerfile copies; and the compose
stack checked for what Docker would only tell us at `up` time (no Docker engine here)."""

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import dagster as dg
import psycopg2
import pytest
import yaml

from stock_assets.cli import materialize_range
from stock_assets_tests.conftest import ROOT, defs_for

DEPLOY = ROOT / "deploy"
BUCKET = "stock-assets-test"  # made by the s3_endpoint fixture
ASSETS = {"raw_prices", "landing_csv", "lake_parquet", "deduped_prices", "dq_report", "redshift_table", "indicators"}


# --- the production instance on real PostgreSQL and S3 -----------------------------------------

@pytest.fixture
def deploy_database():
    """A database of this test's own on the local PostgreSQL, dropped afterwards: its connection
    parameters. Skipped loudly without a server; with CI set, a missing server fails."""
    url = os.environ.get("STOCK_ASSETS_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        admin = psycopg2.connect(url, connect_timeout=5)
    except psycopg2.Error as err:
        reason = (f"NO POSTGRESQL at {url.split('@')[-1]} ({str(err).strip()}): the production dagster.yaml "
                  "was not tested. Start one or set STOCK_ASSETS_TEST_POSTGRES_URL.")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    admin.autocommit = True
    name = f"stock_assets_deploy_{uuid.uuid4().hex[:12]}"
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    params = {**admin.get_dsn_parameters(), "dbname": name, "password": admin.info.password or ""}
    try:
        yield params
    finally:
        admin.cursor().execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def production_instance(deploy_database, s3_endpoint, tmp_path, monkeypatch):
    """deploy/dagster.yaml, unchanged, in a fresh DAGSTER_HOME, with the variables compose would set."""
    prefix = f"deploy-test/{uuid.uuid4().hex[:8]}"
    env = {
        "DAGSTER_PG_HOST": deploy_database["host"], "DAGSTER_PG_PORT": str(deploy_database["port"]),
        "DAGSTER_PG_USER": deploy_database["user"], "DAGSTER_PG_PASSWORD": deploy_database["password"],
        "DAGSTER_PG_DB": deploy_database["dbname"],
        "DAGSTER_COMPUTE_LOGS_BUCKET": BUCKET, "DAGSTER_COMPUTE_LOGS_PREFIX": prefix,
        "DAGSTER_EVENT_BATCH_SIZE": "1000",  # the recommended setting for big backfills, exercised here
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance, prefix


def query(params: dict, sql: str, *args) -> list[tuple]:
    con = psycopg2.connect(**{k: params[k] for k in ("host", "port", "user", "password", "dbname")})
    try:
        with con.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_the_production_instance_is_what_deploy_readme_says(production_instance):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_docker import DockerRunLauncher
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    instance, _ = production_instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert instance.run_storage.postgres_url.startswith("postgresql+psycopg2://")  # the NOTIFY trap
    assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    queue = instance.get_concurrency_config().run_queue_config  # what the daemon dequeues by
    assert queue.max_concurrent_runs == 4
    assert [(t["key"], t["limit"]) for t in queue.tag_concurrency_limits] == [("dagster/backfill", 2)]
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    launcher = instance.run_launcher
    assert isinstance(launcher, DockerRunLauncher) and launcher.networks == ["stock_assets"]
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
    assert not instance.run_retries_retry_on_asset_or_op_failure
    assert not instance.get_settings("telemetry")["enabled"]


@pytest.mark.slow
def test_a_run_on_the_production_instance_lands_in_postgres_and_s3(production_instance, deploy_database, settings):
    instance, prefix = production_instance
    result = materialize_range(defs_for(settings), "2024-01-02", "2024-01-03", instance)
    assert result.success

    [(status,)] = query(deploy_database, "SELECT status FROM runs WHERE run_id = %s", result.run_id)
    assert status == "SUCCESS"
    counts = dict(query(deploy_database, "SELECT dagster_event_type, count(*) FROM event_logs "
                                         "WHERE run_id = %s GROUP BY 1", result.run_id))
    materialized = len(result.get_asset_materialization_events())
    assert counts["ASSET_MATERIALIZATION"] == materialized >= 2 * len(ASSETS)  # one per (asset, session)
    assert counts["ASSET_MATERIALIZATION_PLANNED"] >= materialized
    assert counts["PIPELINE_SUCCESS"] == counts["LOGS_CAPTURED"] == 1  # storage keeps the pre-1.0 name
    keys = {json.loads(k)[0] for (k,) in query(deploy_database, "SELECT asset_key FROM asset_keys")}
    assert ASSETS <= keys

    # Compute logs: the run's capture went through the S3 manager (LOGS_CAPTURED above); the quiet
    # in-process run prints nothing and empty files are not uploaded (skip_empty_files), so write a
    # log through the same manager and read it back from the bucket.
    s3, manager = boto3.client("s3"), instance.compute_log_manager
    run_logs = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/storage/{result.run_id}/").get("Contents", [])
    assert all(o["Size"] > 0 for o in run_logs)
    with manager.capture_logs(["deploy_test", "probe"]):
        print("written through the S3 compute log manager", flush=True)
    stored = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    assert f"{prefix}/storage/deploy_test/probe.out" in stored
    assert b"written through the S3 compute log manager" in manager.get_log_data(["deploy_test", "probe"]).stdout


# --- the code location image, without Docker ---------------------------------------------------

def dockerfile(name: str) -> dict[str, list]:
    """A deploy/ Dockerfile's instructions: {"FROM": [...], "RUN": [...], "COPY": [[source..., dest]], ...}."""
    text = re.sub(r"\\\n", " ", (DEPLOY / name).read_text())
    found = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, rest = line.split(None, 1)
            found.setdefault(word, []).append(shlex.split(rest) if word == "COPY" else rest)
    return found


def base_image(name: str) -> str:
    """The image a deploy/ Dockerfile builds FROM by default: its FROM with the build arguments'
    defaults (BASE_IMAGE, which `make test-deploy` sets to a local stand-in)."""
    image = dockerfile(name)
    defaults = dict(arg.split("=", 1) for arg in image.get("ARG", []) if "=" in arg)
    [source] = image["FROM"]
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], source)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_the_code_location_image_command_serves_the_definitions_from_the_copied_files(tmp_path):
    """deploy/Dockerfile's COPY lines laid out as in the image and its CMD run (on loopback): the
    gRPC server loads stock_assets.definitions from those files alone. The package on PYTHONPATH
    stands in for the image's install; Docker itself is not run."""
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._serdes import deserialize_value
    from dagster._utils.error import SerializableErrorInfo

    image = dockerfile("Dockerfile")
    assert base_image("Dockerfile") == "python:3.11-slim"
    cmd = json.loads(image["CMD"][-1])
    assert cmd[:3] == ["dagster", "code-server", "start"] and cmd[cmd.index("-m") + 1] == "stock_assets.definitions"
    assert cmd[cmd.index("-p") + 1] == "4000"

    app = tmp_path / "app"
    app.mkdir()
    for *sources, dest in image["COPY"]:
        if not dest.startswith("${"):  # the instance config goes to DAGSTER_HOME, not the app
            for source in sources:
                target = app / dest / Path(source).name if dest.endswith("/") else app / dest
                (shutil.copytree if (ROOT / source).is_dir() else shutil.copy)(ROOT / source, target)
    port = free_port()
    cmd[0] = str(Path(sys.executable).parent / "dagster")
    cmd[cmd.index("-h") + 1], cmd[cmd.index("-p") + 1] = "127.0.0.1", str(port)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(PYTHONPATH=str(app), STOCK_ASSETS_HOME=str(tmp_path / "home"))
    log = tmp_path / "code-server.log"
    server = subprocess.Popen(cmd, cwd=app, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        client, deadline = DagsterGrpcClient(port=port, host="127.0.0.1"), time.monotonic() + 90
        while client.health_check_query() != "SERVING":
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the code server did not start in 90 s"
            time.sleep(0.5)
        loaded = deserialize_value(client.list_repositories())
        assert not isinstance(loaded, SerializableErrorInfo), loaded.to_string()
        assert loaded.executable_path  # the image's python, which the run launcher reuses
        assert [s.attribute for s in loaded.repository_symbols] == ["defs"]
    finally:
        server.terminate()
        server.wait(timeout=30)


# --- the compose stack, checked statically (no Docker engine on the test machine) ----------------

def load(name: str):
    return yaml.safe_load((DEPLOY / name).read_text())


def env_example() -> dict[str, str]:
    """KEY=value lines of deploy/.env.example; `# KEY=` lines count as documented but unset."""
    found = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if m := re.fullmatch(r"(#\s*)?([A-Z][A-Z0-9_]*)=(.*)", line.strip()):
            found[m[2]] = None if m[1] else m[3]
    return found


def instance_env_vars() -> set[str]:
    """Every variable deploy/dagster.yaml reads ({env: X}) or hands to run containers."""
    def walk(node):
        if isinstance(node, dict):
            if set(node) == {"env"}:
                yield node["env"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    config = load("dagster.yaml")
    return set(walk(config)) | set(config["run_launcher"]["config"]["env_vars"])


def test_compose_services_build_or_pin_every_image():
    services = load("docker-compose.yaml")["services"]
    assert set(services) == {"postgres", "minio", "minio-init", "code-location", "webserver", "daemon"}
    for name, service in services.items():
        if "build" in service:
            context = DEPLOY / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file(), name
        else:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", service["image"]) and not service["image"].endswith(":latest"), name
    code = services["code-location"]
    assert (DEPLOY / code["build"]["context"]).resolve() == ROOT and code["build"]["dockerfile"] == "deploy/Dockerfile"
    assert code["environment"]["DAGSTER_CURRENT_IMAGE"] == code["image"]  # the image runs start from
    for name in ("webserver", "daemon"):
        assert services[name]["build"] == {"context": ".", "dockerfile": "Dockerfile.dagster"}
        assert services[name]["env_file"] == ".env"
    for *sources, _ in dockerfile("Dockerfile.dagster")["COPY"]:
        assert all((DEPLOY / s).is_file() for s in sources)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for *sources, _ in dockerfile("Dockerfile")["COPY"]:
        assert all((ROOT / s).exists() and (f"!{s}" in ignore or f"!{s}/" in ignore) for s in sources)


def test_both_images_install_the_same_dagster_release_with_its_integrations():
    code, host = dockerfile("Dockerfile"), dockerfile("Dockerfile.dagster")
    assert base_image("Dockerfile") == base_image("Dockerfile.dagster") == "python:3.11-slim"
    assert code["FROM"] == host["FROM"] == ["${BASE_IMAGE}"]  # a build argument: make test-deploy builds on a local one
    assert code["ARG"] == host["ARG"]  # one Dagster release on both sides of the gRPC connection
    assert code["ARG"][0] == "BASE_IMAGE=python:3.11-slim"
    assert re.fullmatch(r"DAGSTER_VERSION=1\.13\.\d+", code["ARG"][1])
    assert re.fullmatch(r"DAGSTER_LIBS_VERSION=0\.29\.\d+", code["ARG"][2])
    for package in ("dagster", "dagster-webserver", "dagster-postgres", "dagster-aws", "dagster-docker"):
        assert f'"{package}==' in " ".join(host["RUN"]), package
    assert any(run.startswith("pip install --no-cache-dir . ") for run in code["RUN"])  # the project itself


def test_the_workspace_points_at_the_code_location_service():
    from dagster._core.workspace.config_schema import ensure_workspace_config

    workspace = load("workspace.yaml")
    ensure_workspace_config(workspace, str(DEPLOY / "workspace.yaml"))
    [entry] = workspace["load_from"]
    assert entry["grpc_server"]["host"] in load("docker-compose.yaml")["services"]
    cmd = json.loads(dockerfile("Dockerfile")["CMD"][-1])
    assert str(entry["grpc_server"]["port"]) == cmd[cmd.index("-p") + 1]


def test_the_run_launcher_joins_runs_to_the_compose_network_and_volume():
    compose, launcher = load("docker-compose.yaml"), load("dagster.yaml")["run_launcher"]["config"]
    assert launcher["network"] == compose["networks"]["stock_assets"]["name"]
    volume = launcher["container_kwargs"]["volumes"][0].split(":")[0]
    assert compose["volumes"]["stock_assets_home"]["name"] == volume


def test_every_variable_the_instance_reads_is_documented_and_reaches_run_containers():
    documented, used = env_example(), instance_env_vars()
    assert used - set(documented) == set()
    daemon = load("docker-compose.yaml")["services"]["daemon"]
    # The DockerRunLauncher copies each env_vars entry from the daemon's environment and refuses
    # to launch when one is missing: .env (an uncommented line) or compose's environment must set it.
    set_for_daemon = {k for k, v in documented.items() if v is not None} | set(daemon["environment"])
    assert set(load("dagster.yaml")["run_launcher"]["config"]["env_vars"]) - set_for_daemon == set()
    compose_text = (DEPLOY / "docker-compose.yaml").read_text()
    assert set(re.findall(r"(?<!\$)\$\{(\w+)", compose_text)) - set(documented) == set()


def test_the_env_example_holds_no_secrets():
    for key, value in env_example().items():
        if re.search(r"PASSWORD|SECRET|API_KEY|WEBHOOK", key):
            assert not value, f"{key} must be empty in .env.example"
