"""When live_prices is refreshed and how fresh it must be, from the NYSE calendar (no Dagster):
live_session_schedule's ticks and the calendar-aware freshness its check reports."""

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from stock_assets.calendar import NY, is_session, session_bounds
from stock_assets.live import TABLE, session_in_progress
from stock_assets.warehouse.ddl import window_sql

REGULAR_OPEN, CLOSES = (9, 30), ((16, 0), (13, 0))  # New York; 13:00: the exchange's early closes
GRACE = dt.timedelta(minutes=5)  # a refresh's own run time, and a late daemon tick


def schedule_crons(minutes: int) -> list[str]:
    """Cron strings (New York time, weekdays) ticking every `minutes` from the regular open, and at
    each close (16:00, and 13:00 for early closes): one string per hour. refresh_due says which
    ticks of which days refresh."""
    first = REGULAR_OPEN[0] * 60 + REGULAR_OPEN[1]
    ticks = set(range(first + minutes, CLOSES[0][0] * 60 + 1, minutes)) | {h * 60 + m for h, m in CLOSES}
    hours: dict[int, list[int]] = {}
    for tick in sorted(ticks):
        hours.setdefault(tick // 60, []).append(tick % 60)
    return [f"{','.join(map(str, mins))} {hour} * * 1-5" for hour, mins in sorted(hours.items())]


def refresh_due(at: dt.datetime, minutes: int) -> str | None:
    """None when the schedule's tick at `at` refreshes: an NYSE session, after the open, every
    `minutes` from it, the last at the close (an early close too); else why it does not."""
    local = at.astimezone(ZoneInfo(NY))
    if not is_session(local.date()):
        return f"{local.date()} ({local:%A}) is not an NYSE session: weekend or exchange holiday"
    opened, closes = session_bounds(local.date())
    shown = closes.astimezone(ZoneInfo(NY))
    if at <= opened:
        return f"{local:%H:%M} New York: before the open ({opened.astimezone(ZoneInfo(NY)):%H:%M})"
    if at > closes:
        early = "early " if (shown.hour, shown.minute) != CLOSES[0] else ""
        return f"{local:%H:%M} New York: after the {early}close ({shown:%H:%M}) of {local.date()}"
    if at != closes and (at - opened) % dt.timedelta(minutes=minutes):
        return f"{local:%H:%M} New York: not one of the session's {minutes}-minute ticks from the open"
    return None


def newest_as_of(warehouse, session: dt.date) -> dict[str, dt.datetime]:
    """Each symbol's latest as_of among the warehouse's live rows of `session`."""
    if not warehouse.table_exists(TABLE):
        return {}
    found = warehouse.query(f"SELECT symbol, max(as_of) AS as_of FROM {TABLE} WHERE {window_sql(session, session)} GROUP BY symbol")
    return dict(zip(found["symbol"].to_pylist(), found["as_of"].to_pylist()))


@dataclass(frozen=True)
class Freshness:
    passed: bool
    summary: str
    in_session: bool
    oldest_as_of: dt.datetime | None = None
    stale: tuple[str, ...] = ()


def freshness(newest: dict[str, dt.datetime], symbols, now: dt.datetime, minutes: int, delay: dt.timedelta = dt.timedelta(0)) -> Freshness:
    """During a session, every symbol's live rows must be at most `minutes` + the feed's `delay`
    + GRACE old (the first refresh is not due before that much after the open); outside a session
    there is nothing to be fresh for."""
    found = session_in_progress(now)
    if found is None:
        return Freshness(True, "no NYSE session in progress: nothing to refresh", False)
    session, opened, _ = found
    allowed = dt.timedelta(minutes=minutes) + delay + GRACE
    ny = ZoneInfo(NY)
    if now < opened + allowed:
        return Freshness(True, f"{session}: the first refresh is due by {(opened + allowed).astimezone(ny):%H:%M} New York", True)
    stale = tuple(s for s in symbols if s not in newest or now - newest[s] > allowed)
    oldest = min((newest[s] for s in symbols if s in newest), default=None)
    if not stale:
        return Freshness(True, f"{session}: every symbol as of {oldest.astimezone(ny):%H:%M} New York or later", True, oldest)
    detail = ", ".join(f"{s} ({'none' if s not in newest else newest[s].astimezone(ny).strftime('%H:%M')})" for s in stale)
    return Freshness(False, f"{session}: older than {allowed.total_seconds() / 60:.0f} minutes: {detail}", True, oldest, stale)
