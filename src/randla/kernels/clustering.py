"""Spectral clustering with a Nyström kernel: the classic use of Nyström.

Exact spectral clustering needs the top eigenvectors of the n x n normalised
affinity matrix D^{-1/2} K D^{-1/2}. With a Nyström factor K ~ F F^T of m
landmark columns (Fowlkes, Belongie, Chung & Malik 2004), the degrees are
D ~ F (F^T 1) and the normalised matrix is G G^T with G = D^{-1/2} F, whose
top eigenvectors are the left singular vectors of the n x m matrix G: the
work is O(n m^2) and K is never formed.

:func:`graph_spectral_clustering` takes the affinity as a matrix instead, a
sparse graph (k nearest neighbours) or a dense one, and finds the same
embedding from it directly.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from array_api_compat import array_namespace, is_torch_array

from .._results import Unpackable
from .._validate import check_choice, check_int, check_rng
from ..backend import small_svd, to_numpy
from ..operators import Operator
from .landmarks import METHODS
from .landmarks import landmarks as select_landmarks
from .operator import DEFAULT_MEMORY_LIMIT, kernel_operator

__all__ = ["spectral_clustering", "graph_spectral_clustering", "SpectralClusteringResult"]

#: sigma of the shift-inverted operator ((1 + sigma) I - N)^{-1}, which maps
#: N's eigenvalue 1 to 1 / sigma and 1 - delta to 1 / (delta + sigma).
_SHIFT = 1e-8


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
        Indices of the landmark points (none for :func:`graph_spectral_clustering`).
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
    rng : None, int, SeedSequence, BitGenerator or Generator
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
    landmarks = check_choice("landmarks", landmarks, METHODS)  # randla.landmarks would call it `method`
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
    labels = _best_kmeans(embedding, k, n_init, gen)
    return SpectralClusteringResult(labels, embedding, s[:c] ** 2, np.asarray(chosen.indices))


def graph_spectral_clustering(
    affinity,
    n_clusters: int,
    *,
    n_components: int | None = None,
    n_init: int = 10,
    rng=None,
) -> SpectralClusteringResult:
    """Cluster the nodes of a weighted graph by the spectrum of its normalised affinity.

    Parameters
    ----------
    affinity : array or SciPy sparse matrix, shape (n, n)
        Symmetric, non-negative affinities between the n points: a sparse
        graph, such as the symmetrised k-nearest-neighbour connectivity
        scikit-learn's ``kneighbors_graph`` makes (never densified), or a
        dense matrix. The diagonal (self-affinity) is left out, as
        scikit-learn's ``spectral_embedding`` leaves it out.
    n_clusters : int
        Number of clusters, at least 1 and at most n.
    n_components : int, optional
        Eigenvectors in the embedding; default ``n_clusters``.
    n_init : int, default 10
        k-means restarts on the embedding; the best is kept.
    rng : None, int, SeedSequence, BitGenerator or Generator
        Seeds the eigensolver's sketch and k-means.

    Returns
    -------
    SpectralClusteringResult
        Unpacks as ``labels, embedding``; ``eigenvalues`` are the top ones of
        the normalised affinity (at most 1), ``landmarks`` is empty.

    Raises
    ------
    ValueError
        An affinity that is not square, has NaN, Inf or negative entries, or
        is not symmetric; ``n_clusters`` outside [1, n].
    TypeError
        An affinity that is not a matrix of real numbers.

    Warns
    -----
    UserWarning
        When the graph has more connected components than ``n_components``
        (points with no affinity to any other among them): the top eigenspace
        then holds one indicator per component, and which components share a
        cluster is arbitrary.

    Notes
    -----
    The embedding of :func:`spectral_clustering`: the top ``n_components``
    eigenvectors of N = D^{-1/2} A D^{-1/2} (D the degrees, A off its
    diagonal), rows scaled to unit length, then k-means (Ng, Jordan & Weiss
    2001). They are found by :func:`randla.eigh` on the shift-inverted
    operator ((1 + sigma) I - N)^{-1}, sigma = 1e-8, applied by one sparse LU
    factorisation of the graph (SuperLU, minimum degree ordering on the
    symmetric pattern; dense Cholesky for a dense affinity), as
    scikit-learn's default ARPACK solver factors its shifted Laplacian. It
    maps eigenvalue 1 - delta of N to 1 / (delta + sigma), which separates
    what N itself crowds together: a k-nearest-neighbour graph of points
    along curves has eigenvalues within 1e-3 of 1 (make_moons(1000,
    noise=0.05), 10 neighbours: 1, 1, 0.99972, 0.99958, ...; closer still as
    n grows), where subspace iteration on N converges at the rate of their
    ratio per pass: with 32 columns, 50 passes missed the two moons at
    n = 5000 (adjusted Rand index 0.02) and 200 passes at n = 20000 (0.76).
    Randomized subspace iteration on the inverse converges in its default
    passes (1.0 at n = 20000, in 1.2 s). The factorisation's fill-in is small
    for graphs of low-dimensional points and larger for high-dimensional
    ones (42 times nnz(A) for 20000 points of 50 dimensions: 7 s).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp, randla
    >>> path = sp.diags_array([np.ones(99), np.ones(99)], offsets=[-1, 1]).tolil()
    >>> path[49, 50] = path[50, 49] = 0       # two chains of 50 points
    >>> labels, _ = randla.graph_spectral_clustering(path.tocsr(), 2, rng=0)
    >>> np.bincount(labels).tolist()
    [50, 50]
    """
    from ..eigh import eigh

    A = _check_affinity(affinity)
    n = A.shape[0]
    k = check_int("n_clusters", n_clusters, 1)
    if k > n:
        raise ValueError(f"n_samples={n} should be >= n_clusters={k}: every cluster needs a point.")
    c = k if n_components is None else check_int("n_components", n_components, 1, n)
    n_init = check_int("n_init", n_init, 1)
    gen = check_rng(rng)
    A = _off_diagonal(A)
    degrees = np.asarray(A.sum(axis=1), dtype=np.float64).ravel()
    _warn_if_split(A, c, int(np.sum(degrees == 0)))
    inverse_sqrt = np.divide(1.0, np.sqrt(degrees), out=np.zeros(n), where=degrees > 0)
    if sp.issparse(A):
        N = sp.csr_array(sp.diags_array(inverse_sqrt) @ A @ sp.diags_array(inverse_sqrt))
    else:
        N = inverse_sqrt[:, None] * A * inverse_sqrt[None, :]
    mu, V = eigh(_ShiftInverted(N, _SHIFT), c, rng=gen)
    V = np.asarray(V)
    V[degrees == 0] = 0  # no affinity, no information: rows of rounding would be scaled to unit length
    embedding = _unit_rows(V)
    labels = _best_kmeans(embedding, k, n_init, gen)
    eigenvalues = np.minimum(1.0 + _SHIFT - 1.0 / np.asarray(mu, dtype=np.float64), 1.0)
    return SpectralClusteringResult(labels, embedding, eigenvalues, np.zeros(0, dtype=np.int64))


def nearest_neighbour_graph(X, n_neighbors: int = 10):
    """(C + C^T) / 2 for the k-nearest-neighbour connectivity C of the points X (each point
    among its own neighbours): the sparse affinity scikit-learn's SpectralClustering builds."""
    from sklearn.neighbors import kneighbors_graph

    k = check_int("n_neighbors", n_neighbors, 1)
    if k > X.shape[0]:
        raise ValueError(
            f"`n_neighbors`={k} must be at most n_samples={X.shape[0]}: each point's neighbours are points "
            "of X (itself among them)."
        )
    C = sp.csr_array(kneighbors_graph(X, n_neighbors=k, include_self=True))
    return sp.csr_array((C + C.T) * 0.5)


