"""Exchange sessions through exchange-calendars.

exchange-calendars only knows sessions up to a bound per exchange (XSHG: 2026-12-31 in 4.13.2).
A date past that bound raises :class:`~bridge.errors.CalendarError` saying so; bridge never
guesses a session.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from bridge.errors import CalendarError

if TYPE_CHECKING:
    import pandas as pd


HISTORY_START = "1990-01-01"


@lru_cache(maxsize=8)
def get_calendar(exchange: str = "XNYS"):
    """Return the ``exchange_calendars`` calendar for an ISO MIC code (cached).

    Raises
    ------
    CalendarError
        If exchange-calendars does not know ``exchange``.
    """
    import exchange_calendars as xc
    import pandas as pd

    try:
        cls = xc.calendar_utils.global_calendar_dispatcher._calendar_factories[exchange]
    except KeyError as exc:
        raise CalendarError(f"unknown exchange calendar {exchange!r}") from exc
    # A fixed start keeps sessions independent of today's date; the end is the library's default
    # (its own published bound), never extended by guessing.
    start = max(pd.Timestamp(HISTORY_START), cls.bound_min() or pd.Timestamp(HISTORY_START))
    return xc.get_calendar(exchange, start=start)


def sessions(start, end, exchange: str = "XNYS") -> pd.DatetimeIndex:
    """Trading sessions of ``exchange`` from ``start`` to ``end`` inclusive.

    Parameters
    ----------
    start, end : date-like
        Bounds, inclusive; tz-naive dates.
    exchange : str
        ISO MIC code, e.g. ``"XNYS"`` or ``"XSHG"``.

    Returns
    -------
    pandas.DatetimeIndex
        tz-naive session dates, ascending.

    Raises
    ------
    CalendarError
        If a bound lies outside the sessions the calendar publishes.
    """
    import pandas as pd

    cal = get_calendar(exchange)
    start, end = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    first, last = cal.first_session, cal.last_session
    for name, value in (("start", start), ("end", end)):
        if value < first or value > last:
            raise CalendarError(
                f"{name}={value.date()} is outside the {exchange} sessions published by "
                f"exchange-calendars ({first.date()} .. {last.date()}); bridge does not guess "
                "sessions beyond them"
            )
    out = cal.sessions_in_range(start, end)
    return pd.DatetimeIndex(out.tz_localize(None) if out.tz is not None else out)


def next_session(day, exchange: str = "XNYS"):
    """The first session of ``exchange`` strictly after ``day`` (a pandas Timestamp).

    Raises
    ------
    CalendarError
        If that session lies beyond the sessions exchange-calendars publishes (XSHG: after
        2026-12-31 in exchange-calendars 4.13.2): bridge says so instead of guessing.
    """
    import pandas as pd

    cal = get_calendar(exchange)
    day = pd.Timestamp(day).normalize()
    if day < cal.first_session or day >= cal.last_session:
        raise CalendarError(
            f"no {exchange} session after {day.date()} is known: exchange-calendars publishes "
            f"{cal.first_session.date()} .. {cal.last_session.date()}; bridge does not guess")
    nxt = cal.date_to_session(day, direction="next")
    if nxt == day:
        nxt = cal.next_session(day)
    return pd.Timestamp(nxt).tz_localize(None) if pd.Timestamp(nxt).tz else pd.Timestamp(nxt)
