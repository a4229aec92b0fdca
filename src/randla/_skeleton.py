"""Skeletons shared by the ID and CUR: the row sketch and its pivoted QR, rows and
columns taken from A in its own format, and the SVD of a product of factors."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from array_api_compat import is_array_api_obj, is_dask_array, is_torch_array

from .backend import conj_transpose, finfo_eps, namespace, normalize, qr, real_dtype, to_numpy
from .operators import Operator, as_operator
from .operators.base import _product_dtype
from .rangefinder import check_finite, checked_product, draw_for
from .svd import SVDResult, svd_from_basis


# -- the sketch and its pivoted QR ---------------------------------------------


def row_sketch(A, work: Operator, axis: int, l: int, sketch: str, power_iters: int, rng):
    """Y = Omega^H (W W^H)^q W (l x n) for the operator W = ``work``, on the host.

    Its row space approximates the dominant row space of W, weighted by the
    singular values, which is what the pivoting needs. The test matrix is
    applied from the left, as W^H Omega.
    """
    xp = work.xp
    adjoint = work.H
    omega = draw_for(adjoint, sketch, l, rng)
    if axis == 1 and sp.issparse(A) and omega.kind in ("sparse_sign", "countsketch"):
        # A^T is a view of A (CSR -> CSC, no copy) and A^T @ Omega a
        # sparse product: O(nnz(A)). Omega is real: A^H Omega = conj(A^T Omega).
        Yh = checked_product(omega.apply, as_operator(A.T))
        Yh = np.conj(Yh) if np.iscomplexobj(Yh) else Yh
    else:
        Yh = checked_product(omega.apply, adjoint)
    for _ in range(power_iters):
        X = normalize(xp, work.matmat(normalize(xp, Yh, "auto")), "auto")
        Yh = work.rmatmat(X)
    return host(conj_transpose(xp, Yh))


def host(x) -> np.ndarray:
    """A small block as a float64 / complex128 NumPy array, for the pivoted QR."""
    if is_torch_array(x):
        x = x.detach().cpu().resolve_conj().to(_torch_wide(x)).numpy()
    x = to_numpy(x)
    return np.asarray(x, dtype=np.complex128 if np.iscomplexobj(x) else np.float64)


def _torch_wide(x):
    import torch

    return torch.complex128 if x.is_complex() else torch.float64


def to_work(op: Operator, x: np.ndarray):
    """A host array in the operator's namespace, device and working dtype.

    The dtype of the products, not ``op.dtype``: a real matrix plus a complex
    shift has complex products, whose sketches give complex coefficients.
    """
    return op.xp.asarray(x, dtype=_product_dtype(op), device=op.device)


def cpqr(Y: np.ndarray):
    """R and the pivots J of the column-pivoted QR Y[:, J] = Q R (LAPACK geqp3)."""
    from scipy.linalg import qr as scipy_qr

    R, perm = scipy_qr(Y, mode="r", pivoting=True, check_finite=False)
    return R[: min(Y.shape)], perm


def numerical_rank(R: np.ndarray, k: int, op: Operator) -> int:
    """How many of the first k pivots are above rounding in A's precision.

    |R_ii| is non-increasing under column pivoting; one below
    max(l, n) eps |R_00| is indistinguishable from zero (the rule of
    numpy.linalg.matrix_rank, on R's diagonal).
    """
    d = np.abs(np.diagonal(R)[:k])
    if d.size == 0 or d[0] == 0.0:
        return 0
    eps = finfo_eps(op.xp, real_dtype(op.xp, op.dtype))
    return int(np.count_nonzero(d > max(R.shape) * eps * d[0]))


def sketch_coefficients(R: np.ndarray, perm: np.ndarray, k: int, r: int) -> np.ndarray:
    """P (k x n) with P[:, J] = [I, R11^{-1} R12], solved with the leading r pivots only."""
    from scipy.linalg import solve_triangular

    n = R.shape[1]
    P = np.zeros((k, n), dtype=R.dtype)
    P[np.arange(k), perm[:k]] = 1.0
    if r > 0 and k < n:
        P[:r, perm[k:]] = solve_triangular(R[:r, :r], R[:r, k:], check_finite=False)
    return P


def row_tails(R: np.ndarray, norm: float) -> np.ndarray:
    """t[k] = (||R[k:, :]||_F / norm)^2 for k = 0..rows: the ID error of Y for each k, relative.

    R is divided by ``norm`` (||A||_F) before it is squared: squares of A's
    own size leave the float range beyond ~1e154 and below ~1e-154.
    """
    if norm == 0:
        return np.zeros(R.shape[0] + 1)
    rows = np.sum(np.abs(R / norm) ** 2, axis=1)
    return np.concatenate([np.cumsum(rows[::-1])[::-1], [0.0]])


def host_matrix(A, op: Operator, axis: int) -> np.ndarray:
    """A (axis=1) or A^H (axis=0) as a dense host array: small matrices only."""
    if sp.issparse(A):
        Ad = host(A.toarray())
    elif is_torch_array(A) and A.layout != _strided():
        Ad = host(A.to_dense())
    elif isinstance(A, np.ndarray) or (is_array_api_obj(A) and not isinstance(A, Operator)):
        Ad = host(A)
    else:
        eye = op.xp.eye(op.shape[1], dtype=op.dtype, device=op.device)
        Ad = host(op.matmat(eye))
    check_finite(np, Ad)
    return Ad if axis == 1 else Ad.conj().T


# -- skeletons in the input's format ---------------------------------------------


def take(A, op: Operator, idx: np.ndarray, axis: int):
    """A[:, idx] (axis=1) or A[idx, :] (axis=0) in A's own format.

    SciPy sparse stays sparse in its format (DIA: CSR), torch stays torch (dense or
    COO) on its device; integer entries are promoted to float64 like every
    randla output. Anything else (LinearOperator, Operator) gives dense
    products with unit vectors, A @ E_idx or (A^H E_idx)^H.
    """
    idx = np.asarray(idx, dtype=np.int64)
    if sp.issparse(A):
        out = _take_sparse(A, idx, axis)
    elif is_torch_array(A):
        import torch

        index = torch.as_tensor(idx, device=A.device)
        out = A.detach().index_select(1 if axis == 1 else 0, index)  # values, as every result
    elif isinstance(A, np.ndarray):
        # Fancy indexing copies only the k columns (rows); np.take first makes a
        # C-contiguous copy of all of a Fortran-order, transposed or sliced A.
        A = np.asarray(A)  # a plain view of np.matrix and np.memmap
        out = A[:, idx] if axis == 1 else A[idx, :]
    elif is_dask_array(A):
        # With NumPy indices: indices made a Dask array are cast to A's dtype
        # on the way, which warns (ComplexWarning) for complex A.
        out = A[:, idx] if axis == 1 else A[idx, :]
    elif is_array_api_obj(A) and not isinstance(A, Operator):
        xp = namespace(A)
        out = xp.take(A, xp.asarray(idx, device=op.device), axis=axis)
    else:
        xp = op.xp
        E = xp.zeros((op.shape[axis], idx.shape[0]), dtype=op.dtype, device=op.device)
        E[xp.asarray(idx, device=op.device), xp.arange(idx.shape[0], device=op.device)] = 1
        return op.matmat(E) if axis == 1 else conj_transpose(xp, op.rmatmat(E))
    return _promote(out, op)


def _take_sparse(A, idx, axis):
    if A.format in ("csr", "csc", "lil", "dok") or (A.format == "coo" and isinstance(A, sp.sparray)):
        return A[:, idx] if axis == 1 else A[idx, :]
    # DIA, BSR and coo_matrix have no fancy indexing: multiply by a selection matrix.
    kind = sp.csr_array if isinstance(A, sp.sparray) else sp.csr_matrix
    k = idx.shape[0]
    E = kind((np.ones(k, dtype=A.dtype), (idx, np.arange(k))), shape=(A.shape[axis], k))
    out = A @ E if axis == 1 else E.T @ A
    # A few rows of a banded matrix span many diagonals, which DIA would store
    # in full (hundreds of times its nonzeros): those stay CSR.
    return out.tocsr() if A.format == "dia" else out.asformat(A.format)


def _promote(out, op: Operator):
    """Integer and boolean skeletons in float64; floating ones untouched."""
    if sp.issparse(out):
        return out if np.dtype(out.dtype).kind in "fc" else out.astype(np.float64)
    if is_torch_array(out):
        return out if out.dtype.is_floating_point or out.dtype.is_complex else out.to(op.dtype)
    xp = namespace(out)
    return out if xp.isdtype(out.dtype, ("real floating", "complex floating")) else xp.astype(out, op.dtype)


def _strided():
    import torch

    return torch.strided


def dense_block(x):
    """A skeleton as a dense array of its own library (m x k or k x n: small)."""
    if sp.issparse(x):
        return x.toarray()
    if is_torch_array(x) and x.layout != _strided():
        return x.to_dense()
    return x


def work_columns(A, op: Operator, idx, axis):
    """Columns idx of ``work`` (A, or A^H for axis=0) as a dense block in the working dtype."""
    return as_work_columns(take(A, op, idx, axis), op, axis)


def as_work_columns(skeleton, op: Operator, axis):
    """A skeleton as columns of ``work``, dense, in the working dtype.

    That is the dtype of the products: the columns of a real matrix plus a
    complex shift, products with unit vectors, are complex.
    """
    xp = op.xp
    block = op.as_block(dense_block(skeleton))  # k columns of a Dask A: small, computed here
    if is_torch_array(block) or isinstance(block, np.ndarray):
        block = xp.asarray(block, dtype=_product_dtype(op), device=op.device)
    return block if axis == 1 else conj_transpose(xp, block)


# -- conversions -------------------------------------------------------------------


def svd_of_factors(L, Rt) -> SVDResult:
    """SVD of L @ Rt for L (m, k) and Rt (k, n): QR of L, then the core.

    L = Q T, so L Rt = Q (T Rt) = Q W^H with W = (T Rt)^H (n x k), and
    :func:`randla.svd.svd_from_basis` finishes with a k x k SVD.
    """
    if is_dask_array(L) or is_dask_array(Rt):
        return _dask_svd_of_factors(L, Rt)
    xp, dtype = namespace(L), L.dtype
    half = xp.isdtype(dtype, "real floating") and dtype not in (xp.float32, xp.float64)
    if half:  # bf16 / fp16: computed in float32, returned in the input's precision
        L, Rt = xp.astype(L, xp.float32), xp.astype(Rt, xp.float32)
    Q, T = qr(xp, L)
    U, S, Vh = svd_from_basis(xp, Q, conj_transpose(xp, T @ Rt))
    if half:
        U, S, Vh = (xp.astype(x, dtype) for x in (U, S, Vh))
    return SVDResult(U, S, Vh)


def _dask_svd_of_factors(L, Rt) -> SVDResult:
    """The SVD of factors of a Dask input (small, so computed), as Dask arrays."""
    import dask.array as da

    U, S, Vh = svd_of_factors(*(np.asarray(x.compute() if is_dask_array(x) else x) for x in (L, Rt)))
    rows = L.chunks[0] if is_dask_array(L) else "auto"
    cols = Rt.chunks[1] if is_dask_array(Rt) else "auto"
    return SVDResult(da.from_array(U, chunks=(rows, -1)), da.from_array(S), da.from_array(Vh, chunks=(-1, cols)))
