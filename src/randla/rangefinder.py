"""The engine: an orthonormal basis Q for the dominant range of A.

Every decomposition in randla calls one of these range finders and then
solves a small problem on Q^H A [HMT2011, Sec. 1.3]:

- :func:`subspace_iteration` - a fixed-size basis, with ``power_iters``
  passes of A A^H and a cheap normaliser between them [HMT2011, Alg. 4.3/4.4];
- :func:`block_krylov` - the block Krylov space of A A^H, which reaches a
  given accuracy in fewer passes on slowly decaying spectra (Musco & Musco
  2015, Alg. 2);
- :func:`adaptive_qb` - a basis grown block by block until
  ||A - Q Q^H A||_F <= tol ||A||_F, with the error indicator of randQB_EI
  (Yu, Gu & Li 2018, Alg. 2);
- :func:`estimate_error` and :func:`posterior_error_bound` - a posteriori
  checks of an approximation that never form its residual.

All work outside the products with A is on blocks of l columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import check_choice, check_int, check_rng
from .backend import (
    NORMALIZERS,
    conj_transpose,
    finfo_eps,
    frobenius_norm,
    namespace,
    normalize,
    orthonormalize,
    probe_generator,
    standard_normal,
    to_numpy,
)
from .operators import Operator, as_operator, residual
from .operators.composites import check_block
from .sketch import SKETCHES, Sketch, draw_sketch, identity_sketch

__all__ = [
    "auto_power_iters",
    "subspace_iteration",
    "block_krylov",
    "adaptive_qb",
    "AdaptiveBasis",
    "estimate_error",
    "posterior_error_bound",
    "draw_for",
    "check_finite",
    "checked_product",
    "indicator_floor",
    "NORMALIZERS",
    "SKETCHES",
]


def auto_power_iters(sketch_size: int, shape, method: str = "rsi") -> int:
    """The ``power_iters="auto"`` rule of randla: 4 passes of A A^H, 2 for block
    Krylov, none where the sketch has ``min(shape)`` columns.

    Convergence is slowest when the gap sigma_{k+1} / sigma_{l+1} is small,
    that is for slowly decaying spectra at large ranks with l = k + 10. On
    sigma_i = i^-1/2 and on every weight matrix of a pretrained transformer
    (MiniLM) at half its rank, 4 passes of subspace iteration keep
    ||A - A_k||_2 <= 1.09 sigma_{k+1} where 3 reach 1.11 and 2 reach 1.16
    (bench/results/svd.md). Block Krylov keeps every pass in its basis and
    reaches 1.01 with 2. Small ranks, where the gap is wider, converge
    sooner; ask for fewer passes when speed matters more than the last few
    percent. A sketch of min(m, n) columns already spans A's range (the
    identity is drawn where l = n): passes would only repeat it, 3-4x slower.
    """
    if sketch_size >= min(shape):
        return 0
    return 2 if method == "block_krylov" else 4


def draw_for(op: Operator, sketch: str, l: int, rng: np.random.Generator) -> Sketch:
    """A test matrix for the columns of ``op``, on its device and in its dtype.

    With as many columns as A (l = n), the identity: A's own columns span
    its range exactly, which a square random matrix need not (a +-1 matrix
    of size 10 is singular about one time in three).
    """
    n = op.shape[1]
    if l == n:
        return identity_sketch(n, xp=op.xp, dtype=op.dtype, device=op.device)
    return draw_sketch(sketch, n, l, xp=op.xp, dtype=op.dtype, device=op.device, rng=rng)


def check_finite(xp, Y):
    """Raise if a sketch of A is not finite: every entry of A reaches it."""
    if not bool(xp.all(xp.isfinite(Y))):
        raise ValueError(
            "A contains NaN or Inf (or values so large that A @ x overflows). "
            "Remove or impute them first, e.g. numpy.nan_to_num(A)."
        )
    return Y


def checked_product(product, X):
    """product(X), a product with A, checked by :func:`check_finite`.

    Inf in A turns into NaN inside a product (Inf * 0, Inf - Inf), which
    NumPy reports first with a RuntimeWarning; the ValueError says it better.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        Y = product(X)
    return check_finite(namespace(Y), Y)


