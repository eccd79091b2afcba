"""Place signal rows on the session grid of a panel: the score dated t trades on the next session."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bridge.errors import SignalValidationError
from bridge.market.data import Panel


def signal_grid(panel: Panel, signals: pd.DataFrame) -> tuple[np.ndarray, dict]:
    """Scores to use when trading each session.

    Row t of the result holds, per instrument, the score of the latest signal date strictly
    before session t (Qlib's convention: the score dated t trades on the next session). When
    several signal dates map to the same trade session (sessions missing from the bars), the latest
    wins and the others are counted as ``superseded``; signal dates on or after the last session
    have no session to trade on and are counted as ``after_last_session``.

    Parameters
    ----------
    panel : Panel
    signals : DataFrame
        Validated signal rows (datetime, instrument, score).

    Returns
    -------
    grid : ndarray of float64, shape (T, N)
        NaN where no score applies.
    counts : dict
        ``rows``, ``used``, ``superseded``, ``after_last_session``.

    Raises
    ------
    SignalValidationError
        If an instrument is not in the panel.
    """
    ni = pc.index_in(pa.array(signals["instrument"].astype(str)),
                     value_set=pa.array(panel.instruments)).fill_null(-1).to_numpy()
    unknown = ni < 0
    if unknown.any():
        raise SignalValidationError("instrument", "unknown_instrument",
                                    "instrument not in the market data", signals[unknown])
    dates = signals["datetime"].to_numpy().astype("datetime64[D]")
    ti = np.searchsorted(panel.sessions, dates, side="right")
    T, N = panel.shape
    inside = ti < T
    # the latest signal date per trade session wins
    day = dates.astype(np.int64)
    last_day = np.full(T + 1, np.iinfo(np.int64).min)
    np.maximum.at(last_day, ti, day)
    use = inside & (day == last_day[ti])
    grid = np.full((T, N), np.nan)
    grid[ti[use], ni[use]] = signals["score"].to_numpy(np.float64)[use]
    counts = {"rows": int(len(signals)), "used": int(use.sum()),
              "superseded": int((inside & ~use).sum()), "after_last_session": int((~inside).sum())}
    return grid, counts
