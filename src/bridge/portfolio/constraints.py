"""Portfolio constraints on target weights: blacklist, cash buffer, max weight, sector caps.

:func:`apply_constraints` removes blacklisted names, scales the book to ``1 - cash_buffer``, then
caps names and sectors by water-filling: capped weight is fixed and the excess is spread over the
free names in proportion to their weights, until nothing exceeds its cap. When the caps cannot
hold the whole book it raises :class:`~bridge.errors.ConstraintError` naming the constraint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bridge.errors import ConstraintError

_EPS = 1e-12


@dataclass(frozen=True)
class Constraints:
    """Constraints on target weights.

    Parameters
    ----------
    max_weight : float or None
        Maximum weight of one instrument (fraction of total value).
    sector_caps : dict of str -> float
        Maximum total weight per sector; sectors absent from the dict are uncapped.
    blacklist : tuple of str
        Instruments never held.
    cash_buffer : float
        Share of total value kept in cash; weights sum to ``1 - cash_buffer``.
    """

    max_weight: float | None = None
    sector_caps: dict = field(default_factory=dict)
    blacklist: tuple = ()
    cash_buffer: float = 0.0


def apply_constraints(weights: pd.Series, c: Constraints, sectors: pd.Series | None = None
                      ) -> pd.Series:
    """Constrained target weights.

    Parameters
    ----------
    weights : Series of float indexed by instrument
        Unconstrained weights (>= 0; scaled, so only proportions matter).
    c : Constraints
    sectors : Series of str indexed by instrument, optional
        Needed when ``c.sector_caps`` is set; an instrument without a sector is uncapped by
        sector (and reported in the error if that makes the caps infeasible).

    Returns
    -------
    Series ``target_weight``
        Indexed like ``weights`` (blacklisted names at 0), summing to ``1 - cash_buffer``.

    Raises
    ------
    ConstraintError
        ``cash_buffer`` outside [0, 1), every name blacklisted, or ``max_weight`` / sector caps
        too tight to place ``1 - cash_buffer`` (the message gives the numbers).
    """
    if not 0 <= c.cash_buffer < 1:
        raise ConstraintError("cash_buffer", f"must be in [0, 1), got {c.cash_buffer}")
    budget = 1.0 - c.cash_buffer
    w = weights.astype(np.float64).clip(lower=0.0).copy()
    w[w.index.isin(list(c.blacklist))] = 0.0
    if not w.sum() > 0:
        raise ConstraintError("blacklist", "no instrument with positive weight is left")
    w = w / w.sum() * budget
    names = w[w > 0].index
    if c.max_weight is not None and c.max_weight * len(names) < budget - 1e-9:
        raise ConstraintError("max_weight", f"{len(names)} names x max_weight {c.max_weight} "
                                            f"= {c.max_weight * len(names):.4f} < {budget:.4f} to invest")
    sec = None
    if c.sector_caps:
        if sectors is None:
            raise ConstraintError("sector_caps", "sector caps need the instruments' sectors")
        sec = sectors.reindex(w.index)
        present = sec[names]
        uncapped = present[~present.isin(list(c.sector_caps))]
        room = sum(min(cap, budget) for s, cap in c.sector_caps.items() if s in set(present))
        if uncapped.empty and room < budget - 1e-9:
            raise ConstraintError("sector_caps", f"caps of the sectors held sum to {room:.4f} "
                                                 f"< {budget:.4f} to invest")
    free = pd.Series(w > 0, index=w.index)
    for _ in range(10 * len(w) + 10):
        changed = False
        if c.max_weight is not None:
            over = free & (w > c.max_weight + _EPS)
            if over.any():
                w[over] = c.max_weight
                free &= ~over
                changed = True
        if sec is not None:
            for s, cap in c.sector_caps.items():
                members = sec == s
                total = w[members].sum()
                if total > cap + _EPS:
                    w[members] *= cap / total
                    free &= ~members
                    changed = True
        excess = budget - w.sum()
        if excess > 1e-12:
            pool = w[free].sum()
            if not pool > 0:
                what = "max_weight" if c.max_weight is not None and not c.sector_caps else "sector_caps"
                raise ConstraintError(what, f"{excess:.4f} of the budget cannot be placed within "
                                            "the caps")
            w[free] += excess * w[free] / pool
            changed = True
        if not changed:
            break
    return w.rename("target_weight")
