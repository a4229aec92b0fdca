"""Landmark (column) selection and column Nystrom approximation of PSD matrices.

A column Nystrom approximation of a positive semidefinite K (a kernel matrix)
keeps k of its columns, the landmarks S, and approximates
K ~ K[:, S] K[S, S]^+ K[S, :]. It needs n k entries of K, never all n^2,
and the choice of S decides its accuracy:

- :func:`rpcholesky` - randomly pivoted Cholesky: each landmark is drawn
  with probability proportional to the residual diagonal (CETW2024); the
  method of choice, near-optimal in the trace norm;
- :func:`landmarks` - the same result from any of ``"rpcholesky"``,
  ``"greedy"`` (pivoted Cholesky), ``"uniform"``, ``"kmeans++"`` (D^2
  sampling in feature space) and ``"leverage"`` (approximate ridge leverage
  scores);
- :func:`column_nystrom` - the approximation as an eigendecomposition
  K ~ U diag(S) U^T.

All return the factor F (n, k) with K ~ F F^T, computed as a partial
Cholesky factor, and the exact trace error tr(K - F F^T).

References
----------
[CETW2024] Y. Chen, E. N. Epperly, J. A. Tropp, R. J. Webber. Randomly
pivoted Cholesky: Practical approximation of a kernel matrix with few entry
evaluations. Comm. Pure Appl. Math. (2024).
[ETW2024] E. N. Epperly, J. A. Tropp, R. J. Webber. Embrace rejection:
Kernel matrix approximation by accelerated randomly pivoted Cholesky (2024).
[AM2015] A. Alaoui, M. W. Mahoney. Fast randomized kernel ridge regression
with statistical guarantees. NeurIPS (2015).
[MM2017] C. Musco, C. Musco. Recursive sampling for the Nystrom method.
NeurIPS (2017).
[AV2007] D. Arthur, S. Vassilvitskii. k-means++: the advantages of careful
seeding. SODA (2007).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._validate import check_choice, check_int, check_rng
from ..backend import device_of, to_numpy
from .nystrom_columns import (
    ColumnNystromResult,
    Factorization,
    PartialCholesky,
    _host64,
    as_psd,
    check_block_size,
    check_rank_tol,
)

__all__ = ["rpcholesky", "landmarks", "column_nystrom", "METHODS"]

METHODS = ("rpcholesky", "uniform", "greedy", "kmeans++", "leverage")

#: Landmarks absorbed at a time by the sampling methods under a tolerance:
#: the count overshoots the tolerance by fewer than this.
_TOL_BLOCK = 16


def rpcholesky(
    K,
    rank: int | None = None,
    *,
    tol: float | None = None,
    block_size: int | None = None,
    accelerated: bool = True,
    candidates: int = 1,
    rng=None,
) -> PartialCholesky:
    """Randomly pivoted Cholesky: a near-optimal column Nystrom approximation K ~ F F^T.

    Parameters
    ----------
    K : KernelOperator or dense array, shape (n, n), positive semidefinite
        A square :func:`~randla.kernels.kernel_operator`, or a NumPy array or
        torch tensor (any device).
    rank : int, optional
        Number of landmarks k (at most n; a larger value is capped at n).
    tol : float in (0, 1), optional
        Stop as soon as tr(K - F F^T) <= tol * tr(K). At least one of
        ``rank`` and ``tol`` is required; with both, whichever comes first.
    block_size : int, optional
        With ``accelerated=True``, the number of proposals per round,
        default max(10, ceil(k / 10)) (at most 256). Otherwise the pivots
        drawn per round: default 1 (the sequential algorithm); larger blocks
        draw that many pivots at once from the same residual, trading a
        little accuracy for block operations.
    accelerated : bool, default True
        Accelerated RPCholesky [ETW2024]: each round's b proposals are
        screened by rejection sampling on their b x b block of K before any
        column is evaluated. The accepted pivots have exactly the
        distribution of the sequential algorithm, and their columns are
        evaluated and absorbed together as one block: the same result in
        law, several times faster (measured 2.8x at n = 10^4, k = 2000).
        ``False``: the sequential algorithm itself.
    candidates : int, default 1
        Proposals per landmark. With c > 1, each round draws c b proposals
        as RPCholesky does, evaluates all their columns, and keeps the b
        that remove the most trace, one after the other (b = ``block_size``,
        default as for ``accelerated``). This costs c times the entries of
        K and buys a smaller trace error at the same landmark count where
        plain RPCholesky spends landmarks on isolated points: on isotropic
        Gaussian data (d = 10), uniform sampling beats plain RPCholesky by
        3-8% and c = 2 beats uniform by 5-8% (bench/results/kernels.md).
        ``accelerated`` does not apply.
    rng : None, int, SeedSequence, BitGenerator or Generator
        Randomness (SPEC 7).

    Returns
    -------
    PartialCholesky
        Unpacks as ``indices, factor``; also ``trace_error`` (exact),
        ``converged`` (False where ``tol`` was not met) and ``eig()`` for
        the eigendecomposition.

    Notes
    -----
    Each step draws a pivot s with probability d_s / sum(d), d the diagonal
    of the residual K - F F^T, evaluates the column K[:, s] and appends the
    Cholesky column (K[:, s] - F F[s]^T) / sqrt(d_s) to F
    [CETW2024, Alg. 1]. Cost: (k + 1) n entries of K (the diagonal, then
    one column per landmark), O(n k^2) arithmetic and O(n k) memory (F is
    n x k). A callable kernel of blocks has no cheaper diagonal: it is
    evaluated as k(A_b, A_b) for blocks A_b of 256 points, keeping only
    their diagonals, which costs about 256 n entries (so about (k + 256) n
    in all); a callable of two points costs n calls for it. In expectation
    the trace error is within (1 + eps) of the best rank-r error
    tr(K - [K]_r) once k >= r / eps + r log(1 / (eps eta)),
    eta = tr(K - [K]_r) / tr(K) [CETW2024].

    Blocks (``block_size`` b > 1): b pivots are drawn i.i.d. from the same
    residual, repeats are merged, and the b x b residual block is factored
    with complete pivoting stopped at the rounding level, so that a pivot
    already spanned by the others in its block is rejected instead of
    inverted (block RPCholesky [CETW2024, Alg. 2]).

    Accelerated: per round, b^2 entries for the proposals' block and n per
    accepted pivot; the small rejection-sampling Cholesky costs O(b^3).

    A pivot whose residual is at the rounding level (about
    3 max(100, k) eps max K_ii) is never used: for an exactly low-rank K the
    algorithm stops with the rank it found, F F^T = K to rounding.

    Examples
    --------
    >>> import numpy as np
    >>> from randla.kernels import kernel_operator, rpcholesky
    >>> X = np.random.default_rng(0).standard_normal((500, 3))
    >>> K = kernel_operator(X, bandwidth=2.0)
    >>> idx, F = rpcholesky(K, 40, rng=0)
    >>> idx.shape, F.shape
    ((40,), (500, 40))
    >>> r = rpcholesky(K, tol=1e-3, rng=0)
    >>> bool(r.trace_error <= 1e-3 * r.trace)
    True
    """
    psd = as_psd(K)
    cap, tol = check_rank_tol(rank, tol, psd.n)
    if not isinstance(accelerated, bool):
        raise TypeError(f"`accelerated` must be True or False; got {accelerated!r}.")
    candidates = check_int("candidates", candidates, 1)
    rng = check_rng(rng)
    rounds = candidates > 1 or accelerated  # proposals drawn by the round, not one pivot at a time
    block = check_block_size(block_size, _accelerated_block(cap) if rounds else 1)
    if candidates > 1:
        state = _best_of(psd, cap, tol, block, candidates, rng)
    elif accelerated:
        state = _accelerated(psd, cap, tol, block, rng)
    else:
        state = _rpcholesky(psd, cap, tol, block, rng)
    return state.result("rpcholesky")


# -- pivot rules -----------------------------------------------------------------


def _draw(xp, weights, size: int, rng) -> np.ndarray:
    """``size`` indices drawn i.i.d. with probability weights_i / sum(weights).

    Inverse-CDF sampling on the weights' own device: one uniform per draw
    from ``rng`` and a ``searchsorted``; only the indices come to the host.
    The sum runs in float64: in float32, a weight below eps32 times the sum
    before it would get an empty interval (never drawn) or a doubled one.
    """
    c = xp.cumulative_sum(xp.astype(weights, xp.float64, copy=False))
    u = xp.asarray(rng.random(size), dtype=c.dtype, device=device_of(c)) * c[-1]
    idx = xp.searchsorted(c, u, side="right")
    # u rounds up to the total with probability ~eps; the last positive weight then.
    last = xp.searchsorted(c, c[-1:], side="left")
    return to_numpy(xp.minimum(idx, last)).astype(np.int64)


def _first_occurrences(S: np.ndarray) -> np.ndarray:
    _, first = np.unique(S, return_index=True)
    return S[np.sort(first)]


def _rpcholesky(psd, cap, tol, block, rng) -> Factorization:
    state = Factorization(psd, cap, tol)
    while not state.done():
        S = _first_occurrences(_draw(psd.xp, state.d, min(block, cap - state.rank), rng))
        state.absorb(S[state.weights(S) > 0])
    return state


def _accelerated(psd, cap, tol, block, rng) -> Factorization:
    """Accelerated RPCholesky [ETW2024, Algs. 2.1-2.2].

    b proposals are drawn i.i.d. from the residual diagonal; only their b x b
    residual block is evaluated. Proposal j is accepted with probability
    (its residual after the accepted ones before it) / (its residual at the
    start), which makes the accepted sequence distributed exactly as
    sequential RPCholesky; repeats are rejected automatically (their
    residual is 0 once accepted). Columns are then evaluated for the
    accepted pivots only.
    """
    xp = psd.xp
    state = Factorization(psd, cap, tol)
    while not state.done():
        S = _draw(xp, state.d, block, rng)
        H = psd.block(S)
        if state.rank:
            GS = np.asarray(to_numpy(xp.take(state.G, psd.index(S), axis=1)), dtype=np.float64)
            H = H - GS.T @ GS
        accepted, L, stale = _rejection_cholesky(H, *state.pivoting(block), rng)
        state.discard(S[stale])
        m = min(accepted.size, cap - state.rank)
        if m:
            state.absorb(S[accepted[:m]], cholesky=L[:m, :m])
    return state


def _best_of(psd, cap, tol, block, candidates, rng) -> Factorization:
    """RPCholesky with ``candidates`` proposals per landmark, the best kept.

    Per round, ``candidates * b`` proposals are drawn as RPCholesky draws
    them (proportional to the residual diagonal) and their residual columns
    R evaluated. Then b times, the proposal that removes the most trace,
    ||r_j||^2 / r_jj, is kept. Keeping pivot p subtracts g h^T from R, with
    g = r_p / sqrt(r_pp) and h = R[p] / sqrt(r_pp) (r_pp shifted when small,
    as in ``Factorization.absorb``), so the selection runs on the small
    matrices M = R^T R and H = R[proposals] alone.
    """
    xp = psd.xp
    state = Factorization(psd, cap, tol)
    while not state.done():
        b = min(block, cap - state.rank)
        P = np.unique(_draw(xp, state.d, candidates * b, rng))
        R = state.residual_columns(P)
        M, H = _host64(R.mT @ R), _host64(xp.take(R, psd.index(P), axis=0))
        H = (H + H.T) / 2
        floor, shift, shifted_below = state.pivoting(b)
        kept = []
        for _ in range(b):
            pivots = np.diagonal(H)
            usable = pivots > floor
            usable[kept] = False  # a shifted pivot keeps a residual below nu
            if not usable.any():
                break
            j = int(np.argmax(np.where(usable, np.diagonal(M) / np.where(usable, pivots, 1), -np.inf)))
            p = pivots[j] + shift * (pivots[j] < shifted_below)
            h, Mg = H[j] / math.sqrt(p), M[j] / math.sqrt(p)
            M = M - np.outer(h, Mg) - np.outer(Mg, h) + np.outer(h, h) * (M[j, j] / p)
            H = H - np.outer(h, h)
            kept.append(j)
        if not kept:
            state.discard(P)
            continue
        kept = np.asarray(kept, dtype=np.int64)
        state.absorb(P[kept], residual=xp.take(R, psd.index(kept), axis=1))
    return state


def _accelerated_block(cap: int) -> int:
    """Proposals per round: k / 10 as in [ETW2024]'s experiments, within [10, 256]."""
    return min(max(10, math.ceil(cap / 10)), 256)


