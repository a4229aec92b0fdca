"""The :class:`Operator` protocol, and the dtypes its products are computed in."""

from __future__ import annotations

import abc
import math

import numpy as np
from array_api_compat import is_dask_array



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


def _number(xp, value, dtype) -> float | complex:
    """A 0-d sum as a Python number: complex for a complex dtype, its imaginary part kept."""
    return complex(value) if _is_complex(xp, dtype) else float(value)


def _real_product(xp, product, X, a_dtype):
    """A @ X from a routine for it, where a real A meets a complex X (from a
    complex shift): A @ Re X + i A @ Im X. Torch multiplies only equal dtypes,
    and a complex copy of the big matrix would double its memory."""
    if _is_complex(xp, a_dtype) or not _is_complex(xp, X.dtype):
        return product(X)
    return product(xp.real(X)) + 1j * product(xp.imag(X))


def _adjoint_product(xp, matmat_t, Y, a_dtype):
    """A^H Y = conj(A^T conj(Y)) from a routine for A^T Y, without conjugating
    the big matrix; real A needs no conjugate at all."""
    if _is_complex(xp, a_dtype) and not _is_complex(xp, Y.dtype):
        Y = xp.astype(Y, xp.result_type(a_dtype, Y.dtype))  # complex: torch multiplies only equal dtypes
    if not _is_complex(xp, a_dtype):
        return _real_product(xp, matmat_t, Y, a_dtype)
    return xp.conj(matmat_t(xp.conj(Y)))


def _product_dtype(op):
    """The dtype of op's products: its ``dtype``, or the complex counterpart
    where a real dtype has complex products (a real matrix plus a complex
    shift), into which work blocks must be cast to keep imaginary parts."""
    xp, dtype = op.xp, op.dtype
    if op._is_real() or _is_complex(xp, dtype):
        return dtype
    return xp.complex64 if dtype == xp.float32 else xp.complex128


def _real_dtype(dtype):
    """The real dtype of a complex one (complex32 -> float16); a real one as it is."""
    return dtype.to_real() if hasattr(dtype, "to_real") else np.finfo(dtype).dtype


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

    def norm_error(self) -> float:
        """A bound on the relative error of :meth:`norm`, read after calling it.

        0 where the norm is summed from A's entries (every explicit matrix):
        that rounding is part of :func:`randla.rangefinder.indicator_floor`.
        Composites that compute their norm as a difference of larger terms
        (A + L R, a centred A) set ``_norm_error`` in :meth:`norm`; any other
        composite passes its base's on. :func:`randla.rangefinder.adaptive_qb`
        probes the error instead where 2 ``norm_error()`` (the error of
        ||A||_F^2) is not small against tol^2.
        """
        own = getattr(self, "_norm_error", None)
        if own is not None:
            return own
        base = getattr(self, "base", None)
        return base.norm_error() if isinstance(base, Operator) else 0.0

    def squared_norm(self) -> float | None:
        """||A||_F^2 when it is cheap to know exactly; None otherwise.

        Inf or 0 where the square leaves the float range (||A||_F beyond
        ~1e154 or below ~1e-154); :meth:`norm` never does.
        """
        norm = self.norm()
        return None if norm is None else norm * norm

    def trace(self) -> float | complex | None:
        """tr(A) of a square operator when it is cheap to know exactly; None otherwise.

        A Python complex where A is complex (as numpy.trace gives), a float otherwise.
        """
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
        to the input's, real parts (S, eigenvalues) to its real counterpart;
        complex factors of a real half-precision input (a complex shift) stay
        in the dtype they were computed in. A result beyond float16's range
        is refused, not returned as inf.
        """
        xp, dtype = self.xp, self.input_dtype
        if dtype is None or dtype == self.dtype or not xp.isdtype(dtype, ("real floating", "complex floating")):
            return x
        if xp.isdtype(x.dtype, "real floating"):
            dtype = _real_dtype(dtype)
        elif not xp.isdtype(dtype, "complex floating"):
            # Complex factors of a real input (a complex shift): kept as computed,
            # as no complex half precision has the products to use them.
            return x
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
        from .composites import Transposed

        return Transposed(self, conjugate=True)

    @property
    def T(self) -> Operator:
        """The transpose A^T, as an operator."""
        from .composites import Transposed

        return Transposed(self, conjugate=False)

    def __repr__(self) -> str:
        m, n = self.shape
        return f"<{type(self).__name__} {m}x{n} {self.dtype}>"
