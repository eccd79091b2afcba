"""Execution schedules: one parent order split into child orders over one trading session.

Three schedules, all side-agnostic (``quantity > 0``, the caller keeps the side) and all returning
the same frame, one row per child order:

=========  ==========================  ====================================================
column     dtype                       meaning
=========  ==========================  ====================================================
slice      int64                       0, 1, ... in time order
start      object (datetime.time)      time of day the slice begins (exchange local time)
end        object (datetime.time)      time of day the slice ends
quantity   float64                     shares for the slice, >= 0
=========  ==========================  ====================================================

Child quantities are whole multiples of ``trade_unit`` (any fraction when it is None). Each slice
is rounded down to lots and the rounding leftovers go to the last slice, so for :func:`twap` and
:func:`vwap` the children sum to the parent exactly (to float rounding when fractional).
:func:`pov` caps every slice at a share of the expected volume, so the parent may not complete:
what it could not schedule is reported in the ``remaining`` column and
``frame.attrs["remainder"]``, never dropped.

:data:`DEFAULT_US_PROFILE` is a *stylised* intraday volume profile for US equities: 13 half-hour
buckets from 09:30 to 16:00, U-shaped (12% in the first half hour, 5.5% per bucket at midday,
14.5% in the last half hour). It is an illustrative default with the well-known shape (Jain and
Joh, 1988), not measured from any data set; pass a profile measured on your own instruments.

Sources: TWAP, VWAP and percent-of-volume as in B. Johnson, *Algorithmic Trading and DMA* (2010),
ch. 4; the U shape of intraday volume: P. Jain and G. Joh, "The dependence between hourly prices
and trading volume", JFQA 23(3), 1988.
"""

from __future__ import annotations

import io
import math
import numbers
from datetime import time
from importlib import resources

import numpy as np
import pandas as pd

from bridge.errors import ConfigError, ValidationError

_US = 1_000_000  # microseconds per second
_EPS = 1e-9      # lots; keeps 2.9999999999 lots (float noise) from rounding down to 2