def subspace_iteration(
    op: Operator,
    omega: Sketch,
    *,
    power_iters: int,
    normalizer: str = "auto",
):
    """Orthonormal Q (m, l) with range(Q) ~ range((A A^H)^q A Omega).

    The randomized subspace iteration of [HMT2011, Alg. 4.4], with the
    Householder QR between passes replaced by ``normalizer`` (any map that
    keeps the range and fixes the scaling is enough there; only the final
    basis must be orthonormal). With ``normalizer="none"`` this is the
    randomized power iteration of [HMT2011, Alg. 4.3].

    Passes over A: ``power_iters + 1`` with A and ``power_iters`` with A^H.
    """
    xp = op.xp
    Y = checked_product(omega.apply, op)
    for _ in range(power_iters):
        Z = op.rmatmat(normalize(xp, Y, normalizer))
        Y = op.matmat(normalize(xp, Z, normalizer))
    return orthonormalize(xp, Y)


def _project_out(xp, Q, Y):
    """Y minus its component in range(Q), by classical Gram-Schmidt twice."""
    for _ in range(2):
        Y = Y - Q @ (conj_transpose(xp, Q) @ Y)
    return Y


def block_krylov(op: Operator, omega: Sketch, *, power_iters: int):
    """Orthonormal basis of the block Krylov space
    K = [A Omega, (A A^H) A Omega, ..., (A A^H)^q A Omega].

    Randomized block Krylov iteration (Musco & Musco 2015, Alg. 2): each new
    block is orthogonalised against all earlier ones (block Lanczos with full
    reorthogonalisation), so the basis stays well conditioned as the blocks
    converge. The basis has l (q + 1) columns, or min(m, n) if that is fewer
    (they span all of A's range then: more would be noise).

    Passes over A: ``power_iters + 1`` with A and ``power_iters`` with A^H,
    each on l columns (fewer when the range is spanned early).
    """
    xp = op.xp
    block = orthonormalize(xp, checked_product(omega.apply, op))
    Q = block
    for _ in range(power_iters):
        if Q.shape[1] >= min(op.shape):
            break
        # Rescaling A^H block keeps the Krylov space; without it Y grows as
        # sigma^2 and its Gram matrix overflows for large-magnitude A.
        Y = op.matmat(normalize(xp, op.rmatmat(block), "none"))
        # No more columns than the range has room for: beyond, they would be noise.
        block = orthonormalize(xp, _project_out(xp, Q, Y))[:, : min(op.shape) - Q.shape[1]]
        Q = xp.concat([Q, block], axis=1)
    # Once the Krylov space stops growing (A of low rank), new blocks are
    # rounding noise; one more QR keeps the whole basis orthonormal anyway.
    return orthonormalize(xp, Q)


@dataclass(frozen=True)
class AdaptiveBasis:
    """Result of :func:`adaptive_qb`: A ~ Q W^H with W = A^H Q.

    ``error`` is the relative Frobenius error ||A - Q Q^H A||_F / ||A||_F
    and ``norm`` is ||A||_F (both exact up to rounding when ``exact_norm``,
    else randomized estimates); ``converged`` says whether it reached the
    tolerance. ``error_bound`` and ``norm_bound`` are the same with the
    probed residual at its upper confidence bound (:func:`probe_estimate`),
    what convergence is decided on; equal to ``error`` and ``norm`` when
    ``exact_norm``.
    """

    Q: object
    W: object
    error: float
    converged: bool
    exact_norm: bool
    norm: float
    error_bound: float
    norm_bound: float


