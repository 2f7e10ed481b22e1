"""One live refresh at a time: an exclusive, non-blocking lock on a file in STOCK_ASSETS_HOME.

Every process that refreshes live_prices on this machine (the schedule's runs, `make live`, the
UI, and in deploy/ each run's container, which shares the home volume) takes it before it
fetches. The second of two refreshes started at once does not wait: it is told who holds the
lock and skips, so two refreshes end as one. The operating system releases the lock when its
holder's process ends, however it ends: a killed refresh leaves nothing to clean up.
"""

import contextlib
import datetime as dt
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

NAME = "live_prices.lock"


@contextlib.contextmanager
def refresh_lock(home: Path, now: dt.datetime) -> Iterator[str | None]:
    """Yields None while this process holds the lock, else who holds it ("PID 4242 since …")."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} since {now:%Y-%m-%d %H:%M:%S} UTC\n".encode(), 0)
        try:
            yield None
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
