"""Pure metric functions on return arrays and score/label panels (numpy in, floats out).

Two conventions live side by side, and every function says which one it uses:

Qlib convention (names exactly as Qlib writes them)
    :func:`risk_analysis` reproduces ``qlib.contrib.evaluate.risk_analysis(r, freq=...,
    mode="sum")`` of pyqlib 0.9.7: returns are accumulated by **summation**, not compounding;
    ``mean`` and ``std`` (sample, ddof=1) are per period and *not* annualised;
    ``annualized_return = mean * N``; ``information_ratio = mean / std * sqrt(N)``;
    ``max_drawdown`` is the most negative gap between the cumulative **sum** of returns and its
    running maximum (the running maximum starts at the first cumulative value, not at 0).
    ``N`` is :data:`QLIB_N`: 238 for daily data (not 252), 50 weekly, 12 monthly.
    :func:`calc_ic` / :func:`ic_summary` reproduce ``qlib.contrib.eva.alpha.calc_ic`` and the
    ``IC, ICIR, Rank IC, Rank ICIR`` of ``SigAnaRecord``.

Geometric convention (bridge's reports, empyrical/quantstats agree)
    :func:`total_return`, :func:`annualized_return`, :func:`volatility`, :func:`sharpe`,
    :func:`max_drawdown`, :func:`calmar`: returns compound; annualisation with
    ``periods`` = :data:`PERIODS_PER_YEAR` (252 sessions) unless given; Sharpe with a zero
    risk-free rate and sample std (ddof=1); max drawdown on the compounded NAV starting at 1.0
    (the start counts as a peak), a fraction <= 0.

Returns are simple fractional returns per period (0.01 = +1 %). NaN entries are dropped first,
as pandas' ``mean``/``std`` skip them in Qlib.
"""

from __future__ import annotations

import math

import numpy as np

#: Qlib's annualisation scalers (``risk_analysis`` ``cal_risk_analysis_scaler``), periods/year
QLIB_N = {"day": 238, "week": 50, "month": 12, "minute": 240 * 238}

#: bridge's annualisation for the geometric metrics, sessions per year (same as
#: :data:`bridge.reports.metrics.ANNUALIZATION`)
PERIODS_PER_YEAR = 252

#: names of :func:`risk_analysis`'s output, in Qlib's order
QLIB_RISK_NAMES = ("mean", "std", "annualized_return", "information_ratio", "max_drawdown")


