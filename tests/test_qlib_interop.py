"""Qlib interop (provider export, pred.pkl import) and parity with Qlib's own backtest.

The parity tests run the same 20-day momentum signal through Qlib 0.9.7's
``TopkDropoutStrategy`` + ``SimulatorExecutor`` (daily, deal price close, fractional shares,
no price limits, costs from the bridge rules) and through bridge's preview engine in ``qlib``
mode, on the real S&P 500 sample (524 instruments, 245 sessions), and compare the daily holdings
(names and amounts) and the daily account value. Every difference is explained, with its measured
size, in ``docs/qlib_parity.md``.

Tests that need Qlib call ``pytest.importorskip("qlib")`` (through the ``qlib_provider``
fixture); the export format and pred-file tests run without it.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd
import polars as pl
import pytest

from bridge.errors import ConfigError, DataValidationError, SignalValidationError
from bridge.market.data import Panel, load_bars
from bridge.market.rules import US
from bridge.portfolio.topk import TopkDropout
from bridge.research import momentum
from bridge.research.qlib_io import (
    export_qlib_provider,
    qlib_fname,
    read_qlib_predictions,
    to_qlib_signal,
)

pytestmark = [
    pytest.mark.realdata,
    # Qlib's indicator of a day without orders (qlib/utils/index_data.py); not ours
    pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning"),
]

PRICE_FIELDS = ("open", "high", "low", "close", "volume")
COMMISSION_BPS, STAMP_BPS = 5.0, 10.0
CAPITAL = 1_000_000.0
TOPK, N_DROP = 50, 5


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bars(sample_dir) -> pl.DataFrame:
    return load_bars(sample_dir)


@pytest.fixture(scope="module")
def provider(bars, tmp_path_factory):
    """The real bars written as a Qlib provider directory (our own writer, no Qlib needed)."""
    return export_qlib_provider(bars, tmp_path_factory.mktemp("qlib_provider"))


@pytest.fixture(scope="module")
def qlib_provider(provider):
    """Qlib initialised on the exported provider (skips when pyqlib is not installed)."""
    qlib = pytest.importorskip("qlib")
    # Qlib's recorder pulls in mlflow; keep it quiet and local (PITFALLS.md)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    qlib.init(provider_uri=str(provider.path), region="us", logging_level=logging.WARNING,
              kernels=1)
    return provider


@pytest.fixture(scope="module")
def signal(bars) -> pd.DataFrame:
    """20-day momentum on the real bars (float64 closes), the one signal both engines trade."""
    return momentum(Panel.from_bars(bars), 20)


def _rules(fractional: bool = True):
    # Qlib: open_cost = commission, close_cost = commission + stamp duty, min_cost 0
    return US.with_(fractional=fractional, round_cents=False, commission_bps=COMMISSION_BPS,
                    min_commission=0.0, stamp_duty_bps=STAMP_BPS)


def _run_qlib(signal: pd.DataFrame, sessions: np.ndarray, trade_unit=None):
    """Qlib's own TopkDropout backtest; returns (report frame, {day: {CODE: amount}})."""
    from qlib.backtest import backtest
    from qlib.backtest.executor import SimulatorExecutor
    from qlib.contrib.strategy import TopkDropoutStrategy

    strategy = TopkDropoutStrategy(signal=to_qlib_signal(signal), topk=TOPK, n_drop=N_DROP)
    executor = SimulatorExecutor(time_per_step="day", generate_portfolio_metrics=True)
    # benchmark=None would make Qlib fall back to SH000300; a zero series disables it
    bench = pd.Series(0.0, index=pd.DatetimeIndex(sessions))
    portfolio, _ = backtest(
        str(sessions[0]), str(sessions[-1]), strategy, executor, benchmark=bench,
        account=CAPITAL,
        exchange_kwargs={"freq": "day", "codes": "all", "deal_price": "close",
                         "limit_threshold": None, "trade_unit": trade_unit,
                         "open_cost": COMMISSION_BPS / 1e4,
                         "close_cost": (COMMISSION_BPS + STAMP_BPS) / 1e4, "min_cost": 0.0})
    report, positions = portfolio["1day"]
    # Qlib keeps codes as its instruments file spells them; compare upper-case on both sides
    holdings = {pd.Timestamp(d): {k.upper(): v["amount"] for k, v in p.position.items()
                                  if isinstance(v, dict)}
                for d, p in positions.items()}
    return report, holdings


