"""Exact kernel ridge regression of a few thousand points, from the formed kernel matrix.

Below a few thousand points the n x n kernel matrix takes a few tens of MB
and its Cholesky factorisation a fraction of a second: the exact solution is
then cheaper than a good approximation, and is scikit-learn's
``KernelRidge`` to rounding. :class:`randla.KernelRidge` takes this path by
default at such sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..backend import _cholesky_upper, device_of, small_eigh, solve_triangular
from ._krr_inputs import check_alpha, check_targets, check_weights
from .krr import KRRResult, _times_alpha
from .operator import DEFAULT_MEMORY_LIMIT, kernel_operator
from .pcg import as_float64, solve_by_alpha, spd_solver

__all__ = ["dense_kernel_ridge"]


def dense_kernel_ridge(
    X,
    y,
    *,
    kernel="rbf",
    alpha: float = 1.0,
    sample_weight=None,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    **kernel_params,
) -> KRRResult:
    """Exact kernel ridge regression by a Cholesky factorisation of K + alpha I.

    Solves (K + alpha I) c = y, K = k(X, X), as scikit-learn's
    ``KernelRidge`` does; with sample weights w, as it does too,
    (D^{1/2} K D^{1/2} + alpha I) c' = D^{1/2} y with D = diag(w) and
    c = D^{1/2} c'. The kernel matrix is formed: for n up to a few thousand
    (n = 2000 takes 32 MB in float64 and about 0.1 s to factor).

    Parameters
    ----------
    X : array, shape (n, d)
        Training points: NumPy array, torch tensor (any device) or SciPy
        sparse matrix (for the kernels :func:`kernel_operator` allows).
    y : array, shape (n,) or (n, t)
        Targets.
    kernel, alpha, sample_weight, **kernel_params
        As in :func:`randla.nystrom_kernel_ridge`.
    memory_limit : int, default 256 MiB
        Bytes of kernel blocks ``predict`` holds at a time (the fit itself
        holds K whole, and a few matrices of its size).

    Returns
    -------
    KRRResult
        ``dual_coef`` (n,) or (n, t), ``centers`` = X, ``solver="dense"``,
        ``residuals`` the relative residual of the solve. With one ``alpha``
        also the Gaussian-process posterior: ``predict(X_new,
        return_std=True)`` and ``log_marginal_likelihood``, those of
        scikit-learn's ``GaussianProcessRegressor(kernel, alpha=alpha,
        optimizer=None)`` (noise variance alpha / w_i with weights).

    Raises
    ------
    ValueError, TypeError
        As :func:`randla.nystrom_kernel_ridge`.

    Notes
    -----
    O(n^2 d) to form K, O(n^3 / 3) to factor G = K + alpha I = R^T R
    (one factorisation per distinct alpha), O(n^2 t) to solve. Where rounding
    leaves G numerically indefinite (alpha below eps ||K||), its
    eigendecomposition with the eigenvalues clipped at alpha serves instead.
    The posterior variance of f(x) is k(x, x) - |R^{-T} D^{1/2} k(X, x)|^2,
    one triangular solve per point predicted (O(n^2)), and the evidence
    -(y^T G^{-1} y + log det G + n log 2 pi) / 2, corrected for the weights
    (see :func:`randla.nystrom_kernel_ridge`).

    Examples
    --------
    >>> from randla.testing import kernel_regression
    >>> from randla.kernels import dense_kernel_ridge
    >>> X, y = kernel_regression(500, d=5, noise=0.1, rng=0)
    >>> model = dense_kernel_ridge(X, y, alpha=0.1, gamma=0.1)
    >>> model.dual_coef.shape, model.predict(X[:3]).shape
    ((500,), (3,))
    """
    op = kernel_operator(X, kernel=kernel, memory_limit=memory_limit, **kernel_params)
    xp, X, n = op.xp, op.X, op.shape[0]
    Y, one_d = check_targets(y, op)
    alpha = check_alpha(alpha, Y.shape[1])
    scale, weighted = check_weights(sample_weight, op)
    K = as_float64(xp, op.block())  # a new array: changed in place below
    if scale is not None:  # the weighted fit is the plain one of D^{1/2} K D^{1/2} and D^{1/2} y
        K, Y = scale[:, None] * K * scale[None, :], scale[:, None] * Y
    posterior = evidence = None
    if np.ndim(alpha) == 0:
        diagonal = xp.arange(n, device=device_of(K))
        K[diagonal, diagonal] += alpha  # G = K + alpha I without a second n x n matrix
        posterior = _factor(xp, K, alpha, scale)
        coef = posterior.solve(xp, Y)
        evidence = posterior.log_evidence(xp, Y, coef, alpha, weighted.size)
        residual = K @ coef - Y
    else:
        eye = xp.eye(n, dtype=K.dtype, device=device_of(K))
        coef = solve_by_alpha(xp, lambda a: spd_solver(xp, K + a * eye), alpha, Y)
        residual = K @ coef + _times_alpha(xp, alpha, coef) - Y
    Y_norm = xp.linalg.vector_norm(Y, axis=0)
    residual = xp.linalg.vector_norm(residual, axis=0) / xp.where(Y_norm > 0, Y_norm, 1.0)
    residual = float(xp.max(residual))
    if scale is not None:
        coef = scale[:, None] * coef
    coef = xp.astype(coef, X.dtype, copy=False)
    return KRRResult(
        coef[:, 0] if one_d else coef,
        X,
        np.arange(n, dtype=np.int64),
        op.kernel,
        alpha,
        "dense",
        None,
        True,
        0,
        np.asarray([residual]),
        op.memory_limit,
        evidence,
        posterior,
    )


@dataclass(frozen=True)
class _DensePosterior:
    """G^{-1} = W W^T for G = D^{1/2} K D^{1/2} + alpha I, kept for the solve,
    the evidence and the posterior variance.

    W = R^{-1} from the Cholesky factor G = R^T R (``triangular``), or
    V diag(w)^{-1/2} from the clipped eigendecomposition.
    """

    factor: object
    triangular: bool
    log_det: float
    scale: object = None  # sqrt(w), or None without weights

    def whiten(self, xp, B):
        """W^T B."""
        if self.triangular:
            return solve_triangular(xp, self.factor, B, transpose=True)
        return self.factor.mT @ B

    def solve(self, xp, B):
        """G^{-1} B."""
        if self.triangular:
            return solve_triangular(xp, self.factor, self.whiten(xp, B))
        return self.factor @ self.whiten(xp, B)

    def log_evidence(self, xp, Y, coef, alpha: float, n_fitted: int) -> float:
        """log N(y; 0, K + alpha D^{-1}) over the points of positive weight, summed over targets.

        Y and coef = G^{-1} Y are the weighted targets and solution. A point
        of weight 0 adds alpha to G's spectrum and nothing to the model:
        log det(K_P + alpha D_P^{-1}) = log det G - (n - n_P) log alpha - sum_P log w.
        """
        n, t = Y.shape
        log_det = self.log_det - (n - n_fitted) * math.log(alpha)
        evidence = -0.5 * (float(xp.sum(Y * coef)) + t * (log_det + n_fitted * math.log(2 * math.pi)))
        if self.scale is not None:
            evidence += t * float(xp.sum(xp.log(self.scale[self.scale > 0])))
        return evidence

    def __call__(self, xp, C):
        """k(x, X) (K + alpha D^{-1})^{-1} k(X, x) for each row of C = k(X_new, X), float64:
        what the training data explain of each point's prior variance."""
        S = C if self.scale is None else C * self.scale[None, :]
        V = self.whiten(xp, S.mT)
        return xp.sum(V * V, axis=0)


def _factor(xp, G, alpha: float, scale) -> _DensePosterior:
    """G's Cholesky factor, or its clipped eigendecomposition. Cholesky reads one
    triangle of G and the eigendecomposition its symmetric part, so the
    rounding between k(x, y) and k(y, x) needs no symmetrised copy."""
    R = _cholesky_upper(xp, G)
    if R is not None:
        return _DensePosterior(R, True, 2 * float(xp.sum(xp.log(xp.linalg.diagonal(R)))), scale)
    w, V = small_eigh(xp, G)  # rounding made G indefinite; its eigenvalues are at least alpha
    w = xp.clip(w, min=alpha)
    return _DensePosterior(V / xp.sqrt(w)[None, :], False, float(xp.sum(xp.log(w))), scale)
