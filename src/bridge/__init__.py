"""bridge: carry a quant strategy from research to execution.

The top-level import is kept light (no pandas, polars or duckdb) so that ``import bridge`` stays
fast; the layers are imported on first use::

    from bridge.market import samples          # real sample data -> Parquet
    from bridge.preview import run_preview      # several instances side by side
"""

from bridge.errors import (
    BridgeError,
    ConfigError,
    DataValidationError,
    SignalValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "BridgeError",
    "ConfigError",
    "DataValidationError",
    "SignalValidationError",
    "__version__",
]