def adaptive_qb(
    op: Operator,
    tol: float,
    *,
    block_size: int,
    max_rank: int,
    power_iters: int,
    sketch: str,
    normalizer: str,
    rng: np.random.Generator,
) -> AdaptiveBasis:
    """Grow Q block by block until ||A - Q Q^H A||_F <= tol ||A||_F.

    randQB_EI (Yu, Gu & Li 2018, Alg. 2): the squared error is
    ||A||_F^2 - ||Q^H A||_F^2, updated with each block at no extra pass
    (when ||A||_F is known exactly; it is for every explicit matrix). Each
    block gets ``power_iters`` passes against the deflated operator
    A - Q Q^H A, and is reorthogonalised against the basis.

    When A does not know its Frobenius norm (a LinearOperator), the fresh
    sketch of each block gives an estimate of ||(I - Q Q^H) A||_F^2 that is
    unbiased [Gaussian trace estimation, HMT2011 Sec. 4.3], and ||A||_F^2 is
    that plus ||Q^H A||_F^2 = ||W||_F^2, which is known exactly. Convergence
    is decided on an upper confidence bound of that estimate
    (:func:`probe_estimate`), so that ``converged`` means the tolerance is
    met with high probability (the point estimate alone passed it about
    half the time where the error sat just under tol). Blocks narrower than
    ``MIN_PROBES`` are topped up with Gaussian probes for that bound.

    Where ``op.norm()`` is a difference of larger terms (A + L R, a centred
    A), its square is off by 2 ``op.norm_error()``; where that is over 1% of
    tol^2, the norm is treated as unknown and the residual probed.

    The indicator subtracts nearly equal numbers. In float64 its square is
    off by up to ~2 eps (rounding of the products with A and of Q's
    orthonormality): the estimate holds to ~3% at tol = 1e-7 and is lost
    near sqrt(eps) = 1.5e-8. Single and half precision keep the accounts in
    double (norms, and Q's column lengths): what is left is the rounding of
    the float32 products A^H Q, up to ~eps/4, so the estimate holds to ~1% at
    tol = 1e-3 and ~15% at 3e-4 (float32's sqrt(eps) is 3.5e-4).

    Squared errors are kept relative to ||A||_F^2 and every norm is taken
    with scaling, so the indicator holds at any scale of A: squares of A's
    own size leave the float range beyond ~1e154 (float64) or ~1e19 (float32).

    Where tol^2 is below that rounding (:func:`indicator_floor`), an
    indicator at or under tol^2 reads rounding, not a certified error: the
    basis then grows until a block finds only rounding (or the cap), and
    ``converged`` stays False; ``error`` is the indicator's reading, which
    rounding may hide up to sqrt(floor).
    """
    xp = op.xp
    m, n = op.shape
    norm = op.norm()
    target = tol**2
    if norm is not None and target < 100 * 2 * op.norm_error():
        # ||A||_F as a difference of larger terms (A + L R, a centred A) is
        # known only to op.norm_error(), and the indicator, which subtracts
        # from its square, would read that as error (a residual's 1.4e-6 as
        # 0 at tol = 1e-6). The residual is probed instead, as for a
        # LinearOperator: products see no such cancellation.
        norm = None
    exact = norm is not None
    floor = indicator_floor(xp, op.dtype)
    # Below the floor a clipped indicator of 0 would stop at the first block
    # and claim tol: exact low-rank float32 A gave 32 columns, converged, error 0.
    resolved = target >= floor
    # A real A with a complex shift has a real dtype and complex products.
    dtype = op.dtype if op._is_real() or xp.isdtype(op.dtype, "complex floating") else _complex(xp, op.dtype)
    Q = xp.zeros((m, 0), dtype=dtype, device=op.device)
    W = xp.zeros((n, 0), dtype=dtype, device=op.device)
    remaining = 0.0 if norm == 0 else 1.0  # ||A - Q Q^H A||_F^2 / ||A||_F^2
    bound, norm_bound = remaining, norm  # the same, with the probed residual at its upper bound
    captured, scale = 0.0, 0.0  # ||Q^H A||_F^2 / scale^2; scale: the first probe (no ||A||_F)
    converged = False
    while Q.shape[1] < max_rank:
        b = min(block_size, max_rank - Q.shape[1])
        omega = draw_for(op, sketch, b, rng)
        # Sketch of the residual: (A - Q W^H) Omega.
        Y = checked_product(omega.apply, op) - Q @ (conj_transpose(xp, W) @ xp.astype(omega.dense(), dtype))
        if not exact:
            probe, upper = _probe_residual(op, Q, W, dtype, Y, omega, rng)
            if Q.shape[1] == 0:
                # The first probe sees A itself: it sets the scale. Even a zero
                # A gets its first block, as when ||A||_F is known.
                norm = norm_bound = scale = probe
            else:
                remaining, norm = _split_estimate(probe, captured, scale)
                bound, norm_bound = _split_estimate(upper, captured, scale)
                if bound <= target:
                    converged = True
                    break
        for _ in range(power_iters):
            Yn = normalize(xp, Y, normalizer)
            Z = op.rmatmat(Yn) - W @ (conj_transpose(xp, Q) @ Yn)
            Zn = normalize(xp, Z, normalizer)
            Y = op.matmat(Zn) - Q @ (conj_transpose(xp, W) @ Zn)
        block = orthonormalize(xp, _project_out(xp, Q, Y))
        Wb = op.rmatmat(block) - W @ (conj_transpose(xp, Q) @ block)
        share = _captured(xp, block, Wb, norm) if exact else 0.0
        if exact and Q.shape[1] and share <= 1e-3 * floor:
            # The block found only rounding (a thousandth of what the indicator
            # resolves): more blocks would add rounding up to min(m, n) columns
            # (an exactly low-rank A at tol ~ sqrt(eps)).
            break
        Q = xp.concat([Q, block], axis=1)
        W = xp.concat([W, Wb], axis=1)
        if exact:
            remaining = max(remaining - share, 0.0)
            if remaining <= target and resolved:
                converged = True
                break
        elif scale > 0:
            captured += _relative_square(frobenius_norm(xp, Wb), scale)
    if exact and not converged and Q.shape[1] == min(m, n) and tol >= math.sqrt(min(m, n)) * finfo_eps(xp, op.dtype):
        # A basis of the whole short side leaves only its QR's rounding, ~eps sqrt(min(m, n)): tol is met.
        converged = True
    if not exact and not converged:
        # The last probe saw the basis before its last block; probe the final one.
        omega = draw_for(op, sketch, block_size, rng)
        Y = omega.apply(op) - Q @ (conj_transpose(xp, W) @ xp.astype(omega.dense(), dtype))
        probe, upper = _probe_residual(op, Q, W, dtype, Y, omega, rng)
        remaining, norm = _split_estimate(probe, captured, scale)
        bound, norm_bound = _split_estimate(upper, captured, scale)
        converged = bound <= target
    if exact:
        bound, norm_bound = remaining, norm
    return AdaptiveBasis(Q, W, math.sqrt(remaining), converged, exact, norm, math.sqrt(bound), norm_bound)


