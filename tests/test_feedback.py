"""LiveFeedback (issue 7): metrics by hand, against empyrical and Qlib, SQL aggregation on a
hand-made paper run, and the files on a fresh preview run of the real sample data."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bridge.errors import ConfigError
from bridge.feedback import metrics as M

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "feedback_v1.schema.json"
RDAGENT_KEYS = ["IC", "1day.excess_return_with_cost.annualized_return",
                "1day.excess_return_with_cost.max_drawdown"]


# ---- metrics by hand ------------------------------------------------------------------------
def test_qlib_risk_analysis_by_hand():
    r = [0.01, -0.02, 0.03]
    m = M.risk_analysis(r)                       # freq="day": N = 238
    mean = 0.02 / 3
    std = math.sqrt(((0.01 - mean) ** 2 + (-0.02 - mean) ** 2 + (0.03 - mean) ** 2) / 2)
    assert m["mean"] == pytest.approx(0.0066666667)
    assert m["std"] == pytest.approx(std) == pytest.approx(0.0251661148)
    assert m["annualized_return"] == pytest.approx(mean * 238) == pytest.approx(1.5866666667)
    assert m["information_ratio"] == pytest.approx(mean / std * math.sqrt(238))
    assert m["information_ratio"] == pytest.approx(4.086778, rel=1e-6)
    # cumulative SUM 0.01, -0.01, 0.02: worst gap to the running max is -0.02
    assert m["max_drawdown"] == pytest.approx(-0.02)
    assert M.risk_analysis(r, freq="week")["annualized_return"] == pytest.approx(mean * 50)
    one = M.risk_analysis([0.01])
    assert math.isnan(one["std"]) and math.isnan(one["information_ratio"])


def test_geometric_metrics_by_hand():
    r = [0.1, -0.5, 0.2]                         # NAV 1.1, 0.55, 0.66
    assert M.total_return(r) == pytest.approx(-0.34)
    assert M.max_drawdown(r) == pytest.approx(-0.5)        # 0.55 / 1.1 - 1
    assert M.annualized_return(r, periods=3) == pytest.approx(-0.34)
    assert M.annualized_return(r, periods=6) == pytest.approx(0.66 ** 2 - 1)
    assert M.calmar(r, periods=3) == pytest.approx(-0.34 / 0.5)
    std = math.sqrt(0.2866666667 / 2)
    assert M.volatility(r, periods=4) == pytest.approx(std * 2)
    assert M.sharpe(r, periods=1) == pytest.approx(-0.2 / 3 / std) == pytest.approx(-0.1760902)
    assert M.max_drawdown([-0.1]) == pytest.approx(-0.1)   # the start (1.0) counts as a peak
    assert M.max_drawdown([0.1, 0.2]) == 0.0 and math.isnan(M.calmar([0.1, 0.2]))
    assert math.isnan(M.sharpe([0.01, 0.01]))               # zero std: undefined, not inf


def test_ic_by_hand():
    dates = ["d1"] * 3 + ["d2"] * 3 + ["d3"] * 3
    scores = [1, 2, 3] * 3
    labels = [1, 2, 3, 3, 2, 1, 1, 3, 2]
    d, ic, ric = M.calc_ic(dates, scores, labels)
    assert list(d) == ["d1", "d2", "d3"]
    np.testing.assert_allclose(ic, [1.0, -1.0, 0.5])
    np.testing.assert_allclose(ric, [1.0, -1.0, 0.5])
    s = M.ic_summary(ic, ric)
    assert s["IC"] == pytest.approx(0.5 / 3)
    assert s["ICIR"] == pytest.approx((0.5 / 3) / np.std([1, -1, 0.5], ddof=1))
    assert s["ICIR"] == pytest.approx(0.1601282)
    # Spearman differs from Pearson on a non-linear monotone label; a constant date is NaN
    d, ic, ric = M.calc_ic(["a"] * 4 + ["b"] * 3, [1, 2, 3, 4, 1, 2, 3], [1, 2, 3, 100, 5, 5, 5])
    assert ric[0] == pytest.approx(1.0) and ic[0] < 0.9 and math.isnan(ic[1])


def test_slippage_and_pa_by_hand():
    bps = M.slippage_bps(["buy", "SELL", "buy"], [10.1, 9.9, 9.95], [10, 10, 10])
    np.testing.assert_allclose(bps, [100.0, 100.0, -50.0])
    np.testing.assert_allclose(M.price_advantage(["buy", "sell"], [10.1, 10.1], [10, 10]),
                               [-0.01, 0.01])


def test_ic_matches_qlib_calc_ic():
    alpha = pytest.importorskip("qlib.contrib.eva.alpha")
    rng = np.random.default_rng(7)
    idx = pd.MultiIndex.from_product([pd.date_range("2020-01-01", periods=30), range(40)],
                                     names=["datetime", "instrument"])
    pred = pd.Series(rng.normal(size=len(idx)), index=idx)
    label = pd.Series(0.3 * pred.to_numpy() + rng.normal(size=len(idx)), index=idx)
    ic, ric = alpha.calc_ic(pred, label)
    d, ic2, ric2 = M.calc_ic(idx.get_level_values(0), pred.to_numpy(), label.to_numpy())
    np.testing.assert_allclose(ic2, ic.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(ric2, ric.to_numpy(), rtol=1e-10)
    s = M.ic_summary(ic2, ric2)
    assert s["ICIR"] == pytest.approx(ic.mean() / ic.std())
    assert s["Rank ICIR"] == pytest.approx(ric.mean() / ric.std())


# ---- hand-made paper run through the SQL ----------------------------------------------------
def _ms(ts: str) -> int:
    return int(pd.Timestamp(ts).value // 10**6)


@pytest.fixture
def paper_db(tmp_path):
    """A tiny paper run written straight into bridge's tables, plus bars and a benchmark."""
    import polars as pl

    from bridge.store.duck import connect

    data = tmp_path / "data"
    data.mkdir()
    d1, d2 = datetime(2010, 8, 12).date(), datetime(2010, 8, 13).date()
    inst = ["AAPL", "IBM", "MSFT", "XOM"]
    close2 = {"AAPL": 101.0, "MSFT": 102.0, "XOM": 104.0, "IBM": 103.0}
    open2 = {"AAPL": 100.01, "MSFT": 50.0, "XOM": 100.0, "IBM": 100.0}
    rows = [{"datetime": d1, "instrument": i, "open": 100.0, "high": 100.0, "low": 100.0,
             "close": 100.0, "volume": 1e6} for i in inst]
    rows += [{"datetime": d2, "instrument": i, "open": open2[i], "high": 200.0, "low": 1.0,
              "close": close2[i], "volume": 1e6} for i in inst]
    pl.DataFrame(rows).write_parquet(data / "bars.parquet")
    pl.DataFrame({"datetime": [d1, d2], "instrument": ["SPX"] * 2,
                  "close": [1000.0, 1010.0]}).write_parquet(data / "benchmark.parquet")
    db = tmp_path / "paper.duckdb"
    order_cols = ("client_order_id, run_id, mode, broker, strategy_id, decision_snapshot_id, "
                  "instrument, side, quantity, order_type, limit_price, time_in_force, px_intent, "
                  "created_ts_ms, status, filled_quantity, avg_fill_price, commission, "
                  "broker_order_id, reject_reason, deny_reason, last_status_ts_ms")
    t0 = _ms("2010-08-12 20:30")
    with connect(db) as con:
        con.execute("INSERT INTO decision_snapshot VALUES ('ds-1', '2010-08-12', '2010-08-12', "
                    "'2010-08-13', 'US', '{}', 'h', 'h', 10000, 0, 2)")
        con.execute("INSERT INTO planned_order (snapshot_id, seq, instrument, side, quantity, price)"
                    " VALUES ('ds-1', 0, 'AAPL', 'buy', 10, 100.0), "
                    "('ds-1', 1, 'MSFT', 'sell', 20, 50.0)")
        con.execute("INSERT INTO snapshot_signal VALUES ('ds-1','AAPL',1), ('ds-1','MSFT',2), "
                    "('ds-1','XOM',3), ('ds-1','IBM',4)")
        con.execute("INSERT INTO trade_run (run_id, snapshot_id, mode, strategy_id) "
                    "VALUES ('run-1', 'ds-1', 'paper', 's1')")
        con.execute(f"INSERT INTO exec_order ({order_cols}) VALUES "
                    f"('o1','run-1','paper','sim','s1','ds-1','AAPL','buy',10,'market',NULL,'day',"
                    f"100.0,{t0},'FILLED',10,100.02,1.0,'b1',NULL,NULL,{t0}),"
                    f"('o2','run-1','paper','sim','s1','ds-1','MSFT','sell',20,'market',NULL,'day',"
                    f"50.0,{t0},'CANCELED',10,49.99,0.5,'b2',NULL,NULL,{t0}),"
                    f"('o3','run-1','paper','sim','s1','ds-1','XOM','buy',5,'market',NULL,'day',"
                    f"100.0,{t0},'DENIED',0,NULL,0,NULL,NULL,'NOTIONAL_EXCEEDS_MAX_PER_ORDER',{t0}),"
                    f"('o4','run-1','paper','sim','s1','ds-1','IBM','buy',5,'market',NULL,'day',"
                    f"100.0,{t0},'REJECTED',0,NULL,0,NULL,'insufficient buying power',NULL,{t0})")
        t1 = _ms("2010-08-13 13:30")
        con.execute(f"INSERT INTO exec_fill (exec_id, client_order_id, run_id, mode, strategy_id, "
                    f"instrument, side, quantity, price, commission, fees, ts_ms) VALUES "
                    f"('f1','o1','run-1','paper','s1','AAPL','buy',10,100.02,1.0,0,{t1}),"
                    f"('f2','o2','run-1','paper','s1','MSFT','sell',10,49.99,0.5,0,{t1})")
        con.execute(f"INSERT INTO exec_account VALUES ('s1','paper',{_ms('2010-08-12 09:00')},"
                    f"10000,0,10000), ('s1','paper',{t0},10000,0,10000),"
                    f"('s1','paper',{_ms('2010-08-13 21:00')},9498.4,600,10100)")
        con.execute(f"INSERT INTO audit_log VALUES ({_ms('2010-08-13 15:00')},'RISK_STATE',NULL,"
                    f"true,'','ops','{{\"from\": \"ACTIVE\", \"to\": \"REDUCING\"}}')")
    return db, data


