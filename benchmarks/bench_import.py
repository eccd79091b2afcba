"""Workload: cold `import bridge` (and `import bridge.cli`), each in a fresh interpreter.

Run:  .venv/bin/python benchmarks/bench_import.py [--repeat 20]
Reported: the interpreter start-up alone (`python -c pass`) and with the import, median and min.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(code: str, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    n = ap.parse_args().repeat
    for label, code in (("python -c pass", "pass"), ("import bridge", "import bridge"),
                        ("import bridge.cli", "import bridge.cli")):
        t = timed(code, n)
        print(f"{label:20s} median {statistics.median(t) * 1e3:7.1f} ms   min {min(t) * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
