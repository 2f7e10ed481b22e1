"""Shared fixtures: a throwaway STOCK_ASSETS_HOME per test and the code location built on it."""

import dataclasses
import datetime as dt
import os
from pathlib import Path

# The suite's partitions start in 2012 so that the recorded 2012-2014 seed files can load.
os.environ["STOCK_ASSETS_START"] = "2012-01-03"
os.environ["STOCK_ASSETS_STEP_RETRY_DELAY_SECONDS"] = "0.2"  # the step retry policy, waited for real but briefly

from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from stock_assets.definitions import build_defs
from stock_assets.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = ("AAPL", "MSFT", "IBM")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path,
        provider="synthetic",
        symbols=SYMBOLS,
        interval="1d",
        start="2012-01-03",
        lake_url=str(tmp_path / "lake"),
        warehouse_url=f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
        synthetic_faults=(),
        step_retry_delay_seconds=0.2,  # the step retry policy, waited for real but briefly
    )


def with_faults(settings: Settings, *faults: str) -> Settings:
    return dataclasses.replace(settings, synthetic_faults=faults)


@pytest.fixture
def instance():
    # In memory: runs and their events are real, without SQLite writes for every event.
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def defs_for(settings: Settings) -> dg.Definitions:
    return build_defs(settings)


@pytest.fixture
def fake_api():
    from stock_assets_tests.fake_api import FakeApi

    api = FakeApi()
    yield api
    api.close()


def fixture_bytes(relpath: str) -> bytes:
    return (FIXTURES / relpath).read_bytes()


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API: moto's server on a loopback port, in a process of its own (a server thread
    in this process would wait on the GIL that delta-rs's native client holds), for the session."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError(f"moto server did not answer on {endpoint} within 30 s") from None
            time.sleep(0.1)
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1")
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="stock-assets-test")
    yield endpoint
    server.terminate()
    server.wait(timeout=10)
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.update({key: value})


@pytest.fixture
def s3_lake_url(s3_endpoint, request) -> str:
    """A fresh prefix in the session's bucket for each test."""
    import re

    return f"s3://stock-assets-test/{re.sub(r'[^A-Za-z0-9_-]', '-', request.node.name)[:60]}"  # a key any S3 client takes


# --- PostgreSQL for the warehouse tests ------------------------------------------------------

LOCAL_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """STOCK_ASSETS_TEST_POSTGRES_URL, else the local server (trust auth, database `test`).
    Without one the PostgreSQL tests are skipped, loudly; with CI set they fail instead."""
    import psycopg2

    from stock_assets.warehouse.common import redact_url

    url = os.environ.get("STOCK_ASSETS_TEST_POSTGRES_URL") or LOCAL_TEST_POSTGRES_URL
    try:
        psycopg2.connect(url, connect_timeout=5).close()
    except psycopg2.Error as err:
        reason = (
            f"NO POSTGRESQL at {redact_url(url)} ({str(err).strip()}): the PostgreSQL warehouse tests did not run. "
            "Start one or set STOCK_ASSETS_TEST_POSTGRES_URL."
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str):
    """A URL whose search_path is a schema of this test's own, dropped afterwards."""
    import uuid

    import psycopg2

    schema = f"test_{uuid.uuid4().hex[:12]}"
    con = psycopg2.connect(postgres_server_url)
    con.autocommit = True
    con.cursor().execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in postgres_server_url else "?"
    try:
        yield f"{postgres_server_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        con.cursor().execute(f'DROP SCHEMA "{schema}" CASCADE')
        con.close()


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    """`hour:minute` New York time on `day`."""
    return dt.datetime.combine(day, dt.time(hour, minute), ZoneInfo("America/New_York"))


@pytest.fixture
def moved_clock():
    """stock_assets.clock, reset after the test moved it."""
    from stock_assets import clock

    yield clock
    clock.reset()
