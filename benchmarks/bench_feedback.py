"""LiveFeedback aggregation over 10 million fills and 100 instances: DuckDB SQL vs pandas groupby.

Run (from the repository root, after ``make data preview``)::

    .venv/bin/python benchmarks/bench_feedback.py [--fills 10000000] [--instances 100]
        [--db data/bridge.duckdb] [--work /tmp/bench_feedback] [--seed 7] [--out FILE]

SYNTHETIC DATA, clearly labelled: the fills are **resampled** with a seeded RNG
(``numpy.random.default_rng(seed)``) from the real ``preview_trade`` rows of the three preview
instances in ``data/bridge.duckdb`` (5,229 real fills): each synthetic fill copies a random real
fill (day, instrument, side, quantity, prices, value, fee) and is assigned to one of
``--instances`` synthetic instances ``syn_000 .. syn_099``. When the stored rows have no
``market_price`` (databases written before that column existed) or it equals ``deal_price`` on
every row (the preview fills at the session's deal price), a synthetic one is drawn as
``deal_price / (1 + side * N(2 bps, 5 bps))`` so that slippage is not identically zero. Each
synthetic instance gets the account series (``preview_account``) of a real instance, cycled.
The result is a DuckDB file ``<work>/fills.duckdb`` (made once, reused).

Measured, each in its own subprocess, ``--repeat`` times, the two sides alternating so that both
see the same load (best and median wall time; CPU time of all threads, ``cpu_s``, and peak RSS
from ``getrusage``; the machine may be shared, so the best of several runs is the figure):

``duckdb``
    open the file, create bridge.feedback's views, run ``bridge.feedback.aggregate.order_stats``
    (period "all": counts, fill ratio, traded value, fees, slippage vs decision and arrival by
    side: mean, value-weighted, p95; Qlib ``pa`` mean/value-weighted/pos; order spans), list
    the instances with their first and last session, run :data:`REASONS_SQL` for all
    instances, fetch the daily series and apply the Qlib/geometric metric functions per
    instance, in the order ``aggregate`` runs them.
``pandas``
    the same figures, each instance's first and last session included, with a pandas groupby on
    the same rows; like the SQL (``preview_only``) it computes the slippage once for both
    references, which are the same price for the preview. The load of the table into pandas is
    timed separately (``load_s``) and excluded from ``wall_s``, which favours pandas.

Targets (issue 7): DuckDB under 3 s, at least 5x faster than pandas, peak memory under 4 GB.
Results are printed as JSON (and written to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def _cpu_s() -> float:
    """User + system CPU time of this process so far, all threads (DuckDB runs several)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def generate(src_db: Path, out: Path, n_fills: int, n_inst: int, seed: int) -> dict:
    """Write the resampled fills (table ``preview_trade``) and accounts to ``out``."""
    import duckdb
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from bridge.store.schema import DDL

    with duckdb.connect(str(src_db), read_only=True) as src:
        trades = src.sql("SELECT * FROM preview_trade").df()
        acct = src.sql("SELECT * FROM preview_account ORDER BY preview_id, trading_day").df()
        strat = src.sql("SELECT * FROM preview_strategy ORDER BY preview_id").df()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(trades), n_fills)
    inst = rng.integers(0, n_inst, n_fills).astype(np.int32)
    names = [f"syn_{i:03d}" for i in range(n_inst)]

    def dict_col(values):          # strings as dictionary codes: no 10M Python objects
        cat = pd.Categorical(values.fillna(""))
        return pa.DictionaryArray.from_arrays(pa.array(cat.codes[idx].astype(np.int32)),
                                              pa.array(list(cat.categories), pa.string()))

    table = {"preview_id": pa.DictionaryArray.from_arrays(pa.array(inst), pa.array(names))}
    for c in ("trading_day", "datetime", "quantity", "deal_price", "trade_value", "fee"):
        table[c] = pa.array(trades[c].to_numpy()[idx])
    for c in ("instrument", "side", "reason"):
        table[c] = dict_col(trades[c])
    real_ref = "market_price" in trades and bool(
        (trades["market_price"] != trades["deal_price"]).any())
    if real_ref:
        table["market_price"] = pa.array(trades["market_price"].to_numpy()[idx])
        synthetic_ref = False
    else:
        sgn = np.where(trades["side"].to_numpy()[idx] == "buy", 1.0, -1.0)
        slip = rng.normal(2e-4, 5e-4, n_fills)
        table["market_price"] = pa.array(trades["deal_price"].to_numpy()[idx] / (1.0 + sgn * slip))
        synthetic_ref = True
    fills = pa.table(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    real_ids = list(strat["preview_id"])
    with duckdb.connect(str(out)) as con:
        for name in ("preview_strategy", "preview_account", "preview_cut", "preview_trade"):
            con.execute(f"CREATE TABLE {name} ({DDL[name]}\n)")
        con.register("_fills", fills)
        con.execute("INSERT INTO preview_trade BY NAME SELECT * FROM _fills")
        con.unregister("_fills")
        for i, name in enumerate(names):
            real = real_ids[i % len(real_ids)]
            s = strat[strat["preview_id"] == real].assign(preview_id=name, signal=None)
            a = acct[acct["preview_id"] == real].assign(preview_id=name)
            con.register("_s", s)
            con.register("_a", a)
            con.execute("INSERT INTO preview_strategy BY NAME SELECT * FROM _s")
            con.execute("INSERT INTO preview_account BY NAME SELECT * FROM _a")
        con.unregister("_s")
        con.unregister("_a")
        n = con.sql("SELECT count(*) FROM preview_trade").fetchall()[0][0]
    return {"fills": int(n), "instances": n_inst, "real_fills_resampled": len(trades),
            "synthetic_market_price": synthetic_ref, "seed": seed}


def phase_duckdb(db: Path, data_dir: Path) -> dict:
    import duckdb

    from bridge.feedback import aggregate as A
    from bridge.feedback import metrics as M

    t0, c0 = time.perf_counter(), _cpu_s()        # imports excluded, as for pandas
    con = duckdb.connect(str(db), read_only=True)
    A.create_views(con, data_dir)
    # as bridge.feedback.aggregate.aggregate does for period "all": the statistics first, their
    # order spans then complete each instance's first and last session
    stats = A.order_stats(con, whole_history=True)
    insts = A.list_instances(con, mode="preview", order_spans=stats)
    A._ranges_table(con, [(i["instance"], "preview", i["first"], i["last"]) for i in insts])
    reasons = con.sql(A.REASONS_SQL).df()
    daily = con.sql('SELECT instance, "return", cost, bench FROM fb_daily ORDER BY instance, day').df()
    per = {}
    for inst, d in daily.groupby("instance", sort=True):
        net = (d["return"] - d["cost"]).to_numpy()
        per[inst] = {**M.risk_analysis((d["return"] - d["bench"] - d["cost"]).to_numpy()),
                     **M.geometric_metrics(net)}
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    con.close()
    return {"wall_s": wall, "cpu_s": cpu, "peak_mb": _peak_mb(), "instances": len(stats),
            "n_reason_rows": len(reasons),
            "check": {"n_orders": int(stats["n_orders"].sum()),
                      "fees": float(stats["fees"].sum()),
                      "slip_decision_buy_mean_syn_000": float(stats.loc[stats["instance"] == "syn_000",
                                                          "slip_decision_buy_mean"].iloc[0]),
                      "slip_decision_buy_p95_syn_000": float(stats.loc[stats["instance"] == "syn_000",
                                                         "slip_decision_buy_p95"].iloc[0])}}


def phase_pandas(db: Path, data_dir: Path) -> dict:
    import duckdb
    import numpy as np
    import pandas as pd

    from bridge.feedback import metrics as M

    t_load = time.perf_counter()
    with duckdb.connect(str(db), read_only=True) as con:
        f = con.sql("SELECT preview_id, trading_day, side, quantity, deal_price, market_price, "
                    "trade_value, fee FROM preview_trade").df()
        cuts = con.sql("SELECT * FROM preview_cut").df()
        acct = con.sql("SELECT a.*, s.initial_capital FROM preview_account a "
                       "JOIN preview_strategy s USING (preview_id)").df()
    bench = pd.read_parquet(data_dir / "benchmark.parquet")
    load = time.perf_counter() - t_load
    t0, c0 = time.perf_counter(), _cpu_s()
    # the string comparison stays in Arrow (``.to_numpy() == "buy"`` would first make 10M
    # Python strings, ~0.6 s that a pandas user would not spend)
    sgn = np.where(f["side"].eq("buy").to_numpy(), 1.0, -1.0)
    # decision and arrival references are both market_price for the preview: slippage, its
    # sums and its p95 are computed once for both, as the SQL does (``preview_only``)
    f["slip"] = sgn * (f["deal_price"] / f["market_price"] - 1.0) * 1e4
    f["slipv"] = f["slip"] * f["trade_value"]
    f["pos"] = (f["slip"] < 0).astype(np.float64)
    g = f.groupby("preview_id", sort=True, observed=True)
    value = g["trade_value"].sum()
    out = pd.DataFrame({"n_orders": g.size(), "fill_ratio": g["quantity"].sum() / g["quantity"].sum(),
                        "traded_value": value, "fees": g["fee"].sum(),
                        "pa_mean": -g["slip"].mean() / 1e4, "pa_vw": -g["slipv"].sum() / value / 1e4,
                        "pa_pos": g["pos"].mean(),
                        # each instance's first and last session (bridge: list_instances)
                        "first": g["trading_day"].min(), "last": g["trading_day"].max()})
    gs = f.groupby(["preview_id", "side"], sort=True, observed=True)
    by_side = pd.DataFrame({"mean": gs["slip"].mean(), "vw": gs["slipv"].sum() / gs["trade_value"].sum(),
                            "p95": gs["slip"].quantile(0.95), "n": gs["slip"].count()}).unstack("side")
    side = {"decision": by_side, "arrival": by_side}
    reasons = cuts.groupby(["preview_id", "reason"]).size()
    bench["day"] = pd.to_datetime(bench["datetime"])
    b = bench.set_index("day")["close"].pct_change()
    acct = acct.sort_values(["preview_id", "trading_day"])
    acct["prev"] = acct.groupby("preview_id")["total_value"].shift(1).fillna(acct["initial_capital"])
    acct["ret"] = (acct["total_value"] - acct["prev"] + acct["cost"]) / acct["prev"]
    acct["costr"] = acct["cost"] / acct["prev"]
    acct["bench"] = b.reindex(pd.to_datetime(acct["trading_day"])).fillna(0).to_numpy()
    per = {}
    for inst, d in acct.groupby("preview_id", sort=True):
        per[inst] = {**M.risk_analysis((d["ret"] - d["bench"] - d["costr"]).to_numpy()),
                     **M.geometric_metrics((d["ret"] - d["costr"]).to_numpy())}
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    return {"wall_s": wall, "cpu_s": cpu, "load_s": load, "peak_mb": _peak_mb(),
            "instances": len(out),
            "n_reason_rows": len(reasons),
            "check": {"n_orders": int(out["n_orders"].sum()), "fees": float(out["fees"].sum()),
                      "slip_decision_buy_mean_syn_000": float(side["decision"].loc["syn_000", ("mean", "buy")]),
                      "slip_decision_buy_p95_syn_000": float(side["decision"].loc["syn_000", ("p95", "buy")])}}


def _run_phase(phase: str, a: argparse.Namespace) -> dict:
    """One measurement of ``phase`` in a fresh interpreter."""
    cmd = [sys.executable, __file__, "--phase", phase, "--fills", str(a.fills),
           "--instances", str(a.instances), "--work", str(a.work), "--seed", str(a.seed),
           "--data-dir", str(a.data_dir)]
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    r["process_s"] = time.perf_counter() - t
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fills", type=int, default=10_000_000)
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--db", type=Path, default=ROOT / "data" / "bridge.duckdb")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_feedback"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--phase", choices=["duckdb", "pandas"], help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, help="also write the JSON result here")
    a = ap.parse_args()
    fills_db = a.work / f"fills_{a.fills}_{a.instances}_{a.seed}.duckdb"
    if a.phase:
        fn = phase_duckdb if a.phase == "duckdb" else phase_pandas
        print(json.dumps(fn(fills_db, a.data_dir)))
        return
    gen = None
    if not fills_db.exists():
        t = time.perf_counter()
        gen = generate(a.db, fills_db, a.fills, a.instances, a.seed)
        gen["generate_s"] = time.perf_counter() - t
    res = {"duckdb": [], "pandas": []}
    for _ in range(a.repeat):
        for phase, rs in res.items():        # alternating: both sides see the same load
            rs.append(_run_phase(phase, a))
    runs = {}
    for phase, rs in res.items():
        runs[phase] = min(rs, key=lambda r: r["wall_s"])
        for k in ("wall_s", "cpu_s"):
            runs[phase][f"all_{k}"] = [r[k] for r in rs]
            runs[phase][f"median_{k}"] = sorted(r[k] for r in rs)[len(rs) // 2]
    d, p = runs["duckdb"], runs["pandas"]
    result = {"label": "SYNTHETIC fills resampled from the real preview_trade rows (seeded RNG)",
              "fills": a.fills, "instances": a.instances, "seed": a.seed, "generated": gen,
              "duckdb": d, "pandas": p, "speedup_vs_pandas": p["wall_s"] / d["wall_s"],
              "speedup_vs_pandas_median": p["median_wall_s"] / d["median_wall_s"],
              "cpu_ratio_vs_pandas_median": p["median_cpu_s"] / d["median_cpu_s"],
              "speedup_vs_pandas_incl_load": (p["wall_s"] + p["load_s"]) / d["wall_s"],
              "targets": {"duckdb_under_3s": d["wall_s"] < 3.0,
                          "at_least_5x": p["wall_s"] / d["wall_s"] >= 5.0,
                          "peak_under_4gb": max(d["peak_mb"], p["peak_mb"]) < 4096}}
    print(json.dumps(result, indent=2))
    if a.out:
        a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