def _run_bridge(panel: Panel, signal: pd.DataFrame, fractional: bool = True,
                universe_exit: bool = True):
    """bridge's preview in qlib mode.

    Returns (account frame by day, {day: {CODE: amount}}, trades frame).
    """
    from bridge.preview import InstanceSpec, run_preview, signal_grid
    from bridge.signals import validate_signals

    # Qlib never cashes out a holding whose data ended: exit_grace=None does the same
    extra = {} if universe_exit else {"exit_grace": None}
    spec = InstanceSpec("parity", "topk_dropout", CAPITAL, signal="momentum_20",
                        topk=TopkDropout(topk=TOPK, n_drop=N_DROP, mode="qlib"),
                        deal_price="close", **extra)
    grid = signal_grid(panel, validate_signals(signal))
    res = run_preview(panel, [spec], {"momentum_20": grid}, _rules(fractional))
    acc = res.account.to_pandas()
    acc.index = pd.to_datetime(acc["trading_day"])
    pos = res.position.to_pandas()
    pos["trading_day"] = pd.to_datetime(pos["trading_day"])
    holdings = {d: dict(zip(g["instrument"].str.upper(), g["amount"], strict=True))
                for d, g in pos.groupby("trading_day")}
    return acc, holdings, res.trade.to_pandas()


def _float32_panel(bars: pl.DataFrame) -> Panel:
    """Bars with prices rounded to float32, exactly the values Qlib stores and reads back."""
    return Panel.from_bars(bars.with_columns(
        [pl.col(c).cast(pl.Float32).cast(pl.Float64) for c in PRICE_FIELDS]))


def _diff(qlib_run, bridge_run):
    """Per day: names only in Qlib, names only in bridge, max relative amount gap, account gap."""
    report, qh = qlib_run
    acc, bh, _ = bridge_run
    rows = []
    for day in report.index:
        q, b = qh.get(day, {}), bh.get(day, {})
        common = set(q) & set(b)
        amt = max((abs(q[k] - b[k]) / abs(b[k]) for k in common), default=0.0)
        total = acc.loc[day, "total_value"]
        rows.append({"day": day, "only_qlib": sorted(set(q) - set(b)),
                     "only_bridge": sorted(set(b) - set(q)), "amount_rel": amt,
                     "account_rel": abs(report.loc[day, "account"] - total) / total,
                     "n_qlib": len(q), "n_bridge": len(b)})
    out = pd.DataFrame(rows).set_index("day")
    out["same_names"] = (out["only_qlib"].str.len() == 0) & (out["only_bridge"].str.len() == 0)
    return out


@pytest.fixture(scope="module")
def qlib_fractional(qlib_provider, signal, bars):
    sessions = np.unique(bars["datetime"].to_numpy())
    return _run_qlib(signal, sessions)


# ----------------------------------------------------------------------------- export format


