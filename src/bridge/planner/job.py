"""``bridge plan``: tomorrow's orders from files (the imperative shell around plan_session).

Reads a predictions file (Qlib pred.pkl, Parquet or CSV of datetime, instrument, score), a
positions file (CSV or Parquet: instrument, amount[, sellable, days_held]) and the market data,
freezes the decision as a DecisionSnapshot in DuckDB, and writes the order list (CSV + Parquet).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from bridge.errors import SignalValidationError, ValidationError
from bridge.market.calendar import next_session
from bridge.market.data import load_bars, load_instruments, load_manifest
from bridge.market.rules import MARKETS
from bridge.planner.tomorrow import PlanParams
from bridge.signals import validate_signals
from bridge.store.snapshots import Snapshot, build_snapshot, save_snapshot


@dataclass(frozen=True)
class PlanOutput:
    snapshot: Snapshot
    created: bool
    files: list[Path]


def read_positions(path: Path | str | None) -> pd.DataFrame:
    """Positions file -> DataFrame (instrument, amount[, sellable, days_held]); None: empty book.

    Raises
    ------
    ValidationError
        Missing columns, duplicate instruments, negative or non-finite amounts.
    """
    if path is None:
        return pd.DataFrame({"instrument": pd.Series([], dtype=str), "amount": pd.Series([], dtype=float)})
    path = Path(path)
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    for col in ("instrument", "amount"):
        if col not in frame:
            raise ValidationError(col, "missing_column", f"positions file {path} lacks {col!r}")
    frame["instrument"] = frame["instrument"].astype(str)
    dup = frame["instrument"].duplicated(keep=False)
    if dup.any():
        raise ValidationError("instrument", "duplicate_key", "instrument listed twice", frame[dup])
    bad = ~np.isfinite(frame["amount"].astype(float)) | (frame["amount"] < 0)
    if bad.any():
        raise ValidationError("amount", "bad_amount", "amount must be a finite number >= 0", frame[bad])
    return frame[frame["amount"] > 0].reset_index(drop=True)


def market_frame(data_dir: Path, signal_date: pd.Timestamp, instruments) -> pd.DataFrame:
    """Reference prices for the next session: each instrument's close on the signal date.

    An instrument without a bar on the signal date (suspended, or not yet/no longer listed) is
    marked untradable, priced at its last close before that date if it has one.
    """
    bars = load_bars(data_dir, end=signal_date.date(), instruments=list(instruments))
    last = bars.sort("datetime").group_by("instrument").agg(
        pl.col("datetime").last(), pl.col("close").last(), pl.col("volume").last()).to_pandas()
    last["tradable"] = pd.to_datetime(last["datetime"]) == signal_date
    return last.rename(columns={"close": "price"})[["instrument", "price", "tradable", "volume"]]


def plan_tomorrow(predictions: pd.DataFrame, positions: pd.DataFrame, cash: float,
                  params: PlanParams, data_dir: Path, db: Path, out_dir: Path,
                  signal_date=None, created_at: datetime | None = None) -> PlanOutput:
    """Plan the session after ``signal_date`` and persist snapshot + orders.

    Parameters
    ----------
    predictions : DataFrame
        Signal rows (datetime, instrument, score), any number of dates.
    positions : DataFrame
        Current book (instrument, amount[, sellable, days_held]).
    cash : float
        Available cash, currency.
    params : PlanParams
    data_dir, db, out_dir : Path
        Market data, DuckDB file, output folder (files go to ``out_dir/<trade_date>/``).
    signal_date : date-like, optional
        Which scores to use (default: the latest date in ``predictions``).

    Returns
    -------
    PlanOutput
        The snapshot (with target and orders), whether it was newly stored, the files written.
    """
    rules = MARKETS[params.market]
    known = load_instruments(data_dir)["instrument"].to_list()
    sig = validate_signals(predictions, instruments=known)
    signal_date = pd.Timestamp(signal_date or sig["datetime"].max()).normalize()
    today = sig[sig["datetime"] == signal_date]
    if today.empty:
        raise SignalValidationError("datetime", "no_rows", f"no predictions dated {signal_date.date()}",
                                    sig.tail())
    trade_date = next_session(signal_date, rules.exchange)
    names = sorted(set(today["instrument"]) | set(positions["instrument"]))
    market = market_frame(data_dir, signal_date, names)
    snap = build_snapshot(signal_date, trade_date, params, load_manifest(data_dir).get("data_hash", ""),
                          cash, today[["instrument", "score"]], positions, market)
    created = save_snapshot(db, snap, created_at or datetime.now().replace(microsecond=0))
    folder = Path(out_dir) / str(trade_date.date())
    folder.mkdir(parents=True, exist_ok=True)
    orders = snap.orders.assign(snapshot_id=snap.snapshot_id, trade_date=trade_date.date())
    files = [folder / f"orders_{snap.snapshot_id}.csv", folder / f"orders_{snap.snapshot_id}.parquet"]
    orders.to_csv(files[0], index=False)
    orders.to_parquet(files[1], index=False)
    return PlanOutput(snap, created, files)
