"""Shared fixtures: a throwaway STOCK_ASSETS_HOME per test and the code location built on it."""

import dataclasses
from pathlib import Path

import dagster as dg
import pytest

from stock_assets.definitions import build_defs
from stock_assets.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"
SYMBOLS = ("AAPL", "MSFT", "IBM")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path,
        provider="synthetic",
        symbols=SYMBOLS,
        interval="1d",
        start="2015-01-02",
        lake_url=str(tmp_path / "lake"),
        warehouse_url=f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
        synthetic_faults=(),
    )


def with_faults(settings: Settings, *faults: str) -> Settings:
    return dataclasses.replace(settings, synthetic_faults=faults)


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
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