def test_paper_run_aggregates_by_hand(paper_db):
    from bridge.feedback.aggregate import aggregate

    db, data = paper_db
    (fb,) = aggregate(db, data, mode="paper")
    assert (fb.instance, fb.mode, fb.period["sessions"]) == ("s1", "paper", 2)
    t, e = fb.summary["trading"], fb.summary["execution"]
    assert t["n_orders"] == 4 and t["n_filled"] == 1 and t["n_partial"] == 1
    assert t["fill_ratio"] == pytest.approx(20 / 35)          # DENIED never reached the venue
    assert t["n_canceled"] == 1
    assert t["denials_by_reason"] == {"NOTIONAL_EXCEEDS_MAX_PER_ORDER": 1}
    assert t["rejects_by_reason"] == {"insufficient buying power": 1}
    assert t["trading_state_changes"] == {"n": 1, "transitions": {"ACTIVE->REDUCING": 1}}
    assert t["costs"] == pytest.approx(1.5)
    dec, arr = e["slippage_bps"]["decision"], e["slippage_bps"]["arrival"]
    assert dec["buy"]["mean"] == pytest.approx(2.0) and dec["sell"]["mean"] == pytest.approx(2.0)
    assert arr["buy"]["mean"] == pytest.approx((100.02 / 100.01 - 1) * 1e4)
    assert arr["sell"]["mean"] == pytest.approx(2.0)
    assert e["pa"]["mean"] == pytest.approx(-((100.02 / 100.01 - 1) * 1e4 + 2.0) / 2 / 1e4)
    gap = e["gap_ticks"]                                       # 2 ticks (AAPL), 1 tick (MSFT)
    assert gap["n"] == 2 and gap["p95"] == pytest.approx(1.95)
    assert gap["share_within_1_tick"] == pytest.approx(0.5)
    d = fb.daily
    assert list(d.index.strftime("%Y-%m-%d")) == ["2010-08-12", "2010-08-13"]
    assert d["return"].iloc[1] == pytest.approx((10100 - 10000 + 1.5) / 10000)
    assert d["cost"].iloc[1] == pytest.approx(1.5 / 10000)
    assert d["turnover"].iloc[1] == pytest.approx((1000.2 + 499.9) / 10000)
    assert d["bench"].iloc[1] == pytest.approx(0.01)
    # 0.01015 gross - 0.01 bench - 0.00015 cost
    assert d["excess_return_with_cost"].iloc[1] == pytest.approx(0.0, abs=1e-15)
    assert d["excess_return_without_cost"].iloc[1] == pytest.approx(0.00015)
    sig = fb.summary["signal"]
    assert sig["source"] == "snapshot_signal" and sig["n_dates"] == 1
    assert sig["Rank IC"] == pytest.approx(0.8) and sig["IC"] == pytest.approx(0.8)


