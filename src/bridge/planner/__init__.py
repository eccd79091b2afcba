"""OrderPlanner: current vs target holdings -> orders a market accepts."""

from bridge.planner.core import CUT_REASONS, PlannedOrders, PlanPolicy, align_to_tick, plan_orders
from bridge.planner.planner import OrderPlanner

__all__ = ["CUT_REASONS", "OrderPlanner", "PlanPolicy", "PlannedOrders", "align_to_tick",
           "plan_orders"]
