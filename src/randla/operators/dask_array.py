"""Dask arrays as operators: one pass over the chunks per product."""

from __future__ import annotations

import functools
import math

import numpy as np

from ..backend import frobenius_norm
from .base import _SUM_BLOCK, Operator, _adjoint_product, _double, _number, _work_dtype



class _Dask(Operator):
    """A Dask array: each product is one pass over its chunks.

    The chunks are read where Dask's scheduler runs them (threads, processes
    or a distributed cluster); only the product, of the size of a basis,
    comes back, as a NumPy array. The engine then works in NumPy, and
    :meth:`as_output` hands the factors back as Dask arrays.
    """

    def __init__(self, A):
        import array_api_compat.numpy as xp

        self.xp, self.device = xp, "cpu"
        self.shape = tuple(int(s) for s in A.shape)
        self.input_dtype = np.dtype(A.dtype)
        self.dtype = np.dtype(_work_dtype(xp, self.input_dtype))
        self._A = A
        self._norm = None  # ||A||_F, once a pass has read it
        self._centered = {}  # axis: ||A - means||_F, once sums() has read it

    def _matrix(self):
        A = self._A
        return A if A.dtype == self.dtype else A.astype(self.dtype)

    def _compute(self, x):
        # The block's dtype counts too: a complex block (a complex shift or
        # low-rank term of a real A) has complex products, as for NumPy.
        return np.asarray(x.compute(), dtype=np.result_type(self.dtype, x.dtype))

    def matmat(self, X):
        return self._compute(self._matrix() @ X)

    def rmatmat(self, Y):
        return _adjoint_product(self.xp, lambda Z: self._compute(self._matrix().T @ Z), Y, self.dtype)

    def trace(self) -> float | complex | None:
        if self.shape[0] != self.shape[1]:
            return None
        import dask.array as da

        total = da.diagonal(self._A).sum(dtype=_double(self.xp, self.dtype)).compute()
        return _number(np, total, self.dtype)

    def sums(self, axis: int):
        import dask
        import dask.array as da

        # The pass that reads every chunk for the sums takes the norm too:
        # centring asks for both, and a pass over data on disk is the cost.
        # The adding runs in Dask's workers, where np.errstate here does not reach.
        # It takes each column's (row's) squared deviation from its mean as
        # well, merged between chunks as Chan, Golub & LeVeque (1983) do:
        # centered_norm then has no cancellation, whatever the means.
        double = _double(self.xp, self.dtype)
        add = functools.partial(_sum_quietly, dtype=double)
        moments = functools.partial(_chunk_moments, work=double)
        sums, per_chunk, deviations = dask.compute(
            da.reduction(self._A, add, add, axis=axis, dtype=double),
            self._chunk_norms(),
            da.reduction(self._A, moments, _deviations, combine=_merge_moments, axis=axis, dtype=np.float64),
        )
        self._norm = frobenius_norm(np, per_chunk)
        with np.errstate(over="ignore"):
            squared = float(np.sum(deviations))
        # Deviations past about 1e154 square to Inf: Centered then takes the
        # difference of squares, in units of ||A||_F.
        self._centered = {axis: math.sqrt(squared)} if math.isfinite(squared) else {}
        return np.asarray(sums)

    def centered_norm(self, mean, axis: int) -> float | None:
        # From the pass that took the sums the means came from.
        return self._centered.get(axis)

    def norm(self) -> float:
        if self._norm is None:
            self._norm = frobenius_norm(np, self._chunk_norms().compute())
        return self._norm

    def _chunk_norms(self):
        """The norm of every chunk, each taken with scaling: their norm is ||A||_F."""
        A = self._A
        return A.map_blocks(
            _chunk_norm,
            work_dtype=self.dtype,
            chunks=((1,) * A.numblocks[0], (1,) * A.numblocks[1]),
            dtype=np.float64,
        )

    def as_output(self, x):
        import dask.array as da

        x = super().as_output(x)
        # Factors share A's chunking along the dimensions they share with A
        # (its rows first on a factor's first axis, its columns on the last).
        rows, cols = zip(self.shape, self._A.chunks)
        preference = ([rows, cols], [cols, rows])[: x.ndim]
        chunks = [next((c for size, c in sides if size == s), (s,)) for s, sides in zip(x.shape, preference)]
        return da.from_array(x, chunks=tuple(chunks))


def _sum_quietly(x, axis=None, keepdims=False, dtype=None):
    """np.sum for a Dask reduction: +Inf and -Inf in one column give NaN,
    which the products then refuse with a ValueError, without a RuntimeWarning first."""
    with np.errstate(invalid="ignore"):
        return np.sum(x, axis=axis, keepdims=keepdims, dtype=dtype)


def _chunk_moments(x, axis, keepdims=True, work=None):
    """The chunk step of a Dask reduction: for each column (``axis=0``) or row
    of the chunk, its number of entries, their sum and their squared
    deviation from their own mean, stacked along ``axis``."""
    (axis,) = axis
    x = np.asarray(x)
    return _column_moments(x, work) if axis == 0 else _column_moments(x.T, work).T


def _column_moments(x, work):
    """(3, n): count, sum and squared deviation from the mean of each column of
    x, in blocks of rows: no temporary of the chunk's size."""
    step = max(1, _SUM_BLOCK // max(x.shape[1], 1))
    blocks = [slice(i, i + step) for i in range(0, x.shape[0], step)]
    with np.errstate(invalid="ignore", over="ignore"):  # Inf - Inf: NaN, which the products refuse
        total = sum((np.sum(x[b], axis=0, dtype=work) for b in blocks), np.zeros(x.shape[1], dtype=work))
        mean = total / max(x.shape[0], 1)
        squared = sum((np.sum(np.abs(np.asarray(x[b], dtype=work) - mean) ** 2, axis=0) for b in blocks),
                      np.zeros(x.shape[1]))
    return np.stack([np.full_like(total, x.shape[0]), total, squared])


def _merge_moments(x, axis, keepdims=True):
    """The combine step: triples of several chunks, one after the other
    along ``axis``, merged into one (Chan, Golub & LeVeque 1983, eq. 2.1)."""
    (axis,) = axis
    parts = np.moveaxis(x, axis, 0)
    parts = parts.reshape(-1, 3, *parts.shape[1:])
    counts, totals = parts[:, 0].real, parts[:, 1]
    with np.errstate(invalid="ignore", over="ignore"):
        count, total = counts.sum(axis=0), totals.sum(axis=0)
        mean = total / np.maximum(count, 1)
        between = counts * np.abs(totals / np.maximum(counts, 1) - mean) ** 2
        squared = parts[:, 2].real.sum(axis=0) + between.sum(axis=0)
    return np.moveaxis(np.stack([count, total, squared]), 0, axis)  # complex where A is


def _deviations(x, axis, keepdims=False):
    """The aggregate step: the squared deviations of the merged triple."""
    deviations = np.take(_merge_moments(x, axis), [2], axis=axis[0]).real
    return deviations if keepdims else np.squeeze(deviations, axis=axis)


def _chunk_norm(block, work_dtype):
    """||block||_F of one chunk of a Dask A, as a 1 x 1 block.

    A module-level function, not a closure over the operator: the processes
    and distributed schedulers pickle it with every chunk's task, and the
    operator holds A, whose graph can hold all of A's data (from_array).
    """
    return np.full((1, 1), frobenius_norm(np, np.asarray(block, dtype=work_dtype)))
