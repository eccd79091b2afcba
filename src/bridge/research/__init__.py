"""Example research signals computed from real bars."""

from bridge.research.factors import momentum, reversal

__all__ = ["momentum", "reversal"]
