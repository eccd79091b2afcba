"""Show a reconciliation report: rich tables (CLI) and a plotly chart of the differences."""

from __future__ import annotations

from bridge.reconcile.core import ReconciliationReport

_STYLE = {"synced": "green", "unknown": "bold red", "local_only": "yellow",
          "remote_only": "yellow", "qty_mismatch": "red", "drifted": "magenta"}
_COLOR = {"synced": "#2ca02c", "local_only": "#ff7f0e", "remote_only": "#bcbd22",
          "qty_mismatch": "#d62728", "drifted": "#9467bd", "unknown": "#7f7f7f",
          "status_mismatch": "#1f77b4", "unknown_to_bridge": "#e377c2",
          "unknown_to_broker": "#8c564b", "missing_local": "#17becf",
          "missing_remote": "#7f7f7f", "mismatch": "#d62728", "cash_mismatch": "#ff7f0e"}


def _num(x, fmt="{:,.2f}") -> str:
    return "" if x is None else fmt.format(x)


def rich_tables(report: ReconciliationReport, max_rows: int = 30) -> list:
    """Renderables for ``rich.console.Console.print``: header, summary and one table per section
    with differences (synced positions are counted, not listed)."""
    from rich.panel import Panel
    from rich.table import Table

    state = ("[bold red]broker state UNKNOWN (query failed): nothing concluded, sync refused[/]"
             if not report.fetched_ok else
             "[green]synced[/]" if report.is_synced else
             f"[yellow]{report.summary['differences']} differences[/] "
             f"({report.summary['syncable']} syncable broker -> local)")
    head = (f"report [bold]{report.report_id}[/]  {report.timestamp}\n"
            f"broker {report.broker}  account {report.account}  strategy {report.strategy_id}  "
            f"mode {report.mode}\n{state}" + (f"\nerror: {report.error}" if report.error else ""))
    out: list = [Panel(head, title="Reconciliation")]
    s = Table(title="Summary")
    s.add_column("what")
    s.add_column("count", justify="right")
    for k, v in report.summary.items():
        if v or k == "positions_synced":
            s.add_row(k, f"{v:,}")
    out.append(s)
    pos = [p for p in report.positions if p.status != "synced"]
    if pos:
        t = Table(title=f"Positions ({len(pos)} not synced)")
        for c in ("instrument", "status", "local qty", "broker qty", "qty diff", "local cost",
                  "broker cost", "mv diff", "action"):
            t.add_column(c, justify="right" if "qty" in c or "cost" in c or "mv" in c else "left")
        for p in pos[:max_rows]:
            st = _STYLE.get(p.status, "")
            t.add_row(p.instrument, f"[{st}]{p.status}[/]" if st else p.status,
                      _num(p.local_qty, "{:,.0f}"), _num(p.remote_qty, "{:,.0f}"),
                      _num(p.qty_diff, "{:+,.0f}"), _num(p.local_avg_cost, "{:,.4f}"),
                      _num(p.remote_avg_cost, "{:,.4f}"), _num(p.market_value_diff, "{:+,.2f}"),
                      p.action)
        out.append(t)
    if report.orders:
        t = Table(title=f"Orders ({len(report.orders)} differences)")
        for c in ("client_order_id", "status", "instrument", "side", "qty", "bridge", "broker",
                  "filled bridge/broker", "action"):
            t.add_column(c)
        for o in report.orders[:max_rows]:
            t.add_row(o.client_order_id, o.status, o.instrument or "", o.side or "",
                      _num(o.quantity, "{:,.0f}"), o.local_status or "-", o.remote_status or "-",
                      f"{_num(o.local_filled, '{:,.0f}') or '-'} / "
                      f"{_num(o.remote_filled, '{:,.0f}') or '-'}", o.action)
        out.append(t)
    if report.fills:
        t = Table(title=f"Fills ({len(report.fills)} differences)")
        for c in ("exec_id", "status", "client_order_id", "instrument", "side", "qty", "price",
                  "action"):
            t.add_column(c)
        for f in report.fills[:max_rows]:
            q = f.remote_quantity if f.remote_quantity is not None else f.local_quantity
            px = f.remote_price if f.remote_price is not None else f.local_price
            t.add_row(f.exec_id, f.status, f.client_order_id or "", f.instrument or "",
                      f.side or "", _num(q, "{:,.0f}"), _num(px, "{:,.4f}"), f.action)
        out.append(t)
    for a in report.account_diffs:
        out.append(f"[yellow]cash[/]: bridge {a.local_cash:,.2f}, broker {a.remote_cash:,.2f} "
                   f"(diff {a.cash_diff:+,.2f}): {a.action}")
    return out


def differences_figure(report: ReconciliationReport):
    """A plotly figure: counts by section and status (left), and per instrument the position
    difference valued at the broker's mark, by status (right)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, column_widths=[0.35, 0.65],
                        subplot_titles=("Differences by status",
                                        "Position differences (broker - bridge), currency"))
    counts = {k: v for k, v in report.summary.items()
              if v and k not in ("differences", "syncable", "positions_synced")}
    names = list(counts) or ["(none)"]
    fig.add_trace(go.Bar(x=[counts.get(n, 0) for n in names], y=names, orientation="h",
                         marker_color=[_COLOR.get(n.split("_", 1)[-1], "#1f77b4") for n in names],
                         showlegend=False, hovertemplate="%{y}: %{x}<extra></extra>"),
                  row=1, col=1)
    rows = [p for p in report.positions if p.status not in ("synced",)]
    by_status: dict[str, list] = {}
    for p in rows:
        mark = (p.remote_market_value / p.remote_qty if p.remote_qty and p.remote_market_value
                else p.local_market_value / p.local_qty if p.local_qty and p.local_market_value
                else p.remote_avg_cost or p.local_avg_cost or 0.0)
        if p.status == "drifted":
            value = (p.market_value_diff or 0.0) or (p.avg_cost_diff or 0.0) * (p.remote_qty or 0)
        elif p.status == "unknown":
            value = -(p.local_market_value or (p.local_qty or 0) * (p.local_avg_cost or 0))
        else:
            value = (p.qty_diff or 0.0) * mark
        by_status.setdefault(p.status, []).append((p.instrument, value, p))
    for status, items in by_status.items():
        fig.add_trace(go.Bar(
            x=[i for i, _, _ in items], y=[v for _, v, _ in items], name=status,
            marker_color=_COLOR.get(status), customdata=[[p.qty_diff, p.avg_cost_diff, p.action]
                                                         for _, _, p in items],
            hovertemplate="%{x}: %{y:,.2f}<br>qty diff %{customdata[0]}<br>cost diff "
                          "%{customdata[1]}<br>%{customdata[2]}<extra>" + status + "</extra>"),
            row=1, col=2)
    title = (f"Reconciliation {report.report_id} ({report.broker}, {report.account}): "
             + ("broker state UNKNOWN" if not report.fetched_ok else
                "synced" if report.is_synced else f"{report.summary['differences']} differences"))
    fig.update_layout(title=title, height=450, template="plotly_white", barmode="group",
                      legend_title_text="position status")
    return fig
