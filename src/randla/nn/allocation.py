"""Per-layer ranks under a total parameter budget.

A layer of shape (m, n) either stays dense (m n parameters, no error) or is
factored at a rank r in [1, cap] (r (m + n) parameters, squared relative
error e[r]). ``global_ranks`` approximately minimises the summed error over
all layers subject to the budget, the allocation problem of Lagrangian rank
selection (as in ROCKET, Xu et al. 2024, and the knapsack view of SVD-LLM
v2): a Lagrangian relaxation plus a greedy pass, with no optimality
guarantee (a multiple-choice knapsack; the dense option can leave a gap).
"""

from __future__ import annotations

import numpy as np

__all__ = ["uniform_ranks", "global_ranks", "energy_ranks", "check_budget", "parameters", "summed_error"]

DENSE = None  # the rank of a layer left as it is


def parameters(shape, rank) -> int:
    m, n = shape
    return m * n if rank is DENSE else rank * (m + n)


def _cost(shapes, ranks) -> int:
    return sum(parameters(s, r) for s, r in zip(shapes, ranks))


def summed_error(errors, ranks) -> float:
    return float(sum(0.0 if r is DENSE else e[r] for e, r in zip(errors, ranks)))


def _fraction_ranks(shapes, keep: float, caps) -> list:
    ranks = []
    for (m, n), cap in zip(shapes, caps):
        r = int(keep * m * n // (m + n))
        ranks.append(DENSE if cap == 0 or r > cap else max(r, 1))
    return ranks


def check_budget(shapes, caps, budget: int):
    """Raise ValueError unless some allocation fits: every layer at rank 1, or dense where it cannot be factored."""
    least = _cost(shapes, [DENSE if cap == 0 else 1 for cap in caps])
    if least > budget:
        total = sum(m * n for m, n in shapes)
        raise ValueError(
            f"`reduction` leaves {budget:,} of the selected layers' {total:,} weight parameters, but even with "
            f"every layer at rank 1 (and those too small to factor dense) {least:,} remain: the largest "
            f"reduction possible is {1 - least / total:.4f}. Ask for at most that, or exclude the small layers."
        )


def uniform_ranks(shapes, reduction: float, caps, budget: int | None = None) -> list:
    """Every layer keeps the same fraction of its parameters: 1 - reduction, or less to fit ``budget``.

    A layer too small to factor stays dense, and one whose share is below
    rank 1 takes rank 1; with ``budget``, the others then keep a smaller
    fraction, the largest at which the total fits.
    """
    ranks = _fraction_ranks(shapes, 1.0 - reduction, caps)
    if budget is None or _cost(shapes, ranks) <= budget:
        return ranks
    check_budget(shapes, caps, budget)
    # The cost only grows with the fraction kept: bisect for the largest that fits.
    low, high = 0.0, 1.0 - reduction
    for _ in range(60):
        middle = 0.5 * (low + high)
        fits = _cost(shapes, _fraction_ranks(shapes, middle, caps)) <= budget
        low, high = (middle, high) if fits else (low, middle)
    return _fraction_ranks(shapes, low, caps)


def energy_ranks(errors, energy: float, caps) -> list:
    """The smallest rank per layer that keeps ``energy`` of its squared norm; dense if none within the cap."""
    ranks = []
    for e, cap in zip(errors, caps):
        within = np.flatnonzero(e[1 : cap + 1] <= 1.0 - energy)
        ranks.append(DENSE if within.size == 0 else int(within[0]) + 1)
    return ranks


def _best_for(e, m, n, cap, price):
    """The option of one layer minimising error + price * parameters."""
    if cap == 0:
        return DENSE
    r = np.arange(1, cap + 1)
    cost = e[1 : cap + 1] + price * r * (m + n)
    best = int(np.argmin(cost)) + 1
    return DENSE if price * m * n <= cost[best - 1] else best


def global_ranks(shapes, errors, budget: int, caps) -> list:
    """Ranks approximately minimising the summed squared relative error with at most ``budget`` parameters.

    A bisection on the price of a parameter gives the cheapest Lagrangian
    allocation within budget; a greedy pass then spends what is left on the
    steps with the largest error decrease per parameter.
    """
    def allocate(price):
        return [_best_for(e, m, n, cap, price) for (m, n), e, cap in zip(shapes, errors, caps)]

    check_budget(shapes, caps, budget)
    low, high = 0.0, 1.0
    while _cost(shapes, allocate(high)) > budget:
        high *= 4.0
    for _ in range(100):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if _cost(shapes, allocate(middle)) > budget else (low, middle)
    ranks = allocate(high)
    left = budget - _cost(shapes, ranks)
    while True:
        best, step = None, 0.0
        for i, ((m, n), e, cap, r) in enumerate(zip(shapes, errors, caps, ranks)):
            if r is DENSE:
                continue
            options = [(r + 1, e[r] - e[r + 1], m + n)] if r < cap else []
            options.append((DENSE, e[r], m * n - r * (m + n)))
            for target, gain, extra in options:
                if extra <= left and gain / extra > step:
                    best, step = (i, target, extra), gain / extra
        if best is None:
            return ranks
        i, target, extra = best
        ranks[i] = target
        left -= extra
