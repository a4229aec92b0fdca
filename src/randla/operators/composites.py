"""Operators built from others without forming anything: A^T, A - 1 mu^T, A + sI, A + L R."""

from __future__ import annotations

import math
import numbers

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj

from ..backend import conj_transpose, finfo_eps, frobenius_norm
from .adapters import as_operator
from .base import Operator, _is_complex, _product_dtype



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
    """A^H (``conjugate=True``) or A^T of an operator, swapping its products.

    Parameters
    ----------
    A : matrix-like, shape (m, n)
    conjugate : bool, default True
        A^H; False gives A^T (the same for real A).
    """

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

    def sums(self, axis: int):
        # The columns of A^T are A's rows, conjugated in A^H.
        sums = self.base.sums(1 - axis)
        return self.xp.conj(sums) if sums is not None and self.conjugate else sums

    def centered_norm(self, mean, axis: int) -> float | None:
        # ||A^H - 1 mu^T||_F = ||A - conj(mu) 1^T||_F: A centred along its other axis.
        return self.base.centered_norm(self.xp.conj(mean) if self.conjugate else mean, 1 - axis)

    @property
    def H(self):
        return self.base if self.conjugate else super().H


class Centered(_Composite):
    """A with its column means (``axis=0``) or row means (``axis=1``) removed.

    The means are computed with one product; A itself is never densified, so
    PCA of a sparse matrix costs sparse products only.

    Parameters
    ----------
    A : matrix-like, shape (m, n)
    axis : {0, 1}, default 0
        0 removes the column means (PCA of samples in rows), 1 the row means.
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

    # The small products go through _matmul: a real A plus a complex shift has
    # complex means and products with real blocks, or real means and complex
    # blocks, and torch multiplies only equal dtypes. The rank-one terms
    # 1 (mu^T X) and nu (1^T X) are broadcast, never formed as m x n matrices.
    def matmat(self, X):
        n = self.shape[1]
        xp = self.xp
        AX = self.base.matmat(X)
        if self.axis == 0:  # (A - 1 mu^T) X
            return AX - _matmul(xp, self.mean.mT, X)
        return AX - self.mean * _matmul(xp, self._ones(n).mT, X)  # (A - nu 1^T) X

    def rmatmat(self, Y):
        m = self.shape[0]
        xp = self.xp
        AY = self.base.rmatmat(Y)
        if self.axis == 0:  # (A - 1 mu^T)^H Y = A^H Y - conj(mu) 1^T Y
            return AY - xp.conj(self.mean) * _matmul(xp, self._ones(m).mT, Y)
        # (A - nu 1^T)^H Y = A^H Y - 1 (nu^H Y): the k numbers nu^H Y first, so
        # that the n x m matrix 1 nu^H is never formed (O(mn) per product).
        return AY - _matmul(xp, conj_transpose(xp, self.mean), Y)

    def norm(self):
        """||A - 1 mu^T||_F (or ||A - nu 1^T||_F), exact where the base can subtract the means
        from its entries; else from the difference of squares, whose relative error (cancellation
        where the means dwarf the spread) :meth:`norm_error` gives."""
        exact = self.base.centered_norm(self._exact_mean, self.axis)
        if exact is not None:
            self._norm_error = 0.0
            return exact
        self._norm_error = None  # the base's
        total = self.base.norm()
        if not total:  # unknown, or A = 0
            return total
        xp = self.xp
        count = self.shape[self.axis]
        # ||A - 1 mu^T||^2 = ||A||^2 - m ||mu||^2, in units of ||A||_F so
        # that no square leaves the float range. The two terms cancel where
        # the means dwarf the spread; mu summed in double keeps the difference.
        removed = count * (frobenius_norm(xp, self._exact_mean) / total) ** 2
        unit = max(1.0 - removed, 0.0)
        # The rounding of both squares, with a factor 2 to spare (products sum
        # m terms): ||A||^2 (summed in double, or off by its own error where
        # the base's norm is a difference) and m ||mu||^2, off by about 2 eps
        # |mu|^2 in the dtype mu was summed in. Over what is left of the
        # difference, that is the relative error adaptive_qb must not read
        # as an error of its basis (3.7e-6 with means 300 times the spread).
        eps_mean = finfo_eps(xp, self._exact_mean.dtype)
        error = 2 * self.base.norm_error() + 2 * finfo_eps(xp, xp.float64) + 4 * eps_mean * removed
        self._norm_error = error / (2 * unit) if unit > 0 else 1.0
        return total * math.sqrt(unit)


class Shifted(_Composite):
    """A + shift * I for a square operator.

    Parameters
    ----------
    A : matrix-like, shape (n, n)
    shift : real or complex number
    """

    def __init__(self, A, shift: float | complex):
        base = as_operator(A)
        if base.shape[0] != base.shape[1]:
            raise ValueError(f"Shifted needs a square operator; got shape {base.shape}.")
        if not isinstance(shift, numbers.Number):
            raise TypeError(f"shift must be a real or complex number; got {shift!r}.")
        self._inherit(base, base.shape)
        # NumPy complex scalars are not all instances of complex.
        self._complex_shift = bool(np.iscomplexobj(shift))
        # As a Python number: torch takes np.complex64(1j) * real tensor as a
        # real tensor, dropping the imaginary part, and a Python number's
        # precision follows the block's (NumPy's and torch's weak scalars).
        # Converted first, so that a Fraction or Decimal is checked as the number it is.
        self.shift = complex(shift) if self._complex_shift else float(shift)
        if not np.isfinite(self.shift):
            raise ValueError(f"shift must be finite; got {shift!r}.")

    def _is_real(self) -> bool:
        return self.base._is_real() and not self._complex_shift

    def trace(self):
        base = self.base.trace()
        return None if base is None else base + self.shift * self.shape[0]  # complex for a complex shift

    def matmat(self, X):
        return self.base.matmat(X) + self.shift * X

    def rmatmat(self, Y):
        shift = self.shift.conjugate() if self._complex_shift else self.shift
        return self.base.rmatmat(Y) + shift * Y


class PlusLowRank(_Composite):
    """A + L @ R with L (m, k) and R (k, n), never formed.

    This is the sparse-plus-low-rank operator of matrix completion and the
    residual A - L R of a low-rank approximation.

    Parameters
    ----------
    A : matrix-like, shape (m, n)
    L : (m, k) array
    R : (k, n) array
        In A's library (and on its device); neither is copied or changed.
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
        # In the dtype of the products, not A's: a real A plus a complex shift
        # has complex products, and complex factors (of its SVD) cast to real
        # would lose their imaginary parts.
        work = _product_dtype(self)
        self.L = xp.astype(L, work, copy=False)
        self.R = xp.astype(R, work, copy=False)

    def matmat(self, X):
        xp = self.xp
        return self.base.matmat(X) + _matmul(xp, self.L, _matmul(xp, self.R, X))

    def rmatmat(self, Y):
        xp = self.xp
        LhY = _matmul(xp, conj_transpose(xp, self.L), Y)
        return self.base.rmatmat(Y) + _matmul(xp, conj_transpose(xp, self.R), LhY)

    def norm(self):
        """From ||A + LR||^2 = ||A||^2 + 2 Re tr(R A^H L) + ||LR||^2, with one product.

        None where the three terms cancel so far that their rounding (their
        magnitudes times eps, grown like sqrt(max(m, n)) over the sums) exceeds
        sqrt(eps) times the result, eps that of the products' dtype: callers
        then estimate the norm from products, which no cancellation touches.
        A value returned is within a relative sqrt(eps) / 2 of ||A + LR||_F;
        :meth:`norm_error` then gives the bound for this A, L and R (the
        rounding below over twice the result's square).
        For the residual A - L R of a rank-k truncation that means None below
        about sqrt(2k) (max(m, n) eps)^(1/4) ||A||_F: at k = 10 and 300 x 200,
        2e-3 ||A||_F in float64 and a third of ||A||_F in float32.
        """
        self._norm_error = None  # the base's, until a difference is taken below
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
        # The rounding of each term is its magnitude times the eps it is
        # computed in, grown like sqrt(length) over the sums of the products:
        # ||A||_F is summed in double for single and half precision, the
        # cross and Gram terms come from products in the operator's dtype.
        work = finfo_eps(xp, self.dtype)
        first = finfo_eps(xp, xp.float64) if xp.finfo(self.dtype).bits < 64 else work
        growth = math.sqrt(max(self.shape))
        rounding = first * (base / scale) ** 2 + growth * work * (2 * low * (base / scale) + low * low)
        # A base norm that is itself a difference (a nested residual) is off by its own error, squared.
        rounding += 2 * self.base.norm_error() * (base / scale) ** 2
        if not rounding <= math.sqrt(work) * unit:
            return None
        # Relative error of the norm: half that of its square. adaptive_qb's
        # indicator subtracts from that square and cannot resolve below it.
        self._norm_error = rounding / (2 * unit)
        return scale * math.sqrt(unit)


