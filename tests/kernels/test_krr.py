"""randla.kernels.krr: Nystrom and preconditioned-CG kernel ridge regression
against exact solutions (scikit-learn's KernelRidge, numpy.linalg.solve)."""

from __future__ import annotations

import dataclasses
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.kernel_ridge import KernelRidge

import randla
from randla.kernels import KRRResult, kernel_ridge, nystrom_kernel_ridge
from randla.kernels.functions import make_kernel
from randla.kernels.pcg import KernelRows, PSDFactor, block_pcg
from randla.testing import kernel_regression

GAMMA = 0.1


def rbf(A, B, gamma=GAMMA):
    d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2 * A @ B.T
    return np.exp(-gamma * np.clip(d, 0, None))


def exact_dual(X, y, alpha, gamma=GAMMA):
    return np.linalg.solve(rbf(X, X, gamma) + alpha * np.eye(X.shape[0]), y)


def rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def every(n, m):
    """m evenly spread row indices out of n (the points are i.i.d., so uniform)."""
    return np.linspace(0, n - 1, m).astype(np.int64)


@pytest.fixture(scope="module")
def problem():
    return kernel_regression(3000, d=5, noise=0.1, rng=0)


@pytest.fixture(scope="module")
def test_points():
    return np.random.default_rng(1).standard_normal((500, 5))


@pytest.fixture(scope="module")
def small():
    return kernel_regression(600, d=4, noise=0.1, rng=2)


# -- accuracy against the exact solution ------------------------------------------


@pytest.mark.parametrize("alpha", [1.0, 0.1])
def test_nystrom_matches_sklearn_kernel_ridge(problem, test_points, alpha):
    X, y = problem
    truth = problem.target(test_points)
    exact = KernelRidge(alpha=alpha, kernel="rbf", gamma=GAMMA).fit(X, y).predict(test_points)
    model = nystrom_kernel_ridge(X, y, alpha=alpha, landmarks=every(3000, 1000), gamma=GAMMA)
    pred = model.predict(test_points)
    # Measured: relative difference 2e-4 (alpha 1) and 7e-4 (alpha 0.1).
    assert rel(pred, exact) <= 3e-3
    rmse_exact = np.sqrt(np.mean((exact - truth) ** 2))
    rmse = np.sqrt(np.mean((pred - truth) ** 2))
    assert abs(rmse - rmse_exact) <= 0.02 * rmse_exact
    assert model.solver == "direct" and model.converged and model.n_iter == 0
    assert model.residuals.shape == (1,) and model.residuals[0] <= 1e-12


@pytest.mark.parametrize("solver", ["direct", "pcg"])
def test_all_points_as_landmarks_is_exact_krr(small, solver):
    X, y = small
    c = exact_dual(X, y, alpha=0.1)
    Xt = np.random.default_rng(3).standard_normal((200, 4))
    kw = {"tol": 1e-12, "max_iter": 200} if solver == "pcg" else {}
    model = nystrom_kernel_ridge(X, y, alpha=0.1, landmarks=np.arange(600), solver=solver, gamma=GAMMA, **kw)
    assert rel(model.predict(Xt), rbf(Xt, X) @ c) <= 1e-8
    assert rel(model.predict(X), rbf(X, X) @ c) <= 1e-8


def test_nystrom_pcg_equals_direct(problem, test_points):
    X, y = problem
    idx = every(3000, 400)
    direct = nystrom_kernel_ridge(X, y, alpha=0.1, landmarks=idx, gamma=GAMMA)
    pcg = nystrom_kernel_ridge(X, y, alpha=0.1, landmarks=idx, solver="pcg", tol=1e-10, gamma=GAMMA, rng=0)
    assert pcg.converged and pcg.solver == "pcg" and pcg.preconditioner == "falkon"
    assert pcg.n_iter <= 60  # measured 40; unpreconditioned CG on this system needs thousands
    assert rel(pcg.predict(test_points), direct.predict(test_points)) <= 1e-7


def test_kernel_ridge_pcg_solves_the_exact_system(small):
    X, y = small
    c = exact_dual(X, y, alpha=1e-3, gamma=0.05)
    plain = kernel_ridge(X, y, alpha=1e-3, gamma=0.05, preconditioner=None, tol=1e-8, max_iter=2000)
    fast = kernel_ridge(X, y, alpha=1e-3, gamma=0.05, tol=1e-8, rng=0)
    assert plain.converged and fast.converged
    # Measured: 24 iterations with the rank-100 Nystrom preconditioner, 300 without.
    assert 5 * fast.n_iter <= plain.n_iter
    for model in (plain, fast):
        assert rel(model.dual_coef, c) <= 1e-5
        K = rbf(X, X, 0.05)
        true_residual = np.linalg.norm(y - K @ model.dual_coef - 1e-3 * model.dual_coef) / np.linalg.norm(y)
        assert true_residual <= 2e-8
        assert model.centers is not None and model.n_centers == 600
        np.testing.assert_array_equal(model.indices, np.arange(600))


