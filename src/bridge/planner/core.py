"""The planner's pure core on dense arrays (one session, N instruments).

Rules, in order: sells first (their proceeds fund the buys); a sell is whole lots, plus the odd-lot
remainder of the holding when it sells all of that remainder (A-share rule: odd lots are sold in
one go); buys in priority order, rounded down to lots and cut to what the cash can pay for, fees
included. Suspended instruments, limit-up buys and limit-down sells are not traded; shares bought
too recently (T+1) are not sold; an order is at most ``participation`` of the session's volume;
an order below ``min_order_value`` is dropped. Every intended trade that is cut or dropped keeps a
reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bridge.market.rules import MarketRules

#: reason codes for cut or dropped intended trades
CUT_REASONS = {
    "lot": "the intended quantity rounds down to zero lots",
    "cash": "not enough cash to pay for the intended quantity and its fees",
    "suspended": "no tradable bar this session (suspended, halted or not listed)",
    "no_price": "no valid price to trade at",
    "limit": "the price is at its daily limit (limit-up: no buys; limit-down: no sells)",
    "T+1": "shares bought too recently to be sold (T+1 settlement)",
    "participation": "capped at the allowed share of the session's volume",
    "min_value": "the order's value is below the minimum order value",
}


@dataclass(frozen=True)
class PlanPolicy:
    """How orders are shaped beyond the market's own rules.

    Parameters
    ----------
    participation : float or None
        Maximum order quantity as a share of the session's volume (e.g. 0.05); None: no cap.
    min_order_value : float
        Orders worth less (currency) are dropped, reason ``min_value``.
    limit_offset_bps : float or None
        None: market orders. Otherwise limit orders at ``price * (1 + offset)`` for buys and
        ``price * (1 - offset)`` for sells, aligned to the tick (buys down, sells up) with the
        rounding difference recorded.
    """

    participation: float | None = None
    min_order_value: float = 0.0
    limit_offset_bps: float | None = None


@dataclass(frozen=True)
class PlannedOrders:
    """Orders for one session, as parallel arrays (one entry per intended trade).

    Attributes
    ----------
    instrument : ndarray of int
        Index into the universe.
    side : ndarray of int8
        +1 buy, -1 sell.
    quantity : ndarray of float64
        Shares to trade (0 for a dropped trade).
    intended : ndarray of float64
        Shares the target asked for, before rules and cash.
    price : ndarray of float64
        Expected execution price, currency/share.
    value, fee : ndarray of float64
        ``quantity * price`` (to the cent when the rules round) and its fees, currency.
    limit_price : ndarray of float64
        Tick-aligned limit price; NaN for market orders.
    tick_rounding : ndarray of float64
        ``limit_price`` minus the unaligned limit price, currency/share (0 for market orders).
    reason : ndarray of object
        ``""`` when the trade is planned as intended, else a code of :data:`CUT_REASONS`.
    cash_after : float
        Cash once every planned order has executed at ``price``.
    """

    instrument: np.ndarray
    side: np.ndarray
    quantity: np.ndarray
    intended: np.ndarray
    price: np.ndarray
    value: np.ndarray
    fee: np.ndarray
    limit_price: np.ndarray
    tick_rounding: np.ndarray
    reason: np.ndarray
    cash_after: float

    def __len__(self) -> int:
        return len(self.instrument)

    @classmethod
    def from_rows(cls, rows: list[tuple], cash_after: float) -> PlannedOrders:
        """From the rows of :func:`plan_rows`."""
        if not rows:
            e = np.array([], dtype=np.float64)
            return cls(np.array([], dtype=np.int64), np.array([], dtype=np.int8), e, e, e, e, e,
                       e, e, np.array([], dtype=object), float(cash_after))
        c = list(zip(*rows, strict=True))
        f64 = [np.array(c[k], dtype=np.float64) for k in range(2, 9)]
        return cls(np.array(c[0], dtype=np.int64), np.array(c[1], dtype=np.int8), *f64,
                   reason=np.array(c[9], dtype=object), cash_after=float(cash_after))


def align_to_tick(price, tick_size: float, side: int) -> tuple[float, float]:
    """Put a limit price on the tick grid, never against the trader.

    Buys (side +1) round down, sells (-1) round up: a limit order never pays more, or receives
    less, than asked.

    Returns
    -------
    (aligned, rounding) : (float, float)
        The aligned price and ``aligned - price`` (currency/share).
    """
    ticks = price / tick_size
    n = math.floor(ticks + 1e-9) if side > 0 else math.ceil(ticks - 1e-9)
    aligned = round(n * tick_size, 10)
    return aligned, aligned - float(price)


def _sell_round(qty: float, holding: float, rules: MarketRules) -> float:
    """Whole lots, plus the holding's odd remainder if the order covers all of it."""
    if rules.fractional:
        return max(0.0, qty)
    unit = rules.trade_unit
    lots = math.floor(qty / unit + 1e-9) * unit
    odd = holding % unit
    if odd and qty >= odd - 1e-9:
        return max(lots, odd + math.floor((qty - odd) / unit + 1e-9) * unit)
    return lots


