"""The daily request budget is one count per (provider, UTC day) in STOCK_ASSETS_PROVIDER_BUDGET_URL,
shared by every run and process on the instance: real separate processes spend one budget
against a loopback server, and exactly the budget's requests reach it."""

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from stock_assets.cli import materialize_range
from stock_assets.providers.budget import budget_for_url
from stock_assets_tests.conftest import ROOT, defs_for, fixture_bytes

KEY = "SEKRIT-KEY-4711"
MSFT_2019 = fixture_bytes("alphavantage/time_series_daily_MSFT_compact_demo_2019_stockpoint.json")
TODAY = dt.datetime.now(dt.UTC).date()

# One process as a deployment runs it: settings from the environment, the resource as wired,
# a fetch of every symbol. It waits for `go` so that the processes really overlap.
FETCH = """
import json, sys, time
from pathlib import Path
from stock_assets.partitions import sessions_between
from stock_assets.providers.resource import provider_resource
from stock_assets.settings import Settings

settings = Settings.from_env()
client = provider_resource(settings).client()
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
result = client.fetch(list(settings.symbols), sessions_between("2015-01-02", "2019-06-03", "2019-06-28"), "1d")
print(json.dumps({"fetched": [p.symbol for p in result.payloads], "failures": result.failures}))
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def budget_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'provider_budget.sqlite'}"
    return request.getfixturevalue("postgres_url")


def start(tmp_path: Path, name: str, symbols: str, fake_api, budget_url: str) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "fetch.py"
    script.write_text(FETCH)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOCK_ASSETS_", "ALPHAVANTAGE_", "POLYGON_"))}
    env |= {
        "STOCK_ASSETS_HOME": str(tmp_path / name),
        "STOCK_ASSETS_PROVIDER": "alphavantage",
        "STOCK_ASSETS_SYMBOLS": symbols,
        "STOCK_ASSETS_HTTP_RETRIES": "0",
        "STOCK_ASSETS_PROVIDER_BUDGET_URL": budget_url,
        "ALPHAVANTAGE_API_KEY": KEY,
        "ALPHAVANTAGE_BASE_URL": fake_api.url,
        "ALPHAVANTAGE_REQUESTS_PER_MINUTE": "6000",
        "ALPHAVANTAGE_REQUESTS_PER_DAY": "3",
    }
    ready = tmp_path / f"{name}.ready"
    process = subprocess.Popen(
        [sys.executable, str(script), str(ready), str(tmp_path / "go")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    return process, ready


def finish(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_separate_processes_spend_one_budget(tmp_path, fake_api, budget_url):
    fake_api.route("/query", MSFT_2019)
    first, ready_first = start(tmp_path, "run1", "MSFT,IBM,AAPL", fake_api, budget_url)
    second, ready_second = start(tmp_path, "run2", "NVDA,AMZN,TSLA", fake_api, budget_url)
    deadline = time.monotonic() + 90
    while not (ready_first.exists() and ready_second.exists()) and time.monotonic() < deadline:
        time.sleep(0.02)
    (tmp_path / "go").touch()
    results = [finish(first), finish(second)]

    assert len(fake_api.requests) == 3  # the budget, across both processes
    fetched = [s for r in results for s in r["fetched"]]
    refused = {s: why for r in results for s, why in r["failures"].items()}
    assert len(fetched) == 3 and len(refused) == 3 and set(fetched) | set(refused) == {"MSFT", "IBM", "AAPL", "NVDA", "AMZN", "TSLA"}
    assert sorted(r.query["symbol"] for r in fake_api.requests) == sorted(fetched)
    for why in refused.values():
        assert why.startswith("QuotaExhaustedError") and "daily limit of 3 requests" in why
        assert "resets at 00:00 UTC" in why and "re-run tomorrow" in why and "ALPHAVANTAGE_REQUESTS_PER_DAY" in why
    assert budget_for_url(budget_url).used("alphavantage", TODAY) == 3

    third, _ = start(tmp_path, "run3", "MSFT", fake_api, budget_url)
    late = finish(third)
    assert late["fetched"] == [] and late["failures"]["MSFT"].startswith("QuotaExhaustedError")
    assert len(fake_api.requests) == 3  # refused without a request


def test_concurrent_takes_never_pass_the_limit(budget_url):
    granted, errors = [], []

    def spend():
        budget = budget_for_url(budget_url)  # a connection of its own, as another process has
        try:
            for _ in range(5):
                granted.append(budget.take("alphavantage", 17, TODAY))
        except Exception as err:  # noqa: BLE001 - surfaced below
            errors.append(err)

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(n for n in granted if n is not None) == list(range(1, 18))  # each count handed out once
    assert granted.count(None) == 40 - 17
    assert budget_for_url(budget_url).used("alphavantage", TODAY) == 17


def test_each_provider_and_utc_day_has_its_own_count(budget_url):
    budget = budget_for_url(budget_url)
    yesterday, tomorrow = TODAY - dt.timedelta(days=1), TODAY + dt.timedelta(days=1)
    assert [budget.take("alphavantage", 2, yesterday) for _ in range(3)] == [1, 2, None]
    assert [budget.take("alphavantage", 2, TODAY) for _ in range(3)] == [1, 2, None]  # a new day starts at 0
    assert budget.take("polygon", 2, TODAY) == 1
    assert budget.take("alphavantage", 0, tomorrow) is None and budget.used("alphavantage", tomorrow) == 0
    assert (budget.used("alphavantage", TODAY), budget.used("polygon", TODAY)) == (2, 1)


@pytest.fixture
def av_settings(settings, fake_api, monkeypatch):
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", KEY)
    return dataclasses.replace(
        settings, provider="alphavantage", symbols=("IBM", "MSFT"), provider_base_url=fake_api.url,
        requests_per_minute=6000, requests_per_day=2, http_retries=1, http_backoff_seconds=0.01,
        provider_budget_url=f"sqlite:///{settings.home / 'provider_budget.sqlite'}",
    )


def raw_prices_failure(result) -> tuple[list[str], str]:
    events = [e for e in result.all_events if e.step_key == "raw_prices"]
    [failure] = [e for e in events if e.event_type_value == "STEP_FAILURE"]
    return [e.event_type_value for e in events], str(failure.event_specific_data.error.message)


def test_a_spent_budget_fails_the_run_at_once_and_says_what_to_do(av_settings, fake_api, instance):
    budget = budget_for_url(av_settings.provider_budget_url)
    assert [budget.take("alphavantage", 2, TODAY) for _ in range(2)] == [1, 2]  # another run spent today's budget
    fake_api.route("/query", MSFT_2019)

    result = materialize_range(defs_for(av_settings), "2019-06-03", "2019-06-28", instance)

    assert not result.success and fake_api.requests == []
    kinds, text = raw_prices_failure(result)
    assert kinds.count("STEP_START") == 1 and "STEP_UP_FOR_RETRY" not in kinds  # not retried by the step
    assert "QuotaExhaustedError" in text and "IBM" in text and "MSFT" in text
    assert "daily limit of 2 requests" in text and "resets at 00:00 UTC" in text and "ALPHAVANTAGE_REQUESTS_PER_DAY" in text


def test_an_unreachable_budget_store_fails_before_any_request(av_settings, fake_api, instance, tmp_path):
    (tmp_path / "afile").write_text("not a directory")
    settings = dataclasses.replace(av_settings, provider_budget_url=f"sqlite:///{tmp_path / 'afile' / 'budget.sqlite'}")
    fake_api.route("/query", MSFT_2019)

    result = materialize_range(defs_for(settings), "2019-06-03", "2019-06-28", instance)

    assert not result.success and fake_api.requests == []
    kinds, text = raw_prices_failure(result)
    assert "STEP_UP_FOR_RETRY" not in kinds and "STOCK_ASSETS_PROVIDER_BUDGET_URL" in text



def at_once(calls) -> list[Exception]:
    """Run the calls in threads released together; the errors they raised."""
    barrier, errors = threading.Barrier(len(calls)), []

    def call(fn):
        barrier.wait()
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - returned to the test
            errors.append(err)

    threads = [threading.Thread(target=call, args=(fn,)) for fn in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_processes_creating_the_postgresql_budget_at_once_all_get_it(postgres_url):
    """CREATE TABLE IF NOT EXISTS alone fails in one of two sessions that run it at the same moment."""
    for round_ in range(30):
        with psycopg2.connect(postgres_url) as con, con.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS provider_requests")
        budgets = [budget_for_url(postgres_url) for _ in range(8)]  # each its own connection, as processes have
        assert at_once([lambda b=b: b.take("polygon", 100, TODAY) for b in budgets]) == [], f"round {round_}"
        assert budget_for_url(postgres_url).used("polygon", TODAY) == 8
