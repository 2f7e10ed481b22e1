"""The dashboard page: a summary a person reads at a glance, then the interactive charts, in
one self-contained HTML file (plotly.js embedded: it opens offline, from disk, anywhere)."""

import datetime as dt
import html
import os
import tempfile
from pathlib import Path

import pandas as pd

from stock_assets.calendar import NY
from stock_assets.reports.data import ReportData
from stock_assets.reports.figures import build_figure
from stock_assets.reports.today import Today, today_table
from stock_assets.transforms.history import describe_sessions

STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 24px; color: #222; }
h1 { margin: 0 0 4px; font-size: 22px; } h2 { font-size: 16px; margin: 18px 0 6px; }
.meta { color: #666; margin: 0; } .banner { background: #fff3cd; border: 1px solid #e0c36c; padding: 6px 10px; margin: 10px 0; }
table { border-collapse: collapse; font-size: 13px; } td, th { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; } .up { color: #2ca02c; } .down { color: #d62728; }
"""


def latest_table(data: ReportData) -> pd.DataFrame:
    """The newest bar of each symbol and what its indicators say about it."""
    last = data.bars.dropna(subset=["price"]).groupby("symbol").tail(1).set_index("symbol")
    when = {"session": last["session"].astype(str)}
    if data.interval != "1d":  # which bar of the session
        when["bar (New York)"] = pd.to_datetime(last["ts"], utc=True).dt.tz_convert(NY).dt.strftime("%H:%M")
    return pd.DataFrame({
        **when,
        "price": last["price"].round(2),
        ("daily %" if data.interval == "1d" else f"% vs previous {data.interval} bar"): (100 * last["pct_change"]).round(2),
        "vs SMA 50": (last["price"] >= last["sma_50"]).map({True: "above", False: "below"}).where(last["sma_50"].notna(), "n/a"),
        "MACD hist": last["macd_hist"].round(3),
        "RSI 14": last["rsi_14"].round(1),
        "volatility 20": (100 * last["volatility_20"]).round(1).astype(str) + " %",
        "basis": last["price_basis"].fillna("n/a"),
    })  # fmt: skip


def coverage_notes(data: ReportData) -> list[str]:
    """What the page does not show, said on it: sessions with no data, symbols left out."""
    notes = []
    if data.not_loaded:
        notes.append(f"Not loaded: {len(data.not_loaded)} of the {len(data.sessions)} sessions shown have no bar "
                     f"({describe_sessions(data.not_loaded)}). Charts break there; the quality grid shows them grey.")
    if len(data.universe) > len(data.symbols):
        notes.append(f"Showing {len(data.symbols)} of {len(data.universe)} symbols: the first {len(data.symbols)} alphabetically "
                     f"({data.symbols[0]} … {data.symbols[-1]}), which keeps the page quick to build and to open. "
                     "Every symbol is in the warehouse tables prices and indicators.")
    return notes


def quality_summary(data: ReportData) -> pd.DataFrame:
    if data.quality.empty:
        return pd.DataFrame(columns=["check_name", "severity", "failed sessions", "last failed", "sample"])
    failed = data.quality[~data.quality["passed"].astype(bool)]
    grouped = failed.groupby(["check_name", "severity"])
    return pd.DataFrame({
        "failed sessions": grouped["session"].nunique(),
        "last failed": grouped["session"].max().astype(str),
        "sample": grouped["sample"].last().fillna(""),
    }).reset_index()  # fmt: skip


def _html_table(frame: pd.DataFrame, index: bool) -> str:
    return frame.to_html(index=index, border=0, na_rep="–", escape=True)


def previous_closes(data: ReportData) -> pd.Series:
    """Per symbol, the traded close of its latest loaded bar: what the day so far moves from."""
    return data.bars.dropna(subset=["close"]).groupby("symbol")["close"].last()


def today_section(data: ReportData, today: Today | None) -> str:
    """'Today so far, as of HH:MM New York' and a row per symbol; nothing when no session is in progress."""
    if today is None or today.daily.empty:
        return ""
    about = (f"Session {today.session} in progress: {today.interval} bars up to {today.label} New York "
             f"({today.as_of:%Y-%m-%d %H:%M} UTC), not final; the session's final bars load after its close.")
    return (f"<h2>{html.escape(today.title)}</h2><p class=\"meta\">{html.escape(about)}</p>"
            f"{_html_table(today_table(today, previous_closes(data)), index=True)}")


def render(data: ReportData, generated_at: dt.datetime, today: Today | None = None) -> str:
    checks = data.quality["check_name"].nunique() if not data.quality.empty else 0
    failures = quality_summary(data)
    quality = (f"<p>All {checks} data-quality checks of <code>dq_report</code> passed in every session shown.</p>" if failures.empty
               else _html_table(failures, index=False))
    banner = ('<p class="banner">Synthetic data: a deterministic random walk, not market data.</p>'
              if "synthetic" in data.sources else "")
    banner += "".join(f'<p class="banner">{html.escape(note)}</p>' for note in coverage_notes(data))
    figure = build_figure(data, today).to_html(full_html=False, include_plotlyjs=True, config={"displaylogo": False, "responsive": True})
    meta = (f"The latest {len(data.sessions)} NYSE sessions loaded: {data.first} … {data.last} · {len(data.symbols)} symbols · {data.interval} bars · "
            f"source {', '.join(data.sources) or 'n/a'} · generated {generated_at:%Y-%m-%d %H:%M} UTC")
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>stock_assets dashboard {data.last}</title>'
        f"<style>{STYLE}</style></head><body>"
        f'<h1>stock_assets dashboard</h1><p class="meta">{html.escape(meta)}</p>{banner}'
        f"{today_section(data, today)}"
        f"<h2>Latest bar per symbol</h2>{_html_table(latest_table(data), index=True)}"
        f"<h2>Data quality</h2>{quality}"
        f"<h2>Charts</h2><p class=\"meta\">Pick a symbol with the menu at the top left; drag to zoom, double-click to reset.</p>"
        f"{figure}</body></html>\n"
    )


def write_atomic(path: Path, text: str) -> Path:
    """Write beside the target, then rename over it: a reader sees the old page or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