def _clean(r) -> np.ndarray:
    a = np.asarray(r, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


def _std(a: np.ndarray) -> float:
    return float(a.std(ddof=1)) if a.size > 1 else math.nan


# ---- Qlib convention ------------------------------------------------------------------------
def risk_analysis(r, N: float | None = None, freq: str = "day") -> dict:
    """Qlib's ``risk_analysis`` in ``"sum"`` mode, as a dict.

    Parameters
    ----------
    r : array-like of float
        Per-period simple returns (fractions), e.g. daily excess returns.
    N : float, optional
        Periods per year; default ``QLIB_N[freq]`` (238 for ``"day"``).
    freq : {"day", "week", "month", "minute"}
        Used only when ``N`` is None.

    Returns
    -------
    dict
        ``mean`` (per period), ``std`` (per period, ddof=1), ``annualized_return``
        (``mean * N``), ``information_ratio`` (``mean / std * sqrt(N)``), ``max_drawdown``
        (cumulative-sum drawdown, <= 0). NaN when undefined (empty input, one period for std).

    Notes
    -----
    Source: pyqlib 0.9.7 ``qlib/contrib/evaluate.py``. Qlib sums returns "to avoid the
    cumulated curve being skewed exponentially", so these figures differ from the geometric
    ones below; both are reported, under different names.
    """
    if N is None:
        N = QLIB_N[freq]
    a = _clean(r)
    if a.size == 0:
        return dict.fromkeys(QLIB_RISK_NAMES, math.nan)
    mean = float(a.mean())
    std = _std(a)
    cum = np.cumsum(a)
    mdd = float((cum - np.maximum.accumulate(cum)).min())
    ir = mean / std * math.sqrt(N) if std and std > 0 else math.nan
    return {"mean": mean, "std": std, "annualized_return": mean * N, "information_ratio": ir,
            "max_drawdown": mdd}


def calc_ic(dates, scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-date cross-sectional IC (Pearson) and Rank IC (Spearman), as Qlib's ``calc_ic``.

    Parameters
    ----------
    dates : array-like, shape (M,)
        Date of each (instrument, date) row; any sortable dtype.
    scores : array-like of float, shape (M,)
        Prediction (score) known at the date.
    labels : array-like of float, shape (M,)
        Realised next-period return of the same instrument (fraction).

    Returns
    -------
    (unique_dates, ic, rank_ic) : tuple of ndarray
        One value per date; NaN where a date has fewer than 2 complete pairs or a constant
        side. Rows with a NaN score or label are dropped pairwise (pandas ``corr`` does the
        same); Spearman uses average ranks for ties.
    """
    import pandas as pd

    df = pd.DataFrame({"d": np.asarray(dates), "s": np.asarray(scores, dtype=np.float64),
                       "y": np.asarray(labels, dtype=np.float64)}).dropna()
    if df.empty:
        empty = np.array([], dtype=np.float64)
        return np.asarray([]), empty, empty
    # ranks within each date, then Pearson of ranks == Spearman (average ties, like pandas)
    g = df.groupby("d", sort=True)
    df["rs"] = g["s"].rank()
    df["ry"] = g["y"].rank()
    out = []
    for cols in (("s", "y"), ("rs", "ry")):
        x, y = df[cols[0]], df[cols[1]]
        gx = x.groupby(df["d"])
        gy = y.groupby(df["d"])
        dx = x - gx.transform("mean")
        dy = y - gy.transform("mean")
        num = (dx * dy).groupby(df["d"]).sum()
        den = np.sqrt((dx * dx).groupby(df["d"]).sum() * (dy * dy).groupby(df["d"]).sum())
        n = gx.size()
        with np.errstate(invalid="ignore", divide="ignore"):
            c = (num / den).where((n >= 2) & (den > 0))
        out.append(c.sort_index())
    return out[0].index.to_numpy(), out[0].to_numpy(np.float64), out[1].to_numpy(np.float64)


def ic_summary(ic, rank_ic) -> dict:
    """Qlib's ``SigAnaRecord`` summary of per-date IC series.

    Parameters
    ----------
    ic, rank_ic : array-like of float
        Per-date IC and Rank IC (:func:`calc_ic`); NaN dates are skipped.

    Returns
    -------
    dict
        ``IC`` (mean), ``ICIR`` (mean / std, ddof=1, not annualised), ``Rank IC``,
        ``Rank ICIR``, and ``n_dates`` (finite IC dates).
    """
    a, b = _clean(ic), _clean(rank_ic)

    def ir(x):
        s = _std(x)
        return float(x.mean()) / s if x.size and s and s > 0 else math.nan

    return {"IC": float(a.mean()) if a.size else math.nan, "ICIR": ir(a),
            "Rank IC": float(b.mean()) if b.size else math.nan, "Rank ICIR": ir(b),
            "n_dates": int(a.size)}


# ---- geometric convention -------------------------------------------------------------------
def total_return(r) -> float:
    """Compounded return over the series: ``prod(1 + r) - 1`` (fraction)."""
    a = _clean(r)
    return float(np.prod(1.0 + a) - 1.0) if a.size else math.nan


def annualized_return(r, periods: float = PERIODS_PER_YEAR) -> float:
    """Geometric annualised return: ``(1 + total_return) ** (periods / n) - 1`` (CAGR)."""
    a = _clean(r)
    if a.size == 0:
        return math.nan
    growth = float(np.prod(1.0 + a))
    return growth ** (periods / a.size) - 1.0 if growth > 0 else -1.0


def volatility(r, periods: float = PERIODS_PER_YEAR) -> float:
    """Annualised volatility: sample std (ddof=1) of per-period returns times ``sqrt(periods)``."""
    return _std(_clean(r)) * math.sqrt(periods)


def sharpe(r, periods: float = PERIODS_PER_YEAR, risk_free: float = 0.0) -> float:
    """Sharpe ratio: ``mean(r - rf) / std(r - rf, ddof=1) * sqrt(periods)``.

    ``risk_free`` is per period (default 0). NaN when the std is 0 or undefined. Same definition
    as empyrical's ``sharpe_ratio``.
    """
    a = _clean(r) - risk_free
    s = _std(a)
    return float(a.mean()) / s * math.sqrt(periods) if a.size and s and s > 0 else math.nan


def drawdown_series(r) -> np.ndarray:
    """Drawdown of the compounded NAV (start 1.0 counts as a peak): ``nav / peak - 1`` per period."""
    a = _clean(r)
    nav = np.cumprod(1.0 + a)
    peak = np.maximum.accumulate(np.concatenate([[1.0], nav]))[1:]
    return nav / peak - 1.0


def max_drawdown(r) -> float:
    """Most negative drawdown of the compounded NAV (fraction <= 0; 0 when it never falls)."""
    d = drawdown_series(r)
    return float(d.min()) if d.size else math.nan


def calmar(r, periods: float = PERIODS_PER_YEAR) -> float:
    """Calmar ratio: geometric :func:`annualized_return` / ``abs(max_drawdown)``; NaN without a drawdown."""
    mdd = max_drawdown(r)
    return annualized_return(r, periods) / -mdd if mdd < 0 else math.nan


def geometric_metrics(r, periods: float = PERIODS_PER_YEAR) -> dict:
    """All geometric metrics of one return series, as a dict (see the module docstring)."""
    return {"total_return": total_return(r), "annualized_return": annualized_return(r, periods),
            "volatility": volatility(r, periods), "sharpe": sharpe(r, periods),
            "max_drawdown": max_drawdown(r), "calmar": calmar(r, periods),
            "periods": int(_clean(r).size)}


# ---- execution quality ----------------------------------------------------------------------
def slippage_bps(side, fill_price, ref_price) -> np.ndarray:
    """Slippage against a reference price, basis points, positive = cost to us.

    buy: ``(fill / ref - 1) * 1e4``; sell: ``(1 - fill / ref) * 1e4``. ``side`` holds
    ``"buy"``/``"sell"`` (case-insensitive).
    """
    sign = np.where(np.char.lower(np.asarray(side, dtype=str)) == "buy", 1.0, -1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sign * (np.asarray(fill_price, float) / np.asarray(ref_price, float) - 1.0) * 1e4


def price_advantage(side, fill_price, base_price) -> np.ndarray:
    """Qlib's ``pa`` per order: ``sign * (trade_price / base_price - 1)``, sell +1, buy -1.

    Positive = better than the base price (a fraction, not bps): ``pa = -slippage_bps / 1e4``.
    Source: pyqlib 0.9.7 ``qlib/backtest/report.py`` ``_agg_order_price_advantage``.
    """
    return -slippage_bps(side, fill_price, base_price) / 1e4
