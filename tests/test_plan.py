"""Tomorrow's orders: plan_session, DecisionSnapshot, `bridge plan`, on real data where it matters."""

from datetime import datetime

import pandas as pd
import pytest
from typer.testing import CliRunner

from bridge.cli import app
from bridge.errors import CalendarError, ValidationError
from bridge.market.calendar import next_session
from bridge.market.data import Panel, load_bars
from bridge.planner.job import plan_tomorrow, read_positions
from bridge.planner.tomorrow import PlanParams, plan_session
from bridge.portfolio import TopkDropout
from bridge.research import momentum
from bridge.store.snapshots import build_snapshot, load_snapshot, replan, snapshot_id

AS_OF = datetime(2010, 8, 20, 18)


def test_plan_session_by_hand():
    scores = pd.DataFrame({"instrument": ["A", "B", "C"], "score": [1.0, 3.0, 2.0]})
    book = pd.DataFrame({"instrument": ["A", "B"], "amount": [100.0, 50.0]})
    market = pd.DataFrame({"instrument": ["A", "B", "C"], "price": [10.0, 20.0, 40.0]})
    params = PlanParams(market="US", topk=TopkDropout(topk=2, n_drop=1, risk_degree=1.0))
    target, orders, cash = plan_session(scores, book, 0.0, market, params)
    # corrected mode: total = 100 * 10 + 50 * 20 = 2,000; A (worst) sold; C sized 2,000 / 2 / 40
    assert orders[["instrument", "side", "quantity"]].values.tolist() == [["A", "sell", 100.0],
                                                                        ["C", "buy", 24.0]]
    assert orders["fee"].tolist() == [1.0, 1.0]         # 5 bps below the USD 1 minimum
    assert cash == pytest.approx(1_000 - 1 - 960 - 1)
    with pytest.raises(ValidationError, match="unknown_instrument"):
        plan_session(scores, book.assign(instrument=["A", "Z"]), 0.0, market, params)


def test_snapshot_id_is_content_addressed():
    s = pd.DataFrame({"instrument": ["A"], "score": [1.0]})
    p = pd.DataFrame({"instrument": ["A"], "amount": [1.0]})
    m = pd.DataFrame({"instrument": ["A"], "price": [1.0]})
    a = build_snapshot("2010-01-04", "2010-01-05", PlanParams(), "h", 10.0, s, p, m)
    b = build_snapshot("2010-01-04", "2010-01-05", PlanParams(), "h", 10.0, s, p, m)
    c = build_snapshot("2010-01-04", "2010-01-05", PlanParams(), "h", 10.01, s, p, m)
    assert a.snapshot_id == b.snapshot_id != c.snapshot_id
    assert snapshot_id("2010-01-04", "2010-01-05", PlanParams(), "other", 10.0, a.scores, a.positions,
                       a.market) != a.snapshot_id


def test_xshg_beyond_published_calendar_is_refused():
    with pytest.raises(CalendarError, match="does not guess"):
        next_session("2026-12-31", "XSHG")
    assert next_session("2010-08-20", "XNYS") == pd.Timestamp("2010-08-23")


@pytest.mark.realdata
def test_tomorrow_on_real_data_and_replan_from_snapshot(sample_dir, tmp_path):
    preds = momentum(Panel.from_bars(load_bars(sample_dir)), 20)
    book = preds[preds["datetime"] == "2010-08-13"].nlargest(30, "score")[["instrument"]].assign(amount=100.0)
    params = PlanParams(topk=TopkDropout(topk=30, n_drop=3))
    db = tmp_path / "s.duckdb"
    out = plan_tomorrow(preds, book, 50_000.0, params, sample_dir, db, tmp_path / "out",
                        created_at=AS_OF)
    snap = out.snapshot
    assert snap.trade_date == pd.Timestamp("2010-08-23") and snap.signal_date == pd.Timestamp("2010-08-20")
    o = snap.orders
    assert (o.loc[o["side"] == "sell", "quantity"] <= 100).all()
    assert (o["quantity"] == o["quantity"].round()).all()
    assert out.created and all(f.exists() for f in out.files)
    assert pd.read_csv(out.files[0])["snapshot_id"].unique().tolist() == [snap.snapshot_id]
    # idempotent: the same decision is the same snapshot, stored once
    again = plan_tomorrow(preds, book, 50_000.0, params, sample_dir, db, tmp_path / "out", created_at=AS_OF)
    assert again.snapshot.snapshot_id == snap.snapshot_id and not again.created
    stored = load_snapshot(db, snap.snapshot_id)
    assert replan(stored).equals(stored.orders) and stored.orders.equals(o)
    with pytest.raises(KeyError):
        load_snapshot(db, "ds-nope")


@pytest.mark.realdata
def test_cli_plan_and_replay(sample_dir, tmp_path):
    book = tmp_path / "book.csv"
    pd.DataFrame({"instrument": ["AAPL", "MSFT"], "amount": [10, 25]}).to_csv(book, index=False)
    db = tmp_path / "s.duckdb"
    runner = CliRunner()
    res = runner.invoke(app, ["plan", "--positions", str(book), "--cash", "100000", "--topk", "5",
                              "--n-drop", "1", "--data-dir", str(sample_dir), "--db", str(db),
                              "--out", str(tmp_path / "out"), "--as-of", "2010-08-20T18:00:00"])
    assert res.exit_code == 0, res.output
    sid = next(w for w in res.output.split() if w.startswith("ds-"))
    assert "Orders for 2010-08-23 (scores of 2010-08-20)" in res.output
    rep = runner.invoke(app, ["plan", "--replay", sid, "--db", str(db)])
    assert rep.exit_code == 0 and "identical to the stored orders: True" in " ".join(rep.output.split())


def test_read_positions_bad_input(tmp_path):
    f = tmp_path / "p.csv"
    pd.DataFrame({"instrument": ["A", "A"], "amount": [1, 2]}).to_csv(f, index=False)
    with pytest.raises(ValidationError, match="duplicate_key"):
        read_positions(f)
    pd.DataFrame({"instrument": ["A"], "amount": [-1]}).to_csv(f, index=False)
    with pytest.raises(ValidationError, match="bad_amount"):
        read_positions(f)
    pd.DataFrame({"instrument": ["A"]}).to_csv(f, index=False)
    with pytest.raises(ValidationError, match="missing_column"):
        read_positions(f)