def _rejection_cholesky(H: np.ndarray, floor: float, shift: float, shifted_below: float, rng):
    """Rejection-sampled partial Cholesky of the proposals' residual block H.

    Returns (accepted positions, L with H[acc][:, acc] + D = L L^T,
    positions whose residual was rounding from the start), D adding ``shift``
    to the pivots below ``shifted_below`` (as in ``Factorization.absorb``).
    """
    H = np.array(H, dtype=np.float64)
    b = H.shape[0]
    start = np.diagonal(H).copy()
    u = rng.random(b)
    L = np.zeros((b, b))
    accepted = []
    for j in range(b):
        h = H[j, j]
        if h > floor and u[j] * start[j] < h:
            accepted.append(j)
            pivot = h + shift * (h < shifted_below)
            col = H[j:, j] / math.sqrt(pivot)
            col[0] = math.sqrt(pivot)
            L[j:, j] = col
            H[j + 1 :, j + 1 :] -= np.outer(col[1:], col[1:])
    acc = np.asarray(accepted, dtype=np.int64)
    stale = np.flatnonzero(~(start > floor))
    if not acc.size:
        return acc, np.zeros((0, 0)), stale
    return acc, L[np.ix_(acc, acc)], stale


def _greedy(psd, cap, tol, block, rng) -> Factorization:
    """Pivoted partial Cholesky: the largest residual diagonal entries first."""
    xp = psd.xp
    state = Factorization(psd, cap, tol)
    while not state.done():
        b = min(block, cap - state.rank)
        if b == 1:
            top = xp.argmax(state.d)[None]
        else:
            top = xp.argsort(state.d, descending=True, stable=True)[:b]
        S = to_numpy(top).astype(np.int64)
        state.absorb(S[state.weights(S) > 0])
    return state


