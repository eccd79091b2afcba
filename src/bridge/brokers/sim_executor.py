"""SimExecutor: the Executor protocol over the embedded paper broker.

Maps the venue's answers onto bridge's contract (:class:`~bridge.execution.contract.ExecResult`)
and fills (:class:`~bridge.execution.orders.Fill`), keeping every raw payload. A submit whose
outcome is unknown (timeout, 5xx) returns ``status="UNKNOWN"`` and is never re-sent blindly:
:meth:`SimExecutor.resolve` asks the venue by client order id (a read, retried), adopts what it
finds, and re-sends with the SAME client order id only when the venue answers that it never got it
(the venue refuses a reused id, so a second order cannot appear).
"""

from __future__ import annotations

import itertools

from bridge.brokers.sim import BrokerError, PaperBroker
from bridge.execution.contract import AmendResult, CancelResult, ExecResult, OrderCtx
from bridge.execution.orders import Fill
from bridge.execution.retry import is_transient, retry_reads

_STATUS = {"accepted": "ACCEPTED", "partially_filled": "ACCEPTED", "filled": "ACCEPTED",
           "canceled": "ACCEPTED", "expired": "ACCEPTED", "rejected": "REJECTED"}


class SimExecutor:
    """Executor over a :class:`~bridge.brokers.sim.PaperBroker`.

    Parameters
    ----------
    broker : PaperBroker
    clock : callable returning int ms
        Injected time (the same clock as the broker's in simulated runs).
    sleep : callable, optional
        Backoff sleep of the read retries (a no-op in simulated time).
    """

    name = "sim"

    def __init__(self, broker: PaperBroker, clock=None, sleep=None) -> None:
        self.broker = broker
        self.clock = clock or broker.clock
        self._query = retry_reads(broker.get_order_by_client_id, sleep=sleep or (lambda s: None))
        self._cancel = retry_reads(broker.cancel_order, sleep=sleep or (lambda s: None))
        self._fill_seq = 0
        self._seen: dict[str, str] = {}
        self.unknown_outcomes = itertools.count()

    def _result(self, ctx_or_id, rec: dict | None, t0: int, status: str | None = None,
                reason: str | None = None) -> ExecResult:
        cid = ctx_or_id if isinstance(ctx_or_id, str) else ctx_or_id.client_order_id
        now = self.clock()
        if status is None:
            status = _STATUS[rec["status"]]
            reason = rec.get("reject_reason") or None if status == "REJECTED" else None
        return ExecResult(client_order_id=cid, status=status, accepted=status == "ACCEPTED",
                          rejected=status in ("REJECTED", "DENIED"), reject_reason=reason,
                          broker_order_id=(rec or {}).get("broker_order_id") if status == "ACCEPTED"
                          else None,
                          latency_ms=float(max(now - t0, 0)), rounding_applied=0.0, ts_ms=now,
                          raw=dict(rec or {}))

    def submit(self, ctx: OrderCtx) -> ExecResult:
        """Send once. Transport failures give ``status="UNKNOWN"`` (resolve with :meth:`resolve`)."""
        t0 = self.clock()
        try:
            rec = self.broker.place_order(ctx.client_order_id, ctx.instrument, ctx.side,
                                          ctx.quantity, ctx.order_type, ctx.limit_price,
                                          ctx.time_in_force)
        except BrokerError as exc:
            if not is_transient(exc):
                raise
            next(self.unknown_outcomes)
            return self._result(ctx, {"error": f"{type(exc).__name__}: {exc}"}, t0, "UNKNOWN")
        return self._result(ctx, rec, t0)

    def resolve(self, ctx: OrderCtx, max_resends: int = 3) -> ExecResult:
        """Settle an unknown submit outcome by asking the venue (never a blind re-send).

        Returns the venue's answer; ``UNKNOWN`` again if the venue cannot be reached (the order
        stays in flight and is resolved later, e.g. by reconciliation).
        """
        t0 = self.clock()
        for _ in range(max_resends + 1):
            try:
                rec = self._query(ctx.client_order_id)
            except BrokerError as exc:
                return self._result(ctx, {"error": f"query failed: {exc}"}, t0, "UNKNOWN")
            if rec is not None:
                return self._result(ctx, rec, t0)
            res = self.submit(ctx)  # the venue never got it: same id, so at most one order
            if res.status != "UNKNOWN":
                return res
        return res

    def cancel(self, client_order_id: str) -> CancelResult:
        """Cancel (retried on transient errors: a cancel is idempotent at the venue)."""
        try:
            rec = self._cancel(client_order_id)
        except BrokerError as exc:
            return CancelResult(client_order_id=client_order_id, status="UNKNOWN",
                                reason=str(exc), latency_ms=0.0, ts_ms=self.clock(), raw={})
        if rec["status"] == "not_found":
            return CancelResult(client_order_id=client_order_id, status="REJECTED",
                                reason="not_found", latency_ms=0.0, ts_ms=self.clock(), raw=rec)
        done = rec["status"] == "canceled"
        return CancelResult(client_order_id=client_order_id,
                            status="DONE" if done else "REJECTED",
                            reason=None if done else "too_late",
                            broker_order_id=rec.get("broker_order_id"), latency_ms=0.0,
                            ts_ms=self.clock(), raw=rec)

    def amend(self, client_order_id: str, quantity: float | None = None,
              limit_price: float | None = None) -> AmendResult:
        """The paper broker does not amend in place: cancel and place a new order instead."""
        return AmendResult(client_order_id=client_order_id, status="REJECTED",
                           reason="not_supported", latency_ms=0.0, ts_ms=self.clock(),
                           raw={"message": "the paper broker does not amend: cancel and re-place"})

    def orders(self) -> dict[str, dict]:
        """The venue's order records by client order id (for status updates and reconciliation)."""
        return {o.client_order_id: o.to_dict() for o in self.broker.orders.values()}

    def flush(self) -> list[Fill]:
        """Fills since the last flush, as :class:`Fill` records with the raw payload."""
        new = self.broker.get_fills(self._fill_seq)
        self._fill_seq += len(new)
        return [Fill(exec_id=f["exec_id"], client_order_id=f["client_order_id"],
                     broker_order_id=f["broker_order_id"], instrument=f["instrument"],
                     side=f["side"], quantity=f["quantity"], price=f["price"],
                     commission=f["commission"], fees=0.0, ts_ms=f["ts_ms"],
                     currency=self.broker.rules.currency, exchange="SIM", raw=dict(f))
                for f in new]

    def account(self) -> dict:
        return self.broker.get_account()

    def positions(self) -> dict:
        return self.broker.get_positions()

    def close(self) -> None:
        """Nothing to release for the embedded broker."""


def advance_session(executor: SimExecutor, day, phase: str = "all") -> int:
    """Let the paper broker trade the session ``day`` (date-like; ``phase``: all, open or
    close, see :meth:`PaperBroker.run_session`); returns its index."""
    import numpy as np

    sessions = executor.broker.panel.sessions
    t = int(np.searchsorted(sessions, np.datetime64(str(day)[:10], "D")))
    if t >= len(sessions) or sessions[t] != np.datetime64(str(day)[:10], "D"):
        raise KeyError(f"{day} is not a session of the paper broker's bars")
    executor.broker.run_session(t, phase)
    return t