def twap(quantity: float, start: time | str, end: time | str, n_slices: int,
         trade_unit: float | None = 1) -> pd.DataFrame:
    """Equal slices by time (time-weighted average price).

    Parameters
    ----------
    quantity : float
        Parent order, shares, > 0 and a whole multiple of ``trade_unit``.
    start, end : datetime.time or str
        Time of day the schedule begins and ends (``"HH:MM"`` or ``"HH:MM:SS"``), start < end.
    n_slices : int
        Number of child orders, >= 1. The session is cut into equal intervals (to the
        microsecond).
    trade_unit : float or None, default 1
        Shares per lot; None allows fractional children.

    Returns
    -------
    pandas.DataFrame
        Columns ``slice, start, end, quantity`` (module docstring), ``n_slices`` rows. Every slice
        gets ``floor(quantity / n_slices)`` in lots, the last one the leftovers: 1,000 shares in 3
        slices of 100-share lots -> 300, 300, 400.

    Raises
    ------
    ConfigError
        ``quantity``, ``n_slices``, ``trade_unit``, ``start`` or ``end`` invalid.
    """
    lots, unit = _lots(quantity, trade_unit)
    if isinstance(n_slices, bool) or not isinstance(n_slices, int | np.integer) or n_slices < 1:
        raise ConfigError(f"n_slices must be an integer >= 1, got {n_slices!r}")
    t0, t1 = _micros(_config_time(start, "start")), _micros(_config_time(end, "end"))
    if t1 - t0 < n_slices:
        raise ConfigError(f"end must be after start with room for {n_slices} slices, "
                          f"got start={start!r}, end={end!r}")
    edges = [_time_of(t0 + k * (t1 - t0) // n_slices) for k in range(n_slices + 1)]
    qty = _split(lots, unit, np.ones(n_slices), cumulative=False)
    return _frame(edges[:-1], edges[1:], qty)


def vwap(quantity: float, profile: pd.DataFrame, trade_unit: float | None = 1) -> pd.DataFrame:
    """Slices proportional to an intraday volume profile (volume-weighted average price).

    Parameters
    ----------
    quantity : float
        Parent order, shares, > 0 and a whole multiple of ``trade_unit``.
    profile : pandas.DataFrame
        One row per bucket, in time order, not overlapping: ``start``, ``end`` (datetime.time
        or ``"HH:MM"`` str, start < end) and ``volume_share`` (float >= 0, summing to 1 within
        1e-9), e.g. :data:`DEFAULT_US_PROFILE`.
    trade_unit : float or None, default 1
        Shares per lot; None allows fractional children.

    Returns
    -------
    pandas.DataFrame
        Columns ``slice, start, end, quantity``, one row per bucket (zero-share buckets get 0).
        Slice k gets ``floor(Q * cum_share[k]) - floor(Q * cum_share[k-1])`` lots (Q: the parent
        in lots): each slice within one lot of its share, the rounding remainder in the last.

    Raises
    ------
    ConfigError
        ``quantity`` or ``trade_unit`` invalid, or ``profile`` not a DataFrame.
    ValidationError
        A column of ``profile`` is missing or holds a bad value; ``field`` names it, ``rows``
        holds the offending rows (reason ``sum`` when the shares do not sum to 1).
    """
    lots, unit = _lots(quantity, trade_unit)
    starts, ends, share = _intervals(profile, "volume_share", "profile")
    total = math.fsum(share)
    if abs(total - 1.0) > 1e-9:
        raise ValidationError("volume_share", "sum", f"volume shares must sum to 1, got {total!r}",
                              profile)
    return _frame(starts, ends, _split(lots, unit, share))


def pov(quantity: float, expected_volume: pd.DataFrame, participation: float,
        trade_unit: float | None = 1) -> pd.DataFrame:
    """Slices that take a fixed share of each interval's expected volume (percent of volume).

    Parameters
    ----------
    quantity : float
        Parent order, shares, > 0 and a whole multiple of ``trade_unit``.
    expected_volume : pandas.DataFrame
        One row per interval, in time order, not overlapping: ``start``, ``end`` (datetime.time
        or ``"HH:MM"`` str) and ``expected_volume`` (market volume expected in the interval,
        shares, >= 0).
    participation : float
        Participation rate, in (0, 1]: the largest share of an interval's volume to trade.
    trade_unit : float or None, default 1
        Shares per lot; None allows fractional children.

    Returns
    -------
    pandas.DataFrame
        Columns ``slice, start, end, quantity`` plus ``remaining`` (parent shares still
        unscheduled after the slice), one row per interval. Slice k gets
        ``floor(participation * expected_volume[k])`` in lots until the parent is complete, then
        0. ``frame.attrs["remainder"]`` (float, shares) is the part of the parent the session
        cannot absorb; ``quantity.sum() + remainder == quantity`` of the parent.

    Raises
    ------
    ConfigError
        ``quantity``, ``trade_unit`` or ``participation`` invalid, or ``expected_volume`` not a
        DataFrame.
    ValidationError
        A column of ``expected_volume`` is missing or holds a bad value (``field`` names it).
    """
    lots, unit = _lots(quantity, trade_unit)
    if not (_is_number(participation) and 0 < participation <= 1):
        raise ConfigError(f"participation must be in (0, 1], got {participation!r}")
    starts, ends, volume = _intervals(expected_volume, "expected_volume", "expected_volume")
    cap = participation * volume
    if unit is not None:
        cap = np.floor(cap / unit + _EPS)
    done = np.minimum(np.cumsum(cap), lots)   # once the parent is complete, later slices get 0
    qty = np.diff(done, prepend=0.0)
    scale = 1.0 if unit is None else unit
    frame = _frame(starts, ends, qty * scale)
    frame["remaining"] = (lots - done) * scale
    frame.attrs["remainder"] = float(frame["remaining"].iloc[-1])
    return frame


def _lots(quantity: float, trade_unit: float | None) -> tuple[float, float | None]:
    """The parent in lots (in shares when ``trade_unit`` is None), and the unit."""
    if trade_unit is not None and not (_is_number(trade_unit) and trade_unit > 0):
        raise ConfigError(f"trade_unit must be a positive number or None, got {trade_unit!r}")
    if not (_is_number(quantity) and quantity > 0):
        raise ConfigError(f"quantity must be a finite number > 0, got {quantity!r}")
    if trade_unit is None:
        return float(quantity), None
    lots = round(quantity / trade_unit)
    # children are whole lots summing to the parent, so the parent must be whole lots too
    if lots < 1 or abs(quantity / trade_unit - lots) > _EPS:
        raise ConfigError(f"quantity must be a whole multiple of trade_unit={trade_unit!r}, got "
                          f"{quantity!r} (send the odd lot as its own order)")
    return float(lots), float(trade_unit)


def _is_number(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _split(lots: float, unit: float | None, weights: np.ndarray,
           cumulative: bool = True) -> np.ndarray:
    """``lots`` in proportion to ``weights`` (>= 0, sum > 0), as shares; leftovers to the last.

    ``cumulative`` floors the running total (VWAP: each slice within one lot of its share);
    otherwise each slice is floored on its own (TWAP: equal slices, the remainder in the last).
    """
    w = weights / weights.sum()
    if unit is None:
        head = lots * w[:-1]
        # max: float noise could push a last slice of share 0 to -1e-13 shares
        return np.append(head, max(lots - math.fsum(head), 0.0))
    # Floor the cumulative target, not each slice: lots then follow the weights (no pile-up of
    # every slice's rounding in the last one) and the rounding remainder lands in the last slice.
    if not cumulative:
        head = np.floor(lots * w[:-1] + _EPS)
        return np.append(head, lots - head.sum()) * unit
    cum = np.floor(lots * np.cumsum(w[:-1]) + _EPS)
    head = np.diff(np.concatenate([[0.0], cum]))
    return np.append(head, lots - cum[-1] if len(cum) else lots) * unit


def _intervals(frame: pd.DataFrame, value: str, name: str) -> tuple[list, list, np.ndarray]:
    """Validated (starts, ends, values) of a frame of time-of-day intervals."""
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    for col in ("start", "end", value):
        if col not in frame.columns:
            raise ValidationError(col, "missing_column", f"{name} has no column {col!r}")
    if frame.empty:
        raise ValidationError(value, "empty", f"{name} has no rows")
    times = {}
    for col in ("start", "end"):
        times[col] = [_parse_time(v) for v in frame[col]]
        bad = np.array([t is None for t in times[col]])
        if bad.any():
            raise ValidationError(col, "bad_time", "expected datetime.time or 'HH:MM'",
                                  frame[bad])
    starts, ends = times["start"], times["end"]
    bad = np.array([s >= e for s, e in zip(starts, ends, strict=True)])
    if bad.any():
        raise ValidationError("end", "not_after_start", "each interval must end after it starts",
                              frame[bad])
    bad = np.array([False] + [s < e for s, e in zip(starts[1:], ends[:-1], strict=True)])
    if bad.any():
        raise ValidationError("start", "overlap", "intervals must be in time order, not "
                              "overlapping (rows start before the previous one ends)", frame[bad])
    values = pd.to_numeric(frame[value], errors="coerce").to_numpy(dtype=np.float64,
                                                                   na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValidationError(value, "not_finite", "values must be finite numbers", frame[bad])
    bad = values < 0
    if bad.any():
        raise ValidationError(value, "negative", "values must be >= 0", frame[bad])
    return starts, ends, values


def _parse_time(value: object) -> time | None:
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        try:
            return time.fromisoformat(value)
        except ValueError:
            return None
    return None


def _config_time(value: object, name: str) -> time:
    t = _parse_time(value)
    if t is None:
        raise ConfigError(f"{name} must be a datetime.time or 'HH:MM', got {value!r}")
    return t


def _micros(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * _US + t.microsecond


def _time_of(micros: int) -> time:
    seconds, us = divmod(micros, _US)
    return time(seconds // 3600, seconds // 60 % 60, seconds % 60, us)


def _frame(starts: list, ends: list, qty: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "slice": np.arange(len(qty), dtype=np.int64),
        "start": pd.Series(starts, dtype=object),
        "end": pd.Series(ends, dtype=object),
        "quantity": np.asarray(qty, dtype=np.float64),
    })


def _load_default_profile() -> pd.DataFrame:
    text = resources.files("bridge.planner").joinpath("data", "us_intraday_profile.csv")
    raw = pd.read_csv(io.StringIO(text.read_text(encoding="utf-8")), comment="#")
    starts, ends, share = _intervals(raw, "volume_share", "us_intraday_profile.csv")
    return pd.DataFrame({"start": pd.Series(starts, dtype=object),
                         "end": pd.Series(ends, dtype=object), "volume_share": share})


#: Stylised US-equity intraday volume profile (module docstring): columns ``start``, ``end``
#: (datetime.time), ``volume_share`` (float64, sums to 1), 13 half-hour buckets 09:30-16:00,
#: U-shaped. An illustrative default, not measured data: pass your own measured profile.
DEFAULT_US_PROFILE: pd.DataFrame = _load_default_profile()