def test_kernel_ridge_matches_sklearn(problem, test_points):
    X, y = problem
    exact = KernelRidge(alpha=0.1, kernel="rbf", gamma=GAMMA).fit(X, y).predict(test_points)
    model = kernel_ridge(X, y, alpha=0.1, gamma=GAMMA, rng=0)
    assert model.converged and model.n_iter <= 40
    assert rel(model.predict(test_points), exact) <= 1e-5


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_numpy_matrix_points_and_targets_are_plain_arrays(small):
    X, y = small
    plain = kernel_ridge(X, y, alpha=0.1, gamma=0.05, tol=1e-8, rng=0)
    model = kernel_ridge(np.asmatrix(X), np.asmatrix(y).T, alpha=0.1, gamma=0.05, tol=1e-8, rng=0)
    assert type(model.dual_coef) is np.ndarray and model.dual_coef.shape == (600, 1)
    np.testing.assert_allclose(model.dual_coef[:, 0], plain.dual_coef, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.predict(np.asmatrix(X[:5]))[:, 0], plain.predict(X[:5]), rtol=1e-12, atol=1e-12)


def test_residual_history(small):
    X, y = small
    model = kernel_ridge(X, y, alpha=1e-2, gamma=0.05, tol=1e-9, rng=0)
    r = model.residuals
    assert model.converged
    assert r.shape == (model.n_iter + 1,) and r[0] == 1.0
    assert r[-1] <= 1e-9 < r[-2]
    # Not monotone step by step, but decreasing overall: every stretch of 5
    # iterations gains.
    assert np.all(r[5:] < r[:-5])


@pytest.mark.parametrize("which", ["full", "nystrom"])
def test_max_iter_too_small_is_reported(small, which):
    X, y = small
    if which == "full":
        model = kernel_ridge(X, y, alpha=1e-3, gamma=0.05, max_iter=3, tol=1e-12, rng=0)
    else:
        model = nystrom_kernel_ridge(
            X, y, alpha=1e-3, landmarks=every(600, 200), solver="pcg", max_iter=3, tol=1e-12, gamma=0.05
        )
    assert model.converged is False
    assert model.n_iter == 3 and model.residuals.shape == (4,)
    assert model.residuals[-1] > 1e-12
    assert np.all(np.isfinite(model.predict(X[:5])))


@pytest.mark.parametrize("preconditioner", ["rpcholesky", "greedy"])
def test_landmark_preconditioners(small, preconditioner):
    X, y = small
    c = exact_dual(X, y, alpha=1e-3, gamma=0.05)
    model = kernel_ridge(X, y, alpha=1e-3, gamma=0.05, preconditioner=preconditioner, tol=1e-8, rng=0)
    assert model.converged and model.n_iter <= 60 and model.preconditioner == preconditioner
    assert rel(model.dual_coef, c) <= 1e-5


def test_zero_targets_need_no_iteration(small):
    X, _ = small
    model = kernel_ridge(X, np.zeros(600), alpha=0.1, rng=0)
    assert model.converged and model.n_iter == 0
    assert np.all(model.dual_coef == 0)


# -- shapes, multi-output, backends ------------------------------------------------


# -- sample weights ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights():
    """Integer weights 0..3: a quarter of the points left out, others counted up to 3 times."""
    return np.random.default_rng(4).integers(0, 4, 600).astype(np.float64)


def weighted_exact(X, y, w, Xt, alpha=0.1):
    return KernelRidge(alpha=alpha, kernel="rbf", gamma=GAMMA).fit(X, y, sample_weight=w).predict(Xt)


@pytest.mark.parametrize("preconditioner", ["nystrom", "rpcholesky", None])
def test_kernel_ridge_sample_weight_matches_sklearn(small, weights, preconditioner):
    X, y = small
    Xt = np.random.default_rng(3).standard_normal((200, 4))
    model = kernel_ridge(X, y, alpha=0.1, gamma=GAMMA, sample_weight=weights, preconditioner=preconditioner,
                         tol=1e-10, max_iter=1000, rng=0)
    assert model.converged
    # Measured: 3e-11 to 1e-10 against scikit-learn's Cholesky solve.
    assert rel(model.predict(Xt), weighted_exact(X, y, weights, Xt)) <= 1e-8
    # Points of weight 0 are left out of the fit: their coefficients are 0.
    assert np.all(model.dual_coef[weights == 0] == 0)


@pytest.mark.parametrize("solver", ["direct", "pcg"])
def test_nystrom_sample_weight_with_every_weighted_point_is_exact(small, weights, solver):
    """By the representer theorem the weighted fit lies in the span of the points of positive weight."""
    X, y = small
    Xt = np.random.default_rng(3).standard_normal((200, 4))
    positive = np.flatnonzero(weights > 0)
    kw = {"tol": 1e-12, "max_iter": 200} if solver == "pcg" else {}
    for landmarks in ("rpcholesky", positive):
        model = nystrom_kernel_ridge(X, y, alpha=0.1, gamma=GAMMA, sample_weight=weights, solver=solver,
                                     landmarks=landmarks, n_components=positive.size, rng=0, **kw)
        assert set(model.indices) == set(positive)
        assert rel(model.predict(Xt), weighted_exact(X, y, weights, Xt)) <= 1e-8


@pytest.mark.parametrize("fit", ["nystrom", "nystrom_pcg", "full"])
def test_integer_weights_equal_repeated_points(small, weights, fit):
    X, y = small
    Xt = np.random.default_rng(3).standard_normal((200, 4))
    counts = weights.astype(int)
    Xr, yr = np.repeat(X, counts, axis=0), np.repeat(y, counts)
    idx = every(600, 100)
    idx = idx[weights[idx] > 0]
    idx_r = (np.cumsum(counts) - counts)[idx]  # the first copy of each landmark
    if fit == "full":
        a = kernel_ridge(X, y, alpha=0.1, gamma=GAMMA, sample_weight=weights, tol=1e-11, rng=0)
        b = kernel_ridge(Xr, yr, alpha=0.1, gamma=GAMMA, tol=1e-11, rng=0)
    else:
        kw = {"solver": "pcg", "tol": 1e-11, "max_iter": 500} if fit == "nystrom_pcg" else {}
        a = nystrom_kernel_ridge(X, y, alpha=0.1, gamma=GAMMA, sample_weight=weights, landmarks=idx, rng=0, **kw)
        b = nystrom_kernel_ridge(Xr, yr, alpha=0.1, gamma=GAMMA, landmarks=idx_r, rng=0, **kw)
        np.testing.assert_array_equal(a.centers, b.centers)
    assert rel(a.predict(Xt), b.predict(Xt)) <= 1e-8


