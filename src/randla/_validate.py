"""Validation of user parameters, done once at the public boundary.

One wording for every parameter error: what was expected, what was received,
and how to fix it.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "check_rng",
    "check_rank",
    "check_int",
    "check_tol",
    "check_choice",
    "check_power_iters",
]


def check_rng(rng) -> np.random.Generator:
    """Normalise ``rng`` (SPEC 7) to a ``numpy.random.Generator``, once."""
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool) and rng < 0:
        raise ValueError(f"an int `rng` seed must be >= 0; got {rng}.")
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            "`rng` must be None, an int, a numpy SeedSequence, BitGenerator or "
            f"Generator; got {type(rng).__name__}. For a torch.Generator, pass "
            "an int seed instead."
        ) from exc


def child_rng(gen: np.random.Generator) -> np.random.Generator:
    """An independent stream seeded from ``gen``.

    ``Generator.spawn`` needs a SeedSequence, which legacy-seeded bit
    generators (and a wrapped RandomState) lack; a seed drawn from ``gen``
    works for all of them.
    """
    return np.random.default_rng(int(gen.integers(2**63)))


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    """An int in [low, high] (high=None: unbounded); bools are refused."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and value >= low and (high is None or value <= high):
        return int(value)
    bound = f"[{low}, {high}]" if high is not None else f">= {low}"
    raise ValueError(f"`{name}` must be an int {bound}; got {value!r}.")


def check_rank(rank, shape) -> int:
    """``rank`` in [1, min(m, n)]."""
    limit = min(shape)
    try:
        return check_int("rank", rank, 1, limit)
    except ValueError:
        raise ValueError(
            f"`rank` must be an int in [1, {limit}] (the smaller dimension of "
            f"the {shape[0]}x{shape[1]} matrix); got {rank!r}."
        ) from None


def check_tol(tol, meaning: str = "the relative Frobenius error ||A - A_hat||_F / ||A||_F") -> float:
    """A relative tolerance in the open interval (0, 1); ``meaning`` names the error it bounds."""
    ok = isinstance(tol, numbers.Real) and not isinstance(tol, bool)
    if ok and 0.0 < float(tol) < 1.0:
        return float(tol)
    raise ValueError(f"`tol` must be a float in (0, 1), {meaning} to reach; got {tol!r}.")


def check_choice(name: str, value, choices, extra: str = "") -> str:
    """One of the names ``choices``; ``extra`` names what else is allowed ("or None")."""
    if isinstance(value, str) and value in choices:
        return value
    allowed = ", ".join(repr(c) for c in choices)
    raise ValueError(f"`{name}` must be one of {allowed}{' ' + extra if extra else ''}; got {value!r}.")


def check_power_iters(power_iters) -> int | str:
    if isinstance(power_iters, str) and power_iters == "auto":
        return "auto"
    try:
        return check_int("power_iters", power_iters, 0)
    except ValueError:
        raise ValueError(
            f"`power_iters` must be 'auto' or an int >= 0; got {power_iters!r}."
        ) from None
