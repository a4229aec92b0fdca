"""Principal component analysis of any matrix-like data by randomized SVD.

PCA is the truncated SVD of the centred data X - 1 mean^T. The centring is
implicit (:class:`randla.Centered`), so sparse, out-of-core (Dask) and GPU
data are decomposed with products alone, never densified or copied.
"""

from __future__ import annotations

import functools
import math
from dataclasses import InitVar, dataclass

import numpy as np
from array_api_compat import is_torch_array

from ._results import Unpackable
from .backend import conj_transpose, device_of, namespace
from .operators import Centered, as_operator
from .svd import svd

__all__ = ["pca", "PCAResult"]


@dataclass(frozen=True, repr=False)
class PCAResult(Unpackable):
    """X - 1 mean^T ~ U diag(S) Vh, the principal components of X's rows; unpacks as ``U, S, Vh``.

    Attributes
    ----------
    U : (m, k) array
        Left singular vectors of the centred data; ``scores`` = U diag(S).
    S : (k,) array
        Singular values of the centred data, descending.
    Vh : (k, n) array
        The principal axes (``components``), orthonormal rows.
    mean : (n,) array
        The column means that were subtracted.
    centered_norm : float or None
        ||X - 1 mean^T||_F, exact, where the input's norm is cheap to know
        (arrays of any kind); None for a ``LinearOperator``.
    power_iters, error_estimate, converged
        As in :class:`randla.SVDResult`; the error is relative to
        ``centered_norm``.
    work_mean : array, optional (constructor only)
        The means in the precision the fit computed in, where ``mean`` is
        coarser (float32 for half-precision data): :meth:`transform` and
        :meth:`inverse_transform` compute with them.
    """

    U: object
    S: object
    Vh: object
    mean: object
    centered_norm: float | None = None
    power_iters: int = 0
    error_estimate: float | None = None
    converged: bool = True
    work_mean: InitVar[object] = None
    _unpack = ("U", "S", "Vh")

    def __post_init__(self, work_mean):
        # Not a field: kept out of the repr, equality and unpacking of the result.
        object.__setattr__(self, "_work_mean", work_mean)

    @property
    def rank(self) -> int:
        return int(self.S.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.U.shape[0])

    @property
    def components(self):
        """The principal axes, (k, n): the rows of Vh."""
        return self.Vh

    @property
    def scores(self):
        """The training rows in principal coordinates, (m, k): U diag(S)."""
        return self.U * self.S[None, :]

    @property
    def explained_variance(self):
        """Variance along each axis, S^2 / (m - 1) (unbiased, as scikit-learn's PCA)."""
        # Scaled before squaring: S^2 alone overflows half precision (S > 256).
        return (self.S / math.sqrt(self.n_samples - 1)) ** 2

    @property
    def total_variance(self) -> float | None:
        """Sum of the variances of all columns, ||X - 1 mean^T||_F^2 / (m - 1).

        Inf (with NumPy's overflow warning) where it exceeds the float64 range,
        as :attr:`explained_variance` does, while the norm itself is finite.
        """
        if self.centered_norm is None:
            return None
        # A NumPy double, scaled before squaring: a Python float's square raises OverflowError.
        return (np.float64(self.centered_norm) / math.sqrt(self.n_samples - 1)) ** 2

    @property
    def explained_variance_ratio(self):
        """Share of the total variance along each axis; None when the total is unknown."""
        if self.centered_norm is None:
            return None
        if self.centered_norm == 0:  # all rows equal: no variance to explain
            return self.S * 0
        return (self.S / self.centered_norm) ** 2

    def factors(self):
        """(L, R) with X ~ L @ R, as :meth:`reconstruct`: ([scores, 1], [Vh; mean^T]),
        the mean folded in as a (k+1)-th term, so that :func:`randla.estimate_error`
        and :func:`randla.residual` measure the approximation of X itself."""
        xp = namespace(self.U)
        ones = xp.ones((self.n_samples, 1), dtype=self.U.dtype, device=device_of(self.U))
        return xp.concat([self.scores, ones], axis=1), xp.concat([self.Vh, self.mean[None, :]], axis=0)

    def transform(self, X):
        """Rows of X (p, n) in principal coordinates: (X - 1 mean^T) Vh^H, (p, k).

        X may be of any kind the product ``X @ V`` takes (dense, sparse,
        torch, Dask) and is not densified: the mean is subtracted after the
        product. Half precisions (float16, bfloat16) are computed as the fit
        was, in float32 with the fit's float32 means (X converted to a float32
        copy), and rounded once at the end.
        """
        n = int(self.Vh.shape[1])
        if len(X.shape) != 2 or X.shape[1] != n:
            raise ValueError(f"`X` must have shape (p, {n}), rows in the fitted data's columns; got {tuple(X.shape)}.")
        X, V, mean, dtype = self._promoted(X, conj_transpose(namespace(self.Vh), self.Vh))
        return _astype(X @ V - (mean[None, :] @ V), dtype)

    def inverse_transform(self, Z):
        """Points (p, k) in principal coordinates back in the data space: Z Vh + 1 mean^T.

        Half precisions are computed in float32 and rounded once, as in :meth:`transform`.
        """
        if len(Z.shape) != 2 or Z.shape[1] != self.rank:
            raise ValueError(f"`Z` must have shape (p, {self.rank}); got {tuple(Z.shape)}.")
        Z, Vh, mean, dtype = self._promoted(Z, self.Vh)
        return _astype(Z @ Vh + mean[None, :], dtype)

    def _promoted(self, X, factor):
        """X, the factor and the mean in the dtype their products are computed in,
        and the dtype the result is returned in (None: as the product gives it).

        torch multiplies no two dtypes: its operands are promoted to their
        common dtype, as NumPy promotes them (NumPy, SciPy and Dask do so
        within their products). A half-precision product is computed in
        float32 with the fit's own means, whose rounding to the half precision
        would cost more than that of the result (a bf16 ulp is 0.5 at 100).
        A clear error for X of another library.
        """
        if is_torch_array(X) != is_torch_array(factor):
            where = ("in torch: pass X as a torch tensor" if is_torch_array(factor)
                     else "outside torch: pass X as its data were")
            raise TypeError(f"the PCA was computed {where}; got {type(X).__module__}.{type(X).__name__}.")
        mean = self.mean
        if is_torch_array(X):
            import torch

            from .operators.adapters import _plain_torch_sparse

            X = _plain_torch_sparse(X)  # hybrid COO, which torch's products refuse
            dtype = functools.reduce(torch.promote_types, (factor.dtype, mean.dtype), X.dtype)
            half, work = dtype in (torch.float16, torch.bfloat16), torch.float32
        else:
            half = factor.dtype == np.float16 and np.result_type(X.dtype, factor.dtype) == np.float16
            if not half:
                return X, factor, mean, None
            dtype, work = factor.dtype, np.dtype(np.float32)
        if half and self._work_mean is not None:
            mean = self._work_mean
        return (*(_astype(a, work if half else dtype) for a in (X, factor, mean)), dtype)

    def reconstruct(self):
        """The dense approximation U diag(S) Vh + 1 mean^T (m x n: only for small X)."""
        return self.scores @ self.Vh + self.mean[None, :]


