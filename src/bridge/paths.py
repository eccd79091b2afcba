"""Where bridge keeps data and reports.

The project root is ``$BRIDGE_HOME`` if set, else the nearest folder above the working directory
that holds ``pyproject.toml`` and ``src/bridge`` (so notebooks run from ``notebooks/`` find the same
files as the CLI run from the root), else the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    env = os.environ.get("BRIDGE_HOME")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "src" / "bridge").is_dir():
            return folder
    return here


def data_dir() -> Path:
    """``<root>/data``: Parquet market data and the DuckDB file."""
    return project_root() / "data"


def default_db() -> Path:
    """``<root>/data/bridge.duckdb``: bridge's state."""
    return data_dir() / "bridge.duckdb"


def reports_dir() -> Path:
    """``<root>/reports``: executed notebooks, HTML, exports."""
    return project_root() / "reports"
