"""The planner's pure core on dense arrays (one session, N instruments).

Rules, in order: sells first (their proceeds fund the buys), each sell either the whole holding
or a whole number of lots; buys in priority order, rounded down to lots and cut to what the cash
can pay for, fees included. Every intended trade that is cut or dropped keeps a reason.
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
}


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
        Shares the target asked for, before lots and cash.
    price : ndarray of float64
        Expected execution price, currency/share.
    value, fee : ndarray of float64
        ``quantity * price`` rounded to the cent, and its fees, currency.
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
    reason: np.ndarray
    cash_after: float

    def __len__(self) -> int:
        return len(self.instrument)


def plan_orders(current: np.ndarray, target: np.ndarray, price: np.ndarray,
                tradable: np.ndarray, cash: float, rules: MarketRules,
                buy_priority: np.ndarray | None = None) -> PlannedOrders:
    """Orders that take ``current`` towards ``target`` within lots and cash.

    Parameters
    ----------
    current : ndarray of float64, shape (N,)
        Held shares.
    target : ndarray of float64, shape (N,)
        Target shares (fractional allowed; rounded down to ``rules.trade_unit`` for buys).
        A target of 0 sells the whole holding, odd lots included.
    price : ndarray of float64, shape (N,)
        Expected execution price, currency/share (NaN where there is none).
    tradable : ndarray of bool, shape (N,)
    cash : float
        Cash available before the session's trades, currency.
    rules : MarketRules
    buy_priority : ndarray of int, optional
        Instrument indices in the order buys should get cash (e.g. by score); other buys follow
        in index order.

    Returns
    -------
    PlannedOrders
        Sells first, then buys. ``cash_after >= 0`` whenever ``cash >= 0``.
    """
    unit = rules.trade_unit
    delta = target - current
    rows: list[tuple] = []
    sells = np.flatnonzero((delta < 0) & (current > 0))
    for i in sells:
        intended = current[i] if target[i] <= 0 else -delta[i]
        qty = current[i] if target[i] <= 0 else math.floor(intended / unit + 1e-9) * unit
        reason = "" if qty > 0 else "lot"
        if not tradable[i]:
            qty, reason = 0.0, "suspended"
        elif not (price[i] > 0):
            qty, reason = 0.0, "no_price"
        value = round(qty * price[i], 2) if qty else 0.0
        fee = rules.fee(value, True)
        if cash + value - fee < 0:  # proceeds below a minimum fee the cash cannot cover
            qty, value, fee, reason = 0.0, 0.0, 0.0, "cash"
        cash += value - fee
        rows.append((i, -1, qty, intended, price[i], value, fee, reason))

    wants = delta > 0
    if buy_priority is not None:
        first = np.asarray(buy_priority, dtype=np.int64)
        first = first[wants[first]]
        rest = np.flatnonzero(wants & ~np.isin(np.arange(len(delta)), first))
        buys = np.concatenate([first, rest])
    else:
        buys = np.flatnonzero(wants)
    for i in buys:
        intended = delta[i]
        qty = math.floor(intended / unit + 1e-9) * unit
        reason = "" if qty > 0 else "lot"
        if not tradable[i]:
            qty, reason = 0, "suspended"
        elif not (price[i] > 0):
            qty, reason = 0, "no_price"
        elif qty > 0:
            afford = rules.max_affordable(cash, price[i])
            if afford < qty:
                qty, reason = afford, "cash"
        value = round(qty * price[i], 2) if qty else 0.0
        fee = rules.fee(value, False)
        cash -= value + fee
        rows.append((i, 1, float(qty), intended, price[i], value, fee, reason))

    if not rows:
        e = np.array([], dtype=np.float64)
        return PlannedOrders(np.array([], dtype=np.int64), np.array([], dtype=np.int8), e, e, e,
                             e, e, np.array([], dtype=object), float(cash))
    cols = list(zip(*rows, strict=True))
    return PlannedOrders(
        instrument=np.array(cols[0], dtype=np.int64), side=np.array(cols[1], dtype=np.int8),
        quantity=np.array(cols[2], dtype=np.float64), intended=np.array(cols[3], dtype=np.float64),
        price=np.array(cols[4], dtype=np.float64), value=np.array(cols[5], dtype=np.float64),
        fee=np.array(cols[6], dtype=np.float64), reason=np.array(cols[7], dtype=object),
        cash_after=float(cash))
