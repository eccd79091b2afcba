"""Aggregate bridge's recorded trajectories per instance, mode and period (DuckDB SQL).

Everything row-heavy (fills, orders, account rows, the benchmark) is reduced inside DuckDB, in
one grouped query over *all* instances at once; only per-instance aggregates, the daily series
(one row per session) and per-order records of the selected period reach pandas. The pure
metric functions of :mod:`bridge.feedback.metrics` are then applied to the daily series.

Sources and conventions
-----------------------
Instances
    ``preview``: one per ``preview_strategy.preview_id`` (tables ``preview_*``).
    ``paper`` / ``live``: one per ``(strategy_id, mode)`` of ``exec_account`` / ``exec_order``.
Daily series (Qlib's ``report_normal`` columns, fractions of the previous day's account)
    ``account`` end-of-day total value; ``return = (account - prev + cost_value) / prev``, i.e.
    **before** costs as in Qlib's ``Account`` (so ``return - cost`` is the account's real
    return); ``turnover`` and ``cost`` as rates of ``prev``; ``total_turnover`` and ``total_cost``
    cumulative, currency; ``value`` market value of holdings, ``cash``; ``bench`` the benchmark's
    close-to-close return (``benchmark.parquet``). ``prev`` of the first session is the
    instance's initial capital (preview) or its first recorded equity (paper/live).
    Paper/live days are the UTC dates of ``ts_ms``; a day's account is the last ``exec_account``
    row of that day.
Orders
    preview: each ``preview_trade`` row is a filled order (status ``FILLED``), and each
    ``preview_cut`` row an order of the planner's cut quantity (``intended_quantity -
    quantity``) that was not traded (status ``CUT``, reason = the cut's reason).
    paper/live: ``exec_order`` rows; ``DENIED`` orders (our risk engine) were never sent.
Fill ratio
    ``sum(filled_quantity) / sum(quantity)`` over orders that reached the venue (or the
    preview's planner), i.e. excluding ``DENIED``.
Slippage, bps, positive = cost to us (buy above / sell below the reference)
    decision: against the decision price (preview: ``market_price``, the session's deal price
    before the slippage model; paper/live: ``exec_order.px_intent``, the snapshot's reference
    price). arrival: preview ``market_price`` again (the preview fills at the session's deal
    price, so arrival = decision); paper/live the **open** of the session of the order's first
    fill (``bars.parquet``): the paper broker has no quote at submit time.
Price advantage (Qlib ``pa``)
    ``sign * (fill / arrival - 1)`` with sell +1, buy -1 (a fraction, positive = advantage);
    ``mean`` over filled orders (Qlib's ``method="mean"``) and value-weighted; ``pos`` is the
    share of filled orders with ``pa > 0``.
Backtest-vs-paper gap
    for orders planned from a DecisionSnapshot: ``|avg_fill_price - planned_order.price| /
    tick`` (ticks of the snapshot's market); the 95th percentile is the figure to compare with
    seed 001's bar of 1 tick.
Trading-state changes
    ``audit_log`` rows of kind ``RISK_STATE`` inside the period (the audit log has no strategy
    column: these are engine-wide, reported for every paper/live instance).
Signal quality
    preview: the instance's ``signal`` (``momentum_<w>`` / ``reversal_<w>``) recomputed with
    :mod:`bridge.research` on ``bars.parquet``; paper/live: ``snapshot_signal`` of the run's
    snapshots, dated by ``decision_snapshot.signal_date``. Label: the next session's
    close-to-close return ``close[t+1] / close[t] - 1``. IC per date, then Qlib's summary.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from bridge.errors import ConfigError
from bridge.feedback import metrics as M

MODES = ("preview", "paper", "live")
PERIODS = ("day", "week", "month", "all")
REPORT_NORMAL = ["account", "return", "total_turnover", "turnover", "total_cost", "cost", "value",
                 "cash", "bench"]


@dataclass
class Feedback:
    """The aggregated feedback of one instance, mode and period.

    Attributes
    ----------
    instance, mode : str
    period : dict
        ``label``, ``start``, ``end`` (ISO dates), ``sessions``.
    info : dict
        Instance description (display_name, strategy, signal, initial_capital, market).
    daily : pandas.DataFrame
        Indexed by ``datetime``: :data:`REPORT_NORMAL` plus ``net_return`` (``return - cost``),
        ``excess_return_without_cost``, ``excess_return_with_cost``, ``nav``, ``bench_nav``,
        ``drawdown``, ``n_orders``.
    orders : pandas.DataFrame
        One row per order (see :func:`order_records`).
    ic : pandas.DataFrame
        ``datetime``, ``ic``, ``rank_ic``, ``n`` per signal date.
    summary : dict
        JSON-ready sections ``returns``, ``benchmark``, ``qlib``, ``trading``, ``execution``,
        ``signal`` (see :mod:`bridge.feedback.export`).
    """

    instance: str
    mode: str
    period: dict
    info: dict
    daily: pd.DataFrame
    orders: pd.DataFrame
    ic: pd.DataFrame
    summary: dict = field(default_factory=dict)


# ---- periods --------------------------------------------------------------------------------
def resolve_period(period, first: date, last: date) -> tuple[str, date, date]:
    """(label, start, end) of a period within an instance's ``[first, last]`` sessions.

    Parameters
    ----------
    period : str or tuple
        ``"day"`` (the last session), ``"week"`` (ISO week of the last session), ``"month"``
        (calendar month of the last session), ``"all"``, ``"YYYY-MM-DD:YYYY-MM-DD"`` or a
        ``(start, end)`` pair (inclusive, date-like).
    """
    if isinstance(period, (tuple, list)):
        s, e = (pd.Timestamp(x).date() for x in period)
        return f"{s}_{e}", s, e
    if period == "all":
        return "all", first, last
    if period == "day":
        return "day", last, last
    if period == "week":
        return "week", last - timedelta(days=last.weekday()), last
    if period == "month":
        return "month", last.replace(day=1), last
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}):(\d{4}-\d{2}-\d{2})", str(period))
    if m:
        return resolve_period((m[1], m[2]), first, last)
    raise ConfigError(f"period must be one of {PERIODS}, 'start:end' or (start, end); "
                      f"got {period!r}")


# ---- SQL views ------------------------------------------------------------------------------
def _has_rows(con, table: str) -> bool:
    try:
        return con.sql(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)").fetchall()[0][0] > 0
    except duckdb.CatalogException:
        return False


def create_views(con, data_dir: Path | str | None, trades_table: str = "preview_trade") -> None:
    """Create the temporary views ``fb_daily``, ``fb_orders``, ``fb_bench`` on ``con``.

    ``trades_table`` lets the benchmark point the preview orders at a synthetic fills table with
    ``preview_trade``'s columns. Missing execution tables are treated as empty.
    """
    bench = Path(data_dir) / "benchmark.parquet" if data_dir is not None else None
    bars = Path(data_dir) / "bars.parquet" if data_dir is not None else None
    if bench is not None and bench.exists():
        con.execute(f"""CREATE OR REPLACE TEMP VIEW fb_bench AS
            SELECT CAST(datetime AS DATE) AS day,
                   close / lag(close) OVER (ORDER BY CAST(datetime AS DATE)) - 1 AS bench
            FROM read_parquet('{bench.as_posix()}')""")
    else:
        con.execute("CREATE OR REPLACE TEMP VIEW fb_bench AS "
                    "SELECT CAST(NULL AS DATE) AS day, CAST(NULL AS DOUBLE) AS bench WHERE false")
    has_exec = _has_rows(con, "exec_order") or _has_rows(con, "exec_account")
    exec_daily = exec_orders = ""
    if has_exec:
        exec_daily = f"""
        UNION ALL
        SELECT e.strategy_id, e.mode, e.day, e.equity, e.market_value, e.cash,
               coalesce(f.traded, 0), coalesce(f.fees, 0),
               lag(e.equity, 1, e.first_equity) OVER w
        FROM (SELECT strategy_id, mode, CAST(epoch_ms(ts_ms) AS DATE) AS day,
                     arg_max(equity, ts_ms) AS equity, arg_max(market_value, ts_ms) AS market_value,
                     arg_max(cash, ts_ms) AS cash,
                     any_value(first_equity) AS first_equity
              FROM (SELECT *, first_value(equity) OVER (PARTITION BY strategy_id, mode
                                                        ORDER BY ts_ms) AS first_equity
                    FROM exec_account)
              GROUP BY ALL) e
        LEFT JOIN (SELECT strategy_id, mode, CAST(epoch_ms(ts_ms) AS DATE) AS day,
                          {_xsum("quantity * price")} / 1e6 AS traded,
                          {_xsum("coalesce(commission, 0) + coalesce(fees, 0)")} / 1e6 AS fees
                   FROM exec_fill GROUP BY ALL) f USING (strategy_id, mode, day)
        WINDOW w AS (PARTITION BY e.strategy_id, e.mode ORDER BY e.day)"""
        arrival = (f"(SELECT CAST(datetime AS DATE) AS day, instrument, open "
                   f"FROM read_parquet('{bars.as_posix()}'))" if bars is not None and bars.exists()
                   else "(SELECT CAST(NULL AS DATE) AS day, NULL AS instrument, "
                        "CAST(NULL AS DOUBLE) AS open WHERE false)")
        exec_orders = f"""
        UNION ALL
        SELECT o.strategy_id, o.mode, coalesce(ff.day, CAST(epoch_ms(o.created_ts_ms) AS DATE)),
               o.instrument, lower(o.side), o.quantity, coalesce(o.filled_quantity, 0),
               o.avg_fill_price, o.px_intent, b.open,
               coalesce(o.filled_quantity, 0) * o.avg_fill_price, coalesce(o.commission, 0),
               o.status, CASE o.status WHEN 'DENIED' THEN o.deny_reason
                                       WHEN 'REJECTED' THEN o.reject_reason END,
               o.decision_snapshot_id, o.client_order_id
        FROM exec_order o
        LEFT JOIN (SELECT client_order_id, CAST(epoch_ms(min(ts_ms)) AS DATE) AS day
                   FROM exec_fill GROUP BY 1) ff USING (client_order_id)
        LEFT JOIN {arrival} b ON b.instrument = o.instrument AND b.day = ff.day"""
    con.execute(f"""CREATE OR REPLACE TEMP VIEW fb_daily_raw AS
        SELECT a.preview_id AS instance, 'preview' AS mode, a.trading_day AS day,
               a.total_value AS account, a.market_value AS value, a.cash,
               a.turnover * lag(a.total_value, 1, s.initial_capital) OVER w AS traded,
               a.cost AS fees, lag(a.total_value, 1, s.initial_capital) OVER w AS prev
        FROM preview_account a JOIN preview_strategy s USING (preview_id)
        WINDOW w AS (PARTITION BY a.preview_id ORDER BY a.trading_day)
        {exec_daily}""")
    con.execute("""CREATE OR REPLACE TEMP VIEW fb_daily AS
        SELECT d.instance, d.mode, d.day, d.account,
               (d.account - d.prev + d.fees) / d.prev AS "return",
               sum(d.traded) OVER w AS total_turnover, d.traded / d.prev AS turnover,
               sum(d.fees) OVER w AS total_cost, d.fees / d.prev AS cost,
               d.value, d.cash, coalesce(b.bench, 0) AS bench, b.bench IS NULL AS bench_missing
        FROM fb_daily_raw d LEFT JOIN fb_bench b USING (day)
        WINDOW w AS (PARTITION BY d.instance, d.mode ORDER BY d.day)""")
    # preview_trade.market_price is newer than some stored databases: without it the preview's
    # reference is its own deal price (slippage 0 by construction, stated in the docs)
    cols = {r[0] for r in con.sql(f"DESCRIBE {trades_table}").fetchall()}
    ref = "t.market_price" if "market_price" in cols else "t.deal_price"
    con.execute(f"""CREATE OR REPLACE TEMP VIEW fb_orders AS
        SELECT t.preview_id AS instance, 'preview' AS mode, t.trading_day AS day, t.instrument,
               lower(t.side) AS side, t.quantity, t.quantity AS filled_quantity,
               t.deal_price AS fill_price, {ref} AS decision_price,
               {ref} AS arrival_price, t.trade_value AS value, t.fee,
               'FILLED' AS status, nullif(t.reason, '') AS reason,
               CAST(NULL AS VARCHAR) AS snapshot_id, CAST(NULL AS VARCHAR) AS order_id
        FROM {trades_table} t
        UNION ALL
        SELECT c.preview_id, 'preview', c.trading_day, c.instrument, lower(c.side),
               c.intended_quantity - c.quantity, 0, NULL, NULL, NULL, 0, 0, 'CUT', c.reason,
               NULL, NULL
        FROM preview_cut c WHERE c.intended_quantity > c.quantity
        {exec_orders}""")


def _ranges_table(con, ranges: list[tuple[str, str, date, date]]) -> None:
    df = pd.DataFrame(ranges, columns=["instance", "mode", "start", "end"])
    df["start"] = pd.to_datetime(df["start"])
    df["end"] = pd.to_datetime(df["end"])
    con.register("_fb_ranges_df", df)
    con.execute("""CREATE OR REPLACE TEMP TABLE fb_ranges AS
        SELECT instance, mode, CAST(start AS DATE) AS start, CAST("end" AS DATE) AS "end"
        FROM _fb_ranges_df""")
    con.unregister("_fb_ranges_df")


# ---- grouped order statistics (all instances in one query) -----------------------------------
def _side_cols(ref: str, src: str) -> str:
    """Per-side slippage columns named for reference ``ref``, from the sums of ``src``."""
    cols = []
    for side in ("buy", "sell"):
        f = f"FILTER (WHERE side = '{side}')"
        cols += [f"sum(s_{src}) {f} / 1e{DIGITS['s']} / nullif(sum(n_{src}) {f}, 0) "
                 f"AS slip_{ref}_{side}_mean",
                 f"sum(sv_{src}) {f} / 1e{DIGITS['sv']} / nullif(sum(v_{src}) {f} / "
                 f"1e{DIGITS['v']}, 0) AS slip_{ref}_{side}_vw",
                 f"max(q_{src}) {f} AS slip_{ref}_{side}_p95",
                 f"coalesce(sum(n_{src}) {f}, 0) AS slip_{ref}_{side}_n"]
    return ",\n  ".join(cols)


def _slip_col(ref: str) -> str:
    """Per-order slippage (bps, positive = cost) against ``o.<ref>_price``, named ``s<r>``."""
    return (f"CASE WHEN o.filled_quantity > 0 AND o.{ref}_price > 0\n"
            f"              THEN (CASE WHEN o.side = 'buy' THEN 1 ELSE -1 END)\n"
            f"                   * (o.fill_price / o.{ref}_price - 1) * 1e4 END AS s{ref[0]}")


def _xsum(expr: str, digits: int = 6) -> str:
    """An exact sum in fixed point: each value rounded once to ``digits`` decimals (kept as a
    64-bit integer of 10^-digits units), the integers added exactly (DuckDB sums them into a
    128-bit integer). The result is in 10^-digits units: divide by ``1e{digits}``.

    DuckDB adds doubles in parallel partial sums whose order follows the thread schedule, so a
    plain ``sum`` over many row groups differs in the last bits from run to run; an integer sum
    does not depend on the order: same inputs, same outputs. A value too large for 64 bits at
    that scale raises DuckDB's conversion error rather than wrapping. (Measured on 10M fills:
    ~0.1 s more than double sums; DECIMAL casts cost ~0.5 s more.)
    """
    return f"sum(CAST(round(({expr}) * 1e{digits}) AS BIGINT))"


#: fixed-point digits of the order sums (see :func:`_xsum`): shares and currency 1e-6,
#: slippage 1e-9 bps, slippage x value 1e-4 bps x currency
DIGITS = {"q": 6, "fq": 6, "value": 6, "fee": 6, "s": 9, "sv": 4, "v": 6}


def _sums(refs: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, aggregate) of the additive per-group figures, slippage sums for each of ``refs``.

    The last reference is the arrival one (``pa`` and its ``pos`` share). No ``FILTER``
    clause: a filtered aggregate builds a selection per chunk, ~0.03 s of CPU each on 10M rows,
    where ``count_if`` and a ``CASE`` (NULL otherwise, which ``sum`` skips) add the same rows.
    Non-integer sums are exact (:func:`_xsum`), and so are their re-sums.
    """
    d = DIGITS
    sums = [("n", "count(*)"), ("nf", "count_if(filled)"), ("q", _xsum("quantity", d["q"])),
            ("fq", _xsum("filled_quantity", d["fq"])), ("value", _xsum("value", d["value"])),
            ("fee", _xsum("fee", d["fee"]))]
    for ref in refs:
        c = f"s{ref[0]}"
        sums += [(f"s_{ref}", _xsum(c, d["s"])), (f"n_{ref}", f"count({c})"),
                 (f"sv_{ref}", _xsum(f"{c} * value", d["sv"])),
                 (f"v_{ref}", _xsum(f"CASE WHEN {c} IS NOT NULL THEN value END", d["v"]))]
    return sums + [("n_pos", f"count_if(s{refs[-1][0]} < 0)")]