def test_unit_weights_change_nothing(small):
    X, y = small
    for fit in (nystrom_kernel_ridge, kernel_ridge):
        a = fit(X, y, alpha=0.1, gamma=GAMMA, rng=0)
        b = fit(X, y, alpha=0.1, gamma=GAMMA, rng=0, sample_weight=np.ones(600))
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_allclose(b.dual_coef, a.dual_coef, rtol=0, atol=1e-12 * np.abs(a.dual_coef).max())


def test_sample_weight_torch(small, weights):
    X, y = small
    Xt = np.random.default_rng(3).standard_normal((50, 4))
    model = kernel_ridge(torch.tensor(X), torch.tensor(y), alpha=0.1, gamma=GAMMA, tol=1e-10,
                         sample_weight=torch.tensor(weights), rng=0)
    assert rel(model.predict(torch.tensor(Xt)).numpy(), weighted_exact(X, y, weights, Xt)) <= 1e-8


@pytest.mark.parametrize(
    "sample_weight, error, match",
    [
        (np.ones(599), ValueError, r"sample_weight must have shape \(n,\) = \(600,\)"),
        (np.ones((600, 1)), ValueError, r"sample_weight must have shape"),
        (-np.ones(600), ValueError, "sample_weight must be finite and non-negative"),
        (np.full(600, np.nan), ValueError, "sample_weight must be finite and non-negative"),
        (np.zeros(600), ValueError, "sample_weight is zero everywhere"),
        (np.full(600, "a"), TypeError, "sample_weight must hold real numbers"),
    ],
)
def test_bad_sample_weight(small, sample_weight, error, match):
    X, y = small
    for fit in (nystrom_kernel_ridge, kernel_ridge):
        with pytest.raises(error, match=match):
            fit(X, y, sample_weight=sample_weight)


def test_landmarks_exceeding_the_weighted_points(small):
    X, y = small
    w = (np.arange(600) < 50).astype(float)
    with pytest.raises(ValueError, match=r"int in \[1, 50\] \(the number of points of positive weight\)"):
        nystrom_kernel_ridge(X, y, sample_weight=w, n_components=100)
    model = nystrom_kernel_ridge(X, y, sample_weight=w, landmarks="uniform", rng=0)  # 'auto' capped at 50
    assert model.n_centers == 50 and model.indices.max() < 50
    # Landmarks given by index may outnumber them: Falkon's sample takes the 50.
    Xt = np.random.default_rng(3).standard_normal((50, 4))
    direct = nystrom_kernel_ridge(X, y, gamma=GAMMA, sample_weight=w, landmarks=every(600, 80))
    pcg = nystrom_kernel_ridge(X, y, gamma=GAMMA, sample_weight=w, landmarks=every(600, 80), solver="pcg",
                               tol=1e-10, max_iter=500, rng=0)
    assert pcg.converged and rel(pcg.predict(Xt), direct.predict(Xt)) <= 1e-6


