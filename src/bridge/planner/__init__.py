"""OrderPlanner: current vs target holdings -> orders a market accepts."""

from bridge.planner.core import CUT_REASONS, PlannedOrders, plan_orders
from bridge.planner.planner import OrderPlanner

__all__ = ["CUT_REASONS", "OrderPlanner", "PlannedOrders", "plan_orders"]
