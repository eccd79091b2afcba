"""Validation of daily bars on load.

Bad rows are neither dropped nor kept silently: every rejected row goes to a rejects frame with its
reason(s); sessions missing from the data go to a gaps frame. Both are persisted by the loader and
summarised on screen.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

BAR_COLUMNS = ["datetime", "instrument", "open", "high", "low", "close", "volume"]

#: reason code -> human sentence (the rules applied on load, in order)
REASONS = {
    "null_value": "a price or volume is missing",
    "off_calendar": "the date is not a session of the exchange calendar",
    "duplicate_key": "more than one row for (datetime, instrument); none is trusted",
    "non_positive_price": "open/high/low/close <= 0",
    "negative_volume": "volume < 0",
    "high_low_inconsistent": "high/low do not bound open/close (or high < low)",
}


@dataclass(frozen=True)
class BarValidation:
    """Result of :func:`validate_bars`.

    Attributes
    ----------
    bars : polars.DataFrame
        Accepted rows, columns ``BAR_COLUMNS`` (datetime: Date, instrument: str, prices: f64
        currency/share, volume: f64 shares), sorted by (instrument, datetime).
    rejects : polars.DataFrame
        Rejected rows: ``BAR_COLUMNS`` + ``reason`` (str, codes of :data:`REASONS` joined by
        ``";"``) + ``source`` (str).
    gaps : polars.DataFrame
        ``kind`` ("session_missing": a calendar session with no row at all; "instrument_gap": a
        session inside an instrument's first..last date with no row for it), ``datetime``,
        ``instrument`` (null for session_missing).
    """

    bars: pl.DataFrame
    rejects: pl.DataFrame
    gaps: pl.DataFrame

    def summary(self) -> dict:
        """Counts for the load summary: rows kept, rejects by reason, gaps by kind."""
        reasons = (
            self.rejects.select(pl.col("reason").str.split(";").explode())
            .group_by("reason").len().sort("reason")
        )
        gaps = self.gaps.group_by("kind").len().sort("kind")
        return {
            "rows_accepted": self.bars.height,
            "rows_rejected": self.rejects.height,
            "instruments": self.bars["instrument"].n_unique(),
            "sessions": self.bars["datetime"].n_unique(),
            "rejects_by_reason": dict(zip(reasons["reason"], reasons["len"], strict=True)),
            "gaps_by_kind": dict(zip(gaps["kind"], gaps["len"], strict=True)),
        }


def validate_bars(raw: pl.DataFrame, sessions: list, source: str = "") -> BarValidation:
    """Split raw daily bars into accepted rows, rejects (with reasons) and gaps.

    Parameters
    ----------
    raw : polars.DataFrame
        Columns ``BAR_COLUMNS``; datetime as Date.
    sessions : sequence of datetime.date
        Sessions of the exchange calendar covering the data's date range.
    source : str
        Where the rows came from (kept on each reject).

    Returns
    -------
    BarValidation
    """
    missing = [c for c in BAR_COLUMNS if c not in raw.columns]
    if missing:
        from bridge.errors import DataValidationError

        raise DataValidationError(",".join(missing), "missing_column", "bars lack columns")
    cal = pl.DataFrame({"datetime": pl.Series(sessions).cast(pl.Date)})
    prices = ["open", "high", "low", "close"]
    df = raw.select(BAR_COLUMNS).with_row_index("_row")
    checks = {
        "null_value": pl.any_horizontal([pl.col(c).is_null() | pl.col(c).is_nan()
                                         if c != "instrument" and c != "datetime"
                                         else pl.col(c).is_null() for c in BAR_COLUMNS]),
        "off_calendar": ~pl.col("datetime").is_in(cal["datetime"].implode()),
        "duplicate_key": pl.struct("datetime", "instrument").is_duplicated(),
        "non_positive_price": pl.any_horizontal([pl.col(c) <= 0 for c in prices]),
        "negative_volume": pl.col("volume") < 0,
        "high_low_inconsistent": (
            (pl.col("high") < pl.max_horizontal("open", "close"))
            | (pl.col("low") > pl.min_horizontal("open", "close"))
            | (pl.col("high") < pl.col("low"))
        ),
    }
    flagged = df.with_columns(
        pl.concat_str([pl.when(expr.fill_null(True)).then(pl.lit(code)) for code, expr in checks.items()],
                      separator=";", ignore_nulls=True).alias("reason")
    )
    bad = flagged["reason"] != ""
    rejects = (flagged.filter(bad).sort("_row").drop("_row")
               .with_columns(pl.lit(source).alias("source")))
    bars = flagged.filter(~bad).drop("_row", "reason").sort("instrument", "datetime")
    return BarValidation(bars=bars, rejects=rejects, gaps=find_gaps(raw, cal))


def find_gaps(raw: pl.DataFrame, cal: pl.DataFrame) -> pl.DataFrame:
    """Sessions missing from the data: market-wide, and per instrument inside its history."""
    lo, hi = raw["datetime"].min(), raw["datetime"].max()
    cal = cal.filter(pl.col("datetime").is_between(lo, hi))
    present = raw.select("datetime").unique()
    session_missing = cal.join(present, on="datetime", how="anti").select(
        pl.lit("session_missing").alias("kind"), "datetime",
        pl.lit(None, dtype=pl.String).alias("instrument"))
    data_sessions = present.sort("datetime")
    spans = raw.group_by("instrument").agg(pl.col("datetime").min().alias("lo"),
                                            pl.col("datetime").max().alias("hi"))
    expected = spans.join(data_sessions, how="cross").filter(
        pl.col("datetime").is_between(pl.col("lo"), pl.col("hi")))
    inst_gap = expected.join(raw.select("datetime", "instrument").unique(),
                             on=["datetime", "instrument"], how="anti").select(
        pl.lit("instrument_gap").alias("kind"), "datetime", "instrument")
    return pl.concat([session_missing, inst_gap]).sort("kind", "datetime", "instrument")
