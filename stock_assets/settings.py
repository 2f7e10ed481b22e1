"""Configuration from the environment: the one place that reads the variables in README.md.

API keys are not read here: the provider resource takes them as dg.EnvVar, so they are
resolved at run time and never appear in config, logs or metadata.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from stock_assets.schema import validate_symbol

INTERVALS = ("1d", "60min", "30min", "15min", "5min", "1min")
PROVIDERS = ("synthetic", "alphavantage", "polygon")
# Free-tier budgets: Alpha Vantage 5/minute and 25/day, Polygon 5/minute.
DEFAULTS = {
    "alphavantage": {"base_url": "https://www.alphavantage.co", "per_minute": "5", "per_day": "25"},
    "polygon": {"base_url": "https://api.polygon.io", "per_minute": "5", "per_day": ""},
    "synthetic": {"base_url": "", "per_minute": "0", "per_day": ""},
}


@dataclass(frozen=True)
class Settings:
    home: Path
    provider: str
    symbols: tuple[str, ...]
    interval: str
    start: str
    lake_url: str
    warehouse_url: str
    synthetic_faults: tuple[str, ...] = ()
    provider_base_url: str = ""
    requests_per_minute: float = 0
    requests_per_day: int | None = None
    http_retries: int = 4
    http_backoff_seconds: float = 2.0
    alphavantage_adjusted: bool = False
    alphavantage_datatype: str = "json"
    dq_jump_threshold: float = 0.25
    warehouse_url_from_env: bool = False  # then the resource reads it as a dg.EnvVar: it may hold a password
    redshift_iam_role: str | None = None
    slack_webhook_set: bool = False  # the URL itself is a secret, read as a dg.EnvVar
    ui_url: str = "http://127.0.0.1:3000"
    step_retries: int = 3
    step_retry_delay_seconds: float = 30.0

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
        provider = env.get("STOCK_ASSETS_PROVIDER", "synthetic")
        if provider not in PROVIDERS:
            raise ValueError(f"STOCK_ASSETS_PROVIDER={provider!r} is not one of {', '.join(PROVIDERS)}")
        prefix, defaults = provider.upper(), DEFAULTS[provider]
        per_day = env.get(f"{prefix}_REQUESTS_PER_DAY", defaults["per_day"])
        return cls(
            home=home,
            provider=provider,
            symbols=symbols,
            interval=interval,
            start=env.get("STOCK_ASSETS_START", "2015-01-02"),
            lake_url=env.get("STOCK_ASSETS_LAKE_URL") or str(home / "lake"),
            warehouse_url=env.get("STOCK_ASSETS_WAREHOUSE_URL") or f"duckdb:///{home / 'warehouse.duckdb'}",
            synthetic_faults=tuple(f.strip() for f in env.get("STOCK_ASSETS_SYNTHETIC_FAULTS", "").split(",") if f.strip()),
            provider_base_url=env.get(f"{prefix}_BASE_URL") or defaults["base_url"],
            requests_per_minute=float(env.get(f"{prefix}_REQUESTS_PER_MINUTE", defaults["per_minute"])),
            requests_per_day=int(per_day) if per_day else None,
            http_retries=int(env.get("STOCK_ASSETS_HTTP_RETRIES", "4")),
            http_backoff_seconds=float(env.get("STOCK_ASSETS_HTTP_BACKOFF_SECONDS", "2")),
            alphavantage_adjusted=env.get("ALPHAVANTAGE_ADJUSTED", "false").lower() in ("1", "true", "yes"),
            alphavantage_datatype=env.get("ALPHAVANTAGE_DATATYPE", "json"),
            dq_jump_threshold=float(env.get("STOCK_ASSETS_DQ_JUMP_THRESHOLD", "0.25")),
            warehouse_url_from_env=bool(env.get("STOCK_ASSETS_WAREHOUSE_URL")),
            redshift_iam_role=env.get("STOCK_ASSETS_REDSHIFT_IAM_ROLE") or None,
            slack_webhook_set=bool(env.get("STOCK_ASSETS_SLACK_WEBHOOK_URL")),
            ui_url=env.get("STOCK_ASSETS_UI_URL", "http://127.0.0.1:3000"),
            step_retries=int(env.get("STOCK_ASSETS_STEP_RETRIES", "3")),
            step_retry_delay_seconds=float(env.get("STOCK_ASSETS_STEP_RETRY_DELAY_SECONDS", "30")),
        )