def _matmul(xp, a, b):
    """a @ b in their common dtype (torch multiplies only equal dtypes)."""
    if a.dtype != b.dtype:
        dtype = xp.result_type(a.dtype, b.dtype)
        a, b = xp.astype(a, dtype, copy=False), xp.astype(b, dtype, copy=False)
    return a @ b


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
    """The residual A - L @ R as an operator (never formed).

    Parameters
    ----------
    A : matrix-like, shape (m, n)
    L : (m, k) array
    R : (k, n) array
        In A's library; a result's ``factors()`` gives such a pair.

    Returns
    -------
    PlusLowRank
        An operator whose products cost those of A plus O((m + n) k) per
        column; its ``norm()`` is ||A - L R||_F from A's norm and small Gram
        matrices, or None where that difference of squares cancels too far
        (a small residual: callers then probe it with products).

    Examples
    --------
    >>> import numpy as np, randla
    >>> A = randla.testing.low_rank(100, 80, rank=5, rng=0)
    >>> r = randla.svd(A, 3, rng=0)
    >>> E, X = randla.residual(A, *r.factors()), np.ones((80, 2))
    >>> bool(np.allclose(E.matmat(X), A @ X - r.reconstruct() @ X))
    True
    """
    op = PlusLowRank(A, L, R)
    op.L = -op.L  # a new array: the caller's L is left as it was
    return op
