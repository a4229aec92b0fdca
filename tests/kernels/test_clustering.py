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
    labels, embedding = randla.spectral_clustering(data.X, 6, gamma=1.0, n_components=120, rng=0)
    assert adjusted_rand_score(data.labels, labels) > 0.99
    assert embedding.shape == (2000, 6)
    assert np.allclose(np.linalg.norm(embedding, axis=1), 1.0)


def test_eigenvalues_match_the_exact_normalised_affinity():
    X = randla.testing.clustered(500, 2, 4, imbalance=3.0, rng=2).X
    K = rbf_kernel(X, gamma=1.0)
    d = K.sum(axis=1)
    exact = np.linalg.eigvalsh(K / np.sqrt(np.outer(d, d)))[::-1][:4]
    r = randla.spectral_clustering(X, 4, gamma=1.0, n_components=150, rng=0)
    assert np.allclose(r.eigenvalues, exact, atol=1e-3)
    assert np.all(r.eigenvalues <= 1 + 1e-8)


def test_same_rng_same_labels_and_torch_input():
    X = randla.testing.clustered(400, 2, 3, imbalance=2.0, rng=3).X
    a = randla.spectral_clustering(X, 3, gamma=1.0, n_components=50, rng=5)
    b = randla.spectral_clustering(X, 3, gamma=1.0, n_components=50, rng=5)
    assert np.array_equal(a.labels, b.labels)
    t = randla.spectral_clustering(torch.from_numpy(X), 3, gamma=1.0, n_components=50, rng=5)
    assert adjusted_rand_score(a.labels, t.labels) == pytest.approx(1.0)


def test_bad_input():
    X = np.random.default_rng(0).standard_normal((20, 2))
    with pytest.raises(ValueError, match="n_clusters"):
        randla.spectral_clustering(X, 21)
    with pytest.raises(ValueError, match="n_clusters"):
        randla.spectral_clustering(X, 0)
    with pytest.raises(ValueError, match="degrees"):
        randla.spectral_clustering(X, 2, kernel="linear")
    with pytest.raises(ValueError, match="NaN"):
        randla.spectral_clustering(np.full((5, 2), np.nan), 2)


def test_embedding_has_one_column_per_cluster():
    X = np.random.default_rng(0).standard_normal((600, 2))
    with pytest.raises(ValueError, match="n_components.*at least n_clusters=6"):
        randla.spectral_clustering(X, 6, n_components=3, rng=0)
    r = randla.spectral_clustering(X, 6, n_components=6, rng=0)
    assert r.embedding.shape == (600, 6) and r.eigenvalues.shape == (6,)


def test_rank_deficient_kernel_warns_and_keeps_the_shapes():
    # Identical points: the kernel matrix is all ones, of rank 1, and its
    # normalised affinity has eigenvalues 1, 0, 0, ...
    with pytest.warns(UserWarning, match="numerical rank 1 < n_clusters=3"):
        r = randla.spectral_clustering(np.ones((20, 2)), 3, rng=0)
    assert r.embedding.shape == (20, 3) and r.eigenvalues.shape == (3,)
    assert np.allclose(r.eigenvalues, [1.0, 0.0, 0.0])
    assert np.all((r.labels >= 0) & (r.labels < 3))
