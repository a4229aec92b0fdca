"""Anything matrix-like, seen through products only.

``as_operator(A)`` wraps a NumPy array, SciPy sparse matrix or array,
``scipy.sparse.linalg.LinearOperator``, torch tensor (dense or sparse, any
device), CuPy array or Dask array in an :class:`Operator` with ``shape``,
``dtype``, ``matmat(X)`` (A @ X) and ``rmatmat(Y)`` (A^H @ Y). The algorithms
see only operators: they never copy, densify or modify the user's matrix.

Composites build new operators from old ones without forming anything:
:class:`Transposed`, :class:`Centered` (implicit mean subtraction, so PCA of
sparse data stays sparse), :class:`Shifted` (A + sI), and
:class:`PlusLowRank` (A + L R, of which :func:`residual` A - L R is a case).

Examples
--------
>>> import numpy as np, randla
>>> A = np.arange(6.0).reshape(3, 2)
>>> op = randla.as_operator(A)
>>> op.shape, op.matmat(np.ones((2, 1))).ravel().tolist()
((3, 2), [1.0, 5.0, 9.0])
"""

from __future__ import annotations

import abc
import functools
import math
import numbers

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj, is_dask_array, is_torch_array

from .backend import conj_transpose, device_of, frobenius_norm

__all__ = [
    "Operator",
    "as_operator",
    "Transposed",
    "Centered",
    "Shifted",
    "PlusLowRank",
    "residual",
]


def _is_complex(xp, dtype) -> bool:
    return xp.isdtype(dtype, "complex floating")


def _work_dtype(xp, dtype):
    """The dtype products are computed in: float32/64 or complex64/128.

    Integers and booleans are promoted to float64; half precisions (fp16,
    bf16) are computed in float32, and NumPy's long doubles, which LAPACK
    cannot take, in (complex) double.
    """
    if xp.isdtype(dtype, "complex floating"):
        if dtype in (xp.complex64, xp.complex128):
            return dtype
        return xp.complex128 if xp.finfo(dtype).bits >= 64 else xp.complex64
    if xp.isdtype(dtype, "real floating"):
        if dtype in (xp.float32, xp.float64):
            return dtype
        # bits, not identity: a byte-swapped float64 (">f8") is not np.float64.
        return xp.float64 if xp.finfo(dtype).bits >= 64 else xp.float32
    return xp.float64


# Entries per block when a dense array is summed in double precision.
_SUM_BLOCK = 1 << 20
_CONVERT_BLOCK = 1 << 22  # entries of a half-precision A converted at a time within a product


def _double(xp, dtype):
    """float64 or complex128, for sums returned as Python numbers: a sum in a
    half precision overflows at 65504, one in float32 at 3.4e38."""
    return xp.complex128 if _is_complex(xp, dtype) else xp.float64


def _adjoint_product(xp, matmat_t, Y, a_dtype):
    """A^H Y = conj(A^T conj(Y)) from a routine for A^T Y, without conjugating
    the big matrix; real A and Y need no conjugate at all."""
    if _is_complex(xp, a_dtype) and not _is_complex(xp, Y.dtype):
        Y = xp.astype(Y, xp.result_type(a_dtype, Y.dtype))  # complex: torch multiplies only equal dtypes
    return xp.conj(matmat_t(xp.conj(Y))) if _is_complex(xp, Y.dtype) else matmat_t(Y)


