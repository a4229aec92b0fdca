"""Observed entries of a partly known matrix: validation, storage and the two products.

Every completion algorithm touches the data in two ways only: the values of a
low-rank model L @ R^T at the observed positions, and products of a sparse
matrix on the observed pattern with a thin dense block. :class:`Entries`
does both in O(|Omega| k) time and memory, never forming anything m x n.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

__all__ = ["Entries", "as_entries", "as_indices"]

# Entries per chunk when gathering factor rows: keeps temporaries near 32 MiB.
_CHUNK_ELEMENTS = 1 << 22


def _index_dtype(limit: int):
    return np.int32 if limit < np.iinfo(np.int32).max else np.int64


class Entries:
    """Observed (row, col, value) triplets in row-major order, without duplicates.

    One CSR pattern (``indptr``, ``indices``) serves every sparse matrix the
    algorithms need: a residual is a new data array on the same structure.
    """

    def __init__(self, rows, cols, values, shape):
        self.shape = (int(shape[0]), int(shape[1]))
        self.rows, self.cols, self.values = rows, cols, values
        counts = np.bincount(rows, minlength=self.shape[0])
        self.indptr = np.zeros(self.shape[0] + 1, dtype=_index_dtype(values.size))
        np.cumsum(counts, out=self.indptr[1:])

    @property
    def size(self) -> int:
        return int(self.values.size)

    @property
    def dtype(self):
        return self.values.dtype

    def sparse(self, data) -> sp.csr_matrix:
        """The m x n CSR matrix with ``data`` on the observed positions."""
        return sp.csr_matrix((data, self.cols, self.indptr), shape=self.shape, copy=False)

    def model_values(self, L, R, row_offset=None, col_offset=None) -> np.ndarray:
        """(L @ R^T)[i, j] (+ row_offset[i] + col_offset[j]) at every observed (i, j)."""
        out = np.empty(self.size, dtype=self.dtype)
        step = max(1, _CHUNK_ELEMENTS // max(L.shape[1], 1))
        for start in range(0, self.size, step):
            part = slice(start, start + step)
            rows, cols = self.rows[part], self.cols[part]
            out[part] = np.einsum("ij,ij->i", L.take(rows, axis=0), R.take(cols, axis=0))
            if row_offset is not None:
                out[part] += row_offset.take(rows)
            if col_offset is not None:
                out[part] += col_offset.take(cols)
        return out

    def subset(self, keep) -> "Entries":
        """The entries where the boolean mask ``keep`` is True (order kept)."""
        return Entries(self.rows[keep], self.cols[keep], self.values[keep], self.shape)

    def split(self, fraction: float, rng: np.random.Generator) -> tuple["Entries", "Entries"]:
        """A random ``fraction`` held out: (kept, held out)."""
        held = rng.random(self.size) < fraction
        if held.all() or not held.any():
            raise ValueError(
                f"holding out a fraction {fraction} of {self.size} observed entries leaves "
                "one side empty; observe more entries or change `validation`."
            )
        return self.subset(~held), self.subset(held)


def _as_integers(name: str, x) -> np.ndarray:
    """A 1-D array of integers; floats are accepted where every value is a whole number."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"`{name}` must be a 1-D array of indices; got shape {x.shape}.")
    if x.size and not np.issubdtype(x.dtype, np.integer):
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"`{name}` must hold integer indices; got dtype {x.dtype}.")
        # Beyond 2^53 a float no longer tells neighbouring integers apart.
        whole = np.isfinite(x) & (x == np.round(x)) & (np.abs(x) < 2.0**53)
        if not whole.all():
            bad = int(np.flatnonzero(~whole)[0])
            raise TypeError(f"`{name}` must hold integer indices; got {x[bad]} at position {bad}.")
        x = x.astype(np.int64)
    return x


def _in_range(name: str, x: np.ndarray, n: int) -> np.ndarray:
    if x.size and (x.min() < 0 or x.max() >= n):
        bad = x[(x < 0) | (x >= n)][0]
        raise ValueError(f"`{name}` holds index {bad}, outside [0, {n}); check the indices or `shape`.")
    return x.astype(_index_dtype(n), copy=False)


