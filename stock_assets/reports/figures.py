"""The dashboard's charts: one Plotly figure, panels stacked on a shared time axis, and a
symbol picker (a dropdown) that shows one symbol's traces at a time. The two heatmaps show
every symbol and every check, whichever symbol is picked. Intraday bars are drawn at their New
York time; the session in progress (`Today`), when there is one, beside the history on the price panel."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stock_assets.calendar import NY
from stock_assets.reports.data import ReportData
from stock_assets.reports.today import Today

PANELS = (
    ("Price and moving averages", 3.0),
    ("Bollinger Bands (20, 2σ)", 2.0),
    ("Volume", 1.2),
    ("Daily % change", 1.2),
    ("MACD (12, 26, 9)", 1.6),
    ("RSI 14", 1.2),
    ("Volatility heatmap: 20-session annualized, symbol × session", 1.6),
    ("Data quality: check × session (green passed, orange WARN failed, red ERROR failed, grey not loaded)", 1.8),
)
LINES = {  # panel row -> (column, label, style)
    1: [("price", "price", dict(width=2, color="#222")), ("sma_7", "SMA 7", {}), ("sma_30", "SMA 30", {}),
        ("sma_50", "SMA 50", {}), ("sma_200", "SMA 200", {}), ("ema_12", "EMA 12", dict(dash="dot")),
        ("ema_26", "EMA 26", dict(dash="dot"))],
    2: [("bb_upper", "BB upper", dict(color="#7f7f7f")), ("bb_lower", "BB lower", dict(color="#7f7f7f")),
        ("bb_middle", "BB middle (SMA 20)", dict(color="#1f77b4", dash="dot")), ("price", "price ", dict(color="#222"))],
    5: [("macd", "MACD", dict(color="#1f77b4")), ("macd_signal", "signal", dict(color="#ff7f0e"))],
    6: [("rsi_14", "RSI 14", dict(color="#9467bd"))],
}  # fmt: skip
INTRADAY_TITLES = {3: "% change per bar", 6: "Volatility heatmap: 20-bar annualized, symbol × session (its last bar)"}
NOT_LOADED = -1  # a session of the period with no bar at all: no check ran on data, so not green
DQ_COLORS = [[0, "#d0d0d0"], [0.25, "#d0d0d0"], [0.25, "#2ca02c"], [0.5, "#2ca02c"], [0.5, "#ff9f1c"], [0.75, "#ff9f1c"],
             [0.75, "#d62728"], [1, "#d62728"]]


def panel_titles(interval: str) -> list[str]:
    titles = [title for title, _ in PANELS]
    return titles if interval == "1d" else [INTRADAY_TITLES.get(i, t) for i, t in enumerate(titles)]


def new_york(ts: pd.Series) -> np.ndarray:
    """UTC instants as New York wall-clock datetime64 (what a market's chart shows)."""
    return pd.to_datetime(ts, utc=True).dt.tz_convert(NY).dt.tz_localize(None).to_numpy()


def _today_trace(today: Today, symbol: str, daily: bool, visible: bool) -> go.Scatter | None:
    """The session in progress: its partial daily bar at the session (daily history), else its intraday bars."""
    style = dict(name=f"today so far, as of {today.label}", visible=visible, marker=dict(color="#d62728", size=9, symbol="diamond"))
    if daily:
        if symbol not in today.daily.index:
            return None
        return go.Scatter(x=np.array([str(today.session)], dtype="U10"), y=[today.daily.loc[symbol, "close"]], mode="markers", **style)
    bars = today.bars[today.bars["symbol"] == symbol]
    if bars.empty:
        return None
    return go.Scatter(x=new_york(bars["ts"]), y=bars["close"].to_numpy(), mode="lines+markers", line=dict(color="#d62728", width=1), **style)


def _symbol_traces(df: pd.DataFrame, x: pd.Series, visible: bool) -> list[tuple[int, go.Scatter | go.Bar]]:
    traces = []
    for row, lines in LINES.items():
        for column, label, style in lines:
            # No shading between the bands: a fill would bridge a hole in the history.
            traces.append((row, go.Scatter(x=x, y=df[column], name=label, line=style, visible=visible, legendgroup=str(row))))
    change = 100 * df["pct_change"]
    traces.append((3, go.Bar(x=x, y=df["volume"], name="volume", marker_color="#8c9fbf", visible=visible)))
    traces.append((4, go.Bar(x=x, y=change, name="% change", visible=visible,
                             marker_color=np.where(change.fillna(0) >= 0, "#2ca02c", "#d62728"))))
    traces.append((5, go.Bar(x=x, y=df["macd_hist"], name="histogram", marker_color="#aaa", visible=visible)))
    return traces


def quality_grid(data: ReportData) -> pd.DataFrame:
    """check × every session of the period: 0 passed, 1 WARN failed, 2 ERROR failed (the worst
    over assets), NOT_LOADED where the session has no bar, NaN where it was not checked."""
    quality = data.quality
    status = (~quality["passed"].astype(bool)) * quality["severity"].map({"ERROR": 2}).fillna(1)
    grid = quality.assign(status=status).pivot_table(index="check_name", columns="session", values="status", aggfunc="max")
    grid = grid.reindex(columns=data.sessions)
    grid.loc[:, data.not_loaded] = NOT_LOADED
    return grid


def _colorbar_at(fig: go.Figure, row: int) -> dict:
    low, high = fig.layout[f"yaxis{row}"].domain
    return dict(y=(low + high) / 2, len=high - low, thickness=12, title="vol")


def build_figure(data: ReportData, today: Today | None = None) -> go.Figure:
    fig = make_subplots(rows=len(PANELS), cols=1, shared_xaxes=True, vertical_spacing=0.03,
                        subplot_titles=panel_titles(data.interval), row_heights=[h for _, h in PANELS])
    owners, placed = [], []  # the symbol each trace belongs to (None: shown for every symbol); its traces
    x_column = "session" if data.interval == "1d" else "ts"
    # Fixed-width text or datetime64, not Python objects: plotly deep-copies every array it is
    # given, element by element for objects.
    x_all = (data.bars[x_column].astype(str).to_numpy().astype("U10") if x_column == "session"
             else new_york(data.bars[x_column]))
    for i, (symbol, rows) in enumerate(sorted(data.bars.groupby("symbol").indices.items())):
        df = data.bars.iloc[rows]
        traces = _symbol_traces(df, x_all[rows], visible=i == 0)
        if today is not None and (live := _today_trace(today, symbol, x_column == "session", visible=i == 0)):
            traces.append((1, live))
        for row, trace in traces:
            placed.append((row, trace))
            owners.append(symbol)
    fig.add_traces([t for _, t in placed], rows=[r for r, _ in placed], cols=1)  # one call: add_trace per trace is quadratic
    # A session's cell spans its day: at noon, it covers the session's intraday bars on the shared axis.
    day = (lambda s: str(s)) if x_column == "session" else (lambda s: f"{s} 12:00")
    last_per_session = data.bars.groupby(["symbol", "session"])["volatility_20"].last().unstack("session")
    fig.add_trace(go.Heatmap(z=last_per_session.values, x=[day(s) for s in last_per_session.columns], y=list(last_per_session.index),
                             colorscale="YlOrRd", colorbar=_colorbar_at(fig, 7), name="volatility",
                             hovertemplate="%{y} %{x}<br>volatility %{z:.1%}<extra></extra>"), row=7, col=1)
    owners.append(None)
    if not data.quality.empty:
        grid = quality_grid(data)
        fig.add_trace(go.Heatmap(z=grid.values, x=[day(s) for s in grid.columns], y=list(grid.index), zmin=NOT_LOADED, zmax=2,
                                 colorscale=DQ_COLORS, showscale=False, xgap=1, ygap=1, name="data quality",
                                 hovertemplate="%{y}<br>%{x}: %{z}<extra>-1 not loaded, 0 passed, 1 WARN, 2 ERROR</extra>"), row=8, col=1)
        owners.append(None)
    for level in (30, 70):
        fig.add_hline(y=level, row=6, col=1, line=dict(dash="dot", color="#999", width=1))
    buttons = [dict(label=s, method="update", args=[{"visible": [o in (None, s) for o in owners]}]) for s in data.symbols]
    fig.update_layout(
        height=2300, hovermode="x unified", barmode="overlay", template="plotly_white",
        margin=dict(l=60, r=30, t=70, b=40), legend=dict(orientation="h", y=1.02, x=0.25, yanchor="bottom"),
        updatemenus=[dict(buttons=buttons, direction="down", x=0, xanchor="left", y=1.03, yanchor="bottom", showactive=True)],
    )
    fig.update_yaxes(title_text="%", row=4, col=1)
    fig.update_yaxes(range=[0, 100], row=6, col=1)
    return fig
