"""Matrix completion as a scikit-learn-style estimator with recommendations."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.validation import check_is_fitted

from .._entries import _as_integers, _as_values, _from_torch
from .._validate import check_int
from ..completion import complete
from ._common import _random_seed

__all__ = ["MatrixCompletion"]

# Scores per block of users in ``MatrixCompletion.recommend``: temporaries near 32 MiB.
_SCORE_ELEMENTS = 1 << 22


def _observed_pattern(rows, cols, shape) -> sp.csr_matrix:
    """The m x n CSR pattern (ones, int8) of the entries that ``complete`` accepted."""
    rows, cols = _from_torch(rows), _from_torch(cols)  # torch sparse as SciPy COO, as ``complete`` reads it
    if sp.issparse(rows):
        coo = rows.tocoo()
        rows, cols = coo.row, coo.col
    rows, cols = np.asarray(rows).astype(np.int64, copy=False), np.asarray(cols).astype(np.int64, copy=False)
    return sp.csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=shape)


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _pairs(X):
    """The row and column parts of X: an (N, 2) array of (row, col) pairs, or a two-column DataFrame (each
    column keeps its own dtype, so user names beside integer item indices stay apart)."""
    if hasattr(X, "iloc") and hasattr(X, "columns"):
        if X.shape[1] == 2:
            return np.asarray(X.iloc[:, 0]), np.asarray(X.iloc[:, 1])
    else:
        X = np.asarray(X)
        if X.ndim == 2 and X.shape[1] == 2:
            return X[:, 0], X[:, 1]
    raise ValueError(
        "`X` must be an (N, 2) array of (row, col) pairs or a DataFrame of two columns, with `y` the values "
        f"(or call fit(rows, cols, values)); got shape {np.shape(X)}."
    )


def _observations(rows, cols, values):
    """(rows, cols, values) from either form of ``fit``: fit(X, y), or fit(rows, cols, values) / fit(sparse)."""
    if values is None and cols is not None and not sp.issparse(rows):
        return (*_pairs(rows), cols)
    if values is None and cols is None and not (sp.issparse(rows) or _is_torch(rows)) and np.ndim(rows) == 2:
        raise TypeError("fit(X) needs the values too: fit(X, y), with y[t] observed at (X[t, 0], X[t, 1]).")
    return rows, cols, values


def _id_array(x, dtype=None) -> np.ndarray:
    """``x`` as an array, a sequence of tuple ids (("site", 7), ...) as a 1-D object array of them: np.asarray
    would make each tuple a row of a 2-D array (or fail on tuples of different lengths)."""
    if not isinstance(x, (np.ndarray, str)) and hasattr(x, "__len__") and len(x):
        if isinstance(next(iter(x)), tuple) and all(isinstance(v, tuple) for v in x):
            arr = np.empty(len(x), dtype=object)
            for t, v in enumerate(x):  # element by element: a slice assignment would broadcast the tuples
                arr[t] = v
            return arr
    return np.asarray(x, dtype=dtype)


def _holds_ids(x) -> bool:
    """Whether ``x`` holds ids (strings or other objects) rather than integer indices."""
    return not (x is None or sp.issparse(x) or _is_torch(x)) and _id_array(x).dtype.kind in "OUS"


def _encode(name: str, x):
    """Positions 0..u-1 of the ids in ``x``, numbered in order of first appearance; the u ids; id -> position."""
    x = _id_array(x)
    if x.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D array of ids or indices; got shape {x.shape}.")
    position: dict = {}
    try:
        positions = np.fromiter((position.setdefault(v, len(position)) for v in x.tolist()), np.int64, x.size)
    except TypeError as exc:
        raise TypeError(f"`{name}` must hold hashable ids (str, int, tuple, ...): {exc}.") from None
    ids = (np.fromiter(position, object, len(position)) if x.dtype == object
           else np.array(list(position), dtype=x.dtype))
    return positions, ids, position


def _lookup(name: str, x, position: dict):
    """Positions of the ids in ``x`` (0 where unknown) and a mask of the known ones."""
    x = _id_array(x)
    if x.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D array of ids; got shape {x.shape}.")
    try:
        found = np.fromiter((position.get(v, -1) for v in x.tolist()), np.int64, x.size)
    except TypeError as exc:
        raise TypeError(f"`{name}` must hold hashable ids: {exc}.") from None
    return np.maximum(found, 0), found >= 0


def _held_out(validation, row_position, col_position):
    """``validation``, with explicit held-out entries given by id turned into positions."""
    if not (isinstance(validation, tuple) and len(validation) == 3):
        return validation
    rows, cols, values = validation
    located = []
    for name, x, position in (("rows", rows, row_position), ("cols", cols, col_position)):
        if position is not None:
            x, known = _lookup(f"validation {name}", x, position)
            if not known.all():
                raise ValueError(f"`validation` holds {name[:-1]} ids not among the fitted entries; held-out "
                                 "entries must be of rows and columns that the fit sees.")
        located.append(x)
    return (*located, values)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """The columns of the ``k`` largest scores of each row, largest first."""
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


class MatrixCompletion(RegressorMixin, BaseEstimator):
    """A low-rank matrix from a few observed entries, with predictions and top-k recommendations.

    A shell over :func:`randla.complete`, which solves the nuclear-norm
    regularised problem min 1/2 sum_Omega (X_ij - mu - Z_ij)^2 + reg ||Z||_*
    with rank(Z) <= ``rank``, mu the mean of the entries (0 with
    ``center=False``).

    ``fit`` takes the observed entries as (rows, cols, values), as a SciPy
    sparse matrix, or as scikit-learn's (X, y): X an (N, 2) array or
    two-column DataFrame of (row, col) pairs and y their values. With (X, y),
    :class:`~sklearn.model_selection.GridSearchCV` and
    :func:`~sklearn.model_selection.cross_val_score` select ``rank``, ``reg``
    and the rest on held-out entries; :meth:`score` is R^2, as for every
    scikit-learn regressor. scikit-learn's default folds are contiguous, so
    entries sorted by row (as a sparse matrix lists them) need a shuffled
    split, ``cv=KFold(5, shuffle=True)``. ``check_estimator`` does not apply:
    its feature matrices are not pairs of indices.

    Rows and columns are integer indices, or any hashable ids (user names,
    item codes: strings or other objects), which ``predict``, ``recommend``
    and ``fold_in`` then take as well. A row or column not seen in ``fit``
    (an id not fitted, or an index past the fitted shape, as the test fold
    of a cross-validation may hold) is predicted as the mean mu, plus the
    bias of the other side where that one is known and the model has biases.

    Parameters
    ----------
    rank : int, default 10
        Rank cap k of Z.
    method : {"softimpute_als", "softimpute", "altmin", "bayes"}, default "softimpute_als"
    reg : float, sequence of float or None, default None
        Regularisation weight; a sequence, or None with ``n_reg`` > 1, is a
        path chosen on held-out entries (see :func:`randla.complete`).
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
        A fit that stops here warns (:func:`randla.complete` warns, with
        scikit-learn's ``ConvergenceWarning``).
    tol : float or None, default None
        Stop when ||Z_new - Z||_F <= tol ||Z||_F (None: 1e-3, or 1e-2 for
        ``"bayes"``; see :func:`randla.complete` for how far from the
        optimum that stops).
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
    row_ids_, col_ids_ : ndarray or None
        The ids of the rows (columns) in the order of their positions in Z,
        numbered by first appearance in ``fit``; None where ``fit`` was given
        integer indices.

    Examples
    --------
    >>> import randla
    >>> data = randla.testing.ratings(300, 200, 12000, rank=3, noise=0.1, rng=0)
    >>> model = randla.MatrixCompletion(rank=3, reg=1.0, random_state=0).fit(*data, shape=data.shape)
    >>> model.predict(data.rows[:4], data.cols[:4]).shape
    (4,)
    >>> model.recommend([0, 1], k=5).shape
    (2, 5)
    >>> first = data.rows == 0                  # row 0's entries, folded in as if it were a new row
    >>> model.fold_in(data.cols[first], data.values[first]).shape
    (3,)
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
        """Fit Z to observed entries.

        Parameters
        ----------
        rows, cols, values : array_like, shape (N,)
            The entries X[rows[t], cols[t]] = values[t]; rows and columns as
            integer indices or as hashable ids (tuples too). Or ``rows`` a
            SciPy sparse matrix (or torch sparse tensor) of the observations,
            alone. Or, scikit-learn's way,
            ``fit(X, y)``: X an (N, 2) array or two-column DataFrame of
            (row, col) pairs and y the N values.
        shape : (int, int), optional
            (m, n) for integer indices; default one past the largest. Rows
            or columns given as ids number as many as there are distinct
            ids, and ``shape`` must then be left out.

        Returns
        -------
        self
        """
        rows, cols, values = _observations(rows, cols, values)
        row_ids = col_ids = row_position = col_position = None
        if _holds_ids(rows):
            rows, row_ids, row_position = _encode("rows", rows)
        if _holds_ids(cols):
            cols, col_ids, col_position = _encode("cols", cols)
        if shape is not None and (row_ids is not None or col_ids is not None):
            raise ValueError("`shape` is for integer row and column indices; with ids the matrix has a row (column) "
                             f"per distinct id. Leave `shape` at None; got {shape!r}.")
        result = complete(
            rows, cols, values, shape, rank=self.rank, method=self.method, reg=self.reg, n_reg=self.n_reg,
            validation=_held_out(self.validation, row_position, col_position), center=self.center,
            biases=self.biases, max_iter=self.max_iter, tol=self.tol, cg_steps=self.cg_steps,
            oversample=self.oversample, rng=_random_seed(self.random_state),
        )
        self.row_ids_, self.col_ids_ = row_ids, col_ids
        self._row_position, self._col_position = row_position, col_position
        self.result_ = result
        self.U_, self.S_, self.Vh_ = result
        self.shape_ = result.shape
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.reg_ = result.reg
        self.seen_ = _observed_pattern(rows, cols, result.shape)
        return self

    def _locate(self, name: str, x, axis: int):
        """Positions of rows (axis 0) or columns (axis 1) of Z, 0 where unknown, and a mask of the known ones:
        ids seen in fit, or indices below the fitted shape."""
        position = (self._row_position, self._col_position)[axis]
        if position is not None:
            return _lookup(name, x, position)
        x = _as_integers(name, x)
        if x.size and x.min() < 0:
            raise ValueError(f"`{name}` holds index {x[x < 0][0]}, below 0; indices are in [0, m) for rows, "
                             "[0, n) for columns.")
        known = x < self.shape_[axis]
        return np.where(known, x, 0), known

    def predict(self, rows, cols=None) -> np.ndarray:
        """Z at the positions (rows[t], cols[t]), or at the (row, col) pairs of an (N, 2) ``X`` alone.

        A row or column not seen in ``fit`` is predicted as the mean of the
        entries (plus the other side's bias, where known, in a model with
        biases).
        """
        check_is_fitted(self)
        if cols is None:
            rows, cols = _pairs(rows)
        rows, row_known = self._locate("rows", rows, 0)
        cols, col_known = self._locate("cols", cols, 1)
        if rows.shape != cols.shape:
            raise ValueError(f"`rows` and `cols` must have the same length; got {rows.shape} and {cols.shape}.")
        result = self.result_
        both = row_known & col_known
        if both.all():
            return result.predict(rows, cols)
        out = np.full(rows.size, result.mean, dtype=result.U.dtype)
        out[both] = result.predict(rows[both], cols[both])
        if result.row_bias is not None:
            out[row_known & ~col_known] += result.row_bias[rows[row_known & ~col_known]]
            out[col_known & ~row_known] += result.col_bias[cols[col_known & ~row_known]]
        return out

    def score(self, X, y, sample_weight=None) -> float:
        """R^2 of the predictions at the (row, col) pairs X against the values y (higher is better).

        scikit-learn's regressor score: 1 - sum (y - y_hat)^2 / sum (y - mean(y))^2.
        Within one split it ranks models as the RMSE does, so
        ``GridSearchCV`` picks by held-out error; pass
        ``scoring="neg_root_mean_squared_error"`` to read the RMSE itself.
        """
        return float(r2_score(y, self.predict(X), sample_weight=sample_weight))

    def recommend(self, user, k=10, *, exclude_seen=True) -> np.ndarray:
        """The ``k`` columns of highest predicted value for each user (row), best first.

        Parameters
        ----------
        user : int, id or array_like of them, shape (u,)
            Row indices in [0, m), or row ids where ``fit`` was given ids.
            A user not seen in ``fit`` has nothing to go on: use
            :meth:`recommend_new` with their entries.
        k : int, default 10
        exclude_seen : bool, default True
            Leave out the columns observed for that row in ``fit``.

        Returns
        -------
        ndarray, shape (k,) for a single ``user``, else (u, k)
            Column indices, or column ids where ``fit`` was given ids.
        """
        check_is_fitted(self)
        m, n = self.shape_
        users, single = self._users(user)
        k = check_int("k", k, 1)
        available = n - (np.diff(self.seen_.indptr)[users] if exclude_seen else np.zeros(users.size, np.intp))
        if users.size and k > available.min():
            worst = int(np.argmin(available))
            fix = "lower `k` or pass exclude_seen=False" if exclude_seen else "lower `k`"
            name = users[worst] if self.row_ids_ is None else repr(self.row_ids_[users[worst]])
            raise ValueError(
                f"`k`={k} exceeds the {available[worst]} candidate columns of user {name} "
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
            out[start:start + step] = _top(scores, k)
        out = out if self.col_ids_ is None else self.col_ids_[out]
        return out[0] if single else out

    def _users(self, user) -> tuple[np.ndarray, bool]:
        """The row positions of ``user`` (indices or ids), each one seen in ``fit``; whether ``user`` is a single
        one."""
        m, n = self.shape_
        if self._row_position is not None:
            try:  # a tuple fitted as an id is one user, not a sequence of them
                single = np.ndim(user) == 0 or (isinstance(user, tuple) and user in self._row_position)
            except TypeError:  # a tuple with unhashable parts: not an id
                single = False
            names = np.empty(1, dtype=object) if single else _id_array(user, dtype=object)
            if single:
                names[0] = user  # not np.array([user]), which would spread a tuple over a second axis
            if names.ndim > 1:
                raise ValueError(f"`user` must be a row id or a 1-D array of them; got shape {names.shape}.")
            users, known = _lookup("user", names, self._row_position)
            if not known.all():
                raise ValueError(f"`user` holds {names[~known][0]!r}, not a row id seen in fit; recommend for a "
                                 "new row from its entries with recommend_new(cols, values).")
            return users, single
        users = np.asarray(user)
        single = users.ndim == 0
        if users.ndim > 1 or (users.size and not np.issubdtype(users.dtype, np.integer)):
            raise ValueError(f"`user` must be an int or a 1-D array of ints in [0, {m}); got {user!r}.")
        users = users.astype(np.intp, copy=False).reshape(-1)
        if users.size and (users.min() < 0 or users.max() >= m):
            bad = users[(users < 0) | (users >= m)][0]
            raise ValueError(f"`user` holds row {bad}, outside [0, {m}) for the {m} x {n} matrix fitted.")
        return users, single

    def _col_design(self):
        """The fixed side of a row's ridge problem: column factors V diag(sqrt(S)) (n, r), with a column of ones
        for the row's bias in a model with biases; and the offset of each column, mu (+ its bias)."""
        result = self.result_
        F = self.Vh_.T.astype(np.float64) * np.sqrt(self.S_.astype(np.float64))
        offset = np.full(self.shape_[1], result.mean)
        if result.row_bias is not None:
            F = np.hstack([F, np.ones((F.shape[0], 1))])
            offset += result.col_bias
        return F, offset

    def fold_in(self, cols, values) -> np.ndarray:
        """The latent factor of a new row, from its observed entries, without refitting.

        With the column factors R = V diag(sqrt(S)) of Z = U diag(S) V^T
        fixed, the factor x of the row solves the ridge problem of (1) on
        its entries J (one solve):

            minimise  1/2 sum_{j in J} (values_j - offset_j - R_j x)^2 + reg_ / 2 ||x||^2,

        offset_j the mean mu (plus column j's bias, with biases). This is the
        row's problem in every solver of (1) (a balanced factorization
        Z = L R^T, ||Z||_* = (||L||_F^2 + ||R||_F^2) / 2): folding in a
        fitted row's own entries gives back its factor U_i sqrt(S) at the
        optimum. The new row's predictions are offset + R @ x.

        Parameters
        ----------
        cols, values : array_like, shape (N,)
            The row's observed entries: column indices (or ids, where ``fit``
            had column ids), each at most once, and their values. Columns not
            seen in ``fit`` carry no factor and are left out.

        Returns
        -------
        ndarray, shape (r,), or (r + 1,) with biases
            x, in the coordinates of U_ diag(sqrt(S_)); with biases, the
            row's bias last. Zero where no known column was given.
        """
        check_is_fitted(self)
        if np.isnan(self.reg_):
            raise ValueError("fold_in solves the ridge problem of (1) with the fitted `reg`, which method='bayes' "
                             "does not have (it fits a prior per component); fit another method to fold in rows.")
        cols, known = self._locate("cols", cols, 1)
        values = _as_values(values)
        if values.shape != cols.shape:
            raise ValueError(f"`cols` and `values` must have the same length; got {cols.shape} and {values.shape}.")
        cols, values = cols[known], values[known].astype(np.float64)
        if np.unique(cols).size != cols.size:
            raise ValueError("`cols` holds a column more than once; aggregate the row's repeated entries first.")
        F, offset = self._col_design()
        F, target = F[cols], values - offset[cols]
        # The ridge normal equations as one least-squares problem: stable, and the
        # minimum-norm solution where reg_ = 0 leaves them singular.
        stacked = np.vstack([F, np.sqrt(self.reg_) * np.eye(F.shape[1])])
        x = np.linalg.lstsq(stacked, np.concatenate([target, np.zeros(F.shape[1])]), rcond=None)[0]
        return x.astype(self.U_.dtype, copy=False)

    def recommend_new(self, cols, values, k=10, *, exclude_seen=True) -> np.ndarray:
        """The ``k`` best columns for a row not seen in ``fit``, from its observed entries (see :meth:`fold_in`).

        Parameters
        ----------
        cols, values : array_like, shape (N,)
            The new row's observed entries, as :meth:`fold_in` takes them.
        k : int, default 10
        exclude_seen : bool, default True
            Leave out the columns in ``cols``.

        Returns
        -------
        ndarray, shape (k,)
            Column indices (or ids), best first.
        """
        x = self.fold_in(cols, values).astype(np.float64)
        F, offset = self._col_design()
        scores = offset + F @ x
        n = self.shape_[1]
        seen, known = self._locate("cols", cols, 1)
        seen = np.unique(seen[known]) if exclude_seen else seen[:0]
        k = check_int("k", k, 1)
        if k > n - seen.size:
            fix = "lower `k` or pass exclude_seen=False" if exclude_seen else "lower `k`"
            raise ValueError(f"`k`={k} exceeds the {n - seen.size} candidate columns of the new row "
                             f"({n} columns, {seen.size} of them in `cols`); {fix}.")
        scores[seen] = -np.inf
        out = _top(scores[None], k)[0]
        return out if self.col_ids_ is None else self.col_ids_[out]
