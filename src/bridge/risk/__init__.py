"""Pre-trade risk: rules with reason codes, the trading state ACTIVE / REDUCING / HALTED, and the
kill switch (by hand, or tripped by drawdown and daily loss).

::

    from bridge.risk import RiskEngine, RiskOrder, AccountView

    engine = RiskEngine.default(max_notional=50_000, blacklist={"XYZ"})
    decision = engine.check(RiskOrder("c-1", "AAPL", "buy", 100, 150.0, ts_ms), account)
    if not decision.allowed:       # DENIED: never sent, never SUBMITTED
        print(decision.reason, decision.message)

Pure Python, no pandas: the check path is a hot path (see ``benchmarks/bench_risk.py``).
"""

from bridge.risk.engine import ALLOWED, RiskEngine, TradingState
from bridge.risk.rules import (
    AccountView,
    AvailableCash,
    Blacklist,
    Decision,
    DuplicateOrder,
    GrossExposure,
    MaxOrderNotional,
    MaxOrderQuantity,
    MaxPositionWeight,
    Outcome,
    PatternDayTrader,
    PriceBand,
    RiskOrder,
    SubmitRate,
    UpstreamState,
)

__all__ = [
    "ALLOWED",
    "AccountView",
    "AvailableCash",
    "Blacklist",
    "Decision",
    "DuplicateOrder",
    "GrossExposure",
    "MaxOrderNotional",
    "MaxOrderQuantity",
    "MaxPositionWeight",
    "Outcome",
    "PatternDayTrader",
    "PriceBand",
    "RiskEngine",
    "RiskOrder",
    "SubmitRate",
    "TradingState",
    "UpstreamState",
]
