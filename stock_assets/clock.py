"""The time as the pipeline sees it. Code that needs "now" asks `now()`, so a test (the simulated
month) can move the whole pipeline to another instant with `shift_to` and the clock keeps running
from there: later calls still see later times, as the order of ingestions needs."""

import datetime as dt

_offset = dt.timedelta(0)


def now() -> dt.datetime:
    """The current instant, UTC."""
    return dt.datetime.now(dt.UTC) + _offset


def today() -> dt.date:
    return now().date()


def shift_to(instant: dt.datetime) -> None:
    """From here on, now() reads `instant` and runs on from it (tests only)."""
    global _offset
    _offset = instant.astimezone(dt.UTC) - dt.datetime.now(dt.UTC)


def reset() -> None:
    global _offset
    _offset = dt.timedelta(0)
