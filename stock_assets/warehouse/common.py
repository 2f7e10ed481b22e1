"""What every warehouse engine shares: its errors, the window guard, URL redaction, quoting."""

import datetime as dt
import re
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.compute as pc


class WarehouseLoadError(RuntimeError):
    pass


class WarehouseConnectionError(RuntimeError):
    pass


class WarehouseLockedError(WarehouseConnectionError):
    """Someone else held the warehouse (a DuckDB file, a PostgreSQL table lock) for longer than
    STOCK_ASSETS_WAREHOUSE_LOCK_TIMEOUT_SECONDS; the message names what, who when known, and
    what to do. Nothing was changed."""


LOCK_TIMEOUT_VARIABLE = "STOCK_ASSETS_WAREHOUSE_LOCK_TIMEOUT_SECONDS"
STATEMENT_TIMEOUT_VARIABLE = "STOCK_ASSETS_WAREHOUSE_STATEMENT_TIMEOUT_SECONDS"


def load_error(table: str, first: dt.date, last: dt.date, why: str, secret: str | None = None) -> WarehouseLoadError:
    return WarehouseLoadError(
        f"loading {table} for sessions {first}..{last} failed and was rolled back: {redact(why, secret)}"
    )


def check_window(table: str, data: pa.Table, first: dt.date, last: dt.date, symbols=None) -> None:
    """Rows outside the window (its sessions, and its symbols when given) would survive the next
    re-load of their own window as duplicates."""
    if "session" not in data.column_names:
        raise load_error(table, first, last, "the data has no `session` column")
    if data.num_rows:
        low, high = pc.min(data["session"]).as_py(), pc.max(data["session"]).as_py()
        if low is None or low < first or high > last:
            raise load_error(table, first, last, f"rows hold sessions {low}..{high}, outside the window")
        if symbols is not None and (other := set(pc.unique(data["symbol"]).to_pylist()) - set(symbols)):
            raise load_error(table, first, last, f"rows hold symbols {', '.join(sorted(other))}, outside the window's {', '.join(sorted(symbols))}")


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}"))


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def quote(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"unsupported table or column name {name!r}: letters, digits and _ only")
    return f'"{name}"'