@pytest.mark.parametrize("alphas", [[0.1, 0.1, 0.1], [0.1, 1.0, 0.01]], ids=["one_alpha", "alpha_per_target"])
@pytest.mark.parametrize("fit", ["nystrom", "nystrom_pcg", "full"])
def test_multi_output_equals_column_by_column(small, fit, alphas):
    X, y = small
    Y = np.column_stack([y, np.cos(X[:, 0]), 3 * y])

    def run(targets, alpha):
        if fit == "full":
            return kernel_ridge(X, targets, alpha=alpha, gamma=GAMMA, tol=1e-10, max_iter=500, rng=0)
        solver = "pcg" if fit == "nystrom_pcg" else "direct"
        kw = {"tol": 1e-10, "max_iter": 300} if solver == "pcg" else {}
        return nystrom_kernel_ridge(
            X, targets, alpha=alpha, landmarks=every(600, 150), solver=solver, gamma=GAMMA, **kw
        )

    model = run(Y, np.array(alphas))
    assert model.converged
    assert model.dual_coef.shape == (model.n_centers, 3)
    pred = model.predict(X[:7])
    assert pred.shape == (7, 3)
    for j in range(3):
        single = run(Y[:, j], alphas[j])
        assert single.dual_coef.shape == (model.n_centers,) and single.predict(X[:7]).shape == (7,)
        assert rel(pred[:, j], single.predict(X[:7])) <= 1e-8
    one = run(Y[:, :1], [alphas[0]])
    assert one.dual_coef.shape == (model.n_centers, 1) and one.predict(X[:2]).shape == (2, 1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch(small, dtype):
    X, y = small
    Xt, yt = torch.as_tensor(X, dtype=dtype), torch.as_tensor(y, dtype=dtype)
    idx = every(600, 150)
    tol = 1e-10 if dtype == torch.float64 else 3e-2
    ref = nystrom_kernel_ridge(X, y, alpha=0.1, landmarks=idx, gamma=GAMMA)
    model = nystrom_kernel_ridge(Xt, yt, alpha=0.1, landmarks=torch.as_tensor(idx), gamma=GAMMA)
    pred = model.predict(Xt[:50])
    assert isinstance(pred, torch.Tensor) and pred.dtype == dtype and model.dual_coef.dtype == dtype
    assert rel(pred.numpy(), ref.predict(X[:50])) <= tol
    full_ref = kernel_ridge(X, y, alpha=0.1, gamma=GAMMA, rng=0)
    full = kernel_ridge(Xt, yt, alpha=0.1, gamma=GAMMA, rng=0)
    assert full.converged and full.dual_coef.dtype == dtype
    full_tol = 1e-6 if dtype == torch.float64 else 1e-3
    assert rel(full.predict(Xt[:50]).numpy(), full_ref.predict(X[:50])) <= full_tol
    falkon = nystrom_kernel_ridge(
        Xt, yt, alpha=0.1, landmarks=idx, solver="pcg", tol=1e-10, gamma=GAMMA, rng=0
    )
    assert falkon.converged and falkon.dual_coef.dtype == dtype
    assert rel(falkon.predict(Xt[:50]).numpy(), ref.predict(X[:50])) <= max(tol, 1e-7)
    # NumPy targets with torch points are converted.
    mixed = nystrom_kernel_ridge(Xt, y, alpha=0.1, landmarks=idx, gamma=GAMMA)
    assert mixed.dual_coef.dtype == dtype


def test_float32_numpy_keeps_dtype(small):
    X, y = small
    model = nystrom_kernel_ridge(X.astype(np.float32), y, alpha=0.1, landmarks=every(600, 100), gamma=GAMMA)
    assert model.dual_coef.dtype == np.float32 and model.predict(X[:3].astype(np.float32)).dtype == np.float32
    assert model.predict(X[:3]).dtype == np.float32  # float64 points are cast to the model's dtype


# -- streaming and memory --------------------------------------------------------------


def test_streamed_accumulation_equals_dense(small):
    X, y = small
    kernel = make_kernel("rbf", 4, {"gamma": GAMMA})
    S = X[every(600, 50)]
    T = np.triu(np.random.default_rng(0).standard_normal((50, 50)))
    C = rbf(X, S)
    rows = KernelRows(kernel, np, X, S, memory_limit=20_000, cache=True)
    assert rows.cache is None and rows.step < 600  # many blocks
    G, g = rows.gram(y[:, None], T)
    np.testing.assert_allclose(G, (C @ T).T @ (C @ T), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(g, (C @ T).T @ y[:, None], rtol=1e-12, atol=1e-10)
    V = np.random.default_rng(1).standard_normal((50, 2))
    np.testing.assert_allclose(rows.normal(V), C.T @ (C @ V), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(rows.matmat(V), C @ V, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rows.rmatmat(y[:, None]), C.T @ y[:, None], rtol=1e-12, atol=1e-10)
    cached = KernelRows(kernel, np, X, S, memory_limit=2**24, cache=True)
    assert cached.cache is not None
    np.testing.assert_allclose(cached.normal(V), rows.normal(V), rtol=1e-12)


def test_small_memory_limit_gives_the_same_model(small):
    X, y = small
    idx = every(600, 100)
    a = nystrom_kernel_ridge(X, y, alpha=0.1, landmarks=idx, gamma=GAMMA)
    b = nystrom_kernel_ridge(X, y, alpha=0.1, landmarks=idx, gamma=GAMMA, memory_limit=10_000)
    assert b.memory_limit == 10_000
    np.testing.assert_allclose(b.predict(X), a.predict(X), rtol=1e-10, atol=1e-12)
    c = kernel_ridge(X, y, alpha=0.1, gamma=GAMMA, memory_limit=10_000, rng=0)
    d = kernel_ridge(X, y, alpha=0.1, gamma=GAMMA, rng=0)
    assert c.n_iter == d.n_iter
    np.testing.assert_allclose(c.dual_coef, d.dual_coef, rtol=1e-8, atol=1e-10)


def test_memory_stays_within_the_limit():
    n, m, limit = 40_000, 300, 2**21
    X, y = kernel_regression(n, d=5, rng=4)
    idx = every(n, m)
    assert n * m * 8 > 40 * limit  # C would take 96 MB
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        model = nystrom_kernel_ridge(X, y, alpha=0.1, landmarks=idx, gamma=GAMMA, memory_limit=limit)
        pred = model.predict(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The limit for kernel blocks, the m x m matrices, and O(n) vectors.
    assert peak <= 2 * limit + 6 * m * m * 8 + 4 * n * 8, peak
    assert pred.shape == (n,) and np.sqrt(np.mean((pred - y) ** 2)) < 0.3


# -- landmarks by name -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["rpcholesky", "uniform", "greedy", "kmeans++", "leverage"])
def test_landmarks_by_name(problem, test_points, method):
    X, y = problem
    truth = problem.target(test_points)
    model = nystrom_kernel_ridge(X, y, alpha=0.1, n_components=300, landmarks=method, gamma=GAMMA, rng=0)
    assert 0 < model.n_centers <= 300 and np.unique(model.indices).size == model.n_centers
    np.testing.assert_array_equal(model.centers, X[model.indices])
    rmse = np.sqrt(np.mean((model.predict(test_points) - truth) ** 2))
    # Exact KRR: 0.062 on these points; 300 landmarks of any kind: 0.063 - 0.067.
    assert rmse <= 0.08


def test_candidates_and_default_size(problem):
    X, y = problem
    model = nystrom_kernel_ridge(X, y, landmarks="uniform", rng=0)
    assert model.n_centers == 100  # max(100, ceil(sqrt(3000)))
    sub = nystrom_kernel_ridge(X, y, n_components=50, landmarks="rpcholesky", candidates=400, rng=0)
    assert sub.n_centers <= 50 and sub.indices.max() < 3000


def test_same_rng_same_model(problem, untouched_global_rng):
    X, y = problem
    kw = dict(alpha=0.1, n_components=100, landmarks="rpcholesky", candidates=1000, gamma=GAMMA)
    a = nystrom_kernel_ridge(X, y, rng=5, **kw)
    b = nystrom_kernel_ridge(X, y, rng=np.random.default_rng(5), **kw)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.dual_coef, b.dual_coef)
    assert not np.array_equal(a.indices, nystrom_kernel_ridge(X, y, rng=6, **kw).indices)


# -- the result object -------------------------------------------------------------------


def test_result_is_frozen_and_unpacks(small):
    X, y = small
    model = nystrom_kernel_ridge(X, y, landmarks=every(600, 20), gamma=GAMMA)
    assert isinstance(model, KRRResult)
    coef, centers = model
    assert coef.shape == (20,) and centers.shape == (20, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.alpha = 2.0
    assert "dual_coef=array(20,)" in repr(model)
    assert model.kernel.name == "rbf" and model.kernel.params["gamma"] == GAMMA


def test_predict_validates(small):
    X, y = small
    model = nystrom_kernel_ridge(X, y, landmarks=every(600, 20))
    with pytest.raises(ValueError, match="X has 3 features but the model was fitted on 4"):
        model.predict(X[:, :3])
    with pytest.raises(TypeError, match="same array library"):
        model.predict(torch.as_tensor(X))
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.predict(np.full((2, 4), np.nan))


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"y": np.zeros(599)}, ValueError, "y has 599 rows but X has 600 points"),
        ({"y": np.r_[np.nan, np.zeros(599)]}, ValueError, "y contains NaN or Inf"),
        ({"y": np.zeros((600, 2, 1))}, ValueError, r"shape \(n,\) or \(n, n_targets\)"),
        ({"y": np.zeros((600, 0))}, ValueError, r"shape \(n,\) or \(n, n_targets\)"),
        ({"y": "abc"}, TypeError, "y must be a NumPy array or torch tensor"),
        ({"y": np.zeros(600, dtype=complex)}, TypeError, "y must hold real numbers"),
        ({"alpha": 0.0}, ValueError, "`alpha` must be a positive finite float.*got 0.0"),
        ({"alpha": -1}, ValueError, "`alpha` must be a positive"),
        ({"alpha": np.nan}, ValueError, "`alpha` must be a positive"),
        ({"alpha": True}, ValueError, "`alpha` must be a positive"),
        ({"alpha": [0.1, 0.2]}, ValueError, r"one penalty per target, shape \(1,\); got shape \(2,\)"),
        ({"alpha": np.array([-0.1])}, ValueError, "`alpha` must be a positive"),
        ({"alpha": np.array([np.inf])}, ValueError, "`alpha` must be a positive"),
        (
            {"n_components": 601, "landmarks": "uniform"},
            ValueError,
            r"`n_components` must be 'auto' or an int in \[1, 600\]",
        ),
        ({"n_components": 0, "landmarks": "uniform"}, ValueError, "`n_components` must be"),
        ({"n_components": 5}, ValueError, "`n_components`=5 but 20 landmark indices"),
        ({"landmarks": "random"}, ValueError, "`landmarks` must be one of 'rpcholesky'.*got 'random'"),
        ({"landmarks": [0, 0, 1]}, ValueError, "landmark indices must be distinct"),
        ({"landmarks": [0, 600]}, ValueError, r"must lie in \[0, 599\]"),
        ({"landmarks": [-1, 2]}, ValueError, r"must lie in \[0, 599\]"),
        ({"landmarks": [0.0, 1.0]}, TypeError, "array of row indices"),
        ({"landmarks": np.zeros((2, 2), dtype=int)}, ValueError, "non-empty 1-D array"),
        ({"candidates": 100}, ValueError, "`candidates` applies to landmarks chosen by a method name"),
        (
            {"landmarks": "uniform", "n_components": 50, "candidates": 10},
            ValueError,
            r"`candidates` must be None or an int in \[n_components, n\] = \[50, 600\]",
        ),
        ({"solver": "cholesky"}, ValueError, "`solver` must be one of 'direct', 'pcg'"),
        ({"tol": 1e-3}, ValueError, "apply to solver='pcg' only"),
        ({"max_iter": 10}, ValueError, "apply to solver='pcg' only"),
        ({"solver": "pcg", "tol": 1.5}, ValueError, r"`tol` must be a float in \(0, 1\)"),
        ({"solver": "pcg", "max_iter": 0}, ValueError, "`max_iter` must be an int >= 1"),
        ({"bandwidth": -1.0}, ValueError, "`bandwidth` of the 'rbf' kernel must be a positive"),
        ({"memory_limit": 0}, ValueError, "`memory_limit` must be a positive int"),
        ({"rng": "seed"}, TypeError, "`rng` must be None, an int"),
    ],
)
def test_nystrom_bad_input(small, kwargs, error, match):
    X, y = small
    args = {"y": y, "landmarks": every(600, 20)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        nystrom_kernel_ridge(X, **args)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"y": np.zeros(10)}, ValueError, "y has 10 rows but X has 600 points"),
        ({"alpha": 0}, ValueError, "`alpha` must be a positive"),
        ({"rank": 601}, ValueError, r"`rank` must be 'auto' or an int in \[1, 600\]"),
        ({"rank": 10, "preconditioner": None}, ValueError, "`rank` is the rank of the preconditioner"),
        ({"preconditioner": "jacobi"}, ValueError, "`preconditioner` must be one of 'nystrom', .* or None"),
        ({"tol": 0.0}, ValueError, r"`tol` must be a float in \(0, 1\)"),
        ({"max_iter": 2.5}, ValueError, "`max_iter` must be an int >= 1"),
    ],
)
def test_kernel_ridge_bad_input(small, kwargs, error, match):
    X, y = small
    args = {"y": y}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        kernel_ridge(X, **args)