def _in_order(state: Factorization, order: np.ndarray, block: int) -> Factorization:
    """Absorb landmarks in the given order, ``block`` at a time, skipping spanned ones."""
    pos = 0
    while not state.done() and pos < order.size:
        S = order[pos : pos + min(block, state.cap - state.rank)]
        pos += S.size
        S = S[state.weights(S) > 0]
        if S.size:
            state.absorb(S)
    return state


def _uniform(psd, cap, tol, block, rng) -> Factorization:
    """Uniform sampling without replacement (the classical Nystrom method)."""
    return _in_order(Factorization(psd, cap, tol), rng.permutation(psd.n).astype(np.int64), block)


def _kmeanspp(psd, cap, tol, block, rng) -> Factorization:
    """k-means++ seeding in the kernel's feature space [AV2007].

    The first landmark is uniform; each next one is drawn with probability
    proportional to D(x)^2 = k(x, x) + k(c, c) - 2 k(x, c), the squared
    feature-space distance to the nearest landmark c so far. Each drawn
    column serves both the distances and the factor.
    """
    xp = psd.xp
    state = Factorization(psd, cap, tol)
    dist = None
    while not state.done():
        S, columns = [], []
        for _ in range(min(block, cap - state.rank)):
            if dist is None:
                s = int(rng.integers(psd.n))
            elif float(xp.max(dist)) > 0:
                s = int(_draw(xp, dist, 1, rng)[0])
            else:
                break  # every point coincides with a landmark in feature space
            c = psd.columns(np.array([s]))[:, 0]
            new = xp.clip(psd.diag + c[s] - 2 * c, min=0)
            dist = new if dist is None else xp.minimum(dist, new)
            dist[s] = 0
            S.append(s)
            columns.append(c[:, None])
        if not S:
            break
        state.absorb(np.array(S, dtype=np.int64), columns=xp.concat(columns, axis=1))
    return state