def test_periods(paper_db):
    from datetime import date

    from bridge.feedback.aggregate import aggregate, resolve_period

    last = date(2010, 8, 13)                                   # a Friday
    assert resolve_period("week", date(2010, 1, 4), last)[1:] == (date(2010, 8, 9), last)
    assert resolve_period("month", date(2010, 1, 4), last)[1] == date(2010, 8, 1)
    assert resolve_period("2010-02-01:2010-03-01", date(2010, 1, 4), last) == \
        ("2010-02-01_2010-03-01", date(2010, 2, 1), date(2010, 3, 1))
    with pytest.raises(ConfigError):
        resolve_period("year", date(2010, 1, 4), last)
    db, data = paper_db
    (fb,) = aggregate(db, data, period="day")
    # an order is dated by its first fill, else by its creation (o3, o4: 2010-08-12)
    assert fb.period["sessions"] == 1 and fb.summary["trading"]["n_orders"] == 2
    with pytest.raises(ConfigError, match="nope"):
        aggregate(db, data, instances=["nope"])
    with pytest.raises(ConfigError):
        aggregate(db, data, mode="backtest")


def test_order_spans_stand_for_the_order_scan(paper_db):
    from datetime import date

    from bridge.feedback.aggregate import create_views, list_instances, order_stats
    from bridge.store.duck import connect

    db, data = paper_db
    with connect(db) as con:       # an order created after the last account row
        con.execute("INSERT INTO exec_order (client_order_id, run_id, mode, strategy_id, "
                    "instrument, side, quantity, created_ts_ms, status, deny_reason) VALUES "
                    f"('o5', 'run-1', 'paper', 's1', 'IBM', 'buy', 1, {_ms('2010-08-16 15:00')}, "
                    "'DENIED', 'TRADING_HALTED')")
        create_views(con, data)
        scanned = list_instances(con)
        spans = order_stats(con, whole_history=True)
        assert list_instances(con, order_spans=spans) == scanned
    assert (scanned[0]["first"], scanned[0]["last"]) == (date(2010, 8, 12), date(2010, 8, 16))


