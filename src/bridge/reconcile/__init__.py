"""Reconciliation of bridge's local state (DuckDB) with a broker's (seed 000, issue 5).

::

    from bridge.reconcile import run_reconciliation, sync
    report = run_reconciliation(db, executor, "momentum", "paper", out_dir="reports/reconcile")
    if not report.is_synced and report.fetched_ok:
        sync(db, report, select=["fill", "order"], actor="ops")

The core (:func:`reconcile`) is pure; the broker query (:func:`fetch_broker_state`), the local
read (:func:`load_local_state`), the writes (:func:`sync`, :func:`write_report`) are the edges.
Importing this package does not import polars or duckdb.
"""

from bridge.reconcile.broker import (
    BROKER_STATUS,
    ReconcilableExecutor,
    fetch_broker_state,
)
from bridge.reconcile.core import (
    AccountDiff,
    BrokerState,
    FillDiff,
    LocalState,
    OrderDiff,
    PositionDiff,
    ReconciliationReport,
    Tolerance,
    reconcile,
)
from bridge.reconcile.local import load_local_state
from bridge.reconcile.run import run_reconciliation, write_report
from bridge.reconcile.sync import AUDIT_KIND, SyncRefused, SyncResult, sync

__all__ = [
    "AUDIT_KIND", "BROKER_STATUS", "AccountDiff", "BrokerState", "FillDiff", "LocalState",
    "OrderDiff", "PositionDiff", "ReconcilableExecutor", "ReconciliationReport", "SyncRefused",
    "SyncResult", "Tolerance", "fetch_broker_state", "load_local_state", "reconcile",
    "run_reconciliation", "sync", "write_report",
]
