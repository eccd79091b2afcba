"""The order life cycle: statuses, the one transition table, fills and the local order view.

The table :data:`TRANSITIONS` is the only place that says what an order can do; every status
change goes through :func:`check_transition`, which raises :class:`IllegalTransition`. The shape
follows NautilusTrader's ``_ORDER_STATE_TABLE`` (``nautilus_trader/model/orders/base.pyx``): one
set of ``(from, to)`` pairs, each odd pair with the real-world reason it exists.

Numbers: quantities in shares (fractional allowed), prices in quote currency per share, money in
quote currency, times in epoch milliseconds (UTC). Sums over fills are exact: each float is read as
the decimal it prints as (``repr``), which is how brokers report quantities and prices, and summed
as a :class:`decimal.Decimal` in a context that never rounds (sums and products of decimals are
decimals); so ``0.1 + 0.2`` shares fill an order of ``0.3`` exactly and the average price (the
exact quotient, rounded once to a float) does not drift with the number of fills.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from bridge.errors import BridgeError, ConfigError

log = logging.getLogger("bridge.execution")

SIDES = ("buy", "sell")
ORDER_TYPES = ("market", "limit")
TIME_IN_FORCE = ("day", "gtc", "ioc", "opg", "cls")


class OrderStatus(StrEnum):
    """Where an order is in its life cycle (values are the upper-case names).

    ``DENIED`` is a refusal by our own risk engine (the order is never sent); ``REJECTED`` is a
    refusal by the broker or venue. ``SUBMITTED`` means sent and not yet acknowledged, and is also
    the status of a submit whose outcome is unknown (timeout, HTTP 5xx): the order stays in flight
    until a broker query resolves it, never by a blind re-send.
    """

    INITIALIZED = "INITIALIZED"
    DENIED = "DENIED"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    PENDING_UPDATE = "PENDING_UPDATE"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


S = OrderStatus

# The ONE table: (from, to, why). An empty "why" is the ordinary life cycle; every other pair says
# which real-world message ordering makes it necessary. The reasons are data, not comments, so
# docs/executor_contract.md renders them and cannot drift from the code.
_TABLE: tuple[tuple[OrderStatus, OrderStatus, str], ...] = (
    (S.INITIALIZED, S.DENIED, "refused by our risk engine: never sent, never emits SUBMITTED"),
    (S.INITIALIZED, S.SUBMITTED, ""),
    (S.SUBMITTED, S.ACCEPTED, ""),
    (S.SUBMITTED, S.REJECTED,
     "refused by the venue; also how reconciliation closes an unknown-outcome submit the venue has "
     "no record of (reason `not_found`), instead of a blind re-send"),
    (S.SUBMITTED, S.PARTIALLY_FILLED, "fast fill: the fill report overtook the ack"),
    (S.SUBMITTED, S.FILLED, "fast fill: a marketable order filled before its ack arrived"),
    (S.SUBMITTED, S.CANCELED, "IOC with nothing filled, or canceled by the venue before any ack"),
    (S.SUBMITTED, S.EXPIRED,
     "opg/cls or day order that missed its auction or session before any ack"),
    (S.SUBMITTED, S.PENDING_CANCEL,
     "cancel before the ack (Alpaca and IB accept it); its answer also resolves an unknown "
     "outcome"),
    (S.ACCEPTED, S.PARTIALLY_FILLED, ""),
    (S.ACCEPTED, S.FILLED, ""),
    (S.ACCEPTED, S.PENDING_CANCEL, ""),
    (S.ACCEPTED, S.PENDING_UPDATE, ""),
    (S.ACCEPTED, S.CANCELED, "canceled without our request: broker UI, venue halt, risk desk"),
    (S.ACCEPTED, S.EXPIRED, ""),
    (S.ACCEPTED, S.REJECTED,
     "venues that ack first and check later (IB shows Submitted, then the exchange refuses)"),
    (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED,
     "each further partial fill; the only same-status pair in the table"),
    (S.PARTIALLY_FILLED, S.FILLED, ""),
    (S.PARTIALLY_FILLED, S.PENDING_CANCEL, ""),
    (S.PARTIALLY_FILLED, S.PENDING_UPDATE, ""),
    (S.PARTIALLY_FILLED, S.CANCELED, "the rest is canceled; the filled part stands"),
    (S.PARTIALLY_FILLED, S.EXPIRED, "a day order ends partly filled; the filled part stands"),
    (S.PENDING_CANCEL, S.CANCELED, ""),
    (S.PENDING_CANCEL, S.ACCEPTED,
     "cancel refused (too late, venue error) with nothing filled: the order still works"),
    (S.PENDING_CANCEL, S.PARTIALLY_FILLED,
     "a fill that crossed our cancel request, or a refused cancel after fills: the order still "
     "works"),
    (S.PENDING_CANCEL, S.FILLED, "filled before the cancel reached the venue"),
    (S.PENDING_CANCEL, S.EXPIRED, "the session ended while the cancel was in flight"),
    (S.PENDING_CANCEL, S.REJECTED,
     "cancel sent before the ack, and the venue refused the order itself"),
    (S.PENDING_UPDATE, S.ACCEPTED,
     "amend done, or refused with nothing filled: the order works on"),
    (S.PENDING_UPDATE, S.PARTIALLY_FILLED,
     "amend done or refused after fills, or a fill that crossed the amend request"),
    (S.PENDING_UPDATE, S.FILLED, "filled before the amend reached the venue"),
    (S.PENDING_UPDATE, S.CANCELED,
     "canceled instead of amended (Alpaca's replace cancels the old order), or a venue halt"),
    (S.PENDING_UPDATE, S.REJECTED, "some venues refuse the whole order on a bad amend"),
    (S.PENDING_UPDATE, S.EXPIRED, "the session ended while the amend was in flight"),
    (S.PENDING_UPDATE, S.PENDING_CANCEL,
     "cancel while an amend is in flight: the cancel wins whatever the amend does"),
    # The late-fill rule. NautilusTrader allows CANCELED -> PARTIALLY_FILLED and -> FILLED as a
    # "real world possibility". We keep the FILLED half only: a fill that completes the order tells
    # the truth about the shares, which matters more to positions than the cancel ack did. A late
    # *partial* fill is recorded by Order.apply_fill without a status change (and flagged as a
    # LateFillAfterTerminal anomaly): reopening the order as PARTIALLY_FILLED would make it look
    # open forever, because after the cancel ack the venue sends nothing that could close it again.
    (S.CANCELED, S.FILLED,
     "late fill: the venue traded the rest before it processed our cancel and the reports crossed; "
     "a late partial fill is recorded without a status change (`Order.apply_fill`)"),
    (S.EXPIRED, S.FILLED,
     "late fill, as for CANCELED (e.g. a closing-auction fill reported after the expiry notice)"),
)

#: every allowed ``(from, to)`` status pair; anything else raises :class:`IllegalTransition`
TRANSITIONS: frozenset[tuple[OrderStatus, OrderStatus]] = frozenset((a, b) for a, b, _ in _TABLE)
#: why each odd pair exists, keyed like :data:`TRANSITIONS` (ordinary pairs have no entry)
TRANSITION_NOTES: dict[tuple[OrderStatus, OrderStatus], str] = {
    (a, b): why for a, b, why in _TABLE if why
}
#: statuses after which the venue will not work the order again (see the late-fill rule)
TERMINAL: frozenset[OrderStatus] = frozenset(
    {S.DENIED, S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED}
)
#: sent and waiting for the venue's answer to a request (submit, cancel, amend)
INFLIGHT: frozenset[OrderStatus] = frozenset({S.SUBMITTED, S.PENDING_CANCEL, S.PENDING_UPDATE})
#: sent and not terminal: the order may trade. SUBMITTED counts, since an unknown outcome may be
#: working at the venue (unlike NautilusTrader's ``is_open``, which excludes it)
OPEN: frozenset[OrderStatus] = frozenset(set(OrderStatus) - TERMINAL - {S.INITIALIZED})

# A late fill on these is a known race (reports crossed a cancel or an expiry): WARNING. On DENIED
# or REJECTED it should not happen at all: ERROR, so that reconciliation looks at it.
_LATE_FILL_RACES = frozenset({S.CANCELED, S.EXPIRED})


class IllegalTransition(BridgeError):
    """A status change that :data:`TRANSITIONS` does not allow.

    Attributes
    ----------
    from_status : OrderStatus
        The order's current status.
    to_status : OrderStatus
        The status asked for.
    client_order_id : str
        The order concerned ("" when not known).
    """

    def __init__(self, from_status: OrderStatus, to_status: OrderStatus,
                 client_order_id: str = "") -> None:
        self.from_status = from_status
        self.to_status = to_status
        self.client_order_id = client_order_id
        who = f" (client_order_id={client_order_id})" if client_order_id else ""
        super().__init__(f"[status: illegal_transition] {from_status} -> {to_status}{who} "
                         f"is not in the order transition table")


class FillError(BridgeError, ValueError):
    """A fill that cannot belong to the order, or a malformed fill.

    Attributes
    ----------
    field : str
        The fill field at fault, e.g. ``"instrument"`` or ``"quantity"``.
    reason : str
        Machine-readable reason: ``"mismatch"``, ``"overfill"``, ``"invalid"``.
    fill : Fill or None
        The refused fill, kept so the caller can route it to reconciliation (never dropped).
    """

    def __init__(self, field: str, reason: str, message: str, fill: Fill | None = None) -> None:
        self.field = field
        self.reason = reason
        self.fill = fill
        super().__init__(f"[{field}: {reason}] {message}")


class OverfillError(FillError):
    """The fill would take the filled quantity past the order quantity (shares)."""


def check_transition(current: OrderStatus, new: OrderStatus, client_order_id: str = "") -> None:
    """Raise unless ``(current, new)`` is in :data:`TRANSITIONS`.

    Parameters
    ----------
    current, new : OrderStatus or str
        The status now and the status asked for (strings are read as :class:`OrderStatus`).
    client_order_id : str, default ""
        Named in the error and the log line.

    Raises
    ------
    IllegalTransition
        The pair is not in the table; also logged at ERROR on ``bridge.execution``, because an
        illegal transition means our view of the order and the venue's have come apart.
    """
    if current.__class__ is not OrderStatus or new.__class__ is not OrderStatus:
        current, new = OrderStatus(current), OrderStatus(new)
    if (current, new) not in TRANSITIONS:
        err = IllegalTransition(current, new, client_order_id)
        log.error("%s", err)
        raise err


# json.dumps(..., ensure_ascii=False, separators=(",", ":")) from one encoder instance
_coid_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def client_order_id(snapshot_id: str, instrument: str, side: str, quantity: float,
                    intent_ts_ms: int) -> str:
    """The deterministic client order id of one order intent.

    Re-planning the same decision gives the same id, so a re-sent order is recognised by the
    broker as a duplicate (Alpaca refuses a reused ``client_order_id``) and by our store: the id is
    the idempotency key. The price is left out on purpose: tick rounding or an amend changes it,
    not the intent.

    Parameters
    ----------
    snapshot_id : str
        The DecisionSnapshot id the order comes from.
    instrument : str
        The instrument code.
    side : {"buy", "sell"}
    quantity : float
        Shares, > 0. Formatted with ``repr(float(quantity))``, so ``100`` and ``100.0`` agree.
    intent_ts_ms : int
        When the order was intended (epoch ms, UTC).

    Returns
    -------
    str
        ``"b-"`` + the first 30 hex characters of the SHA-256 of the canonical string, the JSON
        array ``["bridge.coid.v1", snapshot_id, instrument, side, repr(quantity), intent_ts_ms]``
        with ``separators=(",", ":")``: 32 characters (Alpaca allows 128, IB's orderRef is free
        text), 120 bits, so collisions are not a practical concern.

    Raises
    ------
    ConfigError
        ``side`` not buy/sell, ``quantity`` not a finite positive number, ``intent_ts_ms`` not int.
    """
    if side not in SIDES:
        raise ConfigError(f"side must be 'buy' or 'sell', got {side!r}")
    q = float(quantity)
    if not (math.isfinite(q) and q > 0):
        raise ConfigError(f"quantity must be a finite number of shares > 0, got {quantity!r}")
    if isinstance(intent_ts_ms, bool) or not isinstance(intent_ts_ms, int):
        raise ConfigError(f"intent_ts_ms must be an int (epoch ms), got {intent_ts_ms!r}")
    canonical = _coid_json(
        ["bridge.coid.v1", str(snapshot_id), str(instrument), side, repr(q), intent_ts_ms])
    return "b-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:30]


# one instance: json.dumps with options builds an encoder per call
_RECORD_ENCODER = json.JSONEncoder(sort_keys=True, default=str)


def record_json(obj: Any) -> str:
    """The JSON text of a raw payload or an audit detail, as stored in the execution tables.

    Parameters
    ----------
    obj : dict or other JSON-like value
        Values JSON cannot carry are written as their ``str()``.

    Returns
    -------
    str
        ``json.dumps(obj, sort_keys=True, default=str)``.
    """
    return _RECORD_ENCODER.encode(obj)


# Exact arithmetic on the decimals of _exact: a precision no sum or product of floats' decimals
# reaches (a few hundred digits at most), and Inexact trapped, so nothing is ever rounded. Use
# its methods (_EXACT.add, .subtract, .multiply): Decimal operators round to the thread's context.
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN,
                         traps=[decimal.Inexact, decimal.Overflow, decimal.InvalidOperation,
                                decimal.DivisionByZero])
_ZERO = Decimal(0)


def _exact(x: float) -> Decimal:
    # The decimal the float prints as: brokers report decimals, and repr round-trips exactly.
    return Decimal(repr(float(x)))


def _float(a: Decimal, b: Decimal | None = None) -> float:
    """``a`` (or ``a / b``) exactly, rounded once to the nearest float.

    As ``float(Fraction)`` does it: int / int is correctly rounded, and raises OverflowError
    beyond the float range.
    """
    na, da = a.as_integer_ratio()
    if b is None:
        return na / da
    nb, db = b.as_integer_ratio()
    return (na * db) / (da * nb)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Fill:
    """One execution report: an immutable fact from the venue.

    Parameters
    ----------
    exec_id : str
        The venue's execution id, unique: the dedup key (a report seen twice is applied once).
    client_order_id : str
        Our id of the order it fills.
    broker_order_id : str or None
        The broker's id of the order (Alpaca order id, IB orderId / permId), if reported.
    instrument : str
    side : {"buy", "sell"}
    quantity : float
        Shares in this execution, > 0.
    price : float
        Execution price, quote currency per share, > 0.
    commission : float
        Commission charged for this execution, currency (negative for a rebate).
    fees : float
        Other fees (exchange, regulatory, stamp duty), currency.
    ts_ms : int
        Execution time at the venue, epoch ms (UTC).
    currency : str, default "USD"
    exchange : str, default ""
        Where it executed (MIC or the broker's venue code), if reported.
    raw : dict, default {}
        The broker's payload, JSON-serialisable; copied, and not part of equality.

    Raises
    ------
    FillError
        A field is malformed (reason ``invalid``).
    """

    exec_id: str
    client_order_id: str
    broker_order_id: str | None
    instrument: str
    side: str
    quantity: float
    price: float
    commission: float
    fees: float
    ts_ms: int
    currency: str = "USD"
    exchange: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> FillError:
            return FillError(name, "invalid", f"{why}, got {getattr(self, name)!r}")

        if not isinstance(self.exec_id, str) or not self.exec_id:
            raise bad("exec_id", "exec_id must be a non-empty string (it is the dedup key)")
        if not isinstance(self.client_order_id, str) or not self.client_order_id:
            raise bad("client_order_id", "client_order_id must be a non-empty string")
        if self.side not in SIDES:
            raise bad("side", "side must be 'buy' or 'sell'")
        if not (_finite(self.quantity) and self.quantity > 0):
            raise bad("quantity", "quantity must be a finite number of shares > 0")
        if not (_finite(self.price) and self.price > 0):
            raise bad("price", "price must be a finite price > 0 (currency/share)")
        for name in ("commission", "fees"):
            if not _finite(getattr(self, name)):
                raise bad(name, f"{name} must be a finite amount of currency")
        if isinstance(self.ts_ms, bool) or not isinstance(self.ts_ms, int):
            raise bad("ts_ms", "ts_ms must be an int (epoch ms)")
        # A private copy: the caller's dict may be reused for the next message.
        object.__setattr__(self, "raw", dict(self.raw))

    def to_record(self) -> dict[str, Any]:
        """One row of a fills table; ``raw`` as canonical JSON text (sorted keys)."""
        return {
            "exec_id": self.exec_id, "client_order_id": self.client_order_id,
            "broker_order_id": self.broker_order_id, "instrument": self.instrument,
            "side": self.side, "quantity": float(self.quantity), "price": float(self.price),
            "commission": float(self.commission), "fees": float(self.fees), "ts_ms": self.ts_ms,
            "currency": self.currency, "exchange": self.exchange,
            "raw": record_json(self.raw),
        }


@dataclass(frozen=True)
class LateFillAfterTerminal:
    """Anomaly record (not an exception): a fill that arrived after the order was terminal.

    The fill is applied (quantities, average price, commission), because the shares did move;
    the record says the status history and the fills disagree, for reconciliation and the audit.

    Attributes
    ----------
    client_order_id, exec_id : str
    status : OrderStatus
        The terminal status the order had when the fill arrived.
    new_status : OrderStatus
        The status after it: FILLED when the fill completed a CANCELED/EXPIRED order, otherwise
        unchanged.
    quantity : float
        Shares in the late fill.
    ts_ms : int
        The fill's execution time, epoch ms.
    """

    client_order_id: str
    exec_id: str
    status: OrderStatus
    new_status: OrderStatus
    quantity: float
    ts_ms: int


@dataclass
class Order:
    """The local view of one order: what we asked for and what the venue has told us since.

    Mutable, changed only by :meth:`transition` and :meth:`apply_fill`. ``fills`` is the source of
    truth for the execution figures: ``filled_quantity``, ``avg_fill_price``, ``commission`` and
    ``fees`` are recomputed from it (exactly) after every fill. An order rebuilt from storage must
    be given its fills.

    Parameters
    ----------
    client_order_id : str
        Our id (see :func:`client_order_id`), the idempotency key.
    instrument : str
    side : {"buy", "sell"}
    quantity : float
        Shares ordered, > 0.
    order_type : {"market", "limit"}
    limit_price : float or None
        Currency per share; required for limit orders, None for market orders.
    time_in_force : {"day", "gtc", "ioc", "opg", "cls"}
    created_ts_ms : int
        When the order was created (epoch ms).
    decision_snapshot_id : str
        The DecisionSnapshot the order comes from.
    strategy_id : str
    status : OrderStatus, default INITIALIZED
    broker_order_id : str or None
        Set from the ack or the first fill that names it.
    filled_quantity : float
        Shares filled so far (derived from ``fills``).
    avg_fill_price : float
        Quantity-weighted average fill price, currency per share; 0.0 before any fill.
    commission, fees : float
        Sums over fills, currency.
    reject_reason, deny_reason : str
        Set from the note of the transition to REJECTED / DENIED.
    last_status_ts_ms : int or None
        Time of the last status change (epoch ms); defaults to ``created_ts_ms``.
    fills : dict of str to Fill
        Keyed by ``exec_id``.
    history : list of (int, OrderStatus, OrderStatus, str)
        ``(ts_ms, from, to, note)`` per status change and per late fill.
    anomalies : list of LateFillAfterTerminal
        Late fills on terminal orders (see :meth:`apply_fill`).

    Raises
    ------
    ConfigError
        A field is out of its domain (side, quantity, order type, limit price, time in force), or
        ``filled_quantity`` is given without the fills it comes from.
    """

    client_order_id: str
    instrument: str
    side: str
    quantity: float
    order_type: str
    limit_price: float | None
    time_in_force: str
    created_ts_ms: int
    decision_snapshot_id: str
    strategy_id: str
    status: OrderStatus = OrderStatus.INITIALIZED
    broker_order_id: str | None = None
    filled_quantity: float = 0.0
    avg_fill_price: float = 0.0
    commission: float = 0.0
    fees: float = 0.0
    reject_reason: str = ""
    deny_reason: str = ""
    last_status_ts_ms: int | None = None
    fills: dict[str, Fill] = field(default_factory=dict)
    history: list[tuple[int, OrderStatus, OrderStatus, str]] = field(default_factory=list)
    anomalies: list[LateFillAfterTerminal] = field(default_factory=list)
    # exact running sums over fills (quantity, notional, commission, fees): O(1) per fill
    _sums: tuple = field(default=(_ZERO,) * 4, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ConfigError(f"side must be 'buy' or 'sell', got {self.side!r}")
        if not (_finite(self.quantity) and self.quantity > 0):
            raise ConfigError(
                f"quantity must be a finite number of shares > 0, got {self.quantity!r}")
        if self.order_type not in ORDER_TYPES:
            raise ConfigError(f"order_type must be one of {ORDER_TYPES}, got {self.order_type!r}")
        if self.time_in_force not in TIME_IN_FORCE:
            raise ConfigError(
                f"time_in_force must be one of {TIME_IN_FORCE}, got {self.time_in_force!r}")
        if self.order_type == "limit":
            if not (_finite(self.limit_price) and self.limit_price > 0):
                raise ConfigError(f"a limit order needs limit_price > 0, got {self.limit_price!r}")
        elif self.limit_price is not None:
            raise ConfigError(f"a market order takes no limit_price, got {self.limit_price!r}")
        self.status = OrderStatus(self.status)
        if self.last_status_ts_ms is None:
            self.last_status_ts_ms = self.created_ts_ms
        if self.fills:
            for f in self.fills.values():
                self._add(f)
            self._recompute()
        elif self.filled_quantity:
            raise ConfigError("filled_quantity must come from fills: pass the order's fills")

    # -- status --------------------------------------------------------------------------------

    def transition(self, new: OrderStatus, ts_ms: int, note: str = "") -> None:
        """Move to ``new`` if the table allows it, and record it in ``history``.

        Parameters
        ----------
        new : OrderStatus or str
        ts_ms : int
            When the venue (or our risk engine) said so, epoch ms.
        note : str, default ""
            Free text; becomes ``deny_reason`` / ``reject_reason`` on DENIED / REJECTED.

        Raises
        ------
        IllegalTransition
            Not in :data:`TRANSITIONS` (logged at ERROR). A same-status "change" is illegal too,
            except PARTIALLY_FILLED -> PARTIALLY_FILLED (one more partial fill).
        """
        new = OrderStatus(new)
        check_transition(self.status, new, self.client_order_id)
        self._set_status(new, ts_ms, note)

    def _set_status(self, new: OrderStatus, ts_ms: int, note: str) -> None:
        self.history.append((ts_ms, self.status, new, note))
        self.status = new
        self.last_status_ts_ms = ts_ms
        if new is S.DENIED:
            self.deny_reason = note
        elif new is S.REJECTED:
            self.reject_reason = note

    # -- fills ---------------------------------------------------------------------------------

    def apply_fill(self, fill: Fill) -> bool:
        """Apply one execution report.

        Parameters
        ----------
        fill : Fill

        Returns
        -------
        bool
            False if ``fill.exec_id`` was already applied (nothing changes: reports are delivered
            at least once); True when applied.

        Raises
        ------
        FillError
            ``client_order_id``, ``instrument`` or ``side`` differ from the order's
            (reason ``mismatch``). Nothing changes.
        OverfillError
            The filled quantity would exceed the order quantity. Nothing changes; the error
            carries the fill for reconciliation.
        IllegalTransition
            The order was never sent (INITIALIZED). Nothing changes.

        Notes
        -----
        The status becomes FILLED when the filled quantity reaches the order quantity (exactly,
        see the module docstring), PARTIALLY_FILLED otherwise, through :data:`TRANSITIONS`.

        Late-fill rule: a fill on a terminal order other than FILLED (CANCELED, EXPIRED, and the
        should-not-happen REJECTED, DENIED) is never lost: it is applied to the quantities and
        prices, the status becomes FILLED only when the fill completes the order and the table
        allows it (CANCELED/EXPIRED -> FILLED), otherwise it stays, and a
        :class:`LateFillAfterTerminal` is appended to ``anomalies`` (logged at WARNING for
        CANCELED/EXPIRED, a known race, and ERROR for REJECTED/DENIED).
        """
        seen = self.fills.get(fill.exec_id)
        if seen is not None:
            if seen != fill:
                # Same id, other content: a correction must come with its own exec_id (IB's
                # corrections do); keep the first and say so rather than double count.
                log.warning("duplicate exec_id %s on %s with different content ignored: %r",
                            fill.exec_id, self.client_order_id, fill)
            return False
        for name in ("client_order_id", "instrument", "side"):
            mine, theirs = getattr(self, name), getattr(fill, name)
            if mine != theirs:
                raise FillError(name, "mismatch",
                                f"fill {fill.exec_id} has {name}={theirs!r}, order "
                                f"{self.client_order_id} has {mine!r}", fill)
        filled = _EXACT.add(self._filled_exact(), _exact(fill.quantity))
        ordered = _exact(self.quantity)
        if filled > ordered:
            raise OverfillError(
                "quantity", "overfill",
                f"fill {fill.exec_id} of {fill.quantity!r} shares would take order "
                f"{self.client_order_id} to {_float(filled)!r} of {self.quantity!r} shares", fill)
        target = S.FILLED if filled == ordered else S.PARTIALLY_FILLED
        late = self.status in TERMINAL
        if not late:
            check_transition(self.status, target, self.client_order_id)

        self.fills[fill.exec_id] = fill
        self._add(fill)
        if self.broker_order_id is None and fill.broker_order_id:
            self.broker_order_id = fill.broker_order_id
        self._recompute()
        if not late:
            self._set_status(target, fill.ts_ms, f"fill {fill.exec_id}")
            return True

        before = self.status
        after = target if (before, target) in TRANSITIONS else before
        note = f"late fill {fill.exec_id} after {before}"
        if after is not before:
            self._set_status(after, fill.ts_ms, note)
        else:
            self.history.append((fill.ts_ms, before, before, note))
        self.anomalies.append(LateFillAfterTerminal(
            self.client_order_id, fill.exec_id, before, after, float(fill.quantity), fill.ts_ms))
        level = logging.WARNING if before in _LATE_FILL_RACES else logging.ERROR
        log.log(level, "late fill %s (%r shares) on %s order %s, status now %s",
                fill.exec_id, fill.quantity, before, self.client_order_id, after)
        return True

    def _filled_exact(self) -> Decimal:
        return self._sums[0]

    def _add(self, f: Fill) -> None:
        q = _exact(f.quantity)
        add, s = _EXACT.add, self._sums
        self._sums = (add(s[0], q), add(s[1], _EXACT.multiply(q, _exact(f.price))),
                      add(s[2], _exact(f.commission)), add(s[3], _exact(f.fees)))

    def _recompute(self) -> None:
        qty, notional, commission, fees = self._sums
        self.filled_quantity = _float(qty)
        self.avg_fill_price = _float(notional, qty) if qty else 0.0
        self.commission = _float(commission)
        self.fees = _float(fees)

    # -- views ---------------------------------------------------------------------------------

    @property
    def remaining(self) -> float:
        """Shares still to fill, ``quantity - filled_quantity`` computed exactly (leaves qty)."""
        if not self.fills:
            return float(self.quantity)
        return _float(_EXACT.subtract(_exact(self.quantity), self._filled_exact()))

    @property
    def is_terminal(self) -> bool:
        """True in DENIED, FILLED, CANCELED, REJECTED, EXPIRED (only a late fill may follow)."""
        return self.status in TERMINAL

    @property
    def is_open(self) -> bool:
        """True if sent and not terminal: the order may trade (SUBMITTED included, see OPEN)."""
        return self.status in OPEN

    @property
    def is_inflight(self) -> bool:
        """True while a request (submit, cancel, amend) waits for the venue's answer."""
        return self.status in INFLIGHT

    def to_record(self) -> dict[str, Any]:
        """One row of an orders table: the scalar fields, status as its string.

        Fills go to their own table (:meth:`Fill.to_record`); ``history`` and ``anomalies`` are
        events for the audit log. ``n_fills`` and ``n_late_fills`` count them.
        """
        return {
            "client_order_id": self.client_order_id, "instrument": self.instrument,
            "side": self.side, "quantity": float(self.quantity), "order_type": self.order_type,
            "limit_price": None if self.limit_price is None else float(self.limit_price),
            "time_in_force": self.time_in_force, "created_ts_ms": self.created_ts_ms,
            "decision_snapshot_id": self.decision_snapshot_id, "strategy_id": self.strategy_id,
            "status": str(self.status), "broker_order_id": self.broker_order_id,
            "filled_quantity": self.filled_quantity, "remaining": self.remaining,
            "avg_fill_price": self.avg_fill_price, "commission": self.commission,
            "fees": self.fees, "reject_reason": self.reject_reason,
            "deny_reason": self.deny_reason, "last_status_ts_ms": self.last_status_ts_ms,
            "n_fills": len(self.fills), "n_late_fills": len(self.anomalies),
        }


def transition_table_markdown() -> str:
    """:data:`TRANSITIONS` as a markdown table (from, to, why), in the table's own order."""
    lines = ["| from | to | why |", "|---|---|---|"]
    for a, b, why in _TABLE:
        lines.append(f"| {a} | {b} | {why} |")
    terminal = ", ".join(s for s in OrderStatus if s in TERMINAL)
    lines += ["", f"Terminal: {terminal}. Every pair not listed raises `IllegalTransition`."]
    return "\n".join(lines) + "\n"