# ---- real sample data: fresh preview run -> files -------------------------------------------
@pytest.fixture(scope="module")
def real_feedback(sample_dir, tmp_path_factory):
    from bridge.feedback.export import write_feedback
    from bridge.preview.pipeline import run_pipeline

    tmp = tmp_path_factory.mktemp("fb")
    db = tmp / "bridge.duckdb"
    run_pipeline(sample_dir, db, created_at=datetime(2026, 1, 1))
    folders = write_feedback(db, sample_dir, tmp / "feedback",
                             generated_at="2026-01-01T00:00:00+00:00")
    return db, {f.parts[-3]: f for f in folders}


@pytest.mark.realdata
def test_real_run_files_read_like_rdagent(real_feedback):
    _, folders = real_feedback
    assert set(folders) == {"momentum_top50", "reversal_top50", "ew_buy_hold"}
    for name in ("momentum_top50", "reversal_top50"):
        path = folders[name] / "qlib_res.csv"
        res = pd.read_csv(path, index_col=0).iloc[:, 0]          # exactly RD-Agent's read
        vals = [res.loc[k] for k in RDAGENT_KEYS]
        assert all(np.isfinite(v) for v in vals), (name, vals)
        for k in ("ICIR", "Rank IC", "Rank ICIR"):
            assert np.isfinite(res.loc[k])
        for twin in ("with_cost", "without_cost"):
            for m in ("annualized_return", "max_drawdown", "information_ratio"):
                assert np.isfinite(res.loc[f"1day.excess_return_{twin}.{m}"])
        assert np.isfinite(res.loc["live.sharpe"])
        ret = pd.read_pickle(folders[name] / "ret.pkl")
        assert list(ret.columns) == ["account", "return", "total_turnover", "turnover",
                                     "total_cost", "cost", "value", "cash", "bench"]
        assert isinstance(ret.index, pd.DatetimeIndex) and ret.index.name == "datetime"
        assert len(ret) == 245 and ret.notna().all().all()
        for table in ("daily", "orders", "ic"):
            assert len(pd.read_parquet(folders[name] / f"{table}.parquet")) > 0


