"""What the broker emulators share: an asyncio event loop in a daemon thread, and the paper
broker's sessions.

Everything an emulator does runs in its loop (so the paper broker behind it is never touched by
two threads); the test or notebook thread reaches it with :meth:`LoopThread.call`.
"""

from __future__ import annotations

import asyncio
import threading


class LoopThread:
    """Base of a server living in its own event loop and thread.

    Subclasses implement ``async _start(host, port)`` (bind, set ``self.port``) and
    ``async _stop()`` (close connections and the listening socket).
    """

    loop: asyncio.AbstractEventLoop | None = None
    port: int | None = None
    _thread: threading.Thread | None = None
    thread_name = "emulator"

    def start(self, port: int = 0, host: str = "127.0.0.1"):
        """Serve in a background thread (port 0: a free port); returns self once listening.

        Raises
        ------
        OSError
            The port could not be bound (raised in the calling thread).
        """
        ready = threading.Event()
        err: list[BaseException] = []

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self._start(host, port))
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                err.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name=self.thread_name, daemon=True)
        self._thread.start()
        ready.wait(10)
        if err:
            raise err[0]
        return self

    def stop(self) -> None:
        """Run ``_stop`` in the loop, then end the loop and its thread; idempotent."""
        if self.loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop = None

    def call(self, coro_fn, *args, timeout: float = 60):
        """Run ``coro_fn(*args)`` in the server's loop from another thread; returns its result."""
        return asyncio.run_coroutine_threadsafe(coro_fn(*args), self.loop).result(timeout)


class PaperVenueServer(LoopThread):
    """A :class:`LoopThread` in front of a paper broker (``self.broker``) whose ``async
    _advance(session, phase)`` trades a session and pushes what happened, and whose
    ``self.faults`` says what to inject."""

    broker = None
    faults = None

    def advance(self, session: str, phase: str = "all") -> int:
        """Trade ``session`` (YYYY-MM-DD; ``phase`` all, open or close, see
        :meth:`bridge.brokers.sim.PaperBroker.run_session`) and push the updates; returns how
        many the emulator reports (fills or events)."""
        return self.call(self._advance, str(session)[:10], phase)

    def set_faults(self, faults) -> None:
        """Replace the fault plan (in the server's loop)."""
        async def _set():
            self.faults = faults
        self.call(_set)

    def _session_index(self, day: str) -> int:
        """Index of session ``day`` in the broker's bars.

        Raises
        ------
        KeyError
            ``day`` is not a session of the bars.
        """
        import numpy as np

        s = self.broker.panel.sessions
        d = np.datetime64(str(day)[:10], "D")
        t = int(np.searchsorted(s, d))
        if t >= len(s) or s[t] != d:
            raise KeyError(f"{day} is not a session of the emulator's bars")
        return t
