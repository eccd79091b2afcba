"""IBExecutor: bridge's Executor protocol over Interactive Brokers (TWS / IB Gateway) with the
real ``ib_async`` client.

- One ``ib_async.IB`` lives in a background thread with its own event loop, so the executor is a
  plain synchronous object in scripts, papermill runs and Jupyter alike (no ``nest_asyncio``).
  Every call hands a coroutine to that loop and waits for it.
- Orders: ``placeOrder`` with ``orderRef`` = bridge's ``client_order_id``; stocks through the
  instrument -> Contract mapping (:mod:`bridge.brokers.ib_contracts`, data). ``opg`` is IB's
  ``OPG`` time in force, ``cls`` is ``MOC`` / ``LOC``. A submit waits ``ack_timeout_s`` for
  IB's answer: openOrder or orderStatus (PreSubmitted, Submitted, Filled) = ACCEPTED; an order
  error (201, 103, 200 ...) = REJECTED; nothing, or the socket closing = UNKNOWN.
- An UNKNOWN submit is settled by :meth:`IBExecutor.resolve`: after reconnecting if needed, the
  open orders, completed orders and executions are searched for the ``orderRef``; only when none
  has it is the order sent again, with the SAME order id (TWS treats a known open order id as a
  modification and a finished one as error 103, so a second order cannot appear).
- Fills come from execDetails (IB does not guarantee orderStatus callbacks), with the
  commissionReport that follows, deduplicated by ``execId``. An execution correction reuses the
  execId up to its last dot (``...01.01`` -> ``...01.02``): one with the same shares and price
  is dropped as a repeat; one that changes them is not applied but kept in
  :attr:`IBExecutor.corrections` and shown by :meth:`health` (reconciliation then shows the gap).
- After a reconnect the next :meth:`flush` re-requests the executions (reqExecutions) and keeps
  those it has not seen, so fills during a disconnect are never lost; open orders come back with
  ib_async's own start-up sync.
- :meth:`account` (account summary), :meth:`positions` (reqPositions + portfolio values),
  :meth:`orders` (open + completed orders) and :meth:`fills` (reqExecutions) feed the risk engine
  and reconciliation; :meth:`what_if` asks IB's what-if margin (``what_if_check=True`` denies a
  buy whose initial margin after the order would exceed the equity with loan value).

ib_async's wrapper keeps a finished order's completion time only in the message; the executor
wraps the wrapper's ``completedOrder`` callback on its own IB instance to keep it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import asdict, is_dataclass
from datetime import datetime

from bridge.brokers.ib_contracts import ContractMap
from bridge.errors import ConfigError
from bridge.execution.contract import AmendResult, CancelResult, ExecResult, OrderCtx
from bridge.execution.orders import Fill, OrderStatus

log = logging.getLogger("bridge.brokers.ib")

S = OrderStatus
#: IB order status (ib_async ``OrderStatus.status``) -> bridge's OrderStatus
IB_STATUS: dict[str, OrderStatus] = {
    "PendingSubmit": S.SUBMITTED, "ApiPending": S.SUBMITTED, "PreSubmitted": S.ACCEPTED,
    "Submitted": S.ACCEPTED, "PendingCancel": S.PENDING_CANCEL, "ApiCancelled": S.CANCELED,
    "Cancelled": S.CANCELED, "Filled": S.FILLED, "Inactive": S.REJECTED,
    "ValidationError": S.ACCEPTED,
}
_ACCEPTED = ("PreSubmitted", "Submitted", "Filled")
_TIF = {"day": "DAY", "gtc": "GTC", "ioc": "IOC", "opg": "OPG", "cls": "DAY"}
_TIF_BACK = {"DAY": "day", "GTC": "gtc", "IOC": "ioc", "OPG": "opg"}
#: error codes that are notices, not an order's refusal (TWS API message codes)
_NOTICE = frozenset({105, 110, 165, 321, 329, 399, 404, 434, 492, 10167}) | frozenset(
    range(2100, 2200))
_CANCEL_TOO_LATE = (161, 10148, 10147)


class IBConnectionError(ConnectionError):
    """TWS / IB Gateway could not be reached (after the configured attempts)."""


def _jsonable(x):
    if is_dataclass(x):
        x = asdict(x)
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, datetime):
        return x.isoformat()
    if isinstance(x, float) and x >= 1.7e308:
        return None
    return x


def _ms(t: datetime | str | None) -> int | None:
    if not t:
        return None
    if isinstance(t, str):
        from ib_async.util import parseIBDatetime
        t = parseIBDatetime(t)
    return int(t.timestamp() * 1000)


class IBExecutor:
    """Executor over Interactive Brokers (paper account by default port) through ib_async.

    Parameters
    ----------
    host, port : str, int
        TWS / IB Gateway API socket (paper TWS: 7497; gateway paper: 4002; the emulator: any).
    client_id : int
        API client id; orders belong to it (a second connection with the same id is refused).
    account : str, optional
        Account code; default: the only managed account.
    contracts : ContractMap, optional
        instrument -> Contract (default: the shipped mapping).
    connect_timeout_s : float
        Handshake plus start-up sync, seconds.
    ack_timeout_s : float
        How long a submit, amend or cancel waits for IB's answer, seconds.
    request_timeout_s : float
        Reads (orders, executions, positions, account), seconds.
    connect_tries : int
        Attempts of a (re)connect, 50 ms apart doubling to 1 s.
    what_if_check : bool
        Ask IB's what-if margin before each buy and deny it when it does not fit.
    commission_wait_s : float
        A fill waits this long (over later flushes) for its commissionReport, then goes out with
        commission 0 and ``raw["commission_missing"] = True``.
    clock : callable returning int ms, optional
    """

    name = "ib-paper"

    def __init__(self, host: str = "127.0.0.1", port: int = 7497, client_id: int = 1, *,
                 account: str | None = None, contracts: ContractMap | None = None,
                 connect_timeout_s: float = 4.0, ack_timeout_s: float = 2.0,
                 request_timeout_s: float = 10.0, connect_tries: int = 5,
                 what_if_check: bool = False, commission_wait_s: float = 2.0,
                 clock=None) -> None:
        try:
            import ib_async  # noqa: F401
        except ImportError as exc:
            raise ConfigError("IBExecutor needs the ib extra: pip install 'bridge[ib]'") from exc
        self.host, self.port, self.client_id = host, int(port), int(client_id)
        self.account_code = account
        self.contracts = contracts or ContractMap()
        self.connect_timeout_s, self.ack_timeout_s = connect_timeout_s, ack_timeout_s
        self.request_timeout_s, self.connect_tries = request_timeout_s, connect_tries
        self.what_if_check, self.commission_wait_s = what_if_check, commission_wait_s
        self.clock = clock or (lambda: int(time.time() * 1000))
        self._oid: dict[str, int] = {}               # bridge client_order_id -> IB order id
        self._perm: dict[str, int] = {}              # bridge client_order_id -> permId
        self._seen: dict[str, tuple[float, float]] = {}   # execId base -> (shares, price)
        self._live: collections.deque = collections.deque()
        self._pending: dict[str, tuple[object, float]] = {}   # execId -> (ib Fill, since)
        self._completed_state: dict[int, object] = {}          # permId -> OrderState
        self._waiters: dict[int, tuple[str, asyncio.Future]] = {}
        self._errors: dict[int, tuple[int, str]] = {}
        self._gap = True                              # executions not yet read on this socket
        self.corrections: list[dict] = []
        self.counters = collections.Counter()
        self._health = {"connection": "disconnected", "connectivity": "unknown",
                        "connectivity_losses": 0, "connects": 0, "disconnects": 0,
                        "last_error": None, "server_version": None, "farms": {}}
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ib-executor",
                                        daemon=True)
        self._thread.start()
        self._ib = self._run(self._make_ib)
        try:
            self._run(self._connect)
        except BaseException:
            self._closed = True                        # no thread left behind
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            raise

    def __repr__(self) -> str:
        return (f"IBExecutor(name={self.name!r}, {self.host}:{self.port}, "
                f"client_id={self.client_id})")

    # ---- loop plumbing ---------------------------------------------------------------------
    def _run(self, coro_fn, *args, timeout: float | None = None):
        if self._closed:
            raise RuntimeError("IBExecutor is closed")
        fut = asyncio.run_coroutine_threadsafe(coro_fn(*args), self._loop)
        return fut.result(timeout or (self.request_timeout_s + self.connect_timeout_s
                                       * self.connect_tries + self.ack_timeout_s + 5))

    async def _make_ib(self):
        from ib_async import IB

        ib = IB()
        ib.RaiseRequestErrors = True
        ib.errorEvent += self._on_error
        ib.openOrderEvent += self._on_order
        ib.orderStatusEvent += self._on_order
        ib.execDetailsEvent += self._on_exec
        ib.disconnectedEvent += self._on_disconnected
        keep = ib.wrapper.completedOrder

        def completed(contract, order, state):  # keep completedTime / completedStatus
            self._completed_state[order.permId] = state
            keep(contract, order, state)
        ib.wrapper.completedOrder = completed
        return ib

    async def _connect(self) -> None:
        from ib_async.ib import StartupFetch

        # completed orders and executions are read when needed (resolve, the next flush), not
        # on every (re)connect: their history only grows
        fetch = (StartupFetch.POSITIONS | StartupFetch.ORDERS_OPEN
                 | StartupFetch.ACCOUNT_UPDATES | StartupFetch.SUB_ACCOUNT_UPDATES)
        ib, delay, last = self._ib, 0.05, None
        for _ in range(max(1, self.connect_tries)):
            try:
                await ib.connectAsync(self.host, self.port, self.client_id,
                                      timeout=self.connect_timeout_s,
                                      account=self.account_code or "", fetchFields=fetch)
                break
            except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
                last = exc
                self._health["last_error"] = f"connect: {type(exc).__name__}: {exc}"
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        else:
            raise IBConnectionError(f"cannot reach TWS at {self.host}:{self.port} "
                                    f"(client id {self.client_id}): {last!r}")
        accounts = ib.client.getAccounts()
        if self.account_code is None:
            if len(accounts) != 1:
                raise ConfigError(f"several IB accounts {accounts}: pass account=")
            self.account_code = accounts[0]
        h = self._health
        h.update(connection="connected", connectivity="ok",
                 server_version=ib.client.serverVersion())
        h["connects"] += 1
        self._gap = True

    async def _ensure(self) -> None:
        if not self._ib.isConnected():
            self.counters["reconnects"] += 1
            await self._connect()

    # ---- events (in the loop) --------------------------------------------------------------
    def _on_error(self, req_id, code, text, contract=None) -> None:
        if code in (1100, 2110):
            self._health["connectivity"] = "lost"
            self._health["connectivity_losses"] += 1
        elif code in (1101, 1102):
            self._health["connectivity"] = "ok"
        elif 2100 <= code < 2200:
            self._health["farms"][code] = text
        if code not in _NOTICE and code not in (1100, 1101, 1102):
            self._health["last_error"] = f"{code}: {text}"
        if req_id in (None, -1) or code in _NOTICE:
            return
        self._errors[req_id] = (code, text)
        w = self._waiters.get(req_id)
        if w is None or w[1].done():
            return
        kind, fut = w
        if kind == "cancel":
            out = ("DONE" if code == 202 else "REJECTED", None if code == 202 else
                   "too_late" if code in _CANCEL_TOO_LATE else
                   "not_found" if code == 135 else f"{code} {text}")
            fut.set_result(out)
        else:
            fut.set_result(("REJECTED", f"{code} {text}"))

    def _on_order(self, trade) -> None:
        o, st = trade.order, trade.orderStatus
        if o.orderRef and o.permId:
            self._perm[o.orderRef] = o.permId
        w = self._waiters.get(o.orderId)
        if w is None or w[1].done() or o.clientId not in (self.client_id, 0):
            return
        kind, fut = w
        if kind == "cancel":
            if st.status in ("Cancelled", "ApiCancelled"):
                fut.set_result(("DONE", None))
            elif st.status == "Filled":
                fut.set_result(("REJECTED", "too_late"))
        elif st.status in _ACCEPTED or (o.permId and st.status == "PendingSubmit"):
            fut.set_result(("ACCEPTED", None))   # openOrder (permId given) or orderStatus

    def _on_exec(self, trade, fill) -> None:
        self._live.append(fill)

    def _on_disconnected(self) -> None:
        h = self._health
        h["connection"] = "disconnected"
        h["disconnects"] += 1
        for _, fut in self._waiters.values():
            if not fut.done():
                fut.set_result(("UNKNOWN", "disconnected"))

    async def _wait(self, order_id: int, kind: str, send) -> tuple[str, str | None]:
        """Register a waiter for ``order_id``, run ``send()``, wait for the answer."""
        fut = self._loop.create_future()
        self._waiters[order_id] = (kind, fut)
        self._errors.pop(order_id, None)
        try:
            send()
            return await asyncio.wait_for(fut, self.ack_timeout_s)
        except asyncio.TimeoutError:
            return ("UNKNOWN", "timeout")
        except ConnectionError as exc:
            return ("UNKNOWN", f"disconnected: {exc}")
        finally:
            self._waiters.pop(order_id, None)

    # ---- orders ----------------------------------------------------------------------------
    def _contract(self, instrument: str):
        from ib_async import Contract

        c = self.contracts.contract(instrument)
        return Contract(conId=c.con_id, symbol=c.symbol, secType=c.sec_type,
                        exchange=c.exchange, primaryExchange=c.primary_exchange,
                        currency=c.currency)

    def _order(self, ctx: OrderCtx, order_id: int = 0):
        from ib_async import Order

        at_close = ctx.time_in_force == "cls"
        otype = ({"market": "MOC", "limit": "LOC"} if at_close
                 else {"market": "MKT", "limit": "LMT"})[ctx.order_type]
        o = Order(orderId=order_id, action="BUY" if ctx.side == "buy" else "SELL",
                  totalQuantity=float(ctx.quantity), orderType=otype,
                  tif=_TIF[ctx.time_in_force], orderRef=ctx.client_order_id,
                  account=self.account_code or "")
        if ctx.order_type == "limit":
            o.lmtPrice = float(ctx.limit_price)
        return o

    def _result(self, ctx: OrderCtx, t0: int, status: str, reason: str | None = None,
                raw: dict | None = None) -> ExecResult:
        now = self.clock()
        perm = self._perm.get(ctx.client_order_id)
        return ExecResult(client_order_id=ctx.client_order_id, status=status,
                          accepted=status == "ACCEPTED",
                          rejected=status in ("REJECTED", "DENIED"),
                          reject_reason=reason if status != "ACCEPTED" else None,
                          broker_order_id=str(perm) if status == "ACCEPTED" and perm else None,
                          latency_ms=float(max(now - t0, 0)), ts_ms=now,
                          raw={"ib_order_id": self._oid.get(ctx.client_order_id),
                               "ib_perm_id": perm, **(raw or {})})

    def submit(self, ctx: OrderCtx) -> ExecResult:
        """Send once (never retried). No answer within ``ack_timeout_s`` -> ``UNKNOWN``; then
        :meth:`resolve`."""
        t0 = self.clock()
        self.counters["submit"] += 1
        if self.what_if_check and ctx.side == "buy":
            try:
                m = self.what_if(ctx)
            except (IBConnectionError, TimeoutError) as exc:
                return self._result(ctx, t0, "REJECTED", f"not_connected: {exc}")
            if m["init_margin_after"] > m["equity_with_loan_after"] + 1e-6:
                return self._result(ctx, t0, "DENIED", "what_if: insufficient equity", m)
        try:
            status, reason = self._run(self._submit, ctx)
        except IBConnectionError as exc:
            return self._result(ctx, t0, "REJECTED", f"not_connected: {exc}")
        if status == "UNKNOWN":
            self.counters["unknown"] += 1
        err = self._errors.get(self._oid.get(ctx.client_order_id, -1))
        return self._result(ctx, t0, status, reason, {"error": list(err)} if err else None)

    async def _submit(self, ctx: OrderCtx) -> tuple[str, str | None]:
        await self._ensure()
        ib = self._ib
        oid = self._oid.get(ctx.client_order_id) or ib.client.getReqId()
        self._oid[ctx.client_order_id] = oid
        contract, order = self._contract(ctx.instrument), self._order(ctx, oid)
        return await self._wait(oid, "submit", lambda: ib.placeOrder(contract, order))

    def resolve(self, ctx: OrderCtx, max_resends: int = 3) -> ExecResult:
        """Settle an unknown submit: find ``orderRef`` among IB's open orders, completed orders
        and executions (reconnecting first if needed); found -> its state; not found -> sent
        again with the same order id. A failed search -> ``UNKNOWN`` (still in flight)."""
        t0 = self.clock()
        res = None
        for _ in range(max_resends + 1):
            try:
                found = self._run(self._find, ctx.client_order_id)
            except (IBConnectionError, TimeoutError, ConnectionError) as exc:
                return self._result(ctx, t0, "UNKNOWN", f"query_failed: {exc}")
            if found is not None:
                status, reason = found
                return self._result(ctx, t0, status, reason)
            self.counters["resent"] += 1
            res = self.submit(ctx)
            if res.status != "UNKNOWN":
                return res
        return res

    async def _find(self, cid: str) -> tuple[str, str | None] | None:
        await self._ensure()
        t = self.request_timeout_s
        ib = self._ib
        for req in (ib.reqOpenOrdersAsync, lambda: ib.reqCompletedOrdersAsync(False)):
            for tr in await asyncio.wait_for(req(), t):   # open orders first: the usual case
                if tr.order.orderRef != cid:
                    continue
                self._perm[cid] = tr.order.permId
                if tr.order.orderId and tr.order.clientId == self.client_id:
                    self._oid[cid] = tr.order.orderId
                if tr.orderStatus.status == "Inactive":
                    state = self._completed_state.get(tr.order.permId)
                    return ("REJECTED", getattr(state, "completedStatus", "") or "Inactive")
                return ("ACCEPTED", None)
        for f in await asyncio.wait_for(ib.reqExecutionsAsync(), t):
            if f.execution.orderRef == cid:
                self._perm[cid] = f.execution.permId
                return ("ACCEPTED", None)
        return None

    def cancel(self, client_order_id: str) -> CancelResult:
        """Cancel by bridge's id. DONE when IB confirms Cancelled (or error 202), REJECTED
        ``too_late`` (filled / not cancellable) or ``not_found``, PENDING without an answer."""
        t0 = self.clock()
        self.counters["cancel"] += 1
        try:
            status, reason = self._run(self._cancel, client_order_id)
        except (IBConnectionError, TimeoutError) as exc:
            status, reason = "UNKNOWN", f"not_connected: {exc}"
        now = self.clock()
        perm = self._perm.get(client_order_id)
        return CancelResult(client_order_id=client_order_id, status=status, reason=reason,
                            broker_order_id=str(perm) if perm else None,
                            latency_ms=float(max(now - t0, 0)), ts_ms=now,
                            raw={"ib_order_id": self._oid.get(client_order_id)})

    async def _cancel(self, cid: str) -> tuple[str, str | None]:
        from ib_async import Order

        await self._ensure()
        if cid not in self._oid and await self._find(cid) is None:
            return ("REJECTED", "not_found")
        oid = self._oid.get(cid)
        if oid is None:                                # placed by another client id
            return ("REJECTED", "not_found")
        order = Order(orderId=oid, clientId=self.client_id, permId=self._perm.get(cid, 0))
        status, reason = await self._wait(oid, "cancel", lambda: self._ib.cancelOrder(order))
        return ("PENDING", None) if status == "UNKNOWN" else (status, reason)

    def amend(self, client_order_id: str, quantity: float | None = None,
              limit_price: float | None = None) -> AmendResult:
        """IB's modify: the same order id sent again with the new quantity (shares, total)
        and/or limit price. DONE when IB acknowledges it, REJECTED on an order error."""
        t0 = self.clock()
        try:
            status, reason = self._run(self._amend, client_order_id, quantity, limit_price)
        except (IBConnectionError, TimeoutError) as exc:
            status, reason = "UNKNOWN", f"not_connected: {exc}"
        now = self.clock()
        perm = self._perm.get(client_order_id)
        return AmendResult(client_order_id=client_order_id, status=status, reason=reason,
                           broker_order_id=str(perm) if perm else None,
                           latency_ms=float(max(now - t0, 0)), ts_ms=now, raw={},
                           quantity=quantity, limit_price=limit_price)

    async def _amend(self, cid, quantity, limit_price) -> tuple[str, str | None]:
        await self._ensure()
        ib = self._ib
        trade = next((t for t in ib.openTrades() if t.order.orderRef == cid), None)
        if trade is None:
            trades = await asyncio.wait_for(ib.reqOpenOrdersAsync(), self.request_timeout_s)
            trade = next((t for t in trades if t.order.orderRef == cid), None)
        if trade is None or trade.order.clientId != self.client_id:
            return ("REJECTED", "not_found")
        order = trade.order
        if quantity is not None:
            order.totalQuantity = float(quantity)
        if limit_price is not None:
            order.lmtPrice = float(limit_price)
        status, reason = await self._wait(order.orderId, "amend",
                                          lambda: ib.placeOrder(trade.contract, order))
        return ("DONE", None) if status == "ACCEPTED" else (status, reason)

    def what_if(self, ctx: OrderCtx) -> dict:
        """IB's what-if answer for ``ctx`` (no order is placed): margins and equity with loan
        before / change / after, currency; commission estimate."""
        return self._run(self._what_if, ctx)

    async def _what_if(self, ctx: OrderCtx) -> dict:
        await self._ensure()
        st = await asyncio.wait_for(self._ib.whatIfOrderAsync(self._contract(ctx.instrument),
                                                              self._order(ctx)),
                                    self.request_timeout_s)
        num = lambda x: float(x) if x not in ("", None) else float("nan")  # noqa: E731
        return {"init_margin_before": num(st.initMarginBefore),
                "init_margin_change": num(st.initMarginChange),
                "init_margin_after": num(st.initMarginAfter),
                "maint_margin_after": num(st.maintMarginAfter),
                "equity_with_loan_after": num(st.equityWithLoanAfter),
                "commission": None if st.commission >= 1.7e308 else st.commission}

    # ---- fills -----------------------------------------------------------------------------
    def _to_fill(self, f, commission: float, missing: bool = False) -> Fill:
        e, c = f.execution, f.contract
        cid = e.orderRef or next((k for k, v in self._perm.items() if v == e.permId), "")
        raw = {"execution": _jsonable(e), "contract": _jsonable(c),
               "commission_report": _jsonable(f.commissionReport)}
        if missing:
            raw["commission_missing"] = True
        return Fill(exec_id=e.execId, client_order_id=cid, broker_order_id=str(e.permId),
                    instrument=self.contracts.instrument(c.symbol),
                    side="buy" if e.side == "BOT" else "sell", quantity=float(e.shares),
                    price=float(e.price), commission=float(commission), fees=0.0,
                    ts_ms=_ms(e.time) or 0, currency=c.currency or "USD",
                    exchange=e.exchange or "SMART", raw=raw)

    def _is_new(self, f) -> bool:
        """First sight of this execution (corrections of a seen one are recorded, not new)."""
        e = f.execution
        base = e.execId.rsplit(".", 1)[0]
        seen = self._seen.get(base)
        if seen is None:
            self._seen[base] = (float(e.shares), float(e.price), e.execId)
            return True
        if seen[2] == e.execId:
            self.counters["repeated_exec"] += 1
            return False
        if (float(e.shares), float(e.price)) == seen[:2]:
            self.counters["corrections_same"] += 1
        else:
            self.counters["corrections_changed"] += 1
            self.corrections.append({"exec_id": e.execId, "corrects": seen[2],
                                     "shares": e.shares, "price": e.price,
                                     "was": {"shares": seen[0], "price": seen[1]}})
            log.warning("IB execution correction %s changes %s: not applied", e.execId, seen[2])
        return False

    def flush(self) -> list[Fill]:
        """Fills since the last flush, deduplicated by execId, each with its commission.

        A barrier (reqCurrentTime) first makes sure every message IB sent before is read;
        after a (re)connect the executions are re-requested, so fills sent while bridge was
        not connected are picked up.
        """
        return self._run(self._flush)

    async def _flush(self) -> list[Fill]:
        ib = self._ib
        for attempt in (1, 2):   # a socket found dead mid-sync: reconnect once and sync again
            try:
                await self._ensure()
                await asyncio.wait_for(ib.reqCurrentTimeAsync(), self.request_timeout_s)
                if self._gap:
                    for f in await asyncio.wait_for(ib.reqExecutionsAsync(),
                                                    self.request_timeout_s):
                        self._live.append(ib.wrapper.fills.get(f.execution.execId, f))
                    self._gap = False
                break
            except (IBConnectionError, asyncio.TimeoutError, ConnectionError) as exc:
                if attempt == 2:
                    log.warning("IB flush could not sync (%s); fills are picked up on the "
                                "next flush", exc)
        now = time.monotonic()
        while self._live:
            f = self._live.popleft()
            if f.execution.execId not in self._pending and self._is_new(f):
                self._pending[f.execution.execId] = (f, now)
        out = []
        for eid, (f, since) in list(self._pending.items()):
            f = ib.wrapper.fills.get(eid, f)
            if f.commissionReport.execId:
                out.append(self._to_fill(f, f.commissionReport.commission))
            elif now - since >= self.commission_wait_s:
                out.append(self._to_fill(f, 0.0, missing=True))
            else:
                continue
            del self._pending[eid]
        self.counters["fills"] += len(out)
        return out

    def fills(self) -> list[dict]:
        """IB's execution history (reqExecutions) as reconciliation records: exec_id,
        client_order_id (the orderRef), broker_order_id (permId), instrument, side, quantity,
        price, commission, ts_ms, raw. Raises on a failed query (never an empty history)."""
        rows = self._run(self._executions)
        return [{k: getattr(f, k) for k in ("exec_id", "client_order_id", "broker_order_id",
                                            "instrument", "side", "quantity", "price",
                                            "commission", "ts_ms", "currency", "exchange",
                                            "raw")} for f in rows]

    async def _executions(self) -> list[Fill]:
        await self._ensure()
        ib = self._ib
        out, bases = [], set()
        for f in await asyncio.wait_for(ib.reqExecutionsAsync(), self.request_timeout_s):
            f = ib.wrapper.fills.get(f.execution.execId, f)
            base = f.execution.execId.rsplit(".", 1)[0]
            if base in bases:   # a correction: the history keeps the first report
                continue
            bases.add(base)
            out.append(self._to_fill(f, f.commissionReport.commission))
        return out

    # ---- account ---------------------------------------------------------------------------
    def orders(self) -> dict[str, dict]:
        """IB's orders (open, then completed) by bridge's client order id (orderRef), in the
        paper broker's record shape plus ``ib_status``, ``bridge_status`` and ``raw``."""
        return self._run(self._orders)

    async def _orders(self) -> dict[str, dict]:
        await self._ensure()
        ib, t = self._ib, self.request_timeout_s
        open_ = await asyncio.wait_for(ib.reqOpenOrdersAsync(), t)
        done = await asyncio.wait_for(ib.reqCompletedOrdersAsync(False), t)
        out: dict[str, dict] = {}
        for tr, is_open in [(x, True) for x in open_] + [(x, False) for x in done]:
            o, st = tr.order, tr.orderStatus
            if not o.orderRef:
                continue
            if o.orderRef in out:
                self.counters["orders_sharing_ref"] += 1
            state = self._completed_state.get(o.permId)
            filled = float(st.filled if is_open else (o.filledQuantity
                                                       if o.filledQuantity < 1.7e308 else 0.0))
            word = st.status
            bridge = IB_STATUS.get(word, S.ACCEPTED)
            venue = ("partially_filled" if filled > 0 else "accepted") if is_open else {
                S.FILLED: "filled", S.CANCELED: "canceled", S.REJECTED: "rejected"}.get(
                bridge, "canceled")
            if venue == "canceled" and state is not None and "Expired" in state.completedStatus:
                venue = "expired"
            done_ms = _ms(getattr(state, "completedTime", "") or None)
            out[o.orderRef] = {
                "broker_order_id": str(o.permId), "client_order_id": o.orderRef,
                "instrument": self.contracts.instrument(tr.contract.symbol),
                "side": "buy" if o.action == "BUY" else "sell",
                "quantity": float(o.totalQuantity),
                "order_type": "limit" if o.orderType in ("LMT", "LOC") else "market",
                "limit_price": o.lmtPrice if o.lmtPrice < 1.7e308 else None,
                "time_in_force": "cls" if o.orderType in ("MOC", "LOC") else
                _TIF_BACK.get(o.tif, o.tif.lower()),
                "status": venue, "filled_quantity": filled,
                "reject_reason": (state.completedStatus if state and venue == "rejected" else ""),
                "created_ts_ms": None, "updated_ts_ms": done_ms or self.clock(),
                "ib_status": word, "bridge_status": str(bridge),
                "raw": {"order": _jsonable(o), "status": _jsonable(st),
                        "state": _jsonable(state) if state else None}}
        return out

    def positions(self) -> dict[str, dict]:
        """instrument -> {qty (shares, signed), avg_entry_price (IB avgCost), market_value
        (portfolio value; qty x avgCost when IB has not sent one), raw}."""
        return self._run(self._positions)

    async def _positions(self) -> dict[str, dict]:
        await self._ensure()
        ib = self._ib
        rows = await asyncio.wait_for(ib.reqPositionsAsync(), self.request_timeout_s)
        values = {p.contract.conId: p for p in ib.portfolio(self.account_code or "")}
        out = {}
        for p in rows:
            if p.account != self.account_code or not p.position:
                continue
            item = values.get(p.contract.conId)
            mv = item.marketValue if item is not None and item.position == p.position \
                else p.position * p.avgCost
            out[self.contracts.instrument(p.contract.symbol)] = {
                "qty": float(p.position), "avg_entry_price": float(p.avgCost),
                "market_value": float(mv),
                "raw": {"position": _jsonable(p), "portfolio": _jsonable(item) if item else None}}
        return out

    def account(self) -> dict:
        """cash (TotalCashValue), equity (NetLiquidation), buying_power, available_funds
        (currency), account_id and the raw summary values."""
        return self._run(self._account)

    async def _account(self) -> dict:
        await self._ensure()
        ib = self._ib
        req = ib.client.getReqId()
        fut = ib.wrapper.startReq(req)
        ib.client.reqAccountSummary(req, "All", "NetLiquidation,TotalCashValue,BuyingPower,"
                                    "AvailableFunds,EquityWithLoanValue,GrossPositionValue")
        try:
            await asyncio.wait_for(fut, self.request_timeout_s)
        finally:
            ib.client.cancelAccountSummary(req)
        vals = {v.tag: v.value for v in ib.wrapper.acctSummary.values()
                if v.account == self.account_code}
        try:
            return {"cash": float(vals["TotalCashValue"]), "equity": float(vals["NetLiquidation"]),
                    "buying_power": float(vals["BuyingPower"]),
                    "available_funds": float(vals.get("AvailableFunds", "nan")),
                    "account_id": self.account_code, "raw": vals}
        except KeyError as exc:
            raise IBConnectionError(f"account summary without {exc} for {self.account_code}") \
                from None

    def health(self, probe: bool = False) -> dict:
        """Connection status, stream status (IB pushes over the same socket), API connectivity
        (1100 / 1102), last heartbeat (epoch ms of the last bytes received), server version,
        connect / disconnect counts, farms, pending corrections. ``probe`` first does a
        reqCurrentTime round trip."""
        if probe:
            try:
                self._run(self._probe)
            except (IBConnectionError, TimeoutError, ConnectionError) as exc:
                self._health["last_error"] = f"probe: {exc}"
        h = dict(self._health)
        last = self._ib.wrapper.lastTime
        connected = self._ib.isConnected()
        h.update(broker=self.name, client_id=self.client_id, account=self.account_code,
                 connection="connected" if connected else "disconnected",
                 stream="connected" if connected else "down",
                 last_heartbeat_ms=None if last == datetime.min else _ms(last),
                 corrections=len(self.corrections), counters=dict(self.counters))
        return h

    async def _probe(self) -> None:
        await self._ensure()
        await asyncio.wait_for(self._ib.reqCurrentTimeAsync(), self.request_timeout_s)

    def disconnect(self) -> None:
        """Close the API socket (the executor reconnects on its next call)."""
        async def _d():
            self._ib.disconnect()
        self._run(_d)

    def close(self) -> None:
        """Disconnect and stop the executor's thread; idempotent."""
        if self._closed:
            return
        try:
            self.disconnect()
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

