"""Random Fourier features and sparse RBF features against exact kernels from scikit-learn."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.gaussian_process.kernels import Matern
from sklearn.metrics.pairwise import laplacian_kernel, rbf_kernel

from conftest import to_np
from randla.kernels import FeatureMap, RandomFeatures, fourier_features, sparse_rbf_features

KERNELS = [
    ("rbf", {"gamma": 0.3}),
    ("laplacian", {"gamma": 0.2}),
    ("matern", {"nu": 0.5, "length_scale": 1.5}),
    ("matern", {"nu": 1.5, "length_scale": 1.5}),
    ("matern", {"nu": 2.5, "length_scale": 1.5}),
]
IDS = ["rbf", "laplacian", "matern0.5", "matern1.5", "matern2.5"]


def exact_kernel(X, Y, name, params):
    if name == "rbf":
        return rbf_kernel(X, Y, gamma=params["gamma"])
    if name == "laplacian":
        return laplacian_kernel(X, Y, gamma=params["gamma"])
    return Matern(length_scale=params["length_scale"], nu=params["nu"])(X, Y)


def points(n, d=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


def sparse_points(n=120, d=2000, density=0.01, seed=1):
    rng = np.random.default_rng(seed)
    return sp.random_array((n, d), density=density, format="csr", rng=rng, data_sampler=rng.standard_normal)


def rel_error(Z, K):
    Z = to_np(Z)
    return float(np.linalg.norm(Z @ Z.T - K) / np.linalg.norm(K))


# -- random Fourier features ------------------------------------------------------


@pytest.mark.parametrize("name,params", KERNELS, ids=IDS)
def test_error_falls_like_one_over_sqrt_components(name, params):
    X = points(60)
    K = exact_kernel(X, X, name, params)
    err = {
        D: np.mean([rel_error(fourier_features(X, D, kernel=name, rng=seed, **params).Z, K) for seed in range(3)])
        for D in (100, 1600)
    }
    # 16 times the features: 1/sqrt(D) predicts a fall by 4.
    assert err[1600] < err[100] / 2.5, err
    assert err[100] < 0.45 and err[1600] < 0.12, err


@pytest.mark.parametrize("name,params", KERNELS, ids=IDS)
def test_diagonal_exact_and_new_points_consistent(name, params):
    X, X_new = points(50, seed=0), points(20, seed=1)
    Z, fmap = fourier_features(X, 1600, kernel=name, rng=7, **params)
    np.testing.assert_allclose(np.sum(Z * Z, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(fmap.transform(X), Z, atol=1e-12)
    cross = fmap.transform(X_new) @ Z.T
    K_cross = exact_kernel(X_new, X, name, params)
    assert np.linalg.norm(cross - K_cross) / np.linalg.norm(K_cross) < 0.15
    # The first rows of the new features are those of the training points they equal.
    np.testing.assert_allclose(fmap.transform(np.vstack([X[:3], X_new]))[:3], Z[:3], atol=1e-12)


def test_same_rng_same_features_and_rng_forms(untouched_global_rng):
    X = points(30)
    a = fourier_features(X, 64, rng=3).Z
    np.testing.assert_array_equal(a, fourier_features(X, 64, rng=3).Z)
    np.testing.assert_array_equal(a, fourier_features(X, 64, rng=np.random.default_rng(3)).Z)
    assert not np.allclose(a, fourier_features(X, 64, rng=4).Z)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,params", KERNELS, ids=IDS)
def test_torch_matches_numpy(name, params, dtype):
    X = points(30)
    Zn, fn = fourier_features(X, 64, kernel=name, rng=5, **params)
    Zt, ft = fourier_features(torch.as_tensor(X, dtype=dtype), 64, kernel=name, rng=5, **params)
    assert isinstance(Zt, torch.Tensor) and Zt.dtype == dtype
    np.testing.assert_array_equal(fn.frequencies, ft.frequencies)
    atol = 5e-4 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(to_np(Zt), Zn, atol=atol)
    # A map drawn for NumPy points featurises torch points identically, and back.
    np.testing.assert_allclose(to_np(fn.transform(torch.as_tensor(X, dtype=dtype))), Zn, atol=atol)


def test_dtypes_kept_and_integers_promoted():
    X = points(20)
    assert fourier_features(X.astype(np.float32), 16, rng=0).Z.dtype == np.float32
    assert fourier_features(np.round(10 * X).astype(np.int64), 16, rng=0).Z.dtype == np.float64


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_numpy_matrix_is_a_plain_array():
    X = points(20)
    res = fourier_features(np.asmatrix(X), 16, rng=0)
    assert type(res.Z) is np.ndarray
    np.testing.assert_array_equal(res.Z, fourier_features(X, 16, rng=0).Z)
    np.testing.assert_array_equal(res.feature_map.transform(np.asmatrix(X[:5])), res.Z[:5])


def test_bandwidth_is_gamma_and_input_untouched():
    X = points(40)
    before = X.copy()
    a = fourier_features(X, 32, kernel="rbf", bandwidth=2.0, rng=1)
    b = fourier_features(X, 32, kernel="gaussian", gamma=1 / 8, rng=1)
    np.testing.assert_allclose(a.Z, b.Z, atol=1e-12)
    assert a.feature_map.params == {"gamma": 0.125}
    np.testing.assert_array_equal(X, before)


def test_result_unpacks_and_reconstructs():
    X = points(25)
    res = fourier_features(X, 40, kernel="laplacian", rng=0)
    Z, fmap = res
    assert isinstance(res, RandomFeatures) and isinstance(fmap, FeatureMap)
    assert res.rank == 40 == fmap.n_components and fmap.n_features_in == 4
    np.testing.assert_allclose(res.reconstruct(), Z @ Z.T)
    assert "laplacian" in repr(res) and "n_components=40" in repr(fmap)


def test_sparse_rbf_features_read_csc_without_a_copy():
    import tracemalloc

    import scipy.sparse as sp

    X = sp.random_array((2000, 20_000), density=5e-3, format="csr", rng=0)
    peaks = {}
    for fmt in ("csr", "csc"):
        given = X.asformat(fmt)
        tracemalloc.start()
        sparse_rbf_features(given, 64, rng=0)
        peaks[fmt] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks["csc"] <= 1.1 * peaks["csr"]


def test_sparse_input_to_fourier_features_matches_dense():
    X = sparse_points(40, 300, density=0.05)
    a = fourier_features(X, 32, kernel="laplacian", gamma=0.5, rng=2).Z
    b = fourier_features(X.toarray(), 32, kernel="laplacian", gamma=0.5, rng=2).Z
    np.testing.assert_allclose(a, b, atol=1e-12)


# -- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["polynomial", "linear", lambda A, B: A @ B.T])
def test_kernels_without_fourier_features_point_to_nystrom(kernel):
    with pytest.raises(ValueError, match="shift-invariant.*nystrom"):
        fourier_features(points(10), 16, kernel=kernel)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda X: fourier_features(X, 16, bandwidth=-1.0), "bandwidth"),
        (lambda X: fourier_features(X, 16, kernel="matern", length_scale=0.0), "length_scale"),
        (lambda X: fourier_features(X, 16, kernel="matern", nu=1.0), "nu"),
        (lambda X: fourier_features(X, 16, gamma=1.0, bandwidth=1.0), "either"),
        (lambda X: fourier_features(X, 16, length_scale=1.0), "unknown parameter"),
        (lambda X: fourier_features(X, 16, kernel="cosine"), "kernel"),
        (lambda X: fourier_features(X, 0), "an int >= 1"),
        (lambda X: fourier_features(X, 16.0), "an int >= 1"),
        (lambda X: sparse_rbf_features(X, -3), "an int >= 1"),
        (lambda X: fourier_features(X[:, 0], 16), "2-D"),
        (lambda X: fourier_features(np.where(X > 1.5, np.nan, X), 16), "NaN"),
        (lambda X: fourier_features(X, 16).feature_map.transform(X[:, :3]), "4 features"),
        (lambda X: sparse_rbf_features(X, 16, bandwidth=-2.0), "bandwidth"),
        (lambda X: sparse_rbf_features(X, 16, rank=0), "rank"),
        (lambda X: sparse_rbf_features(X, 16, rank=17), "rank"),
        (lambda X: sparse_rbf_features(X, 16, sketch_size=0), "sketch_size"),
        (lambda X: sparse_rbf_features(sp.csr_array(np.where(X > 1.5, np.inf, X)), 16), "NaN or Inf"),
        (lambda X: sparse_rbf_features(sp.csr_array(X[:0]), 16), "at least one point"),
    ],
)
def test_bad_input_gets_a_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(points(30))


def test_non_numbers_get_a_type_error():
    with pytest.raises(TypeError, match="real numbers"):
        sparse_rbf_features(sp.csr_array(points(5).astype(np.complex128)), 16)
    with pytest.raises(TypeError, match="rng"):
        fourier_features(points(5), 16, rng="seed")
    with pytest.raises(TypeError, match="torch sparse"):
        sparse_rbf_features(torch.eye(5, dtype=torch.float64).to_sparse(), 16)


# -- sparse RBF features -------------------------------------------------------------


@pytest.mark.parametrize(
    "container",
    [sp.csr_matrix, sp.csr_array, sp.csc_matrix, sp.csc_array, sp.coo_array, lambda S: S.toarray()],
    ids=["csr_matrix", "csr_array", "csc_matrix", "csc_array", "coo_array", "dense"],
)
def test_sparse_and_dense_input_give_the_same_features(container):
    X = sparse_points()
    ref = sparse_rbf_features(X, 128, sketch_size=64, gamma=0.025, rng=3)
    assert ref.feature_map.embedding is not None and ref.feature_map.embedding.shape == (2000, 64)
    res = sparse_rbf_features(container(X), 128, sketch_size=64, gamma=0.025, rng=3)
    np.testing.assert_allclose(res.Z, ref.Z, atol=1e-12)
    np.testing.assert_allclose(res.feature_map.transform(container(X[:5])), ref.Z[:5], atol=1e-12)


def test_sparse_error_falls_and_stays_near_plain_fourier_features():
    X = sparse_points()
    K = rbf_kernel(X, gamma=0.025)
    err, plain = {}, {}
    for D in (100, 1600):
        err[D] = np.mean([rel_error(sparse_rbf_features(X, D, gamma=0.025, rng=s).Z, K) for s in range(3)])
        plain[D] = np.mean([rel_error(fourier_features(X, D, gamma=0.025, rng=s).Z, K) for s in range(3)])
    assert err[1600] < err[100] / 2.5, err
    # The default embedding width (m = D) adds little to the Fourier features' own error.
    assert err[100] < 1.4 * plain[100] and err[1600] < 1.4 * plain[1600], (err, plain)
    # A narrow embedding's error dominates and does not fall with D.
    narrow = np.mean(
        [rel_error(sparse_rbf_features(X, 1600, gamma=0.025, sketch_size=64, rng=s).Z, K) for s in range(3)]
    )
    assert narrow > 1.5 * err[1600]


def test_wide_sparse_input_is_never_densified():
    n, d = 500, 100_000
    X = sp.random_array((n, d), density=1e-4, format="csr", rng=0)
    tracemalloc.start()
    try:
        Z, fmap = sparse_rbf_features(X, 64, rank=16, gamma=0.5, rng=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < n * d * 8 / 10, f"peak {peak / 2**20:.1f} MiB"
    assert Z.shape == (n, 16) and fmap.embedding.nnz == 8 * d
    np.testing.assert_allclose(fmap.transform(X[[3, 7]]), Z[[3, 7]], atol=1e-12)


def test_no_embedding_when_sketch_is_as_wide_as_the_data():
    X = sparse_points(60, 200, density=0.05)
    a = sparse_rbf_features(X, 64, gamma=0.1, sketch_size=200, rng=9)
    b = fourier_features(X, 64, kernel="rbf", gamma=0.1, rng=9)
    assert a.feature_map.embedding is None
    np.testing.assert_allclose(a.Z, b.Z, atol=1e-12)


def test_rank_truncation_is_the_best_rank_r_part():
    X = sparse_points()
    K = rbf_kernel(X, gamma=0.025)
    full = sparse_rbf_features(X, 400, gamma=0.025, rng=4).Z
    res = sparse_rbf_features(X, 400, rank=12, gamma=0.025, rng=4)
    Z = res.Z
    assert Z.shape == (120, 12) and res.rank == 12 and res.feature_map.n_components == 12
    G = Z.T @ Z
    np.testing.assert_allclose(G - np.diag(np.diag(G)), 0, atol=1e-9 * np.abs(G).max())
    w, V = np.linalg.eigh(full @ full.T)
    best = (V[:, -12:] * w[-12:]) @ V[:, -12:].T
    np.testing.assert_allclose(Z @ Z.T, best, atol=1e-9)
    # ||K - Z Z^T|| <= ||K - K_r|| + 2 ||K - Z_D Z_D^T|| (Eckart-Young and the triangle inequality).
    s = np.linalg.eigvalsh(K)[::-1]
    optimum = np.sqrt(np.sum(s[12:] ** 2))
    assert np.linalg.norm(K - Z @ Z.T) <= optimum + 2 * np.linalg.norm(K - full @ full.T)
    assert np.linalg.norm(K - Z @ Z.T) < 1.5 * optimum
    np.testing.assert_allclose(res.feature_map.transform(X[:4]), Z[:4], atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_rbf_torch_matches_numpy(dtype):
    X = points(50, d=300)
    Zn, fn = sparse_rbf_features(X, 64, rank=10, sketch_size=32, rng=3)
    Zt, ft = sparse_rbf_features(torch.as_tensor(X, dtype=dtype), 64, rank=10, sketch_size=32, rng=3)
    assert isinstance(Zt, torch.Tensor) and Zt.dtype == dtype
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(to_np(Zt), Zn, atol=atol)
    np.testing.assert_allclose(to_np(ft.transform(torch.as_tensor(X[:5], dtype=dtype))), Zn[:5], atol=atol)


def test_sparse_float32_kept_and_same_rng_same_features():
    X = sparse_points().astype(np.float32)
    a = sparse_rbf_features(X, 32, sketch_size=16, rng=0).Z
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, sparse_rbf_features(X, 32, sketch_size=16, rng=0).Z)
    assert not np.allclose(a, sparse_rbf_features(X, 32, sketch_size=16, rng=1).Z)
