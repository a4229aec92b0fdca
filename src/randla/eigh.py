"""Randomized eigendecompositions of Hermitian and PSD matrices.

- :func:`eigh` - the k eigenpairs of largest magnitude of a Hermitian A,
  A ~ V diag(w) V^H [HMT2011, Alg. 5.3];
- :func:`nystrom` - the Nystrom approximation A ~ U diag(S) U^H of a PSD A
  from a single sketch, in the numerically stable form of Tropp, Yurtsever,
  Udell & Cevher (2017, Alg. 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._results import Unpackable
from ._validate import check_int, check_power_iters, check_rank, check_rng, check_tol, child_rng
from .backend import (
    _cholesky_upper,
    conj_transpose,
    finfo_eps,
    frobenius_norm,
    namespace,
    normalize,
    orthonormalize,
    random_signs,
    small_eigh,
    small_svd,
    triangular_inverse,
)
from .operators import Operator, as_operator
from .operators.adapters import MissingAdjointError
from .rangefinder import auto_power_iters, check_normalizer, check_sketch, checked_product, draw_for

__all__ = ["eigh", "nystrom", "EighResult", "NystromResult"]


@dataclass(frozen=True, repr=False)
class EighResult(Unpackable):
    """A ~ V diag(w) V^H; unpacks as ``w, V``.

    ``w`` (k,) eigenvalues by descending magnitude; ``V`` (n, k) orthonormal
    eigenvectors; ``power_iters`` the passes of A^2 made.
    """

    w: object
    V: object
    power_iters: int = 0
    _unpack = ("w", "V")

    @property
    def rank(self) -> int:
        return int(self.w.shape[0])

    def factors(self):
        return self.V * self.w[None, :], conj_transpose(namespace(self.V), self.V)

    def reconstruct(self):
        L, R = self.factors()
        return L @ R


@dataclass(frozen=True, repr=False)
class NystromResult(Unpackable):
    """PSD approximation A ~ U diag(S) U^H; unpacks as ``U, S``.

    ``U`` (n, k) orthonormal, ``S`` (k,) non-negative and descending;
    ``shift`` is the stabilising shift nu that was added and removed;
    ``trace_error`` is tr(A - U diag(S) U^H), the error in the trace
    (nuclear) norm for PSD A: exact (``trace_error_exact``) when tr(A) is
    cheap to read, otherwise a randomized estimate; ``converged`` is False
    where ``tol`` was given and not met (the rank cap came first).
    """

    U: object
    S: object
    shift: float = 0.0
    trace_error: float | None = None
    trace_error_exact: bool = False
    converged: bool = True
    _unpack = ("U", "S")

    @property
    def rank(self) -> int:
        return int(self.S.shape[0])

    def factors(self):
        return self.U * self.S[None, :], conj_transpose(namespace(self.U), self.U)

    def reconstruct(self):
        L, R = self.factors()
        return L @ R


def _square(op: Operator, name: str) -> Operator:
    if op.shape[0] != op.shape[1]:
        raise ValueError(f"{name} needs a square matrix; got shape {op.shape}.")
    return op


def _check_hermitian(op: Operator, omega, Y):
    """Refuse a non-Hermitian A, judged on the sketch Y = A Omega.

    For a random Omega of two or more columns, C = Omega^H Y is Hermitian
    only when A is (up to rounding), so the check needs no pass over A of
    its own. A single column w cannot see a real skew-symmetric part
    (w^T S w = 0): then A^H w is compared with A w, for one product.
    """
    if op.hermitian:
        return
    xp = op.xp
    if omega.shape[1] >= 2 or op.shape[0] == 1:
        probe = conj_transpose(xp, omega) @ Y
        adjoint = conj_transpose(xp, probe)
    else:
        try:
            adjoint = op.rmatmat(omega)
        except MissingAdjointError:
            return  # a LinearOperator with matvec alone: taken as Hermitian, as scipy's eigsh does
        probe = Y
    gap, scale = frobenius_norm(xp, probe - adjoint), frobenius_norm(xp, probe)
    if gap > 10 * finfo_eps(xp, op.dtype) ** 0.5 * max(scale, 1e-300):
        raise ValueError(
            f"A must be Hermitian (A == A^H) for eigh/nystrom; on a random sketch Omega, "
            f"Omega^H A Omega differs from its adjoint by {gap / max(scale, 1e-300):.2e} (relative). "
            "For a general matrix use randla.svd; for a nearly symmetric one, pass (A + A^H) / 2."
        )


def eigh(
    A,
    rank: int,
    *,
    oversample: int = 10,
    power_iters: int | str = "auto",
    sketch: str = "gaussian",
    normalizer: str = "auto",
    rng=None,
) -> EighResult:
    """The ``rank`` eigenpairs of largest magnitude of a Hermitian matrix.

    Parameters
    ----------
    A : matrix-like, shape (n, n), Hermitian
    rank : int
        Number k of eigenpairs, in [1, n].
    oversample, power_iters, sketch, normalizer, rng
        As in :func:`randla.svd`; a power iteration here is one pass of A^2.

    Returns
    -------
    EighResult
        Unpacks as ``w, V``: eigenvalues by descending magnitude, eigenvectors.

    Notes
    -----
    Randomized subspace iteration for a basis Q [HMT2011, Alg. 5.3], then
    the Rayleigh-Ritz problem on the block Krylov basis [Q, A Q], which
    keeps eigenvalues of opposite signs near the k-th apart. Passes over A:
    2 power_iters + 3 (2 with a sketch of n columns, which spans A's range).
    A is checked to be Hermitian on the first sketch, with no pass of its own
    (at ``rank + oversample == 1``, on one product with A^H, which a
    ``LinearOperator`` given only ``matvec`` lacks: it is then taken to be
    Hermitian, as :func:`scipy.sparse.linalg.eigsh` takes it).

    Examples
    --------
    >>> import randla
    >>> A = randla.testing.psd(300, rank=20, rng=0)
    >>> w, V = randla.eigh(A, 5, rng=0)
    >>> w.shape, V.shape
    ((5,), (300, 5))
    """
    op = _square(as_operator(A), "eigh")
    rank = check_rank(rank, op.shape)
    oversample = check_int("oversample", oversample, 0)
    power_iters = check_power_iters(power_iters)
    l = min(rank + oversample, op.shape[0])
    if power_iters == "auto":
        power_iters = auto_power_iters(l, op.shape)
    normalizer = check_normalizer(normalizer)
    rng = check_rng(rng)
    omega = draw_for(op, check_sketch(sketch), l, rng)
    xp = op.xp
    Y = checked_product(omega.apply, op)
    _check_hermitian(op, omega.dense(), Y)
    for _ in range(2 * power_iters):
        Y = op.matmat(normalize(xp, Y, normalizer))
    Q = orthonormalize(xp, Y)
    # Rayleigh-Ritz on [Q, A Q] rather than Q alone: where eigenvalues of both
    # signs crowd the k-th, Q mixes their eigenvectors and Q^H A Q's values
    # cancel towards 0 (by half on a random graph's adjacency); the Krylov
    # block separates them for one more pass.
    if l < op.shape[0]:
        Q = orthonormalize(xp, xp.concat([Q, op.matmat(Q)], axis=1))
    T = conj_transpose(xp, Q) @ op.matmat(Q)
    w, v = small_eigh(xp, T)
    order = xp.argsort(-xp.abs(w))[:rank]
    w, V = xp.take(w, order), Q @ xp.take(v, order, axis=1)
    return EighResult(op.as_output(w), op.as_output(V), power_iters)


def nystrom(
    A,
    rank: int | None = None,
    *,
    tol: float | None = None,
    oversample: int = 10,
    power_iters: int = 0,
    sketch: str = "gaussian",
    probes: int = 16,
    rng=None,
) -> NystromResult:
    """Nystrom approximation A ~ U diag(S) U^H of a positive semidefinite A.

    Parameters
    ----------
    A : matrix-like, shape (n, n), Hermitian positive semidefinite
    rank : int, optional
        Rank k of the approximation, in [1, n]. With ``tol``, the largest
        rank allowed.
    tol : float in (0, 1), optional
        Choose the rank: the smallest k with (estimated) relative trace
        error tr(A - A_hat) <= tol tr(A). The sketch doubles from 32 columns
        until it is met, so the work is at most twice that of the final
        sketch. At least one of ``rank`` and ``tol`` is required.
    oversample : int, default 10
        The sketch has l = k + oversample columns; the rank-l approximation
        is truncated to k.
    power_iters : int, default 0
        Passes of A applied to the test matrix before the Nystrom step
        (0: a single pass over A, the usual Nystrom method).
    probes : int, default 16
        Random probe vectors of the trace-error estimate, used only when
        tr(A) cannot be read off A (a ``LinearOperator``, for instance):
        one more product with A, on ``probes`` columns.
    sketch, rng
        As in :func:`randla.svd`.

    Returns
    -------
    NystromResult
        Unpacks as ``U, S``, S non-negative and descending.

    Notes
    -----
    With an orthonormal test matrix Omega and Y = A Omega, the Nystrom
    approximation is Y (Omega^H Y)^+ Y^H. It is computed stably by shifting
    Y by nu Omega with nu = sqrt(n) eps ||Y||, taking a Cholesky factor of
    Omega^H Y_nu, and removing nu from the eigenvalues at the end (Tropp,
    Yurtsever, Udell & Cevher 2017, "Fixed-rank approximation of a positive-
    semidefinite matrix from streaming data", Alg. 3). Passes over A:
    ``power_iters + 1``, and a product with one column for the check below.
    For PSD A its error in the trace norm is at most (1 + k / (l - k - 1))
    times the best rank-k error, in expectation.

    Trace error: A - A_hat is PSD, so its trace norm is its trace,
    tr(A) - sum(S). Where tr(A) is cheap (dense and sparse matrices, kernel
    operators) this is exact; otherwise tr(A - A_hat) is estimated by
    Girard-Hutchinson with Rademacher probes g, the mean of
    g^H (A - A_hat) g, which is unbiased with standard deviation at most
    sqrt(2 / probes) ||A - A_hat||_F.

    Refusal of A that is not PSD: a ValueError where the smallest eigenvalue
    of the core Omega^H A Omega (checked when its Cholesky factorisation fails)
    is below -sqrt(u) times its largest magnitude, or the exact trace error
    tr(A) - sum(S) below -sqrt(u) max(|tr(A)|, sum(S)), or the Rayleigh
    quotient u_1^H A u_1 of the top vector below S_1 by more than sqrt(u) S_1
    (one more product, with one column). Here u is the unit
    roundoff of A's entries, but never less than float32's 2^-23, so that the
    threshold is at least 3.5e-4 relative: a PSD matrix whose entries were
    rounded in single precision or finer, such as a Gram matrix formed in
    float32 and cast to float64, passes, and its rounding-level negative
    eigenvalues are clipped to zero. Entries rounded in half precision and
    then cast up can still be refused; pass such a matrix in its own dtype.
    These checks see A only through the sketch: an indefinite A can pass
    them where its negative part is small next to its positive part.

    Examples
    --------
    >>> import randla
    >>> A = randla.testing.psd(300, rank=20, rng=0)
    >>> U, S = randla.nystrom(A, 10, rng=0)
    >>> U.shape, bool((S >= 0).all())
    ((300, 10), True)
    """
    op = _square(as_operator(A), "nystrom")
    n = op.shape[0]
    if rank is None and tol is None:
        raise ValueError("nystrom needs `rank`, `tol` or both; got neither.")
    cap = n if rank is None else check_rank(rank, op.shape)
    tol = None if tol is None else check_tol(tol, "the relative trace error tr(A - A_hat) / tr(A)")
    oversample = check_int("oversample", oversample, 0)
    power_iters = check_int("power_iters", power_iters, 0)
    probes = check_int("probes", probes, 1)
    sketch = check_sketch(sketch)
    gen = check_rng(rng)
    trace = op.trace()
    trace = None if trace is None else trace.real  # complex for complex A: Hermitian, its imaginary part rounding
    probe_rng = child_rng(gen)
    k = cap if tol is None else min(cap, 32)
    checked = False  # A == A^H, on the first sketch only: each check is a pass over A
    converged = True
    while True:
        U, S, nu = _nystrom_sketch(op, k, oversample, power_iters, sketch, gen, check=not checked)
        checked = True
        error, exact, Au = _trace_error(op, U, S, trace, probes, probe_rng)
        _check_top(op, U, S, nu, Au)
        if tol is None:
            break
        total = error + _total(op.xp, S)
        # A trace that overflowed (inf <= tol * inf) meets no tolerance.
        finite = math.isfinite(total)
        converged = finite and error <= tol * total
        if converged or k >= cap:
            if finite:
                k = _smallest_rank(op.xp, S, error, tol * total)
                U, S = U[:, :k], S[:k]
                error = total - _total(op.xp, S)
            break
        k = min(2 * k, cap)
    return NystromResult(op.as_output(U), op.as_output(S), nu, max(error, 0.0), exact, converged)


def _nystrom_sketch(op, rank, oversample, power_iters, sketch, rng, check=True):
    """U (n, rank), S (rank,) and the shift nu of the stabilised Nystrom step."""
    xp = op.xp
    n = op.shape[0]
    omega = draw_for(op, sketch, min(rank + oversample, n), rng)
    Omega = orthonormalize(xp, omega.dense())
    Y = checked_product(op.matmat, Omega)
    if check:
        _check_hermitian(op, Omega, Y)
    for _ in range(power_iters):
        Omega = orthonormalize(xp, Y)
        Y = op.matmat(Omega)
    nu = n**0.5 * finfo_eps(xp, op.dtype) * frobenius_norm(xp, Y)
    Y_nu = Y + nu * Omega
    core = conj_transpose(xp, Omega) @ Y_nu
    R = _cholesky_upper(xp, (core + conj_transpose(xp, core)) / 2)
    if R is not None:
        F = Y_nu @ triangular_inverse(xp, R)
    else:
        F = Y_nu @ _inverse_sqrt_psd(xp, core, _rounding(op))
    U, s, _ = small_svd(xp, F)
    return U[:, :rank], xp.clip(s[:rank] ** 2 - nu, min=0.0), nu


def _rounding(op: Operator) -> float:
    """The unit roundoff of A's entries: of the dtype they came in where it is
    coarser than the one computed in (half precisions, computed in single)."""
    eps, given = finfo_eps(op.xp, op.dtype), op.input_dtype
    floating = given is not None and op.xp.isdtype(given, ("real floating", "complex floating"))
    return max(eps, finfo_eps(op.xp, given)) if floating else eps


# float32's unit roundoff. Entries are often rounded more coarsely than they are
# computed in (a Gram or kernel matrix formed in float32, on a GPU say, then cast
# to float64), and nothing in A tells: the refusal threshold never goes below
# the one for float32 entries.
_SINGLE_EPS = 2.0**-23


def _refuse_indefinite(value: float, scale: float, eps: float, what: str):
    """A ValueError where ``value``, which is >= 0 for PSD A up to rounding, is
    clearly negative: below -sqrt(max(eps, 2^-23)) ``scale`` (3.5e-4 ``scale``
    or more), far past the rounding of entries held in single precision or finer.
    Smaller negative values are taken as rounding, and clipped by the callers."""
    if value < -(max(eps, _SINGLE_EPS) ** 0.5) * scale:
        raise ValueError(
            f"A is not positive semidefinite: {what} = {value:.3g}, which is >= 0 for PSD A. "
            "nystrom approximates PSD matrices; for a Hermitian indefinite A use randla.eigh."
        )


def _check_top(op, U, S, nu: float, Au):
    """Refuse where S_1 > u_1^H A u_1 (``Au`` = A u_1): A - A_hat is PSD for PSD
    A, so the top eigenvalue of A_hat is at most A's Rayleigh quotient at its
    vector. An indefinite A whose sketched core is positive definite (its
    negative part diluted by the sketch) passes the other checks, and A_hat
    itself, PSD, fits the sketch: only a product beyond it can tell, here
    with S_1 often far above lambda_max(A)."""
    top = float(S[0])
    if not top > 0:
        return
    xp = op.xp
    quotient = float(xp.real(xp.sum(xp.conj(U[:, :1]) * Au)))
    # The Nystrom step's own error is about the shift nu.
    _refuse_indefinite(quotient - top + 100 * nu, max(top, abs(quotient)), _rounding(op),
                       "u_1^H A u_1 - S_1 (u_1 the top eigenvector of A_hat)")


def _trace_error(op, U, S, trace, probes: int, rng):
    """(tr(A - U diag(S) U^H), whether exact, A u_1): the trace error exact from
    tr(A), else a Girard-Hutchinson estimate whose product carries u_1 along."""
    xp = op.xp
    u = U[:, :1]
    if trace is not None:
        total = _total(xp, S)
        error = trace - total
        _refuse_indefinite(error, max(abs(trace), total), _rounding(op), "tr(A - A_hat)")
        return error, True, op.matmat(u)
    G = random_signs(xp, (op.shape[0], probes), op.dtype, op.device, rng)
    AG = op.matmat(xp.concat([G, xp.astype(u, G.dtype)], axis=1))
    AG, Au = AG[:, :probes], AG[:, probes:]
    UG = conj_transpose(xp, U) @ G
    quad = xp.sum(xp.real(xp.conj(G) * AG)) - xp.sum(S[:, None] * xp.real(xp.conj(UG) * UG))
    return float(quad) / probes, False, Au


def _total(xp, S) -> float:
    """sum(S) in double: float32 eigenvalues that fit can add up past 3.4e38."""
    return float(xp.sum(S, dtype=xp.float64))


def _smallest_rank(xp, S, tail: float, budget: float) -> int:
    """Smallest k whose trace error tail + sum(S[k:]) stays within budget (at least 1)."""
    s = [float(v) for v in S]
    k = len(s)
    while k > 1 and tail + s[k - 1] <= budget:
        tail += s[k - 1]
        k -= 1
    return k


def _inverse_sqrt_psd(xp, core, rounding: float):
    """Pseudo-inverse square root of a Hermitian PSD core, when Cholesky fails.

    Eigenvalues below the rounding level are dropped rather than inverted.
    A clearly negative one shows that A is not PSD; a smaller one is rounding
    of A's entries, and sets the level: positive eigenvalues no larger than its
    magnitude are rounding too, and inverting them would amplify it.
    """
    w, v = small_eigh(xp, core)
    lowest, largest = float(xp.min(w)), float(xp.max(xp.abs(w)))
    _refuse_indefinite(lowest, largest, rounding, "the smallest eigenvalue of Omega^H A Omega (Omega the sketch)")
    keep = w > max(finfo_eps(xp, w.dtype) * largest * w.shape[0], -lowest)
    inv_root = xp.where(keep, 1.0 / xp.sqrt(xp.where(keep, w, xp.ones_like(w))), xp.zeros_like(w))
    return (v * inv_root[None, :]) @ conj_transpose(xp, v)
