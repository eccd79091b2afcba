"""PortfolioEngine: from scores and current holdings to a target portfolio."""

from bridge.portfolio.constraints import Constraints, apply_constraints
from bridge.portfolio.engine import PortfolioEngine
from bridge.portfolio.topk import TopkDropout, decide_topk, select_topk_dropout, size_from_cash
from bridge.portfolio.weights import WEIGHT_METHODS

__all__ = ["WEIGHT_METHODS", "Constraints", "PortfolioEngine", "TopkDropout", "apply_constraints",
           "decide_topk", "select_topk_dropout", "size_from_cash"]
