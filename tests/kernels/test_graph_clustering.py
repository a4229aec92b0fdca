"""Spectral clustering of graphs: nearest-neighbour and precomputed affinities, against exact eigenvectors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_blobs, make_circles, make_moons
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import kneighbors_graph
from sklearn.utils.estimator_checks import parametrize_with_checks

import randla

DATASETS = {
    "moons": lambda: make_moons(n_samples=1000, noise=0.05, random_state=0),
    "circles": lambda: make_circles(1000, factor=0.5, noise=0.05, random_state=0),
}
SPLIT = "ignore:the affinity graph has .* connected components:UserWarning"


def knn_affinity(X, k=10):
    C = kneighbors_graph(X, k, include_self=True)
    return sp.csr_array((C + C.T) * 0.5)


def exact_top(A, c):
    """Top c eigenpairs of D^-1/2 A D^-1/2 with A's diagonal left out, by LAPACK."""
    A = np.array(A.toarray() if sp.issparse(A) else A, dtype=np.float64)
    np.fill_diagonal(A, 0)
    s = 1 / np.sqrt(A.sum(axis=1))
    w, V = np.linalg.eigh(s[:, None] * A * s[None, :])
    return w[::-1][:c], V[:, ::-1][:, :c], w[::-1][c]


@pytest.mark.parametrize("name", DATASETS)
def test_nearest_neighbors_affinity_separates_moons_and_circles(name):
    X, truth = DATASETS[name]()
    # The rbf affinity of the default gamma cannot follow the curves: this is what the graph is for.
    rbf = randla.SpectralClustering(2, random_state=0).fit(X).labels_
    assert adjusted_rand_score(truth, rbf) < 0.5
    for seed in range(3):
        model = randla.SpectralClustering(2, affinity="nearest_neighbors", random_state=seed).fit(X)
        assert adjusted_rand_score(truth, model.labels_) >= 0.95
    A = model.affinity_matrix_
    assert sp.issparse(A) and A.shape == (1000, 1000) and abs(A - A.T).max() == 0
    assert A.nnz <= 2 * 10 * 1000 and len(model.landmark_indices_) == 0
    # The same graph given as the affinity, sparse or dense, gives the same clusters.
    for given in (A, A.toarray()):
        labels = randla.SpectralClustering(2, affinity="precomputed", random_state=seed).fit_predict(given)
        assert adjusted_rand_score(model.labels_, labels) == 1.0
        assert adjusted_rand_score(truth, labels) == adjusted_rand_score(truth, model.labels_)


def test_graph_embedding_is_the_exact_top_eigenspace():
    # Three blobs that touch through a few edges: a connected graph whose top
    # eigenvalues are distinct, so the eigenvectors themselves are defined.
    X, truth = make_blobs(600, centers=[(0, 0), (3, 0), (0, 3)], cluster_std=0.6, random_state=0)
    rng = np.random.default_rng(0)
    A = knn_affinity(X, 8)
    A.data *= rng.uniform(0.5, 1.5, A.nnz)  # weighted
    A = sp.csr_array((A + A.T) * 0.5)
    w, V, next_value = exact_top(A, 3)
    assert w[1] < 1 - 1e-4 and w[2] - next_value > 1e-2
    r = randla.graph_spectral_clustering(A, 3, rng=0)
    np.testing.assert_allclose(r.eigenvalues, w, rtol=0, atol=1e-10)
    rows = V / np.linalg.norm(V, axis=1, keepdims=True)  # the embedding is V's rows at unit length
    Q, _ = np.linalg.qr(rows)
    assert np.linalg.norm(r.embedding - Q @ (Q.T @ r.embedding)) <= 1e-8 * np.linalg.norm(r.embedding)
    assert adjusted_rand_score(truth, r.labels) > 0.98


