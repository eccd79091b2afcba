from datetime import date

import polars as pl
import pytest

from bridge.errors import CalendarError, DataValidationError
from bridge.market.calendar import sessions
from bridge.market.validate import validate_bars


def _raw(rows):
    return pl.DataFrame(rows, schema=["datetime", "instrument", "open", "high", "low", "close",
                                      "volume"], orient="row")


SESS = [date(2010, 1, 4), date(2010, 1, 5), date(2010, 1, 6)]
GOOD = (date(2010, 1, 4), "A", 10.0, 11.0, 9.0, 10.5, 100.0)


@pytest.mark.parametrize("row,reason", [
    ((date(2010, 1, 9), "A", 10.0, 11.0, 9.0, 10.5, 100.0), "off_calendar"),       # a Saturday
    ((date(2010, 1, 5), "A", 0.0, 11.0, 9.0, 10.5, 100.0), "non_positive_price"),
    ((date(2010, 1, 5), "A", 10.0, 10.2, 9.0, 10.5, 100.0), "high_low_inconsistent"),  # high < close
    ((date(2010, 1, 5), "A", 10.0, 11.0, 10.2, 10.5, 100.0), "high_low_inconsistent"),  # low > open
    ((date(2010, 1, 5), "A", 10.0, 11.0, 9.0, 10.5, -1.0), "negative_volume"),
    ((date(2010, 1, 5), "A", None, 11.0, 9.0, 10.5, 100.0), "null_value"),
])
def test_each_bad_row_goes_to_rejects_with_its_reason(row, reason):
    out = validate_bars(_raw([GOOD, row]), SESS, source="test")
    assert out.bars.height == 1 and out.bars["instrument"][0] == "A"
    assert out.rejects.height == 1
    assert reason in out.rejects["reason"][0].split(";")
    assert out.rejects["source"][0] == "test"
    assert out.bars.height + out.rejects.height == 2  # nothing lost


def test_duplicates_reject_every_copy():
    out = validate_bars(_raw([GOOD, GOOD, (date(2010, 1, 5), "A", 10, 11, 9, 10, 1.0)]), SESS)
    assert out.rejects.height == 2 and set(out.rejects["reason"]) == {"duplicate_key"}
    assert out.bars.height == 1


def test_gaps_market_wide_and_per_instrument():
    rows = [(date(2010, 1, 4), "A", 10, 11, 9, 10, 1.0), (date(2010, 1, 4), "B", 10, 11, 9, 10, 1.0),
            (date(2010, 1, 6), "A", 10, 11, 9, 10, 1.0)]
    # 2010-01-05 is a session with no row at all; B has no history after 01-04, so no B gap
    out = validate_bars(_raw([tuple(float(x) if isinstance(x, int) else x for x in r) for r in rows]), SESS)
    kinds = out.gaps.group_by("kind").len().sort("kind").rows()
    assert kinds == [("session_missing", 1)]
    assert out.gaps["datetime"][0] == date(2010, 1, 5)


def test_missing_column_is_a_typed_error():
    with pytest.raises(DataValidationError) as e:
        validate_bars(pl.DataFrame({"datetime": [date(2010, 1, 4)]}), SESS)
    assert e.value.reason == "missing_column"


def test_calendar_refuses_dates_beyond_published_sessions():
    with pytest.raises(CalendarError, match="XSHG"):
        sessions("2026-12-01", "2027-01-15", "XSHG")
    assert len(sessions("2026-12-01", "2026-12-31", "XSHG")) > 15


def test_real_sample_data_rejects_and_gaps(sample_dir):
    """The real file: 78 rows whose high/low do not bound open/close, 7 XNYS sessions absent."""
    import json

    manifest = json.loads((sample_dir / "manifest.json").read_text())
    s = manifest["summary"]
    assert s["rejects_by_reason"] == {"high_low_inconsistent": 78}
    assert s["rows_accepted"] + s["rows_rejected"] == 122_574  # every row of the CSV accounted for
    assert s["instruments"] == 524 and s["sessions"] == 245
    gaps = pl.read_parquet(sample_dir / "gaps.parquet")
    missing = gaps.filter(pl.col("kind") == "session_missing")["datetime"].to_list()
    assert date(2009, 9, 8) in missing and len(missing) == 7
    bars = pl.read_parquet(sample_dir / "bars.parquet")
    assert (bars["high"] >= bars[["open", "close"]].max_horizontal()).all()
    # volume converted from hundreds of shares: A on 2009-08-21 traded 34,758 hundreds
    a = bars.filter((pl.col("instrument") == "A") & (pl.col("datetime") == date(2009, 8, 21)))
    assert a["volume"][0] == 3_475_800.0
    inst = pl.read_parquet(sample_dir / "instruments.parquet")
    assert inst.height == 524
    assert inst.filter(pl.col("instrument") == "MMM")["sector"][0] == "Industrials"
