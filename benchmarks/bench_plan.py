"""Workload: plan one session for a large universe; the planner's cost vs instruments and sessions.

The universe is built by resampling the real cross-section of the last sample session
(2010-08-20, 523 instruments with a bar): instrument i of the big universe copies the price,
volume and 20-day momentum score of a real instrument drawn with replacement (seeded), renamed
``R00000`` ... . The book holds the top ``topk`` names of the previous session's scores.

Two cases per size N:
- ``topk``: top-k dropout (topk = N/10, n_drop = topk/10) -> target -> orders, through the public
  frame API (``bridge.planner.tomorrow.plan_session``): the "tomorrow's orders" path;
- ``rebalance``: equal-weight rebalance of all N names (N orders) through ``OrderPlanner.plan``.

Run:  .venv/bin/python benchmarks/bench_plan.py [--sizes 500 1000 2000 5000 10000] [--repeat 20]
Writes benchmarks/results/plan.json and plan_scaling.html (the curve).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from bridge.market.data import Panel, load_bars
from bridge.planner import OrderPlanner
from bridge.planner.tomorrow import PlanParams, plan_session
from bridge.portfolio import TopkDropout
from bridge.research import momentum

ROOT = Path(__file__).resolve().parents[1]


def universe(n: int, seed: int = 7):
    panel = Panel.from_bars(load_bars(ROOT / "data"))
    sig = momentum(panel, 20)
    last = sig[sig["datetime"] == sig["datetime"].max()].set_index("instrument")["score"]
    t = len(panel.sessions) - 1
    ok = np.isfinite(panel.close[t]) & last.reindex(panel.instruments).notna().to_numpy()
    idx = np.flatnonzero(ok)
    rng = np.random.default_rng(seed)
    pick = rng.choice(idx, size=n, replace=True)
    names = np.array([f"R{i:05d}" for i in range(n)])
    score = last.reindex(panel.instruments).to_numpy()[pick] + rng.normal(0, 1e-6, n)  # no ties
    market = pd.DataFrame({"instrument": names, "price": panel.close[t, pick],
                           "volume": panel.volume[t, pick]})
    scores = pd.DataFrame({"instrument": names, "score": score})
    return market, scores, rng


def timed(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times) * 1e3, peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 5000, 10000])
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        market, scores, rng = universe(n)
        topk = max(10, n // 10)
        held = scores.nlargest(topk + topk // 5, "score").sample(topk, random_state=1)
        book = pd.DataFrame({"instrument": held["instrument"], "amount": 100.0})
        params = PlanParams(topk=TopkDropout(topk=topk, n_drop=max(1, topk // 10)))
        ms, mb = timed(lambda: plan_session(scores, book, 1e6, market, params), args.repeat)
        rows.append({"case": "topk", "instruments": n, "median_ms": ms, "peak_mb": mb})
        target = pd.DataFrame({"instrument": market["instrument"], "target_weight": 1.0 / n})
        planner = OrderPlanner()
        ms, mb = timed(lambda: planner.plan(book, target, market, 1e8), args.repeat)
        rows.append({"case": "rebalance", "instruments": n, "median_ms": ms, "peak_mb": mb})
        print(f"N={n:6d}  topk plan {rows[-2]['median_ms']:7.2f} ms ({rows[-2]['peak_mb']:.1f} MB)   "
              f"rebalance {n} orders {rows[-1]['median_ms']:7.2f} ms ({rows[-1]['peak_mb']:.1f} MB)")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "plan.json").write_text(json.dumps(rows, indent=2))
    import plotly.express as px

    fig = px.line(pd.DataFrame(rows), x="instruments", y="median_ms", color="case", markers=True,
                  title="Planning one session: median wall time vs instruments",
                  template="plotly_white")
    fig.write_html(out / "plan_scaling.html", include_plotlyjs=True)
    print(f"wrote {out / 'plan.json'} and {out / 'plan_scaling.html'}")


if __name__ == "__main__":
    main()