class _ShiftInverted(Operator):
    """((1 + shift) I - N)^{-1} of a normalised affinity N, whose eigenvalues lie in
    [-1, 1]: symmetric positive definite, applied by one factorisation."""

    hermitian = True

    def __init__(self, N, shift: float):
        from scipy.linalg import cho_factor, cho_solve
        from scipy.sparse.linalg import splu

        n = N.shape[0]
        self.shape = (n, n)
        self.xp = array_namespace(np.empty(0))
        self.dtype = self.input_dtype = np.dtype(np.float64)
        if sp.issparse(N):
            M = sp.csc_array(sp.identity(n, format="csc") * (1.0 + shift) - N)
            # Minimum degree on the pattern of M + M^T, with diagonal pivots: the
            # ordering for a symmetric matrix (the default, COLAMD, filled 3.6x more
            # on 20000 points of 50 dimensions and took 6x longer).
            self._solve = splu(M, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True}).solve
        else:
            M = -N
            M[np.diag_indices(n)] += 1.0 + shift
            factor = cho_factor(M, check_finite=False)
            self._solve = lambda B: cho_solve(factor, B, check_finite=False)

    def matmat(self, X):
        return self._solve(np.ascontiguousarray(X, dtype=np.float64))

    def rmatmat(self, Y):
        return self.matmat(Y)


