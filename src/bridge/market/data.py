"""Read the Parquet market data written by :mod:`bridge.market.samples` (or by the user).

Files under ``data_dir``: ``bars.parquet`` (datetime, instrument, open, high, low, close, volume),
``instruments.parquet`` (instrument, name, sector, industry, first_date, last_date, n_bars),
``benchmark.parquet`` (datetime, instrument, close). Scans are lazy, so a date or instrument filter
is pushed down to the file.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from bridge.errors import DataValidationError


def _require(path: Path) -> Path:
    if not path.is_file():
        raise DataValidationError(
            str(path), "missing_file",
            "market data not found; run `bridge data install-samples` first")
    return path


def _as_date(value) -> date:
    """A date from a date, datetime, Timestamp or ISO string (polars 2 no longer casts strings)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if hasattr(value, "date") and callable(value.date):
        return value.date()
    return date.fromisoformat(str(value)[:10])


def _date_filter(lf: pl.LazyFrame, start, end) -> pl.LazyFrame:
    if start is not None:
        lf = lf.filter(pl.col("datetime") >= _as_date(start))
    if end is not None:
        lf = lf.filter(pl.col("datetime") <= _as_date(end))
    return lf


def load_bars(data_dir: Path, start=None, end=None, instruments=None) -> pl.DataFrame:
    """Daily bars, sorted by (datetime, instrument); prices currency/share, volume shares."""
    lf = _date_filter(pl.scan_parquet(_require(Path(data_dir) / "bars.parquet")), start, end)
    if instruments is not None:
        lf = lf.filter(pl.col("instrument").is_in(list(instruments)))
    return lf.sort("datetime", "instrument").collect()


def load_instruments(data_dir: Path) -> pl.DataFrame:
    """The instruments table (one row per instrument)."""
    return pl.read_parquet(_require(Path(data_dir) / "instruments.parquet"))


def load_benchmark(data_dir: Path, start=None, end=None) -> pl.DataFrame:
    """Benchmark index closes: datetime, instrument, close."""
    lf = pl.scan_parquet(_require(Path(data_dir) / "benchmark.parquet"))
    return _date_filter(lf, start, end).sort("datetime").collect()


def load_manifest(data_dir: Path) -> dict:
    """``manifest.json`` written on install (sources, summary, data_hash)."""
    return json.loads(_require(Path(data_dir) / "manifest.json").read_text())


@dataclass(frozen=True)
class Panel:
    """Bars as dense session x instrument arrays, the shape the engines' inner loops use.

    Attributes
    ----------
    sessions : ndarray of datetime64[D], shape (T,)
    instruments : ndarray of str, shape (N,), sorted
    open, high, low, close, volume : ndarray of float64, shape (T, N)
        NaN where the instrument has no (accepted) bar that session. Prices currency/share,
        volume shares.
    """

    sessions: np.ndarray
    instruments: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @classmethod
    def from_bars(cls, bars: pl.DataFrame) -> Panel:
        """Build from a long bars frame (columns as in :func:`load_bars`)."""
        sessions = np.sort(bars["datetime"].unique().to_numpy()).astype("datetime64[D]")
        instruments = np.sort(bars["instrument"].unique().to_numpy().astype(str))
        # row -> (session, instrument) positions: dense ranks, found by lookups (no sort)
        ti = np.searchsorted(sessions, bars["datetime"].to_numpy().astype("datetime64[D]"))
        ni = pc.index_in(bars["instrument"].to_arrow(), value_set=pa.array(instruments)).to_numpy()
        shape = (len(sessions), len(instruments))
        fields = {}
        for col in ("open", "high", "low", "close", "volume"):
            arr = np.full(shape, np.nan)
            arr[ti, ni] = bars[col].to_numpy().astype(np.float64)
            fields[col] = arr
        return cls(sessions=sessions, instruments=instruments, **fields)

    @property
    def shape(self) -> tuple[int, int]:
        return self.close.shape

    def tradable(self) -> np.ndarray:
        """bool (T, N): a valid bar with volume > 0 exists (no bar = suspended / not listed)."""
        return np.isfinite(self.close) & (np.nan_to_num(self.volume) > 0)

    def last_close(self) -> np.ndarray:
        """float (T, N): close carried forward over missing bars (NaN before the first bar)."""
        close = self.close
        idx = np.where(np.isfinite(close), np.arange(close.shape[0])[:, None], 0)
        np.maximum.accumulate(idx, axis=0, out=idx)
        out = close[idx, np.arange(close.shape[1])]
        started = np.maximum.accumulate(np.isfinite(close), axis=0)
        return np.where(started, out, np.nan)

    def last_bar_index(self) -> np.ndarray:
        """int (N,): index of each instrument's last session with a bar (-1 if none)."""
        has = np.isfinite(self.close)
        rev = has[::-1].argmax(axis=0)
        return np.where(has.any(axis=0), has.shape[0] - 1 - rev, -1)
