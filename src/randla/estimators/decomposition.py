"""PCA, one-pass PCA and truncated SVD as scikit-learn estimators."""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from array_api_compat import is_dask_array
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from .._validate import check_choice, check_int, check_power_iters
from ..operators import Centered, as_operator
from ..pca import pca
from ..qb import METHODS
from ..streaming import StreamingPCA
from ..svd import _sign_phases, svd
from ._common import _random_seed

__all__ = ["PCA", "IncrementalPCA", "TruncatedSVD"]


def _is_share(n_components) -> bool:
    """Whether ``n_components`` is a float in (0, 1), a share to explain."""
    k = n_components
    return isinstance(k, numbers.Real) and not isinstance(k, numbers.Integral) and 0.0 < k < 1.0


def _check_share_method(n_components, share: str, method):
    if _is_share(n_components) and method == "block_krylov":
        raise ValueError(f"a float `n_components` ({share}) needs method='rsi' or 'rsvd', whose basis grows "
                         "until it is reached; method='block_krylov' takes an int n_components.")


def _check_whiten(whiten):
    # Not truthiness: whiten="no" would whiten. scikit-learn refuses a non-bool too.
    if not isinstance(whiten, (bool, np.bool_)):
        raise ValueError(f"`whiten` must be a bool (True or False); got {whiten!r}.")


def _rank_and_tol(n_components, limit: int, share: str, method, *, allow_none: bool = True):
    """(rank, tol) for :func:`randla.pca` or :func:`randla.svd` from ``n_components``:
    an int, a float ``share`` in (0, 1), or (where allowed) None for all ``limit``."""
    k = n_components
    if k is None and allow_none:
        return limit, None
    if _is_share(k):
        _check_share_method(k, share, method)
        return None, math.sqrt(1.0 - k)  # the share captured is 1 - tol^2
    try:
        return check_int("n_components", k, 1, limit), None
    except ValueError:
        allowed = f"an int in [1, {limit}] (at most min(n_samples, n_features)), a float in (0, 1) ({share})"
        raise ValueError(f"`n_components` must be {allowed}{' or None' if allow_none else ''}; got {k!r}.") from None


_SOLVERS = ("auto", "randomized", "covariance_eigh")
_GRAM_CHUNK_BYTES = 1 << 25  # rows centred in double at a time for the Gram matrix


def _covariance_solver_fits(X) -> bool:
    """scikit-learn's rule for its default solver on dense data: the n x n
    covariance is small and the data much taller than wide, so one pass and
    an exact eigendecomposition beat any sketch."""
    m, n = X.shape
    return not sp.issparse(X) and n <= 1000 and m >= 10 * n


