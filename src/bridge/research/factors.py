"""Two classic price signals, computed on the session grid of the bars.

Both use the close of each session. A missing bar (no row, or a rejected row) makes the signal
undefined on the sessions whose window touches it, and no row is emitted there: the output never
holds NaN (the signal contract refuses NaN).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bridge.market.data import Panel


def _to_signal(panel: Panel, values: np.ndarray) -> pd.DataFrame:
    t, n = np.nonzero(np.isfinite(values))
    return pd.DataFrame({
        "datetime": pd.to_datetime(panel.sessions[t]),
        # the N names converted once, then gathered (not one Python string per row)
        "instrument": pd.array(panel.instruments, dtype="str").take(n),
        "score": values[t, n],
    })


def _panel(bars) -> Panel:
    if isinstance(bars, Panel):
        return bars
    import polars as pl

    if isinstance(bars, pd.DataFrame):
        bars = pl.from_pandas(bars)
    return Panel.from_bars(bars)


def momentum(bars, window: int = 20) -> pd.DataFrame:
    """``window``-session momentum: ``close[t] / close[t - window] - 1``.

    Jegadeesh and Titman (1993), "Returns to Buying Winners and Selling Losers", here on a short
    daily horizon.

    Parameters
    ----------
    bars : Panel or DataFrame
        Daily bars (datetime, instrument, close, ...).
    window : int
        Look-back in sessions (of the bars' own session grid).

    Returns
    -------
    pandas.DataFrame
        Signal rows (datetime, instrument, score), score = momentum (fraction).
    """
    p = _panel(bars)
    c = p.close
    out = np.full_like(c, np.nan)
    out[window:] = c[window:] / c[:-window] - 1.0
    return _to_signal(p, out)


def reversal(bars, window: int = 5) -> pd.DataFrame:
    """Short-term reversal: ``-(close[t] / close[t - window] - 1)``.

    Lehmann (1990), "Fads, Martingales, and Market Efficiency": last week's losers outperform.

    Returns
    -------
    pandas.DataFrame
        Signal rows (datetime, instrument, score), score = minus the ``window``-session return.
    """
    sig = momentum(bars, window)
    sig["score"] = -sig["score"]
    return sig


SIGNALS = {"momentum": momentum, "reversal": reversal}