def as_indices(rows, cols, shape) -> tuple[np.ndarray, np.ndarray]:
    """Positions (rows[t], cols[t]) in an m x n matrix, validated as :func:`as_entries` validates them."""
    rows, cols = _as_integers("rows", rows), _as_integers("cols", cols)
    if rows.shape != cols.shape:
        raise ValueError(f"`rows` and `cols` must have the same length; got {rows.shape} and {cols.shape}.")
    return _in_range("rows", rows, shape[0]), _in_range("cols", cols, shape[1])


def _as_values(values) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"`values` must be a 1-D array; got shape {values.shape}.")
    if values.dtype == np.bool_ or not (np.issubdtype(values.dtype, np.integer)
                                        or np.issubdtype(values.dtype, np.floating)):
        raise TypeError(f"`values` must be real numbers; got dtype {values.dtype}.")
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    if not np.all(np.isfinite(values)):
        where = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(
            f"`values` contains NaN or Inf (first at position {where}); unobserved entries "
            "are simply left out of (rows, cols, values)."
        )
    return values


def _check_shape(shape, rows, cols):
    if shape is None:
        if rows.size == 0:
            raise ValueError("no observed entries: `rows`, `cols` and `values` are empty.")
        return int(np.max(rows)) + 1, int(np.max(cols)) + 1
    ok = (isinstance(shape, tuple) and len(shape) == 2
          and all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in shape))
    if not ok:
        raise ValueError(f"`shape` must be a tuple of two positive ints (m, n); got {shape!r}.")
    return int(shape[0]), int(shape[1])


def _from_torch(x):
    """A torch tensor's values on the host (half precisions in float32); a torch
    sparse tensor as SciPy COO, its stored entries as they are (duplicates kept)."""
    if type(x).__module__.split(".")[0] != "torch" or not hasattr(x, "layout"):
        return x
    import torch

    def host(t):
        t = t.detach().cpu().resolve_conj()
        return (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t).numpy()

    if x.layout == torch.strided:
        return host(x)
    if x.ndim != 2:
        raise ValueError(f"a sparse tensor of observations must be 2-D; got shape {tuple(x.shape)}.")
    x = x.detach().to_sparse_coo() if x.layout != torch.sparse_coo else x.detach()
    index = host(x._indices())  # the raw entries: coalescing would add up repeats unseen
    return sp.coo_array((host(x._values()), (index[0], index[1])), shape=tuple(x.shape))


def as_entries(rows, cols=None, values=None, shape=None) -> Entries:
    """Validate observed entries and store them sorted; the inputs are never modified.

    ``rows`` may instead be a SciPy sparse matrix or array whose stored
    entries (explicit zeros included) are the observations; ``cols`` and
    ``values`` are then left out.
    """
    rows, cols, values = (_from_torch(x) for x in (rows, cols, values))
    if sp.issparse(rows):
        if cols is not None or values is not None:
            raise TypeError("pass either a sparse matrix alone or `rows`, `cols` and `values`; not both.")
        coo = rows.tocoo()
        shape = coo.shape if shape is None else shape
        rows, cols, values = coo.row, coo.col, coo.data
    elif cols is None or values is None:
        raise TypeError("`cols` and `values` are required with index arrays (or pass a SciPy sparse matrix).")
    rows_arr, cols_arr = _as_integers("rows", rows), _as_integers("cols", cols)
    values = _as_values(values)
    if not rows_arr.shape == cols_arr.shape == values.shape:
        raise ValueError(
            "`rows`, `cols` and `values` must have the same length; got "
            f"{rows_arr.shape}, {cols_arr.shape} and {values.shape}."
        )
    m, n = _check_shape(shape, rows_arr, cols_arr)
    rows_arr, cols_arr = _in_range("rows", rows_arr, m), _in_range("cols", cols_arr, n)
    if values.size == 0:
        raise ValueError("no observed entries: `rows`, `cols` and `values` are empty.")
    key = rows_arr.astype(np.int64) * n + cols_arr
    order = np.argsort(key, kind="stable")
    key = key[order]
    repeated = np.flatnonzero(key[1:] == key[:-1])
    if repeated.size:
        i, j = divmod(int(key[repeated[0]]), n)
        raise ValueError(
            f"{repeated.size} entries are observed more than once (first at row {i}, col {j}); "
            "aggregate them first, e.g. average the repeated ratings of a (row, col) pair."
        )
    return Entries(rows_arr[order], cols_arr[order], values[order], (m, n))
