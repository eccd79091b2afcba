"""Prometheus metrics of the execution path and the logging sample policy.

Metric names follow seed 001: ``executor_submit_total{result,reason}``, ``executor_latency_ms``
(histogram), ``executor_throttle_total{reason}``, ``risk_denied_total{reason}``. Each
:class:`ExecMetrics` has its own registry (so runs and tests do not collide); expose one with
``prometheus_client.start_http_server(port, registry=metrics.registry)`` or render it with
:meth:`ExecMetrics.text`.

Logging samples passes at 1% and failures at 100% (seed 001). The pass sample is deterministic
(a hash of the client order id), so the same run logs the same lines.
"""

from __future__ import annotations

import hashlib
import logging

LATENCY_BUCKETS_MS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)

log = logging.getLogger("bridge.execution")


class ExecMetrics:
    """Counters and the latency histogram of one process (or one run)."""

    def __init__(self, registry=None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.submit_total = Counter("executor_submit_total", "Order submits by result and reason",
                                    ["result", "reason"], registry=r)
        self.latency_ms = Histogram("executor_latency_ms", "Submit latency, ms",
                                    buckets=LATENCY_BUCKETS_MS, registry=r)
        self.throttle_total = Counter("executor_throttle_total", "Throttled orders by reason",
                                      ["reason"], registry=r)
        self.risk_denied_total = Counter("risk_denied_total", "Pre-trade risk denials by reason",
                                         ["reason"], registry=r)

    def text(self) -> str:
        """The registry in the Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()

    def value(self, name: str, **labels) -> float:
        """Current value of a sample (0.0 if absent), e.g. ``value("risk_denied_total",
        reason="WARMUP")``."""
        v = self.registry.get_sample_value(name, labels or None)
        return 0.0 if v is None else float(v)


def sampled(client_order_id: str, rate: float = 0.01) -> bool:
    """True for ``rate`` of ids, decided by a hash: deterministic across runs."""
    h = int.from_bytes(hashlib.blake2b(client_order_id.encode(), digest_size=4).digest(), "big")
    return h < rate * 2**32


def log_outcome(ok: bool, client_order_id: str, message: str, *args) -> None:
    """Failures always; passes at 1%."""
    if not ok:
        log.warning("[%s] " + message, client_order_id, *args)
    elif sampled(client_order_id):
        log.info("[%s] " + message, client_order_id, *args)
