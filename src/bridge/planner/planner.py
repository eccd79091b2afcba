"""OrderPlanner: the frame-level API over :func:`bridge.planner.core.plan_orders`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bridge.errors import ValidationError
from bridge.market.rules import US, MarketRules
from bridge.planner.core import plan_orders

ORDER_COLUMNS = ["instrument", "side", "quantity", "intended_quantity", "price", "value", "fee",
                 "reason"]


class OrderPlanner:
    """Turn current holdings and a target into the session's orders.

    Parameters
    ----------
    rules : MarketRules
        Trade unit, tick size and fees of the market (default US).
    """

    def __init__(self, rules: MarketRules = US) -> None:
        self.rules = rules

    def plan(self, current: pd.DataFrame, target: pd.DataFrame, prices: pd.DataFrame,
             cash: float) -> tuple[pd.DataFrame, float]:
        """Plan one session's orders.

        Parameters
        ----------
        current : DataFrame
            ``instrument`` (str), ``amount`` (float, shares held).
        target : DataFrame
            ``instrument`` and either ``target_amount`` (shares) or ``target_weight`` (fraction
            of total value = cash + sum(amount * price)). Instruments held but absent from the
            target are sold. Row order is the buy priority.
        prices : DataFrame
            ``instrument``, ``price`` (expected execution price, currency/share) and optionally
            ``tradable`` (bool, default True where a price exists).
        cash : float
            Available cash, currency.

        Returns
        -------
        orders : DataFrame
            Columns ``ORDER_COLUMNS``: side "sell"/"buy", quantity and intended_quantity in shares,
            price currency/share, value and fee currency, reason "" or a cut code
            (:data:`bridge.planner.CUT_REASONS`). Sells first.
        cash_after : float
            Cash after all orders execute at ``price``.

        Raises
        ------
        ValidationError
            Duplicate instruments, a target without ``target_amount``/``target_weight``, or a
            target instrument without a price row.
        """
        for name, frame in (("current", current), ("target", target), ("prices", prices)):
            dup = frame["instrument"].duplicated(keep=False)
            if dup.any():
                raise ValidationError(f"{name}.instrument", "duplicate_key",
                                      "instrument listed more than once", frame[dup])
        universe = pd.Index(sorted(set(current["instrument"]) | set(target["instrument"])))
        missing = ~target["instrument"].isin(prices["instrument"])
        if missing.any():
            raise ValidationError("prices.instrument", "missing_price",
                                  "target instruments without a price row", target[missing])
        px = prices.set_index("instrument").reindex(universe)
        price = px["price"].to_numpy(dtype=np.float64)
        tradable = (px["tradable"].fillna(False).to_numpy(dtype=bool) if "tradable" in px
                    else np.isfinite(price))
        cur = current.set_index("instrument")["amount"].reindex(universe).fillna(0.0).to_numpy(
            dtype=np.float64)
        tgt = target.set_index("instrument")
        if "target_amount" in tgt:
            want = tgt["target_amount"]
        elif "target_weight" in tgt:
            total = cash + float(np.nansum(cur * price))
            want = tgt["target_weight"] * total / px.loc[tgt.index, "price"]
        else:
            raise ValidationError("target", "missing_column",
                                  "target needs target_amount or target_weight", target.head())
        tgt_arr = want.reindex(universe).fillna(0.0).to_numpy(dtype=np.float64)
        priority = universe.get_indexer(target["instrument"])
        p = plan_orders(cur, tgt_arr, price, tradable, float(cash), self.rules, priority)
        orders = pd.DataFrame({
            "instrument": universe[p.instrument].astype(str),
            "side": np.where(p.side > 0, "buy", "sell"),
            "quantity": p.quantity, "intended_quantity": p.intended, "price": p.price,
            "value": p.value, "fee": p.fee, "reason": p.reason.astype(str),
        })
        return orders, p.cash_after
