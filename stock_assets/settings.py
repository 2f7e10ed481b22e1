"""Configuration from the environment: the only place that reads STOCK_ASSETS_* variables."""

import os
from dataclasses import dataclass
from pathlib import Path

from stock_assets.schema import validate_symbol

INTERVALS = ("1d", "60min", "30min", "15min", "5min", "1min")


@dataclass(frozen=True)
class Settings:
    home: Path
    provider: str
    symbols: tuple[str, ...]
    interval: str
    start: str
    lake_url: str
    warehouse_url: str
    synthetic_faults: tuple[str, ...]

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        home = Path(env.get("STOCK_ASSETS_HOME") or "./.stock_assets").resolve()
        symbols = tuple(
            validate_symbol(s.strip().upper())
            for s in env.get("STOCK_ASSETS_SYMBOLS", "AAPL,MSFT,NVDA,IBM,AMZN").split(",")
            if s.strip()
        )
        interval = env.get("STOCK_ASSETS_INTERVAL", "1d")
        if interval not in INTERVALS:
            raise ValueError(f"STOCK_ASSETS_INTERVAL={interval!r} is not one of {', '.join(INTERVALS)}")
        faults = tuple(f.strip() for f in env.get("STOCK_ASSETS_SYNTHETIC_FAULTS", "").split(",") if f.strip())
        return cls(
            home=home,
            provider=env.get("STOCK_ASSETS_PROVIDER", "synthetic"),
            symbols=symbols,
            interval=interval,
            start=env.get("STOCK_ASSETS_START", "2015-01-02"),
            lake_url=env.get("STOCK_ASSETS_LAKE_URL") or str(home / "lake"),
            warehouse_url=env.get("STOCK_ASSETS_WAREHOUSE_URL") or f"duckdb:///{home / 'warehouse.duckdb'}",
            synthetic_faults=faults,
        )