@pytest.mark.realdata
def test_real_run_last_day_without_orders_validates(real_feedback, sample_dir, tmp_path):
    """Period "day": buy-and-hold has no order that day; std/IR are undefined -> null."""
    jsonschema = pytest.importorskip("jsonschema")
    from bridge.feedback.export import write_feedback

    db, _ = real_feedback
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    for folder in write_feedback(db, sample_dir, tmp_path, period="day", mode="preview"):
        doc = json.loads((folder / "feedback.json").read_text())
        validator.validate(doc)
        assert doc["period"]["sessions"] == 1 and doc["qlib"]["excess_return_with_cost"]["std"] is None
        if doc["instance"]["id"] == "ew_buy_hold":
            assert doc["trading"]["n_orders"] == 0
            assert doc["execution"]["slippage_bps"]["decision"]["buy"] == {
                "n": 0, "mean": None, "value_weighted": None, "p95": None}


@pytest.mark.realdata
def test_real_run_json_validates(real_feedback):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for folder in real_feedback[1].values():
        doc = json.loads((folder / "feedback.json").read_text())
        validator.validate(doc)
        assert doc["schema"] == "bridge.live_feedback/v1"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**doc, "schema": "bridge.live_feedback/v2"})


@pytest.mark.realdata
def test_real_run_matches_account_and_independent_libraries(real_feedback):
    """Same series through empyrical-reloaded and Qlib's risk_analysis."""
    empyrical = pytest.importorskip("empyrical")
    evaluate = pytest.importorskip("qlib.contrib.evaluate")
    db, folders = real_feedback
    ret = pd.read_pickle(folders["momentum_top50"] / "ret.pkl")
    net = ret["return"] - ret["cost"]
    # the net return compounds back to the account exactly
    nav = 1_000_000.0 * np.cumprod(1 + net.to_numpy())
    np.testing.assert_allclose(nav, ret["account"].to_numpy(), rtol=1e-12)
    doc = json.loads((folders["momentum_top50"] / "feedback.json").read_text())
    g = doc["returns"]
    assert g["sharpe"] == pytest.approx(empyrical.sharpe_ratio(net), rel=1e-10)
    assert g["max_drawdown"] == pytest.approx(empyrical.max_drawdown(net), rel=1e-10)
    assert g["annualized_return"] == pytest.approx(empyrical.annual_return(net), rel=1e-10)
    assert g["volatility"] == pytest.approx(empyrical.annual_volatility(net), rel=1e-10)
    assert g["calmar"] == pytest.approx(empyrical.calmar_ratio(net), rel=1e-10)
    # max drawdown also equals the account's own drawdown column (peak includes the start)
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        dd = con.sql("SELECT min(drawdown) FROM preview_account "
                     "WHERE preview_id = 'momentum_top50'").fetchall()[0][0]
    assert g["max_drawdown"] == pytest.approx(dd, abs=1e-12)
    res = pd.read_csv(folders["momentum_top50"] / "qlib_res.csv", index_col=0).iloc[:, 0]
    for name, series in (("excess_return_without_cost", ret["return"] - ret["bench"]),
                         ("excess_return_with_cost", ret["return"] - ret["bench"] - ret["cost"])):
        q = evaluate.risk_analysis(series, freq="day")["risk"]
        for k in M.QLIB_RISK_NAMES:
            assert res.loc[f"1day.{name}.{k}"] == pytest.approx(q[k], rel=1e-10), (name, k)