# Sums and counts are first grouped by (instance, mode, side, status, day) in one scan with no
# join (a few 10k rows), and only those rows are joined with each instance's period; the exact
# p95 needs the rows themselves, so it joins the period ranges only when they are not the
# instances' whole history. Short periods pre-filter rows with constant global date bounds
# (prunes most rows before any grouping). Measured on 10M fills / 100 instances, 2 busy cores:
# one flat query with FILTERed aggregates joined to the ranges took 7 s, joining before grouping
# 2.2 s, this ~1 s for period "all" and ~0.2 s for "day" (the 10M-row join on string keys was
# the cost). Preview-only orders have one reference price and every filled one is FILLED: the
# arrival figures are then the decision ones (each per-row aggregate costs ~0.01-0.03 s of CPU
# on 10M rows), and over the whole history the p95 is taken in the sums' own grouping (one hash
# aggregate over the rows instead of two, ~0.1 s of CPU). Period "all" is now ~0.35-0.45 s in a
# fresh process (~0.65 s of CPU: reading the columns ~0.2 s, the exact p95 ~0.2 s, the sums and
# the hashing the rest).
_ORDER_STATS_TEMPLATE = """
WITH s AS (
  SELECT o.instance, o.mode, o.side, o.status, o.day, o.quantity, o.filled_quantity, o.value,
         o.fee, o.filled_quantity > 0 AND o.fill_price IS NOT NULL AS filled,
         {slip_cols}
  FROM fb_orders o
  {where}
), {ctes}
SELECT g.instance, g.mode,
  coalesce(sum(n) FILTER (WHERE status <> 'CUT'), 0) AS n_orders,
  coalesce(sum(n) FILTER (WHERE status = 'FILLED'), 0) AS n_filled,
  coalesce(sum(nf) FILTER (WHERE status <> 'FILLED'), 0) AS n_partial,
  coalesce(sum(n) FILTER (WHERE status = 'CANCELED'), 0) AS n_canceled,
  coalesce(sum(n) FILTER (WHERE status = 'EXPIRED'), 0) AS n_expired,
  coalesce(sum(n) FILTER (WHERE status = 'REJECTED'), 0) AS n_rejected,
  coalesce(sum(n) FILTER (WHERE status = 'DENIED'), 0) AS n_denied,
  coalesce(sum(n) FILTER (WHERE status = 'CUT'), 0) AS n_cut,
  sum(fq) FILTER (WHERE status <> 'DENIED')
    / nullif(sum(q) FILTER (WHERE status <> 'DENIED'), 0) AS fill_ratio,
  sum(value) / {value_unit} AS traded_value, sum(fee) / {fee_unit} AS fees,
  {decision_cols},
  {arrival_cols},
  -sum(s_{arr}) / {s_unit} / nullif(sum(n_{arr}), 0) / 1e4 AS pa_mean,
  -sum(sv_{arr}) / {sv_unit} / nullif(sum(v_{arr}) / {v_unit}, 0) / 1e4 AS pa_value_weighted,
  sum(n_pos) / nullif(sum(n_{arr}), 0) AS pa_pos{span_cols}
FROM {source}
GROUP BY g.instance, g.mode ORDER BY g.instance, g.mode
"""

