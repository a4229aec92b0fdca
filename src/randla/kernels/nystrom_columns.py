"""Column Nystrom approximation of a PSD matrix from a set of its columns.

Given landmarks S, the column Nystrom approximation of a positive
semidefinite K is K_hat = C W^+ C^T with C = K[:, S] and W = K[S, S]. It is
held as a factor F (n, k) with K_hat = F F^T, built block by block as a
partial Cholesky factorisation: a block of new landmarks S is absorbed by
Cholesky-factoring the residual block H = K[S, S] - F[S] F[S]^T = L L^T and
appending the columns (K[:, S] - F F[S]^T) L^{-T}. Every landmark method of
:mod:`randla.kernels.landmarks` differs only in how it picks S.

Stability. The entries of a residual column carry rounding errors of about
nu = eps max(diag K) max(100, k) after k landmarks, and a pivot h divides
them by sqrt(h). Pivoting on the largest residual (greedy, RPCholesky) keeps
that harmless. Landmarks fixed in advance (uniform, k-means++, leverage)
reach pivots barely above rounding once k passes the numerical rank of K;
unshifted, the factor then makes C W^{-1} C^T overshoot K by orders of
magnitude. So pivots below 3 nu are dropped as rounding, and pivots below
sqrt(nu max(diag K)) are shifted by nu, as in the stable Nystrom
approximation chol(W + 100 eps max(W) I) [CETW2024, reference code;
TYUC2017, Alg. 3]: F F^T = C (W + D)^{-1} C^T with D >= 0 diagonal, which
keeps K - F F^T PSD to rounding and gives up only directions of W at the
rounding level. Larger pivots are not shifted, so an exactly low-rank K is
recovered exactly. A residual diagonal that still turns negative beyond
rounding shows either that K's entries are less accurate than eps (nu is
then raised) or that K is not PSD (``ValueError``).

References
----------
[CETW2024] Y. Chen, E. N. Epperly, J. A. Tropp, R. J. Webber. Randomly
pivoted Cholesky: Practical approximation of a kernel matrix with few entry
evaluations. Comm. Pure Appl. Math. (2024).
[TYUC2017] J. A. Tropp, A. Yurtsever, M. Udell, V. Cevher. Fixed-rank
approximation of a positive-semidefinite matrix from streaming data.
NeurIPS (2017).

This module holds that engine, the adapter that gives it column access to
the matrix, and the result objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj, is_dask_array, is_torch_array

from .._results import Unpackable
from .._validate import check_int, check_tol
from ..backend import device_of, small_svd, to_numpy
from ..operators.adapters import check_not_meta
from ..operators.base import _work_dtype
from .operator import KernelOperator

__all__ = ["PartialCholesky", "ColumnNystromResult"]

#: The rounding level nu = eps max(diag K) max(_SHIFT, k) of a residual
#: entry after k landmarks; residual diagonal entries below ``_PIVOT`` nu
#: are rounding, never pivots (module notes).
_SHIFT = 100.0
_PIVOT = 3.0

#: Initial capacity (factor columns) when only ``tol`` bounds the rank.
_INITIAL_CAPACITY = 64


@dataclass(frozen=True, repr=False)
class ColumnNystromResult(Unpackable):
    """Column Nystrom approximation K ~ U diag(S) U^T; unpacks as ``U, S``.

    Attributes
    ----------
    U : (n, k) array, orthonormal columns
    S : (k,) array, non-negative, descending
    indices : (k,) int64 NumPy array
        The landmarks (columns of K) the approximation is built from.
    trace : float
        tr(K).
    trace_error : float
        tr(K - U diag(S) U^T), the error in the trace (nuclear) norm.
    method : str
        How the landmarks were chosen.
    converged : bool
        False where ``tol`` was given and not met (the rank cap came first).
    """

    U: object
    S: object
    indices: np.ndarray
    trace: float
    trace_error: float
    method: str
    converged: bool = True
    _unpack = ("U", "S")

    @property
    def rank(self) -> int:
        return int(self.S.shape[0])

    def factors(self):
        """(L, R) with K ~ L @ R: (U diag(S), U^T)."""
        return self.U * self.S[None, :], self.U.mT

    def reconstruct(self):
        """The dense approximation U diag(S) U^T (n x n: only for small n)."""
        L, R = self.factors()
        return L @ R


@dataclass(frozen=True, repr=False)
class PartialCholesky(Unpackable):
    """K ~ F F^T from the landmark columns K[:, indices]; unpacks as ``indices, factor``.

    ``F F^T`` is the column Nystrom approximation C W^+ C^T, C = K[:, indices]
    and W = K[indices, indices], computed as a partial Cholesky factor. Pivots
    near the rounding level are shifted for stability (module notes): off the
    landmarks F F^T = C (W + D)^{-1} C^T with D >= 0 diagonal, at most the
    rounding level eps max(100, k) max K_ii, and F[indices] F[indices]^T = W + D.

    Attributes
    ----------
    indices : (k,) int64 NumPy array
        Landmarks, unique, in the order they were chosen.
    factor : (n, k) array
        F, in K's library, device and dtype; F[indices] is lower triangular.
    trace : float
        tr(K).
    trace_error : float
        tr(K - F F^T) = tr(K) - ||F||_F^2, to rounding. K - F F^T is PSD (to
        rounding), so this is its trace (nuclear) norm, not an estimate.
    method : str
        How the landmarks were chosen.
    converged : bool
        False where ``tol`` was given and not met: the rank cap came first,
        or the tolerance is below the rounding of K's entries.
    """

    indices: np.ndarray
    factor: object
    trace: float
    trace_error: float
    method: str
    converged: bool = True
    _unpack = ("indices", "factor")

    @property
    def rank(self) -> int:
        return int(self.factor.shape[1])

    @property
    def relative_error(self) -> float:
        """trace_error / trace (0 for the zero matrix)."""
        return self.trace_error / self.trace if self.trace > 0 else 0.0

    def factors(self):
        """(L, R) = (F, F^T) with K ~ L @ R."""
        return self.factor, self.factor.mT

    def reconstruct(self):
        """The dense approximation F F^T (n x n: only for small n)."""
        return self.factor @ self.factor.mT

    def eig(self) -> ColumnNystromResult:
        """Eigendecomposition K_hat = U diag(S) U^T of F F^T, S descending.

        From the thin SVD F = U Sigma V^T (S = Sigma^2), O(n k^2); no n x n
        array is formed. Signs are fixed: the largest entry of each column of
        U is positive.
        """
        F = self.factor
        xp = array_namespace(F)
        work = _work_dtype(xp, F.dtype)  # half precisions: the SVD in float32
        if F.shape[1] == 0:
            U, S = F, xp.zeros((0,), dtype=F.dtype, device=device_of(F))
        else:
            U, s, _ = small_svd(xp, F if F.dtype == work else xp.astype(F, work))
            pivot = xp.take_along_axis(U, xp.argmax(xp.abs(U), axis=0)[None, :], axis=0)[0]
            U = U * xp.where(pivot < 0, -xp.ones_like(pivot), xp.ones_like(pivot))[None, :]
            U, S = xp.astype(U, F.dtype), xp.astype(s * s, F.dtype)
        return ColumnNystromResult(U, S, self.indices, self.trace, self.trace_error, self.method, self.converged)


# -- access to the matrix ----------------------------------------------------------


class _PSD:
    """Columns, principal blocks and the diagonal of a square PSD matrix."""

    def __init__(self, xp, dtype, input_dtype, device, n, columns, block, diagonal):
        self.xp, self.dtype, self.input_dtype, self.device, self.n = xp, dtype, input_dtype, device, n
        self._columns, self._block = columns, block
        diag = diagonal()
        host = _host64(diag)
        if not np.all(np.isfinite(host)):
            raise ValueError("K has NaN or Inf on its diagonal; landmark methods need a finite PSD matrix.")
        scale = float(np.max(np.abs(host)))
        worst = int(np.argmin(host))
        if host[worst] < -_SHIFT * self.eps * scale:
            raise ValueError(
                f"K is not positive semidefinite: its diagonal has a negative entry "
                f"K[{worst}, {worst}] = {host[worst]:.3g}. Landmark methods need a PSD matrix "
                "(a kernel matrix of a PSD kernel, or a Gram matrix)."
            )
        self.diag = xp.clip(diag, min=0)
        self.trace = float(np.sum(host))
        self.max_diag = max(float(np.max(host)), 0.0)

    @property
    def eps(self) -> float:
        return float(self.xp.finfo(self.dtype).eps)

    @property
    def input_eps(self) -> float:
        """The rounding of K's entries: ``eps``, or coarser for half-precision input."""
        if self.xp.isdtype(self.input_dtype, "real floating"):
            return max(self.eps, float(self.xp.finfo(self.input_dtype).eps))
        return self.eps

    def index(self, S):
        return _on_device(self.xp, self.device, S)

    def columns(self, S):
        """K[:, S] for a NumPy index array S, checked finite."""
        C = self._columns(S)
        if not bool(self.xp.all(self.xp.isfinite(C))):
            raise ValueError("K has NaN or Inf entries in the columns of the chosen landmarks.")
        return C

    def block(self, S):
        """K[S][:, S] as a float64 NumPy array (small)."""
        return _host64(self._block(S))

    def as_output(self, x):
        """x in the dtype results come back in (the input's; integers: float64)."""
        xp = self.xp
        if self.input_dtype == self.dtype or not xp.isdtype(self.input_dtype, "real floating"):
            return x
        return xp.astype(x, self.input_dtype)


