"""The dashboard, drawn from the warehouse: what the `dashboard` asset runs after each load and
the live refresh runs after each refresh of `live_prices`. One call reads `prices`,
`indicators`, `dq_report` and `live_prices`, and replaces the page atomically."""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from stock_assets import clock
from stock_assets.reports.data import ReportData, read_report_data
from stock_assets.reports.page import render, write_atomic
from stock_assets.reports.today import Today, read_today

REPORT_SESSIONS = 250  # the dashboard shows this many sessions (fewer of intraday bars: data.BARS_SHOWN)
REPORT_SYMBOLS = 25  # and at most this many symbols: 500 took ~36 s of plotting per run


@dataclass(frozen=True)
class Dashboard:
    path: Path
    data: ReportData
    today: Today | None  # the session in progress shown beside history, if any


def render_dashboard(warehouse, path: Path, *, sessions: int = REPORT_SESSIONS, max_symbols: int | None = REPORT_SYMBOLS,
                     last: dt.date | None = None, interval: str | None = None) -> Dashboard:  # fmt: skip
    """Re-render the page at `path` from `warehouse` (stock_assets.warehouse.warehouse_for_url):
    the latest `sessions` loaded sessions up to `last` (default the newest) of `interval`'s bars
    (default, or when it has none there: the interval with most bars), and today so far from
    `live_prices` when a session is in progress. Readers see the old page or the new one."""
    data = read_report_data(warehouse, sessions, max_symbols, last=last, interval=interval)
    today = read_today(warehouse, data.symbols or None)
    write_atomic(path, render(data, clock.now(), today))
    return Dashboard(path, data, today)
