"""The daily request budget, counted where every run and process on the instance sees it.

STOCK_ASSETS_PROVIDER_BUDGET_URL says where: `sqlite:///path` (default
$STOCK_ASSETS_HOME/provider_budget.sqlite; `sqlite:////abs` or `sqlite:///relative`, as SQLAlchemy
reads them) or `postgresql://user@host:5432/db` for a deployment whose runs live in containers
of their own. One row per (provider, UTC day) holds the requests sent. Taking one is a single
UPSERT that adds 1 only while the count is below the limit and returns the new count, so two
processes can never both take the last request; nothing else needs a lock. A refused take
changes nothing. The count is taken just before a request goes out: a request that then fails
still counts, as it does at the provider.
"""

import datetime as dt
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2

from stock_assets.warehouse.common import redact, redact_url

VARIABLE = "STOCK_ASSETS_PROVIDER_BUDGET_URL"
TABLE = "provider_requests"
CREATE_SQL = f"CREATE TABLE IF NOT EXISTS {TABLE} (provider TEXT NOT NULL, day TEXT NOT NULL, used INTEGER NOT NULL, PRIMARY KEY (provider, day))"
# The same statement in both dialects: insert 1, or add 1 while below the limit; no row back when refused.
TAKE_SQL = (
    f"INSERT INTO {TABLE} (provider, day, used) VALUES ({{p}}, {{p}}, 1) "
    f"ON CONFLICT (provider, day) DO UPDATE SET used = {TABLE}.used + 1 WHERE {TABLE}.used < {{p}} RETURNING used"
)
USED_SQL = f"SELECT used FROM {TABLE} WHERE provider = {{p}} AND day = {{p}}"
BUSY_TIMEOUT_SECONDS = 30.0  # SQLite: how long a writer waits for another one's transaction
CONNECT_TIMEOUT_SECONDS = 10  # PostgreSQL


class BudgetStoreError(RuntimeError):
    """The budget store cannot be reached or written; the message names STOCK_ASSETS_PROVIDER_BUDGET_URL."""


class MemoryBudget:
    """Counted in this process only: what a client built without a budget URL (tests) gets."""

    def __init__(self):
        self._used: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def check(self) -> None:
        pass

    def take(self, provider: str, limit: int, day: dt.date) -> int | None:
        with self._lock:
            used = self._used.get((provider, day.isoformat()), 0)
            if used >= limit:
                return None
            self._used[(provider, day.isoformat())] = used + 1
            return used + 1

    def used(self, provider: str, day: dt.date) -> int:
        return self._used.get((provider, day.isoformat()), 0)

    def describe(self) -> str:
        return "this process only"


class StoredBudget:
    """What the SQLite and PostgreSQL stores share: a connection of its own for every call."""

    _ready = False  # the table is created once per object (set on the instance)

    def check(self) -> None:
        self._connect().close()

    def take(self, provider: str, limit: int, day: dt.date) -> int | None:
        """The request's number today, or None when the limit is reached (nothing changed)."""
        if limit <= 0:
            return None
        con = self._connect()
        try:
            return self._take(con, provider, limit, day)
        finally:
            con.close()


@dataclass
class SQLiteBudget(StoredBudget):
    path: Path

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; BEGIN IMMEDIATE below takes the write lock.
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
            if not self._ready:
                con.execute(CREATE_SQL)
                self._ready = True
            return con
        except (OSError, sqlite3.Error) as err:
            raise BudgetStoreError(f"cannot open the provider budget {self.describe()} ({VARIABLE}): {err}") from None

    def _take(self, con: sqlite3.Connection, provider: str, limit: int, day: dt.date) -> int | None:
        try:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute(TAKE_SQL.format(p="?"), [provider, day.isoformat(), limit]).fetchone()
            con.execute("COMMIT")
            return row[0] if row else None
        except sqlite3.Error as err:
            raise BudgetStoreError(f"cannot count a request in the provider budget {self.describe()} ({VARIABLE}): {err}") from None

    def used(self, provider: str, day: dt.date) -> int:
        con = self._connect()
        try:
            row = con.execute(USED_SQL.format(p="?"), [provider, day.isoformat()]).fetchone()
            return row[0] if row else 0
        finally:
            con.close()


@dataclass
class PostgresBudget(StoredBudget):
    url: str

    def describe(self) -> str:
        return redact_url(self.url)

    def _fail(self, doing: str, err: Exception) -> BudgetStoreError:
        why = redact(str(err).strip(), urlsplit(self.url).password)
        return BudgetStoreError(f"cannot {doing} the provider budget {self.describe()} ({VARIABLE}): {why}")

    def _connect(self):
        try:
            given = psycopg2.extensions.parse_dsn(self.url)  # a connect_timeout in the URL wins
            con = psycopg2.connect(self.url, **({} if "connect_timeout" in given else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}))
        except psycopg2.Error as err:
            raise self._fail("connect to", err) from None
        if not self._ready:
            try:
                with con.cursor() as cur:
                    # IF NOT EXISTS alone races on the catalog when two processes create it at once.
                    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"stock_assets.{TABLE}"])
                    cur.execute(CREATE_SQL)
                con.commit()
            except psycopg2.Error as err:
                con.close()
                raise self._fail("create the table of", err) from None
            self._ready = True
        return con

    def _take(self, con, provider: str, limit: int, day: dt.date) -> int | None:
        try:
            with con.cursor() as cur:
                cur.execute(TAKE_SQL.format(p="%s"), [provider, day.isoformat(), limit])
                row = cur.fetchone()
            con.commit()
            return row[0] if row else None
        except psycopg2.Error as err:
            raise self._fail("count a request in", err) from None

    def used(self, provider: str, day: dt.date) -> int:
        con = self._connect()
        try:
            with con.cursor() as cur:
                cur.execute(USED_SQL.format(p="%s"), [provider, day.isoformat()])
                row = cur.fetchone()
            return row[0] if row else 0
        finally:
            con.close()


DailyBudget = MemoryBudget | SQLiteBudget | PostgresBudget


def budget_for_url(url: str) -> DailyBudget:
    """The store for STOCK_ASSETS_PROVIDER_BUDGET_URL; an empty URL counts in this process only."""
    if not url:
        return MemoryBudget()
    scheme = urlsplit(url).scheme
    if scheme == "sqlite" and url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return SQLiteBudget(Path(url[len("sqlite:///") :]))
    if scheme in ("postgresql", "postgres"):
        return PostgresBudget(url)
    raise BudgetStoreError(f"{VARIABLE}={redact_url(url)!r}: use sqlite:///path or postgresql://user@host:5432/db")
