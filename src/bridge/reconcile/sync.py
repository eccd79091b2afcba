"""Sync broker -> local: apply a report's selected differences to DuckDB, one audit row each.

The broker is taken as the truth for what it reports (its fills, its order statuses, its
positions and cash); what only bridge has (a fill the broker does not report, an order the
broker never saw) is not deleted: those need a human and are left as they are (``skipped``).
A report whose broker query failed is refused (:class:`SyncRefused`): an unknown remote state is
never copied as "flat".

An order status is adopted from the broker as it is, not walked through the transition table:
the table governs the events bridge receives; reconciliation records the broker's final word
after events were lost, with the previous and the new status in the audit row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bridge.errors import BridgeError
from bridge.reconcile.core import SYNCABLE, ReconciliationReport, _kind

AUDIT_KIND = "RECONCILE_SYNC"


class SyncRefused(BridgeError):
    """The report cannot be synced (broker state unknown, or an ambiguous target)."""


@dataclass
class SyncResult:
    """What a sync did: the keys applied (one audit row each) and the keys left alone."""

    report_id: str
    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _selector(select) -> Callable:
    if select is None:
        return lambda d: True
    if callable(select):
        return select
    if isinstance(select, str):
        select = [select]
    keys = set(select)
    sections = {k for k in keys if k in ("position", "order", "fill", "account")}
    return lambda d: d.key in keys or _kind(d)[0] in sections or d.status in keys


def sync(db: Path | str, report: ReconciliationReport,
         select: Iterable[str] | str | Callable | None = None, actor: str = "reconcile",
         clock: Callable[[], int] | None = None) -> SyncResult:
    """Apply broker -> local for the selected differences of ``report``.

    Parameters
    ----------
    db : path to the DuckDB file
    report : ReconciliationReport
        From :func:`~bridge.reconcile.core.reconcile` (it carries the broker's records).
    select : None, str, iterable of str, or callable
        None: every syncable difference. Strings are difference keys (``"fill:<exec_id>"``,
        ``"position:<instrument>"``, ``"order:<client_order_id>"``, ``"account:cash"``),
        sections (``"fill"``, ``"position"``, ``"order"``, ``"account"``) or statuses
        (``"missing_local"``, ``"qty_mismatch"`` ...). A callable gets each difference.
    actor : str
        Who syncs (audit_log.actor).
    clock : callable returning int ms
        Time of the audit rows (default: the report's timestamp).

    Returns
    -------
    SyncResult

    Raises
    ------
    SyncRefused
        The report's broker query failed, or positions/cash are selected on a report over
        several strategies (``strategy_id=None``: which strategy's book to change is ambiguous).
    """
    from bridge.store import execution as xs

    if not report.fetched_ok or report.remote is None:
        raise SyncRefused(f"report {report.report_id}: broker state unknown "
                          f"({report.error or 'no broker records'}); refusing to sync")
    pick = _selector(select)
    chosen, result = [], SyncResult(report.report_id)
    for d in report.differences():
        if _kind(d) in SYNCABLE and pick(d):
            chosen.append(d)
        else:
            result.skipped.append(d.key)
    if report.strategy_id is None and any(_kind(d)[0] in ("position", "account") for d in chosen):
        raise SyncRefused("positions and cash are kept per strategy: reconcile one strategy_id "
                          "to sync them")
    ts = int(clock()) if clock else report.timestamp_ms
    remote, sid, mode = report.remote, report.strategy_id, report.mode
    audit: list[dict] = []

    def log(kind_key: str, cid: str | None, **detail) -> None:
        audit.append({"ts_ms": ts, "kind": AUDIT_KIND, "client_order_id": cid, "success": True,
                      "error": "", "actor": actor,
                      "detail": json.dumps({"report_id": report.report_id, "key": kind_key,
                                            **detail}, sort_keys=True, default=str)})

    by = {}
    for d in chosen:
        by.setdefault(_kind(d)[0], []).append(d)
    with xs.transaction(db) as con:
        # 1. orders the broker has and bridge did not send: record them (origin outside bridge)
        for d in [o for o in by.get("order", []) if o.status == "unknown_to_bridge"]:
            r = remote.orders[d.client_order_id]
            xs.upsert_orders(con, [{
                "client_order_id": d.client_order_id, "run_id": f"reconcile-{report.report_id}",
                "mode": mode, "broker": report.broker, "strategy_id": sid,
                "instrument": r["instrument"], "side": r["side"], "quantity": r["quantity"],
                "order_type": r.get("order_type"), "limit_price": r.get("limit_price"),
                "time_in_force": r.get("time_in_force"), "created_ts_ms": r.get("created_ts_ms"),
                "status": r["status"], "filled_quantity": r["filled_quantity"],
                "broker_order_id": r.get("broker_order_id"), "reject_reason": "",
                "deny_reason": "", "last_status_ts_ms": ts}])
            log(d.key, d.client_order_id, action="record order placed outside bridge",
                status=r["status"], broker_status=r["broker_status"], instrument=r["instrument"],
                side=r["side"], quantity=r["quantity"])
        # 2. fills: import the missing ones, replace the ones that disagree
        owners = dict(((c, (run, s)) for c, run, s in con.execute(
            "SELECT client_order_id, run_id, strategy_id FROM exec_order").fetchall()))
        touched: set[str] = set()
        for d in by.get("fill", []):
            f = remote.fills[d.exec_id]
            run_id, owner = owners.get(f["client_order_id"], (f"reconcile-{report.report_id}",
                                                              sid))
            if d.status == "mismatch":
                con.execute("DELETE FROM exec_fill WHERE exec_id = ?", [d.exec_id])
            xs.insert_fills(con, [{**{k: v for k, v in f.items() if k != "raw"},
                                   "raw": f["raw"], "run_id": run_id, "mode": mode,
                                   "strategy_id": owner}])
            touched.add(f["client_order_id"])
            log(d.key, f["client_order_id"], action=d.action, exec_id=d.exec_id,
                instrument=f["instrument"], side=f["side"], quantity=f["quantity"],
                price=f["price"], previous_quantity=d.local_quantity,
                previous_price=d.local_price)
        # 3. order statuses from the broker
        for d in [o for o in by.get("order", []) if o.status == "status_mismatch"]:
            r = remote.orders[d.client_order_id]
            con.execute("UPDATE exec_order SET status = ?, filled_quantity = ?, "
                        "last_status_ts_ms = ? WHERE client_order_id = ?",
                        [r["status"], r["filled_quantity"], ts, d.client_order_id])
            touched.add(d.client_order_id)
            log(d.key, d.client_order_id, action=d.action, previous_status=d.local_status,
                status=r["status"], broker_status=r["broker_status"],
                previous_filled=d.local_filled, filled=r["filled_quantity"])
        if touched:  # averages and commissions of the orders whose fills or status changed
            con.execute(
                "UPDATE exec_order SET avg_fill_price = s.px, commission = s.fee FROM "
                "(SELECT client_order_id AS cid, sum(quantity * price) / sum(quantity) AS px, "
                "sum(commission) AS fee FROM exec_fill WHERE client_order_id IN "
                "(SELECT unnest(?)) GROUP BY client_order_id) s "
                "WHERE exec_order.client_order_id = s.cid", [sorted(touched)])
        # 4. positions: adopt the broker's quantity and average cost
        for d in by.get("position", []):
            con.execute("DELETE FROM exec_position WHERE strategy_id = ? AND mode = ? AND "
                        "instrument = ?", [sid, mode, d.instrument])
            if d.remote_qty:
                xs.append(con, "exec_position", [{
                    "strategy_id": sid, "mode": mode, "instrument": d.instrument,
                    "quantity": d.remote_qty, "avg_cost": d.remote_avg_cost,
                    "updated_ts_ms": ts}])
            log(d.key, None, action=d.action, instrument=d.instrument, status=d.status,
                previous_quantity=d.local_qty, quantity=d.remote_qty or 0.0,
                previous_avg_cost=d.local_avg_cost, avg_cost=d.remote_avg_cost)
        # 5. cash
        for d in by.get("account", []):
            last = con.execute("SELECT max(ts_ms) FROM exec_account WHERE strategy_id = ? AND "
                               "mode = ?", [sid, mode]).fetchall()[0][0]
            mv = sum(v for _, _, v in remote.positions.values() if v is not None)
            xs.append(con, "exec_account", [{
                "strategy_id": sid, "mode": mode, "ts_ms": max(ts, last or ts),
                "cash": d.remote_cash,
                "market_value": mv, "equity": remote.account.get("equity", d.remote_cash + mv)}])
            log(d.key, None, action=d.action, previous_cash=d.local_cash, cash=d.remote_cash)
        xs.append(con, "audit_log", audit)
    result.applied = [d.key for d in chosen]
    return result
