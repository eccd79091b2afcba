"""Plotly figures of preview runs.

Dates are aligned on trading sessions: non-session days inside the range are removed from the
x axis (plotly ``rangebreaks``), so weekends and holidays leave no flat gaps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _session_breaks(days: pd.Series) -> list[dict]:
    days = pd.DatetimeIndex(pd.to_datetime(days)).unique().sort_values()
    if len(days) < 2:
        return []
    every = pd.date_range(days[0], days[-1], freq="D")
    off = every.difference(days)
    return [{"values": [d.strftime("%Y-%m-%d") for d in off]}]


def _days(account: pd.DataFrame, benchmark: pd.DataFrame | None) -> pd.Series:
    """Sessions shown: the instances' and the benchmark's (the data may miss a few sessions)."""
    days = pd.to_datetime(account["trading_day"])
    if benchmark is not None and len(benchmark):
        days = pd.concat([days, pd.to_datetime(benchmark["datetime"])])
    return days


def _range_controls(fig) -> None:
    fig.update_xaxes(
        rangeslider={"visible": True},
        rangeselector={"buttons": [
            {"count": 1, "label": "1m", "step": "month", "stepmode": "backward"},
            {"count": 3, "label": "3m", "step": "month", "stepmode": "backward"},
            {"count": 6, "label": "6m", "step": "month", "stepmode": "backward"},
            {"step": "all", "label": "all"},
        ]},
    )


def nav_figure(account: pd.DataFrame, strategy: pd.DataFrame,
               benchmark: pd.DataFrame | None = None, benchmark_name: str = "S&P 500"):
    """NAV of every instance and the benchmark, each normalised to 1.0 on the first day.

    Parameters
    ----------
    account : DataFrame
        ``preview_account`` rows (preview_id, trading_day, total_value).
    strategy : DataFrame
        ``preview_strategy`` rows (preview_id, display_name, initial_capital).
    benchmark : DataFrame, optional
        ``datetime``, ``close`` of the index over the same range.

    Returns
    -------
    plotly.graph_objects.Figure
        NAV = total_value / total_value on the first session (so every line starts at 1.0).
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    names = strategy.set_index("preview_id")["display_name"]
    for sid, acc in account.sort_values("trading_day").groupby("preview_id", sort=True):
        tv = acc["total_value"].to_numpy(np.float64)
        fig.add_trace(go.Scatter(x=acc["trading_day"], y=tv / tv[0], mode="lines",
                                 name=str(names.get(sid, sid))))
    if benchmark is not None and len(benchmark):
        b = benchmark.sort_values("datetime")
        close = b["close"].to_numpy(np.float64)
        fig.add_trace(go.Scatter(x=b["datetime"], y=close / close[0], mode="lines",
                                 name=benchmark_name, line={"color": "black", "dash": "dot"}))
    fig.update_layout(title="NAV (first day = 1.0)", yaxis_title="NAV", hovermode="x unified",
                      template="plotly_white", height=520)
    fig.update_xaxes(rangebreaks=_session_breaks(_days(account, benchmark)))
    _range_controls(fig)
    return fig


def drawdown_figure(account: pd.DataFrame, strategy: pd.DataFrame,
                    benchmark: pd.DataFrame | None = None, benchmark_name: str = "S&P 500"):
    """Drawdown (total_value / running peak - 1, in percent) per instance and the benchmark."""
    import plotly.graph_objects as go

    fig = go.Figure()
    names = strategy.set_index("preview_id")["display_name"]
    for sid, acc in account.sort_values("trading_day").groupby("preview_id", sort=True):
        fig.add_trace(go.Scatter(x=acc["trading_day"], y=acc["drawdown"] * 100, mode="lines",
                                 name=str(names.get(sid, sid))))
    if benchmark is not None and len(benchmark):
        b = benchmark.sort_values("datetime")
        c = b["close"].to_numpy(np.float64)
        fig.add_trace(go.Scatter(x=b["datetime"], y=(c / np.maximum.accumulate(c) - 1) * 100,
                                 mode="lines", name=benchmark_name,
                                 line={"color": "black", "dash": "dot"}))
    fig.update_layout(title="Drawdown (%)", yaxis_title="drawdown, %", hovermode="x unified",
                      template="plotly_white", height=380)
    fig.update_xaxes(rangebreaks=_session_breaks(_days(account, benchmark)))
    return fig


def metrics_table(metrics: pd.DataFrame):
    """The metrics frame of :func:`bridge.reports.metrics.preview_metrics` as a plotly table."""
    import plotly.graph_objects as go

    pct = ["total_return", "annualized_return", "volatility", "max_drawdown"]
    shown = metrics.copy()
    for c in pct:
        shown[c] = shown[c].map(lambda v: f"{v:.2%}")
    shown["sharpe"] = shown["sharpe"].map(lambda v: f"{v:.2f}")
    shown["turnover"] = shown["turnover"].map(lambda v: f"{v:.2f}x")
    shown["costs"] = shown["costs"].map(lambda v: f"{v:,.2f}")
    shown["cost_bps"] = shown["cost_bps"].map(lambda v: f"{v:.1f}")
    shown = shown.reset_index()
    fig = go.Figure(go.Table(header={"values": list(shown.columns)},
                             cells={"values": [shown[c] for c in shown.columns]}))
    fig.update_layout(title="Metrics", height=120 + 30 * len(shown), margin={"t": 40, "b": 0})
    return fig
