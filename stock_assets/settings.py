"""Configuration from the environment: the one place that reads the variables in README.md.

API keys are not read here: the provider resource takes them as dg.EnvVar, so they are
resolved at run time and never appear in config, logs or metadata.
"""

import datetime as dt
import math
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from stock_assets.schema import InvalidSymbolError, validate_symbol

INTERVALS = ("1d", "60min", "30min", "15min", "5min", "1min")
LIVE_INTERVALS = ("1min", "5min", "15min", "30min", "60min")  # the session in progress: intraday bars only
PROVIDERS = ("synthetic", "alphavantage", "polygon", "csvdir")
SYNTHETIC_FAULTS = ("nulls", "zeros", "duplicates", "ohlc", "missing_symbol", "missing_session", "split_jump")
BOOLEANS = ("true", "false", "1", "0", "yes", "no")
EARLIEST_START = "1990-01-02"  # the calendar's (and the synthetic market's) first session
# Free-tier budgets: Alpha Vantage 5/minute and 25/day, Polygon 5/minute.
DEFAULTS = {
    "alphavantage": {"base_url": "https://www.alphavantage.co", "per_minute": "5", "per_day": "25"},
    "polygon": {"base_url": "https://api.polygon.io", "per_minute": "5", "per_day": ""},
    "synthetic": {"base_url": "", "per_minute": "0", "per_day": ""},
    "csvdir": {"base_url": "", "per_minute": "0", "per_day": ""},  # files: no requests to count
}


BARS_PER_SESSION = {"1d": 1, "60min": 7, "30min": 13, "15min": 26, "5min": 78, "1min": 390}
ROWS_PER_RUN = 2_000_000  # what one in-process run holds comfortably in memory on a small machine
DAY, WEEK = 86_400, 604_800  # seconds: the longest waits a setting may ask for


