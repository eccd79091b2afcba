"""OrderPlanner: the frame-level API over :func:`bridge.planner.core.plan_orders`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bridge._frames import member
from bridge.errors import ValidationError
from bridge.market.rules import US, MarketRules
from bridge.planner.core import PlanPolicy, plan_orders

ORDER_COLUMNS = ["instrument", "side", "quantity", "intended_quantity", "order_type", "price",
                 "limit_price", "tick_rounding", "value", "fee", "reason"]


def _check_unique(name: str, frame: pd.DataFrame) -> None:
    if "instrument" not in frame:
        raise ValidationError(f"{name}.instrument", "missing_column", f"{name} needs an instrument column")
    dup = frame["instrument"].duplicated(keep=False)
    if dup.any():
        raise ValidationError(f"{name}.instrument", "duplicate_key",
                              "instrument listed more than once", frame[dup])


class OrderPlanner:
    """Turn current holdings and a target into the session's orders.

    Parameters
    ----------
    rules : MarketRules
        Trade unit, tick size, fees, T+1 of the market (default US).
    policy : PlanPolicy
        Participation cap, minimum order value, market or limit orders.
    """

    def __init__(self, rules: MarketRules = US, policy: PlanPolicy = PlanPolicy()) -> None:
        self.rules = rules
        self.policy = policy

    def plan(self, current: pd.DataFrame, target: pd.DataFrame, market: pd.DataFrame,
             cash: float) -> tuple[pd.DataFrame, float]:
        """Plan one session's orders.

        Parameters
        ----------
        current : DataFrame
            ``instrument`` (str), ``amount`` (float, shares held); optional ``sellable``
            (shares that may be sold this session, T+1; default ``amount``).
        target : DataFrame
            ``instrument`` and either ``target_amount`` (shares) or ``target_weight`` (fraction
            of total value = cash + sum(amount * price)). Instruments held but absent from the
            target are sold. Row order is the buy priority.
        market : DataFrame
            ``instrument``, ``price`` (expected execution price, currency/share); optional
            ``tradable`` (bool; default True where a price exists), ``volume`` (session volume,
            shares, for the participation cap), ``limit_up`` / ``limit_down`` (bool).
        cash : float
            Available cash, currency.

        Returns
        -------
        orders : DataFrame
            Columns ``ORDER_COLUMNS``: side "sell"/"buy"; quantity and intended_quantity in
            shares; order_type "market"/"limit"; price, limit_price (NaN for market orders) and
            tick_rounding in currency/share; value and fee in currency; reason "" or a cut code
            (:data:`bridge.planner.CUT_REASONS`). Sells first, dropped trades included
            (quantity 0, with their reason).
        cash_after : float
            Cash after all orders execute at ``price``.

        Raises
        ------
        ValidationError
            Missing columns, duplicate instruments, or instruments to trade without a market row.
        """
        for name, frame in (("current", current), ("target", target), ("market", market)):
            _check_unique(name, frame)
        universe = pd.Index(current["instrument"]).union(pd.Index(target["instrument"]))
        missing = ~member(universe, market["instrument"])
        if missing.any():
            raise ValidationError("market.instrument", "missing_price",
                                  "instruments held or targeted without a market row",
                                  pd.DataFrame({"instrument": universe[missing]}))
        px = market.set_index("instrument").reindex(universe)
        price = px["price"].to_numpy(dtype=np.float64)

        def flag(col, default):
            return px[col].fillna(False).to_numpy(dtype=bool) if col in px else default

        tradable = flag("tradable", np.isfinite(price))
        cur_df = current.set_index("instrument").reindex(universe)
        cur = cur_df["amount"].fillna(0.0).to_numpy(dtype=np.float64)
        sellable = (cur_df["sellable"].fillna(0.0).to_numpy(dtype=np.float64)
                    if "sellable" in cur_df else None)
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
        p = plan_orders(cur, tgt_arr, price, tradable, float(cash), self.rules, priority,
                        volume=px["volume"].to_numpy(np.float64) if "volume" in px else None,
                        limit_up=flag("limit_up", None), limit_down=flag("limit_down", None),
                        sellable=sellable, policy=self.policy)
        orders = pd.DataFrame({
            "instrument": universe[p.instrument].astype(str),
            "side": np.where(p.side > 0, "buy", "sell"),
            "quantity": p.quantity, "intended_quantity": p.intended,
            "order_type": np.where(np.isnan(p.limit_price), "market", "limit"),
            "price": p.price, "limit_price": p.limit_price, "tick_rounding": p.tick_rounding,
            "value": p.value, "fee": p.fee, "reason": p.reason.astype(str),
        })
        return orders, p.cash_after
