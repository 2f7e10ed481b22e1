"""deploy/ for real, with Docker: `make test-deploy` (deploy/test/run.sh installs and starts what
this needs, then runs it). Not part of `make test`: pytest's testpaths is stock_assets_tests.

deploy/README.md's steps, read from the README and run as written, in a copy of this checkout:
step 2 writes deploy/.env with the README's commands, then sets what to run; step 3 builds the
code-location and Dagster images from deploy/ and brings the compose stack up; step 5 starts the
schedule from the shell; step 6 is a backfill launched through the webserver's GraphQL API, as the
UI launches it; step 7 reads the prices from the warehouse and the lake from the bucket. Then a
run container is killed mid-run: run monitoring marks the run failed, the alert sensor posts to a
webhook the test serves on this host, and run retries start the run again.

What differs from the README (deploy/README.md, "How this is tested"): every `docker compose` also
reads deploy/test/compose.override.yaml (stand-ins for the registry images, BASE_IMAGE, the route
to the webhook); step 1 is a copy of the working tree instead of `git clone`; runs are sized small
(STOCK_ASSETS_ROWS_PER_RUN) so that a short backfill still splits into several runs, and created
with one planned event per asset (DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS) so that the
daemon creates them faster than they run.

DEPLOY_TEST_SOURCE=/path/to/a/clone deploys that checkout instead of this one.
"""

import contextlib
import fcntl
import http.server
import json
import math
import os
import re
import shutil
import socket
import struct
import subprocess
import textwrap
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(os.environ.get("DEPLOY_TEST_SOURCE") or ROOT)  # the checkout deployed (step 1)
LOGS = Path(os.environ.get("STOCK_ASSETS_TEST_LOGS") or ROOT / ".stock_assets" / "deploy-test")
BASE_IMAGE = os.environ.get("STOCK_ASSETS_TEST_BASE_IMAGE", "local/python:3.11-slim")

PRODUCTION = "docker compose -f deploy/docker-compose.yaml"
TESTED = f"{PRODUCTION} -f deploy/test/compose.override.yaml"
WEB = "http://127.0.0.1:3000"  # docker-compose.yaml publishes the webserver there (step 4)
LOCATION = {"repositoryLocationName": "stock_assets", "repositoryName": "__repository__"}

# What this deployment runs (step 2's "edit deploy/.env"): the README's five symbols, and runs of
# at most 250 bars, so 50 sessions a run: the backfill's 120 sessions make 3 runs.
SYMBOLS = ["AAPL", "MSFT", "NVDA", "IBM", "AMZN"]
ROWS_PER_RUN = 250
SESSIONS_PER_RUN = ROWS_PER_RUN // len(SYMBOLS)
BACKFILL_FIRST, BACKFILL_SESSIONS = "2024-01-02", 120
KILLED_FIRST = "2023-03-01"  # the run whose container is killed: one run of SESSIONS_PER_RUN sessions

FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
STARTED = time.monotonic()


def say(text: str):
    """Progress, for a person watching `make test-deploy` (run.sh runs pytest with -s)."""
    print(f"\n[test-deploy, test +{time.monotonic() - STARTED:.0f}s] {text}", flush=True)


# --- helpers --------------------------------------------------------------------------------------

def log_path(name: str) -> Path:
    LOGS.mkdir(parents=True, exist_ok=True)
    return LOGS / name


def sh(script: str, cwd: Path, timeout: float, what: str, check: bool = True) -> subprocess.CompletedProcess:
    """A shell script as a person would type it (bash, stop at the first error); its output is kept
    in LOGS/<what>.log and shown when it fails."""
    # Compose fills ${...} in docker-compose.yaml from the shell before deploy/.env: none of the
    # deployment's own variables may leak in from the environment the test runs in (make's, CI's).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DAGSTER_", "AWS_", "STOCK_ASSETS_")) or k.startswith("STOCK_ASSETS_TEST_")}
    env["STOCK_ASSETS_TEST_BASE_IMAGE"] = BASE_IMAGE
    started = time.monotonic()
    try:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode(errors="replace") + (err.stderr or b"").decode(errors="replace")
        log_path(f"{what}.log").write_text(out)
        pytest.fail(f"{what}: not done within {timeout:.0f} s\n$ {script}\n{out[-4000:]}")
    log_path(f"{what}.log").write_text(f"$ {script}\n(exit {done.returncode}, {time.monotonic() - started:.0f} s)\n"
                                       f"{done.stdout}\n--- stderr ---\n{done.stderr}")
    if check and done.returncode != 0:
        pytest.fail(f"{what}: exit {done.returncode}\n$ {script}\n{done.stdout[-3000:]}\n{done.stderr[-4000:]}")
    return done