def test_bad_points():
    with pytest.raises(ValueError, match="'matern' kernel does not take sparse points"):
        nystrom_kernel_ridge(sp.random(50, 3, density=0.5, format="csr"), np.zeros(50), kernel="matern")
    with pytest.raises(ValueError, match="X contains NaN or Inf"):
        kernel_ridge(np.full((5, 2), np.inf), np.zeros(5))


def test_user_data_untouched(small):
    X, y = small
    X0, y0 = X.copy(), y.copy()
    w = np.linspace(0, 2, 600)
    w0 = w.copy()
    nystrom_kernel_ridge(X, y, landmarks="uniform", n_components=30, rng=0, sample_weight=w)
    kernel_ridge(X, y, rng=0, max_iter=5, sample_weight=w)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(w, w0)


# -- the linear-algebra pieces ---------------------------------------------------------------


def test_psd_factor_falls_back_to_eigh_and_pseudo_inverse():
    V = np.linalg.qr(np.random.default_rng(0).standard_normal((4, 4)))[0]
    W = (V * np.array([2.0, 1.0, 1e-3, -1e-2])) @ V.T  # indefinite beyond the shift
    factor = PSDFactor(W, eps=1e-16)
    assert not factor.cholesky and factor.rank == 3
    np.testing.assert_allclose(factor.T.T @ W @ factor.T, np.eye(3), atol=1e-10)
    ok = PSDFactor(W @ W, eps=1e-16)
    assert ok.cholesky and ok.rank == 4
    L_inv = ok.T.T
    np.testing.assert_allclose(L_inv @ (W @ W + ok.shift * np.eye(4)) @ L_inv.T, np.eye(4), atol=1e-8)


