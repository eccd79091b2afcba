"""Tomorrow's orders: predictions + real positions + cash -> the next session's order list.

Qlib's most repeated request (qlib issues #215, #722, #826, #1644): "give me the orders for
tomorrow from my predictions and my positions". :func:`plan_session` answers it as a pure function:
scores of the signal date -> PortfolioEngine target -> OrderPlanner orders, every cut with a reason.
The inputs and outputs are frozen as a DecisionSnapshot by :mod:`bridge.store.snapshots`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from bridge._frames import member
from bridge.errors import ValidationError
from bridge.market.rules import MARKETS
from bridge.planner.core import PlanPolicy
from bridge.planner.planner import OrderPlanner
from bridge.portfolio.engine import PortfolioEngine
from bridge.portfolio.topk import TopkDropout


@dataclass(frozen=True)
class PlanParams:
    """Everything that decides tomorrow's orders besides the data.

    Parameters
    ----------
    market : str
        Key of :data:`bridge.market.rules.MARKETS` ("US", "CN").
    topk : TopkDropout
        Top-k dropout parameters (mode "corrected" by default, "qlib" to match Qlib).
    policy : PlanPolicy
        Participation cap, minimum order value, market or limit orders.
    seed : int
        Seed of the random top-k methods.
    """

    market: str = "US"
    topk: TopkDropout = field(default_factory=TopkDropout)
    policy: PlanPolicy = field(default_factory=PlanPolicy)
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PlanParams:
        d = json.loads(text)
        return cls(market=d["market"], topk=TopkDropout(**d["topk"]),
                   policy=PlanPolicy(**d["policy"]), seed=d["seed"])


def plan_session(scores: pd.DataFrame, positions: pd.DataFrame, cash: float,
                 market: pd.DataFrame, params: PlanParams) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """Target and orders for one session.

    Parameters
    ----------
    scores : DataFrame
        ``instrument``, ``score`` of the signal date (the session before the trade date).
    positions : DataFrame
        ``instrument``, ``amount`` (shares); optional ``sellable`` (T+1), ``days_held``.
    cash : float
        Available cash, currency.
    market : DataFrame
        ``instrument``, ``price`` (reference price, currency/share: the last close), optional
        ``tradable``, ``volume``, ``limit_up``, ``limit_down``.
    params : PlanParams

    Returns
    -------
    target : DataFrame
        ``instrument``, ``target_amount`` (shares, unrounded), ``action``, ``score``.
    orders : DataFrame
        :data:`bridge.planner.planner.ORDER_COLUMNS`, dropped trades included with a reason.
    cash_after : float
        Cash if every order fills at ``price``, currency.

    Raises
    ------
    ValidationError
        A held or scored instrument without a market row (named in ``rows``).
    """
    rules = MARKETS[params.market]
    known = market["instrument"]
    for name, frame in (("positions", positions), ("scores", scores)):
        unknown = ~member(frame["instrument"], known)
        if unknown.any():
            raise ValidationError(f"{name}.instrument", "unknown_instrument",
                                  "no market data (price) for these instruments", frame[unknown])
    rng = np.random.default_rng(params.seed)
    target = PortfolioEngine(rules).topk_dropout(scores, positions, market, cash, params.topk, rng)
    orders, cash_after = OrderPlanner(rules, params.policy).plan(
        positions, target[["instrument", "target_amount"]], market, cash)
    return target, orders, cash_after
