"""TradeRun: execute a DecisionSnapshot's orders through risk and an executor, write everything.

The path of one order: persisted INITIALIZED (before anything is sent) -> pre-trade risk
(DENIED ends here, with its reason, and nothing is sent) -> SUBMITTED -> the executor's answer
(ACCEPTED / REJECTED, or UNKNOWN: resolved by asking the broker by client order id, never by a
blind re-send) -> fills (deduplicated by exec_id) -> FILLED / PARTIALLY_FILLED / EXPIRED. Every
step emits an immutable event to the outbox, every submit and cancel an audit row, and the
metrics count it. bridge's own book (exec_position, exec_account) is updated from the fills, not
copied from the broker, so reconciliation compares two real sides.

A run without a snapshot is blocked (seed 002): :class:`SnapshotRequired`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from bridge.errors import BridgeError
from bridge.execution.contract import OrderCtx
from bridge.execution.events import EventType, ExecutionEvent
from bridge.execution.metrics import ExecMetrics, log_outcome
from bridge.execution.orders import Order, OrderStatus, client_order_id, record_json
from bridge.risk import AccountView, RiskEngine, RiskOrder
from bridge.store import execution as xs
from bridge.store.duck import held

S = OrderStatus
_VENUE_TERMINAL = {"filled": S.FILLED, "canceled": S.CANCELED, "expired": S.EXPIRED,
                   "rejected": S.REJECTED}


class SnapshotRequired(BridgeError):
    """An execution run needs a stored DecisionSnapshot (seed 002: no snapshot, no run)."""


class ApprovalRequired(BridgeError):
    """Live mode needs an APPROVAL record for the strategy and an explicit ``allow_live=True``."""


def approve_live(db, strategy_id: str, actor: str, ts_ms: int, note: str = "") -> None:
    """Record that ``actor`` approves live trading of ``strategy_id`` (an audit_log APPROVAL row)."""
    with xs.transaction(db) as con:
        xs.append(con, "audit_log", [{"ts_ms": ts_ms, "kind": "APPROVAL", "client_order_id": None,
                                      "success": True, "error": "", "actor": actor,
                                      "detail": json.dumps({"strategy_id": strategy_id,
                                                            "mode": "live", "note": note})}])


def _approved(db, strategy_id: str) -> bool:
    with xs.connect(db) as con:
        rows = con.execute("SELECT detail FROM audit_log WHERE kind = 'APPROVAL'").fetchall()
    return any(json.loads(r[0]).get("strategy_id") == strategy_id for r in rows)


@dataclass
class RunReport:
    """What a run did: counts by outcome and the orders themselves."""

    run_id: str
    orders: list[Order] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unknown_resolved: int = 0
    ctx: dict = field(default_factory=dict)

    def count(self, status: OrderStatus) -> int:
        return sum(o.status == status for o in self.orders)


def _holding_db(method):
    """Run a TradeRun call with its DuckDB file held open (:func:`bridge.store.duck.held`): one
    open and close for the call's transactions instead of one per transaction."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with held(self.db):
            return method(self, *args, **kwargs)
    return wrapper


