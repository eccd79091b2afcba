"""PortfolioEngine: from scores and current holdings to a target portfolio."""

from bridge.portfolio.topk import TopkDropout, decide_topk, select_topk_dropout, size_from_cash
from bridge.portfolio.engine import PortfolioEngine

__all__ = ["PortfolioEngine", "TopkDropout", "decide_topk", "select_topk_dropout", "size_from_cash"]
