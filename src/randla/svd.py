"""Randomized truncated SVD: A ~ U diag(S) Vh of a given rank or accuracy."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._results import Unpackable
from .backend import conj_transpose, qr, small_svd
from .operators import as_operator
from .qb import build_basis, check_options
from .rangefinder import indicator_floor

__all__ = ["svd", "SVDResult", "svd_from_basis"]


@dataclass(frozen=True, repr=False)
class SVDResult(Unpackable):
    """A truncated SVD, A ~ U @ diag(S) @ Vh; unpacks as ``U, S, Vh``.

    Attributes
    ----------
    U : (m, k) array, orthonormal columns
    S : (k,) array, singular values in descending order
    Vh : (k, n) array, orthonormal rows
    power_iters : int
        Passes of A A^H the range finder made (per block in ``tol`` mode).
    error_estimate : float or None
        In ``tol`` mode, ||A - U S Vh||_F / ||A||_F as tracked by the range
        finder: exact up to rounding where ||A||_F is (explicit matrices),
        else a point estimate from random probes (a LinearOperator). None
        for a fixed rank (see :func:`randla.estimate_error`).
    converged : bool
        In ``tol`` mode, whether the tolerance was met within the rank cap.
        For a probed estimate, the rank is chosen and convergence decided on
        an upper confidence bound of the error, not on ``error_estimate``:
        the tolerance then holds with high probability (about 98%).
    """

    U: object
    S: object
    Vh: object
    power_iters: int = 0
    error_estimate: float | None = None
    converged: bool = True
    _unpack = ("U", "S", "Vh")

    @property
    def rank(self) -> int:
        return int(self.S.shape[0])

    def factors(self):
        """(L, R) with A ~ L @ R: (U diag(S), Vh)."""
        return self.U * self.S[None, :], self.Vh

    def reconstruct(self):
        """The dense approximation U diag(S) Vh (m x n: only for small A)."""
        L, R = self.factors()
        return L @ R


def _sign_phases(xp, Vh):
    """Phases that make the largest-magnitude entry of each row of Vh real positive.

    Vh is the factor on the short side (svd works on tall A) and its rows are
    contiguous, so the rule costs one pass over the smaller factor.
    """
    cols = xp.argmax(xp.abs(Vh), axis=1)
    pivots = xp.take_along_axis(Vh, cols[:, None], axis=1)[:, 0]
    size = xp.abs(pivots)
    nonzero = size > 0  # a zero row (zero matrix) keeps its sign
    return xp.where(nonzero, pivots / xp.where(nonzero, size, xp.ones_like(size)), xp.ones_like(pivots))


def _core_svd(xp, W):
    """W = Qw R and the SVD u s vh of R^H, so that W^H = u s (vh Qw^H)."""
    Qw, R = qr(xp, W)
    u, s, vh = small_svd(xp, conj_transpose(xp, R))
    return Qw, u, s, vh


def _lift(xp, Q, Qw, u, s, vh, k):
    """The leading k triplets of Q u s vh Qw^H, signs fixed; only k columns are lifted."""
    Vh = vh[:k, :] @ conj_transpose(xp, Qw)
    phase = _sign_phases(xp, Vh)
    return Q @ (u[:, :k] * phase[None, :]), s[:k], Vh * xp.conj(phase)[:, None]


def svd_from_basis(xp, Q, W, rank: int | None = None):
    """SVD of A ~ Q W^H, Q (m, l) orthonormal and W = A^H Q (n, l).

    W = Qw R, so Q W^H = (Q R^H) Qw^H and the SVD of the l x l matrix R^H
    finishes the job [HMT2011, Alg. 5.1]. Returns the leading ``rank``
    (default l) triplets U, S, Vh.
    """
    Qw, u, s, vh = _core_svd(xp, W)
    return _lift(xp, Q, Qw, u, s, vh, s.shape[0] if rank is None else rank)


def _tolerance_rank(s, norm: float, error: float, tol: float, cap: int, floor: float = 0.0):
    """Smallest k whose truncation keeps the total error within tol, or the
    cap if that is smaller; the error of that truncation; whether the cap left tol met.

    ||A - U_k S_k Vh_k||_F^2 = ||A - Q Q^H A||_F^2 + sum_{i>k} s_i^2 (the two
    parts are orthogonal), so the tail of s can be spent down to the budget.
    ``error`` is the basis's relative error; squares are taken relative to
    ||A||_F = ``norm``, where they cannot overflow or underflow. Where tol is
    not met, components worth less than ``floor`` (the indicator's rounding,
    squared and relative) are rounding too, and are dropped all the same.
    """
    s2 = [(float(v) / norm) ** 2 if norm > 0 else 0.0 for v in s]
    tail, k = error**2, len(s2)
    budget = max(tol**2, error**2 + floor)
    while k > 1 and tail + s2[k - 1] <= budget:
        tail += s2[k - 1]
        k -= 1
    within_cap = k <= cap
    k = min(k, cap)
    return k, math.sqrt(error**2 + sum(s2[k:])), within_cap


def _truncation_error(s, norm: float, error: float, k: int) -> float:
    """The relative error of the rank-k truncation, as :func:`_tolerance_rank` gives it."""
    return math.sqrt(error**2 + sum((float(v) / norm) ** 2 if norm > 0 else 0.0 for v in s[k:]))


def svd(
    A,
    rank: int | None = None,
    *,
    oversample: int = 10,
    power_iters: int | str = "auto",
    method: str = "rsi",
    tol: float | None = None,
    sketch: str = "gaussian",
    normalizer: str = "auto",
    block_size: int = 32,
    rng=None,
) -> SVDResult:
    """Truncated SVD of a matrix-like A by randomized sketching.

    Finds U (m, k), S (k,), Vh (k, n) with A ~ U diag(S) Vh, k = ``rank``, or
    the smallest k with ||A - U diag(S) Vh||_F <= tol ||A||_F.

    Parameters
    ----------
    A : matrix-like, shape (m, n)
        NumPy array, SciPy sparse, LinearOperator, torch tensor (any device),
        CuPy array or :class:`randla.Operator`. Never copied or densified.
    rank : int, optional
        Target rank k in [1, min(m, n)]. With ``tol``, the cap on the rank.
    oversample : int, default 10
        Extra sketch columns, l = k + oversample (capped at min(m, n)). With
        ``tol`` and ``rank``, the basis may grow this far past the cap.
    power_iters : int or "auto", default "auto"
        Passes of A A^H. "auto" is :func:`randla.rangefinder.auto_power_iters`
        for ``"rsi"`` and ``"block_krylov"``, 0 for ``"rsvd"``, and 2 per
        block in ``tol`` mode.
    method : {"rsi", "rsvd", "block_krylov"}, default "rsi"
        "rsi": randomized subspace iteration [HMT2011, Alg. 4.4 + 5.1];
        "rsvd": a single sketch, no power iterations [HMT2011, Alg. 4.1];
        "block_krylov": block Krylov iteration (Musco & Musco 2015, Alg. 2),
        more accurate per pass on slowly decaying spectra.
    tol : float in (0, 1), optional
        Relative Frobenius error to reach; the basis then grows adaptively
        in blocks of ``block_size`` (Yu, Gu & Li 2018). The estimate holds
        down to tol ~ 1e-7 in float64 and ~ 1e-3 in float32; below 3e-8
        and 2.4e-4, where it reads its own rounding, a warning says so.
        Where ||A||_F is not known exactly (a LinearOperator), the error is
        estimated from random probes, and the rank is the smallest whose
        upper confidence bound (the estimate plus two standard errors, from
        at least 16 probes) meets tol: a few percent above the exact minimum
        rank, and the tolerance holds with high probability (about 98% at
        the default block_size; narrower blocks test more often, and at
        block_size=1 it failed in 5 of 40 runs of one test). So is it where ||A||_F is a difference of
        larger terms known less well than tol needs (:func:`randla.residual`:
        A - L R; a centred operator without access to its entries).
        There the basis stops growing once a block finds only rounding, and
        components at that level are dropped: an exactly low-rank A gives
        its rank, with ``converged`` False where tol is not certified. bf16 and fp16
        input is decomposed in float32 and the factors are rounded to the
        input's precision afterwards, which adds about eps ||A||_F (eps
        of that precision, 8e-3 for bf16) to the error; the estimate does
        not include it.
    sketch : {"gaussian", "rademacher", "sparse_sign", "countsketch", "srht"}
        Test matrix; see :mod:`randla.sketch`.
    normalizer : {"auto", "cholqr", "lu", "qr", "none"}, default "auto"
        How blocks are rescaled between power iterations ("auto" is
        Cholesky-QR, falling back to Householder when ill-conditioned).
        "none" only rescales [HMT2011, Alg. 4.3]: after q iterations the
        sketch is (A A^H)^q A Omega, and directions with sigma_i below
        sigma_1 eps^(1 / (2q + 1)) are lost to rounding (at the default
        q = 4 and float64, sigma_i < 0.018 sigma_1). ``method="block_krylov"``
        orthonormalises every block fully and takes none: anything but
        "auto" raises a ValueError.
    block_size : int, default 32
        Columns added per step in ``tol`` mode.
    rng : None, int, SeedSequence, BitGenerator or Generator
        Source of randomness (SPEC 7); the same rng gives the same result.

    Returns
    -------
    SVDResult
        Unpacks as ``U, S, Vh``; factors in A's library, device and dtype.
        S is descending. Signs are fixed deterministically: in each singular
        vector of the shorter side (V for tall A, U for wide A) the entry of
        largest magnitude is real and positive.

    Notes
    -----
    Passes over A: ``power_iters + 1`` with A and ``power_iters + 1`` with
    A^H, each against l columns; wide A is handled as A^H. With p = l - k
    >= 2 and q power iterations, the range finder's error obeys
    [HMT2011, Cor. 10.10]

        E ||A - Q Q^H A||_2 <= [(1 + sqrt(k / (p - 1))) sigma_{k+1}^{2q+1}
                                + e sqrt(l) / p (sum_{j>k} sigma_j^{2(2q+1)})^{1/2}]^{1/(2q+1)},

    so each power iteration shrinks the excess over sigma_{k+1}. In
    practice, with the default settings, ||A - U S Vh||_2 <= 1.1 sigma_{k+1}
    on slowly decaying spectra (bench/results/svd.md). Check any result a
    posteriori with :func:`randla.estimate_error`.

    References
    ----------
    .. [HMT2011] N. Halko, P.-G. Martinsson, J. A. Tropp, "Finding structure
       with randomness", SIAM Review 53(2), 2011.

    Examples
    --------
    >>> import randla
    >>> A = randla.testing.low_rank(300, 200, rank=10, rng=0)
    >>> U, S, Vh = randla.svd(A, 10, rng=0)
    >>> U.shape, S.shape, Vh.shape
    ((300, 10), (10,), (10, 200))
    """
    op = as_operator(A)
    options = check_options(op, rank, tol, oversample, power_iters, method, sketch, normalizer, block_size, rng)
    transposed = op.shape[0] < op.shape[1]
    if transposed:  # work on the short side: sketch A^H
        op = op.H
    xp = op.xp
    basis = build_basis(op, options, oversample_cap=True)
    Qw, u, s, vh = _core_svd(xp, basis.W)
    k, error, converged = options.rank, basis.error, basis.converged
    if options.tol is not None:
        floor = 0.0 if converged else indicator_floor(xp, op.dtype)
        # The rank is chosen on the upper bound (the same as the estimate where ||A||_F is exact);
        # the error reported is the point estimate of that truncation.
        k, bound, within_cap = _tolerance_rank(
            s, basis.norm_bound, basis.error_bound, options.tol, k or s.shape[0], floor
        )
        error = bound if basis.norm_bound == basis.norm else _truncation_error(s, basis.norm, basis.error, k)
        converged = converged and within_cap
    U, S, Vh = (op.as_output(x) for x in _lift(xp, basis.Q, Qw, u, s, vh, k))
    if transposed:
        U, Vh = conj_transpose(xp, Vh), conj_transpose(xp, U)
    return SVDResult(U, S, Vh, basis.power_iters, error, converged)
