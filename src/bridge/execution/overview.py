"""Trade overview (seed 002): positions, open orders and PnL per strategy and mode, one call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OPEN_STATUSES = ("INITIALIZED", "SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "PENDING_CANCEL",
                 "PENDING_UPDATE")


@dataclass(frozen=True)
class TradeOverview:
    """Frames (polars) of :func:`trade_overview`.

    positions : strategy_id, mode, instrument, quantity (shares), avg_cost (currency/share)
    open_orders : the exec_order rows not yet terminal (SUBMITTED = in flight, outcome unknown)
    pnl : strategy_id, mode, first_ts_ms, last_ts_ms, cash, market_value, equity,
          start_equity, pnl (= equity - start_equity, currency), n_orders, n_fills, n_denied,
          n_rejected
    """

    positions: object
    open_orders: object
    pnl: object


def trade_overview(db: Path | str, strategy_id: str | None = None, mode: str | None = None
                   ) -> TradeOverview:
    """Positions, open orders and PnL per strategy and mode from bridge's execution tables."""
    from bridge.store.duck import connect

    where, params = [], []
    for col, val in (("strategy_id", strategy_id), ("mode", mode)):
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)
    w = (" WHERE " + " AND ".join(where)) if where else ""
    wa = (" AND " + " AND ".join(where)) if where else ""
    with connect(db) as con:
        positions = con.sql(f"SELECT strategy_id, mode, instrument, quantity, avg_cost FROM "
                            f"exec_position{w} ORDER BY ALL", params=params or None).pl()
        open_orders = con.sql(
            f"SELECT * FROM exec_order WHERE status IN {OPEN_STATUSES}{wa} ORDER BY created_ts_ms, "
            "client_order_id", params=params or None).pl()
        pnl = con.sql(f"""
            WITH r AS (  -- rows in write order (ties in ts_ms broken by insertion order)
                SELECT *, row_number() OVER (PARTITION BY strategy_id, mode
                                             ORDER BY ts_ms, rowid) AS k
                FROM exec_account{w}),
            a AS (
                SELECT strategy_id, mode, min(ts_ms) AS first_ts_ms, max(ts_ms) AS last_ts_ms,
                       arg_max(cash, k) AS cash, arg_max(market_value, k) AS market_value,
                       arg_max(equity, k) AS equity, arg_min(equity, k) AS start_equity
                FROM r GROUP BY ALL),
            o AS (
                SELECT strategy_id, mode, count(*) AS n_orders,
                       count(*) FILTER (WHERE status = 'DENIED') AS n_denied,
                       count(*) FILTER (WHERE status = 'REJECTED') AS n_rejected
                FROM exec_order{w} GROUP BY ALL),
            f AS (SELECT strategy_id, mode, count(*) AS n_fills FROM exec_fill{w} GROUP BY ALL)
            SELECT a.*, a.equity - a.start_equity AS pnl, coalesce(o.n_orders, 0) AS n_orders,
                   coalesce(f.n_fills, 0) AS n_fills, coalesce(o.n_denied, 0) AS n_denied,
                   coalesce(o.n_rejected, 0) AS n_rejected
            FROM a LEFT JOIN o USING (strategy_id, mode) LEFT JOIN f USING (strategy_id, mode)
            ORDER BY strategy_id, mode""", params=(params * 3) or None).pl()
    return TradeOverview(positions, open_orders, pnl)