def _check_affinity(A):
    """A as a symmetric, non-negative float64 matrix (CSR, or a NumPy array), a new one."""
    sparse = sp.issparse(A)
    if is_torch_array(A) and A.is_floating_point() and str(A.layout) == "torch.strided":
        A = A.detach().cpu().double()  # NumPy has no bfloat16; a copy in double, as the affinity is used
    A = A if sparse else np.asarray(A)
    if A.dtype.kind not in "biuf":
        raise TypeError(f"the affinity matrix must hold real numbers; got dtype {A.dtype}.")
    if len(A.shape) != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(
            f"the affinity matrix must be square, (n, n) for n points, with one row and column per point; "
            f"got shape {tuple(A.shape)}."
        )
    eps = np.finfo(A.dtype if A.dtype.kind == "f" else np.float64).eps
    if sparse:
        A = sp.csr_array(A, dtype=np.float64, copy=True)
        A.sum_duplicates()
    else:
        A = np.array(A, dtype=np.float64)
    values = A.data if sparse else A
    if not np.all(np.isfinite(values)):
        raise ValueError("the affinity matrix contains NaN or Inf; every affinity must be a finite number >= 0.")
    if values.size and values.min() < 0:
        raise ValueError(
            "Negative values in data: the affinity matrix must be non-negative (similarities, 0 for none); "
            f"its smallest entry is {float(values.min())!r}. For distances, pass a similarity such as "
            "exp(-gamma * distance**2)."
        )
    scale = float(values.max()) if values.size else 0.0
    gap = abs(A - A.T).max()
    if gap > math.sqrt(eps) * scale:  # what rounding leaves of a symmetric formula, with room
        raise ValueError(
            f"the affinity matrix must be symmetric; A[i, j] and A[j, i] differ by up to {float(gap)!r}. A "
            "directed graph (such as a k-nearest-neighbour connectivity matrix) can be symmetrised: "
            "pass (A + A.T) / 2."
        )
    return (A + A.T) / 2  # symmetric to the last bit, for the eigensolver


def _off_diagonal(A):
    """A with its diagonal set to 0 (self-affinities carry no link between points)."""
    if sp.issparse(A):
        A = sp.csr_array(A - sp.diags_array(A.diagonal()))
        A.eliminate_zeros()
        return A
    np.fill_diagonal(A, 0.0)  # A is ours: _check_affinity made it
    return A


def _warn_if_split(A, n_components: int, isolated: int):
    from scipy.sparse.csgraph import connected_components

    count = connected_components(A, directed=False)[0]
    if count > n_components:
        alone = f", {isolated} of them single points with no affinity to any other" if isolated else ""
        warnings.warn(
            f"the affinity graph has {count} connected components{alone}, more than the "
            f"n_components={n_components} eigenvectors: each component is an eigenvector of eigenvalue 1, and "
            "which of them share a cluster is arbitrary. Connect the graph (more neighbours, a wider kernel) "
            "or ask for as many components.",
            UserWarning,
            stacklevel=3,
        )


def _best_kmeans(embedding: np.ndarray, k: int, n_init: int, gen: np.random.Generator) -> np.ndarray:
    """Labels of the k-means run of least inertia among ``n_init``."""
    best, best_inertia = None, np.inf
    for _ in range(n_init):
        labels, inertia = _kmeans(embedding, k, gen)
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best.astype(np.int64)


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
