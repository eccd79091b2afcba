"""Trading rules of a market, as data.

The rules a venue enforces (trade unit, tick size, fees) live in one frozen record per market so
that the planner and the preview engine read them instead of hard-coding them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True, slots=True)
class MarketRules:
    """Rules of one market.

    Parameters
    ----------
    name : str
        Short name, e.g. ``"US"``.
    exchange : str
        ISO MIC of the session calendar (exchange-calendars), e.g. ``"XNYS"``.
    currency : str
        Quote currency (ISO 4217).
    trade_unit : int
        Shares per lot; order quantities are whole multiples of it (US: 1).
    tick_size : float
        Minimum price increment, currency (US equities >= $1: 0.01, SEC Rule 612).
    commission_bps : float
        Commission, basis points of traded value, both sides.
    min_commission : float
        Minimum commission per order, currency.
    stamp_duty_bps : float
        Tax on sells, basis points of traded value.
    """

    name: str = "US"
    exchange: str = "XNYS"
    currency: str = "USD"
    trade_unit: int = 1
    tick_size: float = 0.01
    commission_bps: float = 5.0
    min_commission: float = 1.0
    stamp_duty_bps: float = 0.0

    def with_(self, **changes) -> MarketRules:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def fee(self, value, sell):
        """Fees of orders, currency, rounded to the cent.

        Parameters
        ----------
        value : float or ndarray
            Traded value(s), currency (>= 0). A zero value costs nothing.
        sell : bool or ndarray of bool
            True for sells (stamp duty applies).

        Returns
        -------
        float or ndarray
            ``max(min_commission, value * commission_bps / 1e4) + sell * value * stamp_duty_bps
            / 1e4``, rounded to 0.01, and 0 where ``value == 0``.
        """
        value = np.asarray(value, dtype=np.float64)
        fee = np.maximum(self.min_commission, value * (self.commission_bps / 1e4))
        fee = fee + np.where(sell, value * (self.stamp_duty_bps / 1e4), 0.0)
        out = np.where(value > 0, np.round(fee, 2), 0.0)
        return float(out) if out.ndim == 0 else out

    def max_affordable(self, cash: float, price: float) -> int:
        """Largest whole number of lots' shares a buy at ``price`` can pay for, fees included.

        Returns
        -------
        int
            Shares (a multiple of ``trade_unit``), 0 if not even one lot fits in ``cash``.
        """
        if cash <= 0 or price <= 0:
            return 0
        unit = self.trade_unit
        rate = self.commission_bps / 1e4
        # Either the proportional or the minimum commission binds; take the tighter bound.
        qty = min(cash / (price * (1 + rate)), (cash - self.min_commission) / price)
        qty = max(0, math.floor(qty / unit) * unit)
        while qty > 0:
            value = round(qty * price, 2)
            if value + self.fee(value, False) <= cash + 1e-9:
                break
            qty -= unit
        return qty


US = MarketRules()
"""US equities: 1-share unit, $0.01 tick, 5 bps commission with a $1 minimum (a conservative
retail default; set ``commission_bps=0, min_commission=0`` for commission-free brokers)."""

MARKETS = {"US": US}
