"""Kernel ridge regression at scale, without forming the kernel matrix.

Kernel ridge regression (KRR) fits f(x) = sum_j c_j k(x, z_j) by minimising

    ||y - f(X)||_2^2 + alpha ||f||_H^2,

the objective of scikit-learn's ``KernelRidge`` (no intercept): with all n
points as centres the solution is c = (K + alpha I)^{-1} y, K = k(X, X).
Forming K takes n^2 memory and solving with it n^3 time; instead

- :func:`nystrom_kernel_ridge` keeps f in the span of m landmarks
  (Nystrom KRR; Rudi, Camoriano & Rosasco 2015) and assembles the m x m
  normal equations in one streamed pass over X, or solves them by Falkon's
  preconditioned CG (Rudi, Carratino & Rosasco 2017) - O(n m) time per pass
  and O(m^2) memory;
- :func:`kernel_ridge` solves the exact n x n system by conjugate gradients,
  with products by the implicit kernel matrix and the randomized Nystrom
  preconditioner of Frangella, Tropp & Udell (2023).

Both return a :class:`KRRResult`, whose ``predict`` streams over blocks too.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np

from .._results import Unpackable
from .._validate import check_choice, check_int, check_rng, check_tol
from ..backend import _cholesky_upper, device_of, finfo_eps, small_eigh, small_svd, solve_triangular
from ._krr_inputs import check_alpha, check_count, check_targets, check_weights, choose_landmarks
from .functions import Kernel, is_sparse
from .landmarks import METHODS
from .landmarks import landmarks as select_landmarks
from .operator import DEFAULT_MEMORY_LIMIT, KernelOperator, as_dtype, check_points, kernel_operator, points_namespace
from .pcg import (
    KernelRows,
    PSDFactor,
    RowsOperator,
    as_float64,
    block_pcg,
    falkon_preconditioner,
    nystrom_preconditioner,
    rows_per_block,
    solve_by_alpha,
    spd_solver,
    take_rows,
)

__all__ = ["KRRResult", "nystrom_kernel_ridge", "kernel_ridge"]

#: What ``tol`` bounds for the iterative solvers.
_RESIDUAL = "the relative residual of the linear system"


@dataclass(frozen=True, repr=False)
class KRRResult(Unpackable):
    """A fitted kernel ridge regressor f(x) = k(x, centers) @ dual_coef.

    Unpacks as ``dual_coef, centers``.

    Attributes
    ----------
    dual_coef : array, shape (m,) or (m, t)
        Coefficients of the centres, in the dtype of X; 1-D when y was.
    centers : array, shape (m, d)
        The landmark points (Nystrom) or all of X (:func:`kernel_ridge`).
    indices : numpy.ndarray of int64, shape (m,)
        Rows of X that are the centres.
    kernel : Kernel
        The kernel and its parameters.
    alpha : float or numpy.ndarray
        The ridge penalty, or one per target (shape (t,)).
    solver : str
        ``"direct"``, ``"pcg"`` or ``"dense"`` (:func:`randla.kernels.dense_kernel_ridge`).
    preconditioner : str or None
        ``"falkon"``, ``"nystrom"``, a landmark method name, or None.
    converged : bool
        The solver reached its tolerance (always True for ``"direct"``).
    n_iter : int
        CG iterations (0 for ``"direct"``).
    residuals : numpy.ndarray
        Relative residual norms of the linear system solved: after each CG
        iteration (``residuals[0] = 1``), or the single residual of the
        direct solve. With sample weights that system is the weighted one
        (see ``tol`` of :func:`kernel_ridge` and Notes of
        :func:`nystrom_kernel_ridge`). The last one is that of the returned
        coefficients.
    memory_limit : int
        Bytes of kernel blocks ``predict`` may hold at a time.
    log_marginal_likelihood : float or None
        Nystrom KRR by the direct solver, or dense exact KRR, with one
        ``alpha``: the evidence log p(y) of the Gaussian-process model it is
        the posterior mean of (see :func:`nystrom_kernel_ridge`), summed over
        targets; else None.
    """

    dual_coef: object
    centers: object
    indices: np.ndarray
    kernel: Kernel
    alpha: float | np.ndarray
    solver: str
    preconditioner: str | None
    converged: bool
    n_iter: int
    residuals: np.ndarray
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    log_marginal_likelihood: float | None = None
    # (T, T B) of _posterior: the posterior variance of f(x) from k(S, x).
    _posterior: object = dataclasses.field(default=None, repr=False)
    _unpack = ("dual_coef", "centers")

    @property
    def n_centers(self) -> int:
        return int(self.centers.shape[0])

    def predict(self, X, return_std: bool = False):
        """f(X) = k(X, centers) @ dual_coef, in blocks of rows of X.

        ``X`` (p, d) in the library and on the device of the training points.
        Returns shape (p,) or (p, t), as y had. At most ``memory_limit``
        bytes of kernel entries are held at a time.

        ``return_std=True`` also returns the posterior standard deviation of
        f at each point, as scikit-learn's ``GaussianProcessRegressor.predict``
        does with ``alpha`` as the noise variance (the noise itself is not
        included: add ``alpha`` to the variance for that of a new
        observation). Its shape is that of the predictions: (p,), or (p, t)
        for 2-D y, every column the same (one ``alpha``, one kernel), as
        scikit-learn gives one per target. Only for Nystrom KRR by the
        direct solver with one ``alpha``; see :func:`nystrom_kernel_ridge`
        (and for exact KRR formed densely, :func:`randla.kernels.dense_kernel_ridge`).
        """
        if return_std and self._posterior is None:
            raise ValueError(
                "return_std=True needs the Gaussian-process posterior, which only nystrom_kernel_ridge with "
                "solver='direct' and dense_kernel_ridge keep, with a single alpha; this model was fitted "
                + ("with one alpha per target." if np.ndim(self.alpha) else f"with solver={self.solver!r}.")
            )
        xp = points_namespace(self.centers)
        X = check_points(X, "X")
        if points_namespace(X) is not xp:
            raise TypeError(
                f"X must come from the same array library as the training points "
                f"({xp.__name__.split('.')[-1]}); got {type(X).__name__}."
            )
        if X.shape[1] != self.centers.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features but the model was fitted on {self.centers.shape[1]}."
            )
        self.kernel.check_points(xp, X, "X")
        X = as_dtype(xp, X, self.centers.dtype)
        coef = self.dual_coef if self.dual_coef.ndim == 2 else self.dual_coef[:, None]
        step = rows_per_block(self.memory_limit, self.n_centers, X.dtype, self.kernel, cast=return_std)
        parts, stds, centers = [], [], self.kernel.prepare(xp, self.centers)
        for i in range(0, X.shape[0], step):
            C = self.kernel(xp, X[i : i + step], centers)
            parts.append(C @ coef)
            if return_std:
                stds.append(self._std(xp, X[i : i + step], C))
        out = xp.concat(parts) if len(parts) > 1 else parts[0]
        out = out if self.dual_coef.ndim == 2 else out[:, 0]
        if not return_std:
            return out
        std = xp.astype(xp.concat(stds) if len(stds) > 1 else stds[0], X.dtype)
        # One std for all targets (they share the kernel and alpha); a column per target, as scikit-learn's.
        return out, (xp.tile(std[:, None], (1, out.shape[1])) if out.ndim == 2 else std)

    def _std(self, xp, X, C):
        C = as_float64(xp, C)
        prior = as_float64(xp, self.kernel.diagonal(xp, X))
        if callable(self._posterior):  # exact KRR (dense_kernel_ridge): the variance the data explain
            variance = prior - self._posterior(xp, C)
        else:
            T, TB = self._posterior
            variance = prior - xp.sum((C @ T) ** 2, axis=1) + self.alpha * xp.sum((C @ TB) ** 2, axis=1)
        return xp.sqrt(xp.clip(variance, min=0))


def nystrom_kernel_ridge(
    X,
    y,
    *,
    kernel="rbf",
    alpha: float = 1.0,
    n_components="auto",
    landmarks="rpcholesky",
    candidates=None,
    solver: str = "direct",
    tol: float | None = None,
    max_iter: int | None = None,
    sample_weight=None,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    rng=None,
    **kernel_params,
) -> KRRResult:
    """Kernel ridge regression restricted to m landmarks (Nystrom KRR).

    Finds f(x) = k(x, S) beta, S the m landmark points, minimising
    sum_i w_i (y_i - f(x_i))^2 + alpha ||f||_H^2 (w_i = 1 without sample
    weights): with C = k(X, S) (n, m), W = k(S, S) (m, m) and
    D = diag(w), beta solves

        (C^T D C + alpha W) beta = C^T D y.

    Parameters
    ----------
    X : array, shape (n, d)
        Training points: NumPy array, torch tensor (any device) or SciPy
        sparse matrix (for the kernels :func:`kernel_operator` allows).
    y : array, shape (n,) or (n, t)
        Targets; one column per output. Converted to X's library.
    kernel : str or callable, default "rbf"
        As in :func:`randla.kernels.kernel_operator`; parameters go in
        ``**kernel_params`` (``gamma``, ``bandwidth``, ...).
    alpha : float or array of shape (t,), default 1.0
        Ridge penalty (scikit-learn's ``KernelRidge(alpha=...)``), > 0; an
        array gives each target (column of y) its own.
    n_components : int or "auto", default "auto"
        Number m of landmarks. ``"auto"``: min(n, max(100, ceil(sqrt(n)))),
        the order m ~ sqrt(n) that keeps the statistical rate of exact KRR
        (Rudi, Camoriano & Rosasco 2015, Thm. 2). Must match the length of
        an explicit index array. A selection method keeps fewer where the
        kernel matrix has a lower numerical rank (see :func:`landmarks`).
    landmarks : str or array of int, default "rpcholesky"
        How to choose S: one of the methods (see
        :func:`randla.kernels.landmarks`; ``"uniform"`` samples rows without
        replacement), or the row indices of X to use.
    candidates : int, optional
        Landmarks chosen by name are chosen among this many rows of X drawn
        uniformly without replacement: selecting by a method such as
        RPCholesky keeps an (n_candidates, m) factor, which for all 10^6
        points and m = 1000 would take 8 GB. Default (None):
        min(n, max(100_000, m)). Not allowed with explicit indices.
    solver : {"direct", "pcg"}, default "direct"
        ``"direct"``: accumulate the m x m normal equations over blocks of
        rows of X and solve them (O(n m^2 + m^3) time, one pass over X).
        ``"pcg"``: Falkon's preconditioned CG, one pass over X per iteration
        (O(n m d) each) and no m x m product C^T C; better when m is large.
    tol : float, optional
        ``"pcg"`` only: relative residual to stop at (default 1e-6), that of
        the normal equations above, ||C^T D y - (C^T D C + alpha W) beta||
        <= tol ||C^T D y||.
    max_iter : int, optional
        ``"pcg"`` only: at most this many iterations (default 100).
    sample_weight : array, shape (n,), optional
        Non-negative weight w_i of each point's squared error, as in
        scikit-learn's ``KernelRidge.fit``; an integer weight counts the
        point that many times. Landmarks chosen by a method name are chosen
        among the points of positive weight.
    memory_limit : int, default 256 MiB
        Bytes of kernel blocks held at a time. C is never stored whole unless
        it takes at most half of this (then ``"pcg"`` reuses it). The factor
        of a landmark method is apart (see ``candidates`` and Notes).
    rng : None, int, SeedSequence, BitGenerator or Generator
        Randomness of the candidates, the landmarks and the preconditioner.
    **kernel_params
        Parameters of the kernel.

    Returns
    -------
    KRRResult
        ``predict(X_new)``, the landmarks (``centers``, ``indices``), the
        coefficients beta (``dual_coef``) and what the solver did; with the
        direct solver and one ``alpha``, also the Gaussian-process posterior
        (``predict(X_new, return_std=True)``, ``log_marginal_likelihood``).

    Raises
    ------
    ValueError
        Mismatched lengths of X and y, NaN or Inf, alpha <= 0, n_components
        outside [1, n] (n: the points of positive weight), invalid indices or
        candidates, ``tol``/``max_iter`` with the direct solver, negative or
        all-zero sample weights.
    TypeError
        Non-array X or y.

    Notes
    -----
    With W + s I = L L^T (Cholesky; s = m eps max(diag W) absorbs rounding,
    as in Falkon) and T = L^{-T}, the change of variables gamma = L^T beta
    turns the system into

        (T^T C^T C T + alpha I) gamma = T^T C^T y,

    whose matrix has eigenvalues in [alpha, alpha + n max k(x, x)]: well
    conditioned for any W. If Cholesky fails, T comes from the eigenpairs of
    W (pseudo-inverse). Each block of rows C_b of C is transformed to C_b T
    before its Gram matrix and C_b^T y_b are accumulated (in float64; C is
    never stored): forming C^T C first and transforming it afterwards would
    magnify its rounding errors by ||T||^2 ~ 1 / s, large when W is nearly
    singular (close landmarks). The solve takes O(m^2 + m t + memory_limit)
    memory beside X itself; time O(n m (d + m) + m^3). Choosing the
    landmarks by a method name other than ``"uniform"`` (the default
    ``"rpcholesky"`` included) holds more before it: the method's (n_c, m)
    partial Cholesky factor in X's dtype, n_c the ``candidates`` (default
    min(n, max(100_000, m))), which ``memory_limit`` does not cap: 122 MiB
    at n = 32_000, m = 500 and 1.6 GB at m = 2000 in float64. Uniform or
    given landmarks keep the O(m^2 + m t + memory_limit) bound.

    As a Gaussian process: with the noise variance sigma^2 as ``alpha``,
    f(x) is the posterior mean of y_i = f(x_i) + e_i, e_i ~ N(0, alpha / w_i),
    under the prior f ~ GP(0, Q), Q = k(., S) W^+ k(S, .) the Nystrom
    kernel: the projected-process (DTC) approximation of GP regression
    (Seeger, Williams & Lawrence 2003; Quinonero-Candela & Rasmussen 2005,
    Sec. 5). The direct solver also keeps its posterior variance of f(x),
    k(x, x) - Q(x, x) + sigma^2 k(x, S) (sigma^2 W + C^T D C)^{-1} k(S, x),
    and its evidence log N(y; 0, Q(X, X) + sigma^2 D^{-1}), maximised to
    choose kernel parameters, at the cost of two m x m matrices and an
    m x m triangular inverse. With every point a landmark this is exact GP
    regression: scikit-learn's ``GaussianProcessRegressor(kernel,
    alpha=sigma^2, optimizer=None)``, to rounding. In float32 the variance
    and the evidence carry the rounding of the kernel entries, magnified by
    the conditioning of W and, for the evidence, by the size of y: compute
    in float64 (and centre y) where it matters.

    ``"pcg"`` runs CG on the same system with the preconditioner of
    :func:`randla.kernels.pcg.falkon_preconditioner` (Rudi, Carratino &
    Rosasco 2017, Alg. 1), built from m rows of C drawn uniformly. With
    m = n landmarks the result is exact KRR. With m ~ sqrt(n) log n uniform
    landmarks (fewer by leverage or RPCholesky) the excess risk is of the
    order of exact KRR's (Rudi, Camoriano & Rosasco 2015, Thms. 1-2).

    Examples
    --------
    >>> import numpy as np
    >>> from randla.testing import kernel_regression
    >>> from randla.kernels import nystrom_kernel_ridge
    >>> X, y = kernel_regression(2000, d=5, noise=0.1, rng=0)
    >>> model = nystrom_kernel_ridge(X, y, alpha=0.1, n_components=200,
    ...                              landmarks="uniform", rng=0)
    >>> model.dual_coef.shape, model.predict(X[:3]).shape
    ((200,), (3,))
    """
    op = kernel_operator(X, kernel=kernel, memory_limit=memory_limit, **kernel_params)
    xp, X = op.xp, op.X
    Y, one_d = check_targets(y, op)
    alpha = check_alpha(alpha, Y.shape[1])
    solver = check_choice("solver", solver, ("direct", "pcg"))
    if solver == "direct" and (tol is not None or max_iter is not None):
        raise ValueError(
            "`tol` and `max_iter` apply to solver='pcg' only; the direct solver has no iterations. "
            "Leave them out, or pass solver='pcg'."
        )
    tol = check_tol(1e-6 if tol is None else tol, _RESIDUAL)
    max_iter = check_int("max_iter", 100 if max_iter is None else max_iter, 1)
    scale, weighted = check_weights(sample_weight, op)
    gen = check_rng(rng)
    idx = choose_landmarks(op, landmarks, n_components, candidates, weighted, gen)
    centers = take_rows(xp, X, idx)
    if idx.size == 0:
        # Selection found k(x, x) = 0 at every point, so every k(x, .) is 0 in
        # the RKHS and f = 0 exactly: there is no system to solve.
        beta = xp.zeros((0, Y.shape[1]), dtype=xp.float64, device=device_of(X))
        info = (solver, "falkon" if solver == "pcg" else None, True, 0, np.zeros(1))
        posterior = None
        if solver == "direct" and np.ndim(alpha) == 0:  # f = 0 a priori too: the evidence of noise alone
            empty = xp.zeros((0, 0), dtype=xp.float64, device=device_of(X))
            Y = Y if scale is None else scale[:, None] * Y
            posterior = _posterior(xp, empty, empty, 0.0, beta, beta, Y, alpha, weighted.size, scale)
        return _result(xp, X, beta, one_d, centers, idx, op, alpha, info, posterior)
    W = as_float64(xp, op.kernel(xp, centers, centers))
    factor = PSDFactor(W, finfo_eps(xp, X.dtype))
    rows = KernelRows(op.kernel, xp, X, centers, op.memory_limit, cache=solver == "pcg", row_scale=scale)
    if scale is not None:
        Y = scale[:, None] * Y  # the weighted fit is the plain one of D^{1/2} C and D^{1/2} y
    if solver == "direct":
        beta, residual, posterior = _solve_direct(xp, rows, factor, Y, alpha, weighted.size, scale)
        info = ("direct", None, True, 0, np.asarray([residual]))
        return _result(xp, X, beta, one_d, centers, idx, op, alpha, info, posterior)
    else:
        # Rows of zero weight add nothing to C^T D C: the sample skips them.
        sample = np.sort(gen.choice(weighted, size=min(len(idx), weighted.size), replace=False))
        C_sample = as_float64(xp, op.kernel(xp, take_rows(xp, X, sample), centers))
        if scale is not None:
            C_sample = take_rows(xp, scale, sample)[:, None] * C_sample
        precondition = falkon_preconditioner(factor, C_sample, weighted.size, alpha)
        W_s = W + factor.shift * xp.eye(W.shape[0], dtype=W.dtype, device=device_of(W))
        r = block_pcg(
            lambda V: rows.normal(V) + _times_alpha(xp, alpha, W_s @ V),
            rows.rmatmat(Y),
            precondition=precondition,
            tol=tol,
            max_iter=max_iter,
        )
        beta = r.x
        info = ("pcg", "falkon", r.converged, r.n_iter, r.residuals)
    return _result(xp, X, beta, one_d, centers, idx, op, alpha, info)


def kernel_ridge(
    X,
    y,
    *,
    kernel="rbf",
    alpha: float = 1.0,
    preconditioner: str | None = "nystrom",
    rank="auto",
    tol: float = 1e-6,
    max_iter: int = 200,
    sample_weight=None,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    rng=None,
    **kernel_params,
) -> KRRResult:
    """Exact kernel ridge regression by preconditioned conjugate gradients.

    Solves (K + alpha I) c = y, K = k(X, X), with products by the implicit
    kernel matrix (never stored unless it fits in half of ``memory_limit``);
    f(x) = k(x, X) @ c is scikit-learn's ``KernelRidge`` solution. With
    sample weights w it solves, as scikit-learn does, the system
    (D^{1/2} K D^{1/2} + alpha I) c' = D^{1/2} y, D = diag(w), and
    c = D^{1/2} c'.

    Parameters
    ----------
    X : array, shape (n, d)
        Training points: NumPy array, torch tensor (any device) or SciPy
        sparse matrix (for the kernels :func:`kernel_operator` allows).
    y : array, shape (n,) or (n, t)
        Targets; the t columns are solved together, one product with K per
        iteration for all of them.
    kernel, alpha, memory_limit, **kernel_params
        As in :func:`nystrom_kernel_ridge`.
    preconditioner : str or None, default "nystrom"
        ``"nystrom"``: the randomized Nystrom approximation
        K ~ U diag(S) U^T of :func:`randla.nystrom` (one pass over K);
        a landmark method name (``"rpcholesky"``, ...): the column Nystrom
        approximation K ~ F F^T of :func:`randla.kernels.landmarks`, from
        ``rank`` columns of K only (cheaper); None: plain CG.
    rank : int or "auto", default "auto"
        Rank l of the preconditioner; ``"auto"``: min(n, 100). CG converges
        in a few tens of iterations once l exceeds about 1.5 times the
        effective dimension tr(K (K + alpha I)^{-1}) (Frangella, Tropp & Udell
        2023, Thm. 5.1), which grows as alpha shrinks.
    tol : float, default 1e-6
        Stop when ||y_j - (K + alpha I) c_j|| <= tol ||y_j|| for every column.
        With sample weights it bounds the system solved instead:
        ||D^{1/2} y_j - (D^{1/2} K D^{1/2} + alpha I) c'_j|| <=
        tol ||D^{1/2} y_j||, c = D^{1/2} c' (what ``residuals`` and
        ``converged`` describe too). For X below float64, the test is on the
        coefficients as returned (rounded to X's dtype) with K evaluated in
        float64, CG refining against it: the rounding leaves about 1e-6 to
        1e-4 in float32, more for small ``alpha``, and where tol is below
        that, ``converged`` is False (with a warning where the residual
        stops falling before ``max_iter``); pass float64 X then.
    max_iter : int, default 200
        At most this many iterations, one product with K each (plus one per
        check of the true residual, see :func:`block_pcg`; below float64
        that check evaluates K in float64, from a float64 copy of X).
    sample_weight : array, shape (n,), optional
        Non-negative weight of each point's squared error, as in
        :func:`nystrom_kernel_ridge`.
    rng : None, int, SeedSequence, BitGenerator or Generator
        Randomness of the preconditioner.

    Returns
    -------
    KRRResult
        ``dual_coef`` (n,) or (n, t), ``centers`` = X, ``converged``,
        ``n_iter``, ``residuals``. Not converging within ``max_iter`` is
        reported in ``converged``, not raised.

    Notes
    -----
    The preconditioner is M^{-1} = (lambda_l + alpha) U (diag(S) + alpha
    I)^{-1} U^T + (I - U U^T) (Frangella, Tropp & Udell 2023, "Randomized
    Nystrom preconditioning", SIAM J. Matrix Anal. Appl., Alg. 2.1 and
    Eq. 5.3). Each iteration costs one pass over K: O(n^2 (d + t)) time and
    ``memory_limit`` bytes; the preconditioner O(n l) memory and, for
    ``"nystrom"``, one pass over K with l + 10 columns.

    Examples
    --------
    >>> from randla.testing import kernel_regression
    >>> from randla.kernels import kernel_ridge
    >>> X, y = kernel_regression(500, d=5, noise=0.1, rng=0)
    >>> model = kernel_ridge(X, y, alpha=0.1, rank=50, rng=0)
    >>> model.converged, model.dual_coef.shape, model.n_iter <= 40
    (True, (500,), True)
    """
    op = kernel_operator(X, kernel=kernel, memory_limit=memory_limit, **kernel_params)
    xp, X, n = op.xp, op.X, op.shape[0]
    Y, one_d = check_targets(y, op)
    alpha = check_alpha(alpha, Y.shape[1])
    if preconditioner is not None:
        choices = ("nystrom",) + METHODS
        preconditioner = check_choice("preconditioner", preconditioner, choices, "or None")
    elif not (isinstance(rank, str) and rank == "auto"):
        raise ValueError(
            f"`rank` is the rank of the preconditioner; got rank={rank!r} with preconditioner=None. "
            "Leave rank out, or choose a preconditioner."
        )
    rank = check_count("rank", rank, n, default=min(n, 100))
    tol, max_iter = check_tol(tol, _RESIDUAL), check_int("max_iter", max_iter, 1)
    scale, _ = check_weights(sample_weight, op)
    gen = check_rng(rng)
    rows = KernelRows(op.kernel, xp, X, X, op.memory_limit, cache=True, row_scale=scale)
    K = RowsOperator(rows)  # D^{1/2} K D^{1/2} with sample weights
    precondition = None
    if preconditioner is not None:
        U, S = _low_rank_kernel(preconditioner, op, K, rank, gen)
        precondition = nystrom_preconditioner(U, S, alpha)
    if scale is not None:
        Y = scale[:, None] * Y
    # Below float64 the kernel entries and the returned coefficients are rounded: check and refine
    # against the float64 kernel, for the coefficients as returned.
    returned = None if X.dtype == xp.float64 else _returned_residual(xp, op, scale, alpha, Y)
    r = block_pcg(
        lambda V: K.matmat(V) + _times_alpha(xp, alpha, V), Y, precondition=precondition, tol=tol, max_iter=max_iter,
        residual=returned,
    )
    if r.stalled:
        name = str(X.dtype).removeprefix("torch.")
        warnings.warn(
            f"tol={tol:g} is below what {name} resolves here: the coefficients, kept in {name}, leave a "
            f"relative residual of {r.residuals[-1]:.1e}, and more iterations do not lower it, so converged=False. "
            f"Pass float64 X for a tighter tolerance, or a tol above {r.residuals[-1]:.1e}.",
            UserWarning,
            stacklevel=2,
        )
    coef = r.x if scale is None else scale[:, None] * r.x
    info = ("pcg", preconditioner, r.converged, r.n_iter, r.residuals)
    return _result(xp, X, coef, one_d, X, np.arange(n, dtype=np.int64), op, alpha, info)


# -- solvers -------------------------------------------------------------------


def _returned_residual(xp, op: KernelOperator, scale, alpha, Y):
    """V -> Y - (S K S + alpha I) V for V as :func:`kernel_ridge` returns it (its coefficients c = S V
    rounded to X's dtype), with K evaluated in float64 from float64 copies of the points (S: the square
    roots of the sample weights, or the identity): the residual of the returned coefficients."""
    X = op.X
    X64 = X.astype(np.float64) if is_sparse(X) else as_float64(xp, X)
    exact = RowsOperator(KernelRows(op.kernel, xp, X64, X64, op.memory_limit, cache=False, row_scale=scale))
    positive = None if scale is None else scale > 0
    safe = None if scale is None else xp.where(positive, scale, xp.ones_like(scale))

    def residual(V):
        c = V if scale is None else scale[:, None] * V
        V = as_float64(xp, xp.astype(c, X.dtype))
        if scale is not None:  # back to the variables of the system; 0 where the weight is (c_i = 0 there)
            V = xp.where(positive[:, None], V / safe[:, None], xp.zeros_like(V))
        return Y - (exact.matmat(V) + _times_alpha(xp, alpha, V))

    return residual


def _solve_direct(xp, rows, factor: PSDFactor, Y, alpha, n_fitted: int, scale):
    """beta from the normal equations in the variables gamma = L^T beta, and
    with one alpha the Gaussian-process posterior (see ``_posterior``)."""
    M, rhs = rows.gram(Y, factor.T)
    M = (M + M.mT) / 2
    eye = xp.eye(M.shape[0], dtype=M.dtype, device=device_of(M))
    posterior = None
    if np.ndim(alpha) == 0:
        G = M + alpha * eye
        R = _cholesky_upper(xp, G)
        if R is not None:  # G^{-1} = B B^T with B = R^{-1}
            gamma = solve_triangular(xp, R, solve_triangular(xp, R, rhs, transpose=True))
            B, log_det = solve_triangular(xp, R, eye), 2 * float(xp.sum(xp.log(xp.linalg.diagonal(R))))
        else:  # rounding made G numerically indefinite: its eigenvalues are at least alpha
            w, V = small_eigh(xp, G)
            w = xp.clip(w, min=alpha)
            B, log_det = V / xp.sqrt(w)[None, :], float(xp.sum(xp.log(w)))
            gamma = B @ (B.mT @ rhs)
        posterior = _posterior(xp, factor.T, B, log_det, rhs, gamma, Y, alpha, n_fitted, scale)
    else:
        gamma = solve_by_alpha(xp, lambda a: spd_solver(xp, M + a * eye), alpha, rhs)
    rhs_norm = xp.linalg.vector_norm(rhs, axis=0)
    res = M @ gamma + _times_alpha(xp, alpha, gamma) - rhs
    res = xp.linalg.vector_norm(res, axis=0) / xp.where(rhs_norm > 0, rhs_norm, 1.0)
    return factor.solve_t(gamma), float(xp.max(res)), posterior


def _posterior(xp, T, B, log_det_G: float, rhs, gamma, Y, alpha: float, n_fitted: int, scale):
    """(log evidence, (T, T B)) of the Gaussian process that Nystrom KRR is the posterior mean of.

    The model: y_i = f(x_i) + e_i, f ~ GP(0, Q), Q = C W^+ C^T the Nystrom
    kernel of the landmarks, e_i ~ N(0, alpha / w_i) (the projected-process
    or DTC approximation; Quinonero-Candela & Rasmussen 2005, Sec. 5). With
    F = D^{1/2} C T (r columns), G = F^T F + alpha I = (B B^T)^{-1}, Woodbury
    and the matrix determinant lemma give for each target y

        y^T (F F^T + alpha I)^{-1} y = (y^T y - (F^T y)^T G^{-1} F^T y) / alpha,
        log det(F F^T + alpha I) = (n - r) log alpha + log det G,

    n the points of positive weight (the others drop out), and the variance
    of f(x) is k(x, x) - |T^T k(S, x)|^2 + alpha |(T B)^T k(S, x)|^2.
    """
    t = Y.shape[1]
    quadratic = float(xp.sum(Y * Y)) - float(xp.sum(rhs * gamma))
    log_det = (n_fitted - T.shape[1]) * math.log(alpha) + log_det_G
    evidence = -0.5 * (quadratic / alpha + t * (log_det + n_fitted * math.log(2 * math.pi)))
    if scale is not None:  # log det of the noise covariance alpha D^{-1}: D's share, scale = sqrt(w)
        evidence += t * float(xp.sum(xp.log(scale[scale > 0])))
    return evidence, (T, T @ B)


def _low_rank_kernel(method: str, op: KernelOperator, K: RowsOperator, rank: int, gen):
    """K ~ U diag(S) U^T in float64, U orthonormal, S descending (K: D^{1/2} k(X, X) D^{1/2})."""
    xp, scale = op.xp, K.rows.row_scale
    if method == "nystrom":
        from ..eigh import nystrom

        return tuple(nystrom(K, rank, rng=gen))

    chosen = select_landmarks(op, rank, method=method, rng=gen)
    if scale is None:
        U, S = chosen.eig()
        return as_float64(xp, U), as_float64(xp, S)
    # k(X, X) ~ F F^T, so D^{1/2} k(X, X) D^{1/2} ~ (D^{1/2} F) (D^{1/2} F)^T.
    U, s, _ = small_svd(xp, scale[:, None] * as_float64(xp, chosen.factor))
    return U, s * s


def _result(xp, X, coef, one_d, centers, idx, op, alpha, info, posterior=None) -> KRRResult:
    solver, preconditioner, converged, n_iter, residuals = info
    evidence, factors = (None, None) if posterior is None else posterior
    coef = xp.astype(coef, X.dtype, copy=False)
    return KRRResult(
        coef[:, 0] if one_d else coef,
        centers,
        np.asarray(idx, dtype=np.int64),
        op.kernel,
        alpha,
        solver,
        preconditioner,
        bool(converged),
        int(n_iter),
        np.asarray(residuals, dtype=np.float64),
        op.memory_limit,
        evidence,
        factors,
    )


def _times_alpha(xp, alpha, V):
    """alpha V, alpha a number or one per column of V (NumPy)."""
    if np.ndim(alpha) == 0:
        return float(alpha) * V
    return xp.asarray(alpha, dtype=V.dtype, device=device_of(V))[None, :] * V