class Operator(abc.ABC):
    """A linear map seen through products with blocks of vectors.

    Subclasses set ``shape`` (m, n), ``dtype`` (the dtype of products),
    ``xp`` (the array namespace of blocks) and ``device``, and implement
    ``matmat`` (A @ X for X of shape (n, k)) and ``rmatmat`` (A^H @ Y for Y of
    shape (m, k)). ``input_dtype`` is the dtype results are returned in.
    ``hermitian`` is True where A == A^H holds by construction (then eigh
    and nystrom skip their check, a product with A^H).
    """

    shape: tuple[int, int]
    hermitian = False
    dtype = None
    input_dtype = None
    xp = None
    device = "cpu"

    @abc.abstractmethod
    def matmat(self, X):
        """A @ X for a block X of shape (n, k)."""

    @abc.abstractmethod
    def rmatmat(self, Y):
        """A^H @ Y for a block Y of shape (m, k)."""

    def norm(self) -> float | None:
        """||A||_F when it is cheap to know exactly; None otherwise.

        This, not :meth:`squared_norm`, is what operators override. The
        adapters compute it with scaling, so it is right at any magnitude of A.
        """
        return None

    def squared_norm(self) -> float | None:
        """||A||_F^2 when it is cheap to know exactly; None otherwise.

        Inf or 0 where the square leaves the float range (||A||_F beyond
        ~1e154 or below ~1e-154); :meth:`norm` never does.
        """
        norm = self.norm()
        return None if norm is None else norm * norm

    def trace(self) -> float | None:
        """tr(A) of a square operator when it is cheap to know exactly; None otherwise."""
        return None

    def sums(self, axis: int):
        """The sums of A's columns (``axis=0``) or rows (``axis=1``), accumulated in double.

        A 1-D float64 (complex128) array of ``xp`` where the entries can be
        read; None where only products reach them. :class:`Centered` takes
        its means from here: a product in single precision carries a rounding
        error of about eps |mean|, which ||A||_F^2 - m ||mean||^2 squares.
        """
        return None

    def centered_norm(self, mean, axis: int) -> float | None:
        """||A - 1 mean^T||_F (``axis=0``, mean of length n) or ||A - mean 1^T||_F
        (``axis=1``, length m), with the means subtracted from the entries.

        None where products alone reach the entries: :class:`Centered` then
        falls back to the difference of squares ||A||^2 - m ||mean||^2,
        whose relative error is about eps (|mean| / spread)^2 even with exact
        means. A Dask array, whose every pass is a read of its chunks, gives
        the deviations it took in the pass of :meth:`sums`, with a relative
        error of about eps |mean| / spread.
        """
        return None

    def matmat_sparse(self, S):
        """A @ S for a SciPy sparse S of shape (n, k): the sparse sketches' path.

        Operators that hold an explicit sparse matrix override this to cost
        O(nnz(A) * nonzeros per row of S) instead of a dense product.
        """
        xp = self.xp
        return self.matmat(xp.asarray(S.toarray(), dtype=self.dtype, device=self.device))

    def as_output(self, x):
        """A small result in the dtype factors are returned in.

        That is the input's dtype, except that integers come back as float64;
        half and extended precisions (computed in float32 and float64) go back
        to the input's, real parts (S, eigenvalues) to its real counterpart.
        A result beyond float16's range is refused, not returned as inf.
        """
        xp, dtype = self.xp, self.input_dtype
        if dtype is None or dtype == self.dtype or not xp.isdtype(dtype, ("real floating", "complex floating")):
            return x
        if xp.isdtype(x.dtype, "real floating"):
            dtype = _real_dtype(dtype)
        largest = float(xp.finfo(dtype).max)
        if not is_dask_array(x) and math.prod(x.shape) and float(xp.max(xp.abs(x))) > largest:
            raise ValueError(
                f"the result reaches {float(xp.max(xp.abs(x))):.4g}, beyond the largest {dtype} "
                f"({largest:.6g}) that it would be returned in; pass A in float32 or bfloat16, or scale it down."
            )
        return xp.astype(x, dtype)

    def as_block(self, x):
        """A factor as :meth:`as_output` returns it, as a block of ``xp``.

        Dask factors, of the size of a basis, are computed here: those of a
        Dask run then also serve for the same matrix held in memory.
        """
        if is_dask_array(x):
            return self.xp.asarray(x.compute(), device=self.device)
        return x

    def __matmul__(self, X):
        return self.matmat(X)

    def _is_real(self) -> bool:
        """Whether real blocks map to real blocks, so that A^T needs no conjugation."""
        return not _is_complex(self.xp, self.dtype)

    @property
    def H(self) -> Operator:
        """The adjoint A^H, as an operator."""
        return Transposed(self, conjugate=True)

    @property
    def T(self) -> Operator:
        """The transpose A^T, as an operator."""
        return Transposed(self, conjugate=False)

    def __repr__(self) -> str:
        m, n = self.shape
        return f"<{type(self).__name__} {m}x{n} {self.dtype}>"


