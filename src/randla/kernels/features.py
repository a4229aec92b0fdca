"""Random features: explicit maps z with z(x)^T z(y) ~ k(x, y).

Where Nystrom (``randla.nystrom`` on a :func:`~randla.kernels.kernel_operator`)
adapts to the data and its error follows the kernel matrix's spectral tail,
random features are drawn without looking at the data; their error falls like
1/sqrt(D) in the number of features D, whatever the spectrum.

- :func:`fourier_features` - random Fourier features of the shift-invariant
  kernels ``rbf``, ``laplacian`` and ``matern`` [RR2007, Alg. 1], in the
  lower-variance cos/sin form [SS2015] (with one random-phase cosine more
  for an odd number of features).
- :func:`sparse_rbf_features` - features of the Gaussian kernel of sparse,
  high-dimensional data in time linear in nnz(X): a sparse embedding of the
  points, then random Fourier features, then an optional rank-r truncation,
  after the input-sparsity-time question of [MW2017].

Both return a :class:`RandomFeatures` result, ``Z, feature_map``: the
features Z (n, D) of the given points, with Z Z^T ~ K, and the frozen
:class:`FeatureMap` that applies the same random draw to new points.

References
----------
.. [RR2007] A. Rahimi and B. Recht, "Random features for large-scale kernel
   machines", NeurIPS 2007.
.. [SS2015] D. J. Sutherland and J. Schneider, "On the error of random Fourier
   features", UAI 2015.
.. [KN2014] D. M. Kane and J. Nelson, "Sparser Johnson-Lindenstrauss
   transforms", J. ACM 61(1), 2014.
.. [MW2017] C. Musco and D. P. Woodruff, "Is input sparsity time possible for
   kernel low-rank approximation?", NeurIPS 2017.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from array_api_compat import array_namespace, is_numpy_array, is_torch_array

from .._results import Unpackable
from .._validate import check_int, check_rng
from ..backend import device_of, to_numpy
from .functions import KERNELS, Kernel, make_kernel
from .operator import check_points

__all__ = ["fourier_features", "fourier_feature_map", "sparse_rbf_features", "FeatureMap", "RandomFeatures"]

#: Kernels with a known spectral density to draw frequencies from.
FOURIER_KERNELS = ("rbf", "gaussian", "laplacian", "matern")

#: Nonzeros per row of the sparse embedding, one in each of as many column
#: blocks; 8 is the value Tropp et al. (2019) recommend for sparse sign maps.
_EMBEDDING_NNZ = 8


@dataclass(frozen=True, repr=False, eq=False)
class FeatureMap:
    """A frozen random feature map x -> z(x) with z(x)^T z(y) ~ k(x, y).

    Made by :func:`fourier_features` and :func:`sparse_rbf_features`;
    ``transform(X)`` applies the same random draw to any points.

    Attributes
    ----------
    kernel : str
        ``"rbf"``, ``"laplacian"`` or ``"matern"``.
    params : dict
        The kernel's resolved parameters (``gamma``, or ``length_scale`` and
        ``nu``).
    frequencies : numpy.ndarray, shape (p, ceil(D/2))
        Frequencies omega_j drawn from the kernel's spectral density, float64;
        p is ``n_features_in``, or the embedding's width when there is one.
        Each gives a cosine and a sine feature, except the last for an odd
        D, which gives one cosine with a random phase (``phase``).
    n_features_in : int
        Number of features d of the points.
    embedding : scipy.sparse.csr_array of shape (d, m), or None
        Sparse sign embedding applied to the points first.
    projection : numpy.ndarray of shape (D, r), or None
        Orthonormal columns the D Fourier features are projected onto.
    phase : float or None
        For an odd D, the phase b, uniform in [0, 2 pi), of the last
        feature sqrt(2/D) cos(omega^T x + b); None for an even D.
    """

    kernel: str
    params: dict
    frequencies: np.ndarray
    n_features_in: int
    embedding: sp.csr_array | None = None
    projection: np.ndarray | None = None
    phase: float | None = None

    @property
    def n_fourier(self) -> int:
        """Number of Fourier features D, before any projection."""
        return 2 * int(self.frequencies.shape[1]) - (self.phase is not None)

    @property
    def n_components(self) -> int:
        """Number of output features: D, or r after a projection."""
        if self.projection is not None:
            return int(self.projection.shape[1])
        return self.n_fourier

    def transform(self, X):
        """The features z(x) of each row x of X, shape (n, ``n_components``).

        X is a NumPy array, a torch tensor (any device) or a SciPy sparse
        matrix or array with ``n_features_in`` columns; the result is in X's
        library and device, in its dtype (NumPy for sparse X; integers give
        float64, half precisions float32, where the features are computed).
        """
        X = _check_data(X)
        if X.shape[1] != self.n_features_in:
            raise ValueError(
                f"X must have {self.n_features_in} features (columns), as the points the map "
                f"was drawn for; got shape {tuple(X.shape)}."
            )
        return self._apply(X)

    def _apply(self, X):
        """z(X) for validated X: embed, project on the frequencies, cos/sin."""
        Y = X if self.embedding is None else _embed(X, self.embedding)
        if sp.issparse(Y):
            P = np.asarray(Y @ self.frequencies.astype(Y.dtype, copy=False))
        else:
            P = Y @ _like(Y, self.frequencies)
        xp = array_namespace(P)
        if self.phase is None:
            scale = 1.0 / math.sqrt(self.frequencies.shape[1])  # sqrt(2 / D)
            Z = xp.concat([xp.cos(P), xp.sin(P)], axis=1) * scale
        else:
            Z = _with_phase(xp, P, self.phase) * math.sqrt(2.0 / self.n_fourier)
        if self.projection is not None:
            Z = Z @ _like(Z, self.projection)
        return Z

    def __repr__(self) -> str:
        extra = ""
        if self.embedding is not None:
            extra += f", sketch_size={self.embedding.shape[1]}"
        if self.projection is not None:
            extra += f", rank={self.projection.shape[1]}"
        return (
            f"FeatureMap(kernel={self.kernel!r}, params={self.params}, "
            f"n_features_in={self.n_features_in}, n_components={self.n_components}{extra})"
        )


@dataclass(frozen=True, repr=False)
class RandomFeatures(Unpackable):
    """Random features of a set of points; unpacks as ``Z, feature_map``.

    ``Z`` (n, r) has Z Z^T ~ K, the kernel matrix of the points;
    ``feature_map`` gives the same features for new points,
    ``feature_map.transform(X_new) @ Z.T ~ k(X_new, X)``.
    """

    Z: object
    feature_map: FeatureMap
    _unpack = ("Z", "feature_map")

    @property
    def rank(self) -> int:
        """Number of features r, an upper bound on the rank of Z Z^T."""
        return int(self.Z.shape[1])

    def factors(self):
        """(Z, Z^T): K ~ Z @ Z^T."""
        return self.Z, self.Z.mT

    def reconstruct(self):
        """Z Z^T, the n x n approximation of K (formed: for small n only)."""
        L, R = self.factors()
        return L @ R


def fourier_features(X, n_components: int, *, kernel: str = "rbf", rng=None, **params) -> RandomFeatures:
    """Random Fourier features Z (n, D) of a shift-invariant kernel, Z Z^T ~ K.

    Parameters
    ----------
    X : array, shape (n, d)
        Points, one per row: NumPy array or torch tensor (any device), or a
        SciPy sparse matrix or array (never densified).
    n_components : int
        Number of features D >= 1: floor(D/2) frequencies, each giving a
        cosine and a sine, and for an odd D one more giving a cosine with a
        random phase (see Notes).
    kernel : {"rbf", "gaussian", "laplacian", "matern"}, default "rbf"
        The kernel, with scikit-learn's parameters (see
        :mod:`randla.kernels.functions`): rbf exp(-gamma ||x - y||_2^2),
        laplacian exp(-gamma ||x - y||_1), Matern with ``length_scale`` and
        ``nu`` in {0.5, 1.5, 2.5}.
    rng : None, int, SeedSequence, BitGenerator or Generator
        Source of the frequencies (SPEC 7).
    **params
        ``gamma`` (default 1/d) or ``bandwidth`` for rbf and laplacian;
        ``length_scale`` (default 1) or ``bandwidth`` and ``nu`` (default 1.5)
        for matern.

    Returns
    -------
    RandomFeatures
        ``Z, feature_map``: Z (n, D) in X's library, device and dtype
        (float32 for half precisions, float64 for integers), and the frozen
        :class:`FeatureMap` for new points.

    Raises
    ------
    ValueError
        A kernel that is not shift-invariant (use Nystrom), a non-positive
        ``n_components``, a bad kernel parameter, NaN/Inf in X, or X not 2-D.
    TypeError
        X is not an array of real numbers.

    Notes
    -----
    By Bochner's theorem k(x - y) = E cos(omega^T (x - y)) with omega drawn
    from the kernel's spectral density: N(0, 2 gamma I) for rbf; i.i.d.
    Cauchy(0, gamma) coordinates for laplacian, whose L1 form makes it a
    product of one-dimensional kernels exp(-gamma |t|); for matern a
    multivariate Student t with 2 nu degrees of freedom and scale
    1/length_scale (Rasmussen & Williams 2006, eq. 4.15). Then
    z(x) = sqrt(2/D) [cos(W^T x), sin(W^T x)] for W = [omega_1 ...
    omega_{D/2}] [RR2007, Alg. 1, with a sine in place of a random phase].
    For an odd D the last feature is sqrt(2/D) cos(omega^T x + b) with b
    uniform in [0, 2 pi), the random-phase feature sqrt(2) cos(omega^T x + b)
    of [RR2007, Alg. 1] with weight 1/D: 2 cos(omega^T x + b)
    cos(omega^T y + b) averages cos(omega^T (x - y)) over b, as a cosine and
    sine pair does exactly, so with weight 2/D per pair and 1/D for it the
    weights sum to 1 and Z Z^T stays unbiased.

    Error: z(x)^T z(y) is unbiased for k(x, y) and, for an even D, exact on
    the diagonal (cos^2 + sin^2 = 1), with variance
    (1 + k(2 delta) - 2 k(delta)^2) / D at delta = x - y. Each entry's error is O(1/sqrt(D)); the largest over n
    points is O(sqrt(log(n) / D)) by Hoeffding's inequality and a union bound
    (every term is bounded by 1), and [RR2007, Claim 1] bounds it uniformly
    over a compact set. The relative Frobenius error of Z Z^T falls like
    1/sqrt(D): four times the features halve it.
    Nystrom, whose error follows the spectral tail of K, is usually more
    accurate for a given rank on data with decaying spectra.

    The cos/sin pairs are used rather than D cosines cos(omega^T x + b)
    with random phases b: for the same D their variance is lower by
    (k(delta)^2 - k(2 delta)/2) / D, which is >= 0 whenever
    k(2 delta) <= 2 k(delta)^2 - true for all three kernels (the Gaussian's
    k(2 delta) = k(delta)^4, the Laplacian's k(delta)^2) [SS2015].

    Cost O(n d D) (O(nnz(X) D) for sparse X) and memory O(n D + d D). The
    frequencies are drawn on the host by NumPy's generator in float64 and
    moved to X's device and dtype, so the same ``rng`` gives the same map for
    NumPy and torch.

    Examples
    --------
    >>> import numpy as np
    >>> from randla.kernels import fourier_features
    >>> X = np.random.default_rng(0).standard_normal((300, 3))
    >>> Z, fmap = fourier_features(X, 2000, kernel="rbf", bandwidth=1.0, rng=0)
    >>> Z.shape, fmap.transform(X[:5]).shape
    ((300, 2000), (5, 2000))
    >>> K = np.exp(-0.5 * ((X[:, None, :] - X[None, :, :]) ** 2).sum(axis=2))
    >>> bool(np.abs(Z @ Z.T - K).mean() < 0.03)
    True
    """
    X = _check_data(X)
    fmap = fourier_feature_map(int(X.shape[1]), n_components, kernel=kernel, rng=rng, **params)
    return RandomFeatures(fmap._apply(X), fmap)


def fourier_feature_map(n_features: int, n_components: int, *, kernel: str = "rbf", rng=None,
                        **params) -> FeatureMap:
    """The frozen map of :func:`fourier_features` for points of ``n_features``
    coordinates, drawn without featurising any point (the same draw for the
    same ``rng``)."""
    D = _check_components(n_components)
    spec = _fourier_kernel(kernel, n_features, params)
    rng = check_rng(rng)
    W, phase = _draw(spec, n_features, D, rng)
    return FeatureMap(spec.name, spec.params, W, n_features, phase=phase)


def sparse_rbf_features(
    X,
    n_components: int,
    *,
    rank: int | None = None,
    gamma: float | None = None,
    bandwidth: float | None = None,
    sketch_size: int | None = None,
    rng=None,
) -> RandomFeatures:
    """Low-rank features of the Gaussian kernel of sparse data, in time linear in nnz(X).

    Z Z^T ~ K = exp(-gamma ||x_i - x_j||^2) without forming K and without
    products of X with anything wider than a sparse embedding: the points are
    first embedded into ``sketch_size`` dimensions by a sparse sign map,
    random Fourier features are drawn there, and optionally the D features
    are reduced to their best rank-r part.

    Parameters
    ----------
    X : array, shape (n, d)
        SciPy sparse matrix or array (CSR, CSC or any other format; never
        densified), or a dense NumPy array or torch tensor (any device).
    n_components : int
        Number of random Fourier features D >= 1 (for an odd D, one is a
        random-phase cosine, as in :func:`fourier_features`).
    rank : int, optional
        Keep the best rank-r part of the features: Z is (n, r) with Z Z^T the
        best rank-r approximation of the D-feature Z_D Z_D^T. Default: no
        truncation, Z is (n, D). At most min(n, D).
    gamma, bandwidth : float, optional
        The kernel's scale, as scikit-learn's ``rbf_kernel``: ``gamma``
        (default 1/d), or ``bandwidth`` sigma with gamma = 1 / (2 sigma^2).
    sketch_size : int, optional
        Width m of the sparse embedding; default D, which keeps the
        embedding's error below that of the Fourier features (Notes). When
        m >= d the points are not embedded: an embedding that wide saves
        nothing, and these are then exactly :func:`fourier_features`.
    rng : None, int, SeedSequence, BitGenerator or Generator
        Source of the embedding and the frequencies (SPEC 7).

    Returns
    -------
    RandomFeatures
        ``Z, feature_map``: Z (n, r or D), NumPy for sparse X, otherwise in
        X's library and device; in X's dtype (float32 for half precisions,
        float64 for integers); the :class:`FeatureMap` embeds,
        featurises and projects new points (sparse or dense) the same way.

    Raises
    ------
    ValueError
        Non-positive ``n_components``, ``rank`` outside [1, min(n, D)],
        ``sketch_size`` < 1, a non-positive or doubly given ``gamma`` /
        ``bandwidth``, NaN/Inf in X, or X not 2-D.
    TypeError
        X is not a matrix of real numbers.

    Notes
    -----
    The three steps and their costs, for s = min(8, m) nonzeros per row of
    the embedding:

    1. Y = X S with S (d, m) a sparse sign embedding in the block form of
       [KN2014]: each input coordinate goes to one random column of each of
       s column blocks, with sign +-1/sqrt(s). O(nnz(X) s) time, O(d s) memory.
    2. Z_D = sqrt(2/D) [cos(Y W), sin(Y W)] with W (m, D/2) i.i.d.
       N(0, 2 gamma) [RR2007, Alg. 1]. O(n m D).
    3. With ``rank``: V_r, the top r eigenvectors of the D x D Gram matrix
       Z_D^T Z_D, and Z = Z_D V_r, so Z Z^T is the best rank-r approximation
       of Z_D Z_D^T and Z's columns are orthogonal; divided by their norms
       they are an orthonormal basis for the approximate top-r eigenspace
       of K. O(n D^2 + D^3).

    In all O(nnz(X) s + n m D + n D^2): linear in nnz(X), with no factor of
    D or r on it. Forming X W directly, as plain random Fourier features do,
    costs O(nnz(X) D).

    Guarantee, given S: Z_D Z_D^T is an unbiased estimate of the Gaussian
    kernel of the embedded points, K_S[i, j] = exp(-gamma ||S^T (x_i -
    x_j)||^2), with each entry's error O(1/sqrt(D)) as in
    :func:`fourier_features`. Over S, ||S^T v||^2 is unbiased for ||v||^2
    with relative standard deviation at most sqrt(2/m) for every v (exactly
    (2/m)(1 - ||v||_4^4 / ||v||_2^4) in variance for this construction), so
    to first order each kernel entry moves by at most e^-1 sqrt(2/m) ~
    0.52 / sqrt(m) in standard deviation, with a bias O(1/m). In all
    |K - Z_D Z_D^T| = O(D^-1/2 + m^-1/2) entrywise: an additive error,
    independent of d. At the default m = D the embedding's part is, to first
    order, below the Fourier features' own standard deviation at every
    distance (at gamma ||v||^2 = t the two are t e^-t sqrt(2/m) and
    (1 - e^-2t) / sqrt(D)). With ``rank`` r,
    ||K - Z Z^T||_F <= ||K - K_r||_F + 2 ||K - Z_D Z_D^T||_F (K_r the best
    rank-r approximation of K).

    [MW2017] show that a relative-error rank-k approximation of K itself is
    as hard as multiplying X by an arbitrary d x k matrix (Omega(nnz(X) k)
    barring faster matrix multiplication), while for radial basis function
    kernels a near-optimal rank-k approximation of the kernelized dataset
    can be found in O(nnz(X)) time for fixed k and accuracy, with an
    algorithm built on random Fourier features. This function is a practical
    construction in that spirit, with the cost profile above; it does not
    carry that paper's relative-error (1 + eps) bound, only the additive one
    stated here.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from randla.kernels import sparse_rbf_features
    >>> X = sp.random_array((1000, 100_000), density=1e-4, format="csr", rng=0)
    >>> Z, fmap = sparse_rbf_features(X, 512, rank=50, gamma=0.5, rng=0)
    >>> Z.shape, fmap.transform(X[:3]).shape
    ((1000, 50), (3, 50))
    """
    X = _check_data(X)
    n, d = (int(s) for s in X.shape)
    D = _check_components(n_components)
    if rank is not None:
        try:
            rank = check_int("rank", rank, 1, min(n, D))
        except ValueError:
            raise ValueError(
                f"`rank` must be None or an int in [1, {min(n, D)}] (at most the number of points "
                f"n={n} and of features n_components={D}); got {rank!r}."
            ) from None
    m = D if sketch_size is None else check_int("sketch_size", sketch_size, 1)
    params = {name: value for name, value in (("gamma", gamma), ("bandwidth", bandwidth)) if value is not None}
    spec = make_kernel("rbf", d, params)
    rng = check_rng(rng)
    embedding = _sparse_embedding(d, m, min(_EMBEDDING_NNZ, m), rng) if m < d else None
    W, phase = _draw(spec, d if embedding is None else m, D, rng)
    fmap = FeatureMap("rbf", spec.params, W, d, embedding=embedding, phase=phase)
    Z = fmap._apply(X)
    if rank is None:
        return RandomFeatures(Z, fmap)
    fmap = dataclasses.replace(fmap, projection=_top_right_vectors(Z, rank))
    return RandomFeatures(Z @ _like(Z, fmap.projection), fmap)


# -- validation ----------------------------------------------------------------


def _check_components(n_components) -> int:
    ok = isinstance(n_components, numbers.Integral) and not isinstance(n_components, bool)
    if ok and n_components >= 1:
        return int(n_components)
    raise ValueError(f"`n_components` must be an int >= 1, the number of features; got {n_components!r}.")


def _fourier_kernel(kernel, n_features: int, params: dict) -> Kernel:
    """The kernel, if it is one whose spectral density we can draw from."""
    if callable(kernel) or (isinstance(kernel, str) and kernel in KERNELS and kernel not in FOURIER_KERNELS):
        what, arg = (repr(kernel), repr(kernel)) if isinstance(kernel, str) else ("a callable kernel", "f")
        raise ValueError(
            f"random Fourier features need a shift-invariant kernel with a known spectral density "
            f"(one of {', '.join(repr(k) for k in FOURIER_KERNELS)}); got {what}. For other kernels "
            f"use Nystrom: randla.nystrom(randla.kernel_operator(X, kernel={arg}), rank)."
        )
    return make_kernel(kernel, n_features, params)


def _check_data(X):
    """X as a 2-D floating array of points: dense, or SciPy sparse (CSR or CSC, as given)."""
    return check_points(X, "X", sparse_formats=("csr", "csc"))


# -- the computation -------------------------------------------------------------


def _draw(kernel: Kernel, dim: int, D: int, rng: np.random.Generator):
    """(frequencies (dim, ceil(D/2)), phase) for D features; the phase is None for
    an even D, whose draw is the frequencies alone."""
    W = _frequencies(kernel, dim, (D + 1) // 2, rng)
    return W, (float(rng.uniform(0.0, 2.0 * math.pi)) if D % 2 else None)


def _with_phase(xp, P, phase: float):
    """Features of projections P (n, h + 1) before the common scale sqrt(2/D): cos
    and sin of the first h columns, then cos(p + phase) of the last."""
    pairs = P[:, :-1]
    return xp.concat([xp.cos(pairs), xp.sin(pairs), xp.cos(P[:, -1:] + phase)], axis=1)


def _frequencies(kernel: Kernel, dim: int, half: int, rng: np.random.Generator) -> np.ndarray:
    """(dim, half) frequencies from the kernel's spectral density, float64."""
    p = kernel.params
    if kernel.name == "rbf":
        return rng.standard_normal((dim, half)) * math.sqrt(2.0 * p["gamma"])
    if kernel.name == "laplacian":
        return rng.standard_cauchy((dim, half)) * p["gamma"]
    nu = p["nu"]
    g = rng.standard_normal((dim, half))
    chi2 = rng.chisquare(2.0 * nu, size=half)
    return g * (np.sqrt(2.0 * nu / chi2) / p["length_scale"])


def _sparse_embedding(d: int, m: int, s: int, rng: np.random.Generator) -> sp.csr_array:
    """(d, m) sparse sign map: per row, one +-1/sqrt(s) in each of s column blocks.

    One entry per block keeps the s columns of a row distinct at O(d s)
    work and memory, whatever m.
    """
    index = np.int32 if d * s < 2**31 and m < 2**31 else np.int64
    edges = np.linspace(0, m, s + 1).astype(index)
    cols = rng.integers(0, np.diff(edges), size=(d, s), dtype=index)
    cols += edges[:-1]
    signs = rng.integers(0, 2, size=(d, s), dtype=np.int8).astype(bool)
    data = np.where(signs, 1.0 / math.sqrt(s), -1.0 / math.sqrt(s))
    indptr = np.arange(0, d * s + 1, s, dtype=index)
    return sp.csr_array((data.ravel(), cols.ravel(), indptr), shape=(d, m))


def _embed(X, S: sp.csr_array):
    """X S for X sparse (O(nnz(X) s)) or dense, in X's library and dtype."""
    if sp.issparse(X):
        return np.asarray((X @ S.astype(X.dtype, copy=False)).toarray())
    if is_numpy_array(X):
        return np.asarray(S.T.astype(X.dtype, copy=False) @ X.T).T
    if is_torch_array(X):
        import torch

        St = S.T.tocoo()
        idx = torch.as_tensor(np.vstack([St.row, St.col]).astype(np.int64), device=X.device)
        val = torch.as_tensor(St.data, dtype=X.dtype, device=X.device)
        # Built from a valid CSR matrix: the invariant checks would only cost time.
        St = torch.sparse_coo_tensor(idx, val, St.shape, dtype=X.dtype, device=X.device, check_invariants=False)
        return torch.sparse.mm(St, X.mT).mT
    return X @ _like(X, S.toarray())


def _top_right_vectors(Z, rank: int) -> np.ndarray:
    """(D, rank) top eigenvectors of Z^T Z, float64, signs fixed.

    Only the D x D Gram matrix leaves Z's device: its eigenvectors are Z's
    right singular vectors, which is all the projection needs.
    """
    G = np.asarray(to_numpy(Z.mT @ Z), dtype=np.float64)
    _, V = np.linalg.eigh((G + G.T) / 2)
    V = V[:, ::-1][:, :rank]
    # Largest entry of each column positive: the same result on every backend.
    signs = np.sign(V[np.argmax(np.abs(V), axis=0), np.arange(rank)])
    return V * np.where(signs == 0, 1.0, signs)


def _like(x, a: np.ndarray):
    """A host float64 array a in x's library, dtype and device."""
    if is_numpy_array(x):
        return a.astype(x.dtype, copy=False)
    return array_namespace(x).asarray(a, dtype=x.dtype, device=device_of(x))
