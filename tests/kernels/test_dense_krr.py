"""Exact kernel ridge regression from the formed kernel matrix, and KernelRidge's exact default on small data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import load_diabetes
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, Matern
from sklearn.kernel_ridge import KernelRidge as ExactKernelRidge
from sklearn.model_selection import GridSearchCV

import randla
from randla.kernels import dense_kernel_ridge


def data(n=400, d=4, seed=0):
    X, y = randla.testing.kernel_regression(n, d=d, noise=0.1, rng=seed)
    Xt, _ = randla.testing.kernel_regression(100, d=d, rng=seed + 1)
    return X, y, Xt


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize(
    "kernel, params",
    [("rbf", {"gamma": 0.2}), ("laplacian", {"gamma": 0.3}), ("polynomial", {"degree": 2, "coef0": 1.0}),
     ("linear", {}), ("cosine", {}), ("chi2", {"gamma": 0.5})],
)
def test_matches_scikit_learns_kernel_ridge(kernel, params):
    X, y, Xt = data()
    if kernel == "chi2":
        X, Xt = np.abs(X), np.abs(Xt)
    exact = ExactKernelRidge(alpha=0.3, kernel=kernel, **params).fit(X, y).predict(Xt)
    model = dense_kernel_ridge(X, y, kernel=kernel, alpha=0.3, **params)
    assert model.solver == "dense" and model.n_centers == 400 and model.residuals[0] < 1e-12
    assert rel(model.predict(Xt), exact) < 1e-10


def test_matern_and_callables_solve_the_exact_system():
    X, y, Xt = data(300)
    K = Matern(length_scale=1.5, nu=2.5)(X)
    coef = np.linalg.solve(K + 0.1 * np.eye(300), y)
    model = dense_kernel_ridge(X, y, kernel="matern", alpha=0.1, length_scale=1.5, nu=2.5)
    assert rel(model.dual_coef, coef) < 1e-10
    np.testing.assert_allclose(model.predict(Xt), Matern(length_scale=1.5, nu=2.5)(Xt, X) @ coef, rtol=1e-10)
    block = dense_kernel_ridge(X, y, kernel=lambda A, B: Matern(length_scale=1.5, nu=2.5)(A, B), alpha=0.1)
    assert rel(block.dual_coef, coef) < 1e-10


def test_sample_weights_alpha_per_target_and_sparse_points():
    X, y, Xt = data(500)
    Y = np.column_stack([y, np.cos(X[:, 1]), -y])
    w = np.random.default_rng(2).exponential(size=500)
    w[::6] = 0
    alpha = np.array([0.3, 0.01, 3.0])
    exact = ExactKernelRidge(alpha=alpha, kernel="rbf", gamma=0.2).fit(X, Y, sample_weight=w).predict(Xt)
    model = dense_kernel_ridge(X, Y, alpha=alpha, gamma=0.2, sample_weight=w)
    assert np.max(np.linalg.norm(model.predict(Xt) - exact, axis=0) / np.linalg.norm(exact, axis=0)) < 1e-9
    S = sp.random_array((300, 200), density=0.05, format="csr", rng=0)
    t = np.asarray(S[:, :20].sum(axis=1)).ravel()
    exact = ExactKernelRidge(alpha=0.1, kernel="cosine").fit(S, t).predict(S[:30])
    assert rel(dense_kernel_ridge(S, t, kernel="cosine", alpha=0.1).predict(S[:30]), exact) < 1e-10


@pytest.mark.parametrize("weighted", [False, True])
def test_posterior_and_evidence_are_the_exact_gaussian_processs(weighted):
    X, y, Xt = data(400)
    gamma, alpha = 0.2, 0.05
    w = np.random.default_rng(3).uniform(0.5, 2.0, 400) if weighted else None
    if weighted:
        w[::9] = 0  # points of weight 0 have infinite noise: they drop out of the model
    kept = slice(None) if w is None else w > 0
    noise = alpha if w is None else alpha / w[kept]
    gp = GaussianProcessRegressor(RBF(np.sqrt(0.5 / gamma)), alpha=noise, optimizer=None).fit(X[kept], y[kept])
    model = dense_kernel_ridge(X, y, alpha=alpha, gamma=gamma, sample_weight=w)
    mean, std = model.predict(Xt, return_std=True)
    gp_mean, gp_std = gp.predict(Xt, return_std=True)
    np.testing.assert_allclose(mean, gp_mean, rtol=0, atol=1e-10 * np.abs(gp_mean).max())
    np.testing.assert_allclose(std, gp_std, rtol=0, atol=1e-9)
    assert model.log_marginal_likelihood == pytest.approx(gp.log_marginal_likelihood_value_, rel=1e-10)


def test_the_fallback_for_a_numerically_indefinite_system_gives_the_same_answer(monkeypatch):
    from randla.kernels import dense_krr

    X, y, Xt = data(300)
    exact = dense_kernel_ridge(X, y, alpha=0.1, gamma=0.2)
    monkeypatch.setattr(dense_krr, "_cholesky_upper", lambda xp, G: None)
    fallback = dense_kernel_ridge(X, y, alpha=0.1, gamma=0.2)
    assert rel(fallback.dual_coef, exact.dual_coef) < 1e-9
    np.testing.assert_allclose(fallback.predict(Xt, return_std=True)[1], exact.predict(Xt, return_std=True)[1],
                               atol=1e-9)
    assert fallback.log_marginal_likelihood == pytest.approx(exact.log_marginal_likelihood, rel=1e-10)


def test_torch_float32_and_untouched_input():
    X, y, Xt = data(300)
    saved = X.copy(), y.copy()
    model = dense_kernel_ridge(X, y, alpha=0.1, gamma=0.2)
    assert np.array_equal(X, saved[0]) and np.array_equal(y, saved[1])
    on_torch = dense_kernel_ridge(torch.as_tensor(X), torch.as_tensor(y), alpha=0.1, gamma=0.2)
    np.testing.assert_allclose(on_torch.predict(torch.as_tensor(Xt)).numpy(), model.predict(Xt), atol=1e-10)
    single = dense_kernel_ridge(X.astype(np.float32), y, alpha=0.1, gamma=0.2)
    assert single.predict(Xt.astype(np.float32)).dtype == np.float32
    assert rel(single.predict(Xt.astype(np.float32)), model.predict(Xt)) < 1e-4


def test_kernel_ridge_is_exact_by_default_on_small_data():
    X, y, Xt = data(1500)
    exact = ExactKernelRidge(alpha=0.3, kernel="rbf", gamma=0.2).fit(X, y)
    model = randla.KernelRidge(alpha=0.3, gamma=0.2).fit(X, y)
    assert model.result_.solver == "dense" and model.dual_coef_.shape == (1500,) and model.n_iter_ == 1
    assert rel(model.predict(Xt), exact.predict(Xt)) < 1e-8
    scale = np.abs(exact.dual_coef_).max()
    np.testing.assert_allclose(model.dual_coef_, exact.dual_coef_, rtol=1e-8, atol=1e-8 * scale)
    gp = GaussianProcessRegressor(RBF(np.sqrt(0.5 / 0.2)), alpha=0.3, optimizer=None).fit(X, y)
    np.testing.assert_allclose(model.predict(Xt, return_std=True)[1], gp.predict(Xt, return_std=True)[1], atol=1e-9)
    assert model.log_marginal_likelihood_value_ == pytest.approx(gp.log_marginal_likelihood_value_, rel=1e-10)
    w = np.random.default_rng(4).exponential(size=1500)
    weighted = ExactKernelRidge(alpha=0.3, kernel="rbf", gamma=0.2).fit(X, y, sample_weight=w).predict(Xt)
    assert rel(randla.KernelRidge(alpha=0.3, gamma=0.2).fit(X, y, sample_weight=w).predict(Xt), weighted) < 1e-8


def test_kernel_ridge_keeps_landmarks_where_asked_or_where_n_is_large():
    X, y, _ = data(2001, d=3)
    default = randla.KernelRidge(alpha=0.3, gamma=0.2, random_state=0).fit(X, y)
    assert default.result_.solver == "direct" and len(default.centers_) == 100  # max(100, sqrt(n))
    X, y, _ = data(500, d=3)
    for params, solver, m in [
        (dict(n_components=50), "direct", 50),                  # an explicit count: the Nystrom model
        (dict(solver="pcg"), "pcg", 100),                        # the user's solver: Falkon
        (dict(memory_limit=3 * 8 * 500 * 500 - 1), "direct", 100),  # K would not fit the memory asked for
    ]:
        model = randla.KernelRidge(alpha=0.3, gamma=0.2, random_state=0, **params).fit(X, y)
        assert model.result_.solver == solver and len(model.centers_) == m
    fits = randla.KernelRidge(alpha=0.3, gamma=0.2, memory_limit=3 * 8 * 500 * 500).fit(X, y)
    assert fits.result_.solver == "dense"


def test_grid_search_chooses_as_scikit_learns():
    X, y = load_diabetes(return_X_y=True)
    grid = {"alpha": [1e-3, 1e-2, 1e-1, 1.0], "gamma": [1.0, 10.0, 100.0]}
    ours = GridSearchCV(randla.KernelRidge(), grid, cv=5).fit(X, y)
    theirs = GridSearchCV(ExactKernelRidge(kernel="rbf"), grid, cv=5).fit(X, y)
    assert ours.best_params_ == theirs.best_params_
    np.testing.assert_allclose(ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"],
                               rtol=1e-8, atol=1e-10)


def test_posterior_std_has_a_column_per_target_as_scikit_learns():
    # scikit-learn's GaussianProcessRegressor gives 2-D y a std of shape (p, t); ours used to be (p,).
    X, y, Xt = data(300)
    Y = np.column_stack([y, np.sin(X[:, 0]), -2 * y])
    gp = GaussianProcessRegressor(RBF(np.sqrt(0.5 / 0.2)), alpha=0.1, optimizer=None).fit(X, Y)
    gp_mean, gp_std = gp.predict(Xt, return_std=True)
    assert gp_std.shape == (100, 3)
    for model in (dense_kernel_ridge(X, Y, alpha=0.1, gamma=0.2),
                  randla.nystrom_kernel_ridge(X, Y, alpha=0.1, gamma=0.2, landmarks=np.arange(300))):
        mean, std = model.predict(Xt, return_std=True)
        assert std.shape == mean.shape == (100, 3)
        np.testing.assert_allclose(mean, gp_mean, rtol=0, atol=1e-9 * np.abs(gp_mean).max())
        np.testing.assert_allclose(std, gp_std, rtol=0, atol=1e-9)
        std[0, 0] = -1.0  # its own array, not a view of one column: writing a cell changes only that cell
        assert std[0, 1] != -1.0
        one = model.predict(Xt[:7], return_std=True)[1]
        assert one.shape == (7, 3)
    # 1-D y keeps (p,); one column (n, 1) gives (p, 1), the shape of its predictions.
    assert dense_kernel_ridge(X, y, alpha=0.1, gamma=0.2).predict(Xt, return_std=True)[1].shape == (100,)
    single = dense_kernel_ridge(X, y[:, None], alpha=0.1, gamma=0.2).predict(Xt, return_std=True)
    assert single[0].shape == single[1].shape == (100, 1)
    on_torch = dense_kernel_ridge(torch.as_tensor(X), torch.as_tensor(Y), alpha=0.1, gamma=0.2)
    _, std = on_torch.predict(torch.as_tensor(Xt), return_std=True)
    assert isinstance(std, torch.Tensor) and std.shape == (100, 3)
    np.testing.assert_allclose(std.numpy(), gp_std, rtol=0, atol=1e-9)