def _host64(x) -> np.ndarray:
    if is_torch_array(x):
        x = x.detach().to("cpu", _torch_float64())  # bf16 has no NumPy dtype
    return np.asarray(to_numpy(x), dtype=np.float64)


def _torch_float64():
    import torch

    return torch.float64


def _on_device(xp, device, S):
    """A NumPy index array as an index array of ``xp`` on ``device``."""
    return xp.asarray(np.asarray(S, dtype=np.int64), device=device)


_NEEDS = (
    "landmark methods need the columns and the diagonal of K: pass a KernelOperator "
    "(randla.kernels.kernel_operator(X, ...), for a kernel matrix of points) or a dense "
    "NumPy array or torch tensor"
)


def as_psd(K) -> _PSD:
    """Column access to K: a square KernelOperator, or a dense NumPy/torch array.

    Raises ``TypeError`` for anything without cheap column access (sparse
    matrices, LinearOperators, other operators) and ``ValueError`` for a
    non-square, empty or visibly non-PSD K.
    """
    if isinstance(K, KernelOperator):
        if not K.symmetric:
            raise ValueError(
                f"K must be a square kernel matrix k(X, X); got k(X, Y) of shape {K.shape}. "
                "Build it with kernel_operator(X) (no Y)."
            )
        return _PSD(
            K.xp, K.dtype, K.input_dtype, K.device, K.shape[0],
            columns=lambda S: K.columns(_on_device(K.xp, K.device, S)),
            block=lambda S: K.block(_on_device(K.xp, K.device, S), _on_device(K.xp, K.device, S)),
            diagonal=K.diagonal,
        )
    if isinstance(K, np.matrix):
        K = np.asarray(K)
    import scipy.sparse as sp

    if is_dask_array(K):
        raise TypeError(f"{_NEEDS}; got a Dask array. Pass it as a NumPy array (K.compute()) or a kernel_operator.")
    if sp.issparse(K) or not is_array_api_obj(K) or getattr(K, "layout", None) not in (None, _strided()):
        what = "a sparse matrix" if sp.issparse(K) or hasattr(K, "layout") else type(K).__name__
        raise TypeError(
            f"{_NEEDS}; got {what}. For a small sparse or implicit PSD matrix, pass it dense (K.toarray())."
        )
    check_not_meta(K, "K")
    xp = array_namespace(K)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(
            f"K must be a square (n, n) positive semidefinite matrix; got shape {tuple(K.shape)}."
        )
    if K.shape[0] == 0:
        raise ValueError("K must have at least one row and column; got shape (0, 0).")
    real = xp.isdtype(K.dtype, ("real floating", "integral", "bool"))
    if not real:
        raise TypeError(f"K must be a real symmetric PSD matrix; got dtype {K.dtype}.")
    dtype = _work_dtype(xp, K.dtype)

    def cast(x):
        return x if x.dtype == dtype else xp.astype(x, dtype)

    device = device_of(K)

    def columns(S):
        return cast(xp.take(K, _on_device(xp, device, S), axis=1))

    def block(S):
        idx = _on_device(xp, device, S)
        return cast(xp.take(xp.take(K, idx, axis=0), idx, axis=1))

    def diagonal():
        return cast(xp.linalg.diagonal(K))

    psd = _PSD(xp, dtype, K.dtype, device, int(K.shape[0]), columns, block, diagonal)
    _check_symmetric(psd, K)
    return psd


