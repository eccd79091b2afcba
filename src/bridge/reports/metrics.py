"""Performance metrics of preview accounts (pure: frames in, frames out).

Conventions (stated because they differ between tools):
- daily returns are ``total_value[t] / total_value[t-1] - 1``, the first day against the
  initial capital;
- annualisation uses ``ANNUALIZATION = 252`` sessions per year (Qlib's ``risk_analysis`` uses
  238 for daily data: its names are used only where its convention is used);
- Sharpe ratio with a zero risk-free rate: ``mean / std * sqrt(252)`` (sample std, ddof=1);
- max drawdown is the most negative ``total_value / running peak - 1`` (a fraction <= 0);
- turnover is total traded value over mean total value (a multiple of the book);
- cost_bps is total fees over initial capital, in basis points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ANNUALIZATION = 252

METRIC_COLUMNS = ["total_return", "annualized_return", "volatility", "sharpe", "max_drawdown",
                  "turnover", "costs", "cost_bps", "sessions"]


def series_metrics(values: np.ndarray, initial: float) -> dict:
    """Return metrics of one NAV series.

    Parameters
    ----------
    values : ndarray of float64, shape (T,)
        End-of-day total value, currency.
    initial : float
        Value before the first day, currency.

    Returns
    -------
    dict
        total_return, annualized_return (geometric), volatility (annualised), sharpe,
        max_drawdown (fractions); sessions (int).
    """
    values = np.asarray(values, dtype=np.float64)
    prev = np.concatenate([[initial], values[:-1]])
    r = values / prev - 1.0
    n = len(values)
    total = values[-1] / initial - 1.0 if n else np.nan
    ann = (1 + total) ** (ANNUALIZATION / n) - 1 if n else np.nan
    std = r.std(ddof=1) if n > 1 else np.nan
    peak = np.maximum.accumulate(np.concatenate([[initial], values]))[1:]
    return {
        "total_return": total,
        "annualized_return": ann,
        "volatility": std * np.sqrt(ANNUALIZATION),
        "sharpe": r.mean() / std * np.sqrt(ANNUALIZATION) if std and std > 0 else np.nan,
        "max_drawdown": float((values / peak - 1.0).min()) if n else np.nan,
        "sessions": n,
    }


def preview_metrics(account: pd.DataFrame, strategy: pd.DataFrame) -> pd.DataFrame:
    """Metrics per preview instance.

    Parameters
    ----------
    account : DataFrame
        ``preview_account`` rows (preview_id, trading_day, total_value, turnover, cost, ...).
    strategy : DataFrame
        ``preview_strategy`` rows (preview_id, display_name, initial_capital).

    Returns
    -------
    DataFrame
        Indexed by preview_id, columns ``display_name`` + ``METRIC_COLUMNS``.
    """
    rows = []
    for sid, acc in account.sort_values("trading_day").groupby("preview_id", sort=True):
        info = strategy.set_index("preview_id").loc[sid]
        initial = float(info["initial_capital"])
        tv = acc["total_value"].to_numpy(np.float64)
        m = series_metrics(tv, initial)
        prev = np.concatenate([[initial], tv[:-1]])
        traded = float((acc["turnover"].to_numpy() * prev).sum())
        m["turnover"] = traded / tv.mean()
        m["costs"] = float(acc["cost"].sum())
        m["cost_bps"] = m["costs"] / initial * 1e4
        rows.append({"preview_id": sid, "display_name": info["display_name"], **m})
    return pd.DataFrame(rows).set_index("preview_id")[["display_name", *METRIC_COLUMNS]]


def benchmark_metrics(bench: pd.DataFrame) -> dict:
    """Metrics of a benchmark close series (datetime, close) over the same sessions."""
    close = bench["close"].to_numpy(np.float64)
    return series_metrics(close[1:], close[0]) if len(close) > 1 else {}
