"""The execution outbox: events to JSONL segments on disk, published whole, in seq order.

Layout under ``root``::

    root/outbox.lock                       one writer at a time (flock on POSIX)
    root/spool/<first_seq>.jsonl.part      the batch being written; never read by readers
    root/ready/<first_seq>.jsonl           published batches, whole files only

``<first_seq>`` is the batch's first seq zero-padded to 20 digits, so the names sort in seq order.
This is the spool -> ready publication of the team's JsonlSink (seed 001, section 3): a segment
appears in ``ready/`` by one atomic rename, after its bytes were fsync'ed, so a reader sees a
segment entirely or not at all.

Why batches: one fsync costs a disk round trip (~0.1 to 10 ms, device-dependent); an fsync per
event caps the outbox at a few hundred events per second. Writing ``batch_size`` events, then
one fsync of the file, one rename and one fsync of the directory, makes the durable rate
thousands of events per second while every acknowledged event is still on disk
(``benchmarks/bench_outbox.py`` measures it).

Guarantees (single writer; a crash is the process dying, or the machine losing power on a
filesystem that honours fsync):

1. ``acked_seq`` (and the return value of :meth:`Outbox.flush`) only counts events whose segment
   was fsync'ed, renamed into ``ready/`` and whose directory was fsync'ed: an acknowledged event
   survives any later crash.
2. ``ready/`` only ever holds whole segments: every file ends with a newline and every line is
   one event.
3. The seqs in ``ready/`` are always exactly ``1 .. H`` (no gap, no duplicate, in file-name order)
   with ``H >= acked_seq`` of any writer so far. ``H`` can exceed the last acknowledged seq: on
   start, the complete lines of a crashed writer's spool file (appended, never acknowledged) are
   published too, because they are valid events and dropping them would lose work.
4. What a crash can lose: events appended but not acknowledged that were still in the process's
   buffer, or the incomplete last line of the spool file (dropped and counted in
   :attr:`Outbox.recovery`). Their seqs are then given to the next events appended: a seq
   returned by ``append`` is final only once ``acked_seq`` has reached it. A caller that must
   not lose an event re-emits everything after ``acked_seq`` (recovered copies carry the same
   ``event_id`` when it is derived from content, see ``ExecutionEvent.new``).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bridge.errors import BridgeError, ValidationError
from bridge.execution.events import ExecutionEvent

try:  # POSIX; on Windows the single-writer rule is the caller's to keep
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["Outbox", "OutboxError", "OutboxStats", "RecoveryReport", "read_events"]

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^(\d{20})\.jsonl$")
_PART_SUFFIX = ".jsonl.part"
_TMP_SUFFIX = ".jsonl.tmp"


class OutboxError(BridgeError, RuntimeError):
    """The outbox cannot be used: locked by another writer, closed, or failed (see message)."""


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening the outbox found in ``spool/`` (all zero after a clean shutdown).

    Attributes
    ----------
    spool_files : int
        Leftover ``.part`` files of a crashed writer.
    events_recovered : int
        Their complete, new lines, published to ``ready/`` (appended, never acknowledged).
    truncated_lines : int
        Incomplete last lines (no newline: the crash hit mid-write), dropped.
    duplicate_lines : int
        Lines whose seq was already in ``ready/`` (the crash hit between publishing a segment and
        removing its spool file), dropped.
    invalid_lines : int
        Complete lines that are not an event, or break the seq sequence, dropped with every line
        after them so that ``ready/`` keeps no gap.
    tmp_files_removed : int
        Half-written recovery files of a crash during an earlier recovery.
    """

    spool_files: int = 0
    events_recovered: int = 0
    truncated_lines: int = 0
    duplicate_lines: int = 0
    invalid_lines: int = 0
    tmp_files_removed: int = 0


@dataclass(slots=True)
class OutboxStats:
    """Counters since the outbox was opened: ``appended``, ``flushes`` (segments published) and
    ``fsyncs`` (file and directory fsyncs, two per flush)."""

    appended: int = 0
    flushes: int = 0
    fsyncs: int = 0


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}"


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory holding the new entry is fsync'ed.
    # Windows cannot open a directory for fsync; NTFS journals the rename itself.
    if os.name == "nt":  # pragma: no cover
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(src: Path, dst: Path) -> None:
    # Windows refuses a rename while another process (a virus scanner, an indexer) holds the file
    # open; the seed's _atomic_move_with_retry retries briefly. POSIX never hits PermissionError.
    for attempt in range(5):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if os.name != "nt" or attempt == 4:
                raise
            time.sleep(0.01 * 2**attempt)  # pragma: no cover


