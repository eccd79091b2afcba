"""The one error hierarchy of bridge.

Every refusal names the offending field and, where rows are at fault, carries them: a user can
print ``err.rows`` and see exactly what to fix. Nothing is dropped silently.
"""

from __future__ import annotations

from typing import Any


class BridgeError(Exception):
    """Base class of every error bridge raises on purpose."""


class ConfigError(BridgeError, ValueError):
    """A parameter or setting is invalid (names the parameter and the value)."""


class ValidationError(BridgeError, ValueError):
    """Input rows break a contract.

    Attributes
    ----------
    field : str
        The column (or rule) at fault, e.g. ``"score"`` or ``"datetime"``.
    reason : str
        A short machine-readable reason code, e.g. ``"nan"``, ``"duplicate_key"``.
    rows : pandas.DataFrame or None
        The offending rows, as given (at most ``max_shown`` are printed in the message).
    """

    max_shown = 10

    def __init__(self, field: str, reason: str, message: str, rows: Any = None) -> None:
        self.field = field
        self.reason = reason
        self.rows = rows
        n = 0 if rows is None else len(rows)
        text = f"[{field}: {reason}] {message}"
        if n:
            shown = rows.head(self.max_shown).to_string()
            more = f"\n... and {n - self.max_shown} more rows" if n > self.max_shown else ""
            text += f" ({n} rows)\n{shown}{more}"
        super().__init__(text)


class SignalValidationError(ValidationError):
    """A signal frame breaks the (datetime, instrument, score) contract."""


class DataValidationError(ValidationError):
    """Market data (bars, instruments, benchmark) breaks its contract."""


class CalendarError(BridgeError, ValueError):
    """A date is outside what the exchange calendar knows, or not a session."""


class ConstraintError(BridgeError, ValueError):
    """Portfolio constraints cannot all hold (names the constraint and the numbers)."""

    def __init__(self, constraint: str, message: str) -> None:
        self.constraint = constraint
        super().__init__(f"[{constraint}] {message}")