_IN_RANGE = ('{t}.instance = r.instance AND {t}.mode = r.mode '
             'AND {t}.day BETWEEN r.start AND r."end"')


def _grouped_ctes(agg: str, sums: list[tuple[str, str]], quantiles: str, whole_history: bool,
                  fold_p95: bool) -> str:
    """CTEs ``g`` (sums per instance, mode, side, status) and, unless folded into it, ``q``."""
    if whole_history and fold_p95:
        return f"g AS (SELECT instance, mode, side, status, {agg}, {quantiles} FROM s GROUP BY ALL)"
    if whole_history:
        return (f"g AS (SELECT instance, mode, side, status, {agg} FROM s GROUP BY ALL),\n"
                f"q AS (SELECT instance, mode, side, {quantiles} FROM s WHERE filled GROUP BY ALL)")
    resum = ", ".join(f"sum({name}) AS {name}" for name, _ in sums)
    return (f"gd AS (SELECT instance, mode, side, status, day, {agg} FROM s GROUP BY ALL),\n"
            f"g AS (SELECT gd.instance, gd.mode, side, status, {resum} FROM gd\n"
            f"      JOIN fb_ranges r ON {_IN_RANGE.format(t='gd')} GROUP BY ALL),\n"
            f"q AS (SELECT s.instance, s.mode, side, {quantiles} FROM s\n"
            f"      JOIN fb_ranges r ON {_IN_RANGE.format(t='s')} WHERE filled GROUP BY ALL)")


