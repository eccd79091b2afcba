"""Execution events and the outbox: JSON round trip, seq order, restart, recovery, kill -9."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bridge.errors import ValidationError
from bridge.execution.events import EventType, ExecutionEvent
from bridge.execution.outbox import Outbox, OutboxError, read_events

SEGMENT = re.compile(r"^\d{20}\.jsonl$")

# The event number i -> its event, shared by this process and the crash-test child, so the parent
# can check every byte the child published.
MAKER = r'''
from bridge.execution.events import EventType, ExecutionEvent
_TYPES = list(EventType)

def make_event(i):
    return ExecutionEvent.new(
        _TYPES[i % len(_TYPES)], ts_ms=1_282_334_400_000 + i, client_order_id=f"c-{i // 3}",
        instrument=("AAPL", "MSFT", "600000.SH")[i % 3], strategy_id="momentum_top50",
        payload={"i": i, "quantity": 100 * (i % 7 + 1), "price": 250.5 + i / 100,
                 "exec_id": f"x-{i}", "tags": ["crash", "test"]})
'''
_ns: dict = {}
exec(MAKER, _ns)
make_event = _ns["make_event"]


def part_path(root: Path, first_seq: int) -> Path:
    return root / "spool" / f"{first_seq:020d}.jsonl.part"


def lines_for(first: int, n: int) -> bytes:
    return b"".join((make_event(i).to_json(seq=i + 1) + "\n").encode() for i in range(first - 1,
                                                                                    first - 1 + n))


# -- events -------------------------------------------------------------------------------------


def test_event_types_cover_the_seed_and_the_additions():
    seed = {"ORDER_SUBMITTED", "ORDER_ACCEPTED", "ORDER_REJECTED", "ORDER_FILLED",
            "ORDER_PARTIALLY_FILLED", "ORDER_CANCELLED", "POSITION_OPENED", "POSITION_UPDATED",
            "POSITION_CLOSED", "STOP_LOSS_TRIGGERED", "TAKE_PROFIT_TRIGGERED",
            "RISK_CHECK_FAILED", "INSUFFICIENT_FUNDS", "PORTFOLIO_UPDATED"}
    names = {t.name for t in EventType}
    assert seed <= names
    assert names - seed == {"ORDER_DENIED", "ORDER_EXPIRED", "TRADING_STATE_CHANGED"}
    assert all(t.value == t.name.lower() for t in EventType)


def test_event_json_round_trip_is_exact_and_one_canonical_line():
    ev = ExecutionEvent.new("order_filled", ts_ms=1_282_334_400_123, client_order_id="c-1",
                            instrument="600000.SH", strategy_id="s",
                            payload={"z": 1, "a": [1, 2.5, {"k": None}], "名": "浦发银行\nx",
                                     "ok": True})
    line = ev.to_json()
    assert "\n" not in line and ": " not in line and ", " not in line
    assert list(json.loads(line)) == sorted(json.loads(line))  # keys sorted
    assert json.loads(line)["type"] == "order_filled" and json.loads(line)["v"] == 1
    back = ExecutionEvent.from_json(line)
    assert back == ev and back.to_json() == line and hash(back) == hash(ev)
    assert ExecutionEvent.from_json((line + "\n").encode()) == ev
    assert back.type is EventType.ORDER_FILLED
    assert ev.to_json(seq=42) == replace(ev, seq=42).to_json()


def test_event_line_is_the_canonical_json_of_every_field():
    # to_json writes the line field by field (the outbox's hot path): it must stay byte for byte
    # the canonical encoding of the whole event (compact, sorted keys, UTF-8 text)
    from bridge.execution.events import _dumps

    rng = random.Random(3)
    texts = [None, "", "c-1", "浦发银行\nx", 'q"uote\\', "\x00\u2028", "600000.SH"]
    values = [None, True, False, 0, -7, 2**70, 0.1, -2.5e-300, 1e22, "x", "名\t",
              [1, [2.5, None]], {"k": {"n": [True]}}, ()]
    for i in range(500):
        payload = {rng.choice(["a", "quantity", "名", "Z", "exec_id"]) + str(j): rng.choice(values)
                   for j in range(rng.randint(0, 4))}
        ev = ExecutionEvent(rng.randint(0, 10**12), rng.choice(["e", "ev-é", "x" * 40]),
                            rng.choice(list(EventType)), rng.randint(0, 2**42),
                            rng.choice(texts), rng.choice(texts), rng.choice(texts), payload)
        body = {**ev._as_dict(), "payload": ev.payload}
        assert ev.to_json() == _dumps(body)
        assert ev.to_json(seq=i) == _dumps({**body, "seq": i})


def test_event_id_is_derived_from_content_unless_given():
    a = make_event(5)
    assert a.event_id == make_event(5).event_id and a.event_id.startswith("ev-")
    assert a.event_id != make_event(6).event_id
    assert replace(a, seq=9).event_id == a.event_id  # seq is not content
    given = ExecutionEvent.new(EventType.ORDER_ACCEPTED, 1, event_id="broker-77")
    assert given.event_id == "broker-77"


def test_event_is_read_only_and_json_only():
    ev = make_event(1)
    with pytest.raises(TypeError):
        ev.payload["i"] = 2  # type: ignore[index]
    assert ev.payload["tags"] == ("crash", "test")  # lists are frozen to tuples
    with pytest.raises(AttributeError):
        ev.seq = 3  # type: ignore[misc]
    with pytest.raises(ValidationError) as err:
        ExecutionEvent.new(EventType.ORDER_FILLED, 1, payload={"price": float("nan")})
    assert err.value.field == "payload" and err.value.reason == "not_finite"
    with pytest.raises(ValidationError, match="key_not_str"):
        ExecutionEvent.new(EventType.ORDER_FILLED, 1, payload={1: "x"})
    with pytest.raises(ValidationError, match="not_json"):
        ExecutionEvent.new(EventType.ORDER_FILLED, 1, payload={"s": {1, 2}})
    with pytest.raises(ValidationError, match="unknown_event_type"):
        ExecutionEvent.new("order_teleported", 1)
    with pytest.raises(ValidationError, match="bad_timestamp"):
        ExecutionEvent.new(EventType.ORDER_FILLED, 1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("line, reason", [
    ("not json", "not_json"), ("[1]", "not_object"),
    ('{"v":2,"seq":1,"event_id":"e","type":"order_filled","ts_ms":1}', "unsupported_version"),
    ('{"seq":1,"type":"order_filled","ts_ms":1}', "bad_keys"),
    ('{"seq":1,"event_id":"e","type":"order_filled","ts_ms":1,"extra":0}', "bad_keys"),
])
def test_from_json_names_what_is_wrong(line, reason):
    with pytest.raises(ValidationError) as err:
        ExecutionEvent.from_json(line)
    assert err.value.reason == reason


# -- outbox: order, durability, restart ---------------------------------------------------------


def test_seqs_are_ordered_and_acked_only_by_flush(tmp_path):
    root = tmp_path / "ob"
    with Outbox(root, batch_size=100) as ob:
        seqs = [ob.append(make_event(i)) for i in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        # appended, not durable: nothing acknowledged, nothing visible, a spool file exists
        assert ob.acked_seq == 0 and ob.last_seq == 5
        assert list(read_events(root)) == []
        assert part_path(root, 1).exists()
        assert ob.flush() == 5 and ob.acked_seq == 5
        assert not part_path(root, 1).exists()
        assert ob.flush() == 5 and ob.stats.flushes == 1  # nothing pending: no new segment
        ob.append(make_event(5))
    events = list(read_events(root))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert events == [replace(make_event(i), seq=i + 1) for i in range(6)]
    assert sorted(os.listdir(root / "ready")) == [f"{1:020d}.jsonl", f"{6:020d}.jsonl"]
    assert [e.seq for e in read_events(root, after_seq=4)] == [5, 6]
    assert [e.seq for e in read_events(root, after_seq=6)] == []


def test_batch_size_and_max_batch_ms_flush_automatically(tmp_path):
    now = [0.0]
    with Outbox(tmp_path / "ob", batch_size=3, max_batch_ms=50.0, clock=lambda: now[0]) as ob:
        ob.append(make_event(0))
        ob.append(make_event(1))
        assert ob.acked_seq == 0
        ob.append(make_event(2))  # third event: batch full
        assert ob.acked_seq == 3
        ob.append(make_event(3))
        now[0] = 0.049
        assert ob.poll() == 3  # 49 ms: not yet
        now[0] = 0.050
        assert ob.poll() == 4  # 50 ms after the batch's first event
        ob.append(make_event(4))
        now[0] = 0.2
        ob.append(make_event(5))  # the append itself notices the age
        assert ob.acked_seq == 6
        assert ob.stats.flushes == 3 and ob.stats.fsyncs == 6


def test_restart_continues_the_seq(tmp_path):
    root = tmp_path / "ob"
    with Outbox(root) as ob:
        for i in range(7):
            ob.append(make_event(i))
    with Outbox(root) as ob:
        assert ob.acked_seq == ob.last_seq == 7
        assert ob.recovery.spool_files == 0
        assert ob.append(make_event(7)) == 8
    assert [e.seq for e in read_events(root)] == list(range(1, 9))


def test_reader_never_sees_part_files(tmp_path):
    root = tmp_path / "ob"
    ob = Outbox(root, batch_size=1000)
    for i in range(3):
        ob.append(make_event(i))
    ob._file.flush()  # the bytes are in the spool file, as a crash would leave them
    assert part_path(root, 1).stat().st_size > 0
    # a stray .part (or any other name) inside ready/ is ignored as well
    (root / "ready" / f"{9:020d}.jsonl.part").write_bytes(lines_for(9, 1))
    assert list(read_events(root)) == []
    ob.close()
    assert [e.seq for e in read_events(root)] == [1, 2, 3]


def test_truncated_last_line_of_a_spool_is_dropped_and_counted(tmp_path):
    root = tmp_path / "ob"
    (root / "spool").mkdir(parents=True)
    whole = lines_for(1, 3)
    cut = lines_for(4, 1)[:-30]  # the crash hit mid-line
    part_path(root, 1).write_bytes(whole + cut)
    with Outbox(root) as ob:
        r = ob.recovery
        assert (r.spool_files, r.events_recovered, r.truncated_lines) == (1, 3, 1)
        assert ob.acked_seq == 3
        assert not any((root / "spool").iterdir())
        assert ob.append(make_event(3)) == 4  # the lost seq is reused: it was never acknowledged
    ready = sorted((root / "ready").iterdir())
    assert ready[0].read_bytes() == whole  # published without the broken tail
    assert [e.seq for e in read_events(root)] == [1, 2, 3, 4]


def test_clean_spool_is_published_as_is(tmp_path):
    root = tmp_path / "ob"
    (root / "spool").mkdir(parents=True)
    part_path(root, 1).write_bytes(lines_for(1, 4))
    with Outbox(root) as ob:
        assert (ob.recovery.events_recovered, ob.recovery.truncated_lines) == (4, 0)
    assert (root / "ready" / f"{1:020d}.jsonl").read_bytes() == lines_for(1, 4)


def test_spool_already_published_is_not_published_twice(tmp_path):
    # crash between the rename into ready/ and the removal of the spool entry (or a rename
    # that a power cut undid on one side only): the same lines are in both places
    root = tmp_path / "ob"
    with Outbox(root) as ob:
        for i in range(3):
            ob.append(make_event(i))
    part_path(root, 1).write_bytes(lines_for(1, 3) + lines_for(4, 2))
    with Outbox(root) as ob:
        r = ob.recovery
        assert (r.duplicate_lines, r.events_recovered) == (3, 2)
        assert ob.last_seq == 5
    names = sorted(os.listdir(root / "ready"))
    assert names == [f"{1:020d}.jsonl", f"{4:020d}.jsonl"]
    assert [e.seq for e in read_events(root)] == [1, 2, 3, 4, 5]


def test_garbage_line_in_spool_keeps_only_the_whole_prefix(tmp_path):
    root = tmp_path / "ob"
    (root / "spool").mkdir(parents=True)
    part_path(root, 1).write_bytes(lines_for(1, 2) + b"\x00\x00garbage\n" + lines_for(4, 1))
    (root / "spool" / f"{1:020d}.jsonl.tmp").write_bytes(b"half a recovery")
    with Outbox(root) as ob:
        r = ob.recovery
        assert (r.events_recovered, r.invalid_lines, r.tmp_files_removed) == (2, 2, 1)
        assert ob.last_seq == 2
    assert [e.seq for e in read_events(root)] == [1, 2]
    assert os.listdir(root / "spool") == []


def test_reader_deduplicates_by_seq(tmp_path):
    ready = tmp_path / "ob" / "ready"
    ready.mkdir(parents=True)
    (ready / f"{1:020d}.jsonl").write_bytes(lines_for(1, 3))
    (ready / f"{3:020d}.jsonl").write_bytes(lines_for(3, 3))  # seq 3 twice
    assert [e.seq for e in read_events(tmp_path / "ob")] == [1, 2, 3, 4, 5]
    assert [e.seq for e in read_events(tmp_path / "ob", after_seq=3)] == [4, 5]
    (ready / f"{6:020d}.jsonl").write_bytes(b"{broken\n")
    with pytest.raises(ValidationError, match="00000000000000000006.jsonl:1"):
        list(read_events(tmp_path / "ob"))


@pytest.mark.skipif(os.name == "nt", reason="flock is POSIX")
def test_one_writer_per_root(tmp_path):
    ob = Outbox(tmp_path / "ob")
    with pytest.raises(OutboxError, match="another writer"):
        Outbox(tmp_path / "ob")
    ob.close()
    Outbox(tmp_path / "ob").close()


def test_failed_fsync_fails_the_outbox_until_reopened(tmp_path, monkeypatch):
    root = tmp_path / "ob"
    ob = Outbox(root)
    ob.append(make_event(0))
    ob.flush()
    ob.append(make_event(1))

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        ob.flush()
    assert ob.acked_seq == 1
    with pytest.raises(OutboxError, match="failed earlier"):
        ob.append(make_event(2))
    ob.close()
    monkeypatch.undo()
    with Outbox(root) as ob2:  # reopening recovers the spool the failure left behind
        assert ob2.recovery.events_recovered == 1 and ob2.last_seq == 2
    assert [e.seq for e in read_events(root)] == [1, 2]


def test_closed_outbox_refuses_appends(tmp_path):
    ob = Outbox(tmp_path / "ob")
    assert ob.close() == 0 and ob.close() == 0
    with pytest.raises(OutboxError, match="closed"):
        ob.append(make_event(0))
    with pytest.raises(ValidationError, match="batch_size"):
        Outbox(tmp_path / "x", batch_size=0)


# -- crash test: kill -9 at random moments ------------------------------------------------------

TOTAL = 10_000
BATCH = 50
KILLS = 20
CHILD = MAKER + r'''
import sys
from bridge.execution.outbox import Outbox

root, total, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ob = Outbox(root, batch_size=batch, max_batch_ms=50.0)
r = ob.recovery

def say(line):  # one write per line, so a kill cannot leave half a line looking whole
    sys.stdout.write(line + "\n")
    sys.stdout.flush()

say(f"start {ob.acked_seq} {r.spool_files} {r.events_recovered} {r.truncated_lines} "
    f"{r.duplicate_lines} {r.invalid_lines} {r.tmp_files_removed}")
acked = ob.acked_seq
for i in range(ob.last_seq, total):           # event i always gets seq i + 1
    if ob.append(make_event(i)) != i + 1:
        raise SystemExit(f"event {i} got a wrong seq")
    if ob.acked_seq != acked:                 # a flush inside append returned: durable now
        acked = ob.acked_seq
        say(f"ack {acked}")
say(f"ack {ob.close()}")
say("done")
'''


def tear(part: Path, rng: random.Random) -> bool:
    """Cut a spool file inside its last line, as a power cut during a write can."""
    data = part.read_bytes()
    if not data.endswith(b"\n"):
        return False  # empty: nothing written yet
    start = data.rfind(b"\n", 0, len(data) - 1) + 1
    part.write_bytes(data[:rng.randrange(start + 1, len(data) - 1)])  # no final newline
    return True


def check_ready(root: Path, acked: int, expected: dict[int, ExecutionEvent]) -> int:
    """Every published file whole, seqs exactly 1..H in file order, H >= acked, content exact."""
    prev = 0
    if not (root / "ready").exists():  # killed before the first Outbox created its folders
        assert acked == 0
        return 0
    for name in sorted(os.listdir(root / "ready")):
        assert SEGMENT.match(name), f"unexpected file in ready/: {name}"
        data = (root / "ready" / name).read_bytes()
        assert data and data.endswith(b"\n"), f"{name} is partial"
        for k, line in enumerate(data.split(b"\n")[:-1]):
            ev = ExecutionEvent.from_json(line)  # raises on a broken line
            assert ev.seq == prev + 1, f"{name}: seq {ev.seq} after {prev}"
            if k == 0:
                assert int(name[:20]) == ev.seq, f"{name} does not start at its seq"
            assert ev == expected[ev.seq], f"seq {ev.seq} differs from what was appended"
            prev = ev.seq
    assert prev >= acked, f"acknowledged up to {acked}, only {prev} in ready/"
    for name in os.listdir(root / "spool"):
        assert name.endswith((".jsonl.part", ".jsonl.tmp")), name
    return prev


def test_kill9_at_random_moments_loses_nothing_acknowledged(tmp_path):
    rng = random.Random(20_240_611)
    root = tmp_path / "ob"
    expected = {i + 1: replace(make_event(i), seq=i + 1) for i in range(TOTAL)}
    acked = 0
    live_kills = spools_left = torn = replayed = 0
    recovered = {"spool_files": 0, "events": 0, "truncated": 0, "duplicates": 0, "invalid": 0}
    t0 = time.perf_counter()
    for run in range(KILLS + 1):
        # stderr to a file: with one pipe only, communicate() reads through the same buffered
        # stream as readline() below, so no ack line buffered by readline is lost
        errfile = tmp_path / f"stderr_{run}.txt"
        with open(errfile, "w") as errf:
            proc = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(TOTAL),
                                     str(BATCH)], stdout=subprocess.PIPE, stderr=errf,
                                    text=True)
        head = ""
        if run < KILLS:
            if run % 4 == 0:
                # a quarter of the kills land in start-up: imports, lock, recovery, first batch
                time.sleep(rng.uniform(0.0, 0.4))
            else:
                # the others once the child has acknowledged past a target spread over the whole
                # run, plus a random delay: kill points fall anywhere within a batch's
                # write / fsync / rename / fsync(dir), and the kills cover all 10,000 events
                target = rng.uniform(run, run + 1) / KILLS * 0.95 * TOTAL
                head = proc.stdout.readline()  # "start ...": recovery is done
                while True:
                    line = proc.stdout.readline()
                    head += line
                    if not line.endswith("\n") or (line.startswith("ack ")
                                                   and int(line.split()[1]) >= target):
                        break
                time.sleep(rng.uniform(0.0, 0.005))
            if proc.poll() is None:
                live_kills += 1
            proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)
        out = head + out
        err = errfile.read_text()
        if run == KILLS:
            acked_by_killed = acked
            assert proc.returncode == 0, err
            assert out.rstrip().endswith("done")
        else:
            assert proc.returncode in (0, -signal.SIGKILL), err
        for line in out.splitlines(keepends=True):
            if not line.endswith("\n"):
                continue  # cut by the kill: not a complete acknowledgement
            word, *nums = line.split()
            if word == "ack":
                assert int(nums[0]) >= acked  # acknowledgements never go backwards
                acked = int(nums[0])
            elif word == "start":
                start = [int(x) for x in nums]
                assert start[0] >= acked  # a restart sees everything acknowledged before
                for key, value in zip(recovered, start[1:6], strict=True):
                    recovered[key] += value
        # right after the kill, before any recovery: readers see only whole files and every
        # acknowledged event is already there, exactly once
        check_ready(root, acked, expected)
        parts = sorted((root / "spool").glob("*.jsonl.part")) if (root / "spool").exists() else []
        spools_left += bool(parts)
        # A process kill never tears a line (the outbox writes whole lines per syscall) and never
        # leaves a published segment behind in the spool. A power cut can do both to data that
        # was not acknowledged, so inject them, on runs whose successor surely reports recovery.
        if run + 1 < KILLS and (run + 1) % 4 != 0:
            injected = rng.random()
            if parts and injected < 0.5:
                torn += tear(parts[-1], rng)
            elif not parts and injected < 0.5 and acked:
                last = sorted((root / "ready").iterdir())[-1]
                (root / "spool" / (last.name + ".part")).write_bytes(last.read_bytes())
                replayed += last.read_bytes().count(b"\n")
    elapsed = time.perf_counter() - t0

    high = check_ready(root, acked, expected)
    assert high == acked == TOTAL
    assert [e.seq for e in read_events(root)] == list(range(1, TOTAL + 1))
    assert os.listdir(root / "spool") == []
    # the test must have exercised something: kills hit live writers that left spool files
    assert live_kills >= KILLS // 2, live_kills
    assert recovered["spool_files"] >= 1
    # every injected tear and replay was seen and dropped by the next start (a kill can add its
    # own: a write cut between two pages, a kill between publishing a recovered spool file and
    # deleting it)
    assert recovered["truncated"] >= torn and recovered["duplicates"] >= replayed
    assert recovered["invalid"] == 0
    print(f"\nkill -9 test: {KILLS} kills ({live_kills} on a live writer, {spools_left} left a "
          f"spool file; injected {torn} torn lines, {replayed} replayed lines) + 1 clean run, "
          f"{TOTAL} events ({acked_by_killed} acknowledged by the killed writers) in "
          f"{len(os.listdir(root / 'ready'))} segments, recovery totals {recovered}, "
          f"{elapsed:.1f} s")
