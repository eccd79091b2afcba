"""Read and write the execution tables (orders, fills, positions, account, runs, audit)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from bridge.store.duck import _insert, connect

ORDER_FIELDS = ["client_order_id", "run_id", "mode", "broker", "strategy_id",
                "decision_snapshot_id", "instrument", "side", "quantity", "order_type",
                "limit_price", "time_in_force", "px_intent", "created_ts_ms", "status",
                "filled_quantity", "avg_fill_price", "commission", "broker_order_id",
                "reject_reason", "deny_reason", "last_status_ts_ms"]


# dtypes pl.Series gives a column of one Python type exactly as the row-dict constructor does
_PLAIN_DTYPES = frozenset({pl.Int64, pl.Float64, pl.String, pl.Boolean, pl.Null})


def _frame(rows: list[dict], cols: list[str]) -> pl.DataFrame:
    """``rows`` as a frame of ``cols`` (a missing key is null), built column by column.

    Same frame as ``pl.DataFrame([{c: r.get(c) for c in cols} for r in rows],
    infer_schema_length=None)``, a few times faster.
    """
    return pl.DataFrame([_column(c, [r.get(c) for r in rows]) for c in cols])


def _column(name: str, values: list) -> pl.Series:
    # One Python type (besides None) read as a plain dtype: the fast path. Anything else (mixed
    # types, nested values, ints beyond int64) is left to the row-dict constructor's supertypes.
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if len(kinds) <= 1:
        col = pl.Series(name, values, strict=False)
        if col.dtype in _PLAIN_DTYPES:
            return col
    return pl.DataFrame([{name: v} for v in values], infer_schema_length=None).to_series()


def _cols(con, table: str) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]


def existing_order_ids(db: Path | str, ids: list[str]) -> set[str]:
    """Which of ``ids`` are already stored (a duplicate client order id is refused locally)."""
    with connect(db) as con:
        rows = con.execute("SELECT client_order_id FROM exec_order WHERE client_order_id IN "
                           "(SELECT unnest(?))", [ids]).fetchall()
    return {r[0] for r in rows}


def upsert_orders(con, rows: list[dict]) -> None:
    """Replace the rows of these client order ids (inside the caller's transaction)."""
    if not rows:
        return
    ids = [r["client_order_id"] for r in rows]
    con.execute("DELETE FROM exec_order WHERE client_order_id IN (SELECT unnest(?))", [ids])
    _insert(con, "exec_order", _frame(rows, _cols(con, "exec_order")))


def insert_fills(con, rows: list[dict]) -> int:
    """Insert fills whose exec_id is new; returns how many were new (dedup by exec_id)."""
    if not rows:
        return 0
    frame = _frame([{**r, "raw": r["raw"] if isinstance(r.get("raw"), str)
                     else json.dumps(r.get("raw", {}), sort_keys=True, default=str)}
                    for r in rows], _cols(con, "exec_fill")).unique("exec_id", keep="first",
                                                                    maintain_order=True)
    con.register("_fills", frame.to_arrow())
    try:  # an INSERT's result is the number of rows it inserted
        n = con.execute("INSERT INTO exec_fill SELECT * FROM _fills WHERE exec_id NOT IN "
                        "(SELECT exec_id FROM exec_fill)").fetchall()[0][0]
    finally:
        con.unregister("_fills")
    return int(n)


def replace_positions(con, strategy_id: str, mode: str, rows: list[dict]) -> None:
    con.execute("DELETE FROM exec_position WHERE strategy_id = ? AND mode = ?", [strategy_id, mode])
    if rows:
        _insert(con, "exec_position", _frame(rows, _cols(con, "exec_position")))


def append(con, table: str, rows: list[dict]) -> None:
    if rows:
        _insert(con, table, _frame(rows, _cols(con, table)))


def load_book(db: Path | str, strategy_id: str, mode: str) -> tuple[float | None, dict, dict]:
    """bridge's local book: (cash or None if never recorded, quantity by instrument, avg cost)."""
    with connect(db) as con:
        acct = con.execute("SELECT cash FROM exec_account WHERE strategy_id = ? AND mode = ? "
                           "ORDER BY ts_ms DESC, rowid DESC LIMIT 1", [strategy_id, mode]).fetchall()
        pos = con.execute("SELECT instrument, quantity, avg_cost FROM exec_position WHERE "
                          "strategy_id = ? AND mode = ?", [strategy_id, mode]).fetchall()
    return (acct[0][0] if acct else None, {r[0]: r[1] for r in pos}, {r[0]: r[2] for r in pos})


def transaction(db: Path | str):
    """A connection with an open transaction: commit on success, roll back on error."""
    from contextlib import contextmanager

    @contextmanager
    def _tx():
        with connect(db) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    return _tx()
