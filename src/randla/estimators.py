"""scikit-learn estimators over randla's PCA, kernel methods and matrix completion.

Thin shells: each validates with scikit-learn's conventions (``fit``,
``transform``/``predict``, ``random_state``, fitted attributes ending in
``_``) and calls :func:`randla.pca`, :class:`randla.StreamingPCA`,
:func:`randla.svd`, a function of :mod:`randla.kernels` or
:func:`randla.complete`. They take NumPy input (what scikit-learn pipelines
pass); the kernel functions they wrap also take torch.
This module imports scikit-learn, so ``import randla`` loads it only when an
estimator is first used.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.linalg import solve_triangular
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    RegressorMixin,
    TransformerMixin,
)
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._validate import check_int
from .completion import complete
from .kernels.clustering import spectral_clustering
from .kernels.krr import kernel_ridge, nystrom_kernel_ridge
from .kernels.landmarks import landmarks as select_landmarks
from .kernels.operator import DEFAULT_MEMORY_LIMIT, kernel_operator
from .operators import Centered, as_operator
from .pca import pca
from .streaming import StreamingPCA
from .svd import svd

__all__ = ["PCA", "IncrementalPCA", "TruncatedSVD", "Nystroem", "KernelRidge", "SpectralClustering",
           "MatrixCompletion"]

# Scores per block of users in ``MatrixCompletion.recommend``: temporaries near 32 MiB.
_SCORE_ELEMENTS = 1 << 22


def _kernel_params(est) -> dict:
    """Kernel parameters from the estimator's sklearn-style arguments.

    ``gamma``, ``degree`` and ``coef0`` are passed only where the kernel
    takes them (as scikit-learn's Nystroem does); ``kernel_params`` wins.
    """
    params = {}
    takes = {"rbf": ("gamma",), "gaussian": ("gamma",), "laplacian": ("gamma",),
             "polynomial": ("gamma", "degree", "coef0")}
    for name in takes.get(est.kernel, ()) if isinstance(est.kernel, str) else ():
        value = getattr(est, name)
        if value is not None:
            params[name] = value
    params.update(est.kernel_params or {})
    return params


def _random_seed(random_state) -> np.random.Generator:
    """SPEC 7 generator from scikit-learn's ``random_state`` (int, RandomState or None)."""
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31 - 1))
    return np.random.default_rng(random_state)


def _capped_components(n_components, n_samples: int) -> int:
    n_components = check_int("n_components", n_components, 1)
    if n_components > n_samples:
        warnings.warn(
            f"n_components={n_components} > n_samples={n_samples}: using all {n_samples} "
            "samples as landmarks.",
            UserWarning,
            stacklevel=3,
        )
        return n_samples
    return n_components


def _rank_and_tol(n_components, limit: int, share: str, *, allow_none: bool = True):
    """(rank, tol) for :func:`randla.pca` or :func:`randla.svd` from ``n_components``:
    an int, a float ``share`` in (0, 1), or (where allowed) None for all ``limit``."""
    k = n_components
    if k is None and allow_none:
        return limit, None
    if isinstance(k, numbers.Real) and not isinstance(k, numbers.Integral) and 0.0 < k < 1.0:
        return None, math.sqrt(1.0 - k)  # the share captured is 1 - tol^2
    try:
        return check_int("n_components", k, 1, limit), None
    except ValueError:
        allowed = f"an int in [1, {limit}] (at most min(n_samples, n_features)), a float in (0, 1) ({share})"
        raise ValueError(f"`n_components` must be {allowed}{' or None' if allow_none else ''}; got {k!r}.") from None


class PCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Principal component analysis by randomized SVD, of dense or sparse data.

    Like :class:`sklearn.decomposition.PCA` with ``svd_solver="randomized"``,
    over :func:`randla.pca`: sparse input is centred implicitly, never
    densified, and a variance share picks the number of components without
    a full SVD.

    Parameters
    ----------
    n_components : int, float or None, default None
        An int k in [1, min(n_samples, n_features)]; a float in (0, 1), the
        share of the variance to explain (the fewest components that do,
        found adaptively); None keeps min(n_samples, n_features).
    whiten : bool, default False
        Scale the transformed columns to unit variance.
    oversample, power_iters, method
        As in :func:`randla.svd`.
    random_state : None, int or RandomState

    Attributes
    ----------
    components_ : ndarray (n_components_, n_features)
        Principal axes, by decreasing explained variance.
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

    def __init__(self, n_components=None, *, whiten=False, oversample=10, power_iters="auto", method="rsi",
                 random_state=None):
        self.n_components = n_components
        self.whiten = whiten
        self.oversample = oversample
        self.power_iters = power_iters
        self.method = method
        self.random_state = random_state

    def fit(self, X, y=None):
        self._fit(X)
        return self

    def fit_transform(self, X, y=None):
        result = self._fit(X)
        return self._scaled(np.asarray(result.scores))

    def _fit(self, X):
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], ensure_min_samples=2)
        m, n = X.shape
        rank, tol = _rank_and_tol(self.n_components, min(m, n), "the share of the variance to explain")
        result = pca(X, rank, tol=tol, oversample=self.oversample, power_iters=self.power_iters,
                     method=self.method, rng=_random_seed(self.random_state))
        k = result.rank
        self.components_ = result.Vh
        self.explained_variance_ = result.explained_variance
        self.explained_variance_ratio_ = result.explained_variance_ratio
        self.singular_values_ = result.S
        self.mean_ = result.mean
        self.n_components_, self.n_samples_ = k, m
        left = result.total_variance - float(np.sum(self._variance()))
        self.noise_variance_ = max(left, 0.0) / (min(m, n) - k) if k < min(m, n) else 0.0
        return result

    @property
    def _n_features_out(self):  # names the output columns, pca0, pca1, ...
        return self.n_components_

    def _variance(self):
        """explained_variance_ in double: in float32 it squares the data's scale out of
        range (inf for data near 1e20, 0 near 1e-23), which would zero the whitened
        output and make the covariance singular."""
        return self.singular_values_.astype(np.float64) ** 2 / (self.n_samples_ - 1)

    def _scaled(self, Z):
        if not self.whiten:
            return Z
        variance = self._variance()
        scale = np.divide(1.0, np.sqrt(variance), out=np.zeros_like(variance), where=variance > 0)
        return Z * scale.astype(Z.dtype)

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], reset=False)
        V = self.components_.T.astype(X.dtype, copy=False)
        return self._scaled(np.asarray(X @ V) - self.mean_.astype(X.dtype) @ V)

    def inverse_transform(self, X):
        """Points in principal coordinates (p, n_components_) back in the data space."""
        check_is_fitted(self)
        X = check_array(X, dtype=[np.float64, np.float32])
        if X.shape[1] != self.n_components_:
            raise ValueError(f"`X` must have {self.n_components_} columns (n_components_); got {X.shape[1]}.")
        if self.whiten:
            X = X * np.sqrt(self._variance()).astype(X.dtype)
        return X @ self.components_.astype(X.dtype) + self.mean_.astype(X.dtype)

    def score_samples(self, X):
        """Log-likelihood of each sample under probabilistic PCA, (p,).

        The model is N(mean_, C), C = components_^T diag(explained_variance_)
        components_ + noise_variance_ (I - components_^T components_)
        (Tipping & Bishop 1999), as scikit-learn's PCA; it is evaluated
        through the k axes, without forming the n x n matrix C.
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], reset=False)
        n, k = X.shape[1], self.n_components_
        noise = float(self.noise_variance_)
        variance = np.maximum(self._variance(), noise)
        if (k < n and noise <= 0) or np.any(variance <= 0):
            raise ValueError(
                "the fitted covariance is singular (no variance left outside the components, or none along one): "
                "fit fewer components to score samples."
            )
        V, mean = self.components_.astype(np.float64), self.mean_.astype(np.float64)
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
        return self.components_.astype(np.float64), np.maximum(self._variance(), noise), noise

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class IncrementalPCA(PCA):
    """PCA in one pass over batches, like :class:`sklearn.decomposition.IncrementalPCA`.

    A shell over :class:`randla.StreamingPCA` (Frequent Directions with exact
    means): ``partial_fit`` takes one batch at a time, ``fit`` splits X into
    batches of ``batch_size`` rows. Sparse batches are densified one at a
    time. Unlike scikit-learn's, a batch may have fewer rows than
    ``n_components``, and the sketch's error has a certified bound,
    ``variance_error_bound_``.

    Parameters
    ----------
    n_components : int or None, default None
        None: min(n_features, rows of the first batch).
    whiten : bool, default False
    batch_size : int or None, default None
        Rows per batch in ``fit`` (default 5 n_features, as scikit-learn).
    sketch_size : int or None, default None
        As in :class:`randla.StreamingPCA` (default 4 n_components).

    Attributes
    ----------
    components_, explained_variance_, explained_variance_ratio_,
    singular_values_, mean_, noise_variance_, n_components_
        As in :class:`randla.PCA`; the variances are the sketch's, each at
        most ``variance_error_bound_`` below the exact one.
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

    def __init__(self, n_components=None, *, whiten=False, batch_size=None, sketch_size=None):
        self.n_components = n_components
        self.whiten = whiten
        self.batch_size = batch_size
        self.sketch_size = sketch_size

    def fit(self, X, y=None):
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], ensure_min_samples=2)
        self._stream = None
        self.batch_size_ = (5 * X.shape[1] if self.batch_size is None
                            else check_int("batch_size", self.batch_size, 1))
        for start in range(0, X.shape[0], self.batch_size_):
            self._add(X[start : start + self.batch_size_])
        return self

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)

    def partial_fit(self, X, y=None):
        first = getattr(self, "_stream", None) is None
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], reset=first)
        if first:
            self.batch_size_ = X.shape[0]
        self._add(X)
        return self

    def _add(self, X):
        if getattr(self, "_stream", None) is None:
            n_components = min(X.shape) if self.n_components is None else self.n_components
            self._stream = StreamingPCA(check_int("n_components", n_components, 1, X.shape[1]),
                                        sketch_size=self.sketch_size)
        stream = self._stream.partial_fit(X)
        self.n_samples_seen_ = self.n_samples_ = stream.n_samples_seen_
        if stream.n_samples_seen_ < 2:
            return
        self.components_ = stream.components_
        self.singular_values_ = stream.singular_values_
        self.explained_variance_ = stream.explained_variance_
        self.explained_variance_ratio_ = stream.explained_variance_ratio_
        self.mean_ = stream.mean_
        self.variance_error_bound_ = stream.variance_error_bound_
        k, rest = self.components_.shape[0], min(stream.n_samples_seen_, X.shape[1])
        self.n_components_ = k
        left = stream.total_variance_ - float(np.sum(self._variance()))
        self.noise_variance_ = max(left, 0.0) / (rest - k) if k < rest else 0.0


