"""Workload: the demo pipeline without the notebook.

load Parquet bars -> compute + validate two signals -> 3 preview instances x 245 sessions ->
write the preview tables to a fresh DuckDB file. Each repeat runs in a fresh subprocess so that the
wall time includes imports and the peak RSS is the pipeline's own.

Run:  .venv/bin/python benchmarks/bench_pipeline.py [--repeat 5]
(needs the sample data: `bridge data install-samples` or `make data`)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from datetime import datetime
from bridge.preview.pipeline import run_pipeline
t1 = time.perf_counter()
run = run_pipeline(sys.argv[1], sys.argv[2], created_at=datetime(2010, 8, 20, 18))
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "pipeline_s": t2 - t1, "total_s": t2 - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "account_rows": run.result.account.height, "trade_rows": run.result.trade.height,
                  "position_rows": run.result.position.height}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--data-dir", default=str(ROOT / "data"))
    args = ap.parse_args()
    runs = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, "-c", CHILD, args.data_dir, f"{tmp}/b.duckdb"],
                                 capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout))
        print(f"run {i + 1}: {runs[-1]}")
    summary = {k: statistics.median(r[k] for r in runs)
               for k in ("import_s", "pipeline_s", "total_s", "peak_rss_mb")}
    print("median:", json.dumps({k: round(v, 3) for k, v in summary.items()}))
    res = ROOT / "benchmarks" / "results"
    res.mkdir(exist_ok=True)
    (res / "pipeline.json").write_text(json.dumps({"runs": runs, "median": summary}, indent=2))


if __name__ == "__main__":
    main()