def test_block_pcg_zero_column_and_breakdown():
    A = np.diag([1.0, 2.0, 3.0])
    r = block_pcg(lambda V: A @ V, np.column_stack([np.ones(3), np.zeros(3)]), tol=1e-12)
    assert r.converged and r.n_iter == 3
    np.testing.assert_allclose(r.x[:, 0], 1 / np.array([1.0, 2.0, 3.0]))
    assert np.all(r.x[:, 1] == 0)
    indefinite = block_pcg(lambda V: -V, np.ones((3, 1)), tol=1e-8, max_iter=10)
    assert not indefinite.converged and indefinite.n_iter == 1


@pytest.mark.parametrize("solver", ["direct", "pcg"])
def test_kernel_that_vanishes_on_the_data_gives_the_zero_model(solver):
    # k(x, x) = 0 for every point: no landmark is worth taking, and exact KRR
    # predicts 0 everywhere (kernel_ridge's c = y / alpha has K c = 0).
    X, y = np.zeros((5, 2)), np.column_stack([np.arange(5.0), np.ones(5)])
    model = nystrom_kernel_ridge(X, y, kernel="linear", solver=solver, rng=0)
    assert model.converged and model.n_centers == 0
    assert model.dual_coef.shape == (0, 2)
    np.testing.assert_array_equal(model.predict(np.ones((3, 2))), np.zeros((3, 2)))
    exact = kernel_ridge(X, y[:, 0], kernel="linear", rng=0)
    np.testing.assert_array_equal(exact.predict(np.ones((3, 2))), np.zeros(3))


def test_nystrom_preconditioner_takes_one_pass_over_k(monkeypatch):
    """k(X, X) is symmetric and its trace the kernel's diagonal: neither a
    symmetry check nor trace probes may cost another evaluation of K."""
    from randla.kernels import pcg

    products = []
    original = pcg.RowsOperator.matmat
    monkeypatch.setattr(pcg.RowsOperator, "matmat", lambda self, X: products.append(X.shape[1]) or original(self, X))
    monkeypatch.setattr(pcg.RowsOperator, "rmatmat", lambda self, Y: pytest.fail("K^H was applied"))
    X, y = randla.testing.kernel_regression(400, d=4, rng=0)
    model = randla.kernel_ridge(X, y, alpha=0.1, rank=30, rng=0)
    # One product with 40 columns builds the preconditioner; then one per CG step.
    assert products == [40] + [1] * (len(products) - 1) and len(products) - 1 >= model.n_iter


# -- the Gaussian-process reading of Nystrom KRR -----------------------------------


