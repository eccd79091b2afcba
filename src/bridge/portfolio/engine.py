"""PortfolioEngine: the frame-level API (pure: frames in, frames out)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bridge.errors import ConfigError
from bridge.market.rules import US, MarketRules
from bridge.portfolio.constraints import Constraints, apply_constraints
from bridge.portfolio.weights import WEIGHT_METHODS
from bridge.portfolio.topk import TopkDropout, decide_topk


class PortfolioEngine:
    """Targets from scores and holdings.

    Parameters
    ----------
    rules : MarketRules
        Used to estimate the cash that sells free (fees included) before sizing buys.
    """

    def __init__(self, rules: MarketRules = US) -> None:
        self.rules = rules

    def topk_dropout(self, scores: pd.DataFrame, current: pd.DataFrame, prices: pd.DataFrame,
                     cash: float, params: TopkDropout = TopkDropout(),
                     rng: np.random.Generator | None = None) -> pd.DataFrame:
        """Top-k dropout target for one session (``params.mode``: "corrected" or "qlib").

        Parameters
        ----------
        scores : DataFrame
            ``instrument``, ``score`` dated the previous session.
        current : DataFrame
            ``instrument``, ``amount`` (shares), optional ``days_held`` (int sessions; default
            a large number, i.e. sellable).
        prices : DataFrame
            ``instrument``, ``price`` (this session's deal price), optional ``tradable``,
            ``limit_up``, ``limit_down`` (bool).
        cash : float
            Cash before trading, currency.
        params : TopkDropout
        rng : numpy.random.Generator, optional
            For the random methods.

        Returns
        -------
        DataFrame
            ``instrument``, ``target_amount`` (float shares, unrounded), ``action``
            ("hold", "sell", "buy"), ``score``; buys in descending score (the buy priority).
        """
        universe = pd.Index(scores["instrument"]).union(pd.Index(current["instrument"]))
        score = scores.set_index("instrument")["score"].reindex(universe).to_numpy(np.float64)
        cur_df = current.set_index("instrument").reindex(universe)
        amount = cur_df["amount"].fillna(0.0).to_numpy(np.float64)
        days = (cur_df["days_held"].fillna(0).to_numpy(np.int64) if "days_held" in cur_df
                else np.full(len(universe), np.iinfo(np.int64).max))
        px = prices.set_index("instrument").reindex(universe)
        price = px["price"].to_numpy(np.float64)
        tradable = (px["tradable"].fillna(False).to_numpy(bool) if "tradable" in px
                    else np.isfinite(price))
        held = amount > 0
        flags = {k: px[k].fillna(False).to_numpy(bool) for k in ("limit_up", "limit_down")
                 if k in px}
        target, buy = decide_topk(score, amount, days, price, tradable, cash, params, self.rules,
                                  rng, **flags)
        sell = np.flatnonzero(held & (target < amount))
        action = np.where(held, "hold", "")
        action[sell] = "sell"
        action[buy] = "buy"
        keep = action != ""
        order = np.concatenate([np.flatnonzero(keep & (action != "buy")), buy])
        return pd.DataFrame({"instrument": universe[order].astype(str),
                             "target_amount": target[order], "action": action[order],
                             "score": score[order]}).reset_index(drop=True)

    @staticmethod
    def target_weights(scores: pd.DataFrame, method: str = "equal", returns: pd.DataFrame | None = None,
                       topk: int | None = None, constraints: Constraints = Constraints(),
                       sectors: pd.Series | None = None, **params) -> pd.DataFrame:
        """Weight the best-scored names with a weight method, then apply the constraints.

        Parameters
        ----------
        scores : DataFrame
            ``instrument``, ``score``.
        method : {"equal", "score", "inverse_volatility", "min_variance"}
            See :mod:`bridge.portfolio.weights` (one signature for all).
        returns : DataFrame, optional
            Daily returns, sessions x instruments (risk-based methods).
        topk : int, optional
            Keep the ``topk`` best scores (ties: instrument order); None keeps all.
        constraints : Constraints
            Blacklisted names are removed before choosing the top k.
        sectors : Series of str indexed by instrument, optional
            For sector caps (e.g. the ``sector`` column of the instruments table).
        **params
            Passed to the method (``lookback``, ``max_weight`` for min_variance).

        Returns
        -------
        DataFrame
            ``instrument``, ``target_weight`` (sums to ``1 - cash_buffer``), ``score``,
            best score first; feed it to :meth:`bridge.planner.OrderPlanner.plan`.

        Raises
        ------
        ConfigError
            Unknown method or missing returns.
        ConstraintError
            Infeasible constraints (names which).
        """
        if method not in WEIGHT_METHODS:
            raise ConfigError(f"method must be one of {sorted(WEIGHT_METHODS)}, got {method!r}")
        s = scores.set_index("instrument")["score"].astype(np.float64)
        s = s[~s.index.isin(list(constraints.blacklist))]
        order = np.argsort(-s.to_numpy(), kind="stable")
        s = s.iloc[order[:topk] if topk else order]
        w = apply_constraints(WEIGHT_METHODS[method](s, returns, **params), constraints, sectors)
        return pd.DataFrame({"instrument": s.index.astype(str), "target_weight": w.to_numpy(),
                             "score": s.to_numpy()})

    @staticmethod
    def equal_weight(instruments, cash_buffer: float = 0.0) -> pd.DataFrame:
        """Equal ``target_weight`` over ``instruments``, leaving ``cash_buffer`` in cash.

        Returns
        -------
        DataFrame
            ``instrument``, ``target_weight`` (sums to ``1 - cash_buffer``).
        """
        names = pd.Index(list(instruments)).astype(str)
        w = (1.0 - cash_buffer) / len(names) if len(names) else 0.0
        return pd.DataFrame({"instrument": names, "target_weight": np.full(len(names), w)})
