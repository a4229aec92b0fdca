"""Randomized QB decomposition: A ~ Q B with Q orthonormal and B = Q^H A."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from ._results import Unpackable
from ._validate import check_choice, check_int, check_power_iters, check_rank, check_rng, check_tol
from .backend import conj_transpose
from .operators import Operator, as_operator
from .rangefinder import (
    adaptive_qb,
    auto_power_iters,
    block_krylov,
    check_normalizer,
    check_sketch,
    draw_for,
    indicator_floor,
    subspace_iteration,
)

__all__ = ["qb", "QBResult"]

METHODS = ("rsi", "rsvd", "block_krylov")


@dataclass(frozen=True, repr=False)
class QBResult(Unpackable):
    """A ~ Q @ B; unpacks as ``Q, B``.

    ``Q`` (m, l) has orthonormal columns and ``B`` = Q^H A (l, n).
    ``error_estimate`` is ||A - Q B||_F / ||A||_F in ``tol`` mode (None
    otherwise): exact up to rounding where ||A||_F is (explicit matrices),
    else a point estimate from random probes. ``converged`` says whether
    ``tol`` was met within the rank cap; for a probed estimate (a
    LinearOperator), whether an upper confidence bound on the error met it,
    so that the tolerance holds with high probability (about 98%) even
    where ``error_estimate`` is just under tol.
    """

    Q: object
    B: object
    power_iters: int = 0
    error_estimate: float | None = None
    converged: bool = True
    _unpack = ("Q", "B")

    @property
    def rank(self) -> int:
        return int(self.Q.shape[1])

    def factors(self):
        return self.Q, self.B

    def reconstruct(self):
        return self.Q @ self.B


def qb(
    A,
    rank: int | None = None,
    *,
    tol: float | None = None,
    oversample: int = 10,
    power_iters: int | str = "auto",
    method: str = "rsi",
    sketch: str = "gaussian",
    normalizer: str = "auto",
    block_size: int = 32,
    rng=None,
) -> QBResult:
    """QB decomposition A ~ Q B of a fixed size or to a tolerance.

    Parameters
    ----------
    A : matrix-like, shape (m, n)
    rank : int, optional
        Fixed size: Q has ``rank + oversample`` columns (capped at
        min(m, n)); with ``method="block_krylov"``, that many per Krylov
        block. With ``tol``, the cap on the number of columns.
    tol : float in (0, 1), optional
        Grow Q until ||A - Q B||_F <= tol ||A||_F (randQB_EI, Yu, Gu & Li
        2018, Alg. 2); the columns come in blocks of ``block_size``. Where
        ||A||_F is not known exactly (a LinearOperator), the error is probed
        and Q grows until an upper confidence bound of the probe meets tol
        (:func:`randla.rangefinder.adaptive_qb`). Where it is a difference of
        larger terms (:func:`randla.residual`, a centred operator) known
        less well than tol needs, the error is probed in the same way.
    oversample, power_iters, method, sketch, normalizer, rng
        As in :func:`randla.svd`; ``method="block_krylov"`` takes no
        ``normalizer``.
    block_size : int, default 32

    Returns
    -------
    QBResult
        Unpacks as ``Q, B``.

    Notes
    -----
    Passes over A: ``2 power_iters + 2`` for a fixed size; in ``tol`` mode
    that many per block. Q is the range finder's basis [HMT2011, Sec. 4], B
    the projection of A onto it, so ||A - Q B|| is the range finder's error.

    Examples
    --------
    >>> import randla
    >>> A = randla.testing.low_rank(300, 200, rank=10, rng=0)
    >>> Q, B = randla.qb(A, tol=1e-6, rng=0)
    >>> Q.shape[0], B.shape[1]
    (300, 200)
    """
    op = as_operator(A)
    options = check_options(op, rank, tol, oversample, power_iters, method, sketch, normalizer, block_size, rng)
    basis = build_basis(op, options)
    B = conj_transpose(op.xp, basis.W)
    return QBResult(
        op.as_output(basis.Q), op.as_output(B), basis.power_iters, basis.error, basis.converged
    )


@dataclass(frozen=True)
class Options:
    """The validated settings shared by every driver built on a QB."""

    rank: int | None
    tol: float | None
    oversample: int
    power_iters: int | str
    method: str
    sketch: str
    normalizer: str
    block_size: int
    rng: object


def check_options(op, rank, tol, oversample, power_iters, method, sketch, normalizer, block_size, rng) -> Options:
    """Validate the shared settings once, at the public boundary."""
    method = check_choice("method", method, METHODS)
    power_iters = check_power_iters(power_iters)
    if rank is None and tol is None:
        raise ValueError("give `rank` (the target rank) or `tol` (a relative error to reach).")
    if method == "rsvd" and power_iters not in ("auto", 0):
        raise ValueError(
            f"method='rsvd' makes no power iterations; got power_iters={power_iters}. "
            "Use method='rsi' for power iterations."
        )
    if tol is not None and method == "block_krylov":
        raise ValueError("`tol` works with method='rsi' or 'rsvd'; block_krylov takes a fixed rank.")
    if method == "block_krylov" and check_normalizer(normalizer) != "auto":
        raise ValueError(
            f"method='block_krylov' orthonormalises every block fully and takes no normalizer; got "
            f"normalizer={normalizer!r}. Leave `normalizer` out, or use method='rsi' to choose one."
        )
    return Options(
        rank=None if rank is None else check_rank(rank, op.shape),
        tol=None if tol is None else check_tol(tol),
        oversample=check_int("oversample", oversample, 0),
        power_iters=power_iters,
        method=method,
        sketch=check_sketch(sketch),
        normalizer=check_normalizer(normalizer),
        block_size=check_int("block_size", block_size, 1),
        rng=check_rng(rng),
    )


@dataclass(frozen=True)
class Basis:
    """A ~ Q W^H with Q orthonormal and W = A^H Q, and how it was found."""

    Q: object
    W: object
    power_iters: int
    error: float | None = None
    converged: bool = True
    norm: float | None = None
    # In tol mode: error and norm with a probed residual at its upper confidence
    # bound (equal where ||A||_F is exact).
    error_bound: float | None = None
    norm_bound: float | None = None


def check_resolution(op: Operator, tol: float, stacklevel: int = 4):
    """Warn where tol^2 is below twice the rounding of the error indicator
    (:func:`randla.rangefinder.indicator_floor`): about 3e-8 in float64 and
    2.4e-4 in float32, where the indicator reads its own rounding."""
    resolution = math.sqrt(2 * indicator_floor(op.xp, op.dtype))
    if tol < resolution:
        name = getattr(op.dtype, "__name__", None) or str(op.dtype).removeprefix("torch.")
        wider = "" if op.xp.finfo(op.dtype).bits >= 64 else " Decompose float64 data for a tighter tolerance."
        warnings.warn(
            f"tol={tol:g} is below what {name} arithmetic resolves (about {resolution:.1e}): the error estimate "
            "and `converged` cannot be trusted there, and the basis stops growing where a block finds only "
            f"rounding.{wider}",
            UserWarning,
            stacklevel=stacklevel,
        )


def build_basis(op: Operator, o: Options, *, oversample_cap: bool = False) -> Basis:
    """Run the range finder the options ask for: fixed size or adaptive.

    ``oversample_cap``: in ``tol`` mode, let the basis grow ``oversample``
    columns past the rank cap, for a decomposition truncated to the cap
    afterwards (a basis of exactly k columns gives poor top-k factors).
    """
    if o.tol is not None:
        check_resolution(op, o.tol)
        power_iters = 0 if o.method == "rsvd" else (2 if o.power_iters == "auto" else o.power_iters)
        extra = o.oversample if oversample_cap else 0
        cap = min(op.shape) if o.rank is None else min(o.rank + extra, min(op.shape))
        found = adaptive_qb(
            op,
            o.tol,
            block_size=min(o.block_size, cap),
            max_rank=cap,
            power_iters=power_iters,
            sketch=o.sketch,
            normalizer=o.normalizer,
            rng=o.rng,
        )
        error, bound = found.error, found.error_bound
        floor = indicator_floor(op.xp, op.dtype)
        if not found.converged and o.tol**2 < floor:
            # Below what the indicator resolves, a reading of 0 is rounding, not a certified error.
            error, bound = max(error, math.sqrt(floor)), max(bound, math.sqrt(floor))
        return Basis(found.Q, found.W, power_iters, error, found.converged, found.norm, bound, found.norm_bound)
    l = min(o.rank + o.oversample, min(op.shape))
    power_iters = o.power_iters
    if power_iters == "auto":
        power_iters = 0 if o.method == "rsvd" else auto_power_iters(l, op.shape, o.method)
    omega = draw_for(op, o.sketch, l, o.rng)
    if o.method == "block_krylov":
        Q = block_krylov(op, omega, power_iters=power_iters)
    else:
        Q = subspace_iteration(op, omega, power_iters=power_iters, normalizer=o.normalizer)
    return Basis(Q, op.rmatmat(Q), power_iters)
