"""Retry policy (tenacity): reads and cancels only, never a submit.

Reads and cancels retry on network errors and 5xx with exponential backoff and jitter, at most
``MAX_TRIES`` tries (seed 001: "exponential backoff + jitter, at most 3, only network/5xx; local
parameter or risk refusals are never retried"). A submit is never re-sent blindly: an unknown
outcome stays in flight and is resolved by querying the broker by client order id.
"""

from __future__ import annotations

MAX_TRIES = 3


class TransientError(Exception):
    """Marker base for errors worth retrying (network, timeout, 5xx, 429)."""


def is_transient(exc: BaseException) -> bool:
    """Network errors, timeouts, 5xx and 429 (rate limit) are transient; nothing else is."""
    if isinstance(exc, (TransientError, TimeoutError, ConnectionError)):
        return True
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    if isinstance(status, int):
        return status == 429 or 500 <= status < 600
    from bridge.brokers.sim import ServerError  # the paper broker's 5xx

    return isinstance(exc, ServerError)


def retry_reads(fn, *, tries: int = MAX_TRIES, initial_s: float = 0.05, max_s: float = 2.0,
                sleep=None):
    """Wrap ``fn`` so transient failures are retried with exponential backoff and jitter.

    Parameters
    ----------
    fn : callable
        A read or a cancel (idempotent at the venue).
    tries : int
        Attempts in total (default 3).
    initial_s, max_s : float
        Backoff: ``initial_s * 2**n`` plus jitter, capped at ``max_s`` seconds.
    sleep : callable, optional
        Injected sleep (tests and simulated time pass a no-op).

    Returns
    -------
    callable
        Same signature; re-raises the last error after ``tries`` attempts.
    """
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

    def call(*args, **kwargs):
        kw = {"sleep": sleep} if sleep is not None else {}
        for attempt in Retrying(retry=retry_if_exception(is_transient),
                                stop=stop_after_attempt(tries),
                                wait=wait_exponential_jitter(multiplier=initial_s, max=max_s,
                                                             jitter=initial_s),
                                reraise=True, **kw):
            with attempt:
                return fn(*args, **kwargs)

    return call
