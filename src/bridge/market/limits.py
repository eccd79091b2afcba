"""Daily price-limit flags and ex-rights gaps of daily bars (A-shares, or any market with limits).

The exchange rule (SSE and SZSE Trading Rules, "price limits" / 涨跌幅限制): a session's trades
must stay within ``[down, up]`` with ``up = prev_close * (1 + pct)`` and
``down = prev_close * (1 - pct)`` rounded half-up to the tick (0.01 CNY), where ``prev_close`` is
the session's reference price and ``pct`` the instrument's band (:meth:`MarketRules.limit_pct`:
10% main board and SME board, 20% ChiNext/STAR after their reforms, 5% ST).

The reference price is the previous close, except on an ex-rights / ex-dividend session, where
the exchange resets it to the ex-rights reference price (除权除息参考价, same rules:
``(prev_close - cash dividend + rights price * rights ratio) / (1 + share change ratio)``), and
on the few sessions that have no limit at all (first day of an IPO before 2014, first session
after the 2005-2006 split-share reform, relisting). Unadjusted bars without corporate-action data
cannot tell what the reference was on those sessions. What they can tell: a session whose prices
leave the band around the unadjusted previous close cannot be a normal session, since the
exchange would not have matched those trades. :func:`ex_rights_gaps` reports such sessions;
:func:`limit_flags` treats their reference price as unknown and flags no limit on them (never a
guess from the unadjusted previous close, which would turn a 2-for-1 split into a "limit-down").

Known blind spot, by construction: a reset too small to push any price out of the old band
(e.g. a small cash dividend) is not detected, and a close at the true limit of that session may
then be missed by up to the dividend (flags err towards "not at the limit"). Corporate-action
data (a vendor's ``pre_close``) is the only cure.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date

import numpy as np
import polars as pl

from bridge.errors import DataValidationError
from bridge.market.rules import MarketRules

BAR_COLUMNS = ("datetime", "instrument", "open", "high", "low", "close")
_PRIVATE = ["_row", "_st", "_prev", "_pct", "_up", "_down", "_out_open", "_out_any"]

#: Comparisons of prices with limit prices tolerate this much float noise (currency/share; far
#: below any tick, so a price one tick off the limit is never taken for the limit).
PRICE_EPS = 1e-6


def _as_frame(bars) -> pl.DataFrame:
    if not isinstance(bars, pl.DataFrame):
        try:
            bars = pl.from_pandas(bars)
        except (TypeError, ValueError, ImportError) as err:
            raise DataValidationError(
                "bars", "not_a_frame", f"expected a polars or pandas DataFrame, got {type(bars)!r}"
            ) from err
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    clash = [c for c in _PRIVATE if c in bars.columns]
    if clash:
        raise DataValidationError(clash[0], "reserved_column", f"bars may not have columns {clash}")
    if missing:
        raise DataValidationError(missing[0], "missing_column",
                                  f"bars need columns {list(BAR_COLUMNS)}; missing {missing}")
    keys = bars.select("datetime", "instrument")
    nulls = bars.filter(pl.col("datetime").is_null() | pl.col("instrument").is_null())
    if nulls.height:
        raise DataValidationError("datetime", "null_value", "datetime/instrument must be set",
                                  nulls.to_pandas())
    dup = bars.filter(keys.is_duplicated())
    if dup.height:
        raise DataValidationError("datetime", "duplicate_key",
                                  "more than one bar per (datetime, instrument)", dup.to_pandas())
    return bars


def _st_column(df: pl.DataFrame, st) -> pl.Expr:
    """The per-row ST flag from ``st`` (see :func:`limit_flags`)."""
    if st is None or st is False:
        return pl.lit(False)
    if st is True:
        return pl.lit(True)
    if isinstance(st, str):
        if st not in df.columns:
            raise DataValidationError(st, "missing_column", f"st names column {st!r}, not in bars")
        return pl.col(st).fill_null(False).cast(pl.Boolean)
    if isinstance(st, Collection) and all(isinstance(x, str) for x in st):
        return pl.col("instrument").is_in(list(st))
    raise DataValidationError("st", "bad_value",
                              "st must be None, a bool, a column name or instrument codes "
                              f"(per-row flags go in a column), got {type(st).__name__}")


def _limit_pct(df: pl.DataFrame, rules: MarketRules) -> np.ndarray:
    """``rules.limit_pct`` per row, float64 (NaN: no limit), one call per distinct band period.

    A band only changes on the ``since`` dates of ``rules.limits``, so it is evaluated once per
    (instrument, ST flag, period between those dates) rather than once per row.
    """
    starts = sorted({r.since for r in rules.limits if r.since is not None})
    days = df["datetime"].cast(pl.Date).to_numpy().astype("datetime64[D]")
    period = np.searchsorted(np.array(starts, dtype="datetime64[D]"), days, side="right")
    first_day = [date.min, *starts]  # a date inside each period (periods start on a since date)
    keyed = df.select("instrument", "_st").with_columns(_period=pl.Series(period, dtype=pl.Int64))
    keys = keyed.unique(maintain_order=True)
    pct = [rules.limit_pct(str(inst), on=first_day[p], st=bool(s))
           for inst, s, p in keys.iter_rows()]
    keys = keys.with_columns(_pct=pl.Series([np.nan if v is None else v for v in pct],
                                            dtype=pl.Float64))
    return keyed.join(keys, on=["instrument", "_st", "_period"], how="left",
                      maintain_order="left")["_pct"].to_numpy()


def _band(bars, rules: MarketRules, st) -> pl.DataFrame:
    """Bars in input order with the unadjusted band and the band-break test, as private columns."""
    df = _as_frame(bars)
    df = df.with_columns(_st=_st_column(df, st)).with_row_index("_row")
    df = df.sort("instrument", "datetime")
    df = df.with_columns(_prev=pl.col("close").cast(pl.Float64).shift(1).over("instrument"))
    pct = _limit_pct(df, rules)
    prev = df["_prev"].to_numpy().astype(np.float64)
    up, down = rules.limit_prices(prev, pct)
    px = {c: df[c].cast(pl.Float64).to_numpy() for c in ("open", "high", "low", "close")}
    with np.errstate(invalid="ignore"):
        out_open = (px["open"] > up + PRICE_EPS) | (px["open"] < down - PRICE_EPS)
        out_any = out_open.copy()
        for c in ("high", "low", "close"):
            out_any |= (px[c] > up + PRICE_EPS) | (px[c] < down - PRICE_EPS)
    # NaN (no band) becomes null: polars orders NaN above every number, so `close <= NaN` is True
    df = df.with_columns(_pct=pl.Series(pct), _up=pl.Series(up).fill_nan(None),
                         _down=pl.Series(down).fill_nan(None),
                         _out_open=pl.Series(out_open), _out_any=pl.Series(out_any))
    return df.sort("_row")


def ex_rights_gaps(bars, rules: MarketRules, st=None) -> pl.DataFrame:
    """Sessions whose prices leave the band around the unadjusted previous close.

    On a normal session no trade can happen outside ``[limit_down, limit_up]`` of the previous
    close, so such a session had another reference price: an ex-rights / ex-dividend session
    (split, bonus or rights shares, a dividend large enough) or a session without any limit
    (see the module docstring). Detected when the open (``trigger="open"``: ``|open / prev_close
    - 1|`` beyond the band, the classic ex-rights gap) or else the high, low or close
    (``trigger="range"``) is outside the band, comparing with the tick-rounded limit prices
    rather than the ratio, so an open exactly at the limit (``open / prev_close - 1`` a hair
    above ``pct`` in floating point) is not a gap.

    Parameters
    ----------
    bars : polars.DataFrame or pandas.DataFrame
        Daily bars of one or many instruments, one row per (datetime, instrument); columns
        ``datetime`` (Date), ``instrument`` (str, e.g. ``"002032.SZ"``), ``open``, ``high``,
        ``low``, ``close`` (float, currency/share, unadjusted); other columns are ignored.
        Rows need not be sorted; each instrument's previous row is its previous session (a
        suspension in between keeps the last close as the reference, as the exchange does).
    rules : MarketRules
        The market (:data:`bridge.market.rules.CN`); instruments it gives no band are never
        reported.
    st : None, bool, str or collection of str, optional
        ST status: None/False none, True all rows, a column name of ``bars`` (bool per row), or
        the instruments that are ST on all their rows. ST bands are narrower (5%), so more gaps.

    Returns
    -------
    polars.DataFrame
        One row per detected session, ordered by (instrument, datetime): ``datetime``,
        ``instrument``, ``prev_close`` (the unadjusted previous close), ``open``, ``high``,
        ``low``, ``close``, ``limit_pct`` (fraction), ``limit_up_price``, ``limit_down_price``
        (the band of the unadjusted previous close, currency/share), ``trigger`` ("open" or
        "range"), ``implied_ratio`` (``open / prev_close``: the adjustment ratio implied if the
        session opened at its reference; an estimate), ``ref_low``, ``ref_high`` (currency/share:
        the reference prices that would keep the whole session inside its band,
        ``(high - tick/2) / (1 + pct)`` .. ``(low + tick/2) / (1 - pct)``; null when none does,
        i.e. the session traded wider than any band: it had no limit that day).

    Raises
    ------
    DataValidationError
        A required column is missing, or a (datetime, instrument) key is null or duplicated.
    """
    df = _band(bars, rules, st).filter(pl.col("_out_any")).sort("instrument", "datetime")
    half = rules.tick_size / 2
    ref_low = (pl.col("high") - half) / (1 + pl.col("_pct"))
    ref_high = (pl.col("low") + half) / (1 - pl.col("_pct"))
    fits = ref_low <= ref_high
    return df.select(
        "datetime", "instrument",
        pl.col("_prev").alias("prev_close"),
        *(pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close")),
        pl.col("_pct").alias("limit_pct"),
        pl.col("_up").alias("limit_up_price"),
        pl.col("_down").alias("limit_down_price"),
        pl.when(pl.col("_out_open")).then(pl.lit("open")).otherwise(pl.lit("range"))
        .alias("trigger"),
        (pl.col("open") / pl.col("_prev")).alias("implied_ratio"),
        pl.when(fits).then(ref_low).alias("ref_low"),
        pl.when(fits).then(ref_high).alias("ref_high"),
    )


def limit_flags(bars, rules: MarketRules, st=None) -> pl.DataFrame:
    """Per-session limit prices and whether the session closed at a limit.

    Parameters
    ----------
    bars : polars.DataFrame or pandas.DataFrame
        Daily bars as in :func:`ex_rights_gaps` (``volume`` and other columns are kept as they
        are). N rows, any order.
    rules : MarketRules
        The market, e.g. :data:`bridge.market.rules.CN`.
    st : None, bool, str or collection of str, optional
        ST status, as in :func:`ex_rights_gaps`.

    Returns
    -------
    polars.DataFrame
        ``bars`` in their order (N rows) plus:

        - ``prev_close`` (f64, currency/share): the session's reference price, the previous
          close of the same instrument; null when unknown: the instrument's first row, and
          ex-rights sessions (``ex_rights``), whose reference the exchange reset.
        - ``limit_pct`` (f64, fraction): ``rules.limit_pct(instrument, on=datetime, st=...)``,
          NaN when the instrument has no limit.
        - ``limit_up_price``, ``limit_down_price`` (f64, currency/share):
          ``rules.limit_prices(prev_close, limit_pct)`` (half-up to the tick); null or NaN when
          ``prev_close`` or ``limit_pct`` is unknown.
        - ``ex_rights`` (bool): the session left the band of the unadjusted previous close
          (a row of :func:`ex_rights_gaps`).
        - ``limit_up`` (bool): ``close >= limit_up_price``, the session closed at its upper
          limit: no buys at the close (sellers only at the limit; the planner's ``limit_up``).
        - ``limit_down`` (bool): ``close <= limit_down_price``: no sells at the close.
        - ``one_price_limit`` (bool): ``high == low`` at a limit, a one-price session (一字板)
          that was untradable all day on one side, whatever the deal price.

        The three flags are False where ``prev_close`` or ``limit_pct`` is unknown: an
        ex-rights session is never flagged from the unadjusted previous close. Comparisons
        allow :data:`PRICE_EPS` of float noise.

    Raises
    ------
    DataValidationError
        As :func:`ex_rights_gaps`.
    """
    df = _band(bars, rules, st)
    known = pl.col("_prev").is_not_null() & pl.col("_prev").is_not_nan() & ~pl.col("_out_any")
    prev = pl.when(known).then(pl.col("_prev"))
    up = pl.when(known).then(pl.col("_up"))
    down = pl.when(known).then(pl.col("_down"))
    close = pl.col("close").cast(pl.Float64)
    at_up = (close >= up - PRICE_EPS).fill_null(False)
    at_down = (close <= down + PRICE_EPS).fill_null(False)
    flat = (pl.col("high").cast(pl.Float64) - pl.col("low").cast(pl.Float64)).abs() <= PRICE_EPS
    df = df.with_columns(
        prev_close=prev, limit_pct=pl.col("_pct"), limit_up_price=up, limit_down_price=down,
        ex_rights=pl.col("_out_any"), limit_up=at_up, limit_down=at_down,
    ).with_columns(one_price_limit=(flat & (pl.col("limit_up") | pl.col("limit_down")))
                   .fill_null(False))
    return df.drop(_PRIVATE)
