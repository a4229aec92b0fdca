"""Randomized QB decomposition: A ~ Q B with Q orthonormal and B = Q^H A."""

from __future__ import annotations

from dataclasses import dataclass

from ._results import Unpackable
from ._validate import check_int, check_power_iters, check_rank, check_rng, check_tol
from .backend import conj_transpose
from .operators import as_operator
from .rangefinder import (
    adaptive_qb,
    auto_power_iters,
    check_normalizer,
    check_sketch,
    draw_for,
    subspace_iteration,
)

__all__ = ["qb", "QBResult"]


@dataclass(frozen=True, repr=False)
class QBResult(Unpackable):
    """A ~ Q @ B; unpacks as ``Q, B``.

    ``Q`` (m, l) has orthonormal columns and ``B`` = Q^H A (l, n).
    ``error_estimate`` is ||A - Q B||_F / ||A||_F in ``tol`` mode (None
    otherwise); ``converged`` whether ``tol`` was met within the rank cap.
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
        min(m, n)). With ``tol``, the cap on the number of columns.
    tol : float in (0, 1), optional
        Grow Q until ||A - Q B||_F <= tol ||A||_F (randQB_EI, Yu, Gu & Li
        2018, Alg. 2); the columns come in blocks of ``block_size``.
    oversample, power_iters, sketch, normalizer, rng
        As in :func:`randla.svd` ("auto" power_iters is 2 per block in
        ``tol`` mode).
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
    power_iters = check_power_iters(power_iters)
    oversample = check_int("oversample", oversample, 0)
    sketch = check_sketch(sketch)
    normalizer = check_normalizer(normalizer)
    rng = check_rng(rng)
    if rank is None and tol is None:
        raise ValueError("give `rank` (the size of the basis) or `tol` (a relative error).")
    if rank is not None:
        rank = check_rank(rank, op.shape)
    xp = op.xp
    if tol is not None:
        tol = check_tol(tol)
        cap = rank if rank is not None else min(op.shape)
        power_iters = 2 if power_iters == "auto" else power_iters
        basis = adaptive_qb(
            op,
            tol,
            block_size=min(check_int("block_size", block_size, 1), cap),
            max_rank=cap,
            power_iters=power_iters,
            sketch=sketch,
            normalizer=normalizer,
            rng=rng,
        )
        B = conj_transpose(xp, basis.W)
        return QBResult(op.as_output(basis.Q), op.as_output(B), power_iters, basis.error, basis.converged)
    if power_iters == "auto":
        power_iters = auto_power_iters(rank, op.shape)
    omega = draw_for(op, sketch, min(rank + oversample, min(op.shape)), rng)
    Q = subspace_iteration(op, omega, power_iters=power_iters, normalizer=normalizer)
    B = conj_transpose(xp, op.rmatmat(Q))
    return QBResult(op.as_output(Q), op.as_output(B), power_iters)