def test_all_landmarks_give_scikit_learns_gaussian_process():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF

    X, y = kernel_regression(400, d=3, noise=0.1, rng=0)
    Xt = np.random.default_rng(1).standard_normal((100, 3))
    length, noise = 1.3, 0.05
    gp = GaussianProcessRegressor(RBF(length), alpha=noise, optimizer=None).fit(X, y)
    mean, std = gp.predict(Xt, return_std=True)
    model = nystrom_kernel_ridge(X, y, alpha=noise, n_components=400, landmarks=np.arange(400),
                                 gamma=1 / (2 * length**2))
    ours, our_std = model.predict(Xt, return_std=True)
    assert rel(ours, mean) <= 1e-7
    assert np.abs(our_std - std).max() <= 1e-8 * std.max()
    assert model.log_marginal_likelihood == pytest.approx(gp.log_marginal_likelihood_value_, rel=1e-9)


def dtc(X, y, Xt, idx, alpha, weights, gamma):
    """The projected-process (DTC) posterior and evidence from their dense definitions."""
    C, W, Ct = rbf(X, X[idx], gamma), rbf(X[idx], X[idx], gamma), rbf(Xt, X[idx], gamma)
    Q = C @ np.linalg.solve(W, C.T)
    noise = np.diag(alpha / weights)
    _, log_det = np.linalg.slogdet(Q + noise)
    evidence = -0.5 * (y @ np.linalg.solve(Q + noise, y) + log_det + len(y) * np.log(2 * np.pi))
    Sigma = np.linalg.inv(W + C.T @ np.linalg.solve(noise, C))
    mean = Ct @ Sigma @ C.T @ np.linalg.solve(noise, y)
    variance = 1 - np.sum(Ct * np.linalg.solve(W, Ct.T).T, axis=1) + np.sum((Ct @ Sigma) * Ct, axis=1)
    return mean, np.sqrt(variance), evidence


@pytest.mark.parametrize("weighted", [False, True])
def test_landmark_posterior_and_evidence_are_the_projected_process(weighted):
    X, y = kernel_regression(500, d=3, noise=0.1, rng=3)
    Xt = np.random.default_rng(4).standard_normal((80, 3))
    weights = np.random.default_rng(5).uniform(0.5, 2.0, 500) if weighted else np.ones(500)
    idx = every(500, 60)
    # A bandwidth that keeps W = k(S, S) well conditioned, for the dense reference's inverses.
    mean, std, evidence = dtc(X, y, Xt, idx, 0.02, weights, gamma=1.0)
    model = nystrom_kernel_ridge(X, y, alpha=0.02, n_components=60, landmarks=idx, gamma=1.0,
                                 sample_weight=weights if weighted else None)
    ours, our_std = model.predict(Xt, return_std=True)
    assert rel(ours, mean) <= 1e-8
    assert np.abs(our_std - std).max() <= 1e-7 * std.max()
    assert model.log_marginal_likelihood == pytest.approx(evidence, rel=1e-9)


def test_evidence_picks_the_bandwidth_the_data_came_from():
    # Targets drawn from the GP with gamma = 0.5: the evidence is highest there.
    rng = np.random.default_rng(6)
    X = rng.uniform(-3, 3, (300, 1))
    K = rbf(X, X, 0.5) + 1e-10 * np.eye(300)
    y = np.linalg.cholesky(K) @ rng.standard_normal(300) + 0.1 * rng.standard_normal(300)
    gammas = [0.05, 0.5, 5.0]
    evidence = [nystrom_kernel_ridge(X, y, alpha=0.01, n_components=100, gamma=g, rng=0).log_marginal_likelihood
                for g in gammas]
    assert int(np.argmax(evidence)) == 1


def test_posterior_std_in_torch_and_float32():
    X, y = kernel_regression(300, d=3, noise=0.1, rng=0)
    Xt = np.random.default_rng(1).standard_normal((20, 3))
    idx = every(300, 50)
    # Variances subtract k(S, x)^T W^+ k(S, x) from k(x, x): float32 rounding of the kernel
    # entries is magnified by W's conditioning, kept moderate here (gamma = 1).
    reference = nystrom_kernel_ridge(X, y, alpha=0.1, landmarks=idx, n_components=50, gamma=1.0)
    reference = reference.predict(Xt, return_std=True)[1]
    model = nystrom_kernel_ridge(torch.from_numpy(X).float(), torch.from_numpy(y).float(), alpha=0.1,
                                 landmarks=idx, n_components=50, gamma=1.0)
    _, std = model.predict(torch.from_numpy(Xt).float(), return_std=True)
    assert isinstance(std, torch.Tensor) and std.dtype == torch.float32 and std.shape == (20,)
    assert np.abs(std.numpy() - reference).max() <= 1e-3 * reference.max()


def test_posterior_is_refused_where_it_is_not_kept():
    X, y = kernel_regression(200, d=3, rng=0)
    Y = np.column_stack([y, y])
    for model in (nystrom_kernel_ridge(X, y, n_components=50, solver="pcg", rng=0),
                  kernel_ridge(X, y, rng=0),
                  nystrom_kernel_ridge(X, Y, alpha=[0.1, 1.0], n_components=50, rng=0)):
        assert model.log_marginal_likelihood is None
        with pytest.raises(ValueError, match="return_std=True needs the Gaussian-process posterior"):
            model.predict(X, return_std=True)