def test_provider_files_follow_dump_bin_format(provider, bars):
    sessions = np.unique(bars["datetime"].to_numpy().astype("datetime64[D]"))
    cal = (provider.path / "calendars" / "day.txt").read_text().split()
    assert cal == [str(d) for d in sessions]
    fut = (provider.path / "calendars" / "day_future.txt").read_text().split()
    assert fut[:-1] == cal and fut[-1] == "2010-08-23"  # next XNYS session after the last bar
    spans = pd.read_csv(provider.path / "instruments" / "all.txt", sep="\t", header=None,
                        names=["instrument", "start", "end"], keep_default_na=False)
    per = bars.group_by("instrument").agg(pl.col("datetime").min().alias("start"),
                                          pl.col("datetime").max().alias("end")).sort("instrument")
    assert spans["instrument"].tolist() == per["instrument"].to_list()
    assert spans["start"].tolist() == [str(d) for d in per["start"].to_list()]
    assert spans["end"].tolist() == [str(d) for d in per["end"].to_list()]
    # one instrument with a gap inside its span: header = index of its first session, NaN on gaps
    panel = Panel.from_bars(bars)
    has = np.isfinite(panel.close)
    first = has.argmax(axis=0)
    last = len(sessions) - 1 - has[::-1].argmax(axis=0)
    gaps = [n for n in range(len(panel.instruments))
            if (~has[first[n]:last[n] + 1, n]).any()]
    assert gaps, "the sample has per-instrument gaps"
    for n in gaps[:5] + [int(np.argmax(first))]:
        code = panel.instruments[n]
        raw = np.fromfile(provider.path / "features" / qlib_fname(code) / "close.day.bin",
                          dtype="<f4")
        assert raw[0] == first[n] and len(raw) == last[n] - first[n] + 2
        want = panel.close[first[n]:last[n] + 1, n].astype(np.float32)
        np.testing.assert_array_equal(raw[1:], want)  # NaN where no bar, equal elsewhere
        factor = np.fromfile(provider.path / "features" / qlib_fname(code) / "factor.day.bin",
                             dtype="<f4")
        assert np.all((factor[1:] == 1.0) == has[first[n]:last[n] + 1, n])
    # directories are lower-case (Qlib lower-cases the path); dotted codes stay as they are
    assert (provider.path / "features" / "brk.b" / "open.day.bin").is_file()
    assert sorted(p.name for p in (provider.path / "features" / "brk.b").iterdir()) == sorted(
        f"{f}.day.bin" for f in provider.fields)
    assert "vwap" not in provider.fields  # the sample has no vwap column: skipped


def test_export_refuses_bad_input(tmp_path):
    row = {"datetime": [pd.Timestamp("2010-01-04").date()] * 2, "instrument": ["AA", "AA"],
           "open": [1.0, 1.0], "high": [1.0, 1.0], "low": [1.0, 1.0], "close": [1.0, 1.0],
           "volume": [1.0, 1.0]}
    with pytest.raises(DataValidationError) as err:
        export_qlib_provider(pl.DataFrame(row), tmp_path)
    assert err.value.reason == "duplicate_key" and len(err.value.rows) == 2
    with pytest.raises(DataValidationError) as err:
        export_qlib_provider(pl.DataFrame({**row, "instrument": ["AA", "aa"]}), tmp_path)
    assert err.value.reason == "case_collision"
    with pytest.raises(DataValidationError) as err:
        export_qlib_provider(pl.DataFrame(row).drop("close"), tmp_path)
    assert err.value.reason == "missing_column"
    with pytest.raises(ConfigError):
        export_qlib_provider(pl.DataFrame(row), tmp_path, freq="1min")
    assert qlib_fname("CON") == "_qlib_con"


# ----------------------------------------------------------------------------- Qlib reads it


