"""The signal contract: rows (datetime, instrument, score).

Higher score = more attractive. Qlib's convention holds: the score dated t is used to trade on the
next session. :func:`validate_signals` refuses bad rows with a typed error that lists them.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from bridge._frames import member
from bridge.errors import SignalValidationError

SIGNAL_COLUMNS = ["datetime", "instrument", "score"]


def to_signal_frame(signals) -> pd.DataFrame:
    """Coerce a pandas/polars frame, or a Qlib-style frame indexed by (datetime, instrument) with
    a ``score`` column (pred.pkl), to a plain frame with columns ``SIGNAL_COLUMNS``."""
    if hasattr(signals, "to_pandas") and not isinstance(signals, pd.DataFrame):
        signals = signals.to_pandas()
    if isinstance(signals, pd.Series):
        signals = signals.rename("score").to_frame()
    if not isinstance(signals, pd.DataFrame):
        raise SignalValidationError("signals", "type", f"expected a DataFrame, got {type(signals)!r}")
    if isinstance(signals.index, pd.MultiIndex) and {"datetime", "instrument"} <= set(signals.index.names):
        signals = signals.reset_index()
    missing = [c for c in SIGNAL_COLUMNS if c not in signals.columns]
    if missing:
        raise SignalValidationError(",".join(missing), "missing_column",
                                    f"signals need columns {SIGNAL_COLUMNS}")
    return signals[SIGNAL_COLUMNS]


def validate_signals(signals, instruments: Iterable[str] | None = None,
                     sessions: Iterable | None = None) -> pd.DataFrame:
    """Check a signal frame and return it normalised.

    Parameters
    ----------
    signals : DataFrame
        Columns ``datetime``, ``instrument``, ``score`` (pandas or polars), or a Qlib pred frame
        indexed by (datetime, instrument) with a ``score`` column.
    instruments : iterable of str, optional
        Known instruments; any other is refused.
    sessions : iterable of date-like, optional
        Exchange sessions; a datetime off them is refused.

    Returns
    -------
    pandas.DataFrame
        ``datetime`` (datetime64, normalised to the day), ``instrument`` (str), ``score``
        (float64), sorted by (datetime, instrument), fresh RangeIndex.

    Raises
    ------
    SignalValidationError
        ``reason`` is one of ``missing_column``, ``bad_datetime``, ``duplicate_key``, ``nan``,
        ``unknown_instrument``, ``off_calendar``; ``rows`` holds the offending rows.
    """
    df = to_signal_frame(signals).copy()
    raw = df["datetime"]
    dt = (raw if pd.api.types.is_datetime64_any_dtype(raw)
          else pd.to_datetime(raw, errors="coerce", format="mixed"))
    if dt.isna().any():
        raise SignalValidationError("datetime", "bad_datetime", "unparseable or missing datetime",
                                    df[dt.isna()])
    df["datetime"] = dt.dt.normalize()
    df["instrument"] = df["instrument"].astype(str)
    df["score"] = pd.to_numeric(df["score"], errors="coerce").astype("float64")
    in_order = _strictly_increasing(df)  # then no key is repeated and nothing is to sort
    if not in_order:
        dup = df.duplicated(["datetime", "instrument"], keep=False)
        if dup.any():
            raise SignalValidationError("datetime,instrument", "duplicate_key",
                                        "more than one score for the same (datetime, instrument)",
                                        df[dup])
    bad = ~np.isfinite(df["score"].to_numpy())
    if bad.any():
        raise SignalValidationError("score", "nan", "score is NaN, infinite or not a number",
                                    df[bad])
    if instruments is not None:
        unknown = ~member(df["instrument"], pd.Index(list(instruments)).astype(str))
        if unknown.any():
            raise SignalValidationError("instrument", "unknown_instrument",
                                        "instrument not in the instruments table", df[unknown])
    if sessions is not None:
        cal = pd.DatetimeIndex(pd.to_datetime(list(sessions))).normalize()
        off = ~member(df["datetime"], cal)
        if off.any():
            raise SignalValidationError("datetime", "off_calendar",
                                        "datetime is not an exchange session", df[off])
    if not in_order:
        df = df.sort_values(["datetime", "instrument"], kind="stable")
    return df.reset_index(drop=True)


def _strictly_increasing(df: pd.DataFrame) -> bool:
    """Whether the rows are sorted by (datetime, instrument) with no key repeated.

    Signals computed on a panel come out in this order; checking it costs two vectorised
    comparisons, where hashing the keys for duplicates and sorting them cost ~15 ms on 100,000
    rows.
    """
    dt = df["datetime"].to_numpy()
    if not (dt[1:] >= dt[:-1]).all():
        return False
    tie = np.flatnonzero(dt[1:] == dt[:-1])
    inst = df["instrument"].array
    return bool(np.all(inst[tie] < inst[tie + 1]))
