"""PCA of data seen once, a batch at a time: Frequent Directions with exact means.

Activations of a model over a corpus arrive batch by batch from forward
passes; storing them, or running the model again for every pass of a
randomized SVD, is what this avoids. :class:`StreamingPCA` keeps a sketch of
2 l rows whose Gram matrix approximates the scatter matrix of everything
seen, with a deterministic bound on the error, plus the exact mean and total
variance. Memory O(l n), time O(l n) per row.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import scipy.sparse as sp
from array_api_compat import array_namespace, is_array_api_obj, is_dask_array, is_torch_array

from ._validate import check_int
from .backend import conj_transpose, device_of, frobenius_norm, small_eigh, small_svd
from .operators.base import _work_dtype
from .svd import _sign_phases

__all__ = ["StreamingPCA"]


_SQUARES_BLOCK = 1 << 16  # entries of the temporary squares of _column_squares


def _column_squares(xp, rows, norm: float):
    """The sum of squares of each column over norm^2, in double, a block of rows
    at a time: no temporary of the batch's size. Divided before squaring, so
    that nothing underflows or overflows at any scale of the rows."""
    step = max(1, _SQUARES_BLOCK // int(rows.shape[1]))
    parts = (xp.astype(rows[i : i + step], xp.float64) / norm for i in range(0, int(rows.shape[0]), step))
    return sum(xp.sum(part * part, axis=0) for part in parts)


def _add_square(total, norm: float):
    """(scale, ssq) of a sum of squares scale^2 ssq, with norm^2 added: as LAPACK's
    lassq, never a square of data far from 1 (those of 1e-160 underflow, those of
    1e155 overflow). Also the factor by which the earlier ssq was multiplied."""
    scale, ssq = total
    if norm > scale:  # the earlier sum in the new units: its tiny terms may underflow, negligibly
        shrink = (scale / norm) ** 2
        return (norm, ssq * shrink + 1.0), shrink
    return (scale, ssq + (norm / scale) ** 2 if norm else ssq), 1.0


def _square(total, divisor: float):
    """scale^2 ssq / divisor as a NumPy double: inf, with NumPy's overflow warning,
    only where the value itself exceeds the double range."""
    scale, ssq = total
    return (np.float64(scale) * math.sqrt(ssq / divisor)) ** 2


_BLOCK_ENTRIES = 1 << 22  # at most this many entries of a whole matrix in one batch


def _row_blocks(X):
    """Batches of rows of a whole matrix, of at most _BLOCK_ENTRIES entries;
    a Dask array by its chunks of rows, each read once unless it is larger."""
    if X.ndim != 2:
        raise ValueError(f"a matrix of rows must be 2-D; got shape {tuple(X.shape)}.")
    if is_dask_array(X) and any(math.isnan(c) for c in X.shape):
        raise ValueError("the Dask array has unknown chunk sizes; call compute_chunk_sizes() first.")
    m, n = (int(s) for s in X.shape)
    rows = max(1, _BLOCK_ENTRIES // max(n, 1))
    if is_dask_array(X):
        bounds = np.cumsum((0,) + X.chunks[0])
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            if hi == lo:
                continue  # an empty chunk, as filtering leaves
            step = hi - lo if hi - lo <= rows else rows
            for i in range(lo, hi, step):
                yield X[i : min(i + step, hi)].compute()
        return
    if sp.issparse(X):
        X = X.tocsr()  # slices of rows, without a copy where X is CSR already
    if _is_torch_sparse(X):
        yield from _torch_sparse_row_blocks(X, rows)
        return
    for i in range(0, m, rows):
        yield X[i : i + rows]


_FIT_TAKES = "StreamingPCA.fit takes a 2-D array (a matrix of rows) or an iterable of 2-D batches"


def _check_batches(batches):
    """Refuse, naming it, what fit would otherwise iterate into things that are no
    batches (a DataFrame into its column labels, a 1-D array into numbers), whose
    error would name objects the caller never passed."""
    shape = tuple(batches.shape) if hasattr(batches, "shape") else "unknown"
    if hasattr(batches, "to_numpy") and hasattr(batches, "columns"):  # pandas, polars: iterated by column
        raise TypeError(f"{_FIT_TAKES}; got a {type(batches).__name__} of shape {shape}, which iterates "
                        "over its columns. Pass df.to_numpy(), or use randla.IncrementalPCA, which takes DataFrames.")
    ndim = getattr(batches, "ndim", None)
    if isinstance(ndim, int) and ndim < 2:
        fix = ("For one sample (a row), pass X[None, :] (or X.reshape(1, -1)); for one feature, X[:, None]."
               if ndim == 1 else "Pass the matrix of rows it belongs to.")
        raise ValueError(f"{_FIT_TAKES}; got a {ndim}-D {type(batches).__name__} of shape {shape}. {fix}")
    if isinstance(batches, (list, tuple)) and batches and isinstance(batches[0], (list, tuple, numbers.Number)):
        raise TypeError(f"{_FIT_TAKES}; got a {type(batches).__name__} of {type(batches[0]).__name__}s, no arrays. "
                        "For a matrix given as nested lists, pass np.asarray(X); for batches, a list of 2-D arrays.")


def _is_torch_sparse(X) -> bool:
    if not is_torch_array(X):
        return False
    import torch

    return X.layout != torch.strided


def _torch_sparse_row_blocks(X, rows: int):
    """Batches of at most ``rows`` rows of a torch sparse matrix, as COO tensors:
    torch slices no sparse layout by rows. One COO copy of the nonzeros,
    coalesced (sorted by row, duplicates summed), whose batches' entries are
    then found by bisection; X itself is not modified."""
    import torch

    from .operators.adapters import _plain_torch_sparse

    X = _plain_torch_sparse(X.detach().to_sparse_coo()).coalesce()
    indices, values = X.indices(), X.values()
    m, n = (int(s) for s in X.shape)
    starts = list(range(0, m, rows)) + [m]
    bounds = torch.searchsorted(indices[0], torch.tensor(starts, device=X.device)).tolist()
    for top, bottom, lo, hi in zip(starts[:-1], starts[1:], bounds[:-1], bounds[1:]):
        block = indices[:, lo:hi] - torch.tensor([[top], [0]], device=X.device)  # rows from the batch's first
        yield torch.sparse_coo_tensor(block, values[lo:hi], (bottom - top, n), is_coalesced=True,
                                      check_invariants=False)


class StreamingPCA:
    """Principal components of rows that arrive in batches, in one pass.

    Frequent Directions (Liberty 2013; Ghashami, Liberty, Phillips & Woodruff
    2016, Alg. 3.1 with a buffer of 2 l rows) run on the centred rows: each
    batch is centred on its own mean, and one extra row carries the shift
    between the running mean and the batch's, so the sketch's Gram matrix
    tracks the exact scatter matrix C = sum (x - mean)(x - mean)^T of all the
    rows seen (as scikit-learn's IncrementalPCA, Ross et al. 2008). When the
    buffer is full it is cut to l rows: its squared singular values beyond
    the l-th are dropped, and those from the (l/2 + 1)-th to the l-th lose
    the (l+1)-th, delta; the leading half is kept whole (alpha-FD, Desai,
    Ghashami & Phillips 2016), which keeps the leading directions nearly
    exact in practice. Every cut keeps 0 <= C - B^T B <= Delta I for the sum
    Delta of the deltas, a bound the object reports, and removes at least
    (s + 1) delta of mass for the s = l - floor(l/2) shrunk directions, so
    Delta <= sum_{i>j} lambda_i(C) / (s + 1 - j) for every j <= s.

    Parameters
    ----------
    n_components : int
        Number of principal axes k to report.
    sketch_size : int, optional
        Rows l kept after each cut, at least k (default 4 k, for which the
        bound above holds at j = k: Delta <= sum_{i>k} lambda_i / (k + 1)).
        Larger l: more accurate, more memory (2 l n numbers) and time. At
        most n is used: n rows hold the n x n scatter matrix exactly.

    Attributes
    ----------
    components_ : (k, n) array
        Principal axes, orthonormal rows, by decreasing variance, each with
        its largest-magnitude entry positive (as scikit-learn's): the sign
        follows from the axis alone.
    explained_variance_ : (k,) array
        sigma_i(B)^2 / (N - 1). The i-th eigenvalue of the covariance
        C / (N - 1) lies in [this, this + variance_error_bound_] (Weyl).
    explained_variance_ratio_ : (k,) array
        Over the exact total variance.
    singular_values_ : (k,) array
    mean_ : (n,) array
        Exact column means, accumulated in double.
    total_variance_ : float
        Exact sum of the column variances (divisor N - 1).
    var_ : (n,) array
        Exact variance of each column, divisor N (as ``numpy.var`` and
        scikit-learn's ``IncrementalPCA.var_``).
    variance_error_bound_ : float
        Delta / (N - 1): ||C / (N - 1) - B^T B / (N - 1)||_2 is at most this.
    n_samples_seen_ : int

    Examples
    --------
    >>> import numpy as np, randla
    >>> X = randla.testing.low_rank(5000, 200, rank=5, noise=0.01, rng=0) + 3.0
    >>> pca = randla.StreamingPCA(5)
    >>> for batch in np.array_split(X, 10):
    ...     _ = pca.partial_fit(batch)
    >>> exact = randla.pca(X, 5, rng=0)                  # all rows at once, for comparison
    >>> round(float(pca.explained_variance_ratio_.sum()), 4), round(float(exact.explained_variance_ratio.sum()), 4)
    (0.9869, 0.9869)
    >>> pca.components_.shape, pca.transform(X[:3]).shape
    ((5, 200), (3, 5))
    """

    def __init__(self, n_components: int, *, sketch_size: int | None = None):
        self.n_components = check_int("n_components", n_components, 1)
        low = self.n_components
        self.sketch_size = (4 * low if sketch_size is None
                            else check_int("sketch_size", sketch_size, low))
        self._reset()

    def _reset(self):
        self.n_samples_seen_ = 0
        self._xp = self._dtype = self._device = None
        self._sums = self._mean = None  # double
        # Sums of squares as (scale, ssq) pairs, scale^2 ssq (see _add_square): their squares
        # overflow for data near 1e155, or vanish near 1e-160, where the norms do not.
        self._scatter = (0.0, 0.0)  # exact sum of squared deviations
        self._column_scatter = None  # the same, column by column, in units of the scatter's scale^2, double
        self._shrinkage = (0.0, 0.0)  # Delta
        self._buffer = None
        self._axes = None  # cached SVD of the buffer

    def __getstate__(self):  # picklable: the array namespace is found again from the sketch
        return {**self.__dict__, "_xp": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._buffer is not None:
            self._xp = array_namespace(self._buffer)

    def fit(self, batches):
        """Start over, then partial_fit each batch of an iterable in turn (a generator of activations, say).

        A whole matrix (2-D NumPy, torch, CuPy, SciPy sparse or Dask array)
        is taken a block of at most 2^22 entries at a time; a 3-D array is
        an iterable of batches (b, n) along its first axis. A Dask array is
        so read once, a chunk of rows at a time (split further where one
        holds more entries): one pass over data that stay on disk, where
        :func:`randla.pca` makes 2q + 3. A DataFrame (pass ``df.to_numpy()``),
        a 1-D array (one row is ``X[None, :]``) or nested lists are refused.
        """
        _check_batches(batches)
        if is_dask_array(batches) or sp.issparse(batches) or (is_array_api_obj(batches) and batches.ndim == 2):
            batches = _row_blocks(batches)
        self._reset()  # as scikit-learn's fit: what earlier calls saw is dropped
        for batch in batches:
            self.partial_fit(batch)
        return self

    def partial_fit(self, X):
        """Add the rows of X, (b, n): NumPy, torch (any device), CuPy or SciPy sparse.

        A sparse batch is densified one batch at a time (b x n) and centred in
        that copy. X is not modified.
        """
        X, private = self._check_batch(X)
        xp, b = self._xp, int(X.shape[0])
        # One centred copy of the batch, the rows the sketch takes (X itself where X is a copy already,
        # as a densified sparse batch: a second would double the memory); the sums and the scatter are
        # accumulated in double without copies of their own.
        sums = xp.sum(X, axis=0, dtype=xp.float64)
        batch_mean = sums / b
        if private:
            X -= xp.astype(batch_mean, X.dtype)[None, :]
            rows = X
        else:
            rows = X - xp.astype(batch_mean, X.dtype)[None, :]
        seen = self.n_samples_seen_
        # The scatter of the union: both parts' scatters plus the rank-one term of the shift between their means.
        parts = [(rows, frobenius_norm(xp, rows))]
        if seen:
            shift = (self._mean - batch_mean) * math.sqrt(seen * b / (seen + b))
            parts.append((shift[None, :], frobenius_norm(xp, shift[None, :])))
        if self._column_scatter is None:
            self._column_scatter = xp.zeros(self._features, dtype=xp.float64, device=self._device)
        for part, norm in parts:
            if norm == 0:
                continue
            self._scatter, shrink = _add_square(self._scatter, norm)
            column_shares = _column_squares(xp, part, norm)  # summing to 1
            self._column_scatter = self._column_scatter * shrink + column_shares * (norm / self._scatter[0]) ** 2
        self._sums = sums if self._sums is None else self._sums + sums
        self.n_samples_seen_ = seen + b
        self._mean = self._sums / self.n_samples_seen_
        self._append(rows)
        if seen:
            self._append(xp.astype(shift, X.dtype)[None, :])
        return self

    def _check_batch(self, X):
        """X as a dense batch in the working dtype, and whether it is a copy of the
        caller's (densified or converted), which partial_fit may then centre in place."""
        private = sp.issparse(X) or _is_torch_sparse(X)
        if sp.issparse(X):
            X = X.toarray()
        if _is_torch_sparse(X):  # densified one batch at a time, as SciPy's
            X = X.detach().to_dense()
        if not is_array_api_obj(X) or isinstance(X, np.matrix):
            raise TypeError(f"a batch must be a 2-D array (NumPy, torch, CuPy or SciPy sparse); "
                            f"got {type(X).__name__}.")
        xp = array_namespace(X)
        if is_torch_array(X):
            X = X.detach()  # the sketch is data: a graph kept through every batch would only grow
        if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"a batch must be 2-D (rows, features) with at least one row; got shape {tuple(X.shape)}.")
        if not xp.isdtype(X.dtype, ("real floating", "integral", "bool")):
            raise TypeError(f"a batch must hold real numbers; got dtype {X.dtype}.")
        if self._xp is None:
            if self.n_components > X.shape[1]:
                raise ValueError(f"n_components={self.n_components} is more than the data's {X.shape[1]} features.")
            self._xp, self._device = xp, device_of(X)
            self._dtype, self._output_dtype = _work_dtype(xp, X.dtype), X.dtype
            self._features = int(X.shape[1])
            # A sketch of n rows holds the n x n scatter matrix exactly: never more.
            self._kept = min(self.sketch_size, self._features)
        elif xp is not self._xp or int(X.shape[1]) != self._features:
            raise ValueError(
                f"every batch must come from the first one's library with {self._features} features; "
                f"got {type(X).__name__} of shape {tuple(X.shape)}."
            )
        if X.dtype != self._dtype:
            X, private = xp.astype(X, self._dtype), True
        if not bool(xp.all(xp.isfinite(X))):
            raise ValueError("the batch contains NaN or Inf; remove or impute those rows first.")
        return X, private

    def _append(self, rows):
        """Rows into the buffer, shrinking it to l rows each time it holds 2 l."""
        xp, full = self._xp, 2 * self._kept
        start = 0
        while start < rows.shape[0]:
            held = 0 if self._buffer is None else int(self._buffer.shape[0])
            take = min(full - held, int(rows.shape[0]) - start)
            part = rows[start : start + take]
            self._buffer = part if self._buffer is None else xp.concat([self._buffer, part])
            start += take
            if self._buffer.shape[0] == full:
                self._shrink()
        self._axes = None

    def _shrink(self):
        """Buffer (2 l x n) to l rows, through its 2l x 2l Gram matrix in double: a
        symmetric eigensolver on it is several times faster than an SVD of the
        buffer, and the rows kept, diag(sqrt(1 - delta / sigma^2)) U^T buffer
        (factor 1 for the leading half), are the well-resolved directions."""
        xp, step = self._xp, self._kept
        buffer = xp.astype(self._buffer, xp.float64)
        # Divided by its largest entry first: the squares of rows near 1e-160 underflow (the kept
        # rows would be lost) and those near 1e155 overflow. The eigenvalues are in units of unit^2.
        unit = float(xp.max(xp.abs(buffer))) or 1.0
        buffer = buffer / unit
        w, U = small_eigh(xp, buffer @ conj_transpose(xp, buffer))
        w, U = xp.flip(w), xp.flip(U, axis=1)  # descending
        delta = max(float(w[step]), 0.0)  # the (l+1)-th squared singular value, over unit^2
        top = xp.clip(w[:step], min=delta)
        scale = xp.where(top > 0, xp.sqrt((top - delta) / xp.where(top > 0, top, 1.0)), 0.0)
        kept_whole = step // 2
        scale = xp.concat([xp.ones(kept_whole, dtype=scale.dtype, device=self._device), scale[kept_whole:]])
        # The rows kept need no more precision than the buffer's own.
        self._buffer = xp.astype(scale[:, None] * conj_transpose(xp, U[:, :step]), self._dtype) @ self._buffer
        self._shrinkage, _ = _add_square(self._shrinkage, unit * math.sqrt(delta))

    def _require_rows(self, rows: int = 2):
        if self.n_samples_seen_ < rows:
            raise ValueError(f"StreamingPCA(n_components={self.n_components}) needs at least {rows} rows "
                             f"for this; it has seen {self.n_samples_seen_}.")

    def _sketch_axes(self):
        # Fewer rows than k leave the trailing axes undefined (the centred rows span fewer).
        self._require_rows(max(2, self.n_components))
        if self._axes is None:
            _, s, Vh = small_svd(self._xp, self._buffer)
            Vh = Vh[: self.n_components]
            self._axes = (s[: self.n_components], Vh * _sign_phases(self._xp, Vh)[:, None])
        return self._axes

    def _check_library(self, X, name: str):
        """X must come from the library the model was fitted in (SciPy sparse for NumPy)."""
        if sp.issparse(X):
            same = self._xp is array_namespace(np.empty(0))
        else:
            same = is_array_api_obj(X) and array_namespace(X) is self._xp
        if not same:
            raise TypeError(f"`{name}` must be an array of the library the model was fitted on "
                            f"({self._xp.__name__.split('.')[-1]}); got {type(X).__module__}.{type(X).__name__}.")
        # As partial_fit refuses complex batches: the real axes would silently drop the imaginary part.
        if self._xp.isdtype(X.dtype, "complex floating"):
            raise TypeError(f"`{name}` must hold real numbers, as the batches the model was fitted on; got dtype "
                            f"{X.dtype}. Pass its real part if that is meant, or use randla.pca, which takes "
                            "complex data.")

    def _out(self, x):
        xp = self._xp
        return x if x.dtype == self._output_dtype or not xp.isdtype(self._output_dtype, "real floating") \
            else xp.astype(x, self._output_dtype)

    @property
    def components_(self):
        return self._out(self._sketch_axes()[1])

    @property
    def singular_values_(self):
        return self._out(self._sketch_axes()[0])

    def _scatter_norm(self) -> float:
        """sqrt of the exact scatter, ||X - 1 mean^T||_F of all rows seen."""
        scale, ssq = self._scatter
        return scale * math.sqrt(ssq)

    @property
    def explained_variance_(self):
        # Scaled before squaring: inf (NumPy's overflow warning) only beyond the double range.
        s = self._xp.astype(self._sketch_axes()[0], self._xp.float64)
        variance = (s / math.sqrt(self.n_samples_seen_ - 1)) ** 2
        return self._out(self._xp.astype(variance, self._dtype))

    @property
    def explained_variance_ratio_(self):
        s = self._xp.astype(self._sketch_axes()[0], self._xp.float64)
        scale, ssq = self._scatter
        # A share of norms, never of squares: the scatter itself underflows or overflows at extreme scales.
        share = (s / scale) ** 2 / ssq if ssq > 0 else s * 0
        return self._out(self._xp.astype(share, self._dtype))

    @property
    def mean_(self):
        self._require_rows()
        return self._out(self._xp.astype(self._mean, self._dtype))

    @property
    def total_variance_(self) -> float:
        self._require_rows()
        return _square(self._scatter, self.n_samples_seen_ - 1)

    @property
    def var_(self):
        self._require_rows(1)
        xp = self._xp
        # Scaled before squaring: inf (NumPy's overflow warning) only beyond the double range.
        var = (self._scatter[0] * xp.sqrt(self._column_scatter / self.n_samples_seen_)) ** 2
        return self._out(xp.astype(var, self._dtype))

    @property
    def variance_error_bound_(self) -> float:
        self._require_rows()
        return _square(self._shrinkage, self.n_samples_seen_ - 1)

    def transform(self, X):
        """Rows of X (p, n) in principal coordinates, (X - mean) V: the mean is
        subtracted after the product, so sparse X is not densified."""
        _, Vh = self._sketch_axes()
        self._check_library(X, "X")
        if len(X.shape) != 2 or X.shape[1] != self._features:
            raise ValueError(f"`X` must have shape (p, {self._features}); got {tuple(X.shape)}.")
        V = conj_transpose(self._xp, Vh)
        if is_torch_array(X) and X.dtype != V.dtype:
            X = X.to(V.dtype)
        mean = self._xp.astype(self._mean, V.dtype)
        return self._out(X @ V - (mean[None, :] @ V))

    def inverse_transform(self, Z):
        """Points (p, k) in principal coordinates back in the data space: Z Vh + mean."""
        _, Vh = self._sketch_axes()
        self._check_library(Z, "Z")
        if len(Z.shape) != 2 or Z.shape[1] != Vh.shape[0]:
            raise ValueError(f"`Z` must have shape (p, {Vh.shape[0]}); got {tuple(Z.shape)}.")
        if is_torch_array(Z) and Z.dtype != Vh.dtype:  # transform's own half-precision output, say
            Z = Z.to(Vh.dtype)
        return self._out(Z @ Vh + self._xp.astype(self._mean, Vh.dtype)[None, :])