def test_qlib_reads_back_every_bar(qlib_provider, bars):
    from qlib.data import D

    sessions = np.unique(bars["datetime"].to_numpy().astype("datetime64[D]"))
    cal = D.calendar(freq="day")
    np.testing.assert_array_equal(np.asarray(cal).astype("datetime64[D]"), sessions)
    fields = [f"${f}" for f in PRICE_FIELDS]
    got = D.features(D.instruments("all"), fields, freq="day")
    got.columns = list(PRICE_FIELDS)
    got = got.reset_index()
    assert got["instrument"].nunique() == bars["instrument"].n_unique() == 524
    got["instrument"] = got["instrument"].str.upper()
    got["datetime"] = got["datetime"].to_numpy().astype("datetime64[D]")
    # rows inside an instrument's span but without a bar come back as NaN (Qlib: suspended)
    got = got.dropna(subset=["close"])
    src = bars.to_pandas()
    src["instrument"] = src["instrument"].str.upper()
    src["datetime"] = pd.to_datetime(src["datetime"]).to_numpy().astype("datetime64[D]")
    m = src.merge(got, on=["datetime", "instrument"], how="outer", suffixes=("", "_q"),
                  indicator=True)
    assert (m["_merge"] == "both").all() and len(m) == len(src) == 122_496
    for f in PRICE_FIELDS:
        # float32 storage: Qlib returns exactly float32(source), i.e. within 2**-24 relative
        np.testing.assert_array_equal(m[f"{f}_q"].to_numpy(np.float32),
                                      m[f].to_numpy().astype(np.float32))
        np.testing.assert_allclose(m[f"{f}_q"].to_numpy(np.float64), m[f].to_numpy(),
                                   rtol=2.0**-24, atol=0)


# ----------------------------------------------------------------------------- predictions


def _pred_frame() -> pd.DataFrame:
    idx = pd.MultiIndex.from_product(
        [pd.to_datetime(["2010-01-04", "2010-01-05"]), ["AA", "AAPL", "BRK.B"]],
        names=["datetime", "instrument"])
    return pd.DataFrame({"score": [0.1, -0.2, 0.3, 0.05, 0.0, -1.5]}, index=idx)


