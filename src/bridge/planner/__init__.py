"""OrderPlanner: current vs target holdings -> orders a market accepts."""

from bridge.planner.core import CUT_REASONS, PlannedOrders, PlanPolicy, align_to_tick, plan_orders
from bridge.planner.planner import OrderPlanner
from bridge.planner.schedule import DEFAULT_US_PROFILE, pov, twap, vwap

__all__ = ["CUT_REASONS", "DEFAULT_US_PROFILE", "OrderPlanner", "PlanPolicy", "PlannedOrders", "align_to_tick",
           "plan_orders", "pov", "twap", "vwap"]