def _segments(ready: Path) -> list[tuple[int, Path]]:
    """Published segments as (first seq, path), in seq order; other files are ignored."""
    out = []
    for entry in os.scandir(ready):
        m = _SEGMENT.match(entry.name)
        if m:
            out.append((int(m.group(1)), Path(entry.path)))
    out.sort()
    return out


def _last_line(path: Path, block: int = 8192) -> bytes:
    """The last complete line of a file, read backwards (segments can be large)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        buf = b""
        pos = end
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
            # buf ends with the segment's final newline; look for the one before the last line
            cut = buf.rfind(b"\n", 0, len(buf) - 1)
            if cut >= 0:
                return buf[cut + 1:]
        return buf


def _last_seq_in_ready(ready: Path) -> int:
    for _first, path in reversed(_segments(ready)):
        line = _last_line(path)
        if line.strip():
            try:
                return ExecutionEvent.from_json(line).seq
            except ValidationError as exc:
                raise ValidationError("line", exc.reason,
                                      f"{path}: last line is not an event: {exc}") from exc
    return 0


class Outbox:
    """Durable, ordered, append-only log of execution events (JSONL segments, fsync-batched).

    Parameters
    ----------
    root : str or Path
        Folder of the outbox (created if missing); ``spool/`` and ``ready/`` live under it.
    batch_size : int, default 500
        Events per segment: reaching it flushes (one fsync of the file, one of the directory).
    max_batch_ms : float, default 50.0
        Milliseconds after the first event of a batch at which the next :meth:`append` (or
        :meth:`poll`) flushes, so a slow trickle of events is not held back for long.
    clock : callable returning float seconds, default ``time.monotonic``
        Time source for ``max_batch_ms`` (inject a fake one in tests).

    Attributes
    ----------
    acked_seq : int
        Highest seq that is durable (see module docstring, guarantee 1).
    last_seq : int
        Highest seq assigned so far (``>= acked_seq``).
    recovery : RecoveryReport
        What opening found in the spool of a crashed writer.
    stats : OutboxStats
        Appends, flushes and fsyncs since opening.

    Raises
    ------
    OutboxError
        Another writer holds the outbox (POSIX file lock on ``root/outbox.lock``; a killed
        process releases it).

    Notes
    -----
    :meth:`append` returns **before** the event is durable; :meth:`flush` returns the durable
    seq. Flushes happen automatically at ``batch_size`` events, at ``max_batch_ms`` (checked
    on ``append`` and ``poll``; there is no background thread), in :meth:`close` and at the end
    of a ``with`` block. The methods are thread-safe (one lock); several processes must not write
    the same root (the lock file refuses a second one on POSIX).

    A failed write or fsync leaves the outbox failed: every later call raises
    :class:`OutboxError`, because after a failed fsync the kernel may have dropped the dirty
    pages and a retry could acknowledge data that is not on disk. Open a new ``Outbox`` on the
    same root to recover and continue.

    Examples
    --------
    >>> with Outbox(tmp / "outbox", batch_size=500) as ob:       # doctest: +SKIP
    ...     seq = ob.append(ExecutionEvent.new(EventType.ORDER_SUBMITTED, ts_ms=now_ms,
    ...                                        client_order_id="c-1", instrument="AAPL"))
    ...     durable = ob.flush()            # >= seq: on disk, visible to read_events
    """

    def __init__(self, root: str | Path, batch_size: int = 500, max_batch_ms: float = 50.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValidationError("batch_size", "not_positive",
                                  f"batch_size must be an int >= 1, got {batch_size!r}")
        if not max_batch_ms > 0:
            raise ValidationError("max_batch_ms", "not_positive",
                                  f"max_batch_ms must be > 0, got {max_batch_ms!r}")
        self.root = Path(root)
        self.batch_size = batch_size
        self.max_batch_ms = float(max_batch_ms)
        self._clock = clock
        self._lock = threading.Lock()
        self._spool = self.root / "spool"
        self._ready = self.root / "ready"
        self._spool.mkdir(parents=True, exist_ok=True)
        self._ready.mkdir(parents=True, exist_ok=True)
        self._lockfile = self._acquire_lock()
        self._file: BinaryIO | None = None
        self._part: Path | None = None
        self._batch_first = 0
        self._batch_t0 = 0.0
        self._pending = 0
        self._closed = False
        self._failed: BaseException | None = None
        self.stats = OutboxStats()
        try:
            self.recovery = self._recover()
        except BaseException:
            self._release_lock()
            raise
        self.acked_seq = _last_seq_in_ready(self._ready)
        self.last_seq = self.acked_seq

    # -- single writer -------------------------------------------------------------------------

    def _acquire_lock(self) -> BinaryIO | None:
        if fcntl is None:  # pragma: no cover - Windows
            return None
        f = open(self.root / "outbox.lock", "ab")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise OutboxError(f"outbox {self.root} is held by another writer (another process, "
                              "or another open Outbox); one writer at a time") from None
        return f

    def _release_lock(self) -> None:
        if self._lockfile is not None:
            self._lockfile.close()  # closing the descriptor releases the flock
            self._lockfile = None

    # -- recovery ------------------------------------------------------------------------------

    def _recover(self) -> RecoveryReport:
        """Publish the complete lines of a crashed writer's spool, drop the rest, count both."""
        tmp_removed = 0
        for entry in list(os.scandir(self._spool)):
            if entry.name.endswith(_TMP_SUFFIX):
                # a crash mid-recovery: its .part source is still there and is redone below
                os.unlink(entry.path)
                tmp_removed += 1
        parts = sorted(p for p in self._spool.iterdir() if p.name.endswith(_PART_SUFFIX))
        if tmp_removed and not parts:
            _fsync_dir(self._spool)
        ready_max = _last_seq_in_ready(self._ready)
        recovered = truncated = duplicates = invalid = 0
        for part in parts:
            data = part.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                truncated += 1
            kept: list[bytes] = []
            lines = data[:end].splitlines(keepends=True)
            for i, line in enumerate(lines):
                try:
                    seq = ExecutionEvent.from_json(line).seq
                except ValidationError:
                    seq = None
                if seq is not None and seq <= ready_max:
                    duplicates += 1
                    continue
                if seq != ready_max + len(kept) + 1:
                    # Garbage, or a seq that would leave a gap: keep the prefix that is whole.
                    invalid += len(lines) - i
                    break
                kept.append(line)
            if kept:
                first = ready_max + 1
                dst = self._ready / f"{_segment_name(first)}.jsonl"
                if len(kept) == len(lines) and end == len(data) and part.name.startswith(
                        _segment_name(first)):
                    self._fsync_path(part)
                    _replace(part, dst)
                else:
                    # Write what survives to a temporary file, so the original stays intact
                    # until the clean copy is published.
                    tmp = self._spool / f"{_segment_name(first)}{_TMP_SUFFIX}"
                    with open(tmp, "wb") as f:
                        f.write(b"".join(kept))
                        f.flush()
                        os.fsync(f.fileno())
                    _replace(tmp, dst)
                _fsync_dir(self._ready)
                recovered += len(kept)
                ready_max += len(kept)
            if part.exists():
                part.unlink()
            _fsync_dir(self._spool)
        report = RecoveryReport(len(parts), recovered, truncated, duplicates, invalid, tmp_removed)
        if parts or tmp_removed:
            log.warning("outbox %s: recovered a crashed writer's spool: %s", self.root, report)
        return report

    @staticmethod
    def _fsync_path(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- writing -------------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise OutboxError(f"outbox {self.root} failed earlier ({self._failed!r}); open a new "
                              "Outbox on the same root to recover") from self._failed
        if self._closed:
            raise OutboxError(f"outbox {self.root} is closed")

    def append(self, event: ExecutionEvent) -> int:
        """Give ``event`` the next seq and write it to the spool; may flush (see class Notes).

        Parameters
        ----------
        event : ExecutionEvent
            Its ``seq`` is replaced by the outbox's (any value it had is ignored).

        Returns
        -------
        int
            The seq assigned. The event is **not yet durable** when this returns, unless this
            call reached ``batch_size`` or ``max_batch_ms``; compare with :attr:`acked_seq` or
            call :meth:`flush`.

        Raises
        ------
        OutboxError
            The outbox is closed or failed.
        OSError
            Writing or an automatic flush failed (the outbox is then failed).
        """
        with self._lock:
            self._check_usable()
            seq = self.last_seq + 1
            if not isinstance(event, ExecutionEvent):
                raise TypeError(f"append takes an ExecutionEvent, got {type(event).__name__}")
            line = (event.to_json(seq=seq) + "\n").encode("utf-8")
            try:
                if self._file is None:
                    self._part = self._spool / f"{_segment_name(seq)}{_PART_SUFFIX}"
                    self._file = open(self._part, "wb")
                    self._batch_first = seq
                    self._batch_t0 = self._clock()
                self._file.write(line)
            except BaseException as exc:
                self._failed = exc
                raise
            self.last_seq = seq
            self._pending += 1
            self.stats.appended += 1
            if (self._pending >= self.batch_size
                    or (self._clock() - self._batch_t0) * 1000.0 >= self.max_batch_ms):
                self._flush_locked()
            return seq

    def poll(self) -> int:
        """Flush if the open batch is older than ``max_batch_ms``; call it from an idle loop.

        Returns
        -------
        int
            :attr:`acked_seq` after the call.
        """
        with self._lock:
            self._check_usable()
            if self._pending and (self._clock() - self._batch_t0) * 1000.0 >= self.max_batch_ms:
                self._flush_locked()
            return self.acked_seq

    def flush(self) -> int:
        """Make every appended event durable and visible to readers.

        write -> flush -> fsync(file) -> rename into ``ready/`` -> fsync(``ready/``); only then
        does :attr:`acked_seq` advance.

        Returns
        -------
        int
            The durable seq (= :attr:`last_seq`); unchanged if nothing was pending.

        Raises
        ------
        OutboxError
            The outbox is closed or failed.
        OSError
            A write, fsync or rename failed; the outbox is then failed (class Notes).
        """
        with self._lock:
            self._check_usable()
            return self._flush_locked()

    def _flush_locked(self) -> int:
        if not self._pending:
            return self.acked_seq
        f, part = self._file, self._part
        assert f is not None and part is not None
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            self._file = None
            _replace(part, self._ready / f"{_segment_name(self._batch_first)}.jsonl")
            _fsync_dir(self._ready)
        except BaseException as exc:
            self._failed = exc
            raise
        self.stats.flushes += 1
        self.stats.fsyncs += 2
        self._pending = 0
        self._part = None
        self.acked_seq = self.last_seq
        return self.acked_seq

    def close(self) -> int:
        """Flush what is pending and release the root. Idempotent.

        Returns
        -------
        int
            :attr:`acked_seq`.
        """
        with self._lock:
            try:
                if not self._closed and self._failed is None:
                    self._flush_locked()
            finally:
                self._closed = True
                if self._file is not None:  # only after a failure: leave the .part to recovery
                    self._file.close()
                    self._file = None
                self._release_lock()
            return self.acked_seq

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Events appended before an exception are valid events: flush them too.
        self.close()

    def __repr__(self) -> str:
        return (f"Outbox({str(self.root)!r}, acked_seq={self.acked_seq}, "
                f"last_seq={self.last_seq}, batch_size={self.batch_size})")


def read_events(root: str | Path, after_seq: int = 0) -> Iterator[ExecutionEvent]:
    """Published events with ``seq > after_seq``, in seq order, each seq once.

    Reads only ``root/ready/<first_seq>.jsonl`` (never the spool's ``.part`` files, never other
    names), so it sees whole segments only, and can run while a writer appends. To follow the
    outbox, call again with ``after_seq`` = the last seq seen.

    Parameters
    ----------
    root : str or Path
        The outbox folder.
    after_seq : int, default 0
        Skip events up to and including this seq (segments wholly below it are not opened).

    Yields
    ------
    ExecutionEvent

    Raises
    ------
    bridge.errors.ValidationError
        A line of a published segment is not an event (the segment was damaged outside the
        outbox); the message names the file and line.

    Notes
    -----
    A seq that was already yielded is skipped, so an event copied twice (a crash between two
    steps of a publication, a segment restored from a backup next to the live one) is seen once.
    """
    ready = Path(root) / "ready"
    if not ready.is_dir():
        return
    segments = _segments(ready)
    start = 0
    for i, (first, _path) in enumerate(segments):
        if first <= after_seq + 1:
            start = i  # the last segment starting at or before the first wanted seq
    last = after_seq
    for _first, path in segments[start:]:
        with open(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                try:
                    ev = ExecutionEvent.from_json(line)
                except ValidationError as exc:
                    raise ValidationError("line", exc.reason,
                                          f"{path}:{lineno}: {exc}") from exc
                if ev.seq <= last:
                    continue
                last = ev.seq
                yield ev