def _leverage(psd, cap, tol, block, rng, *, ridge=None, oversample=None) -> Factorization:
    """Sampling by approximate ridge leverage scores, without replacement.

    The ridge leverage scores l_i(lam) = (K (K + lam I)^{-1})_ii [AM2015] are
    estimated from a pilot (accelerated) RPCholesky factor F0 with residual
    diagonal d: l_i ~ (K0 (K0 + lam I)^{-1})_ii + d_i / lam for K0 = F0 F0^T,
    the scores of the pilot plus the most its residual could have on its
    own (an estimate, exact when the pilot is). With F0^T F0 = Q diag(mu) Q^T
    that is
    sum_j (F0 Q)_ij^2 / (mu_j + lam) + d_i / lam, O(n m^2) for m pilot
    landmarks. The default lam = (tr K - sum_{j<=k} mu_j) / k is the choice
    of [MM2017] for a rank-k approximation, lam = sum_{i>k} lambda_i(K) / k,
    with the pilot's spectrum (an upper bound on that tail) standing in.
    """
    xp = psd.xp
    if not psd.max_diag > 0:  # K = 0: every score would be 0 / 0, and no landmark helps
        return Factorization(psd, cap, tol)
    extra = cap if oversample is None else oversample
    m = min(cap + extra, psd.n)
    pilot = _accelerated(psd, m, tol, _accelerated_block(m), rng)
    k = cap if tol is None else max(min(cap, pilot.rank), 1)
    G = pilot.G
    mu, Q = np.linalg.eigh(np.asarray(to_numpy(G @ G.mT), dtype=np.float64))
    mu = np.clip(mu, 0, None)
    if ridge is None:
        ridge = (psd.trace - np.sum(np.sort(mu)[::-1][:k])) / k
    lam = max(ridge, pilot.floor)
    P = G.mT @ xp.asarray(Q, dtype=psd.dtype, device=psd.device)
    scale = xp.asarray(1.0 / (mu + lam), dtype=psd.dtype, device=psd.device)
    scores = pilot.d / lam + xp.sum(P * P * scale[None, :], axis=1)
    w = np.asarray(to_numpy(scores), dtype=np.float64)
    # Efraimidis-Spirakis: sorting Exp(1) / w_i orders the points as successive
    # draws without replacement with probability proportional to w.
    with np.errstate(divide="ignore"):
        keys = rng.exponential(size=psd.n) / w
    order = np.argsort(keys, kind="stable")
    order = order[np.isfinite(keys[order])].astype(np.int64)
    return _in_order(Factorization(psd, cap, tol), order, block)