def _complex(xp, dtype):
    """The complex dtype of a real one's precision."""
    return xp.complex128 if xp.finfo(dtype).bits >= 64 else xp.complex64


def indicator_floor(xp, dtype) -> float:
    """How far the squared relative error indicator of :func:`adaptive_qb` is off by rounding.

    ~2 eps in float64; single and half precision keep the accounts in double,
    which leaves ~eps / 4 (see :func:`adaptive_qb`).
    """
    eps = finfo_eps(xp, dtype)
    return 2 * eps if xp.finfo(dtype).bits >= 64 else eps / 4


def _captured(xp, block, Wb, norm: float) -> float:
    """The share of ||A||_F^2 that a new block of Q, with Wb = A^H block, removes.

    ||A - Q W^H||_F^2 = ||A||_F^2 - 2 ||W||_F^2 + tr(Q^H Q W^H W), so a column
    q of squared length 1 + e removes (1 - e) ||A^H q||^2, not ||A^H q||^2.
    QR in float32 leaves e ~ 1e-7, biased: over a basis of hundreds of columns
    that is the whole budget at tol = 3e-4 (counted as 0, the indicator
    declared 3e-4 met where the error was 4.3e-4). The off-diagonal of Q^H Q
    cancels out on average. Lengths are taken in double, exact for float32;
    float64 has no wider type to take them in, and there e is left out.
    """
    if not norm > 0 or xp.finfo(Wb.dtype).bits >= 64:
        return _relative_square(frobenius_norm(xp, Wb), norm)
    double = xp.complex128 if xp.isdtype(Wb.dtype, "complex floating") else xp.float64
    lengths = xp.linalg.vector_norm(xp.astype(block, double), axis=0) ** 2
    shares = xp.linalg.vector_norm(xp.astype(Wb, double) / norm, axis=0) ** 2
    return float(xp.sum((2.0 - lengths) * shares))


