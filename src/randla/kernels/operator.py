"""Kernel matrices that are never formed: K[i, j] = k(x_i, y_j) as an Operator.

At n = 10^6 points a kernel matrix has 10^12 entries. :func:`kernel_operator`
holds only the points; products K @ V are computed one block of rows at a
time, each block at most ``memory_limit`` bytes, and single columns, rows and
the diagonal are evaluated directly.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj, is_torch_array

from ..backend import device_of, to_numpy
from ..operators import Operator
from ..operators.adapters import check_not_meta
from ..operators.base import _adjoint_product, _real_product, _work_dtype
from .functions import Kernel, is_sparse, make_kernel, point

__all__ = ["KernelOperator", "kernel_operator", "check_points"]

DEFAULT_MEMORY_LIMIT = 256 * 2**20


def points_namespace(X):
    """The array library of points: NumPy's for SciPy sparse ones."""
    return array_namespace(np.empty(0) if is_sparse(X) else X)


def check_points(X, name: str = "X", *, sparse_formats=("csr",)):
    """X as a 2-D floating array of points in its own library (no copy for floats).

    Lists and NumPy array subclasses such as ``numpy.matrix`` are read as
    plain NumPy arrays; SciPy sparse matrices stay sparse, in one of
    ``sparse_formats`` (else as CSR), summing duplicates on a copy. Integers
    become float64, half precisions float32. Raises ``TypeError`` for
    non-array input and ``ValueError`` for a wrong shape, no points, or
    NaN/Inf.
    """
    if is_sparse(X):
        return _check_sparse_points(X, name, sparse_formats)
    if str(getattr(X, "layout", "torch.strided")) != "torch.strided":
        raise TypeError(
            f"{name} must be a dense tensor or a SciPy sparse matrix; got a torch sparse tensor. "
            f"Pass {name}.to_dense(), or the points as a SciPy sparse matrix."
        )
    if isinstance(X, (list, tuple, np.ndarray)):  # ndarray subclasses (np.matrix) as plain arrays, no copy
        X = np.asarray(X)
    if not is_array_api_obj(X):
        raise TypeError(f"{name} must be a NumPy array or torch tensor of points; got {type(X).__name__}.")
    check_not_meta(X, name)
    xp = array_namespace(X)
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D, one point per row (n_samples, n_features); got shape {tuple(X.shape)}. "
            "For a single feature use X.reshape(-1, 1)."
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must have at least one point and one feature; got shape {tuple(X.shape)}.")
    if xp.isdtype(X.dtype, "complex floating") or not xp.isdtype(X.dtype, ("real floating", "integral", "bool")):
        raise TypeError(f"{name} must hold real numbers; got dtype {X.dtype}.")
    dtype = _work_dtype(xp, X.dtype)
    if X.dtype != dtype:
        X = xp.astype(X, dtype)
    if not bool(xp.all(xp.isfinite(X))):
        raise ValueError(f"{name} contains NaN or Inf; remove or impute those points first.")
    return X


def _check_sparse_points(X, name: str, formats):
    if len(X.shape) != 2:
        raise ValueError(f"{name} must be 2-D, one point per row (n_samples, n_features); got shape {X.shape}.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must have at least one point and one feature; got shape {X.shape}.")
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers; got a sparse matrix of dtype {X.dtype}.")
    X = X if X.format in formats else X.tocsr()  # CSR: rows are read in blocks
    if not X.has_canonical_format:  # SciPy would sum its duplicates in place, in the user's matrix
        X = X.copy()
        X.sum_duplicates()
    dtype = np.dtype(_work_dtype(array_namespace(np.empty(0)), X.dtype))
    if X.dtype != dtype:
        X = X.astype(dtype)
    if not np.all(np.isfinite(X.data)):
        raise ValueError(f"{name} contains NaN or Inf; remove or impute those points first.")
    return X


def as_dtype(xp, X, dtype):
    """Points, dense or sparse, in ``dtype``."""
    if X.dtype == dtype:
        return X
    return X.astype(dtype) if is_sparse(X) else xp.astype(X, dtype)