@pytest.mark.realdata
def test_real_run_signal_quality_recomputed(real_feedback, sample_dir):
    """IC of momentum_20 vs next-session returns, computed independently with pandas."""
    from bridge.market.data import Panel, load_bars
    from bridge.research import momentum

    _, folders = real_feedback
    doc = json.loads((folders["momentum_top50"] / "feedback.json").read_text())
    bars = load_bars(sample_dir).to_pandas()
    bars["datetime"] = pd.to_datetime(bars["datetime"])
    wide = bars.pivot(index="datetime", columns="instrument", values="close")
    label = (wide.shift(-1) / wide - 1).stack().rename("label")
    sig = momentum(Panel.from_bars(load_bars(sample_dir)), 20).set_index(["datetime",
                                                                          "instrument"])["score"]
    df = pd.concat([sig, label], axis=1, join="inner").dropna()
    ic = df.groupby(level=0).apply(lambda x: x["score"].corr(x["label"]))
    assert doc["signal"]["IC"] == pytest.approx(ic.mean(), rel=1e-9)
    assert doc["signal"]["ICIR"] == pytest.approx(ic.mean() / ic.std(), rel=1e-9)
    assert doc["signal"]["n_dates"] == ic.notna().sum()


@pytest.mark.realdata
def test_real_paper_loop_feedback(sample_dir, tmp_path):
    """The real-data paper loop of test_paper (snapshot -> risk -> paper broker -> DuckDB), then
    LiveFeedback in paper mode: the SQL runs on real execution records and the JSON validates."""
    jsonschema = pytest.importorskip("jsonschema")
    from bridge.brokers.sim import PaperBroker
    from bridge.brokers.sim_executor import SimExecutor, advance_session
    from bridge.execution.run import TradeRun
    from bridge.feedback.export import write_feedback
    from bridge.market.data import Panel, load_bars
    from bridge.planner.job import plan_tomorrow, read_positions
    from bridge.planner.tomorrow import PlanParams
    from bridge.portfolio import TopkDropout
    from bridge.research import momentum
    from bridge.risk import RiskEngine

    panel = Panel.from_bars(load_bars(sample_dir))
    preds = momentum(panel, 20)
    db = tmp_path / "paper.duckdb"
    now = [int(pd.Timestamp("2010-08-12 20:00").value // 10**6)]
    broker = PaperBroker(panel, 1_000_000.0, fill_at="open", clock=lambda: now[0], seed=3)
    ex = SimExecutor(broker)
    run = TradeRun(db, ex, RiskEngine.default(rate_per_s=1e4, burst=1e4, max_weight=0.2,
                                              max_notional=1e6), lambda: now[0],
                   strategy_id="momentum", mode="paper")
    book = read_positions(None)
    for day in ("2010-08-12", "2010-08-13"):
        broker._t = int(np.searchsorted(panel.sessions, np.datetime64(day)))
        out = plan_tomorrow(preds[preds["datetime"] <= day], book, broker.get_account()["cash"],
                            PlanParams(topk=TopkDropout(topk=20, n_drop=4)), sample_dir, db,
                            tmp_path / "out", created_at=datetime(2010, 8, 18))
        rep = run.submit_snapshot(out.snapshot.snapshot_id, now[0])
        advance_session(ex, out.snapshot.trade_date.date())
        run.collect(rep)
        book = pd.DataFrame([{"instrument": i, "amount": p["qty"]}
                             for i, p in broker.get_positions().items()])
        now[0] += 86_400_000
    (folder,) = write_feedback(db, sample_dir, tmp_path / "fb", mode="paper")
    doc = json.loads((folder / "feedback.json").read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(doc)
    assert doc["instance"] == {"id": "momentum", "mode": "paper", "display_name": "momentum"}
    t, e = doc["trading"], doc["execution"]
    assert t["n_filled"] >= 15 and 0 < t["fill_ratio"] <= 1
    assert all(":" not in reason for reason in t["denials_by_reason"])    # grouped by code
    assert e["gap_ticks"]["n"] >= 15 and e["gap_ticks"]["p95"] >= 0
    assert e["slippage_bps"]["decision"]["buy"]["n"] > 0
    # arrival = the bar's open of the fill session; the broker fills market orders at the open
    assert e["slippage_bps"]["arrival"]["buy"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert doc["signal"]["source"] == "snapshot_signal" and doc["signal"]["n_dates"] == 2
    res = pd.read_csv(folder / "qlib_res.csv", index_col=0).iloc[:, 0]
    assert np.isfinite(res.loc["1day.excess_return_with_cost.annualized_return"])
    orders = pd.read_parquet(folder / "orders.parquet")
    assert orders["order_id"].notna().all() and len(orders) == t["n_orders"]


def test_aggregation_is_the_same_run_after_run_on_many_row_groups(real_feedback, sample_dir,
                                                                   tmp_path):
    """Over many DuckDB row groups (parallel partial sums) the figures are bit-identical from
    one run to the next: the order sums are exact (fixed point), not order-dependent doubles."""
    import shutil

    from bridge.feedback.aggregate import aggregate
    from bridge.store.duck import connect

    db = tmp_path / "many.duckdb"
    shutil.copy(real_feedback[0], db)
    with connect(db) as con:   # ~520k trades: several row groups, several threads
        con.execute("INSERT INTO preview_trade SELECT t.* REPLACE (t.quantity + r.range * 1e-3 "
                    "AS quantity, t.trade_value * (1 + r.range * 1e-7) AS trade_value) "
                    "FROM preview_trade t, range(1, 100) r")
        n = con.execute("SELECT count(*) FROM preview_trade").fetchall()[0][0]
    assert n > 4 * 122_880
    runs = [json.dumps({f.instance: [f.summary, f.daily.to_json(), f.ic.to_json()]
                        for f in aggregate(db, sample_dir, period="all")}, sort_keys=True,
                       default=repr)
            for _ in range(4)]
    assert len(set(runs)) == 1
    assert json.loads(runs[0])["momentum_top50"][0]["trading"]["traded_value"] > 0
