"""Execution layer: the order state machine, fills, client order ids and the executor contract.

Import-light on purpose (pydantic only, no pandas/polars/duckdb), so brokers and the CLI can use
it without loading the data stack::

    from bridge.execution import Order, Fill, OrderStatus, client_order_id
    from bridge.execution import OrderCtx, ExecResult, Executor, executor_contract_v1
"""

from bridge.execution.contract import (
    AmendResult,
    CancelResult,
    ExecResult,
    Executor,
    OrderCtx,
    executor_contract_v1,
)
from bridge.execution.orders import (
    INFLIGHT,
    OPEN,
    TERMINAL,
    TRANSITION_NOTES,
    TRANSITIONS,
    Fill,
    FillError,
    IllegalTransition,
    LateFillAfterTerminal,
    Order,
    OrderStatus,
    OverfillError,
    check_transition,
    client_order_id,
    transition_table_markdown,
)

__all__ = [
    "INFLIGHT",
    "OPEN",
    "TERMINAL",
    "TRANSITIONS",
    "TRANSITION_NOTES",
    "AmendResult",
    "CancelResult",
    "ExecResult",
    "Executor",
    "Fill",
    "FillError",
    "IllegalTransition",
    "LateFillAfterTerminal",
    "Order",
    "OrderCtx",
    "OrderStatus",
    "OverfillError",
    "check_transition",
    "client_order_id",
    "executor_contract_v1",
    "transition_table_markdown",
]
