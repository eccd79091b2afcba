import subprocess
import sys
import time

import polars as pl

from bridge.store import connect, read_table, replace_instances


def _tables(pid: str, n: int) -> dict:
    return {
        "preview_strategy": pl.DataFrame({"preview_id": [pid], "initial_capital": [1.0]}),
        "preview_account": pl.DataFrame({
            "preview_id": [pid] * n,
            "trading_day": pl.date_range(pl.date(2010, 1, 1), pl.date(2010, 1, n), eager=True),
            "cash": [1.0] * n}),
    }


def _fill(frame: pl.DataFrame, table: str, db) -> pl.DataFrame:
    with connect(db) as con:
        cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    return frame.with_columns([pl.lit(None).alias(c) for c in cols if c not in frame.columns])


def test_replace_instances_replaces_only_the_given_ids(tmp_path):
    db = tmp_path / "s.duckdb"
    for pid, n in (("a", 3), ("b", 2), ("a", 4)):
        replace_instances(db, {k: _fill(v, k, db) for k, v in _tables(pid, n).items()})
    acc = read_table(db, "preview_account").group_by("preview_id").len().sort("preview_id")
    assert acc.rows() == [("a", 4), ("b", 2)]
    assert read_table(db, "preview_strategy").height == 2


def test_writer_waits_for_another_process_holding_the_file(tmp_path):
    db = tmp_path / "s.duckdb"
    tables = {k: _fill(v, k, db) for k, v in _tables("x", 1).items()}
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
        "time.sleep(1.5); c.close()"), str(db)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    t = time.monotonic()
    replace_instances(db, tables)               # blocked until the other process lets go
    assert holder.wait(timeout=10) == 0
    assert time.monotonic() - t > 0.5
    assert read_table(db, "preview_account").height == 1


def test_held_keeps_one_instance_and_lets_go_after(tmp_path):
    """Inside held(): connects (read-only ones too) share the open database and see each other's
    writes; nested holds are fine; afterwards another process can open the file again."""
    from bridge.store.duck import _HELD, held

    db = tmp_path / "h.duckdb"
    tables = {k: _fill(v, k, db) for k, v in _tables("h", 2).items()}
    with held(db):
        with held(db):
            replace_instances(db, tables)
        assert read_table(db, "preview_account").height == 2      # read-only connect inside
        with connect(db, read_only=True) as con:
            assert con.execute("SELECT count(*) FROM preview_strategy").fetchall() == [(1,)]
        assert len(_HELD) == 1
    assert not _HELD
    other = subprocess.run([sys.executable, "-c", (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
        "print(c.execute('SELECT count(*) FROM preview_account').fetchall()[0][0])"), str(db)],
        capture_output=True, text=True, timeout=60)
    assert other.stdout.strip() == "2", other.stderr


def test_execution_frames_match_the_row_dict_constructor():
    # store.execution._frame builds columns directly; it must give the frame polars infers from
    # the row dicts, mixed types (supertypes), missing keys and big ints included
    import enum
    import random

    from polars.testing import assert_frame_equal

    from bridge.store.execution import _frame

    class Side(enum.StrEnum):
        BUY = "buy"

    values = [1, -3, 2**63, 2.5, 0.1, float("nan"), "x", "", True, False, None, Side.BUY]
    rng = random.Random(7)
    cols = list("abcdefgh")
    for _ in range(500):
        kinds = {c: rng.sample(values, rng.randint(1, 2)) for c in cols}
        rows = [{c: rng.choice(kinds[c]) for c in cols if rng.random() < 0.9}
                for _ in range(rng.randint(1, 20))]
        try:
            want = pl.DataFrame([{c: r.get(c) for c in cols} for r in rows],
                                infer_schema_length=None)
        except Exception as exc:  # noqa: BLE001 - an impossible mix fails both ways
            try:
                _frame(rows, cols)
            except Exception:  # noqa: BLE001
                continue
            raise AssertionError(f"{kinds} fails row-wise ({exc!r}) but not column-wise")
        assert_frame_equal(_frame(rows, cols), want, check_exact=True)