def _strided():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch tensors cannot exist then
        return None
    return torch.strided


def _check_symmetric(psd: _PSD, K, probes: int = 4):
    """K[:, j] == K[j, :] on a few spread-out j: catches a non-symmetric K in O(n)."""
    xp, n = psd.xp, psd.n
    S = np.unique(np.linspace(0, n - 1, min(n, probes)).astype(np.int64))
    idx = psd.index(S)
    cols = _host64(xp.take(K, idx, axis=1))
    rows = _host64(xp.take(K, idx, axis=0)).T
    if not (np.all(np.isfinite(cols)) and np.all(np.isfinite(rows))):
        raise ValueError("K has NaN or Inf entries; landmark methods need a finite PSD matrix.")
    scale = max(float(np.max(np.abs(cols))), np.finfo(np.float64).tiny)
    gap = float(np.max(np.abs(cols - rows)))
    if not gap <= 10 * math.sqrt(psd.eps) * scale:
        raise ValueError(
            f"K must be symmetric; max |K[i, j] - K[j, i]| / max |K| = {gap / scale:.2e} on a "
            "few columns. For a nearly symmetric PSD matrix pass (K + K.T) / 2."
        )


# -- parameters ------------------------------------------------------------------


def check_rank_tol(rank, tol, n: int) -> tuple[int, float | None]:
    """The landmark cap (rank, at most n) and the relative trace tolerance."""
    if rank is None and tol is None:
        raise ValueError(
            "give `rank` (the number of landmarks), `tol` (the relative trace error "
            "tr(K - K_hat) / tr(K) to reach), or both; got neither."
        )
    cap = n if rank is None else min(check_int("rank", rank, 1), n)
    if tol is not None:
        tol = check_tol(tol, "the relative trace error tr(K - K_hat) / tr(K)")
    return cap, tol