def _flag(arr, i) -> bool:
    return arr is not None and bool(arr[i])


def _sides(current, target: dict[int, float], buy_priority) -> tuple[list[int], list[int]]:
    """Instruments to sell (target below a positive holding), ascending, and to buy (target
    above the holding): those of ``buy_priority`` first, in its order, then the others ascending.
    """
    sells, wants = [], []
    for i in sorted(target):
        d = target[i] - current[i]
        if d < 0 and current[i] > 0:
            sells.append(i)
        elif d > 0:
            wants.append(i)
    if buy_priority is None:
        return sells, wants
    wanted = set(wants)
    first = [i for i in buy_priority if i in wanted]
    chosen = set(first)
    return sells, first + [i for i in wants if i not in chosen]


def plan_rows(current, target: dict[int, float], price, tradable, cash: float,
              rules: MarketRules, buy_priority=None, *, volume=None, limit_up=None,
              limit_down=None, sellable=None, policy: PlanPolicy = PlanPolicy()
              ) -> tuple[list[tuple], float]:
    """:func:`plan_orders` on sequences indexed per instrument (Python lists in the per-session
    loops, where they cost less than NumPy calls on a few dozen instruments).

    ``target`` maps the instruments whose target differs from ``current`` to their target;
    only they and their orders are visited. ``price`` (and the optional sequences) need only be
    indexable by those instruments.

    Returns
    -------
    rows : list of tuple
        One per intended trade: (instrument, side, quantity, intended, price, value, fee,
        limit_price, tick_rounding, reason), the fields of :class:`PlannedOrders`.
    cash_after : float
    """
    sells, buys = _sides(current, target, buy_priority)
    part = policy.participation
    rows: list[tuple] = []

    def bounded(i, intended, bounds):
        """The smallest applicable bound on ``intended`` and the reason it binds."""
        qty, why = intended, ""
        for limit, reason in bounds:
            if limit is not None and limit < qty - 1e-9:
                qty, why = max(limit, 0.0), reason
        return qty, why

    def add(i, side, qty, intended, reason):
        nonlocal cash
        px = price[i]
        lim, rnd = math.nan, 0.0
        if policy.limit_offset_bps is not None and px > 0:
            lim, rnd = align_to_tick(px * (1 + side * policy.limit_offset_bps / 1e4),
                                     rules.tick_size, side)
        value = float(rules.money(qty * px)) if qty else 0.0
        if qty and value < policy.min_order_value:
            qty, value, reason = 0.0, 0.0, "min_value"
        fee = rules.fee(value, side < 0)
        if side < 0 and cash + value - fee < 0:  # proceeds below a minimum fee cash cannot cover
            qty, value, fee, reason = 0.0, 0.0, 0.0, "cash"
        cash += value - fee if side < 0 else -(value + fee)
        rows.append((i, side, float(qty), intended, px, value, fee, lim, rnd, reason))

    for i in sells:
        intended = current[i] if target[i] <= 0 else -(target[i] - current[i])
        if not tradable[i]:
            add(i, -1, 0.0, intended, "suspended")
            continue
        if not price[i] > 0:
            add(i, -1, 0.0, intended, "no_price")
            continue
        if _flag(limit_down, i):
            add(i, -1, 0.0, intended, "limit")
            continue
        raw, why = bounded(i, intended, [
            (None if sellable is None else sellable[i], "T+1"),
            (None if part is None or volume is None else part * np.nan_to_num(volume[i]),
             "participation")])
        qty = _sell_round(raw, current[i], rules)
        add(i, -1, qty, intended, why or ("lot" if qty == 0 else ""))

    for i in buys:
        intended = target[i] - current[i]
        if not tradable[i]:
            add(i, 1, 0.0, intended, "suspended")
            continue
        if not price[i] > 0:
            add(i, 1, 0.0, intended, "no_price")
            continue
        if _flag(limit_up, i):
            add(i, 1, 0.0, intended, "limit")
            continue
        raw, why = bounded(i, intended, [
            (None if part is None or volume is None else part * np.nan_to_num(volume[i]),
             "participation")])
        qty = rules.round_quantity(raw)
        why = why or ("lot" if qty == 0 else "")
        if qty > 0:
            afford = rules.max_affordable(cash, price[i])
            if afford < qty:
                qty, why = afford, "cash"
        add(i, 1, qty, intended, why)

    return rows, cash