def test_dense_and_sparse_affinities_agree_and_the_diagonal_is_left_out():
    X, _ = make_blobs(300, centers=3, random_state=1)
    A = knn_affinity(X, 6)
    plain = randla.graph_spectral_clustering(A, 3, rng=0)
    dense = randla.graph_spectral_clustering(A.toarray(), 3, rng=0)
    heavy_diagonal = sp.csr_array(A + 5 * sp.eye_array(300))
    looped = randla.graph_spectral_clustering(heavy_diagonal, 3, rng=0)
    for other in (dense, looped):
        np.testing.assert_allclose(other.eigenvalues, plain.eigenvalues, atol=1e-10)
        assert adjusted_rand_score(plain.labels, other.labels) == 1.0


def test_nothing_passed_is_changed():
    X, _ = make_blobs(200, centers=2, random_state=2)
    A = knn_affinity(X)
    A.setdiag(1.0)
    B = sp.coo_array(A)  # unsorted formats and duplicates are summed on a copy
    B = sp.coo_array((np.concatenate([B.data, [0.5]]), (np.append(B.row, 0), np.append(B.col, 0))), shape=B.shape)
    saved = [M.copy() for M in (A, B)]
    dense = A.toarray()
    dense_saved = dense.copy()
    for given in (A, B, dense):
        randla.graph_spectral_clustering(given, 2, rng=0)
        randla.SpectralClustering(2, affinity="precomputed", random_state=0).fit(given)
    for name in ("data", "indices", "indptr"):
        assert np.array_equal(getattr(A, name), getattr(saved[0], name))
    for name in ("data", "row", "col"):
        assert np.array_equal(getattr(B, name), getattr(saved[1], name))
    assert np.array_equal(dense, dense_saved)


def test_more_components_than_eigenvectors_warns_and_isolated_points_get_zero_rows():
    blocks = sp.block_diag([np.ones((20, 20))] * 3, format="csr")
    lone = sp.block_diag([blocks, sp.csr_array((2, 2))], format="csr")  # two points with no affinity
    with pytest.warns(UserWarning, match="5 connected components, 2 of them single points .* n_components=2"):
        r = randla.graph_spectral_clustering(lone, 2, rng=0)
    assert np.all(r.embedding[-2:] == 0)
    assert np.allclose(np.linalg.norm(r.embedding[:-2], axis=1), 1.0)
    # As many eigenvectors as components: each block is a cluster, no warning.
    r = randla.graph_spectral_clustering(blocks, 3, rng=0)
    assert adjusted_rand_score(np.repeat([0, 1, 2], 20), r.labels) == 1.0
    np.testing.assert_allclose(r.eigenvalues, 1.0, atol=1e-12)


@pytest.mark.parametrize(
    "affinity, match",
    [
        (np.ones((4, 5)), r"must be square, \(n, n\).*got shape \(4, 5\)"),
        (np.ones((3, 3, 3)), "must be square"),
        (np.zeros((0, 0)), "must be square"),
        (np.array([[0, -1.0], [-1.0, 0]]), "Negative values in data.*smallest entry is -1.0"),
        (np.array([[0, np.nan], [np.nan, 0]]), "NaN or Inf"),
        (np.array([[0, np.inf], [np.inf, 0]]), "NaN or Inf"),
        (np.array([[0, 1.0], [0.5, 0]]), r"must be symmetric.*differ by up to 0.5.*\(A \+ A.T\) / 2"),
        (sp.csr_array(np.ones((2, 3))), "must be square"),
        (sp.csr_array(np.array([[0, -2.0], [-2.0, 0]])), "Negative values in data"),
        (sp.csr_array(np.array([[0, np.nan], [np.nan, 0]])), "NaN or Inf"),
        (sp.csr_array(np.array([[0, 1.0], [0, 0]])), "must be symmetric"),
    ],
)
def test_bad_affinities_are_refused(affinity, match):
    with pytest.raises(ValueError, match=match):
        randla.graph_spectral_clustering(affinity, 1, rng=0)