def _centred_gram(X):
    """(G, mean, scale) with (X - 1 mean^T)^T (X - 1 mean^T) = scale^2 G, in double.

    The entries are divided by scale, the largest magnitude (of the centred
    rows; of X where sparse), before the product: squares of data near 1e-160
    underflow to zero and those near 1e155 overflow, which unscaled would
    return zero axes or NaN. Dense rows are centred before the product, a
    chunk at a time, so data far from zero lose nothing to cancellation
    (X^T X - m mean mean^T would lose the spread's digits); G is rescaled
    whenever a chunk holds a larger entry than those before it. Sparse data
    are never densified: there the rank-one correction is applied to X^T X,
    exact where the means are small beside the spread, as in most sparse data.
    """
    m, n = X.shape
    mean = np.asarray(X.mean(axis=0, dtype=np.float64)).ravel()
    if sp.issparse(X):
        X = X.astype(np.float64)  # a copy, scaled in place
        scale = float(np.max(np.abs(X.data), initial=0.0)) or 1.0
        X.data /= scale
        gram = (X.T @ X).toarray() - m * np.outer(mean / scale, mean / scale)
        return (gram + gram.T) / 2, mean, scale
    gram, scale = np.zeros((n, n)), 0.0
    step = max(1, _GRAM_CHUNK_BYTES // (8 * n))
    for start in range(0, m, step):
        C = X[start : start + step].astype(np.float64) - mean
        largest = max(float(C.max()), -float(C.min()))  # without a temporary |C|
        if largest > scale:  # the sum so far in units of the new scale (its tiny terms may underflow: negligible)
            gram *= (scale / largest) ** 2
            scale = largest
        if scale > 0:
            C /= scale
            gram += C.T @ C  # NumPy computes a product with its own transpose by syrk
    return gram, mean, scale or 1.0


def _signs_fixed(components):
    """The rows with their largest-magnitude entry positive, whether the data were
    tall or wide, as scikit-learn's (``svd_flip(u_based_decision=False)``)."""
    return components * _sign_phases(np, components)[:, None]


def _orthonormal_axes(components):
    """The axes in double, their rows made orthonormal (the nearest such, the polar
    factor) where they were stored in single precision: rows orthonormal only to
    ~1e-7 leak that much of the leading variances into the directions the model
    gives the noise variance, which can be far smaller."""
    V = components.astype(np.float64)
    if components.dtype == np.float64:
        return V  # orthonormal to rounding already
    U, _, Wh = np.linalg.svd(V, full_matrices=False)
    return U @ Wh


def _common_dtype(X, fitted):
    """The dtype of the product of X with a fitted array, as NumPy would give it."""
    return np.result_type(X.dtype, fitted.dtype)


def _warn_if_dask(estimator, X):
    """A UserWarning where X is a Dask array: scikit-learn's validation
    computes it whole into memory, which out-of-core data may not fit."""
    if is_dask_array(X):
        warnings.warn(
            f"{type(estimator).__name__} reads the whole Dask array X into memory (scikit-learn's input "
            "validation computes it to NumPy). To keep Dask data out of core, use randla.pca, randla.svd "
            "or randla.StreamingPCA(...).fit(X), which read it a block at a time.",
            UserWarning,
            stacklevel=3,
        )


class PCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Principal component analysis by randomized SVD, of dense or sparse data.

    Like :class:`sklearn.decomposition.PCA` with ``svd_solver="randomized"``,
    over :func:`randla.pca`: sparse input is centred implicitly, never
    densified, and a variance share picks the number of components without
    a full SVD. On data much taller than wide, the exact eigendecomposition
    of the covariance matrix is cheaper than any sketch, and ``"auto"``
    uses it, as scikit-learn's default does.

    A Dask array is read whole into memory (with a ``UserWarning``);
    :func:`randla.pca`, :func:`randla.svd` and ``randla.StreamingPCA(...).fit(X)``
    keep Dask data out of core.

    Parameters
    ----------
    n_components : int, float or None, default None
        An int k in [1, min(n_samples, n_features)]; a float in (0, 1), the
        share of the variance to explain (the fewest of the randomized
        components that do, found adaptively; as their axes capture a little
        less than the exact ones, that can be more than the exact minimum:
        up to about 4% more on slowly decaying spectra and up to about 14%
        more on flat, noise-like ones, measured; with the covariance solver,
        exactly the fewest); None keeps min(n_samples, n_features).
    svd_solver : {"auto", "randomized", "covariance_eigh"}, default "auto"
        ``"covariance_eigh"``: one pass forms the n_features x n_features
        covariance matrix in double precision (dense rows centred first,
        sparse ones never densified) and ``numpy.linalg.eigh`` gives exact
        axes and variances. It costs n_samples n_features^2 operations and
        n_features^2 memory, and resolves variances down to about 1e-16
        times the largest (the square of the data's own precision); for
        sparse data, down to 1e-16 times n_samples ||mean_||^2 (the mean is
        subtracted from X^T X). ``"randomized"``: :func:`randla.pca`.
        ``"auto"``: the covariance solver for dense data with n_features <=
        1000 and n_samples >= 10 n_features (scikit-learn's rule), the
        randomized one otherwise.
    whiten : bool, default False
        Scale the transformed columns to unit variance.
    oversample, power_iters, method
        As in :func:`randla.svd`. With a float ``n_components`` the basis grows
        by blocks until the share is reached, so ``oversample`` does not apply,
        and ``method`` must be ``"rsi"`` or ``"rsvd"``. scikit-learn's
        ``iterated_power`` and ``n_oversamples`` are ``power_iters`` and
        ``oversample`` here. Unused by the covariance solver.
    copy : bool, default True
        Accepted as scikit-learn's; X is never changed either way.
    random_state : None, int or RandomState

    Attributes
    ----------
    components_ : ndarray (n_components_, n_features)
        Principal axes, by decreasing explained variance, each with its
        largest-magnitude entry positive (as scikit-learn's).
    explained_variance_ : ndarray (n_components_,)
        Variance along each axis (divisor n_samples - 1).
    explained_variance_ratio_ : ndarray (n_components_,)
        Share of the total variance along each axis (exact total).
    singular_values_ : ndarray (n_components_,)
    mean_ : ndarray (n_features,)
    n_components_ : int
    n_samples_ : int
    noise_variance_ : float
        The mean variance left along the other min(n_samples, n_features) -
        n_components_ directions (0 when none are left).

    Examples
    --------
    >>> import randla
    >>> X = randla.testing.low_rank(300, 50, rank=4, noise=0.01, rng=0)
    >>> pca = randla.PCA(n_components=0.99, random_state=0).fit(X)
    >>> pca.n_components_, pca.transform(X).shape
    (4, (300, 4))
    """

    def __init__(self, n_components=None, *, whiten=False, svd_solver="auto", oversample=10, power_iters="auto",
                 method="rsi", copy=True, random_state=None):
        self.n_components = n_components
        self.svd_solver = svd_solver
        self.copy = copy
        self.whiten = whiten
        self.oversample = oversample
        self.power_iters = power_iters
        self.method = method
        self.random_state = random_state

    def fit(self, X, y=None):
        self._fit(X)
        return self

    def fit_transform(self, X, y=None):
        # The projection of X on the axes, as transform gives it: the
        # randomized U diag(S) differs from it by the approximation's error.
        return self._project(self._fit(X))

    def _fit(self, X):
        """Fit; the validated X."""
        share = "the share of the variance to explain"
        self._check_params(share)
        _warn_if_dask(self, X)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], ensure_min_samples=2)
        m, n = X.shape
        exact = self.svd_solver == "covariance_eigh" or (self.svd_solver == "auto" and _covariance_solver_fits(X))
        if exact:
            self._fit_covariance(X, share)
        else:
            rank, tol = _rank_and_tol(self.n_components, min(m, n), share, self.method)
            result = pca(X, rank, tol=tol, oversample=self.oversample, power_iters=self.power_iters,
                         method=self.method, rng=_random_seed(self.random_state))
            self._set_axes(result.Vh, result.S, result.mean, result.centered_norm, m)
        return X

    def _check_params(self, share: str):
        """Every parameter, whichever solver the data's shape picks: an
        estimator that fits a tall sample must not fail on a wide one."""
        if self.svd_solver not in _SOLVERS:
            raise ValueError(f"`svd_solver` must be one of {', '.join(map(repr, _SOLVERS))}; got {self.svd_solver!r} "
                             "(for scikit-learn's 'full' on tall data, 'covariance_eigh' is as exact).")
        _check_whiten(self.whiten)
        method = check_choice("method", self.method, METHODS)
        power_iters = check_power_iters(self.power_iters)
        check_int("oversample", self.oversample, 0)
        if method == "rsvd" and power_iters not in ("auto", 0):  # as randla.svd refuses it
            raise ValueError(f"method='rsvd' makes no power iterations; got power_iters={power_iters}. "
                             "Use method='rsi' for power iterations.")
        _check_share_method(self.n_components, share, method)

    def _fit_covariance(self, X, share: str):
        """The exact axes from the eigendecomposition of the covariance matrix."""
        m, n = X.shape
        gram, mean, scale = _centred_gram(X)
        eigenvalues, eigenvectors = np.linalg.eigh(gram)
        eigenvalues, axes = np.maximum(eigenvalues[::-1], 0.0), eigenvectors[:, ::-1].T
        limit = min(m, n)
        k = self.n_components
        if _is_share(k):
            captured = np.cumsum(eigenvalues) / max(np.sum(eigenvalues), np.finfo(float).tiny)
            k = min(int(np.searchsorted(captured, k, side="right")) + 1, limit)  # the fewest that explain more
        else:
            k, _ = _rank_and_tol(k, limit, share, "rsi")
        # Norms, not squares, leave the scaled units: the variances may overflow where the norms do not.
        S = scale * np.sqrt(eigenvalues[:k])
        norm = scale * math.sqrt(float(np.trace(gram)))
        # The norm outside the k axes, summed from the double eigenvalues: the total less
        # the k variances rounded to float32 would lose it (their rounding can exceed it).
        left = scale * math.sqrt(float(np.sum(eigenvalues[k:])))
        self._set_axes(axes[:k].astype(X.dtype), S.astype(X.dtype), mean.astype(X.dtype), norm, m, left=left)

    def _set_axes(self, Vh, S, mean, norm: float, m: int, *, left: float | None = None):
        """The fitted attributes from the axes and the centred data's singular values
        and Frobenius norm ``norm``; ``left``: the norm of the centred data outside
        the axes, in double, where the solver has it without subtracting (by default
        from the share of the total the axes leave)."""
        n = Vh.shape[1]
        k = S.shape[0]
        self.components_ = _signs_fixed(Vh)
        self.singular_values_, self.mean_ = S, mean
        self.n_components_, self.n_samples_ = k, m
        self.explained_variance_ = (S / math.sqrt(m - 1)) ** 2
        # Shares of norms, never of squares: the total variance underflows to 0 near 1e-160 and overflows near 1e155.
        ratio = (S.astype(np.float64) / norm) ** 2 if norm > 0 else np.zeros(k)
        self.explained_variance_ratio_ = ratio.astype(S.dtype)
        if left is None:
            left = norm * math.sqrt(max(1.0 - float(np.sum(ratio)), 0.0))
        self.noise_variance_ = _noise_variance(left, m, min(m, n) - k)

    @property
    def _n_features_out(self):  # names the output columns, pca0, pca1, ...
        return self.n_components_

    def _variance(self):
        """explained_variance_ in double: in float32 it squares the data's scale out of
        range (inf for data near 1e20, 0 near 1e-23), which would zero the whitened
        output and make the covariance singular. Scaled before squaring, so only a
        variance beyond the double range is inf."""
        return (self.singular_values_.astype(np.float64) / math.sqrt(self.n_samples_ - 1)) ** 2

    def _scaled(self, Z):
        if not self.whiten:
            return Z
        variance = self._variance()
        scale = np.divide(1.0, np.sqrt(variance), out=np.zeros_like(variance), where=variance > 0)
        return Z * scale.astype(Z.dtype)

    def transform(self, X):
        check_is_fitted(self)
        _warn_if_dask(self, X)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], reset=False)
        return self._project(X)

    def _project(self, X):
        dtype = _common_dtype(X, self.components_)
        V = self.components_.T.astype(dtype, copy=False)
        return self._scaled(np.asarray(X @ V) - self.mean_.astype(dtype) @ V)

    def inverse_transform(self, X):
        """Points in principal coordinates (p, n_components_) back in the data space."""
        check_is_fitted(self)
        X = check_array(X, dtype=[np.float64, np.float32])
        if X.shape[1] != self.n_components_:
            raise ValueError(f"`X` must have {self.n_components_} columns (n_components_); got {X.shape[1]}.")
        dtype = _common_dtype(X, self.components_)
        if self.whiten:
            X = X * np.sqrt(self._variance()).astype(dtype)
        return X @ self.components_.astype(dtype) + self.mean_.astype(dtype)

    def score_samples(self, X):
        """Log-likelihood of each sample under probabilistic PCA, (p,).

        The model is N(mean_, C), C = components_^T diag(explained_variance_)
        components_ + noise_variance_ (I - components_^T components_)
        (Tipping & Bishop 1999), as scikit-learn's PCA; it is evaluated
        through the k axes, without forming the n x n matrix C.
        """
        check_is_fitted(self)
        _warn_if_dask(self, X)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], reset=False)
        n, k = X.shape[1], self.n_components_
        noise = float(self.noise_variance_)
        variance = np.maximum(self._variance(), noise)
        if (k < n and noise <= 0) or np.any(variance <= 0):
            raise ValueError(
                "the fitted covariance is singular (no variance left outside the components, or none along one): "
                "fit fewer components to score samples."
            )
        V, mean = _orthonormal_axes(self.components_), self.mean_.astype(np.float64)
        Z = np.asarray(X @ V.T) - mean @ V.T  # centred samples in the axes, in double
        if sp.issparse(X):  # ||x - mean||^2 without densifying x
            X = X.astype(np.float64)
            squares = np.asarray(X.multiply(X).sum(axis=1)).ravel() - 2 * np.asarray(X @ mean).ravel() + mean @ mean
        else:
            squares = np.sum((X.astype(np.float64) - mean) ** 2, axis=1)
        mahalanobis = np.sum(Z**2 / variance, axis=1)
        log_det = np.sum(np.log(variance))
        if k < n:  # the other n - k directions have the noise variance
            mahalanobis += np.maximum(squares - np.sum(Z**2, axis=1), 0.0) / noise
            log_det += (n - k) * math.log(noise)
        return -0.5 * (n * math.log(2 * math.pi) + log_det + mahalanobis)

    def score(self, X, y=None):
        """Mean log-likelihood of the samples under probabilistic PCA (see :meth:`score_samples`)."""
        return float(np.mean(self.score_samples(X)))

    def get_covariance(self):
        """The model's covariance C of :meth:`score_samples`, (n_features, n_features), dense."""
        V, variance, noise = self._model()
        C = (V.T * (variance - noise)) @ V
        C[np.diag_indices_from(C)] += noise
        return C

    def get_precision(self):
        """C^-1 = V^T diag(1 / variance) V + (I - V^T V) / noise_variance_, through the k axes."""
        V, variance, noise = self._model()
        if (V.shape[0] < V.shape[1] and noise <= 0) or np.any(variance <= 0):
            raise ValueError("the fitted covariance is singular: fit fewer components to invert it.")
        rest = 1.0 / noise if V.shape[0] < V.shape[1] else 0.0
        P = (V.T * (1.0 / variance - rest)) @ V
        P[np.diag_indices_from(P)] += rest
        return P

    def _model(self):
        """(axes, variances along them, noise variance) of probabilistic PCA, in double."""
        check_is_fitted(self)
        noise = float(self.noise_variance_)
        return _orthonormal_axes(self.components_), np.maximum(self._variance(), noise), noise

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _noise_variance(left: float, m: int, rest: int) -> float:
    """The mean variance (divisor m - 1) along ``rest`` directions of centred data
    whose norm along them is ``left``; 0 where none are left. Scaled before
    squaring, as a NumPy double: inf (NumPy's overflow warning) only where it
    exceeds the double range, never a Python OverflowError."""
    if rest <= 0:
        return 0.0
    return float((np.float64(left) / math.sqrt((m - 1) * rest)) ** 2)


_BATCH_BYTES = 1 << 27  # IncrementalPCA's default batch, densified


class IncrementalPCA(PCA):
    """PCA in one pass over batches, like :class:`sklearn.decomposition.IncrementalPCA`.

    A shell over :class:`randla.StreamingPCA` (Frequent Directions with exact
    means): ``partial_fit`` takes one batch at a time, ``fit`` splits X into
    batches of ``batch_size`` rows. Sparse batches are densified one at a
    time. Unlike scikit-learn's, a batch may have fewer rows than
    ``n_components`` (the estimator is fitted once it has seen that many in
    all), and the sketch's error has a certified bound,
    ``variance_error_bound_``.

    A Dask array is read whole into memory (with a ``UserWarning``);
    ``randla.StreamingPCA(...).fit(X)`` reads it once, a block of rows at a
    time, and :func:`randla.pca` and :func:`randla.svd` also keep Dask data out of core.

    Parameters
    ----------
    n_components : int or None, default None
        None: min(n_features, rows of the first batch).
    whiten : bool, default False
    batch_size : int or None, default None
        Rows per batch in ``fit``: by default 5 n_features, as scikit-learn,
        but no more than fill 128 MiB (each batch is centred in a copy; a
        sparse one is densified into that copy).
    sketch_size : int or None, default None
        As in :class:`randla.StreamingPCA` (default 4 n_components).
    copy : bool, default True
        Accepted as scikit-learn's; X is never changed either way.

    Attributes
    ----------
    components_, explained_variance_, explained_variance_ratio_,
    singular_values_, mean_, noise_variance_, n_components_
        As in :class:`randla.PCA`; the variances are the sketch's, each at
        most ``variance_error_bound_`` below the exact one.
    var_ : ndarray (n_features,)
        Exact variance of each feature (divisor n_samples_seen_, as scikit-learn's).
    n_samples_seen_ : int
    batch_size_ : int
    variance_error_bound_ : float
        Bound on the spectral-norm error of the sketched covariance matrix.

    Examples
    --------
    >>> import randla
    >>> X = randla.testing.low_rank(2000, 60, rank=4, noise=0.01, rng=0)
    >>> ipca = randla.IncrementalPCA(n_components=4, batch_size=500).fit(X)
    >>> ipca.transform(X).shape, ipca.n_samples_seen_
    ((2000, 4), 2000)
    """

    def __init__(self, n_components=None, *, whiten=False, copy=True, batch_size=None, sketch_size=None):
        self.n_components = n_components
        self.whiten = whiten
        self.copy = copy
        self.batch_size = batch_size
        self.sketch_size = sketch_size

    def fit(self, X, y=None):
        _check_whiten(self.whiten)
        _warn_if_dask(self, X)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], ensure_min_samples=2)
        self._stream = None
        # A batch is centred in one copy (a sparse one densified into it): by default at most _BATCH_BYTES of it.
        self.batch_size_ = (min(5 * X.shape[1], max(1, _BATCH_BYTES // (X.dtype.itemsize * X.shape[1])))
                            if self.batch_size is None else check_int("batch_size", self.batch_size, 1))
        if self.n_components is not None and check_int("n_components", self.n_components, 1) > X.shape[0]:
            raise ValueError(f"n_components={self.n_components} needs at least as many rows; X has {X.shape[0]}.")
        for start in range(0, X.shape[0], self.batch_size_):
            self._add(X[start : start + self.batch_size_])
        self._publish()  # once: each read of the axes is an SVD of the sketch
        return self

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)

    def partial_fit(self, X, y=None, check_input=True):
        """Add the rows of X to the sketch.

        ``check_input`` is taken for scikit-learn's signature; X is checked
        either way (one cheap pass beside the sketch's update).
        """
        _check_whiten(self.whiten)
        first = getattr(self, "_stream", None) is None
        _warn_if_dask(self, X)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], reset=first)
        if first:
            self.batch_size_ = X.shape[0]
        self._add(X)
        self._publish()
        return self

    def _add(self, X):
        stream = getattr(self, "_stream", None)
        if stream is None:
            n_components = min(X.shape) if self.n_components is None else self.n_components
            self._stream = StreamingPCA(check_int("n_components", n_components, 1, X.shape[1]),
                                        sketch_size=self.sketch_size)
        else:  # the sketch has the sizes it was made with: a change needs a new fit
            for name in ("n_components", "sketch_size"):
                asked, held = getattr(self, name), getattr(stream, name)
                if asked is not None and asked != held:
                    raise ValueError(f"{name} changed to {asked!r} between calls to partial_fit, whose sketch "
                                     f"holds {held}; call fit to start over with it.")
        self._stream.partial_fit(X)

    def __sklearn_is_fitted__(self):
        return hasattr(self, "components_")

    def _publish(self):
        """The fitted attributes, from the sketch (none before it has seen
        max(2, n_components) rows: fewer leave axes undefined)."""
        stream = self._stream
        self.n_samples_seen_ = self.n_samples_ = stream.n_samples_seen_
        if stream.n_samples_seen_ < max(2, stream.n_components):
            return
        self.components_ = stream.components_
        self.singular_values_ = stream.singular_values_
        self.explained_variance_ = stream.explained_variance_
        self.explained_variance_ratio_ = stream.explained_variance_ratio_
        self.mean_ = stream.mean_
        self.var_ = stream.var_
        self.variance_error_bound_ = stream.variance_error_bound_
        k, rest = self.components_.shape[0], min(stream.n_samples_seen_, self.components_.shape[1])
        self.n_components_ = k
        # The norm outside the axes from the share they leave of the exact total: differences of
        # variances overflow (inf - inf) where the norms do not.
        norm = stream._scatter_norm()
        share = float(np.sum((self.singular_values_.astype(np.float64) / norm) ** 2)) if norm > 0 else 1.0
        self.noise_variance_ = _noise_variance(norm * math.sqrt(max(1.0 - share, 0.0)), stream.n_samples_seen_,
                                               rest - k)


class TruncatedSVD(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Truncated SVD (latent semantic analysis) by randomized subspace iteration.

    Like :class:`sklearn.decomposition.TruncatedSVD`, over :func:`randla.svd`:
    the data are not centred, so sparse input (term counts, TF-IDF) is
    decomposed as it is, never densified.

    A Dask array is read whole into memory (with a ``UserWarning``);
    :func:`randla.svd`, :func:`randla.pca` and ``randla.StreamingPCA(...).fit(X)``
    keep Dask data out of core.

    Parameters
    ----------
    n_components : int or float, default 2
        An int k in [1, min(n_samples, n_features)]; or a float in (0, 1),
        the share of the energy ||X||_F^2 to capture (the fewest of the
        randomized components that do, found adaptively; see :class:`PCA`).
    oversample, power_iters, method
        As in :func:`randla.svd` (and :class:`PCA`, for a float ``n_components``).
    random_state : None, int or RandomState

    Attributes
    ----------
    components_ : ndarray (n_components_, n_features)
        Right singular vectors, by decreasing singular value, each with its
        largest-magnitude entry positive (as scikit-learn's).
    singular_values_ : ndarray (n_components_,)
    explained_variance_ : ndarray (n_components_,)
        Variance of the training data's projection on each component (the
        columns ``fit_transform`` returns).
    explained_variance_ratio_ : ndarray (n_components_,)
        That variance as a share of the total variance of X's columns (as
        scikit-learn, whose components are not centred: the shares need
        not decrease).
    n_components_ : int

    Examples
    --------
    >>> import randla, scipy.sparse as sp
    >>> X = sp.random(1000, 300, density=0.01, format="csr", random_state=0)
    >>> lsa = randla.TruncatedSVD(n_components=10, random_state=0).fit(X)
    >>> lsa.transform(X).shape
    (1000, 10)
    """

    def __init__(self, n_components=2, *, oversample=10, power_iters="auto", method="rsi", random_state=None):
        self.n_components = n_components
        self.oversample = oversample
        self.power_iters = power_iters
        self.method = method
        self.random_state = random_state

    def fit(self, X, y=None):
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        _warn_if_dask(self, X)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], ensure_min_samples=2)
        rank, tol = _rank_and_tol(self.n_components, min(X.shape), "the share of ||X||_F^2 to capture", self.method,
                                  allow_none=False)
        result = svd(X, rank, tol=tol, oversample=self.oversample, power_iters=self.power_iters, method=self.method,
                     rng=_random_seed(self.random_state))
        self.components_ = _signs_fixed(result.Vh)
        self.singular_values_ = result.S
        self.n_components_ = result.rank
        scores = self._project(X)  # as transform gives it, and scikit-learn's randomized solver
        # Variances in double, the total's norm in one pass without densifying X. The scores are divided
        # by that norm first: the squares of data near 1e-160 underflow and those near 1e155 overflow, so
        # the shares come from scaled scores and a variance is inf (NumPy's warning) only beyond the range.
        norm = Centered(as_operator(X), axis=0).norm()
        spread = np.var(scores.astype(np.float64) / norm, axis=0) if norm > 0 else np.zeros(scores.shape[1])
        self.explained_variance_ = ((norm * np.sqrt(spread)) ** 2).astype(X.dtype)
        self.explained_variance_ratio_ = (spread * X.shape[0]).astype(X.dtype)
        return scores

    @property
    def _n_features_out(self):  # names the output columns, truncatedsvd0, ...
        return self.n_components_

    def transform(self, X):
        check_is_fitted(self)
        _warn_if_dask(self, X)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], reset=False)
        return self._project(X)

    def _project(self, X):
        return np.asarray(X @ self.components_.T.astype(_common_dtype(X, self.components_), copy=False))

    def inverse_transform(self, X):
        """Points in component coordinates (p, n_components_) back in the data space."""
        check_is_fitted(self)
        X = check_array(X, dtype=[np.float64, np.float32])
        if X.shape[1] != self.n_components_:
            raise ValueError(f"`X` must have {self.n_components_} columns (n_components_); got {X.shape[1]}.")
        return X @ self.components_.astype(_common_dtype(X, self.components_))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
