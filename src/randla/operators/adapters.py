"""as_operator: the wrappers of each array library behind one protocol."""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj, is_dask_array, is_torch_array

from ..backend import device_of, frobenius_norm
from .base import (
    _CONVERT_BLOCK, _SUM_BLOCK, Operator, _adjoint_product, _double, _number, _real_product, _work_dtype,
)
from .dask_array import _Dask



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
        def product(Z):
            parts = self._per_block(lambda _, block: block @ Z)
            return parts[0] if len(parts) == 1 else self.xp.concat(parts)

        return _real_product(self.xp, product, X, self.dtype)

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

    def trace(self) -> float | complex | None:
        if self.shape[0] != self.shape[1]:
            return None
        xp = self.xp
        return _number(xp, xp.sum(xp.linalg.diagonal(self._A), dtype=_double(xp, self.dtype)), self.dtype)

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

    def trace(self) -> float | complex | None:
        if self.shape[0] != self.shape[1]:
            return None
        return _number(self.xp, self._A.diagonal().sum(dtype=_double(self.xp, self.dtype)), self.dtype)

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
        return _real_product(self.xp, lambda Z: self._matrix() @ Z, X, self.dtype)

    def rmatmat(self, Y):
        # (Y^T A)^T = A^T Y; dense @ sparse keeps the sparse operand untouched.
        return _adjoint_product(self.xp, lambda Z: (Z.mT @ self._matrix()).mT, Y, self.dtype)

    def norm(self) -> float:
        A = self._matrix()
        import torch

        # A CSR or CSC tensor's values() is a view that torch.real refuses
        # (complex entries, summed in double): a copy of the nonzeros.
        values = A.coalesce().values() if A.layout == torch.sparse_coo else A.values().clone()
        return frobenius_norm(self.xp, values)

    def trace(self) -> float | complex | None:
        if self.shape[0] != self.shape[1]:
            return None
        import torch

        A = self._A
        if A.layout == torch.sparse_coo:
            # Uncoalesced as it is: the parts of a duplicated entry are all summed below.
            (rows, cols), values = A._indices(), A._values()
        else:  # CSR or CSC: their indices as COO, a copy of the nonzeros only
            coo = A.to_sparse_coo()
            (rows, cols), values = coo._indices(), coo._values()
        xp = self.xp
        return _number(xp, xp.sum(values[rows == cols], dtype=_double(xp, self.dtype)), self.dtype)

    def centered_norm(self, mean, axis: int) -> float:
        A = self._A.to_sparse_coo().coalesce()  # duplicates summed; a copy of the nonzeros only
        return _sparse_centered_norm(self.xp, [(A.indices()[1 - axis], A.values())], mean, self.shape[axis])

    def sums(self, axis: int):
        xp = self.xp
        A = self._A.to(_double(xp, self.dtype))  # a copy of the nonzeros only
        ones = xp.ones((self.shape[axis], 1), dtype=A.dtype, device=self.device)
        return (ones.mT @ A)[0] if axis == 0 else (A @ ones)[:, 0]


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
        If A is not a matrix (a list, a string, an array of objects), is
        a NumPy masked array (its mask would be ignored), or is a torch
        tensor on the 'meta' device (it holds no values).
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
        check_not_meta(A, "A")
        # Read by value: the gradient of a randomized approximation is not that
        # of the exact one, and a graph through every product would hold them all.
        A = A.detach()
        if A.layout != _torch_strided():
            _check_torch_sparse(A)
            return _TorchSparse(_plain_torch_sparse(A))
        return _Dense(A)  # bool, as integers, in float64 (as NumPy's)
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


def check_not_meta(x, name: str):
    """A clear TypeError for a torch tensor on the 'meta' device: it has a shape
    and a dtype but no values, and every product with it fails inside torch."""
    if is_torch_array(x) and x.device.type == "meta":
        raise TypeError(
            f"{name} is a torch tensor on the 'meta' device, which holds no values; randla needs a "
            "tensor with data on the CPU or a GPU. Load or materialise it first (e.g. "
            "module.to_empty(device='cpu') and then load_state_dict)."
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


def _plain_torch_sparse(A):
    """A torch sparse tensor as one whose every entry is indexed: a hybrid COO
    tensor (``A.dense_dim() > 0``, as the gradient of
    ``nn.Embedding(sparse=True)``, whose stored rows are dense) rebuilt as a
    2-D COO tensor over the same stored entries, which torch's products take.
    Only the stored entries are copied, never the whole matrix; A is not modified.
    Any other tensor is returned as is."""
    import torch

    if A.layout != torch.sparse_coo or A.dense_dim() == 0:
        return A
    indices, values = A._indices(), A._values()  # uncoalesced as they are: the products sum duplicates
    block = values.shape[1:]  # the dense part of each stored entry: (n,) for stored rows, (m, n) for none
    # Each stored entry expands into a dense block; its indices are those of the sparse
    # dimensions, repeated, followed by the position within the block.
    within = torch.stack(torch.meshgrid(*(torch.arange(s, device=A.device) for s in block), indexing="ij"))
    within = within.reshape(len(block), 1, -1).expand(-1, indices.shape[1], -1)
    outer = indices[:, :, None].expand(-1, -1, within.shape[2])
    full = torch.cat([outer, within]).reshape(2, -1)
    # Indices valid by construction: no check (a pass over them), and torch's warning that none was made.
    return torch.sparse_coo_tensor(
        full, values.reshape(-1), A.shape, is_coalesced=A.is_coalesced(), check_invariants=False
    )


def _torch_strided():
    import torch

    return torch.strided


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
    op.matmat = lambda X: _real_product(xp, lambda Z: A @ Z, X, op.dtype)
    op.rmatmat = lambda Y: _adjoint_product(xp, lambda Z: A.T @ Z, Y, op.dtype)
    return op
