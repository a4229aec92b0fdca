"""Spectral clustering as a scikit-learn estimator: by a kernel (Nyström), a
nearest-neighbour graph or a given affinity."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import validate_data

from .._validate import check_int
from ..kernels.clustering import graph_spectral_clustering, nearest_neighbour_graph, spectral_clustering
from ._common import _check_landmarks, _random_seed
from .kernels import _input_tags, _kernel_params

__all__ = ["SpectralClustering"]

#: Affinities given as, or built into, a graph rather than by a kernel.
GRAPH_AFFINITIES = ("nearest_neighbors", "precomputed")


class SpectralClustering(ClusterMixin, BaseEstimator):
    """Spectral clustering of points by a kernel or a nearest-neighbour graph, or of a given affinity.

    A shell over :func:`randla.spectral_clustering` for kernel affinities:
    a Nyström approximation from n m kernel evaluations and O(n m^2) work
    instead of an n x n affinity matrix; and over
    :func:`randla.graph_spectral_clustering` for a sparse k-nearest-neighbour
    graph or a precomputed affinity, whose embedding comes from the matrix
    itself.

    Parameters
    ----------
    n_clusters : int, default 8
    affinity : str or callable, default "rbf"
        ``"nearest_neighbors"``: the symmetrised connectivity graph of each
        point's ``n_neighbors`` nearest neighbours (scikit-learn's
        ``kneighbors_graph``, itself included, then (C + C^T) / 2), sparse.
        ``"precomputed"``: X is the (n, n) affinity matrix itself, dense or
        SciPy sparse, symmetric and non-negative. Otherwise a kernel of
        :class:`Nystroem` (name or callable), which must be non-negative:
        ``"rbf"``, ``"laplacian"``, ``"chi2"``, ...
    kernel : str or callable, optional
        A kernel affinity under the name :class:`Nystroem` and
        :class:`KernelRidge` give it; give ``affinity`` or ``kernel``, not both.
    gamma, kernel_params
        Parameters of a kernel affinity, as in :class:`Nystroem`. The
        default ``gamma`` is 1 / n_features, where scikit-learn's
        ``SpectralClustering`` takes 1.0: pass ``gamma=1.0`` for its
        affinity. The graph affinities take neither.
    n_neighbors : int, default 10
        Neighbours of each point in the ``"nearest_neighbors"`` graph (the
        point itself counted, as scikit-learn counts it); other affinities
        ignore it, as scikit-learn's do.
    n_components : int, optional
        Eigenvectors in the embedding, as in scikit-learn; default
        ``n_clusters``.
    n_landmarks : int, default 200
        Landmarks m of a kernel affinity (capped at n_samples; raised to
        ``n_components``, with a warning, as the eigenvectors come from an
        approximation of rank m).
    landmarks : str, default "rpcholesky"
        Landmark selection of a kernel affinity.
    n_init : int, default 10
        k-means restarts.
    random_state : None, int or RandomState

    Attributes
    ----------
    labels_ : ndarray (n,)
    embedding_ : ndarray (n, n_components)
    landmark_indices_ : ndarray (m,)
        Empty for the graph affinities.
    affinity_matrix_ : scipy.sparse.csr_array or ndarray (n, n)
        The ``"nearest_neighbors"`` graph, or the precomputed affinity
        (X as given); not set for kernel affinities, whose matrix is never
        formed.

    Examples
    --------
    >>> import numpy as np, randla
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(0, 0.3, (150, 2)), rng.normal(4, 0.3, (50, 2))])
    >>> labels = randla.SpectralClustering(2, n_landmarks=40, random_state=0).fit_predict(X)
    >>> sorted(np.bincount(labels).tolist())
    [50, 150]
    >>> from sklearn.datasets import make_moons
    >>> X, y = make_moons(500, noise=0.05, random_state=0)
    >>> model = randla.SpectralClustering(2, affinity="nearest_neighbors", random_state=0).fit(X)
    >>> from sklearn.metrics import adjusted_rand_score
    >>> adjusted_rand_score(y, model.labels_)
    1.0
    """

    def __init__(self, n_clusters=8, *, affinity="rbf", kernel=None, gamma=None, kernel_params=None,
                 n_neighbors=10, n_components=None, n_landmarks=200, landmarks="rpcholesky", n_init=10,
                 random_state=None):
        self.n_clusters = n_clusters
        self.affinity = affinity
        self.kernel = kernel
        self.gamma = gamma
        self.kernel_params = kernel_params
        self.n_neighbors = n_neighbors
        self.n_components = n_components
        self.n_landmarks = n_landmarks
        self.landmarks = landmarks
        self.n_init = n_init
        self.random_state = random_state

    degree = coef0 = None  # not parameters: the affinity must be non-negative

    def fit(self, X, y=None):
        affinity = self._affinity()
        if _is_graph(affinity):
            return self._fit_graph(X, affinity)
        X = validate_data(self, X, accept_sparse="csr", dtype=[np.float64, np.float32])
        k = check_int("n_clusters", self.n_clusters, 1)
        c = k if self.n_components is None else check_int("n_components", self.n_components, 1)
        m = min(check_int("n_landmarks", self.n_landmarks, 1), X.shape[0])
        landmarks = _check_landmarks(self.landmarks)
        if m < min(c, X.shape[0]):
            warnings.warn(
                f"n_landmarks={m} < n_components={c}: using {c} landmarks, as the embedding takes "
                f"{c} eigenvectors.",
                UserWarning,
                stacklevel=2,
            )
            m = c
        result = spectral_clustering(
            X, self.n_clusters, kernel=affinity, n_components=self.n_components, n_landmarks=m,
            landmarks=landmarks,
            n_init=self.n_init, rng=_random_seed(self.random_state), **_kernel_params(self, affinity),
        )
        self.labels_ = result.labels
        self.embedding_ = result.embedding
        self.landmark_indices_ = result.landmarks
        # A graph affinity fitted before left its matrix: it describes other data.
        self.__dict__.pop("affinity_matrix_", None)
        return self

    def _affinity(self):
        """The affinity asked for: ``affinity``, or the kernel named by ``kernel``."""
        if self.kernel is None:
            return self.affinity
        if not (isinstance(self.affinity, str) and self.affinity == "rbf"):
            raise ValueError(
                f"`kernel` is another name for a kernel affinity; give affinity={self.affinity!r} or "
                f"kernel={self.kernel!r}, not both."
            )
        if _is_graph(self.kernel):
            raise ValueError(f"{self.kernel!r} is not a kernel; pass affinity={self.kernel!r}.")
        return self.kernel

    def _fit_graph(self, X, affinity: str):
        given = [name for name in ("gamma", "kernel_params") if getattr(self, name) is not None]
        if given:
            raise ValueError(
                f"`{given[0]}` applies to kernel affinities; affinity={affinity!r} takes none"
                + (" (n_neighbors sets the graph)." if affinity == "nearest_neighbors" else ".")
            )
        if affinity == "precomputed":
            A = validate_data(self, X, accept_sparse=("csr", "csc", "coo"), dtype=[np.float64, np.float32])
        else:
            X = validate_data(self, X, accept_sparse="csr", dtype=[np.float64, np.float32])
            A = nearest_neighbour_graph(X, self.n_neighbors)
        result = graph_spectral_clustering(A, self.n_clusters, n_components=self.n_components,
                                           n_init=self.n_init, rng=_random_seed(self.random_state))
        self.labels_ = result.labels
        self.embedding_ = result.embedding
        self.landmark_indices_ = result.landmarks
        self.affinity_matrix_ = A
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        affinity = self.affinity if self.kernel is None else self.kernel
        if isinstance(affinity, str) and affinity == "precomputed":
            tags.input_tags.pairwise = True
            tags.input_tags.positive_only = True
            tags.input_tags.sparse = True
            return tags
        if isinstance(affinity, str) and affinity == "nearest_neighbors":
            tags.input_tags.sparse = True
            return tags
        return _input_tags(tags, affinity)


def _is_graph(affinity) -> bool:
    return isinstance(affinity, str) and affinity in GRAPH_AFFINITIES
