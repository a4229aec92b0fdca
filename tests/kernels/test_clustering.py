"""Nystrom spectral clustering against planted clusters and exact spectral clustering."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from sklearn.metrics.pairwise import rbf_kernel

import randla


def test_recovers_planted_clusters():
    data = randla.testing.clustered(2000, 2, 6, imbalance=8.0, rng=1)
    labels, embedding = randla.spectral_clustering(data.X, 6, gamma=1.0, n_landmarks=120, rng=0)
    assert adjusted_rand_score(data.labels, labels) > 0.99
    assert embedding.shape == (2000, 6)
    assert np.allclose(np.linalg.norm(embedding, axis=1), 1.0)


def test_eigenvalues_match_the_exact_normalised_affinity():
    X = randla.testing.clustered(500, 2, 4, imbalance=3.0, rng=2).X
    K = rbf_kernel(X, gamma=1.0)
    d = K.sum(axis=1)
    exact = np.linalg.eigvalsh(K / np.sqrt(np.outer(d, d)))[::-1][:4]
    r = randla.spectral_clustering(X, 4, gamma=1.0, n_landmarks=150, rng=0)
    assert np.allclose(r.eigenvalues, exact, atol=1e-3)
    assert np.all(r.eigenvalues <= 1 + 1e-8)


def test_same_rng_same_labels_and_torch_input():
    X = randla.testing.clustered(400, 2, 3, imbalance=2.0, rng=3).X
    a = randla.spectral_clustering(X, 3, gamma=1.0, n_landmarks=50, rng=5)
    b = randla.spectral_clustering(X, 3, gamma=1.0, n_landmarks=50, rng=5)
    assert np.array_equal(a.labels, b.labels)
    t = randla.spectral_clustering(torch.from_numpy(X), 3, gamma=1.0, n_landmarks=50, rng=5)
    assert adjusted_rand_score(a.labels, t.labels) == pytest.approx(1.0)


def test_bad_input():
    X = np.random.default_rng(0).standard_normal((20, 2))
    with pytest.raises(ValueError, match="n_clusters"):
        randla.spectral_clustering(X, 21)
    with pytest.raises(ValueError, match="n_clusters"):
        randla.spectral_clustering(X, 0)
    with pytest.raises(ValueError, match="'linear' kernel gives .* a degree <= 0: it takes negative values"):
        randla.spectral_clustering(X, 2, kernel="linear")
    with pytest.raises(ValueError, match="NaN"):
        randla.spectral_clustering(np.full((5, 2), np.nan), 2)
    with pytest.raises(ValueError, match="`landmarks` must be one of 'rpcholesky'.*; got 'rp-cholesky'"):
        randla.spectral_clustering(X, 2, landmarks="rp-cholesky")


def test_embedding_has_one_column_per_cluster_or_n_components():
    X = np.random.default_rng(0).standard_normal((600, 2))
    with pytest.raises(ValueError, match="n_landmarks.*at least n_components=6"):
        randla.spectral_clustering(X, 6, n_landmarks=3, rng=0)
    r = randla.spectral_clustering(X, 6, n_landmarks=6, rng=0)
    assert r.embedding.shape == (600, 6) and r.eigenvalues.shape == (6,)
    # n_components as in scikit-learn: the eigenvectors kept, here fewer than the clusters
    r = randla.spectral_clustering(X, 6, n_components=3, n_landmarks=40, rng=0)
    assert r.embedding.shape == (600, 3) and r.eigenvalues.shape == (3,) and set(r.labels) == set(range(6))
    with pytest.raises(ValueError, match="n_landmarks`=10 must be at least n_components=12"):
        randla.spectral_clustering(X, 6, n_components=12, n_landmarks=10, rng=0)


def test_rank_deficient_kernel_warns_and_keeps_the_shapes():
    # Identical points: the kernel matrix is all ones, of rank 1, and its
    # normalised affinity has eigenvalues 1, 0, 0, ...
    with pytest.warns(UserWarning, match="numerical rank 1 < n_components=3.*only 1 of the 3 clusters"):
        r = randla.spectral_clustering(np.ones((20, 2)), 3, rng=0)
    assert r.embedding.shape == (20, 3) and r.eigenvalues.shape == (3,)
    assert np.allclose(r.eigenvalues, [1.0, 0.0, 0.0])
    assert np.all((r.labels >= 0) & (r.labels < 3))


def three_blobs():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.3, (100, 2)), rng.normal(3, 0.3, (50, 2)), rng.normal((0, 5), 0.3, (30, 2))])
    return X, np.repeat([0, 1, 2], [100, 50, 30])


def test_narrow_bandwidth_is_not_mistaken_for_a_negative_kernel():
    # At gamma = 1e4 some points have kernel value 0 to every landmark, so the
    # Nystrom degrees F (F^T 1) are 0 there: they used to be refused with
    # "use a non-negative kernel such as 'rbf'", for an rbf kernel. Their exact
    # degree is at least k(x, x) = 1; they are now clustered, with a warning.
    X, _ = three_blobs()
    with pytest.warns(UserWarning, match=r"13 of the 180 points have no affinity to any of the 50 landmarks"):
        r = randla.spectral_clustering(X, 3, gamma=1e4, n_landmarks=50, rng=0)
    assert r.labels.shape == (180,) and np.all((r.labels >= 0) & (r.labels < 3))
    assert np.all(np.isfinite(r.embedding)) and np.all(r.eigenvalues <= 1 + 1e-8)
    norms = np.linalg.norm(r.embedding, axis=1)
    assert np.sum(norms == 0) == 13 and np.allclose(norms[norms > 0], 1.0)
    with pytest.warns(UserWarning, match="no affinity to any of the 50 landmarks"):
        est = randla.SpectralClustering(3, gamma=1e4, n_landmarks=50, random_state=0).fit(X)
    assert est.labels_.shape == (180,)


def test_narrow_bandwidth_with_every_point_reached_is_unchanged():
    # The degrees stay those of the approximation wherever they are positive:
    # adding the residual diagonal to all of them mixes these clusters.
    X, truth = three_blobs()
    r = randla.spectral_clustering(X, 3, gamma=100, n_landmarks=50, rng=0)
    assert adjusted_rand_score(truth, r.labels) == pytest.approx(1.0)


def test_tiny_embedding_rows_are_normalised():
    # Rows of 1e-170 square to 0 in float64: they must still come out of
    # unit length (and zero rows stay zero), not divided by `tiny`.
    from randla.kernels.clustering import _unit_rows

    E = np.array([[3e-170, 4e-170], [0.0, 0.0], [1.0, 1.0]])
    assert np.allclose(_unit_rows(E), [[0.6, 0.8], [0.0, 0.0], [2**-0.5, 2**-0.5]])


def test_degrees_left_non_positive_by_the_approximation_name_it(monkeypatch):
    # A Nystrom factor with negative entries can give a degree <= 0 even with
    # k(x, x) added back; for an rbf kernel the fault is the approximation's.
    from types import SimpleNamespace

    from randla.kernels import clustering

    F = np.array([[1.0, 0.0], [-3.0, 0.0], [0.0, 1.0]])  # degrees F (F^T 1) = -2, 6, 1
    fake = SimpleNamespace(factor=F, indices=np.array([0, 2]))
    monkeypatch.setattr(clustering, "select_landmarks", lambda *args, **kwargs: fake)
    with pytest.raises(ValueError, match="approximation with 2 landmarks gives 1 of the 3 points a degree <= 0, "
                                         "although the 'rbf' kernel is non-negative. Use more landmarks"):
        randla.spectral_clustering(np.eye(3), 2, n_landmarks=2, rng=0)


def test_points_similar_to_nothing_are_named():
    # An empty document has k(x, x) = 0 under cosine: no landmark can help it.
    import scipy.sparse as sp

    X = sp.random_array((100, 30), density=0.2, format="csr", rng=0)
    X = sp.csr_array(X.toarray() * (np.arange(100) % 37 != 5)[:, None])
    with pytest.raises(ValueError, match=r"3 of the 100 points have k\(x, x\) = 0 under the 'cosine' kernel.*\[5, 42, 79\]"):
        randla.spectral_clustering(X, 2, kernel="cosine", n_landmarks=20, rng=0)
