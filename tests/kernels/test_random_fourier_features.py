"""RandomFourierFeatures against the exact kernel and scikit-learn's RBFSampler; odd feature counts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.gaussian_process.kernels import Matern
from sklearn.kernel_approximation import RBFSampler
from sklearn.metrics.pairwise import laplacian_kernel, rbf_kernel
from sklearn.utils.estimator_checks import parametrize_with_checks

import randla
from randla.kernels import fourier_features, sparse_rbf_features


def points(n, d=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


def rel_error(Z, K):
    return np.linalg.norm(Z @ Z.T - K) / np.linalg.norm(K)


@pytest.mark.parametrize("D", [2000, 2001])
def test_error_at_2000_features_is_bounded_and_no_worse_than_rbf_sampler(D):
    X = points(300)
    K = rbf_kernel(X, gamma=0.2)
    ours, theirs = [], []
    for seed in range(5):
        ours.append(rel_error(randla.RandomFourierFeatures(gamma=0.2, n_components=D, random_state=seed)
                              .fit_transform(X), K))
        theirs.append(rel_error(RBFSampler(gamma=0.2, n_components=D, random_state=seed).fit_transform(X), K))
    # Measured: 0.062 (0.066 for D = 2001) against RBFSampler's 0.068.
    assert np.mean(ours) < 0.08
    assert np.mean(ours) <= 1.2 * np.mean(theirs)


@pytest.mark.parametrize("D", [1, 3, 7])
def test_odd_feature_counts_are_unbiased(D):
    # The mean of Z Z^T over many draws converges to K; its standard error
    # bounds how far it may be. A random-phase feature scaled as a pair's
    # cosine (1 instead of sqrt(2)) would miss the diagonal by 1 / D.
    X = points(12, d=3)
    K = rbf_kernel(X, gamma=0.3)
    draws = np.stack([(lambda Z: Z @ Z.T)(fourier_features(X, D, gamma=0.3, rng=seed).Z) for seed in range(4000)])
    mean, stderr = draws.mean(axis=0), draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(mean - K) <= 5 * stderr + 1e-12)
    assert np.abs(np.diagonal(mean) - 1).max() < 0.05
    fmap = fourier_features(X, D, rng=0).feature_map
    assert fmap.n_components == D and fmap.frequencies.shape == (3, (D + 1) // 2) and 0 <= fmap.phase < 2 * np.pi


def test_even_feature_counts_keep_the_cosine_sine_pairs():
    X = points(40)
    Z, fmap = fourier_features(X, 64, kernel="laplacian", rng=1)
    P = X @ fmap.frequencies
    assert fmap.phase is None
    np.testing.assert_allclose(Z, np.hstack([np.cos(P), np.sin(P)]) / np.sqrt(32), rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.sum(Z * Z, axis=1), 1.0, atol=1e-12)  # exact on the diagonal


def test_odd_counts_in_sparse_rbf_features_and_torch():
    import torch

    X = sp.random_array((80, 3000), density=0.01, format="csr", rng=0)
    Z, fmap = sparse_rbf_features(X, 301, gamma=0.5, rng=0)
    assert Z.shape == (80, 301) and fmap.phase is not None
    np.testing.assert_allclose(fmap.transform(X), Z, atol=1e-12)
    Z, fmap = sparse_rbf_features(X, 301, rank=20, gamma=0.5, rng=0)
    assert Z.shape == (80, 20)
    dense = points(30)
    Zn = fourier_features(dense, 33, rng=2).Z
    Zt = fourier_features(torch.as_tensor(dense), 33, rng=2).Z
    np.testing.assert_allclose(Zt.numpy(), Zn, atol=1e-12)


@pytest.mark.parametrize(
    "kernel, params, exact",
    [
        ("rbf", {"gamma": 0.3}, lambda X: rbf_kernel(X, gamma=0.3)),
        ("laplacian", {"gamma": 0.2}, lambda X: laplacian_kernel(X, gamma=0.2)),
        ("matern", {"kernel_params": {"nu": 1.5, "length_scale": 2.0}}, lambda X: Matern(2.0, nu=1.5)(X)),
        ("rbf", {"kernel_params": {"bandwidth": 2.0}}, lambda X: rbf_kernel(X, gamma=1 / 8)),
    ],
)
def test_the_transformer_is_fourier_features(kernel, params, exact):
    X = points(200)
    model = randla.RandomFourierFeatures(kernel, n_components=1501, random_state=3, **params)
    Z = model.fit_transform(X)
    expected = fourier_features(X, 1501, kernel=kernel, rng=3, **params.get("kernel_params", params))
    np.testing.assert_array_equal(Z, expected.Z)
    np.testing.assert_array_equal(model.feature_map_.frequencies, expected.feature_map.frequencies)
    assert rel_error(Z, exact(X)) < 0.15  # 1/sqrt(D): 0.12 for the Laplacian at D = 1501
    np.testing.assert_array_equal(model.transform(X[:7]), Z[:7])


def test_default_gamma_dtypes_sparse_input_and_names():
    X = points(100, d=4)
    Z = randla.RandomFourierFeatures(n_components=4000, random_state=0).fit_transform(X)
    assert rel_error(Z, rbf_kernel(X, gamma=1 / 4)) < 0.05  # gamma = 1 / n_features
    model = randla.RandomFourierFeatures(n_components=9, random_state=0).fit(X)
    assert model.transform(X.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(model.transform(sp.csr_array(X)), model.transform(X), atol=1e-12)
    np.testing.assert_array_equal(model.get_feature_names_out(), [f"randomfourierfeatures{i}" for i in range(9)])
    with pytest.raises(ValueError, match="4 features"):
        model.transform(X[:, :3])


def test_bad_parameters_are_named():
    X = points(20)
    with pytest.raises(ValueError, match="shift-invariant kernel.*use Nystrom"):
        randla.RandomFourierFeatures("polynomial").fit(X)
    with pytest.raises(ValueError, match="`gamma` does not apply to the 'matern' kernel"):
        randla.RandomFourierFeatures("matern", gamma=0.5).fit(X)
    with pytest.raises(ValueError, match="`n_components` must be an int >= 1"):
        randla.RandomFourierFeatures(n_components=0).fit(X)
    with pytest.raises(ValueError, match="`gamma` of the 'rbf' kernel must be a positive"):
        randla.RandomFourierFeatures(gamma=-1.0).fit(X)


@parametrize_with_checks(
    [
        randla.RandomFourierFeatures(random_state=0),
        randla.RandomFourierFeatures(kernel="laplacian", n_components=51, random_state=0),
        randla.RandomFourierFeatures(kernel="matern", kernel_params={"nu": 2.5}, n_components=7, random_state=0),
    ]
)
def test_sklearn_conventions(estimator, check):
    check(estimator)