class _Dense(Operator):
    """A dense array of any array-API library (NumPy, torch, CuPy, ...)."""

    def __init__(self, A):
        xp = array_namespace(A)
        self.xp, self.device = xp, device_of(A)
        self.shape = tuple(int(s) for s in A.shape)
        self.input_dtype = A.dtype
        self.dtype = _work_dtype(xp, A.dtype)
        # Integer input in memory is copied once into float64: every product
        # would otherwise make the same conversion internally. The user's
        # array is not touched. Half precisions (and long doubles), and
        # integers mapped from a file, are converted a block of rows at a time
        # within each product instead, which keeps memory near the size the
        # user chose (a uint8 file would take 8 times its size in float64).
        floating = xp.isdtype(A.dtype, ("real floating", "complex floating"))
        mapped = isinstance(A, np.memmap) or (isinstance(A, np.ndarray) and isinstance(A.base, np.memmap))
        self._promote_per_product = A.dtype != self.dtype and (floating or mapped)
        if not (floating or mapped):
            A = xp.astype(A, self.dtype)
        self._A = A

    def _per_block(self, f):
        """[f(start, rows of A from there in the work dtype)]: all of A at once
        unless it must be converted, then _CONVERT_BLOCK entries at a time,
        each converted block freed before the next is made."""
        A = self._A
        if not self._promote_per_product:
            return [f(0, A)]
        rows = max(1, _CONVERT_BLOCK // self.shape[1])
        return [f(i, self.xp.astype(A[i : i + rows], self.dtype)) for i in range(0, self.shape[0], rows)]

    def matmat(self, X):
        parts = self._per_block(lambda _, block: block @ X)
        return parts[0] if len(parts) == 1 else self.xp.concat(parts)

    def rmatmat(self, Y):
        def transposed_product(Z):
            total = None

            def add(i, block):  # a running sum: a wide A has many blocks, each part n x k
                nonlocal total
                part = block.mT @ Z[i : i + block.shape[0]]
                total = part if total is None else total + part

            self._per_block(add)
            return total

        return _adjoint_product(self.xp, transposed_product, Y, self.dtype)

    def trace(self) -> float | None:
        if self.shape[0] != self.shape[1]:
            return None
        xp = self.xp
        return float(xp.real(xp.sum(xp.linalg.diagonal(self._A), dtype=_double(xp, self.dtype))))

    def norm(self) -> float:
        if not self.xp.isdtype(self._A.dtype, ("real floating", "complex floating")):  # a mapped integer file
            return frobenius_norm(np, np.asarray(self._per_block(lambda _, block: frobenius_norm(self.xp, block))))
        return frobenius_norm(self.xp, self._A)  # half and extended precisions: summed in double by blocks

    def centered_norm(self, mean, axis: int) -> float:
        # In the pass that norm() would make, block by block, in mean's (double) precision.
        xp, A = self.xp, self._A
        rows = max(1, _SUM_BLOCK // self.shape[1])
        norms = []
        with np.errstate(invalid="ignore", over="ignore"):  # Inf - Inf: NaN, which the products refuse
            for i in range(0, self.shape[0], rows):
                centre = mean[None, :] if axis == 0 else mean[i : i + rows, None]
                norms.append(frobenius_norm(xp, xp.astype(A[i : i + rows], mean.dtype) - centre))
        return frobenius_norm(np, np.asarray(norms))

    def sums(self, axis: int):
        # Block by block: no double copy of the whole array.
        xp, A = self.xp, self._A
        double, rows = _double(xp, self.dtype), max(1, _SUM_BLOCK // self.shape[1])
        with np.errstate(invalid="ignore"):  # +Inf and -Inf: NaN, which the products refuse with the ValueError
            parts = [xp.sum(xp.astype(A[i : i + rows], double), axis=axis) for i in range(0, self.shape[0], rows)]
            return xp.concat(parts) if axis == 1 else sum(parts[1:], parts[0])


class _ScipySparse(Operator):
    """A SciPy sparse matrix or array (any format)."""

    def __init__(self, A):
        import array_api_compat.numpy as xp

        self.xp, self.device = xp, "cpu"
        self.shape = tuple(int(s) for s in A.shape)
        self.input_dtype = A.dtype
        self.dtype = _work_dtype(xp, A.dtype)
        # LIL and DOK convert themselves to CSR inside every product, and DIA
        # builds a padded transpose for each product with A^T: once, here.
        self._A = A.tocsr() if A.format in ("lil", "dok", "dia") else A

    def _product(self, A, X):
        # A long double A would otherwise set the dtype of the product.
        return np.asarray(A @ X, dtype=np.result_type(self.dtype, X.dtype))

    def matmat(self, X):
        return self._product(self._A, X)

    def rmatmat(self, Y):
        # A.T of CSR is CSC sharing the same arrays (no copy), and CSC @ dense
        # runs in CSR's fast direction.
        return _adjoint_product(self.xp, lambda Z: self._product(self._A.T, Z), Y, self.dtype)

    def matmat_sparse(self, S):
        return np.asarray((self._A @ S).toarray(), dtype=self.dtype)

    def trace(self) -> float | None:
        if self.shape[0] != self.shape[1]:
            return None
        return float(np.real(self._A.diagonal().sum(dtype=_double(self.xp, self.dtype))))

    def norm(self) -> float:
        A = self._A
        # Duplicates are summed before squaring; DIA pads its diagonals with
        # entries outside the matrix; LIL and DOK hold no flat data array.
        if A.format not in ("csr", "csc", "coo", "bsr") or not A.has_canonical_format:
            A = A.tocoo(copy=True)
            A.sum_duplicates()
        # Integer data would overflow its own dtype when squared.
        return frobenius_norm(self.xp, self.xp.astype(A.data, self.dtype, copy=False))

    def _entries(self, axis: int):
        """Blocks (column index if axis == 0 else row index, values) of the
        stored entries, duplicates summed: _SUM_BLOCK entries at a time for
        NumPy's CSR, CSC and COO, whose arrays are sliced without copies."""
        A = self._A
        if self.xp.__name__.endswith("numpy") and A.format in ("csr", "csc", "coo") and A.has_canonical_format:
            yield from _stored_blocks(A, axis)
            return
        A = A.tocoo(copy=True)  # CuPy's sparse comes here too, and BSR
        A.sum_duplicates()  # the parts of a duplicated entry are one entry, centred once
        yield (A.col if axis == 0 else A.row), A.data

    def centered_norm(self, mean, axis: int) -> float:
        return _sparse_centered_norm(self.xp, self._entries(axis), mean, self.shape[axis])

    def sums(self, axis: int):
        # SciPy's own sum(dtype=float64) adds in the matrix's dtype first.
        xp, size, double = self.xp, self.shape[1 - axis], _double(self.xp, self.dtype)
        total = None
        for index, values in self._entries(axis):
            data = values.astype(double)
            part = xp.bincount(index, weights=data.real, minlength=size)
            if np.iscomplexobj(data):
                part = part + 1j * xp.bincount(index, weights=data.imag, minlength=size)
            total = part if total is None else total + part
        return total if total is not None else xp.zeros(size, dtype=double)


def _stored_blocks(A, axis: int):
    """(column index if axis == 0 else row index, values) of a canonical CSR,
    CSC or COO matrix, about _SUM_BLOCK entries at a time."""
    if A.format == "coo":
        index = A.col if axis == 0 else A.row
        for lo in range(0, A.nnz, _SUM_BLOCK):
            yield index[lo : lo + _SUM_BLOCK], A.data[lo : lo + _SUM_BLOCK]
        return
    indptr, majors = A.indptr, A.shape[0 if A.format == "csr" else 1]
    # The stored index is the minor one (columns of CSR): wanted along axis 0 for CSR.
    minor_wanted = (A.format == "csr") == (axis == 0)
    start = 0
    while start < majors:
        stop = int(np.searchsorted(indptr, indptr[start] + _SUM_BLOCK, side="right")) - 1
        stop = min(max(stop, start + 1), majors)
        lo, hi = int(indptr[start]), int(indptr[stop])
        if minor_wanted:
            index = A.indices[lo:hi]
        else:
            index = np.repeat(np.arange(start, stop), np.diff(indptr[start : stop + 1]))
        yield index, A.data[lo:hi]
        start = stop


def _sparse_centered_norm(xp, entries, mean, count: int) -> float:
    """||A - centre||_F from A's stored entries alone: each contributes |a - mean|^2
    and each implicit zero |mean|^2. ``entries`` yields blocks (index, values)
    of the stored entries, the means indexed along ``index``; ``count`` entries
    per mean. One pass over the nonzeros, with no cancellation."""
    norms, stored = [], xp.zeros(mean.shape[0], dtype=xp.int64, device=device_of(mean))
    for index, values in entries:
        with np.errstate(invalid="ignore", over="ignore"):  # Inf - Inf: NaN, which the products refuse
            norms.append(frobenius_norm(xp, xp.astype(values, mean.dtype) - mean[index]))
        stored = stored + xp.bincount(index, minlength=mean.shape[0])
    magnitude = xp.abs(mean)
    zeros = count - stored
    implicit = frobenius_norm(xp, xp.sqrt(xp.astype(zeros, magnitude.dtype)) * magnitude)
    return math.hypot(frobenius_norm(np, np.asarray(norms, dtype=np.float64)), implicit)


class _TorchSparse(Operator):
    """A torch sparse tensor (COO, CSR or CSC), any device."""

    def __init__(self, A):
        import array_api_compat.torch as xp

        self.xp, self.device = xp, A.device
        self.shape = tuple(int(s) for s in A.shape)
        self.input_dtype = A.dtype
        self.dtype = _work_dtype(xp, A.dtype)
        self._A = A

    def _matrix(self):
        A = self._A
        return A if A.dtype == self.dtype else A.to(self.dtype)

    def matmat(self, X):
        return self._matrix() @ X

    def rmatmat(self, Y):
        # (Y^T A)^T = A^T Y; dense @ sparse keeps the sparse operand untouched.
        return _adjoint_product(self.xp, lambda Z: (Z.mT @ self._matrix()).mT, Y, self.dtype)

    def norm(self) -> float:
        A = self._matrix()
        import torch

        values = A.coalesce().values() if A.layout == torch.sparse_coo else A.values()
        return frobenius_norm(self.xp, values)

    def centered_norm(self, mean, axis: int) -> float:
        A = self._A.to_sparse_coo().coalesce()  # duplicates summed; a copy of the nonzeros only
        return _sparse_centered_norm(self.xp, [(A.indices()[1 - axis], A.values())], mean, self.shape[axis])

    def sums(self, axis: int):
        xp = self.xp
        A = self._A.to(_double(xp, self.dtype))  # a copy of the nonzeros only
        ones = xp.ones((self.shape[axis], 1), dtype=A.dtype, device=self.device)
        return (ones.mT @ A)[0] if axis == 0 else (A @ ones)[:, 0]


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

    def trace(self) -> float | None:
        if self.shape[0] != self.shape[1]:
            return None
        import dask.array as da

        total = da.diagonal(self._A).sum(dtype=_double(self.xp, self.dtype)).compute()
        return float(np.real(total))

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


class MissingAdjointError(TypeError):
    """A LinearOperator was given no product with A^H (no rmatvec)."""


class _Linear(Operator):
    """A ``scipy.sparse.linalg.LinearOperator``."""

    def __init__(self, A):
        import array_api_compat.numpy as xp

        self.xp, self.device = xp, "cpu"
        self.shape = tuple(int(s) for s in A.shape)
        dtype = np.dtype(A.dtype) if A.dtype is not None else np.dtype(np.float64)
        self.input_dtype = dtype
        self.dtype = _work_dtype(xp, dtype)
        self._A = A

    # The block's dtype counts too: a complex block (from a complex shift of a
    # real A) has complex products.
    def matmat(self, X):
        return np.asarray(self._A.matmat(X), dtype=np.result_type(self.dtype, X.dtype))

    def rmatmat(self, Y):
        try:
            AY = self._A.rmatmat(Y)
        except (NotImplementedError, TypeError) as err:
            # SciPy's own signs of a missing adjoint: NotImplementedError from a
            # subclass, or calling the rmatvec=None of LinearOperator(shape, matvec).
            if isinstance(err, TypeError) and "'NoneType' object is not callable" not in str(err):
                raise
            raise MissingAdjointError(
                "A is a LinearOperator without products with its adjoint A^H, which randla's "
                "algorithms need. Give it rmatvec= (and rmatmat= for speed), or define _rmatmat "
                "or _adjoint in its class."
            ) from err
        return np.asarray(AY, dtype=np.result_type(self.dtype, Y.dtype))


def _check_dtype(dtype, what: str):
    if np.dtype(dtype).kind not in "biufc":
        raise TypeError(
            f"A must hold numbers; got {what} of dtype {dtype}. Convert it with "
            "A.astype(float)."
        )


def as_operator(A) -> Operator:
    """Wrap a matrix-like object as an :class:`Operator`, without copying it.

    Parameters
    ----------
    A : array_like or Operator
        NumPy array (any order), SciPy sparse matrix or array,
        ``scipy.sparse.linalg.LinearOperator``, torch tensor (dense or sparse,
        any device), CuPy array, Dask array, or an :class:`Operator`
        (returned as is).

    Returns
    -------
    Operator
        Its products come back in A's library and on A's device (NumPy for
        a Dask A: the size of a basis, gathered), in float32 or float64
        (complex64/128 for complex A).

    Raises
    ------
    TypeError
        If A is not a matrix (a list, a string, an array of objects), or is
        a NumPy masked array (its mask would be ignored).
    ValueError
        If A is not 2-D or has an empty dimension.
    """
    if isinstance(A, np.ma.MaskedArray):
        raise TypeError(
            "A is a masked array, whose mask the products would ignore. Fill the masked "
            "entries (A.filled(0)), or treat them as missing with randla.complete."
        )
    if isinstance(A, Operator):
        op = A
    else:
        op = _adapt(A)
    m, n = op.shape
    if m == 0 or n == 0:
        raise ValueError(f"A must have at least one row and one column; got shape {op.shape}.")
    return op


def _adapt(A) -> Operator:
    import scipy.sparse as sp
    from scipy.sparse.linalg import LinearOperator

    if sp.issparse(A):
        _check_ndim(A.shape)
        _check_dtype(A.dtype, "a sparse matrix")
        return _ScipySparse(A)
    if isinstance(A, LinearOperator):
        _check_ndim(A.shape)
        return _Linear(A)
    if is_torch_array(A):
        _check_ndim(tuple(A.shape))
        # Read by value: the gradient of a randomized approximation is not that
        # of the exact one, and a graph through every product would hold them all.
        A = A.detach()
        if A.layout != _torch_strided():
            _check_torch_sparse(A)
            return _TorchSparse(A)
        if A.dtype == _torch_bool():
            raise TypeError("A must hold numbers; got a torch tensor of dtype bool.")
        return _Dense(A)
    if _is_cupy_sparse(A):
        return _adapt_cupy_sparse(A)
    if is_dask_array(A):
        _check_dask(A)
        return _Dask(A)
    if isinstance(A, np.ndarray):
        _check_ndim(A.shape)
        _check_dtype(A.dtype, "an array")
        return _Dense(np.asarray(A))  # np.matrix -> ndarray view, no copy
    if is_array_api_obj(A):
        _check_ndim(tuple(A.shape))
        return _Dense(A)
    raise TypeError(
        f"A must be a matrix (NumPy array, SciPy sparse matrix, LinearOperator, "
        f"torch tensor, CuPy array, Dask array or randla Operator); got {type(A).__name__}. "
        "For a list of lists, pass numpy.asarray(A)."
    )


def _check_dask(A):
    _check_ndim(A.shape)
    _check_dtype(A.dtype, "a Dask array")
    if any(math.isnan(s) for s in A.shape):
        raise ValueError(
            f"A is a Dask array of unknown shape {A.shape}; compute its chunk sizes "
            "first with A.compute_chunk_sizes()."
        )
    if isinstance(A._meta, np.ma.MaskedArray):
        raise TypeError(
            "A is a Dask array of masked chunks, and products with A cannot honour a mask. "
            "Fill the masked entries first, e.g. dask.array.ma.filled(A, 0)."
        )
    # np.matrix chunks are ndarrays too, but break Dask's reductions inside
    # every product (a matrix is never 0-D or 1-D).
    if isinstance(A._meta, np.matrix) or not isinstance(A._meta, np.ndarray):
        raise TypeError(
            f"A is a Dask array of {type(A._meta).__name__} chunks; randla takes Dask arrays "
            "of NumPy chunks. Convert them first, e.g. A.map_blocks(numpy.asarray) for "
            "numpy.matrix chunks, A.map_blocks(lambda b: b.toarray()) for sparse chunks."
        )


def _check_ndim(shape):
    if len(shape) != 2:
        raise ValueError(
            f"A must be a 2-D matrix; got {len(shape)} dimensions, shape {tuple(shape)}."
        )


def _check_torch_sparse(A):
    import torch

    blocked = A.layout in (torch.sparse_bsr, torch.sparse_bsc)
    if blocked and A.device.type == "cpu":
        raise TypeError(
            f"A is a torch {A.layout} tensor on the CPU, where torch has no products with "
            "blocked sparse layouts. Pass A.to_sparse_csr() (or A.to_sparse_csc())."
        )


def _torch_strided():
    import torch

    return torch.strided


def _real_dtype(dtype):
    """The real dtype of a complex one (complex32 -> float16); a real one as it is."""
    return dtype.to_real() if hasattr(dtype, "to_real") else np.finfo(dtype).dtype


def _torch_bool():
    import torch

    return torch.bool


def _is_cupy_sparse(A) -> bool:
    return type(A).__module__.startswith("cupyx.scipy.sparse")


def _adapt_cupy_sparse(A) -> Operator:
    import array_api_compat.cupy as xp

    op = _ScipySparse.__new__(_ScipySparse)
    op.xp, op.device = xp, A.data.device
    op.shape = tuple(int(s) for s in A.shape)
    op.input_dtype = A.dtype
    op.dtype = _work_dtype(xp, A.dtype)
    op._A = A
    op.matmat = lambda X: A @ X
    op.rmatmat = lambda Y: _adjoint_product(xp, lambda Z: A.T @ Z, Y, op.dtype)
    return op


# -- composites ---------------------------------------------------------------


class _Composite(Operator):
    """Shares namespace, device and dtypes with the operator it wraps."""

    def _inherit(self, base: Operator, shape):
        self.base = base
        self.shape = shape
        self.xp, self.device = base.xp, base.device
        self.dtype, self.input_dtype = base.dtype, base.input_dtype

    def _is_real(self) -> bool:
        return self.base._is_real()

    def as_output(self, x):
        return self.base.as_output(x)


class Transposed(_Composite):
    """A^H (``conjugate=True``) or A^T of an operator, swapping its products."""

    def __init__(self, A, conjugate: bool = True):
        base = as_operator(A)
        self._inherit(base, (base.shape[1], base.shape[0]))
        # Asked of the operator, not its dtype: a real matrix plus a complex
        # shift has real dtype and complex products.
        self.conjugate = conjugate or base._is_real()

    def matmat(self, X):
        if self.conjugate:
            return self.base.rmatmat(X)
        xp = self.xp
        return xp.conj(self.base.rmatmat(xp.conj(X)))

    def rmatmat(self, Y):
        if self.conjugate:
            return self.base.matmat(Y)
        xp = self.xp
        return xp.conj(self.base.matmat(xp.conj(Y)))

    def norm(self):
        return self.base.norm()

    @property
    def H(self):
        return self.base if self.conjugate else super().H


class Centered(_Composite):
    """A with its column means (``axis=0``) or row means (``axis=1``) removed.

    The means are computed with one product; A itself is never densified, so
    PCA of a sparse matrix costs sparse products only.
    """

    def __init__(self, A, axis: int = 0):
        base = as_operator(A)
        if axis not in (0, 1):
            raise ValueError(f"`axis` must be 0 (columns) or 1 (rows); got {axis!r}.")
        self._inherit(base, base.shape)
        xp = self.xp
        self.axis = axis
        sums, work = base.sums(axis), self.dtype
        if sums is None:  # 1^T A (column sums) or A 1 (row sums), as a product
            ones = self._ones(base.shape[axis])
            sums = (xp.conj(base.rmatmat(ones)) if axis == 0 else base.matmat(ones))[:, 0]
            work = sums.dtype  # complex for a real A with a complex shift
        self._exact_mean = sums / base.shape[axis]  # for norm(): in double where A was summed
        self.mean = xp.astype(self._exact_mean, work)[:, None]  # (n, 1) or (m, 1)

    def _ones(self, k):
        return self.xp.ones((k, 1), dtype=self.dtype, device=self.device)

    def matmat(self, X):
        m, n = self.shape
        AX = self.base.matmat(X)
        if self.axis == 0:  # (A - 1 mu^T) X
            return AX - self._ones(m) @ (self.mean.mT @ X)
        return AX - self.mean @ (self._ones(n).mT @ X)  # (A - nu 1^T) X

    def rmatmat(self, Y):
        m, n = self.shape
        xp = self.xp
        AY = self.base.rmatmat(Y)
        if self.axis == 0:  # (A - 1 mu^T)^H Y = A^H Y - conj(mu) 1^T Y
            return AY - xp.conj(self.mean) @ (self._ones(m).mT @ Y)
        return AY - self._ones(n) @ conj_transpose(xp, self.mean) @ Y

    def norm(self):
        exact = self.base.centered_norm(self._exact_mean, self.axis)
        if exact is not None:
            return exact
        total = self.base.norm()
        if not total:  # unknown, or A = 0
            return total
        count = self.shape[self.axis]
        # ||A - 1 mu^T||^2 = ||A||^2 - m ||mu||^2, in units of ||A||_F so
        # that no square leaves the float range. The two terms cancel where
        # the means dwarf the spread; mu summed in double keeps the difference.
        removed = count * (frobenius_norm(self.xp, self._exact_mean) / total) ** 2
        return total * math.sqrt(max(1.0 - removed, 0.0))


class Shifted(_Composite):
    """A + shift * I for a square operator."""

    def __init__(self, A, shift: float):
        base = as_operator(A)
        if base.shape[0] != base.shape[1]:
            raise ValueError(f"Shifted needs a square operator; got shape {base.shape}.")
        if not isinstance(shift, numbers.Number):
            raise TypeError(f"shift must be a real or complex number; got {shift!r}.")
        if not np.isfinite(shift):
            raise ValueError(f"shift must be finite; got {shift!r}.")
        self._inherit(base, base.shape)
        self.shift = shift
        # NumPy complex scalars are not all instances of complex.
        self._complex_shift = bool(np.iscomplexobj(shift))

    def _is_real(self) -> bool:
        return self.base._is_real() and not self._complex_shift

    def trace(self):
        base = self.base.trace()
        return None if base is None or self._complex_shift else base + self.shift * self.shape[0]

    def matmat(self, X):
        return self.base.matmat(X) + self.shift * X

    def rmatmat(self, Y):
        shift = self.shift.conjugate() if self._complex_shift else self.shift
        return self.base.rmatmat(Y) + shift * Y


class PlusLowRank(_Composite):
    """A + L @ R with L (m, k) and R (k, n), never formed.

    This is the sparse-plus-low-rank operator of matrix completion and the
    residual A - L R of a low-rank approximation.
    """

    def __init__(self, A, L, R):
        base = as_operator(A)
        m, n = base.shape
        # As blocks of the engine: the factors of a Dask result are Dask arrays.
        L, R = (check_block(base, F, name) for F, name in ((L, "L"), (R, "R")))
        if L.shape[0] != m or R.shape[1] != n or L.shape[1] != R.shape[0]:
            raise ValueError(
                f"PlusLowRank needs L of shape ({m}, k) and R of shape (k, {n}); "
                f"got {tuple(L.shape)} and {tuple(R.shape)}."
            )
        self._inherit(base, base.shape)
        xp = self.xp
        if base._is_real() and any(_is_complex(xp, F.dtype) for F in (L, R)):
            raise TypeError(
                f"A + L R is computed in A's dtype {base.dtype}, which would drop the imaginary "
                f"parts of L and R ({L.dtype}, {R.dtype}); pass A as a complex array."
            )
        self.L = xp.astype(L, self.dtype, copy=False)
        self.R = xp.astype(R, self.dtype, copy=False)

    def matmat(self, X):
        return self.base.matmat(X) + self.L @ (self.R @ X)

    def rmatmat(self, Y):
        xp = self.xp
        return self.base.rmatmat(Y) + conj_transpose(xp, self.R) @ (conj_transpose(xp, self.L) @ Y)

    def norm(self):
        """From ||A + LR||^2 = ||A||^2 + 2 Re tr(R A^H L) + ||LR||^2, with one product."""
        base = self.base.norm()
        if base is None:
            return None
        xp = self.xp
        size_l, size_r = frobenius_norm(xp, self.L), frobenius_norm(xp, self.R)
        if size_l == 0 or size_r == 0:
            return base
        # Each term in units of scale^2, with L and R of unit norm, so that no
        # square leaves the float range (as in frobenius_norm).
        L, R = self.L / size_l, self.R / size_r
        scale = max(base, size_l * size_r)
        low = size_l / scale * size_r  # ||L||_F ||R||_F / scale
        AhL = self.base.rmatmat(L) / scale  # (n, k)
        cross = float(xp.real(xp.sum(AhL.mT * R)))  # tr(R A^H L), no conjugate
        gram = float(xp.real(xp.sum((conj_transpose(xp, L) @ L) * (R @ conj_transpose(xp, R)).mT)))
        unit = (base / scale) ** 2 + 2 * low * cross + low * low * gram
        return scale * math.sqrt(max(unit, 0.0))


def check_block(base: Operator, F, name: str):
    """F as a 2-D block of base's library (a Dask F computed), or a clear error."""
    F = base.as_block(F) if is_array_api_obj(F) else F
    if not is_array_api_obj(F) or array_namespace(F) is not base.xp:
        raise TypeError(
            f"{name} must be an array of A's library ({base.xp.__name__.split('.')[-1]}); got "
            f"{type(F).__module__}.{type(F).__name__}. Convert it first, e.g. with numpy.asarray or torch.as_tensor."
        )
    if F.ndim != 2:
        raise ValueError(f"{name} must be 2-D; got shape {tuple(F.shape)}. A single factor vector v is v[:, None] or v[None, :].")
    return F


def residual(A, L, R) -> PlusLowRank:
    """The residual A - L @ R as an operator (never formed)."""
    op = PlusLowRank(A, L, R)
    op.L = -op.L  # a new array: the caller's L is left as it was
    return op