def docker(*args: str, timeout: float = 60, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def wait_for(what: str, check, seconds: float, interval: float = 1.0, details=lambda: ""):
    """check()'s first truthy answer; fails naming what did not happen in time. A connection that
    fails or a GraphQL error is tried again; an assertion in check() fails at once."""
    deadline, last = time.monotonic() + seconds, None
    while True:
        try:
            if answer := check():
                return answer
        except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError) as err:
            last = err
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds:.0f} s (last error: {last!r})\n{details()}")
        time.sleep(interval)


def graphql(text: str, **variables) -> dict:
    body = json.dumps({"query": text, "variables": variables}).encode()
    request = urllib.request.Request(f"{WEB}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    if "errors" in answer:
        raise ValueError(f"GraphQL errors: {answer['errors']}")
    return answer["data"]


def run_info(run_id: str) -> dict:
    return graphql("""query($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
        runId status tags { key value } } } }""", id=run_id)["runOrError"]


def run_messages(run_id: str) -> list[str]:
    events = graphql("""query($id: ID!) { logsForRun(runId: $id, limit: 1000) { __typename
        ... on EventConnection { events { __typename ... on MessageEvent { message } } } } }""", id=run_id)
    return [e.get("message") or "" for e in events["logsForRun"]["events"]]


def launch_backfill(partitions: list[str], assets: list[dict]) -> str:
    """What the UI sends for "Materialize… → a partition range" with every asset selected."""
    launched = graphql("""mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
        __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } ... on Error { message } } }""",
                       p={"assetSelection": assets, "partitionNames": partitions, "fromFailure": False, "tags": []})
    launched = launched["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def backfill(backfill_id: str) -> dict:
    return graphql("""query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
        ... on PartitionBackfill { status runs { runId status startTime endTime tags { key value } } } } }""",
                   id=backfill_id)["partitionBackfillOrError"]


def tags_of(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["tags"]}


def run_containers() -> dict[str, dict]:
    """Run containers of this deployment, running or not: run id -> docker inspect."""
    ids = docker("ps", "-aq", "--filter", "label=dagster/run_id", "--filter", "ancestor=stock-assets-code").split()
    if not ids:
        return {}
    return {c["Config"]["Labels"]["dagster/run_id"]: c for c in json.loads(docker("inspect", *ids))}


class ContainerWatch:
    """Polls `docker ps` for running run containers (the DockerRunLauncher labels each with its run
    id) four times a second: which ran, and the most seen running at the same moment."""

    def __init__(self):
        self.seen: set[str] = set()
        self.most: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                running = set(docker("ps", "--filter", "label=dagster/run_id", "--format",
                                     '{{.Label "dagster/run_id"}}', timeout=20).split())
                self.seen |= running
                if len(running) > len(self.most):
                    self.most = running
            self._stop.wait(0.25)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join(timeout=30)


class Webhook(http.server.ThreadingHTTPServer):
    """A Slack incoming-webhook stand-in on this host: records every JSON body posted to it."""

    def __init__(self, host: str):
        self.posts: list[dict] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(handler):
                body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
                self.posts.append({"path": handler.path, "body": json.loads(body or b"{}")})
                handler.send_response(200)
                handler.end_headers()
                handler.wfile.write(b"ok")

            def log_message(handler, *args):
                pass

        super().__init__((host, 0), Handler)


def readme_steps(checkout: Path) -> dict[int, list[str]]:
    """deploy/README.md, "Deploy on one machine, step by step": each numbered step's ```sh blocks."""
    text = (checkout / "deploy" / "README.md").read_text()
    section = text.split("## Deploy on one machine, step by step", 1)[1].split("\n## ", 1)[0]
    steps = {}
    for match in re.finditer(r"^(\d+)\. \*\*.+?\*\*(.*?)(?=^\d+\. \*\*|\Z)", section, re.DOTALL | re.MULTILINE):
        blocks = re.findall(r"^([ ]*)```sh\n(.*?)^[ ]*```", match[2], re.DOTALL | re.MULTILINE)
        steps[int(match[1])] = [textwrap.dedent(block) for _, block in blocks]
    return steps


def with_override(script: str) -> str:
    """A README command as the test runs it: the same, with the test-only compose override."""
    assert PRODUCTION in script, script
    return script.replace(PRODUCTION, TESTED)


def set_env_lines(path: Path, values: dict[str, str]):
    """Step 2's "edit deploy/.env": set lines that are there, commented out or not (the README says
    keep every line)."""
    text = path.read_text()
    for key, value in values.items():
        text, count = re.subn(rf"^(# *)?{key}=.*$", f"{key}={value}", text, flags=re.MULTILINE)
        assert count == 1, f"deploy/.env.example has no line {key}= to set"
    path.write_text(text)


def compose_down(checkout: Path):
    """The services' and the runs' logs kept in LOGS, then the run containers and the stack removed
    (`down -v`: the volumes too). Each part is tried whatever happened to the one before."""
    quiet = contextlib.suppress(Exception, pytest.fail.Exception)
    with quiet:
        sh(f"{TESTED} logs --no-color --timestamps", checkout, 120, "compose-services", check=False)
    containers = {}
    with quiet:
        containers = run_containers()
    for run_id, container in containers.items():
        with quiet:
            out = subprocess.run(["docker", "logs", container["Id"]], capture_output=True, text=True, timeout=60, check=False)
            log_path(f"run-{run_id}.log").write_text(out.stdout + out.stderr)
    with quiet:
        if containers:
            docker("rm", "-f", *[c["Id"] for c in containers.values()], check=False, timeout=120)
    with quiet:
        sh(f"{TESTED} down -v --remove-orphans -t 10", checkout, 300, "compose-down", check=False)


# --- the stack --------------------------------------------------------------------------------------

def bridge_address() -> str:
    """This host as containers see it: the default bridge's address, which compose's host-gateway
    resolves to. The engine reports it as the bridge network's gateway, but not always (found empty
    on an engine's first start): then it is read from the bridge's interface."""
    gateway = docker("network", "inspect", "bridge", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}").strip()
    if gateway:
        return gateway
    name = docker("network", "inspect", "bridge", "-f", '{{index .Options "com.docker.network.bridge.name"}}').strip() or "docker0"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()))[20:24])  # SIOCGIFADDR


