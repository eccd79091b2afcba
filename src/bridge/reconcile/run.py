"""The edge of reconciliation: read DuckDB, query the broker, build the report, write the files."""

from __future__ import annotations

from pathlib import Path

from bridge.reconcile.broker import fetch_broker_state
from bridge.reconcile.core import ReconciliationReport, Tolerance, reconcile
from bridge.reconcile.local import load_local_state


def write_report(report: ReconciliationReport, out_dir: Path | str) -> list[Path]:
    """Write ``<out_dir>/<report_id>/`` : report.json and one Parquet file per section.

    Returns
    -------
    list of Path
        The files written (report.json, positions/orders/fills/account.parquet).
    """
    folder = Path(out_dir) / report.report_id
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in report.to_frames().items():
        p = folder / f"{name}.parquet"
        frame.write_parquet(p)
        written.append(p)
    p = folder / "report.json"
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(report.to_json())
    tmp.replace(p)
    report.files = [p, *written]
    return report.files


def run_reconciliation(db: Path | str, executor, strategy_id: str | None = "default",
                       mode: str = "paper", tolerance: Tolerance | float | dict | None = None,
                       out_dir: Path | str | None = None, clock=None,
                       marks: dict[str, float] | None = None,
                       account_id: str | None = None, sleep=None) -> ReconciliationReport:
    """Reconcile bridge's DuckDB state with ``executor``'s broker, and write the report.

    Parameters
    ----------
    db : path to the DuckDB file
    executor : ReconcilableExecutor
    strategy_id : str or None
        See :func:`~bridge.reconcile.local.load_local_state`.
    mode : {"paper", "live"}
    tolerance : Tolerance, float, dict or None
    out_dir : path, optional
        If given, the report goes to ``<out_dir>/<report_id>/`` (Parquet + JSON), e.g.
        ``reports/reconcile``.
    clock : callable returning int ms
        The report's timestamp (injected); default: the executor's clock.
    marks : dict, optional
        instrument -> price used to value local positions (market value drift).
    account_id : str, optional
    sleep : callable, optional
        Backoff sleep of the broker reads' retries (default: real sleep).

    Returns
    -------
    ReconciliationReport
        ``report.files`` lists what was written (empty without ``out_dir``).
    """
    clock = clock or getattr(executor, "clock", None) or (lambda: 0)
    local = load_local_state(db, strategy_id, mode, marks=marks)
    remote = fetch_broker_state(executor, clock, account_id=account_id, sleep=sleep)
    report = reconcile(local, remote, tolerance, timestamp_ms=int(clock()))
    report.files = write_report(report, out_dir) if out_dir is not None else []
    return report
