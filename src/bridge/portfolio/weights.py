"""Weight methods with one signature.

Every method is ``method(scores, returns=None, **params) -> pandas.Series``:

- ``scores``: Series of float indexed by instrument (the names to weight, higher = better);
- ``returns``: DataFrame of daily simple returns (rows: sessions ascending, columns:
  instruments), needed by the risk-based methods;
- result: Series ``target_weight`` indexed like ``scores``, non-negative, summing to 1.

Sources: inverse volatility ("naive risk parity", e.g. Maillard, Roncalli and Teiletche 2010);
minimum variance through skfolio's ``MeanRisk(objective_function=MINIMIZE_RISK,
risk_measure=VARIANCE)`` (Markowitz 1952).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bridge.errors import ConfigError, ConstraintError


def _out(scores: pd.Series, w: np.ndarray) -> pd.Series:
    return pd.Series(w / w.sum(), index=scores.index, name="target_weight")


def equal(scores: pd.Series, returns: pd.DataFrame | None = None) -> pd.Series:
    """``1 / n`` each."""
    if len(scores) == 0:
        raise ConstraintError("equal", "no instruments to weight")
    return _out(scores, np.ones(len(scores)))


def score_proportional(scores: pd.Series, returns: pd.DataFrame | None = None) -> pd.Series:
    """Proportional to the positive part of the score: ``max(s, 0) / sum(max(s, 0))``.

    Raises
    ------
    ConstraintError
        If no score is positive (nothing to be proportional to).
    """
    s = np.clip(scores.to_numpy(np.float64), 0.0, None)
    if not np.nansum(s) > 0:
        raise ConstraintError("score_proportional", "no instrument has a positive score")
    return _out(scores, np.nan_to_num(s))


def _window(scores: pd.Series, returns: pd.DataFrame | None, lookback: int, name: str) -> pd.DataFrame:
    if returns is None:
        raise ConfigError(f"{name} needs returns (sessions x instruments)")
    if lookback < 2:
        raise ConfigError(f"lookback must be >= 2, got {lookback}")
    missing = scores.index.difference(returns.columns)
    if len(missing):
        raise ConstraintError(name, f"no return history for {list(missing)[:10]}")
    win = returns[scores.index].iloc[-lookback:]
    short = win.notna().sum() < max(2, lookback // 2)
    if short.any():
        raise ConstraintError(name, f"fewer than {max(2, lookback // 2)} returns in the last "
                                    f"{lookback} sessions for {list(short[short].index)[:10]}")
    return win


def inverse_volatility(scores: pd.Series, returns: pd.DataFrame | None = None,
                       lookback: int = 20) -> pd.Series:
    """Proportional to ``1 / std`` of each instrument's last ``lookback`` daily returns."""
    vol = _window(scores, returns, lookback, "inverse_volatility").std(ddof=1).to_numpy()
    if not np.all(vol > 0):
        raise ConstraintError("inverse_volatility", "an instrument has zero volatility")
    return _out(scores, 1.0 / vol)


def min_variance(scores: pd.Series, returns: pd.DataFrame | None = None, lookback: int = 60,
                 max_weight: float = 1.0) -> pd.Series:
    """Long-only minimum-variance weights over the last ``lookback`` sessions (skfolio MeanRisk).

    Missing returns in the window are treated as 0 (no move) for the covariance estimate.
    """
    from skfolio import RiskMeasure
    from skfolio.optimization import MeanRisk, ObjectiveFunction

    win = _window(scores, returns, lookback, "min_variance").fillna(0.0)
    model = MeanRisk(objective_function=ObjectiveFunction.MINIMIZE_RISK,
                     risk_measure=RiskMeasure.VARIANCE, min_weights=0.0, max_weights=max_weight)
    model.fit(win.to_numpy())
    return _out(scores, np.clip(np.asarray(model.weights_, dtype=np.float64), 0.0, None))


WEIGHT_METHODS = {"equal": equal, "score": score_proportional,
                  "inverse_volatility": inverse_volatility, "min_variance": min_variance}