# -- public dispatcher ------------------------------------------------------------

_OPTIONS = {
    "rpcholesky": ("block_size", "accelerated", "candidates"),
    "greedy": ("block_size",),
    "uniform": ("block_size",),
    "kmeans++": ("block_size",),
    "leverage": ("block_size", "ridge", "oversample"),
}


def landmarks(
    K,
    rank: int | None = None,
    *,
    method: str = "rpcholesky",
    tol: float | None = None,
    rng=None,
    **options,
) -> PartialCholesky:
    """Choose landmark columns of a PSD matrix and the Nystrom factor K ~ F F^T they give.

    Parameters
    ----------
    K : KernelOperator or dense array, shape (n, n), positive semidefinite
        As in :func:`rpcholesky`.
    rank : int, optional
        Number of landmarks k (capped at n).
    method : {"rpcholesky", "uniform", "greedy", "kmeans++", "leverage"}
        ``"rpcholesky"``: :func:`rpcholesky`. ``"uniform"``: uniformly
        without replacement. ``"greedy"``: pivoted Cholesky, always the
        largest residual diagonal entry (deterministic). ``"kmeans++"``: D^2
        sampling in the kernel's feature space [AV2007]. ``"leverage"``:
        without replacement, proportional to approximate ridge leverage
        scores [AM2015, MM2017].
    tol : float in (0, 1), optional
        Stop once tr(K - F F^T) <= tol * tr(K); sampling methods add
        landmarks 16 at a time (``block_size``) until it holds.
    rng : None, int, SeedSequence, BitGenerator or Generator
        Randomness (SPEC 7); ``"greedy"`` uses none.
    **options
        ``block_size`` (all methods: landmarks added per round; default as in
        :func:`rpcholesky` for rpcholesky, 1 for greedy, 16 for the others
        with ``tol``, else all k at once); ``accelerated`` and ``candidates`` (rpcholesky); ``ridge``
        and ``oversample`` (leverage: the ridge lam of the scores l_i(lam), default an estimate
        of sum_{i>k} lambda_i(K) / k, the choice of [MM2017]; the pilot
        approximation the scores come from has k + oversample landmarks,
        default oversample = k).

    Returns
    -------
    PartialCholesky
        Unpacks as ``indices, factor``; ``method`` records the method,
        ``converged`` whether ``tol`` (if given) was met.

    Notes
    -----
    Whatever chose them, the factor for landmarks S is computed the same
    stable way: blocks of landmarks are absorbed into a partial Cholesky
    factorisation, the residual block of each factored with complete
    pivoting (LAPACK ?pstrf) stopped at the rounding level, and pivots just
    above it shifted by that level, as in the stable Nystrom approximation
    of [CETW2024]'s code. That never fails on a rank-deficient
    W = K[S, S]: a landmark spanned by the others is dropped, and
    F F^T = C W^+ C^T for the rest, but for directions of W at the rounding
    level. So ``rank`` may come back below k, the landmark count is what the
    matrix supports, and K - F F^T stays PSD to rounding (``trace_error`` is
    exact) however ill-conditioned W is, landmarks picked without regard to
    the residual included. A K that is visibly not PSD raises ``ValueError``.

    Entries of K evaluated: n per landmark and n for the diagonal;
    ``"leverage"`` also n per pilot landmark. The diagonal of a callable
    kernel of blocks costs about 256 n entries instead (blocks k(A_b, A_b)
    of 256 points, see :func:`rpcholesky`). Work O(n k^2), memory O(n k).
    Every method's trace error is at least the optimal
    sum_{i>k} lambda_i(K); ``"rpcholesky"`` comes close to it with few
    extra landmarks [CETW2024], ``"uniform"`` can be far worse when the
    data have small, distant clusters.

    Examples
    --------
    >>> import numpy as np
    >>> from randla.kernels import kernel_operator, landmarks
    >>> X = np.random.default_rng(0).standard_normal((500, 3))
    >>> K = kernel_operator(X, bandwidth=2.0)
    >>> for method in ("rpcholesky", "greedy", "uniform", "kmeans++", "leverage"):
    ...     r = landmarks(K, 30, method=method, rng=0)
    ...     print(method, r.rank, bool(r.trace_error < 0.1 * r.trace))
    rpcholesky 30 True
    greedy 30 True
    uniform 30 True
    kmeans++ 30 True
    leverage 30 True
    """
    method = check_choice("method", method, METHODS)
    unknown = sorted(set(options) - set(_OPTIONS[method]))
    if unknown:
        allowed = ", ".join(_OPTIONS[method])
        raise ValueError(f"unknown option(s) {unknown} for method {method!r}; it takes: {allowed}.")
    return _select(K, rank, method, tol, rng, options)