def sessions_per_run(symbols: int, interval: str, rows_per_run: int = ROWS_PER_RUN) -> int:
    """How many sessions one run takes so that it holds at most rows_per_run bars."""
    return max(1, rows_per_run // (max(symbols, 1) * BARS_PER_SESSION[interval]))


def default_home(interval: str) -> str:
    """./.stock_assets, and a home of its own inside it for another interval (./.stock_assets/60min):
    a home holds one interval (a window loaded at 60min replaces its sessions' bars), so the hourly
    view of `STOCK_ASSETS_INTERVAL=60min make run SESSIONS=7` leaves the daily history as it is."""
    return "./.stock_assets" if interval == "1d" else f"./.stock_assets/{interval}"


class SettingsError(ValueError):
    """A setting that cannot work: the message names the variable and what it accepts."""


def _fail(name: str, value: str, accepted: str, why: str = "") -> SettingsError:
    shown = "<set>" if name in _SECRET_VARIABLES else repr(value)
    return SettingsError(f"{name}={shown}{': ' + why if why else ''}; accepted: {accepted}")


_SECRET_VARIABLES = {"STOCK_ASSETS_WAREHOUSE_URL", "STOCK_ASSETS_PROVIDER_BUDGET_URL"}  # may hold a password


def _number(env, name: str, default: str, kind=float, low: float = 0, high: float = 0, above: bool = False):
    """A finite number in [low, high] (in (low, high] when above): nan, inf and the absurd stop the load."""
    raw = env.get(name, default)
    accepted = f"{'a whole number' if kind is int else 'a number'} {'>' if above else '>='} {low:,} and <= {high:,}"
    try:
        value = kind(raw)
    except ValueError:
        raise _fail(name, raw, accepted) from None
    if not math.isfinite(value):
        raise _fail(name, raw, accepted, "not a finite number")
    if value < low or (above and value == low) or value > high:
        raise _fail(name, raw, accepted, "outside the range")
    return value


def _choice(env, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, default)
    if value not in choices:
        raise _fail(name, value, ", ".join(choices))
    return value


def _start(env, today: dt.date) -> str:
    raw = env.get("STOCK_ASSETS_START", "2015-01-02")
    accepted = f"a date YYYY-MM-DD from {EARLIEST_START} to today ({today})"
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise _fail("STOCK_ASSETS_START", raw, accepted) from None
    if not (dt.date.fromisoformat(EARLIEST_START) <= day <= today):
        raise _fail("STOCK_ASSETS_START", raw, accepted, "outside the range")
    return raw


def _missing(value: str, scheme: str) -> str:
    """What a URL lacks for its scheme to work ("" when nothing): checked at load, not at first use."""
    parts = urlsplit(value)
    parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    rest = value.split("://", 1)[1] if "://" in value else ""
    if scheme == "s3" and not parts.netloc:
        return "no bucket"
    if scheme in ("postgresql", "postgres", "redshift", "http", "https") and not parts.hostname:
        return "no host"
    if scheme in ("postgresql", "postgres", "redshift") and not parts.path.strip("/"):
        return "no database"
    if scheme in ("duckdb", "sqlite") and (not rest.strip("/") or rest.endswith("/") or scheme == "sqlite" and not rest.startswith("/")):
        return "no file path"
    if scheme == "file" and not parts.path.strip("/"):
        return "no path"
    return ""


def _url(name: str, value: str, schemes: tuple[str, ...], accepted: str) -> str:
    try:
        scheme = urlsplit(value).scheme
        missing = _missing(value, scheme)
    except ValueError as err:  # urlsplit's and .port's: a bracket or a port that cannot be
        raise _fail(name, value, accepted, "bad port" if "port" in str(err) else "not a URL") from None
    if scheme not in schemes and not (scheme == "" and "" in schemes):
        raise _fail(name, value, accepted, f"unsupported scheme {scheme!r}")
    if missing:
        raise _fail(name, value, accepted, missing)
    return value


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
    warehouse_lock_timeout_seconds: float = 60.0  # a DuckDB file or PostgreSQL lock held by someone else
    warehouse_statement_timeout_seconds: float = 3600.0  # PostgreSQL/Redshift: one statement at most
    provider_budget_url: str = ""  # where the daily request budget is counted (sqlite:///… or postgresql://…)
    pool_wait_seconds: float = 3600.0  # how long a command waits for the provider pool a live run holds
    rows_per_run: int = ROWS_PER_RUN  # the most bars one run of a backfill takes (STOCK_ASSETS_ROWS_PER_RUN)
    lake_retention_days: float = 30.0  # lake versions this recent stay readable "as of" (and the production one, always)
    csvdir_url: str = ""  # provider csvdir: the folder or s3://bucket/prefix holding <SYMBOL>.csv files
    live_interval: str = "5min"  # live_prices' bars of the session in progress (STOCK_ASSETS_LIVE_INTERVAL)
    live_refresh_minutes: int = 15  # live_session_schedule's period, from the open (STOCK_ASSETS_LIVE_REFRESH_MINUTES)

    @classmethod
    def from_env(cls, env: dict | None = None, today: dt.date | None = None) -> "Settings":
        """Every variable read and checked here, once: a bad one raises SettingsError naming it."""
        env = os.environ if env is None else env
        today = today or dt.date.today()
        interval = _choice(env, "STOCK_ASSETS_INTERVAL", "1d", INTERVALS)
        home = Path(env.get("STOCK_ASSETS_HOME") or default_home(interval)).resolve()
        raw_symbols = env.get("STOCK_ASSETS_SYMBOLS", "AAPL,MSFT,NVDA,IBM,AMZN")
        symbols = tuple(s.strip().upper() for s in raw_symbols.split(",") if s.strip())
        if not symbols:
            raise _fail("STOCK_ASSETS_SYMBOLS", raw_symbols, "a comma list of symbols, e.g. AAPL,MSFT", "no symbol")
        for symbol in symbols:
            try:
                validate_symbol(symbol)
            except InvalidSymbolError as err:
                raise _fail("STOCK_ASSETS_SYMBOLS", raw_symbols, "upper-case letters, digits, '.' or '-', 1-15 characters each", str(err)) from None
        provider = _choice(env, "STOCK_ASSETS_PROVIDER", "synthetic", PROVIDERS)
        prefix, defaults = provider.upper(), DEFAULTS[provider]
        faults = tuple(f.strip() for f in env.get("STOCK_ASSETS_SYNTHETIC_FAULTS", "").split(",") if f.strip())
        if unknown := [f for f in faults if f not in SYNTHETIC_FAULTS]:
            raise _fail("STOCK_ASSETS_SYNTHETIC_FAULTS", ",".join(faults), ", ".join(SYNTHETIC_FAULTS), f"unknown {unknown}")
        per_day = env.get(f"{prefix}_REQUESTS_PER_DAY", defaults["per_day"])
        lake_url = _url("STOCK_ASSETS_LAKE_URL", env.get("STOCK_ASSETS_LAKE_URL") or str(home / "lake"), ("", "file", "s3"),
                        "a local path or s3://bucket/prefix")
        warehouse_url = _url("STOCK_ASSETS_WAREHOUSE_URL", env.get("STOCK_ASSETS_WAREHOUSE_URL") or f"duckdb:///{home / 'warehouse.duckdb'}",
                             ("duckdb", "postgresql", "postgres", "redshift"), "duckdb:///path, postgresql://user@host:5432/db or redshift://user@host:5439/db")
        budget_url = _url("STOCK_ASSETS_PROVIDER_BUDGET_URL", env.get("STOCK_ASSETS_PROVIDER_BUDGET_URL") or f"sqlite:///{home / 'provider_budget.sqlite'}",
                          ("sqlite", "postgresql", "postgres"), "sqlite:///path or postgresql://user@host:5432/db")
        base_url = env.get(f"{prefix}_BASE_URL") or defaults["base_url"]  # "" for the providers that make no requests
        base_url = base_url and _url(f"{prefix}_BASE_URL", base_url, ("http", "https"), "http://host[:port] or https://host")
        csvdir_url = _url("STOCK_ASSETS_CSVDIR_URL", env.get("STOCK_ASSETS_CSVDIR_URL", ""), ("", "file", "s3"), "a local folder or s3://bucket/prefix")
        if provider == "csvdir" and not csvdir_url:
            raise _fail("STOCK_ASSETS_CSVDIR_URL", csvdir_url, "a local folder or s3://bucket/prefix", "required with STOCK_ASSETS_PROVIDER=csvdir")
        if provider == "csvdir" and interval != "1d":
            raise _fail("STOCK_ASSETS_INTERVAL", interval, "1d with STOCK_ASSETS_PROVIDER=csvdir", "csvdir files hold daily bars")
        return cls(
            home=home,
            provider=provider,
            symbols=symbols,
            interval=interval,
            start=_start(env, today),
            lake_url=lake_url,
            warehouse_url=warehouse_url,
            synthetic_faults=faults,
            provider_base_url=base_url,
            requests_per_minute=_number(env, f"{prefix}_REQUESTS_PER_MINUTE", defaults["per_minute"], high=100_000),
            requests_per_day=_number(env, f"{prefix}_REQUESTS_PER_DAY", per_day, int, 1, 10_000_000) if per_day else None,
            http_retries=_number(env, "STOCK_ASSETS_HTTP_RETRIES", "4", int, 0, 20),
            http_backoff_seconds=_number(env, "STOCK_ASSETS_HTTP_BACKOFF_SECONDS", "2", high=60),
            alphavantage_adjusted=_choice({k: v.lower() for k, v in env.items() if k == "ALPHAVANTAGE_ADJUSTED"}, "ALPHAVANTAGE_ADJUSTED", "false", BOOLEANS) in ("1", "true", "yes"),
            alphavantage_datatype=_choice(env, "ALPHAVANTAGE_DATATYPE", "json", ("json", "csv")),
            dq_jump_threshold=_number(env, "STOCK_ASSETS_DQ_JUMP_THRESHOLD", "0.25", high=10, above=True),
            warehouse_url_from_env=bool(env.get("STOCK_ASSETS_WAREHOUSE_URL")),
            redshift_iam_role=env.get("STOCK_ASSETS_REDSHIFT_IAM_ROLE") or None,
            slack_webhook_set=bool(env.get("STOCK_ASSETS_SLACK_WEBHOOK_URL")),
            ui_url=_url("STOCK_ASSETS_UI_URL", env.get("STOCK_ASSETS_UI_URL", "http://127.0.0.1:3000"), ("http", "https"), "http(s)://host[:port]"),
            step_retries=_number(env, "STOCK_ASSETS_STEP_RETRIES", "3", int, 0, 20),
            step_retry_delay_seconds=_number(env, "STOCK_ASSETS_STEP_RETRY_DELAY_SECONDS", "30", high=3600),
            warehouse_lock_timeout_seconds=_number(env, "STOCK_ASSETS_WAREHOUSE_LOCK_TIMEOUT_SECONDS", "60", low=1, high=DAY),
            warehouse_statement_timeout_seconds=_number(env, "STOCK_ASSETS_WAREHOUSE_STATEMENT_TIMEOUT_SECONDS", "3600", low=1, high=WEEK),
            provider_budget_url=budget_url,
            pool_wait_seconds=_number(env, "STOCK_ASSETS_POOL_WAIT_SECONDS", "3600", low=1, high=WEEK),
            lake_retention_days=_number(env, "STOCK_ASSETS_LAKE_RETENTION_DAYS", "30", high=36_500, above=True),
            rows_per_run=_number(env, "STOCK_ASSETS_ROWS_PER_RUN", str(ROWS_PER_RUN), int, 1, 1_000_000_000),
            csvdir_url=csvdir_url,
            live_interval=_choice(env, "STOCK_ASSETS_LIVE_INTERVAL", "5min", LIVE_INTERVALS),
            live_refresh_minutes=_number(env, "STOCK_ASSETS_LIVE_REFRESH_MINUTES", "15", int, 1, 390),  # 390: one session
        )
