"""PortfolioEngine: the frame-level API (pure: frames in, frames out)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bridge.market.rules import US, MarketRules
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
            ``instrument``, ``price`` (this session's deal price), optional ``tradable``.
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
        universe = pd.Index(sorted(set(scores["instrument"]) | set(current["instrument"])))
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
        target, buy = decide_topk(score, amount, days, price, tradable, cash, params, self.rules,
                                  rng)
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