def order_stats_sql(whole_history: bool, lo="0001-01-01", hi="9999-12-31",
                    preview_only: bool = False) -> str:
    """The grouped order-statistics query over ``fb_orders`` and ``fb_ranges``.

    Parameters
    ----------
    whole_history : bool
        True when every range is its instance's whole history (period ``"all"``): no per-row
        range join or per-day grouping is needed, and ``fb_ranges`` is not read. The result
        then also has ``first_order`` and ``last_order``, the first and last day of each
        (instance, mode)'s orders (see :func:`list_instances`).
    lo, hi : date-like
        Global bounds of the ranges (constant predicate, prunes rows before any grouping).
    preview_only : bool
        True when ``fb_orders`` holds only preview orders: their arrival price is their decision
        price (both ``market_price``), so the arrival slippage, its sums and its p95 are the
        decision ones, computed once (the exact quantile, the costliest aggregate, ~0.25 s on
        10M fills); and every filled one is ``FILLED`` (cuts fill nothing), so a p95 per
        (instance, mode, side, status) is the p95 per side.
    """
    refs = ("decision",) if preview_only else ("decision", "arrival")
    sums = _sums(refs)
    agg = ", ".join(f"{a} AS {name}" for name, a in sums)
    if whole_history:   # each (instance, mode)'s order span, for list_instances
        agg += ", min(day) AS first_day, max(day) AS last_day"
    quantiles = ", ".join(f"quantile_cont(s{r[0]}, 0.95) AS q_{r}" for r in refs)
    folded = whole_history and preview_only
    # whole history: no date predicate at all (on 10M rows it costs ~0.3 s and selects everything)
    where = "" if whole_history else f"WHERE o.day BETWEEN DATE '{str(lo)[:10]}' AND DATE '{str(hi)[:10]}'"
    return _ORDER_STATS_TEMPLATE.format(
        where=where, slip_cols=",\n         ".join(_slip_col(r) for r in refs),
        ctes=_grouped_ctes(agg, sums, quantiles, whole_history, folded),
        source="g" if folded else "g LEFT JOIN q USING (instance, mode, side)",
        decision_cols=_side_cols("decision", refs[0]),
        arrival_cols=_side_cols("arrival", refs[-1]), arr=refs[-1],
        **{f"{k}_unit": f"1e{v}" for k, v in DIGITS.items()},
        span_cols=(",\n  min(first_day) AS first_order, max(last_day) AS last_order"
                   if whole_history else ""))


