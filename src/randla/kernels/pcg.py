"""Preconditioned conjugate gradients and the preconditioners of kernel ridge regression.

- :func:`block_pcg` - conjugate gradients on t right-hand sides at once: one
  product with the matrix per iteration serves every column, and each column
  has its own step lengths and stopping test;
- :func:`nystrom_preconditioner` - the randomized Nystrom preconditioner of
  Frangella, Tropp & Udell (2023) for A + mu I;
- :class:`PSDFactor` - W + s I = L L^T and T = L^{-T} for a small PSD matrix
  W and a tiny shift s, falling back to an eigendecomposition and a
  pseudo-inverse when W is too far from positive definite for Cholesky;
- :func:`falkon_preconditioner` - the preconditioner of the Nystrom normal
  equations (C^T C + alpha W) beta = C^T y of Rudi, Carratino & Rosasco (2017);
- :class:`KernelRows` - a kernel block k(A, B) seen one block of rows at a
  time, within a memory budget, for the products the solvers need.

All of it works on arrays of any array-API library (NumPy, torch on any
device) and is used by :mod:`randla.kernels.krr`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from array_api_compat import array_namespace

from .._results import Unpackable
from ..backend import _cholesky_upper, device_of, small_eigh, solve_triangular
from ..operators import Operator
from .functions import Kernel, is_sparse

__all__ = ["block_pcg", "PCGResult", "nystrom_preconditioner", "falkon_preconditioner", "PSDFactor"]



@dataclass(frozen=True, repr=False)
class PCGResult(Unpackable):
    """Solution of A x = b by :func:`block_pcg`; unpacks as ``x, converged``.

    ``residuals[j]`` is the largest relative residual ||b - A x||_2 / ||b||_2
    over the columns after j iterations (``residuals[0] = 1``: x starts at 0),
    so ``len(residuals) == n_iter + 1``: as CG's recurrence updates it, and
    the last one computed afresh from b - A x. ``stalled``: CG stopped
    because checks of the true residual stopped falling (only with
    ``residual``): that residual is the floor of the precision x is kept in.
    """

    x: object
    converged: bool
    n_iter: int
    residuals: np.ndarray
    stalled: bool = False
    _unpack = ("x", "converged")


def block_pcg(
    matmat, B, *, precondition=None, tol: float = 1e-6, max_iter: int = 100, residual=None
) -> PCGResult:
    """Solve A X = B for a symmetric positive definite A by preconditioned CG.

    Parameters
    ----------
    matmat : callable
        ``matmat(V)`` returns A @ V for a block V of shape (n, t).
    B : array, shape (n, t)
        Right-hand sides, in the library and dtype the iteration runs in.
    precondition : callable, optional
        ``precondition(R)`` returns M^{-1} R for a symmetric positive
        definite M ~ A; None runs plain CG.
    tol : float, default 1e-6
        Stop when ||b_j - A x_j||_2 <= tol ||b_j||_2 for every column j.
    max_iter : int, default 100
        At most this many iterations, one product with A each (plus one
        per check of the true residual, see Notes).
    residual : callable, optional
        ``residual(X)`` returns B - A X for X as the caller will use it (say,
        rounded to a lower precision), where ``matmat`` is only an
        approximation of A (say, kernel entries rounded to float32). It
        replaces B - matmat(X) in the checks of the true residual, so CG
        refines X against it (mixed-precision refinement), and the reported
        residual and ``converged`` describe that X. After a failed check the
        recurrence aims at tol / 2; when a failed check falls less than a
        factor 2 below the one before, CG stops (``stalled``).

    Returns
    -------
    PCGResult
        ``x`` (n, t), ``converged``, ``n_iter`` and the history ``residuals``.
        Not converging is reported there, not raised.

    Notes
    -----
    Algorithm 11.5.1 of Golub & Van Loan (Matrix Computations, 4th ed.), run
    on the t columns side by side: one product with A per iteration for all
    of them, scalars per column. A column that has converged keeps its x and
    takes no further steps. The residual is updated by the recurrence, whose
    rounding errors grow with the iterations and ||x||: when it reaches
    ``tol``, convergence is confirmed on b - A x (one more product), and
    otherwise CG restarts from the true residual. After k iterations the
    A-norm error has shrunk by at least 2 ((sqrt(kappa) - 1) / (sqrt(kappa) +
    1))^k, kappa the condition number of the preconditioned matrix
    M^{-1/2} A M^{-1/2}.

    Examples
    --------
    >>> import numpy as np
    >>> from randla.kernels.pcg import block_pcg
    >>> A = np.diag(np.arange(1.0, 11.0))
    >>> r = block_pcg(lambda V: A @ V, np.ones((10, 2)), tol=1e-10)
    >>> r.converged, r.n_iter, bool(np.allclose(A @ r.x, 1.0))
    (True, 10, True)
    """
    xp = array_namespace(B)
    # B in units of each column's largest entry: the inner products below
    # square the entries, which would leave the float range far from 1.
    unit = xp.max(xp.abs(B), axis=0)
    unit = xp.where(unit > 0, unit, xp.ones_like(unit))
    B = B / unit[None, :]
    apply = precondition if precondition is not None else (lambda R: R)
    X = xp.zeros_like(B)
    R = B
    b_norm = xp.linalg.vector_norm(B, axis=0)
    scale = xp.where(b_norm > 0, b_norm, xp.ones_like(b_norm))

    def true_residual(X):
        if residual is None:
            return B - matmat(X)
        return residual(X * unit[None, :]) / unit[None, :]  # b - A x in B's units, as B was scaled

    rel = xp.linalg.vector_norm(R, axis=0) / scale
    history = [float(xp.max(rel))]
    Z = apply(R)
    P = Z
    rz = xp.sum(R * Z, axis=0)
    n_iter = 0
    # ``certified``: history[-1] is a true residual (or the start), not the recurrence's.
    target, failed_check, stalled, certified = tol, None, False, True
    while n_iter < max_iter and (history[-1] > tol or not certified):
        active = rel > target
        Q = matmat(P)
        pq = xp.sum(P * Q, axis=0)
        ok = active & (pq > 0)
        step = xp.where(ok, rz / xp.where(ok, pq, xp.ones_like(pq)), xp.zeros_like(pq))
        X = X + step[None, :] * P
        R = R - step[None, :] * Q
        n_iter += 1
        rel = xp.linalg.vector_norm(R, axis=0) / scale
        certified = float(xp.max(xp.where(active, rel, xp.zeros_like(rel)))) <= target
        if certified:
            # The recurrence drifts from b - A x by rounding that grows with the
            # iterations and ||x||: confirm on the true residual, and if it falls
            # short, go on from it with a fresh direction (beta = 0 below).
            R = true_residual(X)
            rel = xp.linalg.vector_norm(R, axis=0) / scale
            rz = xp.zeros_like(rz)
            checked = float(xp.max(rel))
            if residual is not None and checked > tol:
                # Against an accurate residual, a check that gains little on the last is at the
                # floor of the precision x is used in: more iterations cannot lower it. The
                # recurrence aims lower from then on, or a check just above tol would gain little.
                stalled = failed_check is not None and checked > failed_check / 2
                target, failed_check = tol / 2, checked
        history.append(float(xp.max(rel)))
        if stalled:
            break
        if not bool(xp.any(ok)):
            break  # breakdown: A (or M) is not positive definite on what is left
        Z = apply(R)
        rz_new = xp.sum(R * Z, axis=0)
        keep = active & (rz > 0)
        beta = xp.where(keep, rz_new / xp.where(keep, rz, xp.ones_like(rz)), xp.zeros_like(rz))
        P = Z + beta[None, :] * P
        rz = rz_new
    if n_iter and not certified:
        # Stopped short (max_iter or a breakdown) on the recurrence's residual:
        # report b - A x itself, which the recurrence can be far from by now.
        history[-1] = float(xp.max(xp.linalg.vector_norm(true_residual(X), axis=0) / scale))
    return PCGResult(X * unit[None, :], history[-1] <= tol, n_iter, np.asarray(history), stalled)


def nystrom_preconditioner(U, S, mu):
    """M^{-1} for A + mu I from a Nystrom approximation A ~ U diag(S) U^T.

    ``U`` (n, l) orthonormal, ``S`` (l,) descending and non-negative, ``mu``
    a float or one per column of the blocks V (NumPy, shape (t,)). Returns
    the callable V -> M^{-1} V with (Frangella, Tropp & Udell 2023,
    "Randomized Nystrom preconditioning", SIAM J. Matrix Anal. Appl.,
    Eq. 5.3)

        M^{-1} = (lambda_l + mu) U (diag(S) + mu I)^{-1} U^T + (I - U U^T),

    lambda_l = S[-1]. It costs 4 n l t flops per block V of t columns. With
    l >= 2 ceil(1.5 d_eff(mu)) + 1, d_eff(mu) = tr(A (A + mu I)^{-1}), the
    preconditioned matrix has condition number at most 28 with probability
    >= 0.99 [FTU2023, Thm. 5.1], so PCG converges in a few tens of iterations.

    Examples
    --------
    >>> import numpy as np
    >>> from randla.kernels.pcg import nystrom_preconditioner
    >>> U, S = np.eye(4)[:, :2], np.array([3.0, 1.0])
    >>> apply = nystrom_preconditioner(U, S, mu=1.0)
    >>> apply(np.eye(4)).diagonal().tolist()   # (1 + 1) / (S + 1), then 1
    [0.5, 1.0, 1.0, 1.0]
    """
    xp = array_namespace(U)
    lam = float(S[-1]) if S.shape[0] else 0.0
    mu = xp.asarray(np.reshape(mu, (1, -1)), dtype=S.dtype, device=device_of(S))
    factor = (lam + mu) / (S[:, None] + mu) - 1.0  # (l, 1) or (l, t)

    def apply(V):
        return V + U @ (factor * (U.mT @ V))

    return apply


class PSDFactor:
    """W + s I = L L^T for a small symmetric PSD W (m, m), and T = L^{-T}.

    The shift s = m eps max(diag W), eps the unit roundoff of the precision
    the entries of W were computed in, absorbs their rounding as in Falkon
    (Rudi, Carratino & Rosasco 2017, Alg. 1, "T = chol(K_MM + eps M I)").
    L = R^T from the Cholesky factor R, and ``T`` = R^{-1} (m, m), upper
    triangular. If Cholesky still fails, W is far from PSD numerically and
    L = V_r diag(w_r)^{1/2} comes from the eigenpairs with w > m eps max|w|:
    then ``T`` = V_r diag(w_r)^{-1/2} is (m, r) and L^{-1} is read as the
    pseudo-inverse T^T, so everything stays in range(W).

    ``solve(B)`` is L^{-1} B = T^T B (r rows), ``solve_t(G)`` is
    L^{-T} G = T G (m rows); ``rank`` is r (m when Cholesky worked).
    """

    def __init__(self, W, eps: float):
        xp = self.xp = array_namespace(W)
        m = W.shape[0]
        W = (W + W.mT) / 2
        self.shift = m * eps * max(float(xp.max(xp.linalg.diagonal(W))), 0.0)
        eye = xp.eye(m, dtype=W.dtype, device=device_of(W))
        R = _cholesky_upper(xp, W + self.shift * eye) if self.shift > 0 else None
        self.cholesky = R is not None
        if self.cholesky:
            self.T = solve_triangular(xp, R, eye)
        else:
            w, V = small_eigh(xp, W)
            keep = w > m * eps * max(float(xp.max(xp.abs(w))), np.finfo(np.float64).tiny)
            self.T = V[:, keep] / xp.sqrt(w[keep])[None, :]
        self.rank = int(self.T.shape[1])

    def solve(self, B):
        return self.T.mT @ B

    def solve_t(self, G):
        return self.T @ G


def spd_solver(xp, H):
    """The callable B -> H^{-1} B for a symmetric positive definite H.

    Cholesky; if rounding has made H numerically indefinite, the symmetric
    eigendecomposition with the eigenvalues clipped at a tiny positive floor.
    """
    H = (H + H.mT) / 2
    R = _cholesky_upper(xp, H)
    if R is not None:
        return lambda B: solve_triangular(xp, R, solve_triangular(xp, R, B, transpose=True))
    w, V = small_eigh(xp, H)
    floor = H.shape[0] * np.finfo(np.float64).eps * float(xp.max(xp.abs(w)))
    w = xp.clip(w, min=floor)
    return lambda B: V @ ((V.mT @ B) / w[:, None])


def solve_by_alpha(xp, solver_for, alpha, B):
    """Column j of B solved by ``solver_for(alpha_j)``: one solver per distinct alpha.

    ``alpha`` is a number (every column) or a NumPy array with one per column.
    """
    if np.ndim(alpha) == 0:
        return solver_for(float(alpha))(B)
    solvers = {a: solver_for(float(a)) for a in np.unique(alpha)}
    return xp.concat([solvers[a](B[:, j : j + 1]) for j, a in enumerate(alpha)], axis=1)


def falkon_preconditioner(factor: PSDFactor, C_sample, n: int, alpha):
    """M^{-1} for H = C^T C + alpha W from a uniform sample of the rows of C.

    ``factor`` is W + s I = L L^T (:class:`PSDFactor`); ``C_sample`` (p, m)
    holds p rows of C = k(X, landmarks) drawn uniformly from the n, so that
    (n / p) C_sample^T C_sample is an unbiased estimate of C^T C. With
    E = C_sample L^{-T} and A^T A = (n / p) E^T E + alpha I (Cholesky),

        H ~ L A^T A L^T,    M^{-1} = L^{-T} A^{-1} A^{-T} L^{-1}.

    When the sample is the landmarks themselves (C_sample = W, p = m) this
    is Falkon's preconditioner (Rudi, Carratino & Rosasco 2017, "FALKON: an
    optimal large scale kernel method", Alg. 1, B = T^{-1} A^{-1} / sqrt(n)
    with T^T T = K_MM and A^T A = T T^T / M + lambda I; here alpha = n lambda
    and the 1 / n is left out of both sides). Setting it up costs
    O(p m^2 + m^3) per distinct alpha (a float, or one per column of the
    blocks), applying it O(m^2 t) per block of t columns.

    Examples
    --------
    >>> import numpy as np
    >>> from randla.kernels.pcg import PSDFactor, falkon_preconditioner
    >>> C = np.random.default_rng(0).random((50, 4)); W = C[:4]
    >>> W = W @ W.T + np.eye(4)
    >>> apply = falkon_preconditioner(PSDFactor(W, 1e-16), C, 50, alpha=1.0)
    >>> H = C.T @ C + W                  # the whole C as the sample: exact
    >>> bool(np.allclose(apply(H), np.eye(4)))
    True
    """
    xp = array_namespace(C_sample)
    p = C_sample.shape[0]
    E = C_sample @ factor.T
    core = (n / p) * (E.mT @ E)
    eye = xp.eye(core.shape[0], dtype=core.dtype, device=device_of(core))
    solvers = {}

    def solver_for(a):
        if a not in solvers:
            solvers[a] = spd_solver(xp, core + a * eye)
        return solvers[a]

    def apply(V):
        return factor.solve_t(solve_by_alpha(xp, solver_for, alpha, factor.solve(V)))

    return apply


# -- kernel blocks -------------------------------------------------------------


def _itemsize(dtype) -> int:
    return np.dtype(str(dtype).split(".")[-1]).itemsize


def rows_per_block(memory_limit: int, n_cols: int, dtype, kernel: Kernel, cast: bool = True) -> int:
    """Rows of a kernel block k(A_b, B) whose temporaries fit in memory_limit."""
    # Beside the kernel's temporaries: the float64 copy and its product with T.
    per_entry = kernel.temporaries * _itemsize(dtype) + (8 if cast else 0)
    return max(1, memory_limit // (per_entry * max(n_cols, 1)))


def take_rows(xp, X, idx: np.ndarray):
    """The rows idx (NumPy int64) of X (dense, or SciPy sparse), on X's device."""
    if is_sparse(X):
        return X[idx]
    return xp.take(X, xp.asarray(idx, device=device_of(X)), axis=0)