def test_bad_affinity_through_the_estimator_and_non_numbers():
    with pytest.raises(ValueError, match="must be square"):
        randla.SpectralClustering(2, affinity="precomputed").fit(np.ones((5, 4)))
    with pytest.raises(ValueError, match="must be symmetric"):
        randla.SpectralClustering(2, affinity="precomputed").fit(np.triu(np.ones((5, 5))))
    with pytest.raises(ValueError, match="NaN"):
        randla.SpectralClustering(2, affinity="precomputed").fit(np.full((5, 5), np.nan))
    with pytest.raises(TypeError, match="real numbers"):
        randla.graph_spectral_clustering(np.full((3, 3), "a"), 1)
    with pytest.raises(ValueError, match="n_clusters=4"):
        randla.graph_spectral_clustering(np.ones((3, 3)), 4)


def test_estimator_parameters_of_the_graph_affinities():
    X, _ = make_blobs(60, centers=2, random_state=3)
    with pytest.raises(ValueError, match="`gamma` applies to kernel affinities; affinity='nearest_neighbors'"):
        randla.SpectralClustering(2, affinity="nearest_neighbors", gamma=1.0).fit(X)
    with pytest.raises(ValueError, match="`kernel_params` applies to kernel affinities; affinity='precomputed'"):
        randla.SpectralClustering(2, affinity="precomputed", kernel_params={"nu": 1.5}).fit(np.eye(3))
    with pytest.raises(ValueError, match=r"`n_neighbors`=61 must be at most n_samples=60"):
        randla.SpectralClustering(2, affinity="nearest_neighbors", n_neighbors=61).fit(X)
    with pytest.raises(ValueError, match="give affinity='nearest_neighbors' or kernel='laplacian', not both"):
        randla.SpectralClustering(2, affinity="nearest_neighbors", kernel="laplacian").fit(X)
    with pytest.raises(ValueError, match="'precomputed' is not a kernel; pass affinity='precomputed'"):
        randla.SpectralClustering(2, kernel="precomputed").fit(X)
    # `kernel`, the earlier name of a kernel affinity, still names it.
    by_kernel = randla.SpectralClustering(2, kernel="laplacian", n_landmarks=30, random_state=0).fit(X)
    by_affinity = randla.SpectralClustering(2, affinity="laplacian", n_landmarks=30, random_state=0).fit(X)
    np.testing.assert_array_equal(by_kernel.labels_, by_affinity.labels_)
    np.testing.assert_array_equal(by_kernel.embedding_, by_affinity.embedding_)
    assert not hasattr(by_affinity, "affinity_matrix_")
    # More neighbours, a denser graph: n_neighbors reaches kneighbors_graph.
    with pytest.warns(UserWarning, match="has 5 connected components"):  # 3 neighbours split the blobs
        few = randla.SpectralClustering(2, affinity="nearest_neighbors", n_neighbors=3).fit(X).affinity_matrix_
    many = randla.SpectralClustering(2, affinity="nearest_neighbors", n_neighbors=12).fit(X).affinity_matrix_
    assert few.nnz < many.nnz and abs(few - knn_affinity(X, 3)).max() == 0


def precomputed_expected_failures(estimator):
    if estimator.affinity == "precomputed":
        return {"check_clustering": "scikit-learn's check fits 2-D points, not the square affinity the "
                                    "pairwise tag asks for"}
    return {}


@parametrize_with_checks(
    [
        randla.SpectralClustering(n_clusters=3, affinity="nearest_neighbors", random_state=0),
        randla.SpectralClustering(n_clusters=3, affinity="precomputed", random_state=0),
    ],
    expected_failed_checks=precomputed_expected_failures,
)
@pytest.mark.filterwarnings(SPLIT)
def test_sklearn_conventions(estimator, check):
    check(estimator)


def test_half_precision_torch_affinity():
    """NumPy has no bfloat16: the affinity is read in double."""
    torch = pytest.importorskip("torch")
    points, _ = make_blobs(90, centers=3, cluster_std=0.3, random_state=0)
    A = np.exp(-np.square(points[:, None] - points[None]).sum(-1) / 2)
    expected = randla.graph_spectral_clustering(A, 3, rng=0).labels
    for dtype in (torch.bfloat16, torch.float16):
        labels = randla.graph_spectral_clustering(torch.from_numpy(A).to(dtype), 3, rng=0).labels
        assert adjusted_rand_score(labels, expected) == 1.0