ORDER_STATS_SQL = order_stats_sql(False)

# a reason is grouped by its code, the text before the first ':' (the risk engine writes
# "NOTIONAL_EXCEEDS_FREE_BALANCE: buy of 1077 AMP @ 42.77 needs ..."); the full text stays in
# the per-order records
REASONS_SQL = """
SELECT o.instance, o.mode, o.status, trim(split_part(coalesce(o.reason, ''), ':', 1)) AS reason,
       count(*) AS n
FROM fb_orders o JOIN fb_ranges r
  ON o.instance = r.instance AND o.mode = r.mode AND o.day BETWEEN r.start AND r."end"
WHERE o.status IN ('DENIED', 'REJECTED', 'CANCELED', 'EXPIRED', 'CUT')
GROUP BY ALL ORDER BY ALL
"""


def order_stats(con, whole_history: bool = False) -> pd.DataFrame:
    """:func:`order_stats_sql` over ``fb_orders`` x ``fb_ranges``: one row per (instance, mode)."""
    lo, hi = ((None, None) if whole_history else
              con.sql('SELECT min(start), max("end") FROM fb_ranges').fetchall()[0])
    # without execution orders, fb_orders holds only preview rows
    preview_only = not _has_rows(con, "exec_order")
    return con.sql(order_stats_sql(whole_history, lo, hi, preview_only=preview_only)).df()