class TruncatedSVD(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Truncated SVD (latent semantic analysis) by randomized subspace iteration.

    Like :class:`sklearn.decomposition.TruncatedSVD`, over :func:`randla.svd`:
    the data are not centred, so sparse input (term counts, TF-IDF) is
    decomposed as it is, never densified.

    Parameters
    ----------
    n_components : int or float, default 2
        An int k in [1, min(n_samples, n_features)]; or a float in (0, 1),
        the share of the energy ||X||_F^2 to capture (the fewest components
        that do, found adaptively).
    oversample, power_iters, method
        As in :func:`randla.svd`.
    random_state : None, int or RandomState

    Attributes
    ----------
    components_ : ndarray (n_components_, n_features)
        Right singular vectors, by decreasing singular value.
    singular_values_ : ndarray (n_components_,)
    explained_variance_ : ndarray (n_components_,)
        Variance of the training data's projection on each component.
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
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], ensure_min_samples=2)
        rank, tol = _rank_and_tol(self.n_components, min(X.shape), "the share of ||X||_F^2 to capture",
                                  allow_none=False)
        result = svd(X, rank, tol=tol, oversample=self.oversample, power_iters=self.power_iters, method=self.method,
                     rng=_random_seed(self.random_state))
        scores = result.U * result.S
        self.components_ = result.Vh
        self.singular_values_ = result.S
        self.n_components_ = result.rank
        # Variances in double, the total in one pass without densifying X.
        self.explained_variance_ = np.var(scores.astype(np.float64), axis=0).astype(X.dtype)
        total = Centered(as_operator(X), axis=0).norm() ** 2 / X.shape[0]
        self.explained_variance_ratio_ = self.explained_variance_ / total if total > 0 else 0 * self.explained_variance_
        return scores

    @property
    def _n_features_out(self):  # names the output columns, truncatedsvd0, ...
        return self.n_components_

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], reset=False)
        return np.asarray(X @ self.components_.T.astype(X.dtype, copy=False))

    def inverse_transform(self, X):
        """Points in component coordinates (p, n_components_) back in the data space."""
        check_is_fitted(self)
        X = check_array(X, dtype=[np.float64, np.float32])
        if X.shape[1] != self.n_components_:
            raise ValueError(f"`X` must have {self.n_components_} columns (n_components_); got {X.shape[1]}.")
        return X @ self.components_.astype(X.dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class Nystroem(TransformerMixin, BaseEstimator):
    """Kernel feature map from landmark columns: z(x)^T z(y) ~ k(x, y).

    Like :class:`sklearn.kernel_approximation.Nystroem`, with the landmarks
    chosen by any method of :func:`randla.landmarks` (randomly pivoted
    Cholesky by default) instead of uniformly.

    Parameters
    ----------
    kernel : str or callable, default "rbf"
        As in :func:`randla.kernel_operator`.
    gamma, degree, coef0 : float, optional
        Kernel parameters, passed where the kernel takes them.
    kernel_params : dict, optional
        Further kernel parameters (``bandwidth``, ``nu``, ``length_scale``,
        a callable's own).
    n_components : int, default 100
        Number of landmarks m (at most n_samples; a warning says when capped).
        Fewer are kept when the kernel matrix has a lower numerical rank on
        the training data: a further landmark would add no feature, only
        rounding (none at all for a kernel that is zero on the data).
    landmarks : str, default "rpcholesky"
        ``"rpcholesky"``, ``"uniform"``, ``"greedy"``, ``"kmeans++"`` or
        ``"leverage"``.
    random_state : None, int or RandomState

    Attributes
    ----------
    components_ : ndarray (m, d)
        The landmark points.
    component_indices_ : ndarray (m,)
        Their rows in the training data.
    normalization_ : ndarray (m, m)
        T with z(x) = k(x, components_) @ T.
    trace_error_ : float
        tr(K - Z Z^T) on the training data (exact).

    Notes
    -----
    The landmark factor F (n, m) with K ~ F F^T has F[S] lower triangular
    and F = K[:, S] F[S]^{-T}, so new points map to k(x, S) F[S]^{-T}: the
    same features the training points get.

    Examples
    --------
    >>> import numpy as np, randla
    >>> X = np.random.default_rng(0).standard_normal((500, 4))
    >>> Z = randla.Nystroem(n_components=50, random_state=0).fit_transform(X)
    >>> Z.shape
    (500, 50)
    """

    def __init__(self, kernel="rbf", *, gamma=None, degree=None, coef0=None, kernel_params=None,
                 n_components=100, landmarks="rpcholesky", random_state=None):
        self.kernel = kernel
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.kernel_params = kernel_params
        self.n_components = n_components
        self.landmarks = landmarks
        self.random_state = random_state

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        K = kernel_operator(X, kernel=self.kernel, **_kernel_params(self))
        m = _capped_components(self.n_components, X.shape[0])
        chosen = select_landmarks(K, m, method=self.landmarks, rng=_random_seed(self.random_state))
        idx = np.asarray(chosen.indices)
        head = np.asarray(chosen.factor)[idx]  # lower triangular, positive diagonal
        self.components_ = X[idx]
        self.component_indices_ = idx
        self.normalization_ = solve_triangular(head, np.eye(len(idx), dtype=head.dtype), lower=True).T
        self.trace_error_ = chosen.trace_error
        self._kernel = K.kernel
        return self

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        if len(self.component_indices_) == 0:  # the kernel was zero on the training data
            return np.zeros((X.shape[0], 0), dtype=X.dtype)
        C = kernel_operator(X, self.components_.astype(X.dtype), kernel=self.kernel, **_kernel_params(self)).block()
        return C @ self.normalization_.astype(X.dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class KernelRidge(RegressorMixin, BaseEstimator):
    """Kernel ridge regression that never forms the kernel matrix.

    Minimises ||y - f(X)||^2 + alpha ||f||_H^2 (scikit-learn's KernelRidge
    objective, no intercept).

    Parameters
    ----------
    alpha : float, default 1.0
        Ridge penalty, > 0.
    kernel, gamma, degree, coef0, kernel_params
        As in :class:`Nystroem`.
    n_components : int, "auto" or None, default "auto"
        Landmarks m of the Nyström model. ``"auto"``: min(n, max(100,
        ceil(sqrt(n)))). None with ``solver="pcg"``: the full, exact KRR
        system, solved by CG with a randomized Nyström preconditioner.
    solver : {"nystrom", "pcg"}, default "nystrom"
        ``"nystrom"``: Nyström KRR solved directly (:func:`randla.nystrom_kernel_ridge`).
        ``"pcg"``: conjugate gradients, on the Nyström system (Falkon) when
        ``n_components`` is set, else on the full system (:func:`randla.kernel_ridge`).
    landmarks : str, default "rpcholesky"
        Landmark selection for the Nyström model.
    tol : float, optional
        Relative residual for ``"pcg"`` (default 1e-6).
    max_iter : int, optional
        CG iteration cap for ``"pcg"`` (default 200).
    memory_limit : int, default 256 MiB
        Bytes of kernel blocks held at a time.
    random_state : None, int or RandomState

    Attributes
    ----------
    dual_coef_ : ndarray (m,) or (m, t)
    centers_ : ndarray (m, d)
    converged_ : bool
    n_iter_ : int
        CG iterations; 1 for the direct solver (one factorisation).
    residuals_ : ndarray
        Relative residual norms of the solver (see :class:`randla.KRRResult`).

    Examples
    --------
    >>> import randla
    >>> X, y = randla.testing.kernel_regression(2000, d=5, rng=0)
    >>> model = randla.KernelRidge(alpha=0.1, gamma=0.1, n_components=300, random_state=0).fit(X, y)
    >>> bool(model.score(X, y) > 0.9)
    True
    """

    def __init__(self, alpha=1.0, *, kernel="rbf", gamma=None, degree=None, coef0=None, kernel_params=None,
                 n_components="auto", solver="nystrom", landmarks="rpcholesky", tol=None, max_iter=None,
                 memory_limit=DEFAULT_MEMORY_LIMIT, random_state=None):
        self.alpha = alpha
        self.kernel = kernel
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.kernel_params = kernel_params
        self.n_components = n_components
        self.solver = solver
        self.landmarks = landmarks
        self.tol = tol
        self.max_iter = max_iter
        self.memory_limit = memory_limit
        self.random_state = random_state

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], multi_output=True, y_numeric=True)
        y = y.astype(X.dtype, copy=False)
        if self.solver not in ("nystrom", "pcg"):
            raise ValueError(f"`solver` must be 'nystrom' or 'pcg'; got {self.solver!r}.")
        common = dict(kernel=self.kernel, alpha=self.alpha, memory_limit=self.memory_limit,
                      rng=_random_seed(self.random_state), **_kernel_params(self))
        iterative = {} if self.solver == "nystrom" else {
            "tol": 1e-6 if self.tol is None else self.tol,
            "max_iter": 200 if self.max_iter is None else self.max_iter,
        }
        if self.solver == "pcg" and self.n_components is None:
            result = kernel_ridge(X, y, **iterative, **common)
        else:
            m = self.n_components
            if m is None:
                raise ValueError("`n_components=None` (the full system) needs solver='pcg'.")
            if not (isinstance(m, str) and m == "auto"):
                try:
                    m = _capped_components(m, X.shape[0])
                except ValueError:
                    msg = f"`n_components` must be an int >= 1, 'auto' or None; got {m!r}."
                    raise ValueError(msg) from None
            solver = "direct" if self.solver == "nystrom" else "pcg"
            result = nystrom_kernel_ridge(X, y, n_components=m, landmarks=self.landmarks, solver=solver,
                                          **iterative, **common)
        self.result_ = result
        self.dual_coef_ = result.dual_coef
        self.centers_ = result.centers
        self.converged_ = result.converged
        self.n_iter_ = max(result.n_iter, 1)
        self.residuals_ = result.residuals
        return self

    def predict(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return self.result_.predict(X.astype(self.centers_.dtype, copy=False))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class SpectralClustering(ClusterMixin, BaseEstimator):
    """Spectral clustering on a Nyström approximation of the affinity matrix.

    A shell over :func:`randla.spectral_clustering`: n m kernel evaluations
    and O(n m^2) work instead of an n x n affinity matrix.

    Parameters
    ----------
    n_clusters : int, default 8
    kernel, gamma, kernel_params
        The affinity (non-negative kernel), as in :class:`Nystroem`.
    n_components : int, default 200
        Landmarks m (capped at n_samples; raised to n_clusters, with a
        warning, as the embedding takes one eigenvector per cluster).
    landmarks : str, default "rpcholesky"
    n_init : int, default 10
        k-means restarts.
    random_state : None, int or RandomState

    Attributes
    ----------
    labels_ : ndarray (n,)
    embedding_ : ndarray (n, n_clusters)
    landmark_indices_ : ndarray (m,)

    Examples
    --------
    >>> import numpy as np, randla
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(0, 0.3, (150, 2)), rng.normal(4, 0.3, (50, 2))])
    >>> labels = randla.SpectralClustering(2, n_components=40, random_state=0).fit_predict(X)
    >>> sorted(np.bincount(labels).tolist())
    [50, 150]
    """

    def __init__(self, n_clusters=8, *, kernel="rbf", gamma=None, kernel_params=None, n_components=200,
                 landmarks="rpcholesky", n_init=10, random_state=None):
        self.n_clusters = n_clusters
        self.kernel = kernel
        self.gamma = gamma
        self.kernel_params = kernel_params
        self.n_components = n_components
        self.landmarks = landmarks
        self.n_init = n_init
        self.random_state = random_state

    degree = coef0 = None  # not parameters: the affinity must be non-negative

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        k = check_int("n_clusters", self.n_clusters, 1)
        m = min(check_int("n_components", self.n_components, 1), X.shape[0])
        if m < min(k, X.shape[0]):
            warnings.warn(
                f"n_components={m} < n_clusters={k}: using {k} landmarks, as the embedding takes "
                "one eigenvector per cluster.",
                UserWarning,
                stacklevel=2,
            )
            m = k
        result = spectral_clustering(
            X, self.n_clusters, kernel=self.kernel, n_components=m, landmarks=self.landmarks,
            n_init=self.n_init, rng=_random_seed(self.random_state), **_kernel_params(self),
        )
        self.labels_ = result.labels
        self.embedding_ = result.embedding
        self.landmark_indices_ = result.landmarks
        return self


def _observed_pattern(rows, cols, shape) -> sp.csr_matrix:
    """The m x n CSR pattern (ones, int8) of the entries that ``complete`` accepted."""
    if sp.issparse(rows):
        coo = rows.tocoo()
        rows, cols = coo.row, coo.col
    rows, cols = np.asarray(rows).astype(np.int64, copy=False), np.asarray(cols).astype(np.int64, copy=False)
    return sp.csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=shape)


