"""Write LiveFeedback files: JSON document, Parquet tables, and RD-Agent's Qlib-run files.

Layout, one folder per instance, mode and period::

    <out_dir>/<instance>/<mode>/<period>/
        feedback.json     bridge.live_feedback/v1 (JSON Schema: docs/feedback_v1.schema.json)
        daily.parquet     one row per session: report_normal columns + excess returns, NAV, drawdown
        orders.parquet    one row per order: prices, status, reason, slippage (bps), pa
        ic.parquet        one row per signal date: IC, Rank IC
        qlib_res.csv      pandas Series metric -> value (RD-Agent: read_csv(index_col=0).iloc[:, 0])
        ret.pkl           pandas DataFrame, Qlib's report_normal columns, DatetimeIndex "datetime"

``qlib_res.csv`` uses Qlib's metric names where the number follows Qlib's convention
(``IC``, ``ICIR``, ``Rank IC``, ``Rank ICIR``, ``1day.excess_return_{with,without}_cost.{mean,
std,annualized_return,information_ratio,max_drawdown}`` from ``risk_analysis`` "sum" mode with
N=238); every other figure (geometric returns, trading, execution quality) is under ``live.``.
RD-Agent reads these two files from a Qlib workspace (``qlib_res.csv`` written by its
``read_exp_res.py`` as ``pd.Series(recorder.list_metrics()).to_csv(...)``, and ``ret.pkl`` =
``report_normal_1day.pkl``), so a LiveFeedback folder can be handed to it in place of one.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

from bridge.feedback import SCHEMA_ID

QLIB_FREQ = "1day"


def _clean_json(x):
    if isinstance(x, dict):
        return {str(k): _clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean_json(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):   # numpy scalars
        return _clean_json(x.item())
    return x


def qlib_res(fb) -> "pd.Series":  # noqa: F821
    """The ``qlib_res.csv`` Series of one :class:`~bridge.feedback.aggregate.Feedback`.

    Returns
    -------
    pandas.Series of float
        Index = metric names (Qlib's names first, then ``live.*``); NaN where undefined (e.g. IC
        of an instance without a signal).
    """
    import pandas as pd

    s = fb.summary
    out = {k: s["signal"].get(k) for k in ("IC", "ICIR", "Rank IC", "Rank ICIR")}
    for name in ("excess_return_without_cost", "excess_return_with_cost"):
        for k, v in s["qlib"][name].items():
            out[f"{QLIB_FREQ}.{name}.{k}"] = v
    for k, v in s["returns"].items():
        if k != "convention":
            out[f"live.{k}"] = v
    t, e = s["trading"], s["execution"]
    out.update({
        "live.benchmark.total_return": s["benchmark"]["total_return"],
        "live.n_orders": t["n_orders"], "live.n_filled": t["n_filled"],
        "live.fill_ratio": t["fill_ratio"], "live.n_canceled": t["n_canceled"],
        "live.n_expired": t["n_expired"],
        "live.n_rejected": sum(t["rejects_by_reason"].values()),
        "live.n_denied": sum(t["denials_by_reason"].values()),
        "live.n_cut": sum(t["cuts_by_reason"].values()),
        "live.turnover": t["turnover"], "live.costs": t["costs"], "live.cost_bps": t["cost_bps"],
        "live.trading_state_changes": t["trading_state_changes"]["n"],
        "live.pa": e["pa"]["mean"], "live.pa_value_weighted": e["pa"]["value_weighted"],
        "live.pos": e["pa"]["pos"], "live.gap_ticks_p95": e["gap_ticks"]["p95"],
    })
    for ref in ("decision", "arrival"):
        for side in ("buy", "sell"):
            out[f"live.slippage_bps.{ref}.{side}"] = e["slippage_bps"][ref][side]["mean"]
    return pd.Series({k: (math.nan if v is None else float(v)) for k, v in out.items()},
                     dtype="float64")


def ret_frame(fb) -> "pd.DataFrame":  # noqa: F821
    """Qlib's ``report_normal`` frame (account, return, total_turnover, turnover, total_cost, cost,
    value, cash, bench), indexed by ``datetime``; rates are fractions of the previous account."""
    from bridge.feedback.aggregate import REPORT_NORMAL

    return fb.daily[REPORT_NORMAL].astype("float64").copy()


def feedback_document(fb, files: dict | None = None, generated_at: str | None = None) -> dict:
    """The ``bridge.live_feedback/v1`` JSON document of one Feedback (NaN -> null)."""
    doc = {
        "schema": SCHEMA_ID,
        "generated_at": generated_at or datetime.now(timezone.utc).replace(microsecond=0)
        .isoformat(),
        "instance": {"id": fb.instance, "mode": fb.mode, **fb.info},
        "period": fb.period,
        **fb.summary,
        "files": files or {},
    }
    return _clean_json(doc)


def write_one(fb, out_dir: Path | str, generated_at: str | None = None) -> Path:
    """Write the files of one Feedback under ``out_dir/<instance>/<mode>/<period>/``; return it."""
    folder = Path(out_dir) / fb.instance / fb.mode / fb.period["label"]
    folder.mkdir(parents=True, exist_ok=True)
    files = {"daily": "daily.parquet", "orders": "orders.parquet", "ic": "ic.parquet",
             "qlib_res": "qlib_res.csv", "ret": "ret.pkl"}
    fb.daily.to_parquet(folder / files["daily"])
    fb.orders.to_parquet(folder / files["orders"], index=False)
    fb.ic.to_parquet(folder / files["ic"], index=False)
    qlib_res(fb).to_csv(folder / files["qlib_res"])
    ret_frame(fb).to_pickle(folder / files["ret"])
    doc = feedback_document(fb, files, generated_at)
    (folder / "feedback.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return folder


def write_feedback(db, data_dir, out_dir, instances=None, period="all", mode=None,
                   generated_at: str | None = None) -> list[Path]:
    """Aggregate and write LiveFeedback for every recorded instance (or the named ones).

    Parameters
    ----------
    db : path
        bridge's DuckDB file (opened read-only).
    data_dir : path or None
        Folder with ``benchmark.parquet`` and ``bars.parquet`` (benchmark returns, arrival
        prices, signal-quality labels).
    out_dir : path
        Root folder, e.g. ``reports/feedback``.
    instances : sequence of str, optional
        preview_id / strategy_id values (default: all recorded).
    period : str or (start, end)
        ``"day"``, ``"week"``, ``"month"``, ``"all"``, ``"YYYY-MM-DD:YYYY-MM-DD"``.
    mode : {"preview", "paper", "live"}, optional
        Default: every recorded mode.
    generated_at : str, optional
        ISO timestamp stored in the documents (injected clock for reproducible files).

    Returns
    -------
    list of Path
        One folder per (instance, mode).

    Raises
    ------
    bridge.errors.ConfigError
        Unknown period or mode, or a named instance with no recorded trajectory.
    """
    from bridge.feedback.aggregate import aggregate

    return [write_one(fb, out_dir, generated_at)
            for fb in aggregate(db, data_dir, instances, period, mode)]
