"""Spectral clustering with a Nyström kernel: the classic use of Nyström.

Exact spectral clustering needs the top eigenvectors of the n x n normalised
affinity matrix D^{-1/2} K D^{-1/2}. With a Nyström factor K ~ F F^T of m
landmark columns (Fowlkes, Belongie, Chung & Malik 2004), the degrees are
D ~ F (F^T 1) and the normalised matrix is G G^T with G = D^{-1/2} F, whose
top eigenvectors are the left singular vectors of the n x m matrix G: the
work is O(n m^2) and K is never formed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .._results import Unpackable
from .._validate import check_int, check_rng
from ..backend import small_svd, to_numpy
from .landmarks import landmarks as select_landmarks
from .operator import DEFAULT_MEMORY_LIMIT, kernel_operator

__all__ = ["spectral_clustering", "SpectralClusteringResult"]


@dataclass(frozen=True)
class SpectralClusteringResult(Unpackable):
    """Unpacks as ``labels, embedding``.

    Attributes
    ----------
    labels : ndarray of int, shape (n,)
        Cluster of each point, in 0 .. n_clusters - 1.
    embedding : ndarray, shape (n, n_components)
        Row-normalised spectral embedding the labels were found in.
    eigenvalues : ndarray, shape (n_components,)
        Top eigenvalues of the approximate normalised affinity (at most 1).
    landmarks : ndarray of int
        Indices of the landmark points.
    """

    labels: np.ndarray
    embedding: np.ndarray
    eigenvalues: np.ndarray
    landmarks: np.ndarray

    _unpack = ("labels", "embedding")


def spectral_clustering(
    X,
    n_clusters: int,
    *,
    kernel="rbf",
    n_components: int | None = None,
    n_landmarks: int = 200,
    landmarks: str = "rpcholesky",
    n_init: int = 10,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    rng=None,
    **kernel_params,
) -> SpectralClusteringResult:
    """Cluster points by the spectrum of a Nyström-approximated kernel.

    Parameters
    ----------
    X : array, shape (n, d)
        Points (NumPy or torch).
    n_clusters : int
        Number of clusters, at least 1 and at most n.
    kernel, **kernel_params
        The affinity, as in :func:`randla.kernel_operator` (an ``"rbf"``
        kernel by default); it must be non-negative for the degrees to be
        meaningful.
    n_components : int, optional
        Eigenvectors in the embedding, as in scikit-learn's
        ``SpectralClustering``; default ``n_clusters``.
    n_landmarks : int, default 200
        Number of landmark columns m of the Nyström factor (capped at n), at
        least ``n_components``: the eigenvectors come from an approximation
        of rank m.
    landmarks : str, default "rpcholesky"
        Landmark selection method of :func:`randla.landmarks`.
    n_init : int, default 10
        k-means restarts on the embedding; the best is kept.
    memory_limit : int
        Bytes for kernel blocks, as in :func:`randla.kernel_operator`.
    rng : None, int or numpy Generator
        Seeds landmark selection and k-means.

    Returns
    -------
    SpectralClusteringResult
        Unpacks as ``labels, embedding``.

    Raises
    ------
    ValueError
        When some approximate degrees are <= 0 even with the exact residual
        diagonal added back (see Notes): a kernel with negative values, or
        too few landmarks for the bandwidth.

    Warns
    -----
    UserWarning
        When the kernel matrix has numerical rank below ``n_components``
        (duplicate points, or a bandwidth too wide for the data): the
        embedding's last columns are then 0, and with the default
        ``n_components`` fewer than ``n_clusters`` clusters can be told
        apart; some labels may go unused.
    UserWarning
        When some points have no affinity to any landmark (a bandwidth too
        narrow for ``n_landmarks``): their embedding rows are 0 and their
        labels arbitrary.

    Notes
    -----
    The embedding is that of Ng, Jordan & Weiss (2001): the top
    ``n_components`` eigenvectors of D^{-1/2} K D^{-1/2}, rows scaled to unit
    length, then k-means (Lloyd's iterations from k-means++ seeding). With
    the Nyström factor of Fowlkes et al. (2004) this costs n m kernel
    evaluations and O(n m^2) arithmetic. The degrees are those of the
    approximation, F (F^T 1); where the factor leaves a point a degree <= 0
    (no affinity to any landmark, as at a narrow bandwidth), the exact
    residual diagonal k(x, x) - ||F_i||^2 is added back, as the point's exact
    degree is at least k(x, x) > 0 for a non-negative kernel.

    Examples
    --------
    >>> import numpy as np, randla
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(0, 0.3, (200, 2)), rng.normal(3, 0.3, (100, 2))])
    >>> labels, _ = randla.spectral_clustering(X, 2, n_landmarks=50, rng=0)
    >>> sorted(np.bincount(labels).tolist())
    [100, 200]
    """
    K = kernel_operator(X, kernel=kernel, memory_limit=memory_limit, **kernel_params)
    n = K.shape[0]
    k = check_int("n_clusters", n_clusters, 1)
    if k > n:
        raise ValueError(f"n_samples={n} should be >= n_clusters={k}: every cluster needs a point.")
    c = k if n_components is None else check_int("n_components", n_components, 1, n)
    if check_int("n_landmarks", n_landmarks, 1) < c:
        raise ValueError(
            f"`n_landmarks`={n_landmarks} must be at least n_components={c}: the embedding takes "
            f"{c} eigenvectors from an approximation of rank n_landmarks."
        )
    m = min(n_landmarks, n)
    n_init = check_int("n_init", n_init, 1)
    gen = check_rng(rng)
    isolated = np.flatnonzero(np.asarray(to_numpy(K.diagonal())) <= 0)
    if isolated.size:
        raise ValueError(
            f"{isolated.size} of the {n} points have k(x, x) = 0 under the {K.kernel.name!r} kernel (zero "
            "vectors, such as empty documents, for 'cosine' and 'linear'): similar to no point, not even "
            f"themselves, they belong to no cluster. Remove them first (rows {isolated[:5].tolist()}"
            f"{', ...' if isolated.size > 5 else ''})."
        )
    chosen = select_landmarks(K, m, method=landmarks, rng=gen)
    F = np.asarray(to_numpy(chosen.factor), dtype=np.float64)
    degrees = _degrees(K, F)
    if not np.all(degrees > 0):
        count = int(np.sum(~(degrees > 0)))
        if K.kernel.unit_diagonal:  # a non-negative kernel: the approximation is at fault
            raise ValueError(
                f"spectral clustering needs positive degrees (row sums of the kernel); the Nystrom "
                f"approximation with {F.shape[1]} landmarks gives {count} of the {n} points a degree <= 0, "
                f"although the {K.kernel.name!r} kernel is non-negative. Use more landmarks "
                "(`n_landmarks`) or a wider bandwidth (a smaller `gamma`)."
            )
        raise ValueError(
            f"spectral clustering needs positive degrees (row sums of the kernel); the "
            f"{K.kernel.name!r} kernel gives {count} of the {n} points a degree <= 0: it takes negative "
            f"values, or its Nystrom approximation with {F.shape[1]} landmarks is too coarse. Use a "
            "non-negative kernel such as 'rbf' or 'laplacian', or more landmarks (`n_landmarks`)."
        )
    unseen_rows = ~np.any(F != 0, axis=1)
    unseen = int(np.sum(unseen_rows))
    if unseen:
        warnings.warn(
            f"{unseen} of the {n} points have no affinity to any of the {F.shape[1]} landmarks (their "
            "kernel values to all of them are 0): their labels are arbitrary. Use more landmarks "
            "(`n_landmarks`) or a wider bandwidth (a smaller `gamma`).",
            UserWarning,
            stacklevel=2,
        )
    G = F / np.sqrt(degrees)[:, None]
    U, s, _ = small_svd(np, G)
    if s.size < c:
        warnings.warn(
            f"the kernel matrix has numerical rank {s.size} < n_components={c} (duplicate points, or a "
            f"bandwidth too wide for the data): the embedding's last {c - s.size} columns are 0"
            + (f" and only {s.size} of the {k} clusters can be told apart; some labels may go unused."
               if s.size < k else "."),
            UserWarning,
            stacklevel=2,
        )
        U, s = np.pad(U, ((0, 0), (0, c - s.size))), np.pad(s, (0, c - s.size))
    U[unseen_rows] = 0  # the SVD's rounding there is no information; it would be scaled to unit length
    embedding = _unit_rows(U[:, :c])
    best, best_inertia = None, np.inf
    for _ in range(n_init):
        labels, inertia = _kmeans(embedding, k, gen)
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return SpectralClusteringResult(best.astype(np.int64), embedding, s[:c] ** 2, np.asarray(chosen.indices))


def _degrees(K, F) -> np.ndarray:
    """Degrees K 1 from the Nystrom factor K ~ F F^T: F (F^T 1), as Fowlkes et al. (2004).

    These are the exact degrees of the affinity F F^T whose eigenvectors are
    taken, so every cluster it separates keeps eigenvalue 1; the residual
    K - F F^T is left out of the degrees (adding its diagonal to all of them
    mixes clusters at narrow bandwidths). A point the factor barely
    reaches, with no affinity to any landmark (F_i = 0) or an approximate
    degree <= 0, is the exception: its exact degree is at least k(x_i, x_i) > 0
    for a non-negative kernel, and there the exact residual diagonal
    diag(K) - rowsum(F^2) >= 0, known in O(n d), is added back.
    """
    degrees = F @ (F.T @ np.ones(F.shape[0]))
    lost = ~(degrees > 0)
    if lost.any():
        diagonal = np.asarray(to_numpy(K.diagonal()), dtype=np.float64)[lost]
        degrees[lost] += np.maximum(diagonal - np.einsum("ij,ij->i", F[lost], F[lost]), 0.0)
    return degrees


def _unit_rows(E: np.ndarray) -> np.ndarray:
    """E with every nonzero row scaled to unit length; zero rows stay zero.

    Rows are first divided by their largest entry: a poorly connected point's
    row can be 1e-160 small, and its squares would underflow to 0.
    """
    peak = np.max(np.abs(E), axis=1, keepdims=True)
    E = np.divide(E, peak, out=np.zeros_like(E), where=peak > 0)
    norm = np.linalg.norm(E, axis=1, keepdims=True)
    return E / np.where(norm > 0, norm, 1.0)


def _kmeans(P, k: int, rng: np.random.Generator, max_iter: int = 100):
    """Lloyd's k-means from k-means++ seeding (Arthur & Vassilvitskii 2007).

    Returns (labels, inertia). Robust to repeated points: when every point
    already sits on a centre, seeds are drawn uniformly, and an emptied
    cluster is re-seeded at the point farthest from its centre.
    """
    centres = np.empty((k, P.shape[1]))
    centres[0] = P[rng.integers(len(P))]
    d2 = np.sum((P - centres[0]) ** 2, axis=1)
    for j in range(1, k):
        total = d2.sum()
        i = rng.choice(len(P), p=d2 / total) if total > 0 else rng.integers(len(P))
        centres[j] = P[i]
        d2 = np.minimum(d2, np.sum((P - centres[j]) ** 2, axis=1))
    labels = None
    for _ in range(max_iter):
        dist = np.sum(P**2, axis=1)[:, None] - 2 * P @ centres.T + np.sum(centres**2, axis=1)[None, :]
        new = np.argmin(dist, axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = labels == j
            if members.any():
                centres[j] = P[members].mean(axis=0)
            else:
                far = int(np.argmax(np.sum((P - centres[labels]) ** 2, axis=1)))
                centres[j], labels[far] = P[far], j
    inertia = float(np.sum((P - centres[labels]) ** 2))
    return labels, inertia