class MatrixCompletion(BaseEstimator):
    """A low-rank matrix from a few observed entries, with predictions and top-k recommendations.

    A shell over :func:`randla.complete`, which solves the nuclear-norm
    regularised problem min 1/2 sum_Omega (X_ij - Z_ij)^2 + reg ||Z||_* with
    rank(Z) <= ``rank``. Not meant for ``check_estimator``: ``fit`` takes
    observed entries (rows, cols, values), not (X, y).

    Parameters
    ----------
    rank : int, default 10
        Rank cap k of Z.
    method : {"softimpute_als", "softimpute", "altmin", "bayes"}, default "softimpute_als"
    reg : float, sequence of float or None, default None
        Regularisation weight; a sequence or None is a path chosen on
        held-out entries (see :func:`randla.complete`).
    n_reg : int, default 10
        Length of the default path (``reg=None``).
    validation : float, (rows, cols, values) or None, default None
        Held-out entries for choosing ``reg``.
    biases : bool, default False
        Row and column biases (``method="altmin"`` only).
    max_iter : int, default 100
    tol : float or None, default None
        Stop when ||Z_new - Z||_F <= tol ||Z||_F (None: 1e-3, or 1e-2 for
        ``"bayes"``).
    cg_steps : int, default 3
        Conjugate-gradient steps per row problem in ``"altmin"``.
    oversample : int, default 10
        Extra random directions per ``"softimpute"`` step.
    random_state : None, int or RandomState

    Attributes
    ----------
    result_ : CompletionResult
        What :func:`randla.complete` returned.
    U_, S_, Vh_ : ndarray (m, r), (r,), (r, n)
        Z = U_ diag(S_) Vh_ (+ mean and biases, see ``result_``).
    shape_ : (int, int)
        (m, n).
    n_iter_ : int
    converged_ : bool
    reg_ : float
        The regularisation weight of the final fit (the chosen one on a path;
        NaN for ``"bayes"``, whose fitted noise level is ``result_.noise``).
    seen_ : scipy.sparse.csr_matrix (m, n), int8
        The observed pattern, which :meth:`recommend` leaves out.

    Examples
    --------
    >>> import randla
    >>> data = randla.testing.ratings(300, 200, 12000, rank=3, noise=0.1, rng=0)
    >>> model = randla.MatrixCompletion(rank=3, reg=1.0, random_state=0).fit(*data, shape=data.shape)
    >>> model.predict(data.rows[:4], data.cols[:4]).shape
    (4,)
    >>> model.recommend([0, 1], k=5).shape
    (2, 5)
    """

    def __init__(self, rank=10, *, method="softimpute_als", reg=None, n_reg=10, validation=None, biases=False,
                 max_iter=100, tol=None, cg_steps=3, oversample=10, random_state=None):
        self.rank = rank
        self.method = method
        self.reg = reg
        self.n_reg = n_reg
        self.validation = validation
        self.biases = biases
        self.max_iter = max_iter
        self.tol = tol
        self.cg_steps = cg_steps
        self.oversample = oversample
        self.random_state = random_state

    def fit(self, rows, cols=None, values=None, shape=None):
        """Fit Z to the entries X[rows[t], cols[t]] = values[t], or to a SciPy sparse matrix ``rows``."""
        result = complete(
            rows, cols, values, shape, rank=self.rank, method=self.method, reg=self.reg, n_reg=self.n_reg,
            validation=self.validation, biases=self.biases, max_iter=self.max_iter, tol=self.tol,
            cg_steps=self.cg_steps, oversample=self.oversample, rng=_random_seed(self.random_state),
        )
        self.result_ = result
        self.U_, self.S_, self.Vh_ = result
        self.shape_ = result.shape
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.reg_ = result.reg
        self.seen_ = _observed_pattern(rows, cols, result.shape)
        return self

    def predict(self, rows, cols) -> np.ndarray:
        """Z at the positions (rows[t], cols[t])."""
        check_is_fitted(self)
        return self.result_.predict(rows, cols)

    def recommend(self, user, k=10, *, exclude_seen=True) -> np.ndarray:
        """The ``k`` columns of highest predicted value for each user (row), best first.

        Parameters
        ----------
        user : int or array_like of int, shape (u,)
            Row indices in [0, m).
        k : int, default 10
        exclude_seen : bool, default True
            Leave out the columns observed for that row in ``fit``.

        Returns
        -------
        ndarray of int, shape (k,) for an int ``user``, else (u, k)
        """
        check_is_fitted(self)
        m, n = self.shape_
        users = np.asarray(user)
        if users.ndim > 1 or (users.size and not np.issubdtype(users.dtype, np.integer)):
            raise ValueError(f"`user` must be an int or a 1-D array of ints in [0, {m}); got {user!r}.")
        users = users.astype(np.intp, copy=False).reshape(-1)
        if users.size and (users.min() < 0 or users.max() >= m):
            bad = users[(users < 0) | (users >= m)][0]
            raise ValueError(f"`user` holds row {bad}, outside [0, {m}) for the {m} x {n} matrix fitted.")
        k = check_int("k", k, 1)
        available = n - (np.diff(self.seen_.indptr)[users] if exclude_seen else np.zeros(users.size, np.intp))
        if users.size and k > available.min():
            worst = int(np.argmin(available))
            fix = "lower `k` or pass exclude_seen=False" if exclude_seen else "lower `k`"
            raise ValueError(
                f"`k`={k} exceeds the {available[worst]} candidate columns of user {users[worst]} "
                f"({n} columns, {n - available[worst]} seen in fit); {fix}."
            )
        out = np.empty((users.size, k), dtype=np.intp)
        step = max(1, _SCORE_ELEMENTS // n)
        for start in range(0, users.size, step):
            block = users[start:start + step]
            scores = self.result_.scores(block)
            if exclude_seen:
                seen = self.seen_[block]
                scores[np.repeat(np.arange(block.size), np.diff(seen.indptr)), seen.indices] = -np.inf
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
            out[start:start + step] = np.take_along_axis(top, order, axis=1)
        return out[0] if np.ndim(user) == 0 else out