@pytest.fixture(scope="module")
def webhook():
    gateway = bridge_address()
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", gateway), gateway
    server = Webhook(gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://host.docker.internal:{server.server_address[1]}/services/T000/B000/{uuid.uuid4().hex}"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, webhook):
    """deploy/README.md steps 1-4; the stack taken down (volumes too) and its logs kept afterwards."""
    assert shutil.which("docker"), "no docker: run this through `make test-deploy`"
    docker("info", "--format", "{{.ServerVersion}}")
    assert not docker("ps", "-q", "--filter", "label=com.docker.compose.project=stock_assets").strip(), \
        "a compose project stock_assets is already running on this engine"

    # Step 1, "Get the code": this working tree, as git would give it (tracked and new files, not ignored ones).
    checkout = tmp_path_factory.mktemp("deploy") / "stock_assets"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=SOURCE,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (SOURCE / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(SOURCE / name, checkout / name)
    assert not (checkout / "deploy" / ".env").exists(), "deploy/.env must not be in the repository"
    steps = readme_steps(checkout)

    # Step 2, "Write the configuration": the README's commands, then what this deployment runs.
    say("step 1: a copy of the working tree; step 2: deploy/.env")
    [configure] = steps[2]
    sh(configure, checkout, 60, "step2-configure")
    env_file = checkout / "deploy" / ".env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    written = dict(re.findall(r"^(\w+)=(.*)$", env_file.read_text(), re.MULTILINE))
    assert re.fullmatch(r"[0-9a-f]{48}", written["DAGSTER_PG_PASSWORD"]), "step 2 did not set the PostgreSQL password"
    assert re.fullmatch(r"[0-9a-f]{48}", written["AWS_SECRET_ACCESS_KEY"]), "step 2 did not set the S3 secret"
    set_env_lines(env_file, {
        "STOCK_ASSETS_PROVIDER": "synthetic",  # offline: no provider is called
        "STOCK_ASSETS_SYMBOLS": ",".join(SYMBOLS),
        "STOCK_ASSETS_ROWS_PER_RUN": str(ROWS_PER_RUN),
        # The test's runs last seconds, not the minutes of a production run: with one planned event
        # per (asset, session) the daemon would take about as long to create each run as it runs.
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
        "STOCK_ASSETS_SLACK_WEBHOOK_URL": webhook.url,
    })

    # Step 3, "Build and start": the README's commands with the test-only override.
    [start] = steps[3]
    assert "up -d --build" in start
    try:
        say("step 3: building the images from deploy/ and starting the stack")
        started = sh(with_override(start), checkout, 900, "step3-build-and-start")
        say("step 3: the stack is up")
        yield {"checkout": checkout, "steps": steps, "step3": started, "env": env_file}
    finally:
        compose_down(checkout)


@pytest.fixture(scope="module")
def ui(stack):
    """Step 4: the webserver answers on 127.0.0.1:3000 with the code location loaded."""
    def loaded():
        entries = graphql("""{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
            locationOrLoadError { __typename ... on PythonError { message stack } } } } } }""")["workspaceOrError"]
        [entry] = entries["locationEntries"]
        if entry["loadStatus"] != "LOADED":
            return None
        error = entry["locationOrLoadError"]
        if error["__typename"] == "PythonError":
            pytest.fail(f"the code location failed to load in the webserver:\n{error['message']}\n{''.join(error['stack'])[-3000:]}")
        return entry

    wait_for("the webserver answering with the code location loaded", loaded, 240, 2,
             lambda: sh(f"{TESTED} ps -a", stack["checkout"], 60, "ps-webserver", check=False).stdout)
    say("step 4: the webserver answers, the code location is loaded")
    return stack


def asset_keys() -> list[dict]:
    """The daily graph's assets: every one but group live's (live_prices refreshes on its own schedule)."""
    nodes = graphql("{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
    return [{"path": n["assetKey"]["path"]} for n in nodes if n["groupName"] != "live"]


def sessions_from(first: str, count: int) -> list[str]:
    keys = graphql("""{ assetNodeOrError(assetKey: {path: ["raw_prices"]}) { ... on AssetNode { partitionKeys } } }""")
    keys = keys["assetNodeOrError"]["partitionKeys"]
    start = keys.index(first)
    return keys[start : start + count]


# --- the tests, in the README's order ---------------------------------------------------------------

def test_step3_builds_both_images_from_deploy_on_the_base_image_argument_and_starts_the_stack(stack):
    checkout = stack["checkout"]
    output = stack["step3"].stdout + stack["step3"].stderr
    for service in ("code-location", "webserver", "daemon"):
        assert re.search(rf"{service}\s+Built", output), f"{service} was not built by step 3\n{output[-3000:]}"
    base_layers = json.loads(docker("image", "inspect", BASE_IMAGE))[0]["RootFS"]["Layers"]
    for image in ("stock-assets-code", "stock-assets-dagster"):  # docker-compose.yaml's image names
        layers = json.loads(docker("image", "inspect", image))[0]["RootFS"]["Layers"]
        assert layers[: len(base_layers)] == base_layers, f"{image} is not built FROM {BASE_IMAGE} (the BASE_IMAGE argument)"

    states = [json.loads(line) for line in sh(f"{TESTED} ps -a --format json", checkout, 60, "step3-ps").stdout.splitlines()
              if line.strip()]
    by_service = {s["Service"]: s for s in states}
    assert set(by_service) == {"postgres", "minio", "minio-init", "code-location", "webserver", "daemon"}, states
    assert by_service["minio-init"]["State"] == "exited" and by_service["minio-init"]["ExitCode"] == 0, by_service["minio-init"]
    for name in ("postgres", "minio", "code-location"):
        assert by_service[name]["Health"] == "healthy", by_service[name]
    for name in ("webserver", "daemon"):
        assert by_service[name]["State"] == "running", by_service[name]


def test_step5_the_schedule_is_on_and_starts_from_the_shell(ui):
    [command] = ui["steps"][5]
    done = sh(with_override(command), ui["checkout"], 180, "step5-schedule-start")
    assert "Started schedule daily_prices_job_schedule" in done.stdout, done.stdout
    schedule = graphql("""query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) {
        ... on Schedule { scheduleState { status } } } }""", s={**LOCATION, "scheduleName": "daily_prices_job_schedule"})
    assert schedule["scheduleOrError"]["scheduleState"]["status"] == "RUNNING"


def test_step6_a_backfill_runs_in_several_run_containers_at_once_and_step7_finds_its_data(ui):
    nodes = graphql("{ assetNodes { assetKey { path } isPartitioned backfillPolicy { policyType maxPartitionsPerRun } } }")["assetNodes"]
    policies = {json.dumps(n["backfillPolicy"], sort_keys=True) for n in nodes if n["isPartitioned"]}
    # The page and the published pointer are one thing each: not partitioned, drawn once after the window's runs;
    # live_prices is the session in progress, replaced whole by each refresh.
    assert sorted("/".join(n["assetKey"]["path"]) for n in nodes if not n["isPartitioned"]) == ["dashboard", "live_prices", "published_prices"]
    expected = {"policyType": "MULTI_RUN", "maxPartitionsPerRun": SESSIONS_PER_RUN}
    assert policies == {json.dumps(expected, sort_keys=True)}, (
        f"the code location's backfill policy is {policies}, not {expected}: it does not size runs from "
        f"STOCK_ASSETS_ROWS_PER_RUN={ROWS_PER_RUN} with {len(SYMBOLS)} symbols (stock_assets/settings.py must read it)")

    sessions = sessions_from(BACKFILL_FIRST, BACKFILL_SESSIONS)
    expected_runs = math.ceil(BACKFILL_SESSIONS / SESSIONS_PER_RUN)
    with ContainerWatch() as watch:
        backfill_id = launch_backfill(sessions, asset_keys())
        say(f"step 6: backfill {backfill_id} of {len(sessions)} sessions launched, {expected_runs} runs expected")

        def done():
            state = backfill(backfill_id)
            runs = state["runs"]
            if state["status"] == "REQUESTED" or len(runs) <= expected_runs or not all(r["status"] in FINISHED for r in runs):
                return None
            return state

        state = wait_for(f"backfill {backfill_id} finishing its {expected_runs} runs", done, 600, 2,
                         lambda: json.dumps(backfill(backfill_id), indent=1)[-3000:])

    every_run = state["runs"]
    say(f"step 6: backfill {state['status']}, runs {[r['status'] for r in every_run]}; "
        f"{len(watch.most)} run containers seen running at once")
    assert state["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), state["status"]
    assert [r["status"] for r in every_run] == ["SUCCESS"] * len(every_run), every_run
    runs = [r for r in every_run if "dagster/asset_partition_range_start" in tags_of(r)]  # the window's runs
    unpartitioned = [r for r in every_run if r not in runs]  # then the page and the pointer, once
    assert len(runs) == expected_runs and 1 <= len(unpartitioned) <= 2, every_run
    assert min(r["startTime"] for r in unpartitioned) >= max(r["endTime"] for r in runs), every_run
    ranges = sorted((tags_of(r)["dagster/asset_partition_range_start"], tags_of(r)["dagster/asset_partition_range_end"])
                    for r in runs)
    chunks = [sessions[i : i + SESSIONS_PER_RUN] for i in range(0, len(sessions), SESSIONS_PER_RUN)]
    assert ranges == [(c[0], c[-1]) for c in chunks], "the multi-run policy split the range differently"

    # Never more than two runs at a time (dagster.yaml: dagster/backfill runs limited to 2), by Dagster's
    # clock. Whether two overlap there depends on how long a run lasts against the daemon's submissions
    # (a 40-session run now ends before the next starts); that runs go out in parallel containers is
    # checked below.
    moments = sorted([(r["startTime"], 1) for r in runs] + [(r["endTime"], -1) for r in runs], key=lambda m: (m[0], m[1]))
    in_progress = [sum(step for _, step in moments[: i + 1]) for i in range(len(moments))]
    assert 1 <= max(in_progress) <= 2, f"runs in progress at once: at most {max(in_progress)}, expected 1 or 2"

    # One container per run, from the code location's image, on the compose network, and at least two
    # seen running together (a container may outlive its run by a moment: more can be seen at once).
    run_ids = {r["runId"] for r in every_run}
    containers = run_containers()
    assert run_ids <= set(containers), f"runs without a container: {run_ids - set(containers)}"
    for run_id in run_ids:
        container = containers[run_id]
        assert container["Config"]["Image"] == "stock-assets-code"
        assert "stock_assets" in container["NetworkSettings"]["Networks"]
        assert container["State"]["ExitCode"] == 0, container["State"]
        assert tags_of(run_info(run_id))["docker/container_id"] == container["Id"]
    window_ids = {r["runId"] for r in runs}
    assert window_ids <= watch.seen, f"never seen running: {window_ids - watch.seen}"
    assert len(watch.most) >= 2, f"never two run containers running at once (at most: {watch.most})"

    # Step 7: the prices in the warehouse, the lake in the bucket, with the README's commands.
    checkout, [warehouse, lake] = ui["checkout"], ui["steps"][7]
    say("step 7: the warehouse and the lake")
    latest = sh(with_override(warehouse), checkout, 120, "step7-warehouse").stdout
    assert "(10 rows)" in latest, latest
    assert sessions[-1] in latest, latest  # the newest session loaded is the backfill's last
    count_query = with_override(warehouse).replace(
        "-c 'SELECT symbol, session, close FROM prices ORDER BY session DESC LIMIT 10'",
        "-Atc 'SELECT count(*), count(DISTINCT symbol), min(session), max(session) FROM prices'")
    assert count_query != with_override(warehouse), "step 7's warehouse command changed: update this test"
    counted = sh(count_query, checkout, 120, "step7-warehouse-count").stdout.strip()
    assert counted == f"{len(SYMBOLS) * BACKFILL_SESSIONS}|{len(SYMBOLS)}|{sessions[0]}|{sessions[-1]}", counted

    listing = sh(with_override(lake), checkout, 120, "step7-lake").stdout
    parquet = [line.split()[-1] for line in listing.splitlines() if line.strip().endswith(".parquet")]
    assert parquet, f"no Parquet file in the lake\n{listing[-3000:]}"
    # The bucket is new: all of it is this backfill's. The lake's Delta tables are partitioned by
    # year (stock_assets/lake/delta.py): each year of the range is in some key.
    years = sorted({s[:4] for s in sessions})
    missing = [y for y in years if not any(f"year={y}/" in key for key in parquet)]
    assert not missing, f"no Parquet file in the lake for {missing}\n{listing[-3000:]}"


def test_a_killed_run_container_fails_its_run_which_alerts_the_webhook_and_is_retried(ui, webhook):
    sessions = sessions_from(KILLED_FIRST, SESSIONS_PER_RUN)
    backfill_id = launch_backfill(sessions, asset_keys())

    def started():
        runs = backfill(backfill_id)["runs"]
        if len(runs) == 1 and runs[0]["status"] == "STARTED":
            container = run_containers().get(runs[0]["runId"])
            if container and container["State"]["Running"]:
                return runs[0]["runId"], container["Id"]
        assert not runs or runs[0]["status"] not in FINISHED, f"the run finished before it could be killed: {runs}"
        return None

    run_id, container = wait_for("the run's container running", started, 300, 0.2)
    docker("kill", container)  # the worker dies without a word: an OOM kill, a lost host
    killed_at = time.monotonic()
    say(f"killed the container of run {run_id} mid-run")

    # Run monitoring (dagster.yaml: poll_interval_seconds 30) finds the container exited: FAILURE.
    wait_for(f"run {run_id} marked FAILURE", lambda: run_info(run_id)["status"] == "FAILURE", 180, 2,
             lambda: json.dumps(run_info(run_id)))
    detected = time.monotonic() - killed_at
    say(f"run {run_id} marked FAILURE by run monitoring {detected:.0f} s after the kill")
    messages = "\n".join(run_messages(run_id))
    assert "Container status is exited" in messages, messages[-3000:]

    # The run-failure sensor (every 30 s) posts to STOCK_ASSETS_SLACK_WEBHOOK_URL, naming the run.
    def alerted():
        return [p for p in webhook.posts if run_id in p["body"].get("text", "")]

    [alert] = wait_for(f"an alert for run {run_id} at the webhook", alerted, 180, 2,
                       lambda: json.dumps(webhook.posts, indent=1)[-3000:])
    say(f"the alert for run {run_id} reached the webhook {time.monotonic() - killed_at:.0f} s after the kill")
    assert alert["path"] == "/" + webhook.url.split("/", 3)[3]
    assert alert["body"]["text"].startswith(":red_circle: stock_assets run failed"), alert
    assert f"http://localhost:3000/runs/{run_id}" in alert["body"]["text"]  # STOCK_ASSETS_UI_URL's link

    # Run retries (a run whose worker died is retried): a new run of the same range, which succeeds.
    def retried():
        runs = graphql("""query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results {
            runId status tags { key value } } } } }""", f={"tags": [{"key": "dagster/parent_run_id", "value": run_id}]})
        return runs["runsOrError"]["results"]

    [retry] = wait_for(f"a retry of run {run_id}", retried, 120, 2)
    assert tags_of(retry)["dagster/asset_partition_range_start"] == sessions[0]
    wait_for(f"the retry {retry['runId']} finishing", lambda: run_info(retry["runId"])["status"] in FINISHED, 300, 2)
    assert run_info(retry["runId"])["status"] == "SUCCESS"
    say(f"the retry {retry['runId']} succeeded")
