"""Implicit kernel operators against dense kernels from scikit-learn."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from sklearn.gaussian_process.kernels import Matern
from sklearn.metrics.pairwise import pairwise_kernels

import randla
from randla.kernels import kernel_operator
from randla.kernels.operator import DEFAULT_MEMORY_LIMIT

KERNELS = [
    ("rbf", {"gamma": 0.3}),
    ("laplacian", {"gamma": 0.2}),
    ("polynomial", {"gamma": 0.5, "degree": 2, "coef0": 1.0}),
    ("linear", {}),
    ("matern", {"nu": 0.5, "length_scale": 1.5}),
    ("matern", {"nu": 1.5, "length_scale": 1.5}),
    ("matern", {"nu": 2.5, "length_scale": 1.5}),
    ("cosine", {}),
    ("chi2", {"gamma": 0.5}),
]
TOL = {np.float64: 1e-10, np.float32: 2e-4}


def dense_kernel(X, Y, name, params):
    if name == "matern":
        return Matern(length_scale=params["length_scale"], nu=params["nu"])(X, Y)
    return pairwise_kernels(X, Y, metric=name, **params)


def points(n, d=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


def kernel_points(name, n, d=4, seed=0):
    """Points in the kernel's domain, with the cases it must read as scikit-learn
    does: a zero point (cosine: k = 0, also k(x, x)), zero features (chi2: 0 / 0)."""
    X = points(n, d, seed=seed)
    if name == "chi2":
        X = np.abs(X)
        X[::3, 1] = 0
    if name == "cosine":
        X[n // 2] = 0
    return X


def as_backend(x, backend, dtype):
    x = x.astype(dtype)
    return torch.from_numpy(x) if backend == "torch" else x


def host(x):
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,params", KERNELS)
def test_products_columns_and_diagonal_match_dense(name, params, dtype, backend):
    X, Y, V = kernel_points(name, 70), kernel_points(name, 50, seed=1), points(70, d=3, seed=2)
    K = kernel_operator(as_backend(X, backend, dtype), kernel=name, memory_limit=4096, **params)
    D = dense_kernel(X, X, name, params)
    scale = np.abs(D).max() * (1 + np.abs(V).max() * 70)
    assert K.shape == (70, 70)
    assert np.abs(host(K.matmat(as_backend(V, backend, dtype))) - D @ V).max() <= TOL[dtype] * scale
    assert np.abs(host(K.rmatmat(as_backend(V, backend, dtype))) - D.T @ V).max() <= TOL[dtype] * scale
    assert np.abs(host(K.columns([3, 0, 69])) - D[:, [3, 0, 69]]).max() <= TOL[dtype] * np.abs(D).max()
    assert np.abs(host(K.rows([5, 1])) - D[[5, 1]]).max() <= TOL[dtype] * np.abs(D).max()
    assert np.abs(host(K.diagonal()) - np.diag(D)).max() <= TOL[dtype] * np.abs(D).max()
    assert K.trace() == pytest.approx(np.trace(D), rel=10 * TOL[dtype])
    # The rectangular k(X, Y) and its transpose.
    KXY = kernel_operator(as_backend(X, backend, dtype), as_backend(Y, backend, dtype), kernel=name, **params)
    DXY = dense_kernel(X, Y, name, params)
    W = points(50, d=2, seed=3)
    assert KXY.shape == (70, 50)
    assert np.abs(host(KXY.matmat(as_backend(W, backend, dtype))) - DXY @ W).max() <= TOL[dtype] * scale
    assert np.abs(host(KXY.rmatmat(as_backend(V[:, :2], backend, dtype))) - DXY.T @ V[:, :2]).max() <= TOL[dtype] * scale
    assert np.abs(host(KXY.block([1, 2], [4])) - DXY[[1, 2]][:, [4]]).max() <= TOL[dtype] * np.abs(D).max()


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_results_keep_the_library_and_dtype(backend):
    X = as_backend(points(30), backend, np.float32)
    K = kernel_operator(X)
    out = K.matmat(as_backend(points(30, d=2), backend, np.float32))
    assert type(out) is type(X) and out.dtype == X.dtype
    assert K.dtype == X.dtype


def test_callable_kernel_with_parameters_matches_builtin():
    X = points(40)

    def cosine_rbf(A, B, scale):
        sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2 * A @ B.T
        return np.exp(-np.maximum(sq, 0) / scale)

    K = kernel_operator(X, kernel=cosine_rbf, scale=4.0)
    D = pairwise_kernels(X, metric="rbf", gamma=0.25)
    assert np.allclose(K.matmat(np.eye(40)), D, atol=1e-12)
    assert np.allclose(K.diagonal(), 1.0)


def test_bandwidth_is_an_alternative_to_gamma():
    X = points(20)
    by_bandwidth = kernel_operator(X, kernel="rbf", bandwidth=2.0).block()
    by_gamma = kernel_operator(X, kernel="rbf", gamma=1 / 8).block()
    assert np.allclose(by_bandwidth, by_gamma)
    assert np.allclose(
        kernel_operator(X, kernel="laplacian", bandwidth=4.0).block(),
        pairwise_kernels(X, metric="laplacian", gamma=0.25),
    )
    assert np.allclose(kernel_operator(X, kernel="gaussian").block(), pairwise_kernels(X, metric="rbf"))


def test_default_gamma_is_one_over_features_like_sklearn():
    X = points(25, d=6)
    for name in ("rbf", "laplacian", "polynomial"):
        assert np.allclose(kernel_operator(X, kernel=name).block(), pairwise_kernels(X, metric=name))


@pytest.mark.parametrize("name, params", [("rbf", {}), ("laplacian", {}), ("polynomial", {}),
                                          ("matern", {"nu": 0.5}), ("matern", {"nu": 1.5}), ("matern", {"nu": 2.5})])
def test_products_stay_within_the_memory_limit(name, params):
    """Each kernel's own temporaries count (Matern's polynomial factor holds
    two more blocks than rbf), and a block is freed before the next is made."""
    X = points(4000, d=3)
    V = points(4000, d=2, seed=1)
    limit = 2**22
    K = kernel_operator(X, kernel=name, memory_limit=limit, **params)
    tracemalloc.start()
    out = K.matmat(V)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # The full 4000 x 4000 kernel would be 128 MB; the blocks plus the output stay within the limit.
    assert peak <= limit + out.nbytes + 2**16
    assert np.allclose(out[:300], K.block(np.arange(300)) @ V, atol=1e-10)


def test_the_users_points_are_not_modified_or_copied():
    X = points(50)
    before = X.copy()
    K = kernel_operator(X)
    K.matmat(np.ones((50, 1)))
    assert np.array_equal(X, before)
    assert K.X is X


def test_integer_points_are_promoted_to_float64():
    X = np.arange(12).reshape(6, 2)
    K = kernel_operator(X, kernel="linear")
    assert K.dtype == np.float64
    assert np.allclose(K.block(), X @ X.T)


def test_runs_in_the_core_decompositions():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 3))
    K = kernel_operator(X, kernel="rbf", gamma=0.5)
    D = pairwise_kernels(X, metric="rbf", gamma=0.5)
    w = np.linalg.eigvalsh(D)[::-1]
    U, S = randla.nystrom(K, 20, power_iters=2, rng=0)
    assert np.linalg.norm(D - (U * S) @ U.T, 2) <= 1.5 * w[20]
    r = randla.svd(K, 10, rng=0)
    assert np.allclose(r.S, w[:10], rtol=1e-3)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"kernel": "rbf", "gamma": -1.0}, ValueError, "gamma"),
        ({"kernel": "rbf", "bandwidth": 0.0}, ValueError, "bandwidth"),
        ({"kernel": "rbf", "bandwidth": 1.0, "gamma": 1.0}, ValueError, "not both"),
        ({"kernel": "laplacian", "gamma": float("nan")}, ValueError, "gamma"),
        ({"kernel": "matern", "nu": 2.0}, ValueError, "nu"),
        ({"kernel": "matern", "length_scale": -2}, ValueError, "length_scale"),
        ({"kernel": "polynomial", "degree": 0}, ValueError, "degree"),
        ({"kernel": "polynomial", "coef0": -1.0}, ValueError, "coef0"),
        ({"kernel": "rbf", "degree": 3}, ValueError, "unknown parameter"),
        ({"kernel": "sigmoid"}, ValueError, "'sigmoid' kernel is not positive semidefinite"),
        ({"kernel": "additive_chi2"}, ValueError, "'additive_chi2' kernel is not positive semidefinite"),
        ({"kernel": "chi2", "degree": 2}, ValueError, "unknown parameter"),
        ({"kernel": "chi2", "gamma": 0.0}, ValueError, "gamma"),
        ({"kernel": "cosine", "gamma": 1.0}, ValueError, "unknown parameter"),
        ({"kernel": 3}, TypeError, "kernel"),
        ({"memory_limit": 0}, ValueError, "memory_limit"),
    ],
)
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        kernel_operator(points(10), **kwargs)


def test_bad_points():
    import scipy.sparse as sp

    with pytest.raises(ValueError, match="NaN"):
        kernel_operator(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="2-D"):
        kernel_operator(np.ones(5))
    with pytest.raises(ValueError, match="at least one"):
        kernel_operator(np.ones((0, 3)))
    with pytest.raises(ValueError, match="'laplacian' kernel does not take sparse points"):
        kernel_operator(sp.random(10, 5, density=0.5, format="csr", random_state=0), kernel="laplacian")
    with pytest.raises(TypeError, match="torch sparse tensor"):
        kernel_operator(torch.eye(3).to_sparse())
    with pytest.raises(TypeError, match="real numbers"):
        kernel_operator(sp.random(10, 5, density=0.5, format="csr", random_state=0, dtype=complex))
    with pytest.raises(ValueError, match="NaN"):
        kernel_operator(sp.csr_array(np.array([[0.0, np.inf], [1.0, 0.0]])))
    with pytest.raises(TypeError, match="NumPy array or torch tensor"):
        kernel_operator("abc")
    with pytest.raises(ValueError, match="same number of features"):
        kernel_operator(points(10, d=3), points(10, d=4))
    with pytest.raises(TypeError, match="same array library"):
        kernel_operator(points(10), torch.from_numpy(points(10)))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_chi2_refuses_negative_points(backend):
    X = as_backend(np.abs(points(10)), backend, np.float64)
    negative = as_backend(-np.abs(points(5)), backend, np.float64)
    with pytest.raises(ValueError, match="'chi2' kernel takes non-negative features.*X has negative"):
        kernel_operator(negative, kernel="chi2")
    with pytest.raises(ValueError, match="'chi2' kernel takes non-negative features.*Y has negative"):
        kernel_operator(X, negative, kernel="chi2")
    y = as_backend(np.ones(10), backend, np.float64)
    model = randla.kernel_ridge(X, y, kernel="chi2", alpha=1.0)
    with pytest.raises(ValueError, match="'chi2' kernel takes non-negative features"):
        model.predict(negative)


def test_chi2_and_cosine_defaults_are_sklearns():
    X = kernel_points("chi2", 20)
    np.testing.assert_allclose(kernel_operator(X, kernel="chi2").block(), pairwise_kernels(X, metric="chi2"),
                               rtol=1e-12, atol=1e-15)
    X = kernel_points("cosine", 20)
    np.testing.assert_allclose(kernel_operator(X, kernel="cosine").block(), pairwise_kernels(X, metric="cosine"),
                               rtol=1e-12, atol=1e-15)



@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_chi2_in_row_blocks_with_empty_features_matches_sklearn(lib):
    """Distances a cache-sized block of rows at a time (600 x 200 is four
    blocks); shared zero features (0 / 0) count 0, a zero row against any."""
    rng = np.random.default_rng(0)
    X, Y = rng.random((600, 30)), rng.random((200, 30))
    X[X < 0.6], Y[Y < 0.6] = 0.0, 0.0
    X[7], Y[3] = 0.0, 0.0
    expected = pairwise_kernels(X, Y, metric="chi2", gamma=0.3)
    wrap = torch.from_numpy if lib == "torch" else np.asarray
    got = kernel_operator(wrap(X), wrap(Y), kernel="chi2", gamma=0.3).block()
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12, atol=1e-15)

SPARSE_KERNELS = [k for k in KERNELS if k[0] in ("rbf", "polynomial", "linear", "cosine")]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,params", SPARSE_KERNELS)
def test_sparse_points_match_dense(name, params, dtype):
    import scipy.sparse as sp

    X = sp.random_array((80, 30), density=0.15, format="csc", rng=0, dtype=dtype)
    Y = sp.random_array((40, 30), density=0.15, format="coo", rng=1, dtype=dtype)
    X_before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    Xd, Yd = X.toarray().astype(np.float64), Y.toarray().astype(np.float64)
    D, DXY = dense_kernel(Xd, Xd, name, params), dense_kernel(Xd, Yd, name, params)
    V = points(80, d=3, seed=2).astype(dtype)
    K = kernel_operator(X, kernel=name, memory_limit=4096, **params)
    tol, scale = TOL[dtype] * np.abs(D).max(), np.abs(D).max() * (1 + np.abs(V).max() * 80)
    assert K.dtype == dtype
    assert np.abs(K.matmat(V) - D @ V).max() <= TOL[dtype] * scale
    assert np.abs(K.rmatmat(V) - D.T @ V).max() <= TOL[dtype] * scale
    assert np.abs(K.columns([3, 0, 79]) - D[:, [3, 0, 79]]).max() <= tol
    assert np.abs(K.rows([5, 1]) - D[[5, 1]]).max() <= tol
    assert np.abs(K.diagonal() - np.diag(D)).max() <= tol
    # Sparse against sparse, sparse against dense, dense against sparse.
    for A, B in ((X, Y), (X, Yd.astype(dtype)), (Xd.astype(dtype), Y)):
        assert np.abs(kernel_operator(A, B, kernel=name, **params).block() - DXY).max() <= tol
    assert all(np.array_equal(a, b) for a, b in zip(X_before, (X.data, X.indices, X.indptr)))
    assert X.format == "csc"


def test_sparse_float32_rbf_keeps_its_distances():
    # Near-duplicate count rows: in float32 the Gram expansion about the origin
    # cancels ||x||^2 ~ 1e4 down to distances ~1e-2; it is done in float64.
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    base = rng.uniform(0, 50, (1, 40))
    X = np.repeat(base, 30, axis=0) + 0.01 * rng.standard_normal((30, 40))
    X[:, ::3] = 0
    K = kernel_operator(sp.csr_array(X.astype(np.float32)), kernel="rbf", gamma=1.0).block()
    exact = pairwise_kernels(X.astype(np.float32).astype(np.float64), metric="rbf", gamma=1.0)
    assert K.dtype == np.float32
    assert np.abs(K - exact).max() <= 1e-6


def test_sparse_points_with_duplicates_are_left_as_given():
    import scipy.sparse as sp

    # Row 0 stores column 2 twice (1 + 2) and its columns out of order.
    X = sp.csr_matrix((np.array([1.0, 5.0, 2.0, 4.0]), np.array([2, 0, 2, 1]), np.array([0, 3, 4])), shape=(2, 3))
    given = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    dense = X.toarray()
    for name in ("cosine", "rbf", "linear"):
        K = kernel_operator(X, kernel=name)
        np.testing.assert_allclose(K.block(), pairwise_kernels(dense, metric=name), rtol=1e-12)
        np.testing.assert_allclose(K.diagonal(), np.diag(pairwise_kernels(dense, metric=name)), rtol=1e-12)
    assert all(np.array_equal(a, b) for a, b in zip(given, (X.data, X.indices, X.indptr)))


@pytest.mark.parametrize("scale,dtype", [(1e200, np.float64), (1e-200, np.float64), (1e20, np.float32),
                                         (1e-22, np.float32)])
@pytest.mark.parametrize("backend", ["numpy", "torch", "sparse"])
def test_cosine_at_extreme_magnitudes(scale, dtype, backend):
    import scipy.sparse as sp

    X = points(20)
    exact = pairwise_kernels(X, metric="cosine")
    scaled = (X * scale).astype(dtype)
    given = sp.csr_array(scaled) if backend == "sparse" else as_backend(scaled, backend, dtype)
    K = host(kernel_operator(given, kernel="cosine").block())
    assert np.abs(K - exact).max() <= (1e-12 if dtype == np.float64 else 1e-5)


def test_kernel_products_copy_the_points_once():
    # Blocks share the work that depends on the points alone: one unit-row copy
    # (cosine) or one transposed copy (sparse) per product, not one per block.
    import scipy.sparse as sp

    V = np.ones((4000, 2))
    X = sp.random_array((4000, 50_000), density=2e-3, format="csr", rng=0)
    size = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    dense = points(4000, d=500)
    for given, name, bound in ((X, "cosine", 2.5 * size), (X, "rbf", 2.5 * size), (dense, "cosine", 1.3 * dense.nbytes),
                               (dense, "rbf", 1.3 * dense.nbytes)):
        K = kernel_operator(given, kernel=name, memory_limit=2**20)
        tracemalloc.start()
        K.matmat(V)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak <= bound + 2 * 2**20, (name, sp.issparse(given), peak / size)


def test_sparse_points_are_never_densified():
    import scipy.sparse as sp

    # 10^6 features: dense, these points would take 80 GB.
    X = sp.random_array((10_000, 1_000_000), density=5e-6, format="csr", rng=0)
    tracemalloc.start()
    chosen = randla.rpcholesky(kernel_operator(X, kernel="cosine"), 20, rng=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(chosen.indices) == 20
    assert peak < 50 * 2**20


def test_diagonal_needs_a_square_kernel():
    with pytest.raises(ValueError, match="square"):
        kernel_operator(points(10), points(5)).diagonal()


def test_callable_kernels_are_checked_where_cheap():
    X = points(30)
    with pytest.raises(ValueError, match="positive semidefinite"):
        kernel_operator(X, kernel=lambda A, B: -(A @ B.T))
    with pytest.raises(ValueError, match="symmetric"):
        kernel_operator(X, kernel=lambda A, B: A @ B.T + A[:, :1])
    with pytest.raises(ValueError, match="block"):
        kernel_operator(X, kernel=lambda A, B: A @ B.T[:, :1])
    with pytest.raises(ValueError, match="NaN"):
        kernel_operator(X, kernel=lambda A, B: np.full((len(A), len(B)), np.nan))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name,params", KERNELS)
def test_square_blocks_carry_the_exact_diagonal(name, params, backend):
    # k(x, x) of a narrow rbf evaluated by the Gram expansion loses
    # gamma eps ||x - centre||^2 (2e-5 here in float32); the blocks a landmark
    # method reads must agree with diagonal(), or a landmark keeps a residual.
    X = as_backend(kernel_points(name, 200, d=50), backend, np.float32)
    params = {**params, "gamma": 1.0} if "gamma" in params else params
    K = kernel_operator(X, kernel=name, memory_limit=20_000, **params)
    diag = host(K.diagonal())
    idx = [7, 3, 199, 7]
    assert np.array_equal(np.diagonal(host(K.block())), diag)
    assert np.array_equal(host(K.block(idx, idx)).diagonal(), diag[idx])
    assert np.array_equal(host(K.columns(idx))[idx, range(4)], diag[idx])
    assert np.array_equal(host(K.rows(idx))[range(4), idx], diag[idx])
    E = np.zeros((200, 4), dtype=np.float32)
    E[idx, range(4)] = 1
    for product in (K.matmat, K.rmatmat):
        assert np.array_equal(host(product(as_backend(E, backend, np.float32)))[idx, range(4)], diag[idx])
    # Negative indices count from the end, and get the exact diagonal too.
    negative = [i - 200 for i in idx]
    assert np.array_equal(host(K.columns(negative)), host(K.columns(idx)))
    assert np.array_equal(host(K.rows(negative)), host(K.rows(idx)))
    assert np.array_equal(host(K.block(negative, idx)), host(K.block(idx, idx)))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_column_access_index_errors_and_empty_selections(backend):
    K = kernel_operator(as_backend(points(30), backend, np.float64), kernel="rbf")
    for bad in ([30], [-31], [0, 45]):
        with pytest.raises(IndexError, match=r"\[-30, 30\)"):
            K.columns(bad)
        with pytest.raises(IndexError, match=r"\[-30, 30\)"):
            K.rows(bad)
    assert tuple(K.columns([]).shape) == (30, 0)
    assert tuple(K.rows([]).shape) == (0, 30)
    assert tuple(K.block([], [1, 2]).shape) == (0, 2)


def test_callable_kernel_block_is_not_written_to():
    # A callable may hand back a view of the user's own matrix: the exact
    # diagonal is placed in a new block, not written into the user's array.
    X = np.random.default_rng(0).standard_normal((300, 3))
    full = np.exp(-((X[:, None] - X[None]) ** 2).sum(-1)) + 0.5 * np.eye(300)
    saved = full.copy()

    def kernel(A, B):  # the whole matrix when asked for it, as a cache would
        if A.shape[0] == B.shape[0] == 300:
            return full
        return np.exp(-((A[:, None] - B[None]) ** 2).sum(-1))  # diagonal 1, not the cache's 1.5

    K = kernel_operator(X, kernel=kernel)
    K.matmat(np.ones((300, 2)))
    assert np.array_equal(full, saved)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_boolean_masks_select_like_numpy(backend):
    X = points(30)
    K = kernel_operator(as_backend(X, backend, np.float64), kernel="rbf", gamma=0.3)
    dense = dense_kernel(X, X, "rbf", {"gamma": 0.3})
    mask = np.zeros(30, dtype=bool)
    mask[[2, 11, 29]] = True
    for m in (mask, torch.from_numpy(mask), mask.tolist()):
        assert np.allclose(host(K.columns(m)), dense[:, mask], atol=1e-12)
        assert np.allclose(host(K.rows(m)), dense[mask], atol=1e-12)
        assert np.allclose(host(K.block(m, m)), dense[np.ix_(mask, mask)], atol=1e-12)
    assert tuple(K.columns(np.zeros(30, dtype=bool)).shape) == (30, 0)
    with pytest.raises(ValueError, match="length 30.*got length 6"):
        K.columns(mask[:6])
    with pytest.raises(ValueError, match="length 30.*got length 31"):
        K.block(rows=np.ones(31, dtype=bool))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_indices_of_other_types_and_libraries(backend):
    X = points(30)
    K = kernel_operator(as_backend(X, backend, np.float64), kernel="rbf", gamma=0.3)
    expected = dense_kernel(X, X, "rbf", {"gamma": 0.3})[:, [4, 0, 29]]
    for idx in ([4, 0, -1], (4, 0, 29), np.array([4, 0, 29], dtype=np.int32), np.array([4, 0, 29], dtype=np.uint8),
                torch.tensor([4, 0, 29], dtype=torch.int32), torch.tensor([4, 0, -1])):
        assert np.allclose(host(K.columns(idx)), expected, atol=1e-12)
    assert np.allclose(host(K.rows(range(4, 6))), dense_kernel(X[4:6], X, "rbf", {"gamma": 0.3}), atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_bad_indices_are_refused_not_misread(backend):
    # Fractional indices were truncated (2.7 -> column 2) and 2-D ones failed
    # with a broadcast error deep inside.
    K = kernel_operator(as_backend(points(30), backend, np.float64), kernel="rbf")
    for bad in ([2.7], [2.0], np.array([1.0, 3.0]), torch.tensor([1.0, 3.0]), ["a"]):
        with pytest.raises(TypeError, match="integers or a boolean mask; got dtype"):
            K.columns(bad)
        with pytest.raises(TypeError, match="row indices must be integers"):
            K.rows(bad)
    for bad in ([[1, 2]], np.ones((2, 2), dtype=int), torch.tensor([[1, 2]]), 3):
        with pytest.raises(ValueError, match="1-D.*got shape"):
            K.columns(bad)
        with pytest.raises(ValueError, match="1-D.*got shape"):
            K.block(bad, [0])
    with pytest.raises(IndexError, match=r"column indices must be in \[-30, 30\); got values from 0 to 30"):
        K.columns(torch.tensor([0, 30]))


def torch_kernel(name, X, params):
    """The dense kernel matrix in plain torch operations, for reference gradients. Zero rows
    (cosine) and 0 / 0 terms (chi2) go through a where() of 1, so that their gradients stay finite."""
    if name == "rbf":
        return torch.exp(-params["gamma"] * ((X[:, None, :] - X[None, :, :]) ** 2).sum(axis=2))
    if name == "polynomial":
        return (X @ X.T / X.shape[1] + params["coef0"]) ** params["degree"]
    if name == "cosine":
        squares = (X * X).sum(axis=1, keepdim=True)
        U = X / torch.sqrt(torch.where(squares > 0, squares, 1.0))
        return U @ U.T
    sums = X[:, None, :] + X[None, :, :]
    terms = (X[:, None, :] - X[None, :, :]) ** 2 / torch.where(sums > 0, sums, 1.0)
    return torch.exp(-params["gamma"] * terms.sum(axis=2))


@pytest.mark.parametrize("name,params", [("rbf", {"gamma": 0.3}), ("polynomial", {"degree": 3, "coef0": 1.0}),
                                         ("cosine", {}), ("chi2", {"gamma": 0.5})])
@pytest.mark.parametrize("memory_limit", [DEFAULT_MEMORY_LIMIT, 4_000])
def test_products_carry_gradients(name, params, memory_limit):
    # K @ v used to write the exact diagonal in place into the kernel's output,
    # which autograd keeps for the backward pass. The polynomial diagonal
    # depends on x, so its gradient checks that the diagonal is placed right.
    # Cosine (unit rows) and chi2 (per-feature terms) used to write over
    # tensors autograd had kept; their points include a zero row (cosine)
    # and zero features (chi2), whose gradients must stay finite.
    X0 = torch.from_numpy(kernel_points(name, 40, d=3))
    V = torch.from_numpy(np.random.default_rng(1).standard_normal((40, 2)))
    weights = torch.from_numpy(np.random.default_rng(2).standard_normal((40, 2)))
    grads = {}
    for how in ("matmat", "rmatmat", "block"):
        X = X0.clone().requires_grad_(True)
        K = kernel_operator(X, kernel=name, memory_limit=memory_limit, **params)
        out = K.block() @ V if how == "block" else getattr(K, how)(V)
        (out * weights).sum().backward()
        grads[how] = X.grad
    assert float(grads["block"].norm()) > 0
    for how in ("matmat", "rmatmat"):
        assert torch.allclose(grads[how], grads["block"], rtol=1e-10, atol=1e-10)
    X = X0.clone().requires_grad_(True)
    ((torch_kernel(name, X, params) @ V) * weights).sum().backward()
    assert torch.allclose(grads["block"], X.grad, rtol=1e-10, atol=1e-10)
    X = X0.clone().requires_grad_(True)
    (kernel_operator(X, kernel=name, **params).columns([3, 20, 0]) * weights[:, :1]).sum().backward()
    Xr = X0.clone().requires_grad_(True)
    (torch_kernel(name, Xr, params)[:, [3, 20, 0]] * weights[:, :1]).sum().backward()
    assert torch.allclose(X.grad, Xr.grad, rtol=1e-10, atol=1e-10)
    with torch.no_grad():  # the in-place path, for products without autograd
        K = kernel_operator(X0, kernel=name, memory_limit=memory_limit, **params)
        assert torch.allclose(K.matmat(V), K.block() @ V, rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_numpy_matrix_points_are_plain_arrays():
    X = points(20, d=3)
    K = kernel_operator(np.asmatrix(X), np.asmatrix(X[:5]), kernel="rbf")
    assert type(K.X) is np.ndarray and type(K.Y) is np.ndarray
    assert np.allclose(K.block(), dense_kernel(X, X[:5], "rbf", {"gamma": 1 / 3}), atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_complex_blocks_are_multiplied_as_real_and_imaginary_parts(backend):
    """K is real: a complex block (a complex sketch, a complex shift of K) is
    multiplied as K Re V + i K Im V; torch refused the mixed product, and the
    SVD of K + 0.5i I matches LAPACK's on the dense matrix."""
    X = points(80, 3)
    K = kernel_operator(as_backend(X, backend, np.float64))
    D = dense_kernel(X, X, "rbf", {"gamma": 1 / 3})
    rng = np.random.default_rng(1)
    V = rng.standard_normal((80, 4)) + 1j * rng.standard_normal((80, 4))
    block = torch.from_numpy(V) if backend == "torch" else V
    np.testing.assert_allclose(host(K.matmat(block)), D @ V, atol=1e-12 * np.abs(D @ V).max())
    np.testing.assert_allclose(host(K.rmatmat(block)), D.T @ V, atol=1e-12 * np.abs(D.T @ V).max())
    S = host(randla.svd(randla.Shifted(K, 0.5j), 70, rng=0).S)  # a sketch of all 80 columns: exact
    exact = np.linalg.svd(D + 0.5j * np.eye(80), compute_uv=False)[:70]
    np.testing.assert_allclose(S, exact, rtol=1e-10)


def test_meta_points_are_refused():
    """Points on torch's 'meta' device hold no values: a clear TypeError."""
    with pytest.raises(TypeError, match="X is a torch tensor on the 'meta' device"):
        kernel_operator(torch.empty(20, 3, device="meta", dtype=torch.float64))


@pytest.mark.parametrize("block_dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_torch_blocks_of_another_dtype_are_multiplied_in_the_operators(block_dtype):
    """torch multiplies equal dtypes only: a half or double block is cast to K's dtype, as attention_operator does."""
    torch.manual_seed(0)
    X = torch.randn(50, 3, dtype=torch.bfloat16)
    V = torch.randn(50, 2).to(block_dtype)
    K = kernel_operator(X, gamma=0.5)
    dense = torch.from_numpy(pairwise_kernels(X.double().numpy(), metric="rbf", gamma=0.5))
    for product in (K @ V, K.matmat(V), K.rmatmat(V)):
        assert product.dtype == K.dtype == torch.float32
        torch.testing.assert_close(product.double(), dense @ V.float().double(), rtol=1e-5, atol=1e-5)
