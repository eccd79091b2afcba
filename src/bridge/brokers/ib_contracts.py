"""bridge instrument <-> Interactive Brokers stock contract, as data.

The mapping is a CSV (``instrument, symbol, sec_type, exchange, primary_exchange, currency,
con_id``); the one shipped in ``bridge/brokers/data/ib_contracts.csv`` covers the share classes of
the sample universe (``BRK.B`` -> ``BRK B``). Any instrument not listed maps to a US stock routed
SMART in USD with ``symbol = instrument``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bridge.errors import ConfigError

_COLUMNS = ("instrument", "symbol", "sec_type", "exchange", "primary_exchange", "currency",
            "con_id")


@dataclass(frozen=True)
class ContractSpec:
    """One IB contract (``con_id`` 0: the broker resolves it by symbol)."""

    symbol: str
    sec_type: str = "STK"
    exchange: str = "SMART"
    primary_exchange: str = ""
    currency: str = "USD"
    con_id: int = 0


class ContractMap:
    """instrument -> :class:`ContractSpec` and back (by IB symbol).

    Parameters
    ----------
    rows : dict, optional
        instrument -> ContractSpec overrides; default: the shipped CSV.
    """

    def __init__(self, rows: dict[str, ContractSpec] | None = None) -> None:
        self.rows = dict(_shipped() if rows is None else rows)
        self._by_symbol = {c.symbol: i for i, c in self.rows.items()}

    @classmethod
    def from_csv(cls, path: str | Path) -> ContractMap:
        """Read a mapping file (``#`` comment lines allowed).

        Raises
        ------
        ConfigError
            A missing column, or an instrument listed twice.
        """
        return cls(_read(Path(path).read_text().splitlines(), str(path)))

    def contract(self, instrument: str) -> ContractSpec:
        """The contract of ``instrument`` (the default rule when it is not listed)."""
        return self.rows.get(instrument) or ContractSpec(symbol=instrument)

    def instrument(self, symbol: str) -> str:
        """bridge's instrument for an IB symbol (the symbol itself when not listed)."""
        return self._by_symbol.get(symbol, symbol)


def _read(lines: list[str], source: str) -> dict[str, ContractSpec]:
    reader = csv.DictReader(x for x in lines if x.strip() and not x.startswith("#"))
    missing = set(_COLUMNS) - set(reader.fieldnames or ())
    if missing:
        raise ConfigError(f"{source}: missing columns {sorted(missing)}")
    out: dict[str, ContractSpec] = {}
    for n, r in enumerate(reader, start=1):
        if r["instrument"] in out:
            raise ConfigError(f"{source}: instrument {r['instrument']!r} listed twice (row {n})")
        out[r["instrument"]] = ContractSpec(r["symbol"], r["sec_type"] or "STK",
                                            r["exchange"] or "SMART", r["primary_exchange"] or "",
                                            r["currency"] or "USD", int(r["con_id"] or 0))
    return out


def _shipped() -> dict[str, ContractSpec]:
    text = resources.files("bridge.brokers").joinpath("data/ib_contracts.csv").read_text()
    return _read(text.splitlines(), "bridge/brokers/data/ib_contracts.csv")
