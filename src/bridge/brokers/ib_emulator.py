"""An offline TWS / IB Gateway: the TWS API wire protocol on 127.0.0.1, backed by the embedded
paper broker on real bars.

The real ``ib_async`` client connects to it unmodified (handshake, version negotiation 157-178,
START_API, then its whole start-up sync). Messages served (:mod:`bridge.brokers.ib_wire` has the
layouts):

- requests: PLACE_ORDER (new, modify = same order id, what-if), CANCEL_ORDER, REQ_OPEN_ORDERS,
  REQ_ALL_OPEN_ORDERS, REQ_COMPLETED_ORDERS, REQ_EXECUTIONS (filter: client id, account, time,
  symbol, side), REQ_POSITIONS, REQ_ACCOUNT_SUMMARY, REQ_ACCT_DATA (account updates),
  REQ_ACCOUNT_UPDATES_MULTI, REQ_IDS, REQ_CURRENT_TIME, REQ_GLOBAL_CANCEL, REQ_MANAGED_ACCTS;
  anything else gets error 321 (unsupported here) rather than silence.
- answers and pushes: nextValidId, managedAccounts, openOrder, orderStatus, execDetails,
  commissionReport, position, account values / portfolio / account time, account summary,
  completedOrder, errors (201 rejected, 202 cancelled, 103 duplicate order id, 135 unknown order,
  161 not cancellable, 200 no security definition, 326 client id in use, 1100 / 1102
  connectivity lost / restored, 2104 / 2106 / 2158 farm status at login).

IB semantics kept: orders belong to (client id, order id); ``orderRef`` is free text and NOT
unique (a second order with the same ref is a second order, which is how the fault runs count
duplicates); re-sending an order id that is open modifies it, one that is done gets error 103.
Fills go to the connection of the client that placed the order; after a reconnect the client
asks for them (reqExecutions). Day orders that expire are reported ``Cancelled``, as TWS does.
Commissions are the paper broker's :class:`~bridge.market.rules.MarketRules` (default US: 5 bps,
min 1 USD), not IBKR's per-share schedule. reqExecutions returns the account's whole history
(TWS keeps the current day, up to 7 days by setting).

Emulator-only controls are Python methods (:meth:`TWSEmulator.advance`, :meth:`set_faults`,
:meth:`drop_connections`, :meth:`state`), run in the server's loop.

Faults (:class:`Faults`, probabilities drawn from a seeded generator): the connection dropped
before a PLACE_ORDER is processed or right after it (no answer), the acceptance held back
(``delay_status``) or orderStatus never sent (``missing_status``, openOrder still is), every
execDetails duplicated, a same-economics execution correction (execId revision ``.02``), a
reject (error 201), lost connectivity (1100, requests held ``outage_s``, then 1102), and the
connection dropped halfway through a session's fills (``drop_mid_fill``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zlib import crc32


from bridge.brokers import ib_wire as w
from bridge.brokers._loop import PaperVenueServer
from bridge.brokers.ib_contracts import ContractMap
from bridge.brokers.sim import PaperBroker

log = logging.getLogger("bridge.brokers.ib_emulator")

ACCOUNT = "DU0000001"
FAULTS = ("drop_before_place", "drop_after_place", "delay_status", "missing_status",
          "duplicate_exec", "correction", "reject", "connectivity_lost", "drop_mid_fill")
_OPEN = ("accepted", "partially_filled")
_SIDE = {"BUY": "buy", "SELL": "sell"}
_TIF = {"DAY": "day", "GTC": "gtc", "IOC": "ioc", "OPG": "opg"}


def ib_time(ms: int | float) -> str:
    """``YYYYmmdd HH:MM:SS UTC`` (a format ib_async's ``parseIBDatetime`` reads)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%d %H:%M:%S UTC")


@dataclass
class Faults:
    """What to inject: ``p`` fault -> probability (see :data:`FAULTS`); ``once``: faults taken
    first-come, one each; ``delay_s``: how long a held acceptance waits; ``outage_s``: how long
    connectivity stays lost."""

    p: dict = field(default_factory=dict)
    once: list = field(default_factory=list)
    delay_s: float = 0.5
    outage_s: float = 0.2

    def __post_init__(self) -> None:
        bad = (set(self.p) | set(self.once)) - set(FAULTS)
        if bad:
            raise ValueError(f"unknown IB emulator faults {sorted(bad)}; known: {FAULTS}")


@dataclass
class _Order:
    """IB-side facts of one order (the paper broker holds the matching side)."""

    perm_id: int
    client_id: int
    order_id: int
    ref: str
    instrument: str
    contract: w.WireContract
    action: str
    order_type: str
    lmt: float | None
    tif: str
    account: str
    sim_cid: str | None              # None: rejected before reaching the paper broker
    reject: str = ""
    created_ms: int = 0
    avg_price: float = 0.0
    last_price: float = 0.0


@dataclass
class _Conn:
    writer: asyncio.StreamWriter
    version: int
    client_id: int | None = None
    account_updates: bool = False
    closed: bool = False

    def send(self, *msgs: bytes) -> None:
        if not self.closed:
            try:
                self.writer.write(b"".join(msgs))
            except (ConnectionError, RuntimeError):
                self.closed = True


class TWSEmulator(PaperVenueServer):
    """The emulator: an asyncio TCP server over a :class:`PaperBroker`, in its own thread
    (:meth:`start`, :meth:`stop`, :meth:`call`, :meth:`advance`, :meth:`set_faults` from
    :class:`~bridge.brokers._loop.PaperVenueServer`).

    Parameters
    ----------
    broker : PaperBroker
        The venue (its rules give the commissions).
    start_session : str, optional
        The session the account "is in" before the first advance (marks for values).
    contracts : ContractMap, optional
        Instrument <-> IB symbol (default: the shipped mapping).
    faults : Faults, optional
    seed : int
        Seed of the fault generator.
    max_server_version : int
        Highest version offered in the negotiation (157-178).
    clock : callable returning int ms, optional
        Time of order records and of reqCurrentTime (default: wall clock).
    """

    thread_name = "tws-emulator"

    def __init__(self, broker: PaperBroker, start_session: str | None = None,
                 contracts: ContractMap | None = None, faults: Faults | None = None,
                 seed: int = 0, max_server_version: int = w.MAX_SERVER_VERSION,
                 clock=None, account: str = ACCOUNT) -> None:
        self.broker = broker
        if start_session is not None:
            broker._t = self._session_index(start_session)
        self.contracts = contracts or ContractMap()
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.max_version = int(max_server_version)
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.account = account
        self.orders: dict[int, _Order] = {}            # permId -> order
        self.by_key: dict[tuple[int, int], int] = {}   # (clientId, orderId) -> permId
        self.by_sim: dict[str, int] = {}               # paper broker client id -> permId
        self.execs: list[w.ExecView] = []
        self._requested: dict[int, float] = {}         # permId -> quantity asked (rejects too)
        self.conns: dict[int, _Conn] = {}              # clientId -> live connection
        self._perm = 1_000_000
        self._outage: asyncio.Event | None = None
        self.counters = {k: 0 for k in ("connections", "place_order", "placed", "modified",
                                        "rejected", "duplicate_order_id", "cancel", "executions",
                                        "exec_messages", "dropped", "unsupported")}
        self.injected: dict[str, int] = {}
        self._server: asyncio.AbstractServer | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    async def _start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._outage = asyncio.Event()
        self._outage.set()

    async def _stop(self) -> None:
        await self._drop_all()
        self._server.close()
        await self._server.wait_closed()

    def drop_connections(self) -> int:
        """Close every client connection (as a TWS restart would); returns how many."""
        return self.call(self._drop_all)

    def state(self) -> dict:
        """Counters, injected faults, orders per orderRef, positions and account."""
        async def _state():
            refs: dict[str, int] = {}
            for o in self.orders.values():
                refs[o.ref] = refs.get(o.ref, 0) + 1
            return {"counters": dict(self.counters), "injected": dict(self.injected),
                    "orders_per_ref": refs, "connections": sorted(self.conns),
                    "positions": self.broker.get_positions(),
                    "account": self.broker.get_account()}
        return self.call(_state)

    # ---- faults ----------------------------------------------------------------------------
    def _fault(self, name: str) -> bool:
        f = self.faults
        if name in f.once:
            f.once.remove(name)
            hit = True
        else:
            p = f.p.get(name, 0.0)
            hit = bool(p) and self.rng.random() < p
        if hit:
            self.injected[name] = self.injected.get(name, 0) + 1
        return hit

    async def _drop_all(self) -> int:
        n = 0
        for conn in list(self.conns.values()):
            n += self._drop(conn)
        return n

    def _drop(self, conn: _Conn) -> int:
        if conn.closed:
            return 0
        conn.closed = True
        self.counters["dropped"] += 1
        if self.conns.get(conn.client_id) is conn:
            del self.conns[conn.client_id]
        conn.writer.close()
        return 1

    # ---- connection ------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = None
        try:
            lo, hi, _opts = await w.read_handshake(reader)
            version = w.negotiate(lo, hi, self.max_version)
            if version is None:
                log.warning("client versions %s..%s not supported; closing", lo, hi)
                writer.close()
                return
            conn = _Conn(writer, version)
            writer.write(w.frame(version, ib_time(self.clock())))
            while True:
                fields = await w.read_message(reader)
                await self._outage.wait()
                if conn.closed:
                    return
                await self._dispatch(conn, fields)
                if conn.closed:
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            log.debug("client %s closed the connection", conn and conn.client_id)
        except w.ProtocolError as exc:
            log.warning("protocol error: %s", exc)
        finally:
            if conn is not None:
                self._drop(conn)
            else:
                writer.close()

    async def _dispatch(self, conn: _Conn, f: list[str]) -> None:
        msg = int(f[0])
        if conn.client_id is None and msg != w.START_API:
            conn.send(w.error(conn.version, -1, 321, "API client has not called START_API"))
            return
        handler = {
            w.START_API: self._start_api, w.PLACE_ORDER: self._place,
            w.CANCEL_ORDER: self._cancel, w.REQ_OPEN_ORDERS: self._open_orders,
            w.REQ_ALL_OPEN_ORDERS: self._open_orders, w.REQ_COMPLETED_ORDERS: self._completed,
            w.REQ_EXECUTIONS: self._executions, w.REQ_POSITIONS: self._positions,
            w.REQ_ACCOUNT_SUMMARY: self._summary, w.REQ_ACCT_DATA: self._account_updates,
            w.REQ_ACCOUNT_UPDATES_MULTI: self._updates_multi, w.REQ_IDS: self._ids,
            w.REQ_CURRENT_TIME: self._time, w.REQ_GLOBAL_CANCEL: self._global_cancel,
            w.REQ_MANAGED_ACCTS: lambda c, _f: c.send(w.managed_accounts([self.account])),
        }.get(msg)
        if handler is not None:
            r = handler(conn, f)
            if asyncio.iscoroutine(r):
                await r
        elif msg not in (w.REQ_AUTO_OPEN_ORDERS, w.REQ_MARKET_DATA_TYPE, w.CANCEL_POSITIONS,
                         w.CANCEL_ACCOUNT_SUMMARY, w.CANCEL_ACCOUNT_UPDATES_MULTI):
            self.counters["unsupported"] += 1
            conn.send(w.error(conn.version, -1, 321,
                              f"Error validating request: message {msg} is not supported by "
                              "the bridge TWS emulator"))

    def _start_api(self, conn: _Conn, f: list[str]) -> None:
        cid = int(f[2])
        if cid in self.conns:
            conn.send(w.error(conn.version, -1, 326, "Unable to connect as the client id is "
                              "already in use. Retry with a unique client id."))
            self._drop(conn)
            return
        conn.client_id = cid
        self.conns[cid] = conn
        self.counters["connections"] += 1
        conn.send(w.next_valid_id(self._next_id(cid)), w.managed_accounts([self.account]))
        for code, text in ((2104, "Market data farm connection is OK:usfarm"),
                           (2106, "HMDS data farm connection is OK:ushmds"),
                           (2158, "Sec-def data farm connection is OK:secdefnj")):
            conn.send(w.error(conn.version, -1, code, text))

    def _next_id(self, client_id: int) -> int:
        ids = [k[1] for k in self.by_key if k[0] == client_id]
        return max(ids, default=0) + 1

    def _ids(self, conn: _Conn, f: list[str]) -> None:
        conn.send(w.next_valid_id(self._next_id(conn.client_id)))

    def _time(self, conn: _Conn, f: list[str]) -> None:
        conn.send(w.current_time(self.clock() // 1000))

    # ---- shapes ----------------------------------------------------------------------------
    def _contract(self, instrument: str) -> w.WireContract:
        c = self.contracts.contract(instrument)
        con_id = c.con_id or (crc32(c.symbol.encode()) % 90_000_000 + 10_000_000)
        return w.WireContract(con_id, c.symbol, c.sec_type, "SMART", c.primary_exchange,
                              c.currency)

    def _venue(self, o: _Order):
        return None if o.sim_cid is None else self.broker.orders[
            self.broker.by_client_id[o.sim_cid]]

    def _ib_status(self, o: _Order) -> str:
        v = self._venue(o)
        if v is None:
            return "Inactive"
        if v.status in _OPEN:   # auction orders wait PreSubmitted for their auction
            auction = o.tif == "OPG" or o.order_type in ("MOC", "LOC")
            return "PreSubmitted" if auction and v.filled_quantity == 0 else "Submitted"
        return {"filled": "Filled", "canceled": "Cancelled", "expired": "Cancelled",
                "rejected": "Inactive"}[v.status]

    def _view(self, o: _Order) -> w.OrderView:
        v = self._venue(o)
        st = self._ib_status(o)
        done = st in ("Filled", "Cancelled", "Inactive")
        qty = v.quantity if v is not None else self._requested.get(o.perm_id, 0.0)
        return w.OrderView(
            o.order_id, o.client_id, o.perm_id, o.contract, o.action, qty, o.order_type, o.lmt,
            o.tif, o.account, o.ref, st, filled=v.filled_quantity if v else 0.0,
            avg_fill_price=o.avg_price, last_fill_price=o.last_price,
            completed_time=ib_time(v.updated_ts_ms if v else o.created_ms) if done else "",
            completed_status=("Rejected: " + o.reject if st == "Inactive" else
                              "Filled" if st == "Filled" else
                              ("Expired" if v.status == "expired" else "Cancelled by Trader"))
            if done else "")

    def _announce(self, conn: _Conn | None, o: _Order, status: bool = True) -> None:
        if conn is None:
            return
        v = self._view(o)
        conn.send(w.open_order(conn.version, v))
        if status:
            conn.send(w.order_status(v))

    # ---- orders ----------------------------------------------------------------------------
    async def _place(self, conn: _Conn, f: list[str]) -> None:
        self.counters["place_order"] += 1
        try:
            p = w.parse_place_order(f, conn.version)
        except w.ProtocolError as exc:
            conn.send(w.error(conn.version, int(f[1]) if len(f) > 1 else -1, 321, str(exc)))
            return
        if p.what_if:
            self._what_if(conn, p)
            return
        if self._fault("drop_before_place"):
            self._drop(conn)
            return
        if self._fault("connectivity_lost"):
            await self._connectivity_outage()
        key = (conn.client_id, p.order_id)
        if key in self.by_key:
            self._modify(conn, self.orders[self.by_key[key]], p)
            return
        o = self._new_order(conn, p)
        drop_after = self._fault("drop_after_place")
        if o.reject:
            self.counters["rejected"] += 1
            if not drop_after:
                conn.send(w.error(conn.version, p.order_id, 201,
                                  f"Order rejected - reason:{o.reject}"))
        if drop_after:
            self._drop(conn)
            return
        if o.reject:
            return
        self.counters["placed"] += 1
        if self._fault("delay_status"):
            asyncio.get_running_loop().call_later(
                self.faults.delay_s, lambda: self._announce(self.conns.get(o.client_id), o))
            return
        self._announce(conn, o, status=not self._fault("missing_status"))

    def _new_order(self, conn: _Conn, p: w.PlaceOrder) -> _Order:
        self._perm += 1
        inst = self.contracts.instrument(p.symbol)
        o = _Order(self._perm, conn.client_id, p.order_id, p.order_ref, inst,
                   self._contract(inst), p.action, p.order_type, p.lmt_price, p.tif,
                   p.account or self.account, None, created_ms=self.clock())
        self.orders[o.perm_id] = o
        self.by_key[(conn.client_id, p.order_id)] = o.perm_id
        self._requested[o.perm_id] = p.total_quantity
        reason = self._refusal(p, inst)
        if not reason and self._fault("reject"):
            reason = "emulator-injected reject"
        if not reason:
            sim_cid = f"ib-{o.perm_id}"
            otype = "limit" if p.order_type in ("LMT", "LOC") else "market"
            tif = "cls" if p.order_type in ("MOC", "LOC") else _TIF[p.tif]
            rec = self.broker._place(sim_cid, inst, _SIDE[p.action], p.total_quantity, otype,
                                     p.lmt_price if otype == "limit" else None, tif)
            self.by_sim[sim_cid] = o.perm_id
            o.sim_cid = sim_cid
            if rec["status"] == "rejected":
                reason = rec["reject_reason"]
        o.reject = reason
        return o

    def _refusal(self, p: w.PlaceOrder, inst: str) -> str:
        if p.sec_type != "STK":
            return f"sec type {p.sec_type} is not supported"
        if inst not in self.broker._col:
            return f"no security definition for {p.symbol}"
        if p.action not in _SIDE:
            return f"action {p.action} is not supported"
        if p.order_type not in ("MKT", "LMT", "MOC", "LOC"):
            return f"order type {p.order_type} is not supported"
        if p.tif not in _TIF or (p.order_type in ("MOC", "LOC") and p.tif != "DAY"):
            return f"time in force {p.tif} is not supported with {p.order_type}"
        if p.order_type in ("LMT", "LOC") and not p.lmt_price:
            return "limit order without a limit price"
        if p.total_quantity <= 0 or not float(p.total_quantity).is_integer():
            return f"order quantity {p.total_quantity} is not a positive whole number"
        return ""

    def _modify(self, conn: _Conn, o: _Order, p: w.PlaceOrder) -> None:
        v = self._venue(o)
        if v is None or v.status not in _OPEN:
            self.counters["duplicate_order_id"] += 1
            conn.send(w.error(conn.version, p.order_id, 103, "Duplicate order id"))
            return
        rec = self.broker.amend_order(o.sim_cid, p.total_quantity,
                                      p.lmt_price if o.order_type in ("LMT", "LOC") else None)
        if rec.get("amend_reject"):
            conn.send(w.error(conn.version, p.order_id, 201,
                              f"Order rejected - reason:{rec['amend_reject']}"))
            return
        self.counters["modified"] += 1
        o.lmt = v.limit_price
        self._announce(conn, o)

    def _what_if(self, conn: _Conn, p: w.PlaceOrder) -> None:
        """Cash account: the initial margin of a buy is its value, equity with loan is cash +
        positions at the last close."""
        a = self.broker.get_account()
        inst = self.contracts.instrument(p.symbol)
        if inst not in self.broker._col:
            conn.send(w.error(conn.version, p.order_id, 200,
                              "No security definition has been found for the request"))
            return
        px = p.lmt_price or self.broker._last_price(inst)
        change = p.total_quantity * px if p.action == "BUY" else 0.0
        before = a["equity"] - a["buying_power"]
        m = {"initMarginBefore": before, "maintMarginBefore": before,
             "equityWithLoanBefore": a["equity"], "initMarginChange": change,
             "maintMarginChange": change, "equityWithLoanChange": 0.0,
             "initMarginAfter": before + change, "maintMarginAfter": before + change,
             "equityWithLoanAfter": a["equity"]}
        view = w.OrderView(p.order_id, conn.client_id, 0, self._contract(inst), p.action,
                           p.total_quantity, p.order_type, p.lmt_price, p.tif, self.account,
                           p.order_ref, "PreSubmitted", margin={k: repr(float(x))
                                                               for k, x in m.items()},
                           commission=self.broker.rules.fee(p.total_quantity * px,
                                                            p.action == "SELL"))
        conn.send(w.open_order(conn.version, view, what_if=True))

    async def _connectivity_outage(self) -> None:
        """1100 to every client, requests held for ``outage_s``, then 1102."""
        for c in self.conns.values():
            c.send(w.error(c.version, -1, 1100, "Connectivity between IB and Trader Workstation "
                                                 "has been lost."))
        self._outage.clear()
        await asyncio.sleep(self.faults.outage_s)
        self._outage.set()
        for c in self.conns.values():
            c.send(w.error(c.version, -1, 1102, "Connectivity between IB and Trader Workstation "
                                                 "has been restored - data maintained."))

    def _cancel(self, conn: _Conn, f: list[str]) -> None:
        self.counters["cancel"] += 1
        order_id = int(f[2])
        perm = self.by_key.get((conn.client_id, order_id))
        if perm is None:
            conn.send(w.error(conn.version, order_id, 135, f"Can't find order with id ={order_id}"))
            return
        o = self.orders[perm]
        v = self._venue(o)
        if v is None or v.status not in _OPEN:
            conn.send(w.error(conn.version, order_id, 161, "Cancel attempted when order is not in "
                              f"a cancellable state. Order permId ={perm}"))
            return
        self.broker.cancel_order(o.sim_cid)
        conn.send(w.order_status(self._view(o)),
                  w.error(conn.version, order_id, 202, "Order Canceled - reason:"))

    def _global_cancel(self, conn: _Conn, f: list[str]) -> None:
        for o in self.orders.values():
            v = self._venue(o)
            if v is not None and v.status in _OPEN:
                self.broker.cancel_order(o.sim_cid)
                self._announce(self.conns.get(o.client_id), o)

    def _open_orders(self, conn: _Conn, f: list[str]) -> None:
        every = int(f[0]) == w.REQ_ALL_OPEN_ORDERS or conn.client_id == 0
        for o in self.orders.values():
            v = self._venue(o)
            if v is not None and v.status in _OPEN and (every or o.client_id == conn.client_id):
                self._announce(conn, o)
        conn.send(w.open_order_end())

    def _completed(self, conn: _Conn, f: list[str]) -> None:
        for o in self.orders.values():
            v = self._venue(o)
            if v is None or v.status not in _OPEN:
                conn.send(w.completed_order(conn.version, self._view(o)))
        conn.send(w.completed_orders_end())

    # ---- executions ------------------------------------------------------------------------
    def _executions(self, conn: _Conn, f: list[str]) -> None:
        _m, _v, req_id, client_id, acct, since, symbol, _sec, _exch, side = (f + [""] * 10)[:10]
        req_id = int(req_id)
        for e in self.execs:
            if client_id not in ("", "0") and e.client_id != int(client_id):
                continue
            if (acct and e.account != acct) or (symbol and e.contract.symbol != symbol):
                continue
            if side and {"BUY": "BOT", "SELL": "SLD"}.get(side, side) != e.side:
                continue
            if since and e.time[:17] <= since.replace("-", " ")[:17]:
                continue
            conn.send(w.exec_details(conn.version, req_id, e), w.commission_report(e))
        conn.send(w.exec_details_end(req_id))

    async def _advance(self, session: str, phase: str = "all") -> int:
        t = self._session_index(session)
        before = {perm: self._ib_status(o) for perm, o in self.orders.items()}
        fills = self.broker.run_session(t, phase)
        drop_at = len(fills) // 2 if fills and self._fault("drop_mid_fill") else None
        for i, fl in enumerate(fills):
            if i == drop_at:
                await self._drop_all()
            o = self.orders[self.by_sim[fl["client_order_id"]]]
            v = self._venue(o)
            o.avg_price = (o.avg_price * (v.filled_quantity - fl["quantity"])
                           + fl["price"] * fl["quantity"]) / v.filled_quantity
            o.last_price = fl["price"]
            e = w.ExecView(f"{o.perm_id:08x}.{fl['seq']:08x}.01.01", o.order_id, o.client_id,
                           o.perm_id, o.contract, ib_time(fl["ts_ms"]), o.account,
                           "BOT" if o.action == "BUY" else "SLD", fl["quantity"], fl["price"],
                           v.filled_quantity, o.avg_price, o.ref, fl["commission"])
            self.execs.append(e)
            self.counters["executions"] += 1
            self._push_exec(self.conns.get(o.client_id), o, e)
        for perm, was in before.items():   # cancels by the venue (day orders expiring)
            o = self.orders[perm]
            now = self._ib_status(o)
            if now != was and now == "Cancelled" and (c := self.conns.get(o.client_id)):
                c.send(w.order_status(self._view(o)))
        for c in list(self.conns.values()):
            if c.account_updates:
                self._send_account(c)
        return len(fills)

    def _push_exec(self, conn: _Conn | None, o: _Order, e: w.ExecView) -> None:
        if conn is None:
            return
        n = 2 if self._fault("duplicate_exec") else 1
        for _ in range(n):
            conn.send(w.exec_details(conn.version, -1, e), w.commission_report(e))
            self.counters["exec_messages"] += 1
        if self._fault("correction"):
            fix = w.ExecView(**{**e.__dict__, "exec_id": e.exec_id[:-2] + "02"})
            conn.send(w.exec_details(conn.version, -1, fix), w.commission_report(fix))
            self.counters["exec_messages"] += 1
        if not self._fault("missing_status"):
            conn.send(w.order_status(self._view(o)))

    # ---- account ---------------------------------------------------------------------------
    def _positions(self, conn: _Conn, f: list[str]) -> None:
        for inst, p in self.broker.get_positions().items():
            conn.send(w.position(self.account, self._contract(inst), p["qty"],
                                 p["avg_entry_price"]))
        conn.send(w.position_end())

    def _values(self) -> dict[str, float]:
        a = self.broker.get_account()
        return {"NetLiquidation": a["equity"], "TotalCashValue": a["cash"],
                "SettledCash": a["cash"], "BuyingPower": a["buying_power"],
                "AvailableFunds": a["buying_power"], "EquityWithLoanValue": a["equity"],
                "GrossPositionValue": a["equity"] - a["cash"]}

    def _summary(self, conn: _Conn, f: list[str]) -> None:
        req_id, tags = int(f[2]), set(f[4].split(","))
        for tag, value in self._values().items():
            if tag in tags:
                conn.send(w.account_summary(req_id, self.account, tag, repr(value), "USD"))
        if "AccountType" in tags:
            conn.send(w.account_summary(req_id, self.account, "AccountType", "INDIVIDUAL", ""))
        conn.send(w.account_summary_end(req_id))

    def _send_account(self, conn: _Conn) -> None:
        for key, value in self._values().items():
            conn.send(w.account_value(key, repr(value), "USD", self.account))
        conn.send(w.account_value("AccountCode", self.account, "", self.account))
        for inst, p in self.broker.get_positions().items():
            q = p["qty"]
            conn.send(w.portfolio_value(self.account, self._contract(inst), q,
                                        p["market_value"] / q, p["market_value"],
                                        p["avg_entry_price"],
                                        p["market_value"] - p["avg_entry_price"] * q, 0.0))
        conn.send(w.account_time(datetime.fromtimestamp(self.clock() / 1000, UTC)
                                 .strftime("%H:%M")),
                  w.account_download_end(self.account))

    def _account_updates(self, conn: _Conn, f: list[str]) -> None:
        conn.account_updates = f[2] == "1"
        if conn.account_updates:
            self._send_account(conn)

    def _updates_multi(self, conn: _Conn, f: list[str]) -> None:
        req_id = int(f[2])
        for key, value in self._values().items():
            conn.send(w.account_update_multi(req_id, self.account, key, repr(value), "USD"))
        conn.send(w.account_update_multi_end(req_id))


def make_ib_emulator(data_dir: str | Path = "data", cash: float = 1_000_000.0,
                     start: str = "2010-08-02", end: str = "2010-12-31", instruments=None,
                     participation: float = 0.1, **kw) -> TWSEmulator:
    """An emulator over the real bars in ``data_dir`` (US rules: 5 bps, min 1 USD)."""
    from bridge.market.data import Panel, load_bars

    bars = load_bars(Path(data_dir), start=start, end=end, instruments=instruments)
    panel = Panel.from_bars(bars)
    broker = PaperBroker(panel, cash=cash, fill_at="open", participation=participation,
                         clock=kw.get("clock") or (lambda: int(time.time() * 1000)))
    return TWSEmulator(broker, start_session=str(panel.sessions[0]), **kw)


def serve(port: int = 7497, data_dir: str | Path = "data", cash: float = 1_000_000.0,
          start: str = "2010-08-02", end: str = "2010-12-31", commands=None) -> None:
    """Serve on 127.0.0.1:``port`` until ``quit`` or Ctrl-C (``bridge emulate ib --port``).

    Commands, one per line on ``commands`` (default: standard input): ``advance YYYY-MM-DD
    [all|open|close]`` (trade a session and push its fills), ``state`` (JSON), ``drop`` (close
    every client connection), ``quit``. At the end of the input the server keeps running.
    """
    import json
    import sys

    emu = make_ib_emulator(data_dir, cash, start, end).start(port)
    print(f"TWS emulator on 127.0.0.1:{emu.port} (account {emu.account}, server versions "
          f"{w.MIN_SERVER_VERSION}-{emu.max_version}); connect with "
          f"ib_async.IB().connect('127.0.0.1', {emu.port}, clientId=1). "
          "Commands: advance YYYY-MM-DD [phase] | state | drop | quit", flush=True)
    try:
        for line in commands if commands is not None else sys.stdin:
            cmd, *args = line.split() or [""]
            if cmd == "quit":
                return
            try:
                if cmd == "advance":
                    print(f"{emu.advance(args[0], *args[1:2])} fills", flush=True)
                elif cmd == "state":
                    print(json.dumps(emu.state(), default=str), flush=True)
                elif cmd == "drop":
                    print(f"{emu.drop_connections()} connections dropped", flush=True)
                elif cmd:
                    print(f"unknown command {cmd!r}", flush=True)
            except (KeyError, IndexError, ValueError) as exc:
                print(f"error: {exc}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:  # Ctrl-C is how a user stops `bridge emulate ib`
        print("stopping", flush=True)
    finally:
        emu.stop()
