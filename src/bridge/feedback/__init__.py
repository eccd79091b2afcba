"""LiveFeedback: what really happened, in the files RD-Agent already reads (issue 7).

From the recorded preview, paper and live trajectories in bridge's DuckDB file, aggregate per
strategy instance, mode and period the returns, risk, trading, execution-quality and
signal-quality figures, and write them as

- a versioned JSON document (``bridge.live_feedback/v1``, schema in
  ``docs/feedback_v1.schema.json``) and Parquet tables under ``reports/feedback/<instance>/``;
- ``qlib_res.csv`` and ``ret.pkl`` beside them, in the form RD-Agent reads from a Qlib run.

Submodules (imported on first use so that ``import bridge.feedback`` stays light: no pandas,
polars or duckdb here)::

    from bridge.feedback.metrics import risk_analysis, sharpe, calc_ic   # pure numpy
    from bridge.feedback.aggregate import aggregate                      # DuckDB SQL
    from bridge.feedback.export import write_feedback                    # files
"""

SCHEMA_ID = "bridge.live_feedback/v1"

__all__ = ["SCHEMA_ID", "write_feedback"]


def write_feedback(*args, **kwargs):
    """Lazy alias of :func:`bridge.feedback.export.write_feedback` (keeps the import light)."""
    from bridge.feedback.export import write_feedback as _write

    return _write(*args, **kwargs)