def plan_orders(current: np.ndarray, target: np.ndarray, price: np.ndarray,
                tradable: np.ndarray, cash: float, rules: MarketRules,
                buy_priority: np.ndarray | None = None, *, volume: np.ndarray | None = None,
                limit_up: np.ndarray | None = None, limit_down: np.ndarray | None = None,
                sellable: np.ndarray | None = None, policy: PlanPolicy = PlanPolicy()
                ) -> PlannedOrders:
    """Orders that take ``current`` towards ``target`` within the market's rules and the cash.

    Parameters
    ----------
    current : ndarray of float64, shape (N,)
        Held shares.
    target : ndarray of float64, shape (N,)
        Target shares (fractional allowed; rounded down to lots). A target of 0 sells the
        whole holding, odd lots included.
    price : ndarray of float64, shape (N,)
        Expected execution price, currency/share (NaN where there is none).
    tradable : ndarray of bool, shape (N,)
        False: suspended / no bar this session.
    cash : float
        Cash available before the session's trades, currency.
    rules : MarketRules
    buy_priority : ndarray of int, optional
        Instrument indices in the order buys should get cash (e.g. by score); other buys follow
        in index order.
    volume : ndarray of float64, shape (N,), optional
        The session's (expected) volume in shares, for ``policy.participation``.
    limit_up, limit_down : ndarray of bool, shape (N,), optional
        The price is at its daily upper (no buys) / lower (no sells) limit.
    sellable : ndarray of float64, shape (N,), optional
        Shares that may be sold this session (T+1: held minus bought too recently);
        default ``current``.
    policy : PlanPolicy

    Returns
    -------
    PlannedOrders
        Sells first, then buys. ``cash_after >= 0`` whenever ``cash >= 0``.
    """
    current, target = np.asarray(current), np.asarray(target)
    changed = np.flatnonzero(target != current)
    rows, cash_after = plan_rows(
        current.tolist(), dict(zip(changed.tolist(), target[changed].tolist(), strict=True)),
        _as_list(price), _as_list(tradable), cash, rules,
        None if buy_priority is None else np.asarray(buy_priority, dtype=np.int64).tolist(),
        volume=_as_list(volume), limit_up=_as_list(limit_up), limit_down=_as_list(limit_down),
        sellable=_as_list(sellable), policy=policy)
    return PlannedOrders.from_rows(rows, cash_after)


def _as_list(arr) -> list | None:
    return None if arr is None else np.asarray(arr).tolist()
