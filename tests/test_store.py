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