def _relative_square(part: float, whole: float) -> float:
    """(part / whole)^2, with 0 / 0 = 0: the zero matrix is matched exactly."""
    if whole > 0:
        ratio = part / whole
        return ratio * ratio
    return 0.0 if part == 0 else math.inf


def _split_estimate(probe: float, captured: float, scale: float) -> tuple[float, float]:
    """||A - Q Q^H A||_F^2 / ||A||_F^2 and ||A||_F from a probe of the residual.

    ||A||_F^2 = ||Q^H A||_F^2 + ||A - Q Q^H A||_F^2, and the first part
    (``captured``, relative to ``scale``^2) is exact: only the residual is
    left to the probe. Estimating all of ||A||_F from the first probe instead
    put its noise (~8% on slowly decaying spectra) straight into the error.
    """
    if scale == 0:
        return _relative_square(probe, scale), 0.0
    rest = _relative_square(probe, scale)
    total = captured + rest
    return (rest / total if total > 0 else 0.0), scale * math.sqrt(total)


#: Standard errors added to a probed ||A||_F^2 for its upper confidence bound:
#: one-sided, about 2.3% under a normal approximation of the mean of the probes.
CONFIDENCE_Z = 2.0
#: Fewest probe columns the bound is taken from: the spread of fewer is itself
#: too noisy (at 2 columns, tol failed in 25 of 40 runs where it claimed to hold).
MIN_PROBES = 16


def probe_estimate(xp, parts) -> tuple[float, float]:
    """||A||_F from sketches Y = A Omega and an upper confidence bound on it.

    ``parts``: pairs (Y, Omega). Each column of each Omega (l columns, with
    E[Omega Omega^H] = c I, :func:`_gram_scale`) gives its own unbiased
    estimate l ||A omega_j||^2 / c of ||A||_F^2 [HMT2011, Sec. 4.3]; the
    estimate is their mean (for one part, ||Y||_F^2 / c), and the bound adds
    ``CONFIDENCE_Z`` standard errors of that mean, from the spread of the values. A
    single column has no spread: there the bound takes the largest Gaussian
    variance, 2 ||A||_F^4 (A of rank 1), instead. Lengths are taken in units
    of the largest entry and squared relative to the largest length, so no
    square leaves the float range.
    """
    roots = []
    for Y, omega in parts:
        unit = float(xp.max(xp.abs(Y))) or 1.0  # squares of entries near 1e160 overflow, near 1e-160 vanish
        lengths = np.asarray(to_numpy(xp.linalg.vector_norm(Y / unit, axis=0)), dtype=np.float64) * unit
        roots.append(lengths * math.sqrt(Y.shape[1] / _gram_scale(omega)))
    roots = np.concatenate(roots)
    top = float(roots.max(initial=0.0))
    if top == 0:
        return 0.0, 0.0
    values = (roots / top) ** 2
    mean = float(np.mean(values))
    estimate = top * math.sqrt(mean)
    spread = math.sqrt(2.0) if values.size < 2 else float(np.std(values, ddof=1)) / math.sqrt(values.size) / mean
    return estimate, estimate * math.sqrt(1.0 + CONFIDENCE_Z * spread)


