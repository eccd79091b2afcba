"""Shared fixtures: the real sample data (converted once per session) and small hand-made panels."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from bridge.market.data import Panel


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    """The real S&P 500 sample data converted to Parquet in a temporary folder."""
    from bridge.market.samples import install_samples

    out = tmp_path_factory.mktemp("data")
    install_samples(out)
    return out


def make_panel(days: list[str], close: dict[str, list[float]], volume: float = 1e6,
               open_: dict[str, list[float]] | None = None) -> Panel:
    """A panel from per-instrument close lists (NaN = no bar)."""
    rows = []
    for inst, values in close.items():
        for i, (d, c) in enumerate(zip(days, values, strict=True)):
            if c is None or np.isnan(c):
                continue
            o = open_[inst][i] if open_ else c
            rows.append({"datetime": d, "instrument": inst, "open": o, "high": max(o, c),
                         "low": min(o, c), "close": c, "volume": volume})
    bars = pl.DataFrame(rows).with_columns(pl.col("datetime").str.to_date())
    return Panel.from_bars(bars)


@pytest.fixture
def panel_factory():
    return make_panel
