"""Slippage models of the paper broker (pure: bar and order in, fill price out).

A model returns the fill price for ``quantity`` shares on ``side`` (+1 buy, -1 sell) given the
reference price and the bar's volume; the price moves against the trader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class FixedBps:
    """Fixed slippage: ``price * (1 + side * bps / 1e4)``."""

    bps: float = 0.0

    def price(self, ref: float, side: int, quantity: float, bar_volume: float) -> float:
        return ref * (1 + side * self.bps / 1e4)


@dataclass(frozen=True)
class VolumeShareImpact:
    """Square-root market impact: ``bps = coef * sqrt(quantity / bar_volume) * 1e4``.

    The square-root law of market impact (e.g. Almgren et al. 2005, "Direct estimation of equity
    market impact"; Toth et al. 2011): impact grows with the square root of the participation.
    ``coef`` is the impact, as a fraction of price, of trading the bar's whole volume; with the
    default 0.02 an order of 1% of the bar's volume moves its price by 0.02 * 0.1 = 20 bps.
    Capped at ``max_bps``.
    """

    coef: float = 0.02
    max_bps: float = 500.0

    def price(self, ref: float, side: int, quantity: float, bar_volume: float) -> float:
        share = quantity / bar_volume if bar_volume > 0 else 1.0
        bps = min(self.max_bps, self.coef * math.sqrt(share) * 1e4)
        return ref * (1 + side * bps / 1e4)
