"""Qlib interop: write bars as a Qlib provider directory, read Qlib/RD-Agent predictions.

Nothing here imports Qlib: the provider directory is written by our own writer (Qlib's
``scripts/dump_bin.py`` is not part of the ``pyqlib`` wheel), and predictions are plain pandas
pickles. This module is not imported by ``bridge/__init__`` (it imports pandas at its top).

Qlib provider layout (the "dump_bin" format, Qlib ``scripts/dump_bin.py`` and
``qlib/data/storage/file_storage.py``)::

    <out_dir>/calendars/day.txt                       one session per line, YYYY-MM-DD
    <out_dir>/instruments/all.txt                     CODE<TAB>first<TAB>last, one per line
    <out_dir>/features/<code lower-case>/<field>.day.bin

Each ``.bin`` is a flat array of little-endian float32 (``"<f"``): element 0 is the index, in
the calendar, of the instrument's first session, followed by one value per calendar session from
that first session to the instrument's last session (NaN where it has no bar).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bridge.errors import ConfigError, DataValidationError, SignalValidationError
from bridge.signals import SIGNAL_COLUMNS, validate_signals

#: fields written by default; ``factor`` is the adjustment factor (1.0: unadjusted prices)
QLIB_FIELDS = ("open", "high", "low", "close", "volume", "factor")
#: file names Windows cannot create; Qlib prefixes them (``qlib.utils.code_to_fname``)
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)),
             *(f"LPT{i}" for i in range(10))}


@dataclass(frozen=True)
class QlibProvider:
    """What :func:`export_qlib_provider` wrote.

    Attributes
    ----------
    path : Path
        The provider directory (pass it as ``qlib.init(provider_uri=...)``).
    calendar : ndarray of datetime64[D], shape (T,)
        The sessions of ``calendars/<freq>.txt``.
    instruments : ndarray of str, shape (N,)
        Instrument codes as written in ``instruments/<market>.txt`` (case kept).
    fields : tuple of str
        Fields written per instrument.
    """

    path: Path
    calendar: np.ndarray
    instruments: np.ndarray
    fields: tuple


def qlib_fname(code: str) -> str:
    """Directory name of an instrument under ``features/``.

    Lower-case, with the ``_qlib_`` prefix for names Windows reserves: Qlib's ``code_to_fname``
    followed by ``FileFeatureStorage``'s ``.lower()``.
    """
    return ("_qlib_" + code if code.upper() in _RESERVED else code).lower()


def export_qlib_provider(bars, out_dir, freq: str = "day", market: str = "all",
                         fields: Sequence[str] = QLIB_FIELDS,
                         exchange: str | None = "XNYS") -> QlibProvider:
    """Write daily bars as a Qlib provider directory (Qlib's ``dump_bin`` format).

    Parameters
    ----------
    bars : polars.DataFrame or pandas.DataFrame
        Long bars, one row per (datetime, instrument): ``datetime`` (date), ``instrument`` (str),
        ``open``, ``high``, ``low``, ``close`` (currency/share, unadjusted), ``volume`` (shares).
        Shape (n_rows, 7).
    out_dir : str or Path
        Provider directory; created if missing. Existing files of the same names are overwritten.
    freq : {"day"}
        Only daily bars are written (``calendars/day.txt``, ``*.day.bin``).
    market : str
        Name of the instruments file (``instruments/<market>.txt``), the ``instruments=`` name for
        ``D.instruments(market)``.
    fields : sequence of str
        Fields to write. ``factor`` is written as 1.0 on every bar (the sample data is unadjusted,
        so Qlib's adjusted price equals the raw price and its trade-unit rounding uses
        ``trade_unit / 1.0``). ``vwap`` is written only if ``bars`` has a ``vwap`` column.
    exchange : str or None
        ISO MIC of the exchange calendar (exchange-calendars) used to write
        ``calendars/day_future.txt``: the calendar plus the exchange's next session after the last
        bar. Qlib's backtest reads the *future* calendar (``Cal.calendar(future=True)``) and asks
        for the end of each step as the start of the next calendar entry, so without it a
        backtest that ends on the last session fails with ``IndexError`` (``TradeCalendarManager
        .get_step_time``). None: do not write it (end Qlib backtests one session early).

    Returns
    -------
    QlibProvider

    Notes
    -----
    - ``calendars/day.txt``: the union of the bars' sessions, sorted, one ``YYYY-MM-DD`` a line.
      A session without any bar (an exchange session missing from the data) is not in it.
    - ``calendars/day_future.txt`` (when ``exchange`` is given): the same plus one next session,
      which Qlib's data collectors also write.
    - ``instruments/<market>.txt``: ``CODE\\tFIRST\\tLAST`` (dates of the first and last bar).
    - ``features/<code>/<field>.day.bin``: little-endian float32; value 0 is the calendar index of
      the instrument's first bar, then ``last - first + 1`` values, NaN on sessions without a bar
      (Qlib then treats the instrument as suspended that day: ``$close`` is NaN).
    - Prices and volumes are stored as float32: ~7 significant digits (relative error <= 6e-8),
      which is what Qlib itself reads back.

    Raises
    ------
    ConfigError
        ``freq`` other than ``"day"``, or an unknown field.
    DataValidationError
        Missing columns, no rows, duplicate (datetime, instrument) keys, or two instruments whose
        codes differ only by case (they would share one lower-case directory).
    CalendarError
        ``exchange`` is unknown, or its calendar (exchange-calendars) publishes no session after
        the last bar; pass ``exchange=None`` to skip ``day_future.txt``.
    """
    if freq != "day":
        raise ConfigError(f"only daily bars can be exported (freq='day'), got freq={freq!r}")
    fields = tuple(fields)
    known = set(QLIB_FIELDS) | {"vwap"}
    bad = [f for f in fields if f not in known]
    if bad:
        raise ConfigError(f"unknown Qlib fields {bad}; allowed {sorted(known)}")
    df = bars.to_pandas() if hasattr(bars, "to_pandas") and not isinstance(bars, pd.DataFrame) \
        else pd.DataFrame(bars)
    need = ["datetime", "instrument"] + [f for f in fields if f not in ("factor", "vwap")]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise DataValidationError(",".join(missing), "missing_column",
                                  f"bars need columns {need} to export fields {list(fields)}")
    if "vwap" in fields and "vwap" not in df.columns:
        fields = tuple(f for f in fields if f != "vwap")
    if not len(df):
        raise DataValidationError("bars", "empty", "no bars to export")
    day = pd.to_datetime(df["datetime"]).to_numpy().astype("datetime64[D]")
    inst = df["instrument"].astype(str).to_numpy()
    key = pd.DataFrame({"d": day, "i": inst})
    dup = key.duplicated(keep=False).to_numpy()
    if dup.any():
        raise DataValidationError("datetime,instrument", "duplicate_key",
                                  "more than one bar for the same (datetime, instrument)",
                                  df[dup])
    calendar = np.unique(day)
    codes = np.unique(inst)
    fnames = np.array([qlib_fname(c) for c in codes])
    if len(np.unique(fnames)) != len(codes):
        clash = pd.Series(codes)[pd.Series(fnames).duplicated(keep=False).to_numpy()]
        raise DataValidationError("instrument", "case_collision",
                                  "instrument codes differ only by case (Qlib lower-cases the "
                                  "feature directory)", clash.to_frame("instrument"))
    ti = np.searchsorted(calendar, day)
    ni = np.searchsorted(codes, inst)
    T, N = len(calendar), len(codes)
    grid = {}
    for f in fields:
        arr = np.full((T, N), np.nan, dtype=np.float64)
        arr[ti, ni] = 1.0 if f == "factor" else df[f].to_numpy(dtype=np.float64, na_value=np.nan)
        grid[f] = arr
    has = np.zeros((T, N), dtype=bool)
    has[ti, ni] = True
    first = has.argmax(axis=0)
    last = T - 1 - has[::-1].argmax(axis=0)

    nxt = None
    if exchange is not None:  # before writing anything: a CalendarError leaves no partial dir
        from bridge.market.calendar import next_session

        nxt = next_session(pd.Timestamp(calendar[-1]), exchange).strftime("%Y-%m-%d")

    out = Path(out_dir)
    (out / "calendars").mkdir(parents=True, exist_ok=True)
    (out / "instruments").mkdir(parents=True, exist_ok=True)
    (out / "features").mkdir(parents=True, exist_ok=True)
    cal_txt = pd.DatetimeIndex(calendar).strftime("%Y-%m-%d")
    (out / "calendars" / f"{freq}.txt").write_text("\n".join(cal_txt) + "\n")
    if nxt is not None:
        (out / "calendars" / f"{freq}_future.txt").write_text("\n".join([*cal_txt, nxt]) + "\n")
    (out / "instruments" / f"{market.lower()}.txt").write_text("".join(
        f"{c}\t{cal_txt[a]}\t{cal_txt[b]}\n" for c, a, b in zip(codes, first, last, strict=True)))
    for n in range(N):
        folder = out / "features" / fnames[n]
        folder.mkdir(exist_ok=True)
        a, b = int(first[n]), int(last[n])
        for f in fields:
            payload = np.empty(b - a + 2, dtype="<f4")
            payload[0] = a
            payload[1:] = grid[f][a:b + 1, n]
            payload.tofile(folder / f"{f}.{freq}.bin")
    return QlibProvider(path=out, calendar=calendar, instruments=codes, fields=fields)


def _frame_from_qlib(obj, source: str) -> pd.DataFrame:
    """A pandas object read from a pred file -> frame with columns datetime, instrument, score."""
    if isinstance(obj, pd.Series):
        obj = obj.rename("score").to_frame()
    if not isinstance(obj, pd.DataFrame):
        raise SignalValidationError("pred", "unsupported_type",
                                    f"{source}: expected a pandas DataFrame or Series, got "
                                    f"{type(obj).__name__}")
    if isinstance(obj.index, pd.MultiIndex):
        names = list(obj.index.names)
        if not {"datetime", "instrument"} <= set(names):
            if obj.index.nlevels != 2:
                raise SignalValidationError(
                    "index", "unsupported_index",
                    f"{source}: a MultiIndex needs levels named 'datetime' and 'instrument' "
                    f"(Qlib's pred.pkl), got {names}")
            # unnamed 2-level index: the datetime-typed level is the date
            is_dt = [pd.api.types.is_datetime64_any_dtype(obj.index.get_level_values(k))
                     for k in range(2)]
            if is_dt.count(True) != 1:
                raise SignalValidationError(
                    "index", "unsupported_index",
                    f"{source}: cannot tell the datetime level of the index levels {names}; "
                    "name them 'datetime' and 'instrument'")
            obj = obj.copy()
            obj.index = obj.index.set_names(["datetime", "instrument"] if is_dt[0]
                                            else ["instrument", "datetime"])
        extra = [n for n in obj.index.names if n not in ("datetime", "instrument")]
        if extra:
            raise SignalValidationError("index", "unsupported_index",
                                        f"{source}: unexpected index levels {extra}")
        cols = [c for c in obj.columns if c not in ("datetime", "instrument")]
        if not cols:
            raise SignalValidationError("score", "missing_column", f"{source}: no score column")
        col = "score" if "score" in cols else cols[0]
        out = obj[[col]].rename(columns={col: "score"}).reset_index()
    else:
        if not {"datetime", "instrument"} <= set(obj.columns) and \
                {"datetime", "instrument"} <= set(obj.index.names or []):
            obj = obj.reset_index()
        missing = [c for c in ("datetime", "instrument") if c not in obj.columns]
        if missing:
            raise SignalValidationError(",".join(missing), "missing_column",
                                        f"{source}: predictions need a (datetime, instrument) "
                                        "MultiIndex or columns datetime, instrument, score")
        cols = [c for c in obj.columns if c not in ("datetime", "instrument")]
        if not cols:
            raise SignalValidationError("score", "missing_column", f"{source}: no score column")
        col = "score" if "score" in cols else cols[0]
        out = obj[["datetime", "instrument", col]].rename(columns={col: "score"})
    if not pd.api.types.is_numeric_dtype(out["score"]):
        raise SignalValidationError("score", "not_numeric",
                                    f"{source}: score column {col!r} is not numeric "
                                    f"(dtype {out['score'].dtype})")
    return out[SIGNAL_COLUMNS]


def read_qlib_predictions(path, instrument_case: str = "keep", instruments=None,
                          sessions=None) -> pd.DataFrame:
    """Import Qlib / RD-Agent predictions as a bridge signal frame.

    Parameters
    ----------
    path : str or Path
        - ``.pkl`` / ``.pickle``: a pandas pickle (Qlib's ``pred.pkl``, written by
          ``SignalRecord``): a DataFrame or Series indexed by a MultiIndex (datetime, instrument),
          score in column ``score`` or else the first column. A plain frame with columns
          datetime, instrument, score is accepted too. Only unpickle files you trust.
        - ``.parquet`` / ``.csv``: columns datetime, instrument, score (or a parquet written from
          the MultiIndex frame, whose index is restored by pandas).
    instrument_case : {"keep", "upper", "lower"}
        Change the case of instrument codes (Qlib keeps codes as its instruments file spells
        them; its US data uses upper case).
    instruments, sessions : iterable, optional
        Passed to :func:`bridge.signals.validate_signals` (known instruments, exchange sessions).

    Returns
    -------
    pandas.DataFrame
        Columns datetime (datetime64, day), instrument (str), score (float64), shape (n, 3),
        sorted by (datetime, instrument).

    Raises
    ------
    SignalValidationError
        ``reason``: ``missing_file``, ``unsupported_format`` (other suffix), ``unsupported_type``
        (the pickle holds neither DataFrame nor Series), ``unsupported_index``, ``missing_column``,
        ``not_numeric``, and the reasons of :func:`validate_signals` (``duplicate_key``, ``nan``,
        ...).
    """
    p = Path(path)
    if instrument_case not in ("keep", "upper", "lower"):
        raise ConfigError(f"instrument_case must be 'keep', 'upper' or 'lower', got "
                          f"{instrument_case!r}")
    if not p.is_file():
        raise SignalValidationError("path", "missing_file", f"no predictions file at {p}")
    suffix = p.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        obj = pd.read_pickle(p)
    elif suffix == ".parquet":
        obj = pd.read_parquet(p)
    elif suffix == ".csv":
        obj = pd.read_csv(p)
    else:
        raise SignalValidationError("path", "unsupported_format",
                                    f"{p.name}: expected .pkl, .pickle, .parquet or .csv")
    frame = _frame_from_qlib(obj, p.name)
    if instrument_case != "keep":
        inst = frame["instrument"].astype(str)
        frame = frame.assign(instrument=inst.str.upper() if instrument_case == "upper"
                             else inst.str.lower())
    return validate_signals(frame, instruments=instruments, sessions=sessions)


def to_qlib_signal(signals) -> pd.Series:
    """A bridge signal frame -> the Series Qlib's strategies take as ``signal=``.

    Returns
    -------
    pandas.Series
        float64 scores named ``score``, MultiIndex (datetime, instrument) sorted.
    """
    df = validate_signals(signals)
    return df.set_index(["datetime", "instrument"])["score"].sort_index()