def _astype(a, dtype):
    """a in dtype (a torch tensor, NumPy, SciPy sparse or Dask array); a itself
    where it is in that dtype already or dtype is None."""
    if dtype is None or a.dtype == dtype:
        return a
    return a.to(dtype) if is_torch_array(a) else a.astype(dtype)


def pca(
    X,
    rank: int | None = None,
    *,
    tol: float | None = None,
    oversample: int = 10,
    power_iters: int | str = "auto",
    method: str = "rsi",
    rng=None,
) -> PCAResult:
    """Principal component analysis of the rows of X by randomized SVD.

    The leading ``rank`` principal axes of the m samples (rows) of X, or the
    fewest that explain all but a share tol^2 of the variance: the truncated
    SVD of the centred matrix X - 1 mean^T, which is never formed.

    Parameters
    ----------
    X : matrix-like, shape (m, n), m >= 2
        Samples in rows: anything :func:`randla.svd` takes (NumPy, SciPy
        sparse, LinearOperator, torch on any device, CuPy, Dask). Never
        copied, densified or centred in place.
    rank : int, optional
        Number of components k in [1, min(m, n)]. With ``tol``, the cap.
    tol : float in (0, 1), optional
        ||X_c - U S Vh||_F <= tol ||X_c||_F for the centred X_c: the
        components explain at least a share 1 - tol^2 of the total variance
        (tol = sqrt(1 - 0.95) for 95%).
    oversample, power_iters, method, rng
        As in :func:`randla.svd`.

    Returns
    -------
    PCAResult
        Unpacks as ``U, S, Vh``; ``components``, ``explained_variance``,
        ``explained_variance_ratio``, ``mean``, ``scores``, ``transform``.
        Arrays in X's library, device and dtype.

    Notes
    -----
    Passes over X: one for the means, one for the total variance (the
    means' pass takes it for Dask), then those of :func:`randla.svd`
    (2 power_iters + 2). The centring adds a rank-one correction to each
    product, (X - 1 mean^T) B = X B - 1 (mean^T B). It costs accuracy only
    where the means dwarf the spread: products carry a rounding error of
    about eps |mean| / std relative to the signal (eps of X's dtype), so
    float32 data with offsets 10^4 times their spread is better shifted
    first. PCA as the SVD of centred data: [HMT2011, Sec. 1.4];
    scikit-learn's ``PCA(svd_solver="randomized")`` is the same method on
    explicitly centred dense data.

    Examples
    --------
    >>> import numpy as np, randla
    >>> X = randla.testing.low_rank(500, 40, rank=5, noise=0.01, rng=0) + 3.0
    >>> r = randla.pca(X, 5, rng=0)
    >>> r.components.shape, r.transform(X).shape
    ((5, 40), (500, 5))
    >>> bool(r.explained_variance_ratio.sum() > 0.99)
    True
    """
    base = as_operator(X)
    if base.shape[0] < 2:
        raise ValueError(f"PCA needs at least 2 samples (rows) to centre; got {base.shape[0]} sample.")
    centred = Centered(base, axis=0)
    result = svd(centred, rank, tol=tol, oversample=oversample, power_iters=power_iters, method=method, rng=rng)
    mean = base.as_output(centred.mean[:, 0])
    work_mean = centred.mean[:, 0] if mean.dtype != centred.mean.dtype else None  # half precisions' float32 means
    return PCAResult(*result, mean, centred.norm(), result.power_iters, result.error_estimate, result.converged,
                     work_mean=work_mean)
