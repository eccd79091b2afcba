"""The main job on stored data: Parquet bars -> signals -> preview instances -> DuckDB tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bridge.market.data import Panel, load_bars, load_instruments, load_manifest
from bridge.market.rules import MARKETS
from bridge.portfolio.topk import TopkDropout
from bridge.preview.engine import InstanceSpec, PreviewResult, run_preview
from bridge.preview.signal_grid import signal_grid
from bridge.research.factors import momentum, reversal
from bridge.signals import validate_signals
from bridge.store.duck import replace_instances

#: the demo's instances: two signals traded top-50/5 and an equal-weight buy-and-hold
DEFAULT_INSTANCES = (
    InstanceSpec("momentum_top50", "topk_dropout", 1_000_000.0, signal="momentum_20",
                 topk=TopkDropout(topk=50, n_drop=5), display_name="20-day momentum, top 50"),
    InstanceSpec("reversal_top50", "topk_dropout", 500_000.0, signal="reversal_5",
                 topk=TopkDropout(topk=50, n_drop=5), display_name="5-day reversal, top 50"),
    InstanceSpec("ew_buy_hold", "buy_and_hold", 2_000_000.0,
                 display_name="Equal-weight buy-and-hold"),
)


@dataclass(frozen=True)
class PipelineRun:
    result: PreviewResult
    signal_counts: dict
    data_hash: str


def example_signals(panel: Panel) -> dict:
    """The research module's two signals on ``panel``: name -> validated signal frame."""
    return {"momentum_20": momentum(panel, 20), "reversal_5": reversal(panel, 5)}


def run_pipeline(data_dir: Path, db_path: Path | None, instances=DEFAULT_INSTANCES,
                 start=None, end=None, market: str = "US", created_at: datetime | None = None,
                 signals: dict | None = None, progress=None) -> PipelineRun:
    """Load bars, compute and validate signals, run the instances, write the preview tables.

    Parameters
    ----------
    data_dir : Path
        Folder with the Parquet market data (``bridge data install-samples``).
    db_path : Path or None
        DuckDB file to write (``None``: compute only).
    instances : sequence of InstanceSpec
    start, end : date-like, optional
        Session range.
    market : str
        Key of :data:`bridge.market.rules.MARKETS`.
    created_at : datetime, optional
        Injected clock value stored on the instances (default: now, UTC, to the second).
    signals : dict of str -> DataFrame, optional
        Extra or replacement signals (datetime, instrument, score) by name.

    Returns
    -------
    PipelineRun
    """
    rules = MARKETS[market]
    bars = load_bars(data_dir, start, end)
    panel = Panel.from_bars(bars)
    known = load_instruments(data_dir)["instrument"].to_list()
    frames = example_signals(panel)
    frames.update(signals or {})
    grids, counts = {}, {}
    for name, frame in frames.items():
        checked = validate_signals(frame, instruments=known, sessions=panel.sessions)
        grids[name] = signal_grid(panel, checked)
        counts[name] = grids[name][1]
    data_hash = load_manifest(data_dir).get("data_hash", "")
    if created_at is None:
        created_at = datetime.now().replace(microsecond=0)
    result = run_preview(panel, list(instances), grids, rules, market, data_hash, created_at,
                         progress)
    if db_path is not None:
        replace_instances(db_path, result.tables())
    return PipelineRun(result, counts, data_hash)
