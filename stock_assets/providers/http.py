"""One HTTP layer for every provider: timeouts, retries with backoff and jitter, rate limits,
and an API key that never reaches a log, a metadata entry or an error message."""

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from stock_assets.providers.budget import BudgetStoreError, DailyBudget, MemoryBudget, budget_for_url
from stock_assets.providers.errors import ProviderError, ThrottledError

log = logging.getLogger("stock_assets.providers")
_SECRETS: set[str] = set()


class _RedactSecrets(logging.Filter):
    """urllib3 logs request URLs at DEBUG, Alpha Vantage's key included: mask every key we hold."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for secret in _SECRETS:
            message = message.replace(secret, "***")
        record.msg, record.args = message, ()
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactSecrets())


class ServerError(ProviderError):
    """HTTP 5xx or a dropped connection: transient, retried."""

    retryable = True


class QuotaExhaustedError(ThrottledError):
    """The provider's requests-per-day budget is spent: waiting in this run would not help."""

    retryable = False


class BudgetUnavailableError(ProviderError):
    """The budget store (STOCK_ASSETS_PROVIDER_BUDGET_URL) failed mid-run after raw_prices had
    reached it: no request went out uncounted; the step retry tries again."""

    retryable = True


def quota_message(provider: str, per_day: int, day: dt.date, budget: DailyBudget) -> str:
    where = "across runs in STOCK_ASSETS_PROVIDER_BUDGET_URL" if not isinstance(budget, MemoryBudget) else "in this process"
    return (
        f"daily limit of {per_day} requests spent for {day} (UTC), counted {where}; it resets at 00:00 UTC: "
        f"re-run tomorrow to fetch the rest, or raise {provider.upper()}_REQUESTS_PER_DAY if your plan allows more"
    )


@dataclass
class RateLimiter:
    """Spaces requests evenly to stay under `per_minute`; refuses past `per_day` (a UTC day),
    counted in `budget`: shared by every process on the instance unless it is a MemoryBudget."""

    per_minute: float
    per_day: int | None = None
    budget: DailyBudget = field(default_factory=MemoryBudget)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    today: Callable[[], dt.date] = lambda: dt.datetime.now(dt.UTC).date()
    _next_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self, provider: str, symbol: str) -> float:
        """Block until a request may go out, counting it in the day's budget; returns the seconds
        waited. A spent budget raises QuotaExhaustedError at once, without waiting."""
        with self._lock:
            if self.per_day is not None:
                day = self.today()
                try:
                    taken = self.budget.take(provider, self.per_day, day)
                except BudgetStoreError as err:
                    raise BudgetUnavailableError(provider, symbol, str(err)) from None
                if taken is None:
                    raise QuotaExhaustedError(provider, symbol, quota_message(provider, self.per_day, day, self.budget))
            wait = max(0.0, self._next_at - self.clock())
            if wait:
                self.sleep(wait)
            self._next_at = self.clock() + 60.0 / self.per_minute
            return wait


_LIMITERS: dict[tuple[str, float, int | None, str], RateLimiter] = {}


def shared_limiter(provider: str, per_minute: float, per_day: int | None, budget_url: str = "") -> RateLimiter:
    """One limiter per provider and budget in this process, however many clients are built; the
    day's count lives at `budget_url` (STOCK_ASSETS_PROVIDER_BUDGET_URL), shared across processes."""
    key = (provider, per_minute, per_day, budget_url)
    if key not in _LIMITERS:
        _LIMITERS[key] = RateLimiter(per_minute, per_day, budget_for_url(budget_url))
    return _LIMITERS[key]


@dataclass
class HttpClient:
    provider: str
    limiter: RateLimiter
    secret: str | None = None  # redacted from everything we say
    retries: int = 4
    backoff_seconds: float = 2.0
    max_backoff_seconds: float = 60.0
    timeout: tuple[float, float] = (5.0, 60.0)  # connect, read
    headers: dict[str, str] = field(default_factory=dict)
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        if self.secret:
            _SECRETS.add(self.secret)

    def redact(self, text: str) -> str:
        if self.secret:
            for form in {self.secret, requests.utils.quote(self.secret, safe="")}:
                text = text.replace(form, "***")
        return text

    def get(self, url: str, params: dict, *, symbol: str, check: Callable[[bytes], None]) -> bytes:
        """GET until `check(body)` accepts the body; retry what is retryable, raise the rest."""
        for attempt in range(self.retries + 1):
            self.limiter.acquire(self.provider, symbol)
            retry_after = None
            try:
                response = self.session.get(url, params=params, headers=self.headers, timeout=self.timeout)
            except requests.RequestException as err:
                failure: ProviderError = ServerError(self.provider, symbol, self.redact(f"{type(err).__name__}: {err}"))
            else:
                log.info("%s %s -> HTTP %s", self.provider, self.redact(response.url), response.status_code)
                retry_after = _seconds(response.headers.get("Retry-After"))
                failure = self._classify(response, symbol, check)
                if failure is None:
                    return response.content
            if not failure.retryable or attempt == self.retries:
                if failure.retryable:
                    failure.args = (f"{failure.args[0]} (gave up after {attempt + 1} attempts)",)
                raise failure
            delay = min(retry_after, self.max_backoff_seconds) if retry_after is not None else self._backoff(attempt)
            log.warning("%s; retrying in %.2fs (attempt %d of %d)", failure, delay, attempt + 2, self.retries + 1)
            self.sleep(delay)
        raise AssertionError("unreachable")

    def _classify(self, response: requests.Response, symbol: str, check: Callable[[bytes], None]) -> ProviderError | None:
        code = response.status_code
        if code == 429:
            return ThrottledError(self.provider, symbol, "HTTP 429 Too Many Requests")
        if code >= 500:
            return ServerError(self.provider, symbol, f"HTTP {code}")
        try:
            check(response.content)  # a 4xx body usually says why (bad key, not authorized)
        except ProviderError as err:
            err.args = (self.redact(err.args[0]),)
            return err
        if code >= 400:
            return ProviderError(self.provider, symbol, f"HTTP {code}: {self.redact(response.text[:200])}")
        return None

    def _backoff(self, attempt: int) -> float:
        return min(self.max_backoff_seconds, self.backoff_seconds * 2**attempt) * random.uniform(0.5, 1.0)


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
