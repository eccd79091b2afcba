"""The TWS API wire protocol, server side: framing, the handshake, and the messages the
emulator (:mod:`bridge.brokers.ib_emulator`) sends and parses.

Framing (TWS API, since server version 100): every message is a 4-byte big-endian length followed
by NUL-terminated ASCII fields. The client opens with ``b"API\\0"`` and one framed field
``"v{min}..{max}[ options]"``; the server answers with the negotiated server version and its
connection time (two fields), then the client sends START_API (71). Field layouts below follow
ib_async 2.1's ``Decoder`` / ``Client`` (TWS API 10.x, server versions 157-178); the tests decode
every encoder's output with ib_async's own Decoder, so a layout cannot drift silently.

Only what bridge needs is encoded: stock (``STK``) contracts, no combo legs, algos, conditions,
scale or hedge orders in outgoing order messages. :func:`parse_place_order` reads an incoming
PLACE_ORDER up to ``whatIf`` (conditional blocks included); what follows (conditions, MiFID
fields...) is not used by the emulator.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field

#: server versions the emulator can speak (inclusive); ib_async 2.1 asks for 157..178
MIN_SERVER_VERSION = 157
MAX_SERVER_VERSION = 178
UNSET_DOUBLE = 1.7976931348623157e308
UNSET_INTEGER = 2**31 - 1

# incoming (client -> server) message ids
PLACE_ORDER, CANCEL_ORDER, REQ_OPEN_ORDERS = 3, 4, 5
REQ_ACCT_DATA, REQ_EXECUTIONS, REQ_IDS = 6, 7, 8
REQ_AUTO_OPEN_ORDERS, REQ_ALL_OPEN_ORDERS, REQ_MANAGED_ACCTS = 15, 16, 17
REQ_CURRENT_TIME, REQ_GLOBAL_CANCEL, REQ_MARKET_DATA_TYPE = 49, 58, 59
REQ_POSITIONS, REQ_ACCOUNT_SUMMARY, CANCEL_ACCOUNT_SUMMARY, CANCEL_POSITIONS = 61, 62, 63, 64
START_API, REQ_ACCOUNT_UPDATES_MULTI, CANCEL_ACCOUNT_UPDATES_MULTI = 71, 76, 77
REQ_COMPLETED_ORDERS = 99


class ProtocolError(Exception):
    """The peer broke the wire protocol (bad prefix, oversized or malformed message)."""


def _s(v) -> str:
    """One field as TWS writes it: None -> empty, bool -> 1/0, float -> shortest exact repr."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        if v == UNSET_DOUBLE:
            return ""
        return repr(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return str(v)


def frame(*fields) -> bytes:
    """A framed message: length prefix + NUL-terminated fields."""
    body = "".join(_s(f) + "\0" for f in fields).encode()
    return struct.pack(">I", len(body)) + body


MAX_MESSAGE = 1 << 24


async def read_message(reader: asyncio.StreamReader) -> list[str]:
    """One framed message as its fields (the trailing empty field removed).

    Raises
    ------
    asyncio.IncompleteReadError
        The peer closed the connection.
    ProtocolError
        A length beyond 16 MiB.
    """
    (n,) = struct.unpack(">I", await reader.readexactly(4))
    if n > MAX_MESSAGE:
        raise ProtocolError(f"message length {n} exceeds {MAX_MESSAGE}")
    fields = (await reader.readexactly(n)).decode(errors="backslashreplace").split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


async def read_handshake(reader: asyncio.StreamReader) -> tuple[int, int, str]:
    """The client's opening: ``API\\0`` + ``v{min}..{max}[ options]``.

    Returns
    -------
    (min_version, max_version, options)

    Raises
    ------
    ProtocolError
        No ``API\\0`` prefix, or a version field that is not ``v<int>..<int>``.
    """
    if await reader.readexactly(4) != b"API\0":
        raise ProtocolError("connection does not start with API\\0")
    (n,) = struct.unpack(">I", await reader.readexactly(4))
    if n > 1024:
        raise ProtocolError(f"handshake length {n}")
    text = (await reader.readexactly(n)).decode(errors="replace")
    ver, _, options = text.partition(" ")
    try:
        lo, hi = ver.removeprefix("v").split("..")
        return int(lo), int(hi), options
    except ValueError:
        raise ProtocolError(f"bad version field {text!r}") from None


def negotiate(client_min: int, client_max: int, server_max: int = MAX_SERVER_VERSION) -> int | None:
    """The version both sides speak: the highest in both ranges, or None (no overlap)."""
    v = min(client_max, server_max)
    return v if v >= max(client_min, MIN_SERVER_VERSION) else None


# ---- contracts ---------------------------------------------------------------------------
@dataclass(frozen=True)
class WireContract:
    """A stock contract as it travels on the wire."""

    con_id: int
    symbol: str
    sec_type: str = "STK"
    exchange: str = "SMART"
    primary_exchange: str = ""
    currency: str = "USD"

    def head(self) -> list:
        """conId .. multiplier (the 7 fields every contract block starts with)."""
        return [self.con_id, self.symbol, self.sec_type, "", 0.0, "", ""]

    def tail(self) -> list:
        """localSymbol, tradingClass."""
        return [self.symbol, self.symbol]


# ---- client -> server --------------------------------------------------------------------
@dataclass
class PlaceOrder:
    """The parts of PLACE_ORDER the emulator uses (units: shares, currency/share)."""

    order_id: int
    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    currency: str
    action: str
    total_quantity: float
    order_type: str
    lmt_price: float | None
    aux_price: float | None
    tif: str
    account: str
    order_ref: str
    transmit: bool
    what_if: bool = False
    extra: dict = field(default_factory=dict)


def _f(x: str) -> float | None:
    return None if x in ("", None) else float(x)


def parse_place_order(fields: list[str], version: int) -> PlaceOrder:
    """Read a PLACE_ORDER message (as ib_async 2.1's ``Client.placeOrder`` writes it).

    Raises
    ------
    ProtocolError
        Too few fields, or a combo (``BAG``) order.
    """
    it = iter(fields)
    nxt = it.__next__
    try:
        _msg, order_id = nxt(), int(nxt())
        c = [nxt() for _ in range(12)]   # conId symbol secType lastTrade strike right
        # multiplier exchange primaryExchange currency localSymbol tradingClass
        _sec_id_type, _sec_id = nxt(), nxt()
        action, qty, otype, lmt, aux, tif = (nxt() for _ in range(6))
        _oca, account, _open_close, _origin, order_ref, transmit = (nxt() for _ in range(6))
        if c[2] == "BAG":
            raise ProtocolError("combo (BAG) orders are not supported by the emulator")
        for _ in range(7):       # parentId blockOrder sweepToFill displaySize triggerMethod
            nxt()                # outsideRth hidden
        for _ in range(7):       # "" discretionaryAmt goodAfterTime goodTillDate faGroup
            nxt()                # faMethod faPercentage
        if version < 177:
            nxt()                # faProfile
        for _ in range(22):      # modelCode .. volatilityType
            nxt()
        dn_type, _dn_aux = nxt(), nxt()   # deltaNeutralOrderType, deltaNeutralAuxPrice
        if dn_type:
            for _ in range(8):
                nxt()
        for _ in range(6):       # continuousUpdate referencePriceType trailStopPrice
            nxt()                # trailingPercent scaleInitLevelSize scaleSubsLevelSize
        incr = _f(nxt()) or 0.0
        if 0 < incr < UNSET_DOUBLE:
            for _ in range(7):
                nxt()
        for _ in range(3):       # scaleTable activeStartTime activeStopTime
            nxt()
        if nxt():                # hedgeType
            nxt()                # hedgeParam
        for _ in range(4):       # optOutSmartRouting clearingAccount clearingIntent notHeld
            nxt()
        if nxt() == "1":         # deltaNeutralContract present
            for _ in range(3):
                nxt()
        if nxt():                # algoStrategy
            for _ in range(2 * int(nxt())):
                nxt()
        _algo_id, what_if = nxt(), nxt()
    except StopIteration:
        raise ProtocolError(f"PLACE_ORDER too short ({len(fields)} fields)") from None
    return PlaceOrder(order_id=order_id, con_id=int(c[0] or 0), symbol=c[1], sec_type=c[2],
                      exchange=c[7], currency=c[9], action=action, total_quantity=float(qty),
                      order_type=otype, lmt_price=_f(lmt), aux_price=_f(aux), tif=tif,
                      account=account, order_ref=order_ref, transmit=transmit != "0",
                      what_if=what_if == "1")


# ---- server -> client --------------------------------------------------------------------
def next_valid_id(order_id: int) -> bytes:
    return frame(9, 1, order_id)


def managed_accounts(accounts: list[str]) -> bytes:
    return frame(15, 1, ",".join(accounts))


def error(version: int, req_id: int, code: int, text: str) -> bytes:
    """ERR_MSG; ``req_id`` is the order id for order errors, -1 for system messages."""
    extra = [""] if version >= 166 else []
    return frame(4, 2, req_id, code, text, *extra)


def current_time(epoch_s: int) -> bytes:
    return frame(49, 1, epoch_s)


@dataclass
class OrderView:
    """What the order messages say about one order (units: shares, currency/share)."""

    order_id: int
    client_id: int
    perm_id: int
    contract: WireContract
    action: str
    total_quantity: float
    order_type: str
    lmt_price: float | None
    tif: str
    account: str
    order_ref: str
    status: str                     # IB's word: PreSubmitted, Submitted, Filled, Cancelled...
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    completed_time: str = ""
    completed_status: str = ""
    margin: dict | None = None      # what-if answer: initMarginBefore ... equityWithLoanAfter
    commission: float | None = None


def order_status(v: OrderView) -> bytes:
    """ORDER_STATUS (no version field from server version 100)."""
    return frame(3, v.order_id, v.status, v.filled, v.total_quantity - v.filled,
                 v.avg_fill_price, v.perm_id, 0, v.last_fill_price, v.client_id, "", 0.0)


_MARGIN_KEYS = ("initMarginBefore", "maintMarginBefore", "equityWithLoanBefore",
                "initMarginChange", "maintMarginChange", "equityWithLoanChange",
                "initMarginAfter", "maintMarginAfter", "equityWithLoanAfter")


def open_order(version: int, v: OrderView, what_if: bool = False) -> bytes:
    """OPEN_ORDER for a plain stock order (layout: ib_async ``Decoder.openOrder``)."""
    c = v.contract
    f: list = [5, v.order_id, *c.head(), c.exchange, c.currency, *c.tail(),
               v.action, v.total_quantity, v.order_type, v.lmt_price, None, v.tif, "",
               v.account, "O", 0, v.order_ref, v.client_id, v.perm_id, False, False, 0.0,
               "", "", "", "", ""]
    if version < 177:
        f.append("")                                  # faProfile
    f += ["", "", "0", None, "", 0, "", -1, 0, None, None, None, None, None, None,
          False, False, False, None, 0, False, False, None, 0, 0, None, 0, "", None]
    f += [False, 0, None, None, None, 0, "", 0, 0, 0, None, None, None, ""]
    f += [False, "", "", False, 0, ""]                # optOut.. notHeld, dnc absent, no algo
    m = v.margin or {}
    f += [False, what_if, v.status, *(m.get(k, "") for k in _MARGIN_KEYS),
          v.commission, None, None, "USD" if v.commission is not None else "", "",
          False, False, 0]
    f += ["", None, None, None, None, None, None, 0, "", "", "", None, False, False, False,
          False]
    if version >= 159:
        f.append("")                                  # duration
    if version >= 160:
        f.append("")                                  # postToAts
    if version >= 162:
        f.append(False)                               # autoCancelParent
    if version >= 170:
        f += [None, None, None, None, None]
    return frame(*f)


def open_order_end() -> bytes:
    return frame(53, 1)


def completed_order(version: int, v: OrderView) -> bytes:
    """COMPLETED_ORDER (layout: ib_async ``Decoder.completedOrder``; it has no order id)."""
    c = v.contract
    f: list = [101, *c.head(), c.exchange, c.currency, *c.tail(), v.action, v.total_quantity,
               v.order_type, v.lmt_price, None, v.tif, "", v.account, "O", 0, v.order_ref,
               v.perm_id, False, False, 0.0, "", "", "", ""]
    if version < 177:
        f.append("")
    f += ["", "", "0", None, "", 0, "", -1, None, None, None, None, None, 0, False, False,
          None, 0, 0, None, 0, "", None]
    f += [False, 0, None, None, "", 0, 0, 0, None, None, "", "", "", "", False, 0, ""]
    f += [False, v.status, False, False, 0]
    f += [None, None, None, False, False, "", v.filled, 0, False, "", False, False, 0,
          v.completed_time, v.completed_status]
    if version >= 170:
        f += [None, None, None, None, None]
    return frame(*f)


def completed_orders_end() -> bytes:
    return frame(102)


@dataclass
class ExecView:
    """One execution (units: shares, currency/share; ``time``: ``YYYYmmdd HH:MM:SS UTC``)."""

    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    contract: WireContract
    time: str
    account: str
    side: str                       # BOT / SLD
    shares: float
    price: float
    cum_qty: float
    avg_price: float
    order_ref: str
    commission: float
    exchange: str = "NYSE"


def exec_details(version: int, req_id: int, e: ExecView) -> bytes:
    """EXECUTION_DATA (``req_id`` -1 for a live fill, the request's id in a reply)."""
    c = e.contract
    f = [11, req_id, e.order_id, *c.head(), c.exchange, c.currency, *c.tail(), e.exec_id,
         e.time, e.account, e.exchange, e.side, e.shares, e.price, e.perm_id, e.client_id, 0,
         e.cum_qty, e.avg_price, e.order_ref, "", None, "", 2]
    if version >= 178:
        f.append(False)                               # pendingPriceRevision
    return frame(*f)


def exec_details_end(req_id: int) -> bytes:
    return frame(55, 1, req_id)


def commission_report(e: ExecView) -> bytes:
    return frame(59, 1, e.exec_id, e.commission, "USD", None, None, None)


def position(account: str, c: WireContract, qty: float, avg_cost: float) -> bytes:
    return frame(61, 3, account, *c.head(), c.exchange, c.currency, *c.tail(), qty, avg_cost)


def position_end() -> bytes:
    return frame(62, 1)


def account_value(key: str, value, currency: str, account: str) -> bytes:
    return frame(6, 2, key, value, currency, account)


def portfolio_value(account: str, c: WireContract, qty: float, price: float, value: float,
                    avg_cost: float, unrealized: float, realized: float) -> bytes:
    return frame(7, 8, c.con_id, c.symbol, c.sec_type, "", 0.0, "", "", c.primary_exchange,
                 c.currency, *c.tail(), qty, price, value, avg_cost, unrealized, realized,
                 account)


def account_time(hhmm: str) -> bytes:
    return frame(8, 1, hhmm)


def account_download_end(account: str) -> bytes:
    return frame(54, 1, account)


def account_summary(req_id: int, account: str, tag: str, value, currency: str) -> bytes:
    return frame(63, 1, req_id, account, tag, value, currency)


def account_summary_end(req_id: int) -> bytes:
    return frame(64, 1, req_id)


def account_update_multi(req_id: int, account: str, key: str, value, currency: str) -> bytes:
    return frame(73, 1, req_id, account, "", key, value, currency)


def account_update_multi_end(req_id: int) -> bytes:
    return frame(74, 1, req_id)
