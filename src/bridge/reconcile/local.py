"""bridge's side of reconciliation: the local state read from DuckDB (an edge: I/O only)."""

from __future__ import annotations

from pathlib import Path

from bridge.reconcile.core import LocalState


def load_local_state(db: Path | str, strategy_id: str | None, mode: str = "paper",
                     marks: dict[str, float] | None = None,
                     broker: str | None = None) -> LocalState:
    """Read positions, orders, fills and the last cash of ``strategy_id`` / ``mode``.

    Parameters
    ----------
    db : path to the DuckDB file
    strategy_id : str or None
        None: every strategy of ``mode`` together (positions summed, average cost weighted), for a
        broker account shared by several strategies. With a strategy id, the broker account is
        assumed to belong to that strategy alone.
    mode : {"paper", "live"}
    marks : dict, optional
        instrument -> price (currency/share) to value local positions (e.g. the data's last
        close). Without marks, local market values are None and not compared.
    broker : str, optional
        Only orders and fills sent through this executor name.

    Returns
    -------
    LocalState
    """
    from bridge.store.duck import connect

    where, params = "mode = ?", [mode]
    if strategy_id is not None:
        where += " AND strategy_id = ?"
        params.append(strategy_id)
    with connect(db) as con:
        pos = con.execute(f"SELECT instrument, sum(quantity), sum(quantity * avg_cost) FROM "
                          f"exec_position WHERE {where} GROUP BY instrument", params).fetchall()
        oparams, owhere = list(params), where
        if broker is not None:
            owhere += " AND broker = ?"
            oparams.append(broker)
        orders = con.execute(
            f"SELECT client_order_id, status, filled_quantity, instrument, side, quantity, "
            f"broker_order_id, created_ts_ms, run_id, strategy_id FROM exec_order WHERE {owhere}",
            oparams).fetchall()
        fills = con.execute(
            f"SELECT exec_id, client_order_id, instrument, side, quantity, price, ts_ms FROM "
            f"exec_fill WHERE {where}", params).fetchall()
        # the last row per strategy; ties in ts_ms broken by insertion order (as load_book)
        cash = con.execute(
            f"SELECT sum(cash) FROM (SELECT cash, row_number() OVER (PARTITION BY strategy_id "
            f"ORDER BY ts_ms DESC, rowid DESC) AS k FROM exec_account WHERE {where}) WHERE k = 1",
            params).fetchall()[0][0]
    positions = {}
    for inst, q, cost in pos:
        if not q:
            continue
        mv = q * marks[inst] if marks and marks.get(inst) is not None else None
        positions[inst] = (float(q), float(cost) / q, mv)
    ocols = ("client_order_id", "status", "filled_quantity", "instrument", "side", "quantity",
             "broker_order_id", "created_ts_ms", "run_id", "strategy_id")
    fcols = ("exec_id", "client_order_id", "instrument", "side", "quantity", "price", "ts_ms")
    return LocalState(positions=positions,
                      orders={r[0]: dict(zip(ocols, r, strict=True)) for r in orders},
                      fills={r[0]: dict(zip(fcols, r, strict=True)) for r in fills},
                      cash=None if cash is None else float(cash), strategy_id=strategy_id,
                      mode=mode)