def _select(K, rank, method, tol, rng, options) -> PartialCholesky:
    if method == "rpcholesky":
        return rpcholesky(K, rank, tol=tol, rng=rng, **options)
    psd = as_psd(K)
    cap, tol = check_rank_tol(rank, tol, psd.n)
    rng = check_rng(rng)
    default = 1 if method == "greedy" else _TOL_BLOCK if tol is not None else cap
    block = check_block_size(options.get("block_size"), default)
    if method == "leverage":
        extra = _leverage_options(options)
        return _leverage(psd, cap, tol, block, rng, **extra).result(method)
    rule = {"greedy": _greedy, "uniform": _uniform, "kmeans++": _kmeanspp}[method]
    return rule(psd, cap, tol, block, rng).result(method)


def _leverage_options(options):
    ridge = options.get("ridge")
    if ridge is not None:
        ok = isinstance(ridge, numbers.Real) and not isinstance(ridge, bool)
        if not (ok and math.isfinite(ridge) and ridge > 0):
            raise ValueError(
                f"`ridge` must be a positive finite number (the lambda of l_i(lambda)); got {ridge!r}."
            )
        ridge = float(ridge)
    oversample = options.get("oversample")
    if oversample is not None:
        oversample = check_int("oversample", oversample, 0)
    return {"ridge": ridge, "oversample": oversample}


def column_nystrom(
    K,
    rank: int | None = None,
    *,
    tol: float | None = None,
    landmarks: str = "rpcholesky",
    rng=None,
) -> ColumnNystromResult:
    """Column Nystrom approximation K ~ U diag(S) U^T of a PSD matrix from k of its columns.

    Parameters
    ----------
    K : KernelOperator or dense array, shape (n, n), positive semidefinite
    rank, tol, rng
        As in :func:`landmarks`.
    landmarks : str, default "rpcholesky"
        The landmark method, one of :data:`METHODS`.

    Returns
    -------
    ColumnNystromResult
        Unpacks as ``U, S`` (like :class:`randla.NystromResult`); also
        ``indices``, ``trace``, ``trace_error`` and ``converged``.

    Notes
    -----
    ``landmarks(K, rank, method=landmarks, tol=tol, rng=rng).eig()``: the
    factor F from :func:`landmarks`, then the thin SVD F = U Sigma V^T,
    S = Sigma^2, in O(n k^2). Unlike :func:`randla.nystrom`, which multiplies
    K by a dense sketch (n^2 entries), this touches only n (k + 1) entries.

    Examples
    --------
    >>> import numpy as np
    >>> from randla.kernels import kernel_operator, column_nystrom
    >>> X = np.random.default_rng(0).standard_normal((500, 3))
    >>> U, S = column_nystrom(kernel_operator(X, bandwidth=2.0), 20, rng=0)
    >>> U.shape, bool((S[:-1] >= S[1:]).all())
    ((500, 20), True)
    """
    method = check_choice("landmarks", landmarks, METHODS)
    return _select(K, rank, method, tol, rng, {}).eig()