def check_block_size(block_size, default: int) -> int:
    if block_size is None:
        return default
    return check_int("block_size", block_size, 1)


# -- the engine ------------------------------------------------------------------


class Factorization:
    """A partial Cholesky factorisation K ~ F F^T grown one block of landmarks at a time.

    The factor is stored transposed, G = F^T (rows appended contiguously),
    with the residual diagonal d = diag(K - F F^T) updated incrementally:
    O(n k) memory, O(n k^2) work and n k entries of K for k landmarks.
    """

    def __init__(self, psd: _PSD, cap: int, tol: float | None):
        self.psd, self.xp, self.cap = psd, psd.xp, cap
        self.d = psd.xp.asarray(psd.diag, copy=True)
        self.target = 0.0 if tol is None else tol * psd.trace
        self.tol = tol
        # A fixed rank is allocated once; under a tolerance the factor grows by doubling.
        capacity = cap if tol is None else min(cap, _INITIAL_CAPACITY)
        self._G = psd.xp.zeros((capacity, psd.n), dtype=psd.dtype, device=psd.device)
        self.rank = 0
        self._chosen: list[np.ndarray] = []
        self.residual = psd.trace
        self.noise = 0.0  # a rounding level raised by _settled

    def shift(self, new: int = 0) -> float:
        """The rounding level nu of a factor of rank + ``new`` landmarks (module notes)."""
        return max(self.psd.eps * self.psd.max_diag * max(_SHIFT, self.rank + new), self.noise)

    @property
    def floor(self) -> float:
        """Residual diagonal entries at most this are rounding: never pivots."""
        return _PIVOT * self.shift()

    def pivoting(self, new: int = 0) -> tuple[float, float, float]:
        """(floor, shift, shifted below) for a block of ``new`` landmarks (module notes)."""
        shift = self.shift(new)
        return self.floor, shift, math.sqrt(shift * self.psd.max_diag)

    @property
    def G(self):
        return self._G[: self.rank]

    @property
    def indices(self) -> np.ndarray:
        return np.concatenate(self._chosen) if self._chosen else np.zeros(0, dtype=np.int64)

    def done(self) -> bool:
        """Rank cap reached, tolerance met, or nothing above rounding left."""
        if self.rank >= self.cap or self.residual <= self.target:
            return True
        return not float(self.xp.max(self.d)) > self.floor

    def weights(self, S) -> np.ndarray:
        """d[S] on the host."""
        return _host64(self.xp.take(self.d, self.psd.index(S)))

    def discard(self, S):
        """Landmarks whose residual is rounding: never to be proposed again."""
        if len(S):
            self.d[self.psd.index(S)] = 0
            self._update_residual()

    def absorb(self, S, columns=None, cholesky=None, residual=None) -> int:
        """Add the landmarks S (unique, not yet chosen); returns how many were kept.

        ``columns`` is K[:, S] if already evaluated, ``residual`` the
        residual columns (K - F F^T)[:, S] if already formed. ``cholesky`` is
        L with H + D = L L^T for the residual block H = K[S, S] - F[S] F[S]^T
        if already factored (D: the shifts of ``pivoting``); otherwise H is
        factored here with complete pivoting, stopping at the rounding floor.
        Landmarks whose residual is below it are spanned, to rounding, by the
        others and are dropped. The new columns are (K - F F^T)[:, S] L^{-T},
        with L itself in the landmark rows: F[indices] stays lower triangular,
        F[indices] F[indices]^T = W + D.
        """
        xp, psd = self.xp, self.psd
        S = np.asarray(S, dtype=np.int64)
        if S.size == 0:
            return 0
        from scipy.linalg import solve_triangular

        R = self.residual_columns(S, columns) if residual is None else residual
        order, L = (np.arange(S.size), cholesky) if cholesky is not None else self._factor(S, R)
        r = 0
        while order.size:
            kept = S[order]
            Linv = solve_triangular(L, np.eye(L.shape[0]), lower=True)
            # Columns of n rows each: reordered only where the pivoting moved them.
            C = R if np.array_equal(order, np.arange(S.size)) else xp.take(R, psd.index(order), axis=1)
            rows = xp.asarray(Linv, dtype=psd.dtype, device=psd.device) @ C.mT
            del C
            rows[:, psd.index(kept)] = xp.asarray(L.T, dtype=psd.dtype, device=psd.device)
            if self.rank:
                # The residual at earlier landmarks is 0 but for rounding, which
                # small pivots amplify (1e-8 past the numerical rank): F[indices]
                # is lower triangular exactly, F[indices] F[indices]^T = W + D.
                rows[:, psd.index(self.indices)] = 0
            # Row i uses only the first i + 1 pivots (L^{-1} is triangular), so a
            # prefix is the factorisation of those pivots: stop where tol is met.
            r = self._prefix_within_target(rows)
            rows = rows[:r]
            d = self.d - xp.linalg.vecdot(rows, rows, axis=0)  # no n x m temporary of squares
            if self._settled(d, Linv):
                break
            (order, L), r = self._factor(S, R), 0
        del R  # before the factor grows: n x m numbers each
        if r:
            self._append(rows)
            self.d = xp.clip(d, min=0)
            self._chosen.append(kept[:r])
            S = np.setdiff1d(S, kept[r:])
        self.discard(S)
        return r

    def _factor(self, S, R):
        """(order, L) for the residual block of S, R = (K - F F^T)[:, S]."""
        H = _host64(self.xp.take(R, self.psd.index(S), axis=0))
        return _pivoted_cholesky(H, *self.pivoting(S.size))

    def _settled(self, d, Linv) -> bool:
        """Whether the updated residual diagonal d is non-negative to rounding.

        A PSD K keeps d >= 0 in exact arithmetic; rounding, amplified by small
        pivots, makes the computed d slightly negative. Errors e in the b
        residual entries of a row move its d by at most 2 a sqrt(max K_ii)
        + a^2, a = ||L^{-1}||_F sqrt(b) e, while they leave the pivots (all
        above 10 e) nearly unchanged. With e = eps^(1/4) max K_ii, far more
        than the rounding of any usable factor, a d below that shows that K
        is not PSD: ``ValueError``. A d below -sqrt(nu max K_ii), the size of
        pivot the shift guards, shows that K's entries carry more rounding
        than nu (an RBF kernel of points far from the origin, relative to the
        bandwidth, loses digits; half-precision input): nu is raised tenfold
        and the block factored again, its pivots below the new floor dropped.
        """
        psd, worst = self.psd, float(self.xp.min(d))
        if worst >= -self.floor:
            return True
        error = psd.input_eps**0.25 * psd.max_diag
        pivot = 1.0 / float(np.max(np.diagonal(Linv))) ** 2
        a = float(np.linalg.norm(Linv)) * math.sqrt(Linv.shape[0]) * error
        if pivot > 10 * error and worst < -(2 * a * math.sqrt(psd.max_diag) + a * a):
            i = int(self.xp.argmin(d))
            raise ValueError(
                f"K is not positive semidefinite: after {self.rank} landmarks the residual "
                f"(K - F F^T)[{i}, {i}] = {worst:.3g} is negative beyond rounding. Landmark "
                "methods need a PSD matrix (a kernel matrix of a PSD kernel, or a Gram matrix)."
            )
        if worst >= -self.pivoting()[2]:
            return True
        self.noise = 10 * self.shift()
        return False

    def _prefix_within_target(self, rows) -> int:
        """Rows needed to bring the trace error to the target (all if it is not reached)."""
        if self.target <= 0:
            return rows.shape[0]
        left = self.residual - np.cumsum(_host64(self.xp.sum(rows * rows, axis=1)))
        hits = np.nonzero(left <= self.target)[0]
        return int(hits[0]) + 1 if hits.size else rows.shape[0]

    def residual_columns(self, S, columns=None):
        """(K - F F^T)[:, S]; ``columns`` is K[:, S] if already evaluated."""
        xp, psd = self.xp, self.psd
        C = psd.columns(S) if columns is None else columns
        if self.rank == 0:
            return C
        G = self.G
        return C - G.mT @ xp.take(G, psd.index(S), axis=1)

    def _append(self, rows):
        xp, r, m = self.xp, self.rank, rows.shape[0]
        if r + m > self._G.shape[0]:
            size = min(max(2 * self._G.shape[0], r + m), max(self.cap, r + m))
            grown = xp.zeros((size, self.psd.n), dtype=self.psd.dtype, device=self.psd.device)
            grown[:r] = self._G[:r]
            self._G = grown
        self._G[r : r + m] = rows
        self.rank = r + m

    def _update_residual(self):
        self.residual = float(self.xp.sum(self.d, dtype=self.xp.float64))

    def result(self, method: str) -> PartialCholesky:
        xp, psd = self.xp, self.psd
        G = self.G if self._G.shape[0] == self.rank else xp.asarray(self.G, copy=True)
        converged = self.tol is None or self.residual <= self.target
        return PartialCholesky(self.indices, psd.as_output(G.mT), psd.trace, self.residual, method, converged)


def _pivoted_cholesky(H: np.ndarray, floor: float, shift: float, shifted_below: float):
    """Complete-pivoting Cholesky of a small PSD block, stopped at ``floor``.

    Returns (order, L) with H[order][:, order] + D = L L^T, D adding
    ``shift`` to the pivots below ``shifted_below`` (module notes). LAPACK's
    ?pstrf never fails on a singular or indefinite-by-rounding H: it stops at
    the numerical rank, so a landmark spanned by the others is dropped
    instead of inverted.
    """
    b = H.shape[0]
    if b == 1:
        h = float(H[0, 0])
        if not h > floor:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0))
        return np.zeros(1, dtype=np.int64), np.array([[math.sqrt(h + shift * (h < shifted_below))]])
    from scipy.linalg import lapack

    H = (H + H.T) / 2
    c, piv, r, _ = lapack.dpstrf(H, tol=floor, lower=1)
    if r == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0))
    order, L = (piv[:r] - 1).astype(np.int64), np.tril(c[:r, :r])
    pivots = np.diagonal(L) ** 2
    if pivots.min() < shifted_below:
        L = np.linalg.cholesky(H[np.ix_(order, order)] + np.diag(shift * (pivots < shifted_below)))
    return order, L
