"""Matrix completion as a scikit-learn-style estimator with recommendations."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from .._validate import check_int
from ..completion import complete
from ._common import _random_seed

__all__ = ["MatrixCompletion"]

# Scores per block of users in ``MatrixCompletion.recommend``: temporaries near 32 MiB.
_SCORE_ELEMENTS = 1 << 22


def _observed_pattern(rows, cols, shape) -> sp.csr_matrix:
    """The m x n CSR pattern (ones, int8) of the entries that ``complete`` accepted."""
    if sp.issparse(rows):
        coo = rows.tocoo()
        rows, cols = coo.row, coo.col
    rows, cols = np.asarray(rows).astype(np.int64, copy=False), np.asarray(cols).astype(np.int64, copy=False)
    return sp.csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=shape)


class MatrixCompletion(BaseEstimator):
    """A low-rank matrix from a few observed entries, with predictions and top-k recommendations.

    A shell over :func:`randla.complete`, which solves the nuclear-norm
    regularised problem min 1/2 sum_Omega (X_ij - mu - Z_ij)^2 + reg ||Z||_*
    with rank(Z) <= ``rank``, mu the mean of the entries (0 with
    ``center=False``). Not meant for ``check_estimator``: ``fit`` takes
    observed entries (rows, cols, values), not (X, y).

    Parameters
    ----------
    rank : int, default 10
        Rank cap k of Z.
    method : {"softimpute_als", "softimpute", "altmin", "bayes"}, default "softimpute_als"
    reg : float, sequence of float or None, default None
        Regularisation weight; a sequence or None is a path chosen on
        held-out entries (see :func:`randla.complete`).
    n_reg : int, default 10
        Length of the default path (``reg=None``).
    validation : float, (rows, cols, values) or None, default None
        Held-out entries for choosing ``reg``.
    center : bool, default True
        Fit the entries minus their mean, which predictions add back (see
        :func:`randla.complete`).
    biases : bool, default False
        Row and column biases (``method="altmin"`` only).
    max_iter : int, default 100
        A fit that stops here warns with scikit-learn's ``ConvergenceWarning``.
    tol : float or None, default None
        Stop when ||Z_new - Z||_F <= tol ||Z||_F (None: 1e-3, or 1e-2 for
        ``"bayes"``).
    cg_steps : int, default 3
        Conjugate-gradient steps per row problem in ``"altmin"``.
    oversample : int, default 10
        Extra random directions per ``"softimpute"`` step.
    random_state : None, int or RandomState

    Attributes
    ----------
    result_ : CompletionResult
        What :func:`randla.complete` returned.
    U_, S_, Vh_ : ndarray (m, r), (r,), (r, n)
        Z = U_ diag(S_) Vh_ (+ mean and biases, see ``result_``).
    shape_ : (int, int)
        (m, n).
    n_iter_ : int
    converged_ : bool
    reg_ : float
        The regularisation weight of the final fit (the chosen one on a path;
        NaN for ``"bayes"``, whose fitted noise level is ``result_.noise``).
    seen_ : scipy.sparse.csr_matrix (m, n), int8
        The observed pattern, which :meth:`recommend` leaves out.

    Examples
    --------
    >>> import randla
    >>> data = randla.testing.ratings(300, 200, 12000, rank=3, noise=0.1, rng=0)
    >>> model = randla.MatrixCompletion(rank=3, reg=1.0, random_state=0).fit(*data, shape=data.shape)
    >>> model.predict(data.rows[:4], data.cols[:4]).shape
    (4,)
    >>> model.recommend([0, 1], k=5).shape
    (2, 5)
    """

    def __init__(self, rank=10, *, method="softimpute_als", reg=None, n_reg=10, validation=None, center=True,
                 biases=False, max_iter=100, tol=None, cg_steps=3, oversample=10, random_state=None):
        self.rank = rank
        self.method = method
        self.reg = reg
        self.n_reg = n_reg
        self.validation = validation
        self.center = center
        self.biases = biases
        self.max_iter = max_iter
        self.tol = tol
        self.cg_steps = cg_steps
        self.oversample = oversample
        self.random_state = random_state

    def fit(self, rows, cols=None, values=None, shape=None):
        """Fit Z to the entries X[rows[t], cols[t]] = values[t], or to a SciPy sparse matrix ``rows``."""
        result = complete(
            rows, cols, values, shape, rank=self.rank, method=self.method, reg=self.reg, n_reg=self.n_reg,
            validation=self.validation, center=self.center, biases=self.biases, max_iter=self.max_iter, tol=self.tol,
            cg_steps=self.cg_steps, oversample=self.oversample, rng=_random_seed(self.random_state),
        )
        self.result_ = result
        self.U_, self.S_, self.Vh_ = result
        self.shape_ = result.shape
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.reg_ = result.reg
        self.seen_ = _observed_pattern(rows, cols, result.shape)
        if not result.converged:
            warnings.warn(
                f"The {result.method} fit stopped at max_iter={self.max_iter} before Z changed by less than tol per "
                "step: the model is short of the optimum of its problem. Raise max_iter.",
                ConvergenceWarning, stacklevel=2,
            )
        return self

    def predict(self, rows, cols) -> np.ndarray:
        """Z at the positions (rows[t], cols[t])."""
        check_is_fitted(self)
        return self.result_.predict(rows, cols)

    def recommend(self, user, k=10, *, exclude_seen=True) -> np.ndarray:
        """The ``k`` columns of highest predicted value for each user (row), best first.

        Parameters
        ----------
        user : int or array_like of int, shape (u,)
            Row indices in [0, m).
        k : int, default 10
        exclude_seen : bool, default True
            Leave out the columns observed for that row in ``fit``.

        Returns
        -------
        ndarray of int, shape (k,) for an int ``user``, else (u, k)
        """
        check_is_fitted(self)
        m, n = self.shape_
        users = np.asarray(user)
        if users.ndim > 1 or (users.size and not np.issubdtype(users.dtype, np.integer)):
            raise ValueError(f"`user` must be an int or a 1-D array of ints in [0, {m}); got {user!r}.")
        users = users.astype(np.intp, copy=False).reshape(-1)
        if users.size and (users.min() < 0 or users.max() >= m):
            bad = users[(users < 0) | (users >= m)][0]
            raise ValueError(f"`user` holds row {bad}, outside [0, {m}) for the {m} x {n} matrix fitted.")
        k = check_int("k", k, 1)
        available = n - (np.diff(self.seen_.indptr)[users] if exclude_seen else np.zeros(users.size, np.intp))
        if users.size and k > available.min():
            worst = int(np.argmin(available))
            fix = "lower `k` or pass exclude_seen=False" if exclude_seen else "lower `k`"
            raise ValueError(
                f"`k`={k} exceeds the {available[worst]} candidate columns of user {users[worst]} "
                f"({n} columns, {n - available[worst]} seen in fit); {fix}."
            )
        out = np.empty((users.size, k), dtype=np.intp)
        step = max(1, _SCORE_ELEMENTS // n)
        for start in range(0, users.size, step):
            block = users[start:start + step]
            scores = self.result_.scores(block)
            if exclude_seen:
                seen = self.seen_[block]
                scores[np.repeat(np.arange(block.size), np.diff(seen.indptr)), seen.indices] = -np.inf
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
            out[start:start + step] = np.take_along_axis(top, order, axis=1)
        return out[0] if np.ndim(user) == 0 else out