# ---- instances ------------------------------------------------------------------------------
def list_instances(con, instances=None, mode: str | None = None,
                   order_spans: pd.DataFrame | None = None) -> list[dict]:
    """Instances recorded in the database (preview and paper/live), optionally filtered.

    Parameters
    ----------
    con : duckdb connection with the views of :func:`create_views`
    instances : sequence of str, optional
        preview_id / strategy_id values; default all.
    mode : {"preview", "paper", "live"}, optional
    order_spans : pandas.DataFrame, optional
        ``instance``, ``mode``, ``first_order``, ``last_order`` of every (instance, mode) with
        orders, as :func:`order_stats` returns them over the whole history; default: read
        from ``fb_orders`` (one more scan of every order).

    Returns
    -------
    list of dict
        ``instance``, ``mode``, ``first``, ``last`` (first and last date of its account rows
        and orders) and ``info``.
    """
    if mode is not None and mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES} or None, got {mode!r}")
    # an instance's history spans its account rows and its orders: paper fills carry the
    # session's time while account rows carry the run's clock, so either can end later
    if order_spans is None:
        orders = "SELECT instance, mode, min(day), max(day) FROM fb_orders GROUP BY ALL"
    else:
        con.register("_fb_order_spans", order_spans[["instance", "mode", "first_order",
                                                     "last_order"]])
        orders = ("SELECT instance, mode, CAST(first_order AS DATE), CAST(last_order AS DATE) "
                  "FROM _fb_order_spans")
    rows = con.sql(f"""SELECT instance, mode, min(first), max(last) FROM (
                           SELECT instance, mode, min(day) AS first, max(day) AS last
                           FROM fb_daily GROUP BY ALL
                           UNION ALL {orders})
                       GROUP BY ALL ORDER BY mode, instance""").fetchall()
    if order_spans is not None:
        con.unregister("_fb_order_spans")
    info = {r[0]: dict(zip(("display_name", "strategy", "signal", "initial_capital", "market"),
                           r[1:], strict=True))
            for r in con.sql("""SELECT preview_id, display_name, strategy, signal,
                                       initial_capital, market FROM preview_strategy""").fetchall()}
    out = []
    for inst, md, first, last in rows:
        if instances is not None and inst not in set(instances):
            continue
        if mode is not None and md != mode:
            continue
        meta = info.get(inst, {}) if md == "preview" else {"display_name": inst}
        out.append({"instance": inst, "mode": md, "first": first, "last": last, "info": meta})
    if instances is not None:
        missing = set(instances) - {r["instance"] for r in out}
        if missing:
            where = f" in mode {mode!r}" if mode else ""
            raise ConfigError(f"no recorded trajectory{where} for {sorted(missing)}")
    return out