def test_pred_pkl_round_trip(tmp_path):
    pred = _pred_frame()
    pred.to_pickle(tmp_path / "pred.pkl")
    got = read_qlib_predictions(tmp_path / "pred.pkl")
    assert list(got.columns) == ["datetime", "instrument", "score"]
    want = pred.reset_index().sort_values(["datetime", "instrument"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert got["score"].dtype == np.float64
    # and back to Qlib's layout
    pd.testing.assert_series_equal(to_qlib_signal(got), pred["score"].sort_index(),
                                   check_index_type=False)


def test_pred_variants(tmp_path):
    pred = _pred_frame()
    want = read_qlib_predictions(_write(pred, tmp_path / "a.pkl"))
    # a Series (model.predict output), an unnamed first column, (instrument, datetime) order
    for obj in (pred["score"], pred.rename(columns={"score": 0}),
                pred.swaplevel().sort_index(),
                pred.assign(label=1.0)[["label", "score"]]):
        pd.testing.assert_frame_equal(read_qlib_predictions(_write(obj, tmp_path / "b.pkl")),
                                      want)
    # unnamed 2-level index: the datetime level is found by dtype
    unnamed = pred.copy()
    unnamed.index = unnamed.index.set_names([None, None])
    pd.testing.assert_frame_equal(read_qlib_predictions(_write(unnamed, tmp_path / "c.pkl")),
                                  want)
    flat = pred.reset_index()
    flat.to_parquet(tmp_path / "p.parquet")
    flat.to_csv(tmp_path / "p.csv", index=False)
    pred.to_parquet(tmp_path / "mi.parquet")  # index restored by pandas
    for name in ("p.parquet", "p.csv", "mi.parquet"):
        pd.testing.assert_frame_equal(read_qlib_predictions(tmp_path / name), want)
    low = read_qlib_predictions(tmp_path / "p.csv", instrument_case="lower")
    assert low["instrument"].tolist() == [c.lower() for c in want["instrument"]]


def _write(obj, path):
    obj.to_pickle(path)
    return path


def test_pred_errors(tmp_path):
    cases = {
        "missing_file": tmp_path / "nope.pkl",
        "unsupported_format": _touch(tmp_path / "pred.h5"),
        "unsupported_type": _write_obj({"a": 1}, tmp_path / "d.pkl"),
        "unsupported_index": _write(
            pd.DataFrame({"score": [1.0]}, index=pd.MultiIndex.from_tuples(
                [("x", "y", "z")], names=["a", "b", "c"])), tmp_path / "e.pkl"),
        "missing_column": _write(_pred_frame()[[]], tmp_path / "f.pkl"),
        "not_numeric": _write(_pred_frame().assign(score="high"), tmp_path / "g.pkl"),
        "duplicate_key": _write(pd.concat([_pred_frame(), _pred_frame()]), tmp_path / "h.pkl"),
        "nan": _write(_pred_frame().assign(score=np.nan), tmp_path / "i.pkl"),
    }
    for reason, path in cases.items():
        with pytest.raises(SignalValidationError) as err:
            read_qlib_predictions(path)
        assert err.value.reason == reason, (reason, str(err.value))
    with pytest.raises(SignalValidationError) as err:
        read_qlib_predictions(_write(_pred_frame(), tmp_path / "j.pkl"), instruments=["AA"])
    assert err.value.reason == "unknown_instrument"


def _touch(path):
    path.write_bytes(b"")
    return path


def _write_obj(obj, path):
    pd.to_pickle(obj, path)
    return path


# ----------------------------------------------------------------------------- parity

# Tolerances. Both engines do the same float64 arithmetic (sizes = cash * 0.95 / len(buy) /
# price, fees = value * rate) but sum in different orders (Qlib iterates a set of held codes and
# a dict of positions), so each session may differ by a few ulps, ~1e-15 relative; over 245
# compounding sessions that stays far below 1e-12 (measured: 6e-16). 1e-9 leaves room for that
# and still fails on any real deviation: one share, or one fee on one order (5 bps of a
# USD 19,000 order is USD 9.5, i.e. 1e-5 of the account).
RTOL_EXACT = 1e-9
# When bridge keeps the float64 prices and Qlib reads float32 ones, each price differs by up to
# 2**-24 (6e-8) relative; an amount (value / price) carries about one such error and the account
# value averages them over ~50 names (measured: amounts 9.9e-8, account 2.7e-8). 1e-6 bounds it.
RTOL_FLOAT32 = 1e-6


def test_parity_full_period_same_prices(qlib_fractional, bars, signal):
    """Qlib mode, universe exit disabled, same float32 prices: identical on all 245 sessions."""
    d = _diff(qlib_fractional, _run_bridge(_float32_panel(bars), signal, universe_exit=False))
    assert len(d) == 245
    assert d["same_names"].all(), d[~d["same_names"]].head()
    assert d["amount_rel"].max() <= RTOL_EXACT
    assert d["account_rel"].max() <= RTOL_EXACT
    # both reproduce Qlib's known drift (#809): a planned sell that cannot execute (here MBI,
    # whose data ends on 2009-12-24) still lets its replacement be bought, so the book holds
    # more than topk names on most sessions after that
    assert (d["n_qlib"] > TOPK).sum() == (d["n_bridge"] > TOPK).sum() == 160
    assert d["n_qlib"].max() == 52
    assert (d["n_qlib"] > 0).sum() == 245 - 21  # no score before the 21st session


def test_parity_full_period_float64_prices(qlib_fractional, bars, signal):
    """Same, with bridge on the original float64 prices: only float32 rounding remains."""
    d = _diff(qlib_fractional, _run_bridge(Panel.from_bars(bars), signal, universe_exit=False))
    assert d["same_names"].all()
    assert d["amount_rel"].max() <= RTOL_FLOAT32
    assert d["account_rel"].max() <= RTOL_FLOAT32


def test_parity_default_engine_until_universe_exit(qlib_fractional, bars, signal):
    """The engine as shipped: identical until the first universe exit, which Qlib never does.

    bridge cashes out a holding whose bars stop more than EXIT_GRACE sessions before the end of
    the data (MBI: last bar 2009-12-24, cashed out on 2009-12-28 at that close); Qlib keeps it
    at its last close forever, unsellable, in a slot of the top-k book. From then on the books
    differ (measured: up to 1.35% of the account value, 163 of 245 sessions with different names).
    """
    qrun = qlib_fractional
    brun = _run_bridge(_float32_panel(bars), signal)
    trades = brun[2]
    exits = trades[trades["reason"] == "universe_exit"]
    assert exits["instrument"].tolist() == ["MBI"]
    first_exit = pd.Timestamp(exits["trading_day"].min())
    assert first_exit == pd.Timestamp("2009-12-28")
    d = _diff(qrun, brun)
    before, on = d[d.index < first_exit], d.loc[first_exit]
    assert len(before) == 82
    assert before["same_names"].all()
    assert before["amount_rel"].max() <= RTOL_EXACT
    assert before["account_rel"].max() <= RTOL_EXACT
    # On the exit day the held names differ only by MBI, and the cash-out is at the close Qlib
    # marks MBI at, so the account values agree up to the fees of differently sized buys
    # (measured 1.7e-7). The day's 5 buys are sized differently, by one common factor: with MBI
    # gone bridge's book has 49 names, so Qlib's rule buy = today[:len(sell) + topk - len(last)]
    # asks for 6 buys, and one of them is MBI itself (its last score, dated 2009-12-24, is still
    # in the grid). It has no bar, so its sixth of the budget stays in cash (as Qlib does for an
    # untradable buy), and the 5 others get (cash + MBI proceeds) * 0.95 / 6 instead of Qlib's
    # cash * 0.95 / 5: 0.36% fewer shares each. (With the change proposed in docs/qlib_parity.md
    # an instrument that left the universe is no longer a buy candidate: the next candidate, RHT,
    # is bought instead and fills the slot MBI freed.)
    assert on["only_qlib"] == ["MBI"] and len(on["only_bridge"]) <= 1
    assert on["account_rel"] <= 1e-4
    day = pd.to_datetime(trades["trading_day"]) == first_exit
    bought = set(trades.loc[day & (trades["side"] == "buy"), "instrument"].str.upper())
    q, b = qrun[1][first_exit], brun[1][first_exit]
    resized = {k for k in q if k in b and abs(q[k] - b[k]) > RTOL_EXACT * b[k]}
    assert resized == bought - set(on["only_bridge"]) and len(resized) == 5
    ratio = np.array([q[k] / b[k] for k in resized])
    assert np.ptp(ratio) < 1e-9  # one budget per name on both sides
    after = d[d.index > first_exit]
    assert (~after["same_names"]).sum() > 100  # documented divergence, not a tolerance


def test_parity_whole_shares(qlib_provider, bars, signal):
    """Whole shares (Qlib trade_unit=1, bridge fractional=False): Qlib rounds (x + 0.1) // 1.

    Qlib's ``Exchange.round_amount_by_trade_unit`` adds 0.1 share before flooring, bridge floors
    (``MarketRules.round_quantity``); a buy of 73.93 shares is 74 in Qlib, 73 in bridge. The
    names stay identical; amounts and cash then drift by a few shares (docs/qlib_parity.md).
    """
    sessions = np.unique(bars["datetime"].to_numpy())
    qrun = _run_qlib(signal, sessions, trade_unit=1)
    panel = _float32_panel(bars)
    brun = _run_bridge(panel, signal, fractional=False, universe_exit=False)
    d = _diff(qrun, brun)
    assert d["same_names"].all()
    assert d["account_rel"].max() <= 1e-4  # measured 3.4e-5
    # the first trading day, from the same cash: exactly the two rounding rules
    day0 = d.index[d["n_qlib"] > 0][0]
    t = int(np.searchsorted(panel.sessions, np.datetime64(day0.date())))
    q, b = qrun[1][day0], brun[1][day0]
    per_name = CAPITAL * 0.95 / TOPK
    x = {c: per_name / panel.close[t, np.searchsorted(panel.instruments, c)] for c in q}
    assert all(q[c] == np.floor(x[c] + 0.1) and b[c] == np.floor(x[c]) for c in q)
    assert sum(q[c] != b[c] for c in q) == 6