class KernelOperator(Operator):
    """The kernel matrix K = k(X, Y) (K = k(X, X) when Y is None), implicit.

    Create it with :func:`kernel_operator`. Besides the :class:`Operator`
    products it offers ``columns(idx)`` (K[:, idx]), ``rows(idx)``,
    ``block(rows, cols)``, ``diagonal()`` and ``trace()``, each evaluated
    without forming K.
    """

    def __init__(self, X, Y, kernel: Kernel, memory_limit: int):
        self.X, self.Y, self.kernel = X, Y, kernel
        # k(X, X) of a real symmetric kernel (a callable's symmetry is checked in kernel_operator).
        self.symmetric = self.hermitian = Y is None
        self.xp = points_namespace(X)
        self.device = device_of(X)
        self.dtype = self.input_dtype = X.dtype
        self.shape = (int(X.shape[0]), int((X if Y is None else Y).shape[0]))
        self.memory_limit = memory_limit

    @property
    def _points_y(self):
        return self.X if self.Y is None else self.Y

    def _rows_per_block(self, n_cols: int) -> int:
        itemsize = np.dtype(str(self.dtype).split(".")[-1]).itemsize
        return max(1, self.memory_limit // (self.kernel.temporaries * itemsize * max(n_cols, 1)))

    def _evaluate(self, A, B, rows=None, cols=None):
        """k(A, B) with its rows in blocks that keep within the memory limit.

        ``rows`` and ``cols``: the indices of A's and B's points in X (None:
        all of X, in order), which place the exact diagonal of a square K.
        """
        xp, step = self.xp, self._rows_per_block(B.shape[0])
        if A.shape[0] == 0:
            return xp.zeros((0, B.shape[0]), dtype=self.dtype, device=self.device)
        # k(x, x) from the smaller side: a callable's diagonal costs a block per 256 points.
        by_rows = A.shape[0] < B.shape[0]
        diag_b = None if by_rows or not self.symmetric else self.kernel.diagonal(xp, B)[None, :]
        c = self._arange(0, B.shape[0]) if cols is None else cols
        blocks, prepared = [], self.kernel.prepare(xp, B)
        for i in range(0, A.shape[0], step):
            block = self.kernel(xp, A[i : i + step], prepared)
            if self.symmetric:
                r = self._arange(i, i + block.shape[0]) if rows is None else rows[i : i + step]
                diag = self.kernel.diagonal(xp, A[i : i + step])[:, None] if by_rows else diag_b
                block = self._exact_diagonal(block, diag, r, c)
            blocks.append(block)
        return blocks[0] if len(blocks) == 1 else xp.concat(blocks)

    def matmat(self, V):
        # K is real: a complex V (a complex sketch, a complex shift of K) as K Re V + i K Im V.
        return _real_product(self.xp, lambda Z: self._product(self.X, self._points_y, Z), V, self.dtype)

    def rmatmat(self, W):
        # Real symmetric kernel functions: K^T = k(Y, X).
        return _adjoint_product(self.xp, lambda Z: self._product(self._points_y, self.X, Z), W, self.dtype)

    def _product(self, A, B, V):
        xp, step = self.xp, self._rows_per_block(B.shape[0])
        if is_torch_array(V) and V.dtype != self.dtype:
            V = V.to(self.dtype)  # torch multiplies equal dtypes only: a half or double block goes to K's
        columns = self._arange(0, B.shape[0])
        blocks, prepared = [], self.kernel.prepare(xp, B)
        for i in range(0, A.shape[0], step):
            block = self.kernel(xp, A[i : i + step], prepared)
            if self.symmetric:  # rows i.. of k(X, X): the diagonal starts at column i
                p = block.shape[0]
                diag = self.kernel.diagonal(xp, A[i : i + p])
                # A callable's block may be a view of the user's array, and autograd keeps the
                # kernel's output for the backward pass: neither is written to. Otherwise the
                # in-place write saves a pass over the block.
                if self.kernel.name == "callable" or getattr(block, "requires_grad", False):
                    block = self._exact_diagonal(block, diag[:, None], self._arange(i, i + p), columns)
                else:
                    block[self._arange(0, p), self._arange(i, i + p)] = diag
            blocks.append(block @ V)
            del block  # before the next block's temporaries are made
        return blocks[0] if len(blocks) == 1 else xp.concat(blocks)

    def _exact_diagonal(self, block, diag, rows, cols):
        """``block`` = k(X[rows], X[cols]) with ``diag`` = k(x, x) wherever rows[i] == cols[j].

        The distances of rbf kernels come from a Gram expansion whose rounding,
        gamma eps ||x - centre||^2, would leave k(x, x) below 1 (2e-5 in
        float32 at d = 50, gamma = 1): blocks must agree with ``diagonal()``, or
        a landmark's own residual K_ss - F_s F_s^T stays above rounding.
        """
        return self.xp.where(rows[:, None] == cols[None, :], diag, block)

    def _arange(self, start, stop):
        return self.xp.arange(start, stop, device=self.device)

    def columns(self, idx):
        """K[:, idx], shape (n_rows, len(idx)).

        ``idx``: integer positions (negative ones count from the end) or a
        boolean mask of length n_cols, as NumPy reads an index.
        """
        idx = self._index(idx, self.shape[1], "column indices")
        return self._evaluate(self.X, self._take(self._points_y, idx), cols=idx)

    def rows(self, idx):
        """K[idx, :], shape (len(idx), n_cols); ``idx`` as in :meth:`columns`."""
        idx = self._index(idx, self.shape[0], "row indices")
        return self._evaluate(self._take(self.X, idx), self._points_y, rows=idx)

    def block(self, rows=None, cols=None):
        """K[rows][:, cols]; None means all. The whole K only if asked for.

        ``rows`` and ``cols`` are positions or boolean masks, as in :meth:`columns`.
        """
        rows = None if rows is None else self._index(rows, self.shape[0], "row indices")
        cols = None if cols is None else self._index(cols, self.shape[1], "column indices")
        A = self.X if rows is None else self._take(self.X, rows)
        B = self._points_y if cols is None else self._take(self._points_y, cols)
        return self._evaluate(A, B, rows, cols)

    def diagonal(self):
        """diag(K) of a square kernel matrix, in O(n d)."""
        if not self.symmetric:
            raise ValueError("diagonal() needs a square kernel matrix k(X, X); this one is k(X, Y).")
        return self.kernel.diagonal(self.xp, self.X)

    def trace(self) -> float | None:
        """tr(K) in O(n d); None for a rectangular k(X, Y)."""
        return float(self.xp.sum(self.diagonal())) if self.symmetric else None

    def _index(self, idx, size: int, what: str = "indices"):
        """``idx`` read as NumPy reads an index, as an int64 array of the points'
        library on their device with negative indices counted from the end (they
        place the exact diagonal too).

        Integer positions in [-size, size) or a boolean mask of length ``size``;
        floats are refused as NumPy refuses them, rather than truncated.
        """
        xp = self.xp
        if not is_array_api_obj(idx):
            given = idx
            idx = np.asarray(idx)
            if idx.size == 0 and isinstance(given, (list, tuple)):  # NumPy reads [] as float64
                idx = idx.astype(np.int64)
        ns = array_namespace(idx)
        if idx.ndim != 1:
            raise ValueError(
                f"{what} must be 1-D, a sequence of positions or a boolean mask of length {size}; "
                f"got shape {tuple(idx.shape)}. For a single position i pass [i]."
            )
        if ns.isdtype(idx.dtype, "bool"):
            if idx.shape[0] != size:
                raise ValueError(
                    f"a boolean mask of {what} must have length {size}, one entry per position; "
                    f"got length {idx.shape[0]}."
                )
            idx = ns.nonzero(idx)[0]
        elif not ns.isdtype(idx.dtype, "integral"):
            raise TypeError(
                f"{what} must be integers or a boolean mask; got dtype {idx.dtype}. "
                "Convert whole-number floats with .astype(int) (NumPy) or .long() (torch)."
            )
        if ns is not xp:
            idx = xp.asarray(np.asarray(to_numpy(idx), dtype=np.int64), device=self.device)
        elif idx.dtype != xp.int64 or device_of(idx) != self.device:
            idx = xp.asarray(xp.astype(idx, xp.int64), device=self.device)
        if idx.shape[0] and not (-size <= int(xp.min(idx)) and int(xp.max(idx)) < size):
            raise IndexError(
                f"{what} must be in [-{size}, {size}); got values from {int(xp.min(idx))} to {int(xp.max(idx))}."
            )
        return xp.where(idx < 0, idx + size, idx)

    def _take(self, P, idx):
        return P[np.asarray(idx)] if is_sparse(P) else self.xp.take(P, idx, axis=0)

    def __repr__(self) -> str:
        m, n = self.shape
        return f"<KernelOperator {self.kernel.name} {m}x{n} {self.dtype}>"


def kernel_operator(X, Y=None, kernel="rbf", *, memory_limit: int = DEFAULT_MEMORY_LIMIT, **params) -> KernelOperator:
    """The kernel matrix K[i, j] = k(x_i, y_j) as an implicit :class:`Operator`.

    Parameters
    ----------
    X : array, shape (n, d)
        Points, one per row: NumPy array, torch tensor (any device) or SciPy
        sparse matrix (kernels ``linear``, ``polynomial``, ``cosine``,
        ``rbf``, or a callable that takes sparse blocks).
    Y : array, shape (m, d), optional
        Second set of points; default X (a square, symmetric PSD matrix).
    kernel : str or callable, default "rbf"
        ``"rbf"`` (alias ``"gaussian"``), ``"laplacian"``, ``"matern"``,
        ``"polynomial"`` (alias ``"poly"``), ``"linear"``, ``"cosine"``, ``"chi2"``
        (non-negative points), or a callable ``k(A, B, **params)``
        returning the (p, q) block for blocks A (p, d) and B (q, d) in their
        own library. A callable written for scikit-learn, ``k(x, y,
        **params)`` of two single points (1-D rows; (1, d) matrices of
        sparse points) returning a number, is recognised and evaluated one
        pair at a time: a Python call per kernel entry, hundreds of times
        slower than one call per block. See :mod:`randla.kernels.functions`
        for the formulas.
    memory_limit : int, default 256 MiB
        Bytes the temporary kernel blocks of one product may take; beside
        them a product holds one copy of the points for rbf and cosine
        (centred or unit rows) and for sparse points (transposed).
    **params
        Kernel parameters: ``gamma`` or ``bandwidth`` (rbf, laplacian),
        ``length_scale`` or ``bandwidth`` and ``nu`` (matern), ``gamma``,
        ``degree`` and ``coef0`` (polynomial), ``gamma`` (chi2), or the
        callable's own.

    Returns
    -------
    KernelOperator
        Usable wherever randla takes a matrix (``randla.nystrom``,
        ``randla.eigh``, ``randla.rpcholesky``, ...).

    Raises
    ------
    ValueError
        NaN or Inf in the points, mismatched feature counts, a non-positive
        bandwidth, negative points for ``chi2``, sparse points for a kernel
        not computed from inner products, a kernel that is not positive
        semidefinite (scikit-learn's ``sigmoid``), a callable that returns
        neither a (p, q) block for two blocks of points nor a number for two
        points, or a callable kernel found not symmetric positive
        semidefinite on a small sample of the points.
    TypeError
        Non-array points, or a kernel that is neither a name nor a callable.

    Notes
    -----
    A product K @ V with V of shape (m, k) costs O(n m (d + k)) and holds at
    most ``memory_limit`` bytes of kernel entries at a time.

    Examples
    --------
    >>> import numpy as np, randla
    >>> X = np.random.default_rng(0).standard_normal((1000, 5))
    >>> K = randla.kernel_operator(X, kernel="rbf", bandwidth=2.0)
    >>> K.shape, K.columns([0, 1]).shape, float(K.diagonal()[0])
    ((1000, 1000), (1000, 2), 1.0)
    """
    X = check_points(X, "X")
    if Y is not None:
        Y = check_points(Y, "Y")
        if points_namespace(Y) is not points_namespace(X):
            raise TypeError("X and Y must come from the same array library.")
        if Y.shape[1] != X.shape[1]:
            raise ValueError(f"X and Y must have the same number of features; got {X.shape[1]} and {Y.shape[1]}.")
        Y = as_dtype(points_namespace(Y), Y, X.dtype)
    ok = isinstance(memory_limit, numbers.Integral) and not isinstance(memory_limit, bool)
    if not ok or memory_limit < 1:
        raise ValueError(f"`memory_limit` must be a positive int (bytes); got {memory_limit!r}.")
    kernel = make_kernel(kernel, int(X.shape[1]), params)
    if is_sparse(X) or is_sparse(Y):
        kernel = dataclasses.replace(kernel, sparse_points=True)
    if kernel.name == "callable":
        kernel = _callable_form(kernel, X, X if Y is None else Y)
    op = KernelOperator(X, Y, kernel, int(memory_limit))
    op.kernel.check_points(op.xp, X, "X")
    if Y is not None:
        op.kernel.check_points(op.xp, Y, "Y")
    if op.kernel.name == "callable":
        _check_callable(op)
    return op


def _callable_form(kernel: Kernel, X, Y) -> Kernel:
    """The callable as it is written: for blocks, k(A, B) -> (p, q) array, or for
    two points, k(x, y) -> number (scikit-learn's form, then marked ``pairwise``).

    Told apart by a call on blocks of 2 and 3 points (fewer where there are
    fewer), where a function of two points fails or returns one number; an
    error of the user's function is kept as the cause of ours. With d = 3
    features, 4 points for B: ``np.dot(x, y)`` of blocks A (2, 3), B (3, 3)
    would return a block of the right shape, A B rather than A B^T.
    """
    p, q = min(2, X.shape[0]), min(3 if X.shape[1] != 3 else 4, Y.shape[0])
    block, block_error = _call(kernel, X[:p], Y[:q])
    if _is_block(block, (p, q)):
        return kernel
    value, value_error = _call(kernel, point(X, 0), point(Y, 0))
    if _is_number(value):
        return dataclasses.replace(kernel, pairwise=True)
    raise ValueError(
        "a callable kernel must take two blocks of points A (p, d) and B (q, d) and return the (p, q) "
        "block k(A, B), e.g. lambda A, B: np.exp(-scipy.spatial.distance.cdist(A, B, 'sqeuclidean')); "
        "or, as scikit-learn's, take two points and return the number k(x, y). On blocks of "
        f"{p} and {q} points it {_outcome(block, block_error)}, and on two points it "
        f"{_outcome(value, value_error)}."
    ) from block_error or value_error


def _call(kernel: Kernel, A, B):
    """(result, None) or (None, the exception): the user's code may fail in any way."""
    try:
        return kernel.function(A, B, **kernel.params), None
    except Exception as error:
        return None, error


def _is_block(block, shape) -> bool:
    return (is_array_api_obj(block) or is_sparse(block)) and tuple(block.shape) == shape


def _is_number(value) -> bool:
    """A real number: a Python or NumPy scalar, or a 0-d array (a torch scalar)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return True
    return is_array_api_obj(value) and tuple(value.shape) == ()


def _outcome(value, error) -> str:
    if error is not None:
        return f"raised {type(error).__name__}: {error}"
    shape = getattr(value, "shape", None)
    return f"returned shape {tuple(shape)}" if shape is not None else f"returned a {type(value).__name__}"


def _check_callable(op: KernelOperator, sample: int = 64):
    """Shape always; symmetry and PSD on a spread-out sample of at most 64 points."""
    xp = op.xp
    n = op.shape[0]
    idx = np.unique(np.linspace(0, n - 1, min(n, sample)).astype(np.int64))
    A = op._take(op.X, op._index(idx, n))
    block = op.kernel(xp, A, A)
    if not is_array_api_obj(block) or tuple(block.shape) != (len(idx), len(idx)):
        got = tuple(block.shape) if hasattr(block, "shape") else type(block).__name__
        raise ValueError(
            f"a callable kernel must return the (p, q) block k(A, B) for A (p, d) and B (q, d); "
            f"for p = q = {len(idx)} it returned {got}."
        )
    if not op.symmetric:
        return
    G = np.asarray(to_numpy(block), dtype=np.float64)
    if not np.all(np.isfinite(G)):
        raise ValueError("the callable kernel returned NaN or Inf on the points.")
    scale = max(float(np.max(np.abs(G))), np.finfo(np.float64).tiny)
    tol = 100 * math.sqrt(np.finfo(np.dtype(str(op.dtype).split(".")[-1])).eps) * scale
    if np.max(np.abs(G - G.T)) > tol:
        raise ValueError("the callable kernel is not symmetric (k(x, y) != k(y, x) on a sample of the points).")
    if np.linalg.eigvalsh((G + G.T) / 2)[0] < -tol:
        raise ValueError(
            "the callable kernel is not positive semidefinite: its matrix on a sample of the points "
            "has a negative eigenvalue. Nystrom methods need a PSD kernel."
        )