class TradeRun:
    """Runs snapshots' orders in paper (or live) mode.

    Parameters
    ----------
    db : path to the DuckDB file
    executor : Executor
        E.g. :class:`bridge.brokers.sim_executor.SimExecutor`.
    risk : RiskEngine
    clock : callable returning int ms
        Injected time.
    outbox : Outbox, optional
        Where execution events go (JSONL, published atomically).
    metrics : ExecMetrics, optional
    mode : {"paper", "live"}
        ``live`` is refused (:class:`ApprovalRequired`) without an approval record and
        ``allow_live=True``.
    strategy_id : str
    tick_size, step_size : float
        Price and quantity grids of the market (OrderCtx fields).
    """

    def __init__(self, db, executor, risk: RiskEngine, clock, outbox=None, metrics=None,
                 mode: str = "paper", strategy_id: str = "default", tick_size: float = 0.01,
                 step_size: float = 1.0, allow_live: bool = False) -> None:
        if mode not in ("paper", "live"):
            raise BridgeError(f"mode must be 'paper' or 'live', got {mode!r}")
        if mode == "live" and not (allow_live and _approved(db, strategy_id)):
            raise ApprovalRequired(
                f"live trading of {strategy_id!r} needs an APPROVAL record (approve_live) and "
                "allow_live=True")
        self.db = Path(db)
        self.executor = executor
        self.risk = risk
        self.clock = clock
        self.outbox = outbox
        self.metrics = metrics or ExecMetrics()
        self.mode = mode
        self.strategy_id = strategy_id
        self.tick_size, self.step_size = tick_size, step_size
        # cash moves on the broker's cent grid (the paper broker's rules; cents otherwise)
        rules = getattr(getattr(executor, "broker", None), "rules", None)
        self._money = rules.money if rules is not None else (lambda x: round(x, 2))
        self._audit: list[dict] = []
        self._n_events = 0
        risk.on_audit = self._on_risk_audit

    # ---- records ---------------------------------------------------------------------------
    def _event(self, type_: EventType, order: Order | None, **payload) -> None:
        cid = order.client_order_id if order else None
        # deterministic id: the run's n-th event of this type for this order (no JSON here: this
        # is on the hot path; the outbox serialises the payload once)
        self._n_events += 1
        key = f"{type_.value}|{cid}|{self._n_events}".encode()
        ev = ExecutionEvent(seq=0, event_id=hashlib.blake2b(key, digest_size=12).hexdigest(),
                            type=type_, ts_ms=int(self.clock()), client_order_id=cid,
                            instrument=order.instrument if order else None,
                            strategy_id=self.strategy_id, payload=payload)
        if self.outbox is not None:
            self.outbox.append(ev)

    def _audit_row(self, kind: str, cid: str | None, success: bool, error: str = "",
                   actor: str = "bridge", **detail) -> None:
        self._audit.append({"ts_ms": int(self.clock()), "kind": kind, "client_order_id": cid,
                            "success": success, "error": error, "actor": actor,
                            "detail": record_json(detail)})

    def _on_risk_audit(self, rec: dict) -> None:
        self._audit_row("RISK_STATE", None, True, actor=rec.get("actor", ""), **rec)
        self._event(EventType.TRADING_STATE_CHANGED, None, **{k: str(v) for k, v in rec.items()})

    def _row(self, o: Order, run_id: str, px_intent: float | None) -> dict:
        row = o.to_record()
        row.update(run_id=run_id, mode=self.mode, broker=self.executor.name, px_intent=px_intent)
        return row

    # ---- the run ---------------------------------------------------------------------------
    def load_orders(self, snapshot_id: str) -> list[dict]:
        """The snapshot's planned orders with a quantity (dropped trades stay in the snapshot)."""
        with xs.connect(self.db) as con:
            if not con.execute("SELECT 1 FROM decision_snapshot WHERE snapshot_id = ?",
                               [snapshot_id]).fetchall():
                raise SnapshotRequired(f"no DecisionSnapshot {snapshot_id!r} in {self.db}: an "
                                       "execution run needs one (plan first: `bridge plan`)")
            return con.sql("SELECT instrument, side, quantity, order_type, limit_price, price "
                           "FROM planned_order WHERE snapshot_id = ? AND quantity > 0 ORDER BY seq",
                           params=[snapshot_id]).pl().to_dicts()

    @_holding_db
    def submit_snapshot(self, snapshot_id: str | None, intent_ts_ms: int,
                        time_in_force: str = "day", sides=("sell", "buy")) -> RunReport:
        """Persist, risk-check and submit the snapshot's orders (fills come with :meth:`collect`).

        ``sides`` selects which of the planned orders go now: the sells-first policy sends
        ``("sell",)`` for the opening auction (``time_in_force="opg"``), collects their fills,
        then ``("buy",)`` for the close (``"cls"``) with the cash the sells freed (see
        :meth:`execute_sells_first`).

        Raises
        ------
        SnapshotRequired
            ``snapshot_id`` is None or not stored.
        """
        if not snapshot_id:
            raise SnapshotRequired("an execution run needs a DecisionSnapshot id")
        planned = [p for p in self.load_orders(snapshot_id) if p["side"] in sides]
        run_id = f"run-{snapshot_id}-{intent_ts_ms}"
        report = RunReport(run_id)
        orders, ctxs = [], []
        for p in planned:
            cid = client_order_id(snapshot_id, p["instrument"], p["side"], p["quantity"], intent_ts_ms)
            limit = p["limit_price"] if p["order_type"] == "limit" else None
            orders.append(Order(cid, p["instrument"], p["side"], float(p["quantity"]),
                                p["order_type"], limit, time_in_force, intent_ts_ms, snapshot_id,
                                self.strategy_id))
            ctxs.append(OrderCtx(client_order_id=cid, instrument=p["instrument"], side=p["side"],
                                 quantity=float(p["quantity"]), order_type=p["order_type"],
                                 limit_price=limit, time_in_force=time_in_force,
                                 decision_snapshot_id=snapshot_id, strategy_id=self.strategy_id,
                                 ts_ms=intent_ts_ms, event_ts_ms=intent_ts_ms,
                                 tick_size=self.tick_size, step_size=self.step_size,
                                 px_intent=float(p["price"])))
        dup = xs.existing_order_ids(self.db, [o.client_order_id for o in orders])
        report.duplicates = sorted(dup)
        keep = [i for i, o in enumerate(orders) if o.client_order_id not in dup]
        orders, ctxs = [orders[i] for i in keep], [ctxs[i] for i in keep]
        for cid in report.duplicates:
            self._audit_row("ORDER_SUBMIT", cid, False, "duplicate client_order_id refused locally")
        px = {c.client_order_id: c.px_intent for c in ctxs}
        if not orders:  # everything was sent before: nothing to run, nothing re-sent
            with xs.transaction(self.db) as con:
                xs.append(con, "audit_log", self._audit)
            self._audit = []
            return report
        self._initial_sync()
        with xs.transaction(self.db) as con:  # persist BEFORE the send
            n = con.execute("SELECT count(*) FROM trade_run WHERE run_id LIKE ?",
                            [run_id + "%"]).fetchall()[0][0]
            run_id = report.run_id = run_id if n == 0 else f"{run_id}-{n}"
            xs.upsert_orders(con, [self._row(o, run_id, px[o.client_order_id]) for o in orders])
            xs.append(con, "trade_run", [{"run_id": run_id, "snapshot_id": snapshot_id,
                                          "mode": self.mode, "broker": self.executor.name,
                                          "strategy_id": self.strategy_id,
                                          "started_ts_ms": int(self.clock()), "status": "running"}])
        account = self._account_view()
        for o, ctx in zip(orders, ctxs, strict=True):
            self._submit_one(o, ctx, account, report)
        report.orders = orders
        report.ctx = {c.client_order_id: c for c in ctxs}
        self._checkpoint(report, px)
        return report

    def _initial_sync(self) -> None:
        """First run of this strategy and mode: bridge's book starts as the broker's account
        (cash and positions), audited as INITIAL_SYNC. Later runs keep bridge's own book."""
        cash, _, _ = xs.load_book(self.db, self.strategy_id, self.mode)
        if cash is not None:
            return
        acct, pos = self.executor.account(), self.executor.positions()
        ts = int(self.clock())
        rows = [{"strategy_id": self.strategy_id, "mode": self.mode, "instrument": i,
                 "quantity": p["qty"], "avg_cost": p["avg_entry_price"], "updated_ts_ms": ts}
                for i, p in sorted(pos.items()) if p["qty"]]
        mv = sum(p["market_value"] for p in pos.values())
        with xs.transaction(self.db) as con:
            xs.replace_positions(con, self.strategy_id, self.mode, rows)
            xs.append(con, "exec_account", [{"strategy_id": self.strategy_id, "mode": self.mode,
                                             "ts_ms": ts, "cash": float(acct["cash"]),
                                             "market_value": mv,
                                             "equity": float(acct["cash"]) + mv}])
            xs.append(con, "audit_log", [{"ts_ms": ts, "kind": "INITIAL_SYNC",
                                          "client_order_id": None, "success": True, "error": "",
                                          "actor": "bridge", "detail": json.dumps(
                                              {"cash": acct["cash"], "positions": len(rows)})}])

    def _account_view(self) -> AccountView:
        acct, pos = self.executor.account(), self.executor.positions()
        prices = {i: p["market_value"] / p["qty"] for i, p in pos.items() if p["qty"]}
        return AccountView.from_book(float(acct["cash"]), {i: p["qty"] for i, p in pos.items()},
                                     prices)

    def _submit_one(self, o: Order, ctx: OrderCtx, account: AccountView, report: RunReport) -> None:
        ts = int(self.clock())
        account.prices.setdefault(o.instrument, ctx.px_intent)
        decision = self.risk.check(RiskOrder(o.client_order_id, o.instrument, o.side, o.quantity,
                                             ctx.limit_price or ctx.px_intent, ts,
                                             self.strategy_id), account)
        if decision.throttle:
            self.metrics.throttle_total.labels(reason=decision.reason or "throttle").inc()
        if not decision.allowed:
            o.transition(S.DENIED, ts, f"{decision.reason}: {decision.message}")
            self.metrics.risk_denied_total.labels(reason=decision.reason).inc()
            self._event(EventType.RISK_CHECK_FAILED, o, reason=decision.reason,
                        message=decision.message)
            self._event(EventType.ORDER_DENIED, o, reason=decision.reason)
            log_outcome(False, o.client_order_id, "denied %s", decision.reason)
            return
        o.transition(S.SUBMITTED, ts)
        self._event(EventType.ORDER_SUBMITTED, o, side=o.side, quantity=o.quantity)
        res = self.executor.submit(ctx)
        if res.status == "UNKNOWN":
            self._audit_row("ORDER_SUBMIT", o.client_order_id, False, "unknown outcome",
                            raw=res.raw)
            res = self.executor.resolve(ctx)
            report.unknown_resolved += res.status != "UNKNOWN"
        self._apply_answer(o, res, report)
        if res.status == "ACCEPTED" and o.side == "buy":  # reserve the cash it may spend
            account.cash -= o.quantity * (ctx.limit_price or ctx.px_intent)

    def _apply_answer(self, o: Order, res, report: RunReport) -> None:
        """Record the executor's answer to a submit (or to the query that resolved it)."""
        if res.status == "UNKNOWN":
            return  # stays SUBMITTED: in flight until the broker answers
        self.metrics.latency_ms.observe(res.latency_ms)
        self.metrics.submit_total.labels(result=res.status.lower(),
                                         reason=res.reject_reason or "").inc()
        ok = res.status == "ACCEPTED"
        self._audit_row("ORDER_SUBMIT", o.client_order_id, ok, res.reject_reason or "",
                        status=res.status, broker_order_id=res.broker_order_id)
        log_outcome(ok, o.client_order_id, "submit %s %s", res.status, res.reject_reason or "")
        if ok:
            o.broker_order_id = res.broker_order_id
            o.transition(S.ACCEPTED, res.ts_ms)
            self._event(EventType.ORDER_ACCEPTED, o, broker_order_id=res.broker_order_id)
        elif res.status == "REJECTED":
            o.transition(S.REJECTED, res.ts_ms, res.reject_reason or "")
            self._event(EventType.ORDER_REJECTED, o, reason=res.reject_reason)
            if "buying power" in (res.reject_reason or ""):
                self._event(EventType.INSUFFICIENT_FUNDS, o, reason=res.reject_reason)
        # UNKNOWN again: stays SUBMITTED (in flight) until a later resolve / reconciliation

    @_holding_db
    def execute_sells_first(self, snapshot_id: str, intent_ts_ms: int, trade_day,
                            advance) -> tuple[RunReport, RunReport]:
        """Sells at the opening auction, then buys at the close with the cash they freed.

        Sending the whole batch at once makes every buy that needs a sell's proceeds wait for
        cash that is not there yet (the risk engine and the broker both count only settled
        cash): this is the planner's "sells first" order carried into execution.

        Parameters
        ----------
        advance : callable ``(day, phase)``
            Lets the venue trade a phase of ``trade_day`` (e.g. ``functools.partial(
            advance_session, executor)`` for the paper broker).
        """
        sells = self.submit_snapshot(snapshot_id, intent_ts_ms, "opg", ("sell",))
        advance(trade_day, "open")
        self.collect(sells)
        buys = self.submit_snapshot(snapshot_id, intent_ts_ms, "cls", ("buy",))
        advance(trade_day, "close")
        self.collect(buys)
        return sells, buys

    @_holding_db
    def cancel(self, report: RunReport, client_order_id: str) -> str:
        """Cancel an open order; audited (ORDER_CANCEL) whatever the outcome.

        Returns
        -------
        str
            The order's status afterwards (CANCELED, or unchanged when the broker refused: too
            late or unknown; PENDING_CANCEL while the answer is unknown).
        """
        o = next(x for x in report.orders if x.client_order_id == client_order_id)
        if not o.is_open:
            self._audit_row("ORDER_CANCEL", client_order_id, False, f"order is {o.status}")
            self._checkpoint(report)
            return str(o.status)
        before = o.status
        o.transition(S.PENDING_CANCEL, int(self.clock()))
        res = self.executor.cancel(client_order_id)
        ok = res.status == "DONE"
        self._audit_row("ORDER_CANCEL", client_order_id, ok, res.reason or "", status=res.status)
        if ok:
            o.transition(S.CANCELED, res.ts_ms)
            self._event(EventType.ORDER_CANCELLED, o, filled=o.filled_quantity)
        elif res.status == "REJECTED":  # the cancel failed: back to where the order was
            o.transition(before if before != S.SUBMITTED else S.ACCEPTED, res.ts_ms, res.reason)
        self._checkpoint(report)
        return str(o.status)

    @_holding_db
    def collect(self, report: RunReport) -> RunReport:
        """Apply the executor's new fills and order statuses; update bridge's book; persist."""
        by_id = {o.client_order_id: o for o in report.orders}
        for o in report.orders:  # submits still in flight: ask the broker again
            if o.status == S.SUBMITTED:
                res = self.executor.resolve(report.ctx[o.client_order_id])
                self._apply_answer(o, res, report)
        fills = self.executor.flush()
        new_fills = []
        for f in fills:
            o = by_id.get(f.client_order_id)
            if o is None or not o.apply_fill(f):
                continue
            new_fills.append(f)
            kind = EventType.ORDER_FILLED if o.status == S.FILLED else EventType.ORDER_PARTIALLY_FILLED
            self._event(kind, o, exec_id=f.exec_id, quantity=f.quantity, price=f.price,
                        commission=f.commission)
        venue = self.executor.orders()
        for o in report.orders:
            rec = venue.get(o.client_order_id)
            target = _VENUE_TERMINAL.get(rec["status"]) if rec else None
            if target in (S.CANCELED, S.EXPIRED) and o.status in (S.ACCEPTED, S.PARTIALLY_FILLED):
                o.transition(target, int(rec["updated_ts_ms"]))
                kind = EventType.ORDER_CANCELLED if target == S.CANCELED else EventType.ORDER_EXPIRED
                self._event(kind, o, filled=o.filled_quantity)
        self._apply_book(new_fills, report)
        return report

    def _apply_book(self, fills, report: RunReport) -> None:
        cash, qty, cost = xs.load_book(self.db, self.strategy_id, self.mode)
        if cash is None:
            raise BridgeError("no local book: submit_snapshot syncs it from the broker first")
        cost = {i: cost.get(i, 0.0) * qty.get(i, 0.0) for i in qty}
        before = dict(qty)
        for f in fills:
            sign = 1 if f.side == "buy" else -1
            held = qty.get(f.instrument, 0.0)
            value = f.quantity * f.price
            cash = float(self._money(cash - sign * self._money(value) - f.commission - f.fees))
            if sign > 0:
                cost[f.instrument] = cost.get(f.instrument, 0.0) + value
            else:
                cost[f.instrument] = cost.get(f.instrument, 0.0) * (held - f.quantity) / held
            qty[f.instrument] = held + sign * f.quantity
        for inst in sorted({f.instrument for f in fills}):  # one event per position changed
            was, now = before.get(inst, 0.0), qty[inst]
            ev = (EventType.POSITION_OPENED if was == 0 else EventType.POSITION_CLOSED
                  if now == 0 else EventType.POSITION_UPDATED)
            self._event(ev, None, instrument=inst, quantity=now, previous=was)
        if fills:
            self._event(EventType.PORTFOLIO_UPDATED, None, cash=cash, n_fills=len(fills),
                        positions=sum(1 for q in qty.values() if q))
        self._book = (cash, qty, cost)
        self._checkpoint(report, None, fills, book=True)

    def _checkpoint(self, report: RunReport, px: dict | None = None, fills=(),
                    book: bool = False) -> None:
        """Write orders (px: the decision prices at submit; None keeps the stored ones), new
        fills, the audit rows and, with ``book``, bridge's positions and account."""
        ts = int(self.clock())
        with xs.transaction(self.db) as con:
            rows = [self._row(o, report.run_id, (px or {}).get(o.client_order_id)) for o in report.orders]
            if px is None:  # keep the px_intent written at submit
                stored = dict(con.execute(
                    "SELECT client_order_id, px_intent FROM exec_order WHERE run_id = ?",
                    [report.run_id]).fetchall())
                for r in rows:
                    r["px_intent"] = stored.get(r["client_order_id"])
            xs.upsert_orders(con, rows)
            xs.insert_fills(con, [{**f.to_record(), "run_id": report.run_id, "mode": self.mode,
                                   "strategy_id": self.strategy_id} for f in fills])
            if book:
                cash, qty, cost = self._book
                prices = {i: p["market_value"] / p["qty"]
                          for i, p in self.executor.positions().items() if p["qty"]}
                pos = [{"strategy_id": self.strategy_id, "mode": self.mode, "instrument": i,
                        "quantity": q, "avg_cost": cost[i] / q, "updated_ts_ms": ts}
                       for i, q in sorted(qty.items()) if q]
                xs.replace_positions(con, self.strategy_id, self.mode, pos)
                mv = sum(q * prices.get(i, cost[i] / q) for i, q in qty.items() if q)
                xs.append(con, "exec_account", [{"strategy_id": self.strategy_id, "mode": self.mode,
                                                 "ts_ms": ts, "cash": cash, "market_value": mv,
                                                 "equity": cash + mv}])
            xs.append(con, "audit_log", self._audit)
            con.execute("UPDATE trade_run SET finished_ts_ms = ?, n_orders = ?, n_denied = ?, "
                        "n_rejected = ?, n_filled = ?, n_inflight = ?, status = ? WHERE run_id = ?",
                        [ts, len(report.orders), report.count(S.DENIED), report.count(S.REJECTED),
                         report.count(S.FILLED), report.count(S.SUBMITTED),
                         "finished" if book else "submitted", report.run_id])
        self._audit = []
        if self.outbox is not None:
            self.outbox.flush()