# ---- signal quality -------------------------------------------------------------------------
class _Labels:
    """Next-session close-to-close returns from ``bars.parquet`` (loaded once, lazily)."""

    def __init__(self, data_dir):
        self.data_dir = Path(data_dir)
        self._panel = None

    @property
    def panel(self):
        if self._panel is None:
            from bridge.market.data import Panel, load_bars

            self._panel = Panel.from_bars(load_bars(self.data_dir))
        return self._panel

    def frame(self) -> pd.DataFrame:
        p = self.panel
        c = p.close
        nxt = np.full_like(c, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            nxt[:-1] = c[1:] / c[:-1] - 1.0
        t, n = np.nonzero(np.isfinite(nxt))
        return pd.DataFrame({"datetime": pd.to_datetime(p.sessions[t]),
                             "instrument": p.instruments[n].astype(str), "label": nxt[t, n]})


def _signal_frame(con, inst: dict, labels: _Labels) -> tuple[pd.DataFrame | None, str]:
    if inst["mode"] == "preview":
        name = inst["info"].get("signal") or ""
        m = re.fullmatch(r"(momentum|reversal)_(\d+)", name)
        if not m:
            return None, name or "none"
        from bridge.research import factors

        return getattr(factors, m[1])(labels.panel, int(m[2])), f"bridge.research.{m[1]}({m[2]})"
    q = """SELECT CAST(d.signal_date AS TIMESTAMP) AS datetime, s.instrument, s.score
           FROM snapshot_signal s JOIN decision_snapshot d USING (snapshot_id)
           WHERE s.snapshot_id IN (SELECT snapshot_id FROM trade_run
                                   WHERE strategy_id = ? AND mode = ?)"""
    df = con.execute(q, [inst["instance"], inst["mode"]]).df()
    return (df if len(df) else None), "snapshot_signal"


def signal_ic(con, inst: dict, labels: _Labels | None, start: date, end: date):
    """Per-date IC table and Qlib summary of an instance's scores vs next-session returns."""
    empty = pd.DataFrame({"datetime": pd.to_datetime([]), "ic": [], "rank_ic": []})
    if labels is None:
        return empty, {"source": "none", **M.ic_summary([], [])}
    sig, source = _signal_frame(con, inst, labels)
    if sig is None:
        return empty, {"source": source, **M.ic_summary([], [])}
    sig = sig[(sig["datetime"] >= pd.Timestamp(start)) & (sig["datetime"] <= pd.Timestamp(end))]
    df = sig.merge(labels.frame(), on=["datetime", "instrument"], how="inner")
    d, ic, ric = M.calc_ic(df["datetime"].to_numpy(), df["score"], df["label"])
    table = pd.DataFrame({"datetime": pd.to_datetime(d), "ic": ic, "rank_ic": ric})
    summ = M.ic_summary(ic, ric)
    return table, {"source": source,
                   "label": "close[t+1] / close[t] - 1 (next session, bars.parquet)", **summ}


# ---- per-instance assembly ------------------------------------------------------------------
def _f(x):
    """float or None (JSON null) for NaN/None."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _side_block(row: dict, kind: str) -> dict:
    # row is {} when the instance has no order in the period
    return {side: {"n": int(_f(row.get(f"slip_{kind}_{side}_n")) or 0),
                   "mean": _f(row.get(f"slip_{kind}_{side}_mean")),
                   "value_weighted": _f(row.get(f"slip_{kind}_{side}_vw")),
                   "p95": _f(row.get(f"slip_{kind}_{side}_p95"))} for side in ("buy", "sell")}


def order_records(con, instance: str, mode: str, start: date, end: date) -> pd.DataFrame:
    """Per-order records of one instance and period, with slippage (bps) and ``pa``."""
    return con.execute("""
        SELECT day, instrument, side, quantity, filled_quantity, fill_price, decision_price,
               arrival_price, value, fee, status, reason, snapshot_id, order_id,
               CASE WHEN filled_quantity > 0 AND decision_price > 0 THEN
                 (CASE WHEN side = 'buy' THEN 1 ELSE -1 END) * (fill_price / decision_price - 1) * 1e4
               END AS slippage_decision_bps,
               CASE WHEN filled_quantity > 0 AND arrival_price > 0 THEN
                 (CASE WHEN side = 'buy' THEN 1 ELSE -1 END) * (fill_price / arrival_price - 1) * 1e4
               END AS slippage_arrival_bps
        FROM fb_orders WHERE instance = ? AND mode = ? AND day BETWEEN ? AND ?
        ORDER BY day, instrument, side""", [instance, mode, start, end]).df().assign(
        pa=lambda d: -d["slippage_arrival_bps"] / 1e4)


def gap_ticks(con, instance: str, mode: str, start: date, end: date) -> dict:
    """Backtest-vs-paper gap: |avg fill - planned price| in ticks, for snapshot orders."""
    from bridge.market.rules import MARKETS

    if mode == "preview":
        return {"n": 0, "mean": None, "p95": None, "share_within_1_tick": None,
                "note": "preview fills are the backtest itself: no separate paper fill"}
    rows = con.execute("""
        SELECT abs(o.fill_price - p.price) AS gap, d.market
        FROM fb_orders o
        JOIN planned_order p ON p.snapshot_id = o.snapshot_id AND p.instrument = o.instrument
                            AND lower(p.side) = o.side
        JOIN decision_snapshot d ON d.snapshot_id = o.snapshot_id
        WHERE o.instance = ? AND o.mode = ? AND o.day BETWEEN ? AND ?
          AND o.filled_quantity > 0 AND p.price > 0""", [instance, mode, start, end]).df()
    if rows.empty:
        return {"n": 0, "mean": None, "p95": None, "share_within_1_tick": None}
    tick = rows["market"].map(lambda m: MARKETS.get(m, MARKETS["US"]).tick_size).to_numpy(float)
    g = rows["gap"].to_numpy(float) / tick
    return {"n": int(g.size), "mean": _f(g.mean()), "p95": _f(np.percentile(g, 95)),
            "share_within_1_tick": _f((g <= 1 + 1e-9).mean())}


def _state_changes(con, start: date, end: date) -> dict:
    if not _has_rows(con, "audit_log"):
        return {"n": 0, "transitions": {}}
    rows = con.execute("""
        SELECT coalesce(json_extract_string(detail, '$.from'), '?') || '->' ||
               coalesce(json_extract_string(detail, '$.to'), '?') AS t, count(*)
        FROM audit_log WHERE kind = 'RISK_STATE'
          AND CAST(epoch_ms(ts_ms) AS DATE) BETWEEN ? AND ? GROUP BY 1 ORDER BY 1""",
                       [start, end]).fetchall()
    return {"n": int(sum(n for _, n in rows)), "transitions": {t: int(n) for t, n in rows}}


def _daily(con, instance: str, mode: str, start: date, end: date) -> pd.DataFrame:
    d = con.execute("""
        SELECT d.*, coalesce(o.n_orders, 0) AS n_orders FROM fb_daily d
        LEFT JOIN (SELECT day, count(*) AS n_orders FROM fb_orders
                   WHERE instance = $1 AND mode = $2 AND status <> 'CUT' GROUP BY day) o USING (day)
        WHERE d.instance = $1 AND d.mode = $2 AND d.day BETWEEN $3 AND $4
        ORDER BY d.day""", [instance, mode, start, end]).df()
    d.index = pd.DatetimeIndex(pd.to_datetime(d.pop("day")), name="datetime")
    d = d.drop(columns=["instance", "mode"])
    d["net_return"] = d["return"] - d["cost"]
    d["excess_return_without_cost"] = d["return"] - d["bench"]
    d["excess_return_with_cost"] = d["return"] - d["bench"] - d["cost"]
    d["nav"] = np.cumprod(1.0 + d["net_return"].to_numpy())
    d["bench_nav"] = np.cumprod(1.0 + d["bench"].to_numpy())
    d["drawdown"] = M.drawdown_series(d["net_return"].to_numpy()) if len(d) else []
    return d


def _summary(d: pd.DataFrame, st: dict, reasons: pd.DataFrame, states: dict, gap: dict,
             signal: dict) -> dict:
    net = d["net_return"].to_numpy()
    bench = d["bench"].to_numpy()
    geo = {k: (_f(v) if k != "periods" else v) for k, v in M.geometric_metrics(net).items()}
    qlib = {name: {k: _f(v) for k, v in M.risk_analysis(d[name].to_numpy(), freq="day").items()}
            for name in ("excess_return_without_cost", "excess_return_with_cost")}
    qlib["return_with_cost"] = {k: _f(v) for k, v in M.risk_analysis(net, freq="day").items()}

    def by(status):
        r = reasons[reasons["status"] == status]
        return {str(k): int(v) for k, v in zip(r["reason"], r["n"], strict=True)}

    first_prev = d["account"].iloc[0] / (1 + d["return"].iloc[0] - d["cost"].iloc[0]) if len(d) else 1
    traded = _f(st.get("traded_value"))
    fees = _f(st.get("fees")) or 0.0
    return {
        "returns": {**geo, "convention": "geometric, net of costs, 252 sessions/year, rf=0, "
                                         "sample std; max_drawdown on compounded NAV"},
        "benchmark": {**{k: (_f(v) if k != "periods" else v)
                         for k, v in M.geometric_metrics(bench).items()},
                      "missing_sessions": int(d["bench_missing"].sum()) if len(d) else 0},
        "qlib": {**qlib, "convention": "qlib.contrib.evaluate.risk_analysis mode='sum', N=238 "
                                       "(freq='day'); mean/std per session, not annualised"},
        "trading": {
            "n_orders": int(st.get("n_orders") or 0), "n_filled": int(st.get("n_filled") or 0),
            "n_partial": int(st.get("n_partial") or 0),
            "fill_ratio": _f(st.get("fill_ratio")),
            "n_canceled": int(st.get("n_canceled") or 0),
            "n_expired": int(st.get("n_expired") or 0),
            "rejects_by_reason": by("REJECTED"), "denials_by_reason": by("DENIED"),
            "cuts_by_reason": by("CUT"),
            "traded_value": traded, "costs": fees,
            "turnover": _f(d["turnover"].sum()) if len(d) else None,
            "cost_bps": _f(fees / first_prev * 1e4) if first_prev else None,
            "trading_state_changes": states,
        },
        "execution": {
            "slippage_bps": {"decision": _side_block(st, "decision"),
                             "arrival": _side_block(st, "arrival"),
                             "convention": "bps, positive = cost (buy above / sell below)"},
            "pa": {"mean": _f(st.get("pa_mean")), "value_weighted": _f(st.get("pa_value_weighted")),
                   "pos": _f(st.get("pa_pos")),
                   "convention": "Qlib pa: sign*(fill/arrival-1), sell +1 buy -1; fraction"},
            "gap_ticks": gap,
        },
        "signal": signal,
    }


def aggregate(db, data_dir=None, instances=None, period="all", mode: str | None = None,
              con=None) -> list[Feedback]:
    """Feedback of every recorded instance (or the named ones) for one period.

    Parameters
    ----------
    db : path to bridge's DuckDB file (opened read-only), ignored when ``con`` is given
    data_dir : path, optional
        Folder with ``benchmark.parquet`` and ``bars.parquet``; without it the benchmark return
        is 0 and signal quality is not computed.
    instances : sequence of str, optional
        preview_id / strategy_id values; default all.
    period : str or (start, end)
        See :func:`resolve_period`; resolved per instance against its own sessions.
    mode : {"preview", "paper", "live"}, optional
        Default: every mode recorded.
    con : duckdb connection, optional
        An open connection (tests, benchmark); the views are created on it.

    Returns
    -------
    list of Feedback
        One per (instance, mode), ordered by mode then instance.

    Raises
    ------
    bridge.errors.ConfigError
        Unknown period or mode, or a named instance with no recorded trajectory.
    """
    if con is None:
        from bridge.store.duck import connect

        with connect(db, read_only=True) as c:
            return aggregate(db, data_dir, instances, period, mode, con=c)
    create_views(con, data_dir)
    # over the whole history the order statistics need no range and carry each instance's
    # order span: computed first, they spare list_instances a second scan of every order
    stats = order_stats(con, whole_history=True) if period == "all" else None
    insts = list_instances(con, instances, mode, order_spans=stats)
    ranges = []
    for inst in insts:
        label, s, e = resolve_period(period, inst["first"], inst["last"])
        inst.update(label=label, start=s, end=e)
        ranges.append((inst["instance"], inst["mode"], s, e))
    if not insts:
        return []
    _ranges_table(con, ranges)
    if stats is None:
        stats = order_stats(con)
    stats = stats.set_index(["instance", "mode"])
    reasons = con.sql(REASONS_SQL).df()
    labels = _Labels(data_dir) if data_dir is not None and \
        (Path(data_dir) / "bars.parquet").exists() else None
    out = []
    for inst in insts:
        key = (inst["instance"], inst["mode"])
        s, e = inst["start"], inst["end"]
        d = _daily(con, *key, s, e)
        st = stats.loc[key].to_dict() if key in stats.index else {}
        rs = reasons[(reasons["instance"] == key[0]) & (reasons["mode"] == key[1])]
        states = _state_changes(con, s, e) if key[1] != "preview" else {"n": 0, "transitions": {}}
        gap = gap_ticks(con, *key, s, e)
        ic_table, sig = signal_ic(con, inst, labels, s, e)
        sig = {k: (_f(v) if isinstance(v, float) else v) for k, v in sig.items()}
        fb = Feedback(instance=key[0], mode=key[1],
                      period={"label": inst["label"], "start": s.isoformat(), "end": e.isoformat(),
                              "sessions": int(len(d))},
                      info=inst["info"], daily=d, orders=order_records(con, *key, s, e),
                      ic=ic_table)
        fb.summary = _summary(d, st, rs, states, gap, sig)
        out.append(fb)
    return out
