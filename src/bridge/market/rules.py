"""Trading rules of a market, as data.

The rules a venue enforces (trade unit, tick size, fees, daily price limits, settlement of shares
bought) live in one frozen record per market, so the planner and the engines read them instead of
hard-coding them. Sources: US equities: SEC Rule 612 (sub-penny rule: $0.01 tick at or above $1);
China A-shares: SSE/SZSE trading rules (100-share board lots, odd lots only when selling the whole
odd holding; daily limits +-10% main board, +-20% ChiNext since 2020-08-24 and STAR since
2019-07-22, +-5% ST on the main board; T+1 for shares; stamp duty on sells, 5 bps since
2023-08-28).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date

import numpy as np


@dataclass(frozen=True, slots=True)
class LimitRule:
    """A daily price-limit band for instruments whose 6-digit code starts with ``prefix``.

    ``pct`` applies on sessions on or after ``since`` (None: always); ``st_pct`` applies to
    instruments flagged ST (None: same as ``pct``).
    """

    prefix: str
    pct: float
    since: date | None = None
    st_pct: float | None = None


@dataclass(frozen=True, slots=True)
class MarketRules:
    """Rules of one market.

    Parameters
    ----------
    name : str
        Short name, e.g. ``"US"``, ``"CN"``.
    exchange : str
        ISO MIC of the session calendar (exchange-calendars), e.g. ``"XNYS"``, ``"XSHG"``.
    currency : str
        Quote currency (ISO 4217).
    trade_unit : int
        Shares per lot; order quantities are whole multiples of it (US: 1, CN: 100).
    fractional : bool
        Quantities need not be whole lots (US fractional shares; Qlib's ``trade_unit=None``).
    tick_size : float
        Minimum price increment, currency.
    commission_bps : float
        Commission, basis points of traded value, both sides.
    min_commission : float
        Minimum commission per order, currency.
    stamp_duty_bps : float
        Tax on sells, basis points of traded value.
    round_cents : bool
        Round trade values and fees to 0.01 (a broker's statement); False reproduces engines
        that keep full precision (Qlib).
    t_plus : int
        Sessions before bought shares may be sold (A-shares: 1; US: 0).
    limits : tuple of LimitRule
        Daily price-limit bands, first matching prefix wins; empty: no limits.
    default_limit_pct : float or None
        Band for instruments no rule matches (None: no limit).
    st_limit_pct : float or None
        Band for ST instruments where their rule gives none.
    """

    name: str = "US"
    exchange: str = "XNYS"
    currency: str = "USD"
    trade_unit: int = 1
    fractional: bool = False
    tick_size: float = 0.01
    commission_bps: float = 5.0
    min_commission: float = 1.0
    stamp_duty_bps: float = 0.0
    round_cents: bool = True
    t_plus: int = 0
    limits: tuple = ()
    default_limit_pct: float | None = None
    st_limit_pct: float | None = None

    def with_(self, **changes) -> MarketRules:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def money(self, value):
        """Round currency amounts to the cent when ``round_cents``.

        Same arithmetic as ``numpy.round(value, 2)`` (``rint(value * 100) / 100``) for scalars
        and arrays, so the scalar fast path and the vectorised path agree bit for bit.
        """
        if not self.round_cents:
            return value
        if isinstance(value, float):
            return round(value * 100.0) / 100.0
        return np.round(value, 2)

    def fee(self, value, sell):
        """Fees of orders, currency.

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
            / 1e4``, each term rounded to 0.01 when ``round_cents``; 0 where ``value == 0``.
        """
        if isinstance(value, float) and isinstance(sell, bool | np.bool_):
            if not value > 0:
                return 0.0
            fee = self.money(max(self.min_commission, value * (self.commission_bps / 1e4)))
            if sell and self.stamp_duty_bps:
                fee += self.money(value * (self.stamp_duty_bps / 1e4))
            return float(fee)
        value = np.asarray(value, dtype=np.float64)
        # each component is rounded on its own, as a broker statement shows them
        fee = self.money(np.maximum(self.min_commission, value * (self.commission_bps / 1e4)))
        fee = fee + np.where(sell, self.money(value * (self.stamp_duty_bps / 1e4)), 0.0)
        out = np.where(value > 0, fee, 0.0)
        return float(out) if out.ndim == 0 else out

    def round_quantity(self, qty: float) -> float:
        """Round a quantity down to whole lots (or keep it when ``fractional``)."""
        if self.fractional:
            return max(0.0, float(qty))
        unit = self.trade_unit
        return float(max(0, math.floor(qty / unit + 1e-9)) * unit)

    def max_affordable(self, cash: float, price: float) -> float:
        """Largest buy at ``price`` that ``cash`` can pay for, fees included.

        Returns
        -------
        float
            Shares (whole lots unless ``fractional``), 0 if not even one lot fits in ``cash``.
        """
        if cash <= 0 or price <= 0:
            return 0.0
        rate = self.commission_bps / 1e4
        # Either the proportional or the minimum commission binds; take the tighter bound.
        qty = self.round_quantity(min(cash / (price * (1 + rate)), (cash - self.min_commission) / price))
        for _ in range(64):  # cent rounding may push the total a hair over: step down
            value = float(self.money(qty * price))
            excess = value + self.fee(value, False) - cash
            if qty <= 0 or excess <= 1e-9:
                break
            qty = (qty - self.trade_unit if not self.fractional
                   else max(0.0, qty - max(excess / price, qty * 1e-12)))
        return max(qty, 0.0)

    def limit_pct(self, instrument: str, on: date | None = None, st: bool = False) -> float | None:
        """The daily price-limit band of ``instrument`` (fraction), None when unlimited."""
        code = "".join(ch for ch in instrument if ch.isdigit())
        for rule in self.limits:
            if code.startswith(rule.prefix) and (rule.since is None or on is None or on >= rule.since):
                if st:
                    return rule.st_pct if rule.st_pct is not None else (self.st_limit_pct or rule.pct)
                return rule.pct
        if st and self.st_limit_pct is not None:
            return self.st_limit_pct
        return self.default_limit_pct

    def limit_prices(self, prev_close, pct):
        """Limit-up and limit-down prices: ``prev_close * (1 +- pct)`` rounded half-up to a tick.

        Returns
        -------
        (up, down) : ndarray of float64
            NaN where ``pct`` is NaN (no limit) or ``prev_close`` is missing.
        """
        prev = np.asarray(prev_close, dtype=np.float64)
        pct = np.asarray(pct, dtype=np.float64)
        tick = self.tick_size

        def to_tick(x):
            return np.floor(x / tick + 0.5 + 1e-9) * tick

        return np.round(to_tick(prev * (1 + pct)), 10), np.round(to_tick(prev * (1 - pct)), 10)


US = MarketRules()
"""US equities: 1-share unit, $0.01 tick, 5 bps commission with a $1 minimum (a conservative
retail default; ``US.with_(commission_bps=0, min_commission=0)`` for commission-free brokers),
no price limits, T+0."""

CN = MarketRules(
    name="CN", exchange="XSHG", currency="CNY", trade_unit=100, tick_size=0.01,
    commission_bps=2.5, min_commission=5.0, stamp_duty_bps=5.0, t_plus=1,
    limits=(LimitRule("300", 0.20, since=date(2020, 8, 24), st_pct=0.20),
            LimitRule("301", 0.20, st_pct=0.20),
            LimitRule("688", 0.20, since=date(2019, 7, 22), st_pct=0.20),
            LimitRule("689", 0.20, st_pct=0.20)),
    default_limit_pct=0.10, st_limit_pct=0.05,
)
"""China A-shares: 100-share lots (odd lots only when selling a whole holding), 0.01 CNY tick,
2.5 bps commission with a 5 CNY minimum, 5 bps stamp duty on sells, T+1, daily limits +-10%
(main board, and ChiNext/STAR before their reforms), +-20% ChiNext/STAR, +-5% ST."""

MARKETS = {"US": US, "CN": CN}