def _probe_residual(op: Operator, Q, W, dtype, Y, omega: Sketch, rng) -> tuple[float, float]:
    """:func:`probe_estimate` of ||A - Q W^H||_F from a block's sketch Y = (A - Q W^H) Omega, topped up
    to ``MIN_PROBES`` columns with Gaussian probes of their own (a product of as many columns more)."""
    xp = op.xp
    parts = [(Y, omega)]
    extra = MIN_PROBES - Y.shape[1]
    if extra > 0:
        probes = draw_sketch("gaussian", op.shape[1], extra, xp=xp, dtype=op.dtype, device=op.device, rng=rng)
        G = xp.astype(probes.dense(), dtype)
        parts.append((checked_product(op.matmat, G) - Q @ (conj_transpose(xp, W) @ G), probes))
    return probe_estimate(xp, parts)


def _gram_scale(omega: Sketch) -> float:
    """c with E[Omega Omega^H] = c I, for the trace estimate ||A Omega||_F^2 / c."""
    return float(omega.shape[1]) if omega.kind in ("gaussian", "rademacher") else 1.0


def estimate_error(A, approx, *, power_iters: int = 20, block_size: int | None = None, rng=None) -> float:
    """Spectral norm of the residual ||A - A_hat||_2 of a low-rank approximation.

    Block power iteration on the implicit residual operator A - L R (fbpca's
    ``diffsnorm``); the residual is never formed, so this works on sparse and
    implicit matrices of any size. The value is a lower bound on the true
    norm that converges to it; 20 passes give a few digits on typical
    spectra.

    Parameters
    ----------
    A : matrix-like
        The matrix that was approximated.
    approx : a randla result, or a pair (L, R) with A_hat = L @ R
        Any result with ``factors()`` (:func:`randla.svd`, :func:`randla.qb`,
        :func:`randla.eigh`, :func:`randla.nystrom`, :func:`randla.pca`, with
        its mean, :func:`randla.interpolative`, :func:`randla.cur`,
        :func:`randla.rpcholesky`, ...).
    power_iters : int, default 20
        Passes of the residual and its adjoint.
    block_size : int, optional
        Number of random start vectors; default min(4, n).
    rng : None, int, SeedSequence, BitGenerator or Generator
        Source of the start vectors; the same rng gives the same value. They come from a stream
        derived from ``rng`` and kept apart from the sketches, so the seed that built ``approx``
        can be passed again: its sketch, which the approximation captures exactly, would make
        the first iterate read a residual of zero.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np, randla
    >>> A = randla.testing.low_rank(200, 100, rank=5, rng=0)
    >>> r = randla.svd(A, 5, rng=0)
    >>> bool(randla.estimate_error(A, r, rng=0) < 1e-8 * np.linalg.norm(A, 2))
    True
    """
    op = as_operator(A)
    power_iters = check_int("power_iters", power_iters, 1)
    if block_size is None:
        block_size = min(4, op.shape[1])
    block_size = check_int("block_size", block_size, 1, op.shape[1])
    if hasattr(approx, "factors"):
        L, R = approx.factors()
    elif isinstance(approx, (tuple, list)) and len(approx) == 2:
        L, R = approx
    else:
        raise TypeError(
            "approx must be a randla result with factors() (of svd, qb, eigh, nystrom, pca, interpolative, "
            f"cur, rpcholesky, ...) or a pair (L, R) with A_hat = L @ R; got {type(approx).__name__}. "
            "For any other B, ||A - B||_2 is randla.spectral_norm(aslinearoperator(A) - aslinearoperator(B)) "
            "(scipy.sparse.linalg.aslinearoperator)."
        )
    res = residual(op, L, R)
    xp = res.xp
    X = standard_normal(xp, (op.shape[1], block_size), res.dtype, res.device, probe_generator(check_rng(rng)))
    sigma = 0.0
    for _ in range(power_iters):
        X = orthonormalize(xp, X)
        Y = checked_product(res.matmat, X)
        # ||res X||_2 for orthonormal X is a lower bound on ||res||_2.
        sigma = max(sigma, float(xp.linalg.matrix_norm(Y, ord=2)))
        # Both sides rescaled: res^H Y ~ sigma^2 overflows or underflows for
        # A far from unit scale, and so would the Gram matrix of X.
        X = normalize(xp, res.rmatmat(normalize(xp, Y, "none")), "none")
        if float(xp.max(xp.abs(X))) == 0.0:
            break
    return sigma