def as_float64(xp, A):
    return xp.astype(A, xp.float64, copy=False)


class KernelRows:
    """C = diag(row_scale) k(A, B) (n, m) seen in blocks of rows, in float64.

    ``row_scale`` (n,), float64 in A's library, or None for no scaling: the
    square roots of sample weights, which turn a weighted least-squares fit
    into a plain one. With ``cache`` (for solvers that make many passes), C
    is stored whole when it takes at most half of ``memory_limit`` (filled
    block by block, so the peak stays within the limit); otherwise every
    product evaluates the blocks again, each within ``memory_limit`` bytes.
    """

    def __init__(self, kernel: Kernel, xp, A, B, memory_limit: int, *, cache: bool, row_scale=None):
        self.kernel, self.xp, self.A, self.B = kernel, xp, A, B
        self.row_scale = row_scale
        self.shape = (int(A.shape[0]), int(B.shape[0]))
        n, m = self.shape
        self.cache = None
        if cache and n * m * 8 <= memory_limit // 2:
            self.step = rows_per_block(memory_limit // 2, m, A.dtype, kernel)
            cache = xp.empty((n, m), dtype=xp.float64, device=device_of(A))
            for sl, block in self.blocks():
                cache[sl] = block
            self.cache = cache
        else:
            self.step = rows_per_block(memory_limit, m, A.dtype, kernel)

    def blocks(self):
        if self.cache is not None:
            yield slice(0, self.shape[0]), self.cache
            return
        xp, B = self.xp, self.kernel.prepare(self.xp, self.B)  # once per pass
        for start in range(0, self.shape[0], self.step):
            sl = slice(start, min(start + self.step, self.shape[0]))
            block = as_float64(xp, self.kernel(xp, self.A[sl], B))
            yield sl, block if self.row_scale is None else self.row_scale[sl, None] * block

    def matmat(self, V):
        """C @ V."""
        parts = [block @ V for _, block in self.blocks()]
        return self.xp.concat(parts) if len(parts) > 1 else parts[0]

    def rmatmat(self, U):
        """C^T @ U."""
        total = None
        for sl, block in self.blocks():
            part = block.mT @ U[sl]
            total = part if total is None else total + part
        return total

    def normal(self, V):
        """C^T C V, in one pass."""
        total = None
        for _, block in self.blocks():
            part = block.mT @ (block @ V)
            total = part if total is None else total + part
        return total

    def gram(self, U, T):
        """(C T)^T (C T) and (C T)^T U, in one pass."""
        G = g = None
        for sl, block in self.blocks():
            B = block @ T
            G_b, g_b = B.mT @ B, B.mT @ U[sl]
            G, g = (G_b, g_b) if G is None else (G + G_b, g + g_b)
        return G, g


class RowsOperator(Operator):
    """A symmetric S k(X, X) S as an :class:`Operator` over :class:`KernelRows`.

    S = diag(row_scale) of the rows (the identity when it is None). Hermitian
    by construction, and its trace is the scaled kernel diagonal: the Nystrom
    preconditioner then takes its one pass over K and no more.
    """

    hermitian = True

    def __init__(self, rows: KernelRows):
        self.rows = rows
        self.shape = rows.shape
        self.xp = rows.xp
        self.device = device_of(rows.A)
        self.dtype = self.input_dtype = rows.xp.float64

    def trace(self) -> float:
        xp, scale = self.xp, self.rows.row_scale
        diagonal = as_float64(xp, self.rows.kernel.diagonal(xp, self.rows.A))
        return float(xp.sum(diagonal if scale is None else scale * scale * diagonal))

    def matmat(self, X):
        scale = self.rows.row_scale
        return self.rows.matmat(X if scale is None else scale[:, None] * X)

    def rmatmat(self, Y):
        return self.matmat(Y)
