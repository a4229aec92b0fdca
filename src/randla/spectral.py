"""Spectral diagnostics of a matrix: its spectral norm with a certified bound, and its stable rank.

- :func:`spectral_norm` - ||A||_2 by the Lanczos method on A^H A from a
  random start, with a lower bound that always holds and an upper bound that
  holds with a chosen probability (Kuczynski & Wozniakowski 1992);
- :func:`stable_rank` - ||A||_F^2 / ||A||_2^2, the "effective rank" used to
  compare weight matrices of neural networks, with the interval that follows;
- :func:`numerical_rank` - the number of singular values above eps ||A||_2.

The first two touch A only through products with one vector, the third
through a randomized SVD, so all work on sparse, implicit and GPU matrices
of any size.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ._results import Unpackable
from ._validate import check_int, check_rng
from .backend import device_of, frobenius_norm, standard_normal, to_numpy
from .operators import as_operator
from .rangefinder import checked_product, estimate_error
from .svd import svd

__all__ = ["spectral_norm", "SpectralNormResult", "stable_rank", "StableRankResult", "numerical_rank"]

# The refinement of numerical_rank's count stops doubling the subspace iterations here.
_MAX_REFINING_ITERATIONS = 64


@dataclass(frozen=True, repr=False)
class SpectralNormResult(Unpackable):
    """||A||_2 bracketed: estimate <= ||A||_2 <= upper_bound; unpacks as ``estimate, upper_bound``.

    Attributes
    ----------
    estimate : float
        The largest Ritz value: a lower bound on ||A||_2 up to rounding.
    upper_bound : float
        An upper bound on ||A||_2 that fails with probability at most
        ``failure_probability`` over the random start; the estimate with a
        rounding margin when the Krylov space was exhausted.
    power_iters : int
        Lanczos steps made (products with A), fewer than asked once the
        Krylov space is exhausted.
    failure_probability : float
    """

    estimate: float
    upper_bound: float
    power_iters: int
    failure_probability: float
    _unpack = ("estimate", "upper_bound")


@dataclass(frozen=True, repr=False)
class StableRankResult(Unpackable):
    """||A||_F^2 / ||A||_2^2 bracketed; unpacks as ``estimate, lower_bound``.

    Attributes
    ----------
    estimate : float
        ||A||_F^2 / estimate^2 with the spectral norm's estimate, a lower
        bound on ||A||_2: so an upper bound on the stable rank (up to rounding).
    lower_bound : float
        ||A||_F^2 / upper_bound^2: holds with probability at least
        1 - ``spectral_norm.failure_probability``.
    frobenius_norm : float
        ||A||_F, exact.
    spectral_norm : SpectralNormResult
    """

    estimate: float
    lower_bound: float
    frobenius_norm: float
    spectral_norm: SpectralNormResult
    _unpack = ("estimate", "lower_bound")


def _check_probability(value) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and 0.0 < float(value) < 1.0:
        return float(value)
    raise ValueError(
        "`failure_probability` must be a float in (0, 1), the chance that `upper_bound` "
        f"is below ||A||_2; got {value!r}."
    )


def _start_dtype(op):
    """The start vector's dtype: complex wherever the products are.

    A real matrix plus a complex shift has a real dtype and complex products,
    and the bound for a complex A^H A needs a complex Gaussian start.
    """
    xp, dtype = op.xp, op.dtype
    if op._is_real() or xp.isdtype(dtype, "complex floating"):
        return dtype
    return xp.complex64 if dtype == xp.float32 else xp.complex128


def _bidiagonalize(op, steps: int, rng):
    """Golub-Kahan bidiagonalisation A V = U B from a Gaussian v_1, fully reorthogonalised.

    V^H A^H A V = B^H B, so B's singular values are the square roots of the
    Ritz values of Lanczos on A^H A from v_1, without forming A^H A (whose
    entries square those of A and leave the float range beyond ~1e154).
    Every vector is of unit length, so no product overflows before A does.
    Returns B's diagonal and superdiagonal and whether the Krylov space
    was exhausted (then its Ritz values are eigenvalues of A^H A).
    """
    xp, n, size = op.xp, op.shape[1], max(op.shape)
    steps = min(steps, n)
    v = standard_normal(xp, (n, 1), _start_dtype(op), op.device, rng)
    v = v / frobenius_norm(xp, v)
    V, U, alphas, betas = _Basis(xp, steps, v), None, [], []
    eps = float(xp.finfo(v.dtype).eps)
    scale = 0.0  # the largest entry of B so far, a stand-in for ||A||_2
    for step in range(steps):
        w = checked_product(op.matmat, v)
        if U is not None:
            w = U.project_out(w - betas[-1] * U.last())
        alpha = frobenius_norm(xp, w)
        alphas.append(alpha)
        scale = max(scale, alpha)
        # A residual at the rounding level of products with A means that
        # A^H A maps span(V) into itself: further steps would add noise.
        if alpha <= _breakdown(eps, size) * scale:
            return alphas, betas, True
        u = w / alpha
        if U is None:
            U = _Basis(xp, steps, u)
        else:
            U.append(u)
        if step + 1 == steps:
            break
        z = V.project_out(checked_product(op.rmatmat, u) - alpha * v)
        beta = frobenius_norm(xp, z)
        if beta <= _breakdown(eps, size) * scale:
            return alphas, betas, True
        betas.append(beta)
        scale = max(scale, beta)
        v = z / beta
        V.append(v)
    return alphas, betas, len(alphas) == n  # n steps span all of C^n


class _Basis:
    """Orthonormal vectors stored as the rows of one array allocated up front,
    so that projecting against all of them reads contiguous memory and no
    step copies the earlier vectors."""

    def __init__(self, xp, capacity: int, first):
        self.xp, self.size = xp, 0
        self.rows = xp.zeros((capacity, first.shape[0]), dtype=first.dtype, device=device_of(first))
        self.append(first)

    def append(self, y):
        self.rows[self.size, :] = y[:, 0]
        self.size += 1

    def last(self):
        return self.rows[self.size - 1, :][:, None]

    def project_out(self, y):
        """y minus its component in the span of the vectors.

        One classical Gram-Schmidt pass, and a second only where the first
        removed most of y (the "twice is enough" test of Kahan and Parlett,
        threshold 1/sqrt(2)): either way y ends orthogonal to working
        accuracy, which the Ritz value's lower bound needs. In the Lanczos
        recurrence y is nearly orthogonal already, so the second pass is
        rarely made.
        """
        xp, rows = self.xp, self.rows[: self.size, :]
        conj = xp.conj(rows) if xp.isdtype(rows.dtype, "complex floating") else rows
        before = frobenius_norm(xp, y)
        y = y - rows.T @ (conj @ y)
        if frobenius_norm(xp, y) < before / math.sqrt(2):
            y = y - rows.T @ (conj @ y)
        return y


def _breakdown(eps: float, size: int) -> float:
    """Relative size below which a Lanczos residual is rounding noise of the products."""
    return 64 * eps * math.sqrt(size)


def _largest_singular_value(alphas, betas) -> float:
    """sigma_max of the small bidiagonal B, in double and scaled to unit size."""
    size = max(alphas + betas)
    if size == 0.0:
        return 0.0
    k = len(alphas)
    B = np.diag(np.asarray(alphas) / size) + np.diag(np.asarray(betas[: k - 1]) / size, 1)
    return size * float(np.linalg.svd(B, compute_uv=False)[0])


def _bound_factor(n: int, steps: int, failure_probability: float, complex_: bool) -> float:
    """1 / sqrt(1 - eps) with P(lambda_q < (1 - eps) lambda_1) <= failure_probability.

    The bound on the failure probability (:func:`spectral_norm`, Notes) is
    at most p once sinh((2q - 1) atanh(sqrt(eps))) >= level, with level
    c_n / p for a real start and sqrt((n - 1) / p) for a complex one; then
    1 / sqrt(1 - eps) = cosh(atanh(sqrt(eps))) = cosh(asinh(level) / (2q - 1)).
    """
    if complex_:
        level = math.sqrt((n - 1) / failure_probability)
    else:
        # c = 2 Gamma(n/2) / (sqrt(pi) Gamma((n-1)/2)): twice the Student-t density at 0, times sqrt(n-1).
        c = 2.0 * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2)) / math.sqrt(math.pi)
        level = c / failure_probability
    return math.cosh(math.asinh(level) / (2 * steps - 1))


def _rounding_margin(op, steps: int) -> float:
    """Relative rounding error allowed for the computed Ritz value.

    Products with A are accurate to ~eps ||A||_2 per step (sqrt of the inner
    dimension in the worst case); bf16 and fp16 are multiplied in float32.
    """
    eps = float(op.xp.finfo(op.dtype).eps)
    return 8 * eps * math.sqrt(max(op.shape)) * steps


def spectral_norm(
    A, *, power_iters: int = 20, failure_probability: float = 1e-6, rng=None
) -> SpectralNormResult:
    """The spectral norm ||A||_2 = sigma_1(A) with a certified bracket.

    Parameters
    ----------
    A : matrix-like, shape (m, n)
        NumPy array, SciPy sparse, LinearOperator, torch tensor (dense or
        sparse, any device), CuPy array, Dask array or :class:`randla.Operator`.
        Never copied or densified.
    power_iters : int, default 20
        Lanczos steps q: products with A (and q - 1 with A^H), each with one
        vector. Fewer are made once the Krylov space is exhausted.
    failure_probability : float in (0, 1), default 1e-6
        The chance, over the random start, that ``upper_bound`` is below
        ||A||_2. The bound widens slowly as it shrinks: ``upper_bound`` is
        1.010 ``estimate`` at 0.1, 1.096 at 1e-6 (n = 200, 20 steps).
    rng : None, int, SeedSequence, BitGenerator or Generator
        Source of the start vector (SPEC 7); the same rng gives the same result.

    Returns
    -------
    SpectralNormResult
        ``estimate`` <= ||A||_2 always (up to rounding), and ``upper_bound``
        >= ||A||_2 with probability at least 1 - ``failure_probability``.

    Notes
    -----
    Lanczos on the short side's Gram matrix M = A^H A (A A^H for wide A, of
    order n = min(m, n)), run as Golub-Kahan bidiagonalisation with full
    reorthogonalisation, from a Gaussian start b. After q steps the largest
    Ritz value lambda_q is a Rayleigh quotient of M, so sqrt(lambda_q) <= ||A||_2.
    Passes over A: q with A and q - 1 with A^H, one vector each.

    Upper bound. For Lanczos on a symmetric positive definite M from a
    uniformly random start, [KW1992] bound the chance of failure,
    P(lambda_q < (1 - eps) lambda_1), by a multiple of
    sqrt(n) exp(-sqrt(eps) (2q - 1)). The bound used here has the same form
    with explicit constants, by this argument. With lambda_1 = 1 and t = (1 - eps) u^2, the polynomial
    p(t) = U_{2q-2}(u) (Chebyshev, second kind) has degree q - 1 and
    (1 - eps - t) p(t)^2 <= 1 - eps on [0, 1 - eps], so the Rayleigh quotient
    of p(M) b in the Krylov space falls below 1 - eps only if
    |b_1|^2 / (1 - |b_1|^2) < sinh((2q - 1) atanh(sqrt(eps)))^-2, b_1 being
    b's component on the top eigenvector. For a real Gaussian b that is the
    event |T| < sqrt(n - 1) / sinh(...), T Student-t with n - 1 degrees of
    freedom; for a complex one, |b_1|^2 is Beta(1, n - 1). So P(fail) is at most

        c_n / sinh((2q - 1) atanh(sqrt(eps)))           (real A),
        (n - 1) / sinh((2q - 1) atanh(sqrt(eps)))^2     (complex A),

    c_n = 2 Gamma(n/2) / (sqrt(pi) Gamma((n - 1)/2)) <= sqrt(2 (n - 1) / pi):
    slightly below KW1992's bound in every case tested. Solved for eps at
    ``failure_probability`` = p, ``upper_bound`` = estimate / sqrt(1 - eps)
    = estimate cosh(asinh(c_n / p) / (2q - 1)) for real A. The bound does not
    depend on the spectrum: 20 steps at p = 1e-6 give ``upper_bound`` =
    1.096 ``estimate`` for n = 200, 1.135 for n = 10^5. The estimate itself
    converges much faster: in 20 steps, to rounding on decaying spectra
    (n = 200 to 1000, tiny gaps sigma_1 - sigma_2 included), and to 1.2e-3
    where dozens of singular values crowd just below sigma_1.

    When the Krylov space is exhausted (A of low rank, or q = n) the estimate
    is exact up to rounding, and ``upper_bound`` only adds a rounding margin.
    That margin, 8 eps sqrt(max(m, n)) q relative, is in every ``upper_bound``.

    References
    ----------
    .. [KW1992] J. Kuczynski, H. Wozniakowski, "Estimating the largest
       eigenvalue by the power and Lanczos algorithms with a random start",
       SIAM J. Matrix Anal. Appl. 13(4), 1992, 1094-1122.

    Examples
    --------
    >>> import randla
    >>> A = randla.testing.planted(300, 200, "polynomial", rate=0.5, rng=0).A   # ||A||_2 = 1
    >>> r = randla.spectral_norm(A, rng=0)
    >>> round(r.estimate, 6), round(r.upper_bound, 3), r.power_iters
    (1.0, 1.096, 20)
    """
    op = as_operator(A)
    power_iters = check_int("power_iters", power_iters, 1)
    failure_probability = _check_probability(failure_probability)
    rng = check_rng(rng)
    if op.shape[0] < op.shape[1]:  # work on the short side: Lanczos on A A^H
        op = op.H
    alphas, betas, exhausted = _bidiagonalize(op, power_iters, rng)
    steps, n = len(alphas), op.shape[1]
    estimate = _largest_singular_value(alphas, betas)
    margin = 1.0 + _rounding_margin(op, steps)
    complex_ = op.xp.isdtype(_start_dtype(op), "complex floating")
    factor = 1.0 if exhausted else _bound_factor(n, steps, failure_probability, complex_)
    return SpectralNormResult(estimate, estimate * factor * margin, steps, failure_probability)


def stable_rank(
    A, *, power_iters: int = 20, failure_probability: float = 1e-6, rng=None
) -> StableRankResult:
    """The stable rank ||A||_F^2 / ||A||_2^2, bracketed.

    The stable rank lies in [1, rank(A)] and, unlike the rank, does not
    change under tiny perturbations: the number of directions that carry A's
    energy. It is a common diagnostic of trained weight matrices.

    Parameters
    ----------
    A : matrix-like, shape (m, n)
        As for :func:`spectral_norm`; its Frobenius norm must be known exactly
        (every explicit matrix: NumPy, SciPy sparse, torch, CuPy, Dask, and
        operators whose ``norm()`` returns it).
    power_iters, failure_probability, rng
        As for :func:`spectral_norm`.

    Returns
    -------
    StableRankResult
        ``estimate`` uses the spectral norm's estimate, a lower bound on
        ||A||_2, and so is an upper bound on the stable rank (up to
        rounding); ``lower_bound`` uses its ``upper_bound`` and holds with
        probability at least 1 - ``failure_probability``. Both are clipped to
        [1, min(m, n)], where the stable rank lies; the zero matrix has 0.

    Raises
    ------
    ValueError
        If ||A||_F is not known exactly (a ``LinearOperator``): an estimate of
        it would make the bracket a guess.

    Examples
    --------
    >>> import randla
    >>> A = randla.testing.planted(300, 200, "flat", rank=10, rng=0).A   # ten equal sigma
    >>> round(randla.stable_rank(A, rng=0).estimate, 6)
    10.0
    """
    op = as_operator(A)
    frobenius = op.norm()
    if frobenius is None:
        raise ValueError(
            f"stable_rank needs ||A||_F exactly, which a {type(A).__name__} does not provide here (a linear "
            "operator has no entries to sum; a residual A - L R far smaller than A loses its norm to rounding). "
            "Pass the matrix itself, or a randla.Operator subclass whose norm() returns ||A||_F."
        )
    spectral = spectral_norm(op, power_iters=power_iters, failure_probability=failure_probability, rng=rng)
    if spectral.estimate == 0.0:
        return StableRankResult(0.0, 0.0, frobenius, spectral)
    top = float(min(op.shape))
    estimate = min(max((frobenius / spectral.estimate) ** 2, 1.0), top)
    lower = min(max((frobenius / spectral.upper_bound) ** 2, 1.0), top)
    return StableRankResult(estimate, lower, frobenius, spectral)


def numerical_rank(A, eps: float, *, power_iters: int = 2, rng=None) -> int:
    """The number of singular values of A above eps ||A||_2.

    The counterpart of ``scipy.linalg.interpolative.estimate_rank``: a
    randomized SVD of rank k = 16, 32, 64, ... (doubling, so the work is at
    most about twice that of the final size) until fewer than k of its
    singular values exceed the threshold and the residual's spectral norm,
    estimated by :func:`randla.estimate_error`, is below it too.

    ||A||_2 in the threshold is the larger of two lower bounds on it: the
    Lanczos estimate of :func:`spectral_norm` and the largest randomized
    singular value s_1, which the subspace iterations make exact to rounding
    once the basis holds the top of the spectrum (the Lanczos estimate alone
    was 2.4e-4 low on 60 values crowded at the top, and 10 values 5e-5 below
    eps ||A||_2 were counted). Randomized singular values s_i never exceed
    the true ones sigma_i, so the count errs in two ways only:

    - short, by s_i within sqrt(threshold^2 - error^2) and the threshold, as
      sigma_i^2 <= s_i^2 + error^2 (slow decay: the first SVDs left out 6 of
      100 on sigma_i = i^(-1/2));
    - over, by sigma_i between the threshold and eps ||A||_2: within the
      relative error of the lower bound on ||A||_2, rounding once s_1 has
      converged. As ||A||_2 <= hypot(s_1, error), only s_i between the
      threshold and eps hypot(s_1, error) can be such values.

    Where some s_i lie in either band, the SVD is repeated with twice the
    subspace iterations (which also tightens s_1), and again, until the count
    stops changing (at most 64 iterations); that count is returned. Both
    bands rest on ``error``, an estimate from below, so neither is certain:
    the count is exact where no singular value lies within that estimate's
    error of the bands.

    Parameters
    ----------
    A : matrix-like, shape (m, n)
        Anything :func:`randla.svd` takes; never copied or densified.
    eps : float in (0, 1)
        The threshold relative to ||A||_2. It should lie above the
        precision of A's dtype times about sqrt(max(m, n)); below that the
        count reads rounding noise.
    power_iters : int, default 2
        Subspace iterations of the SVDs that find the size; the refinement
        of the count doubles them.
    rng : None, int, SeedSequence, BitGenerator or Generator

    Returns
    -------
    int
        0 for the zero matrix.

    Examples
    --------
    >>> import randla
    >>> A = randla.testing.low_rank(300, 200, rank=12, noise=1e-8, rng=0)
    >>> randla.numerical_rank(A, 1e-6, rng=0)
    12
    """
    if not (isinstance(eps, numbers.Real) and not isinstance(eps, bool) and 0.0 < eps < 1.0):
        raise ValueError(f"`eps` must be a float in (0, 1), the threshold relative to ||A||_2; got {eps!r}.")
    op, rng = as_operator(A), check_rng(rng)
    power_iters = check_int("power_iters", power_iters, 0)
    # Lanczos's estimate is a lower bound on ||A||_2, but on a crowded top spectrum
    # it is ~1e-3 low: a threshold from it alone counted values just below eps ||A||_2.
    norm = spectral_norm(op, rng=rng).estimate
    if eps * norm == 0.0:
        return 0
    limit = min(op.shape)
    k = min(16, limit)
    while True:
        result = svd(op, k, power_iters=power_iters, rng=rng)
        S = to_numpy(result.S)
        # s_1 <= ||A||_2 as well, and the subspace iterations make it the tighter bound.
        norm = max(norm, float(S[0]))
        threshold = eps * norm
        count = int(np.count_nonzero(S > threshold))
        if k == limit:
            return count  # the sketch spans the short side: the values are exact
        if count < k:
            error = estimate_error(op, result, power_iters=10, rng=rng)
            if error <= threshold:
                break
        k = min(2 * k, limit)
    # sigma_i^2 <= s_i^2 + error^2 (Weyl: the part of A outside the basis is orthogonal to it),
    # so only values s_i in (sqrt(threshold^2 - error^2), threshold] may hide one above it; and
    # ||A||_2 <= hypot(s_1, error) <= hypot(norm, error), so only values in (threshold,
    # eps hypot(norm, error)] may be counted for one below it. Ratios, not squares: the
    # squares leave the float range beyond ~1e154.
    hidden = threshold * math.sqrt(1.0 - (error / threshold) ** 2)
    uncertain = eps * math.hypot(norm, error)
    if not np.any((S > hidden) & (S <= uncertain)):
        return count
    iterations = max(power_iters, 1)
    while iterations < _MAX_REFINING_ITERATIONS:
        iterations *= 2
        refined = to_numpy(svd(op, k, power_iters=iterations, rng=rng).S)
        norm = max(norm, float(refined[0]))
        previous, count = count, int(np.count_nonzero(refined > eps * norm))
        if count == previous:
            break
    return count
