"""One HTTP layer for every provider: timeouts, retries with backoff and jitter, rate limits,
and an API key that never reaches a log, a metadata entry or an error message.

Retries are tenacity's: what to retry is ProviderError.retryable (a throttle can be an HTTP 200
body, so the status alone does not tell), the wait is the server's Retry-After (seconds or an
HTTP-date, read by urllib3's parser) or an exponential backoff with jitter. Each attempt goes
through the rate limiter, so every request, retries included, is spaced and counted in the
daily budget. (urllib3's own Retry would retry inside the connection pool, past the limiter and
the budget, and by status code only.)
"""

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
import tenacity
from urllib3.exceptions import InvalidHeader
from urllib3.util import Retry

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


class RetryAfterTooLongError(ThrottledError):
    """The server's Retry-After asks for a longer wait than this client waits (max_backoff_seconds):
    failing now, named, beats sleeping for an hour or retrying before the server allows it."""

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
    counted in `budget`: shared by every process on the instance unless it is a MemoryBudget.

    Ours on purpose: the spacing is the few lines under the lock below, and the per-day part must
    be a calendar count per UTC day in the shared budget store with a named refusal, which the
    sliding-window buckets of rate-limit libraries (pyrate-limiter) are not."""

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
    max_backoff_seconds: float = 60.0  # the longest wait between attempts, Retry-After included
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
        # backoff_seconds * 2**(n - 1) plus up to backoff_seconds of jitter, at most max_backoff_seconds
        backoff = tenacity.wait_exponential_jitter(multiplier=self.backoff_seconds, max=self.max_backoff_seconds, jitter=self.backoff_seconds)

        def wait(state: tenacity.RetryCallState) -> float:
            retry_after = getattr(state.outcome.exception(), "retry_after", None)  # set by _attempt, within the max
            return backoff(state) if retry_after is None else retry_after

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda err: isinstance(err, ProviderError) and err.retryable),
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=wait,
            sleep=self.sleep,
            before_sleep=lambda state: log.warning(
                "%s; retrying in %.2fs (attempt %d of %d)",
                state.outcome.exception(), state.upcoming_sleep, state.attempt_number + 1, self.retries + 1,
            ),
            reraise=True,
        )
        try:
            return retrying(self._attempt, url, params, symbol, check)
        except ProviderError as failure:
            if failure.retryable:  # retryable, so the attempts ran out
                failure.args = (f"{failure.args[0]} (gave up after {retrying.statistics['attempt_number']} attempts)",)
            raise

    def _attempt(self, url: str, params: dict, symbol: str, check: Callable[[bytes], None]) -> bytes:
        self.limiter.acquire(self.provider, symbol)
        try:
            response = self.session.get(url, params=params, headers=self.headers, timeout=self.timeout)
        except requests.RequestException as err:
            raise ServerError(self.provider, symbol, self.redact(f"{type(err).__name__}: {err}")) from None
        log.info("%s %s -> HTTP %s", self.provider, self.redact(response.url), response.status_code)
        failure = self._classify(response, symbol, check)
        if failure is None:
            return response.content
        if failure.retryable and (header := response.headers.get("Retry-After")) is not None:
            failure.retry_after = self._retry_after_seconds(header, failure, symbol)
        raise failure

    def _retry_after_seconds(self, header: str, failure: ProviderError, symbol: str) -> float | None:
        """Seconds the server asks us to wait (a number or an HTTP-date); None if unreadable.
        Longer than max_backoff_seconds: RetryAfterTooLongError, at once."""
        try:
            seconds = Retry().parse_retry_after(header)
        except InvalidHeader:
            return None  # our own backoff then
        if seconds > self.max_backoff_seconds:
            raise RetryAfterTooLongError(self.provider, symbol, (
                f"Retry-After: {header} asks for a wait longer than the {self.max_backoff_seconds:g} s this client "
                f"waits between attempts; re-run once it has passed ({failure.detail})"
            ))
        return seconds

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