def posterior_error_bound(A, Q, *, probes: int = 10, rng=None) -> float:
    """Probabilistic upper bound on ||(I - Q Q^H) A||_2 from a few products.

    With r Gaussian probes w_i, ||(I - Q Q^H) A||_2 <= 10 sqrt(2/pi)
    max_i ||(I - Q Q^H) A w_i|| with probability at least 1 - 10^-r
    [HMT2011, Sec. 4.3, Eq. (4.3)]. Costs ``probes`` columns of one product.
    ``Q`` is an orthonormal basis (m, l) in A's library, or a result of
    :func:`randla.qb`.

    The bound needs probes independent of Q. They are drawn from a stream
    derived from ``rng`` and kept apart from the sketches of every
    decomposition, so the seed that built Q can be passed again: drawn the
    way a sketch is, they would be the very sketch Omega that Q spans
    A Omega of, and the "bound" would be rounding noise (3.5e-14 for a true
    error of 0.61). The same rng gives the same bound.

    Parameters
    ----------
    A : matrix-like, shape (m, n)
    Q : (m, l) array with orthonormal columns, or a :class:`QBResult`
    probes : int, default 10
        r, the number of Gaussian probes: the bound fails with probability
        at most 10^-r.
    rng : None, int, SeedSequence, BitGenerator or Generator

    Returns
    -------
    float
        The bound on the spectral norm ||A - Q Q^H A||_2.
    """
    op = as_operator(A)
    probes = check_int("probes", probes, 1)
    Q = check_block(op, Q.Q if hasattr(Q, "Q") else Q, "Q")
    if Q.shape[0] != op.shape[0]:
        raise ValueError(
            f"Q must have A's {op.shape[0]} rows (a basis of A's range, as randla.qb returns); "
            f"got shape {tuple(Q.shape)}."
        )
    xp = op.xp
    omega = standard_normal(xp, (op.shape[1], probes), op.dtype, op.device, probe_generator(check_rng(rng)))
    # One dtype for both sides: a half-precision Q meets A's float32 products.
    dtype = xp.result_type(op.dtype, Q.dtype)
    Y = xp.astype(checked_product(op.matmat, omega), dtype, copy=False)
    Q = xp.astype(Q, dtype, copy=False)
    Y = Y - Q @ (conj_transpose(xp, Q) @ Y)
    largest = max(frobenius_norm(xp, Y[:, j]) for j in range(probes))
    return 10.0 * math.sqrt(2.0 / math.pi) * largest


def check_normalizer(normalizer) -> str:
    return check_choice("normalizer", normalizer, NORMALIZERS)


def check_sketch(sketch) -> str:
    return check_choice("sketch", sketch, SKETCHES)