def test_sparse_points_fit_and_predict_as_dense():
    # TF-IDF-like rows: non-negative, sparse, unit length.
    X = sp.random_array((600, 200), density=0.05, format="csr", rng=0)
    X = sp.csr_array(X / np.sqrt(X.power(2).sum(axis=1))[:, None])
    y = np.asarray(X[:, :20].sum(axis=1)).ravel() + 0.01 * np.random.default_rng(1).standard_normal(600)
    Xt = sp.random_array((50, 200), density=0.05, format="csr", rng=2)
    exact = KernelRidge(alpha=0.05, kernel="cosine").fit(X.toarray(), y).predict(Xt.toarray())
    nystrom = nystrom_kernel_ridge(X, y, kernel="cosine", alpha=0.05, n_components=600, rng=0)
    full = kernel_ridge(X, y, kernel="cosine", alpha=0.05, tol=1e-10, rng=0)
    for model in (nystrom, full):
        assert rel(model.predict(Xt), exact) <= 1e-6
        assert rel(model.predict(Xt.toarray()), exact) <= 1e-6
    assert sp.issparse(nystrom.centers)


def _float32_problem(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5)).astype(np.float32)
    y = (np.sin(X[:, 0]) + 0.1 * rng.standard_normal(n)).astype(np.float32)
    return X, y


@pytest.mark.parametrize("alpha", [1e-1, 1e-2, 1e-3])
def test_kernel_ridge_float32_reports_the_residual_of_the_returned_coefficients(alpha):
    """float32 X: converged=True and a last residual <= tol described the float64 iterate, while the returned
    float32 coefficients' residual against the exact kernel of the points was up to 37 x tol (140 x at n=2000)."""
    X, y = _float32_problem()
    n, tol = X.shape[0], 1e-6
    K = rbf(X.astype(np.float64), X.astype(np.float64), gamma=0.2)  # the exact kernel of the given points
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = kernel_ridge(X, y, alpha=alpha, gamma=0.2, tol=tol, max_iter=500, rng=0)
    assert model.dual_coef.dtype == np.float32
    y64 = y.astype(np.float64)
    true = np.linalg.norm(y64 - (K + alpha * np.eye(n)) @ model.dual_coef.astype(np.float64)) / np.linalg.norm(y64)
    assert model.residuals[-1] == pytest.approx(true, rel=1e-6)
    assert model.converged == (true <= tol)
    said = [w for w in caught if "below what float32 resolves" in str(w.message)]
    if model.converged:
        assert not said
    if alpha == 1e-3:  # rounding c to float32 alone leaves 3.5e-6 here: tol cannot be met, and a warning says so
        assert not model.converged and len(said) == 1 and "Pass float64 X" in str(said[0].message)
    if alpha == 1e-1:  # refined against the float64 kernel, the returned coefficients meet tol (1.0e-6 before)
        assert model.converged and true <= tol


def test_kernel_ridge_float32_with_weights_reports_the_weighted_systems_residual():
    """With sample weights the residuals are those of (D^1/2 K D^1/2 + alpha I) c' = D^1/2 y, c = D^1/2 c',
    for the returned float32 coefficients; zero weights included."""
    X, y = _float32_problem(300, seed=1)
    w = np.random.default_rng(2).uniform(0.1, 10, 300)
    w[:10] = 0
    alpha, D = 0.1, np.sqrt(w)
    model = kernel_ridge(X, y, alpha=alpha, gamma=0.2, tol=1e-5, sample_weight=w, rng=0)
    c = model.dual_coef.astype(np.float64)
    K = rbf(X.astype(np.float64), X.astype(np.float64), gamma=0.2)
    c_prime = np.divide(c, D, out=np.zeros_like(c), where=D > 0)
    b = D * y.astype(np.float64)
    true = np.linalg.norm(b - (D[:, None] * K * D[None, :] + alpha * np.eye(300)) @ c_prime) / np.linalg.norm(b)
    assert model.converged and true <= 1e-5
    assert model.residuals[-1] == pytest.approx(true, rel=1e-6)
    assert np.all(c[:10] == 0)


def test_kernel_ridge_float64_takes_no_extra_check(small, monkeypatch):
    """float64 X keeps the CG as it was: no float64 copy of X, no refinement (residual=None)."""
    import randla.kernels.krr as krr

    seen = []
    original = krr.block_pcg

    def spy(*args, **kwargs):
        seen.append(kwargs.get("residual"))
        return original(*args, **kwargs)

    monkeypatch.setattr(krr, "block_pcg", spy)
    X, y = small
    kernel_ridge(X, y, alpha=1e-2, gamma=0.05, rng=0)
    assert seen == [None]


def test_block_pcg_refines_against_an_accurate_residual_and_stops_at_its_floor():
    """matmat only approximates A: with ``residual`` CG refines to tol against A itself; where the caller's
    rounding sets a floor above tol, it stops with stalled=True instead of running to max_iter."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((50, 50)))
    A = (Q * np.linspace(1, 100, 50)) @ Q.T
    E = 1e-4 * rng.standard_normal((50, 50))
    b = rng.standard_normal((50, 1))
    refined = block_pcg(lambda V: (A + E) @ V, b, tol=1e-10, max_iter=500, residual=lambda V: b - A @ V)
    assert refined.converged and not refined.stalled
    assert np.linalg.norm(b - A @ refined.x) <= 1e-10 * np.linalg.norm(b)
    assert refined.residuals[-1] == pytest.approx(np.linalg.norm(b - A @ refined.x) / np.linalg.norm(b), rel=1e-6)
    floor = block_pcg(lambda V: A @ V, b, tol=1e-10, max_iter=500,
                      residual=lambda V: b - A @ V.astype(np.float16).astype(np.float64))
    assert not floor.converged and floor.stalled and floor.n_iter < 500
    x16 = floor.x.astype(np.float16).astype(np.float64)
    assert floor.residuals[-1] == pytest.approx(np.linalg.norm(b - A @ x16) / np.linalg.norm(b), rel=1e-6)
