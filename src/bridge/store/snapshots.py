"""DecisionSnapshot: freeze a planning decision in DuckDB, and re-plan from it.

A snapshot holds the signal rows, positions, cash, market rows (reference prices and flags),
parameters and the data version; its id is a hash of that content, so the same decision always
gets the same id and storing it twice changes nothing. Re-planning from a snapshot runs the pure
planner on the frozen inputs and must reproduce the stored orders exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from bridge.planner.tomorrow import PlanParams, plan_session
from bridge.store.duck import _insert, connect

HELD_LONG = np.iinfo(np.int32).max  # days_held when unknown: old enough to sell


@dataclass(frozen=True)
class Snapshot:
    """A frozen decision (frames as stored; see :mod:`bridge.store.schema`)."""

    snapshot_id: str
    signal_date: pd.Timestamp
    trade_date: pd.Timestamp
    params: PlanParams
    data_hash: str
    cash: float
    scores: pd.DataFrame
    positions: pd.DataFrame
    market: pd.DataFrame
    target: pd.DataFrame | None = None
    orders: pd.DataFrame | None = None


def normalise_inputs(scores: pd.DataFrame, positions: pd.DataFrame, market: pd.DataFrame):
    """Fixed columns, dtypes and row order, so equal decisions hash equal."""
    s = scores[["instrument", "score"]].astype({"instrument": str, "score": "float64"})
    p = positions.copy()
    if "sellable" not in p:
        p["sellable"] = p["amount"]
    if "days_held" not in p:
        p["days_held"] = HELD_LONG
    p = p[["instrument", "amount", "sellable", "days_held"]].astype(
        {"instrument": str, "amount": "float64", "sellable": "float64", "days_held": "int64"})
    m = market.copy()
    m["tradable"] = m["tradable"].astype(bool) if "tradable" in m else np.isfinite(m["price"])
    for col, default in (("volume", np.nan), ("limit_up", False), ("limit_down", False)):
        if col not in m:
            m[col] = default
    m = m[["instrument", "price", "tradable", "volume", "limit_up", "limit_down"]].astype(
        {"instrument": str, "price": "float64", "tradable": bool, "volume": "float64",
         "limit_up": bool, "limit_down": bool})
    return tuple(f.sort_values("instrument", kind="stable").reset_index(drop=True) for f in (s, p, m))


def snapshot_id(signal_date, trade_date, params: PlanParams, data_hash: str, cash: float,
                scores: pd.DataFrame, positions: pd.DataFrame, market: pd.DataFrame) -> str:
    """``ds-`` + 16 hex chars of SHA-256 over the canonical inputs (floats at 17 digits)."""
    h = hashlib.sha256()
    for part in (str(pd.Timestamp(signal_date).date()), str(pd.Timestamp(trade_date).date()),
                 params.to_json(), data_hash, repr(float(cash))):
        h.update(part.encode() + b"\x00")
    for frame in (scores, positions, market):
        h.update(frame.to_csv(index=False, float_format="%.17g").encode())
    return "ds-" + h.hexdigest()[:16]


def build_snapshot(signal_date, trade_date, params: PlanParams, data_hash: str, cash: float,
                   scores: pd.DataFrame, positions: pd.DataFrame, market: pd.DataFrame) -> Snapshot:
    """Normalise the inputs, plan, and return the snapshot with its target and orders."""
    s, p, m = normalise_inputs(scores, positions, market)
    sid = snapshot_id(signal_date, trade_date, params, data_hash, cash, s, p, m)
    target, orders, _ = plan_session(s, p, cash, m, params)
    return Snapshot(sid, pd.Timestamp(signal_date), pd.Timestamp(trade_date), params, data_hash,
                    float(cash), s, p, m, target, orders)


def save_snapshot(db: Path | str, snap: Snapshot, created_at: datetime) -> bool:
    """Persist a snapshot and its planned orders; False if that id is already stored."""
    cash_after = float(snap.cash + (np.where(snap.orders["side"] == "sell", 1, -1)
                                    * snap.orders["value"]).sum() - snap.orders["fee"].sum())
    with connect(db) as con:
        if con.execute("SELECT 1 FROM decision_snapshot WHERE snapshot_id = ?",
                       [snap.snapshot_id]).fetchall():
            return False
        con.execute("BEGIN TRANSACTION")
        try:
            head = pl.DataFrame({
                "snapshot_id": [snap.snapshot_id],
                "created_at": pl.Series([created_at], dtype=pl.Datetime("us")),
                "signal_date": pl.Series([snap.signal_date.date()], dtype=pl.Date),
                "trade_date": pl.Series([snap.trade_date.date()], dtype=pl.Date),
                "market": [snap.params.market], "params": [snap.params.to_json()],
                "data_hash": [snap.data_hash], "inputs_hash": [snap.snapshot_id[3:]],
                "cash": [snap.cash], "cash_after": [cash_after], "n_orders": [len(snap.orders)]})
            _insert(con, "decision_snapshot", head)
            orders = snap.orders.assign(seq=np.arange(len(snap.orders)))
            for table, frame in (("snapshot_signal", snap.scores), ("snapshot_position", snap.positions),
                                 ("snapshot_market", snap.market), ("snapshot_target", snap.target),
                                 ("planned_order", orders)):
                _insert(con, table, pl.from_pandas(frame.assign(snapshot_id=snap.snapshot_id)))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return True


def load_snapshot(db: Path | str, sid: str) -> Snapshot:
    """Read a stored snapshot (inputs, target and orders).

    Raises
    ------
    KeyError
        If no snapshot has that id.
    """
    with connect(db, read_only=True) as con:
        rows = con.execute("SELECT signal_date, trade_date, params, data_hash, cash FROM "
                           "decision_snapshot WHERE snapshot_id = ?", [sid]).fetchall()
        if not rows:
            raise KeyError(f"no decision snapshot {sid!r} in {db}")
        head = rows[0]

        def frame(table, cols, order):
            return con.sql(f"SELECT {cols} FROM {table} WHERE snapshot_id = ? ORDER BY {order}",
                           params=[sid]).df()

        s = frame("snapshot_signal", "instrument, score", "instrument")
        p = frame("snapshot_position", "instrument, amount, sellable, days_held", "instrument")
        m = frame("snapshot_market", "instrument, price, tradable, volume, limit_up, limit_down",
                  "instrument")
        t = frame("snapshot_target", "instrument, target_amount, action, score", "rowid")
        o = frame("planned_order", "* EXCLUDE (snapshot_id, seq)", "seq")
    s, p, m = normalise_inputs(s, p, m)
    return Snapshot(sid, pd.Timestamp(head[0]), pd.Timestamp(head[1]), PlanParams.from_json(head[2]),
                    head[3], float(head[4]), s, p, m, t, o)


def replan(snap: Snapshot) -> pd.DataFrame:
    """Orders re-planned from the snapshot's frozen inputs (must equal ``snap.orders``)."""
    _, orders, _ = plan_session(snap.scores, snap.positions, snap.cash, snap.market, snap.params)
    return orders
